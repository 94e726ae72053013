"""The output formats by name (no import of the writers: the command line reads these first)."""

from __future__ import annotations

TABLE_FORMATS = ("parquet", "csv", "jsonl")
"""Formats the report, the notebook and ``export``'s manifest read back."""
FORMATS = (*TABLE_FORMATS, "zeek", "zeek-json")
LIVE_FORMATS = ("parquet", "zeek", "zeek-json")
"""Formats of live's part files (each part is a whole file: Parquet or a Zeek log)."""
EXTENSIONS = {
    "parquet": "parquet",
    "csv": "csv",
    "jsonl": "jsonl",
    "zeek": "log",
    "zeek-json": "log",
}

__all__ = ["EXTENSIONS", "FORMATS", "LIVE_FORMATS", "TABLE_FORMATS"]
