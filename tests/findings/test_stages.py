"""The two rule stages: the cross-flow stage gives the same findings inline and over the
summary tables of independent per-flow runs (here: two shards of the flows), merged."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl
import pytest

from analyzer.config import Config
from analyzer.findings.replay import read_summaries, replay
from analyzer.findings.summary import order_key
from analyzer.logs.records import FindingRow
from analyzer.logs.sinks import ListSink
from analyzer.run.pipeline import flow_shard
from tests.helpers import CAPTURES, TEST_SALT, analyze

SAMPLES = sorted(p for p in CAPTURES.glob("*.pcap*") if p.is_file()) + [CAPTURES / "rotated"]
PER_FLOW_TABLES = ("conn", "dicom_assoc", "dicom_context", "dimse", "dicom_object", "phi")
CONFIG = Config(strict=True, salt=TEST_SALT)


def _sorted(frame: pl.DataFrame) -> list[tuple[object, ...]]:
    return sorted(frame.rows(), key=repr)


@pytest.mark.parametrize("capture", SAMPLES, ids=lambda p: p.name)
def test_cross_flow_inline_equals_merged_shards(capture: Path, tmp_path: Path) -> None:
    analyze(capture, tmp_path / "inline", CONFIG)
    shards = [tmp_path / f"shard{k}" for k in range(2)]
    for k, out in enumerate(shards):
        analyze(capture, out, CONFIG, shard=(k, 2))
        assert pl.read_parquet(out / "finding.parquet").height == 0  # left to the merge
    merged = ListSink()
    errors: list[object] = []
    replay(CONFIG, shards, merged, lambda *a: errors.append(a))
    inline = pl.read_parquet(tmp_path / "inline" / "finding.parquet")
    assert not errors
    assert [FindingRow(**r) for r in inline.iter_rows(named=True)] == list(merged), capture.name
    # the per-flow tables of the shards add up to those of the whole run, row for row
    for table in PER_FLOW_TABLES:
        whole = pl.read_parquet(tmp_path / "inline" / f"{table}.parquet")
        parts = pl.concat([pl.read_parquet(s / f"{table}.parquet") for s in shards])
        assert _sorted(whole) == _sorted(parts), f"{capture.name}: {table}"


def test_summaries_come_back_in_stage_order(tmp_path: Path) -> None:
    shards = [tmp_path / f"shard{k}" for k in range(2)]
    for k, out in enumerate(shards):
        analyze(CAPTURES / "nmap_scan.pcap", out, CONFIG, shard=(k, 2))
    records = list(read_summaries(shards))
    assert records and [order_key(r) for r in records] == sorted(order_key(r) for r in records)
    assert {type(r).__name__ for r in records} >= {"AssocSummary", "FlowSummary", "Candidate"}
    assert len({r.uid for r in records}) > 10  # the scan has many flows, split over both shards


def test_flow_shard_is_symmetric_and_spreads() -> None:
    a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    seen = set()
    for port in range(40000, 40064):
        k = flow_shard(a, port, b, 104, 4)
        assert k == flow_shard(b, 104, a, port, 4)
        seen.add(k)
    assert seen == {0, 1, 2, 3}


def test_sharded_run_keeps_capture_level_anomalies_once(tmp_path: Path) -> None:
    capture = CAPTURES / "truncated_tail.pcap"
    analyze(capture, tmp_path / "inline", CONFIG)
    shards = [tmp_path / f"shard{k}" for k in range(2)]
    for k, out in enumerate(shards):
        analyze(capture, out, dataclasses.replace(CONFIG), shard=(k, 2))
    whole = pl.read_parquet(tmp_path / "inline" / "weird.parquet")
    parts = pl.concat([pl.read_parquet(s / "weird.parquet") for s in shards])
    assert whole.filter(pl.col("uid").is_null()).height > 0
    assert _sorted(whole) == _sorted(parts)


def test_summaries_read_back_as_written(tmp_path: Path) -> None:
    """Each summary table is read back a row tuple at a time by field name (``_stream``):
    the same records as built from named rows, whatever order the columns are stored in."""
    from analyzer.findings.replay import SUMMARY_DIR
    from analyzer.findings.summary import SUMMARY_RECORDS

    out = tmp_path / "run"
    analyze(CAPTURES / "dicom_lab.pcap", out, CONFIG, shard=(0, 2))
    analyze(CAPTURES / "nmap_scan.pcap", tmp_path / "scan", CONFIG, shard=(1, 2))
    dirs = [out, tmp_path / "scan"]
    flipped = out / SUMMARY_DIR / "summary_fact.parquet"
    frame = pl.read_parquet(flipped)
    frame.select(list(reversed(frame.columns))).write_parquet(flipped)
    named = [
        rec(**row)
        for d in dirs
        for name, rec in SUMMARY_RECORDS.items()
        if (d / SUMMARY_DIR / f"{name}.parquet").exists()
        for row in pl.read_parquet(d / SUMMARY_DIR / f"{name}.parquet").iter_rows(named=True)
    ]
    got = list(read_summaries(dirs))
    assert {type(r).__name__ for r in got} == {rec.__name__ for rec in SUMMARY_RECORDS.values()}
    assert sorted(got, key=repr) == sorted(named, key=repr)
