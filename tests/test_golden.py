"""Golden tables: every table of every sample capture, byte for byte.

A change in any output shows up here as a diff of readable CSV files. After a change
that is meant, refresh them with ``./scripts/test.sh tests/test_golden.py --update-golden``
and review the diff before committing.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from analyzer.logs.records import TABLES
from tests.helpers import CAPTURES, analyze

GOLDEN = Path(__file__).parent / "golden"
SAMPLES = sorted(p for p in CAPTURES.glob("*.pcap*") if p.is_file()) + [CAPTURES / "rotated"]


def as_csv(frame: pl.DataFrame) -> str:
    lists = [n for n, t in frame.schema.items() if isinstance(t, pl.List)]
    return frame.with_columns(pl.col(n).list.join(";") for n in lists).write_csv()


@pytest.mark.parametrize("capture", SAMPLES, ids=lambda p: p.name)
def test_golden_tables(capture: Path, tmp_path: Path, update_golden: bool) -> None:
    analyze(capture, tmp_path)
    folder = GOLDEN / capture.name.split(".")[0]
    for table in TABLES:
        # anomaly details name the input as given: make them independent of the checkout's location
        got = as_csv(pl.read_parquet(tmp_path / f"{table}.parquet")).replace(
            str(CAPTURES), "captures"
        )
        path = folder / f"{table}.csv"
        if update_golden:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(got)
            continue
        assert path.exists(), f"no golden {path}: run with --update-golden"
        assert got == path.read_text(), f"{capture.name}: {table} differs from {path}"


def test_every_capture_has_golden_tables() -> None:
    names = {p.name.split(".")[0] for p in SAMPLES}
    assert names == {p.name for p in GOLDEN.iterdir() if p.is_dir()}
