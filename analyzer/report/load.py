"""Read an output directory back into polars frames, whatever format wrote it.

An output directory holds, per table, one of::

    <name>.parquet | <name>.csv | <name>.jsonl      (analyze)
    <name>/part-*.parquet                           (live: one file per rotation)

A table that is missing loads as an empty frame with its schema, so every consumer can
rely on the columns. CSV joins list cells with ';' (see output.writer); they are split back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from analyzer.errors import InputError
from analyzer.logs.records import EXPORT_TABLES, LIVE_TABLES, TABLES, Schema
from analyzer.output.writer import GUARDED


@dataclass(slots=True)
class Tables:
    """The tables of one output directory. ``found`` names the tables that had a file."""

    frames: dict[str, pl.DataFrame]
    found: set[str] = field(default_factory=set)
    fmt: str = "parquet"

    def __getitem__(self, name: str) -> pl.DataFrame:
        return self.frames[name]

    @property
    def has_dicom(self) -> bool:
        return self.frames["dicom_assoc"].height > 0 or self.frames["dimse"].height > 0


def _empty(schema: Schema) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def _read_csv(path: Path, schema: Schema) -> pl.DataFrame:
    lists = [n for n, t in schema.items() if isinstance(t, pl.List)]
    text_schema = {n: (pl.String() if n in lists else t) for n, t in schema.items()}
    frame = pl.read_csv(path, schema=text_schema)
    text = [n for n, t in text_schema.items() if t == pl.String]
    frame = frame.with_columns(  # undo the writer's formula guard (output.writer.csv_safe)
        pl.when(pl.col(n).str.contains(GUARDED))
        .then(pl.col(n).str.slice(1))
        .otherwise(pl.col(n))
        .alias(n)
        for n in text
    )
    if lists:
        frame = frame.with_columns(
            pl.when(pl.col(n).is_null() | (pl.col(n) == ""))
            .then(pl.lit([], dtype=pl.List(pl.String())))
            .otherwise(pl.col(n).str.split(";"))
            .alias(n)
            for n in lists
        )
    return frame


def _read_jsonl(path: Path, schema: Schema) -> pl.DataFrame:
    if path.stat().st_size == 0:
        return _empty(schema)
    return pl.read_ndjson(path, schema=schema)


def _read_one(outdir: Path, name: str, schema: Schema) -> tuple[pl.DataFrame, str] | None:
    parts = outdir / name
    if parts.is_dir():
        files = sorted(parts.glob("part-*.parquet"))
        if not files:  # live mode before the table's first row
            return _empty(schema), "parquet"
        return pl.concat([pl.read_parquet(f) for f in files], how="vertical"), "parquet"
    for fmt in ("parquet", "csv", "jsonl"):
        path = outdir / f"{name}.{fmt}"
        if not path.is_file():
            continue
        if fmt == "parquet":
            return pl.read_parquet(path), fmt
        if fmt == "csv":
            return _read_csv(path, schema), fmt
        return _read_jsonl(path, schema), fmt
    return None


def load_table(outdir: str | Path, name: str) -> pl.DataFrame:
    """One table of ``outdir`` in whatever format it was written; empty when it is missing."""
    schema = {**TABLES, **LIVE_TABLES, **EXPORT_TABLES}[name]
    got = _read_one(Path(outdir), name, schema)
    return _empty(schema) if got is None else got[0]


def load_tables(outdir: str | Path) -> Tables:
    """Load every table of ``outdir``; raise InputError when it holds none of them."""
    root = Path(outdir)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    frames: dict[str, pl.DataFrame] = {}
    found: set[str] = set()
    fmts: set[str] = set()
    for name, schema in {**TABLES, **LIVE_TABLES}.items():
        try:
            got = _read_one(root, name, schema)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise InputError(f"{root}: cannot read table {name}: {exc}") from None
        if got is None:
            frames[name] = _empty(schema)
            continue
        frame, fmt = got
        # Cast to the contract so that a CSV's inferred nulls and a part's types agree.
        frames[name] = frame.select(
            pl.col(n).cast(t) if n in frame.columns else pl.lit(None, dtype=t).alias(n)
            for n, t in schema.items()
        )
        found.add(name)
        fmts.add(fmt)
    if not found & set(TABLES):
        raise InputError(f"{root}: no analyzer tables here (expected e.g. conn.parquet)")
    return Tables(frames, found, fmts.pop() if len(fmts) == 1 else "mixed")
