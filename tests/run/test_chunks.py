"""Rows become columnar frames in chunks (``chunk_rows``): small ones for tables whose rows
carry lists, as turning Python lists into list columns briefly takes several times the
frame's size (the peak of a 4 GB run was that conversion)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from analyzer.logs.records import TABLES
from analyzer.run.pipeline import chunk_rows, table_writers


def test_tables_with_list_columns_take_small_chunks() -> None:
    small = {"asset", "dicom_object", "dicom_context", "finding", "http", "dicomweb"}
    assert set(TABLES) - small == {"conn", "dicom_assoc", "dimse", "phi", "weird"}
    for name in TABLES:
        assert chunk_rows(name) == (512 if name in small else 4096), name


def test_a_table_of_small_chunks_reads_back_whole(tmp_path: Path) -> None:
    """1,300 ``dicom_object`` rows (three chunks and a rest) come out as written."""
    writers = table_writers(tmp_path, "parquet")
    w = writers["dicom_object"]
    schema = TABLES["dicom_object"]
    rows = []
    for i in range(1300):
        row = {c: None for c in schema}
        row.update(uid=f"C{i}", ts=float(i), phi_keywords=["PatientName", f"K{i % 7}"])
        rows.append(tuple(row[c] for c in schema))
    for r in rows:
        w.add(r)
    assert w.close() == 1300
    got = pl.read_parquet(tmp_path / "dicom_object.parquet")
    assert got.height == 1300 and got["uid"].to_list() == [f"C{i}" for i in range(1300)]
    assert got["phi_keywords"].to_list() == [["PatientName", f"K{i % 7}"] for i in range(1300)]
