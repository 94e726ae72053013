"""The pieces of live mode that need no capture: part files, dumpcap's reports, the ring's
filter, syslog lines."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import polars as pl
import pytest

from analyzer.errors import ConfigError
from analyzer.live.alerts import SyslogSink, syslog_message
from analyzer.live.dumpcap import DROPS, _first_error
from analyzer.live.ring import ring_filter
from analyzer.logs.records import TABLES, Weird
from analyzer.output.writer import PartWriter, SnapshotWriter
from analyzer.report.load import load_tables

WEIRD = TABLES["weird"]


def test_part_writer_writes_durable_numbered_parts(tmp_path: Path) -> None:
    w = PartWriter("weird", WEIRD, tmp_path, chunk_rows=3)
    for i in range(7):  # two full chunks flush by themselves
        w.add(Weird("C1", float(i), "x", str(i), "capture"))
    assert len(list((tmp_path / "weird").glob("part-*.parquet"))) == 2
    w.flush()
    w.flush()  # nothing new: no empty part
    assert w.close() == 7
    parts = sorted((tmp_path / "weird").glob("part-*.parquet"))
    assert [p.name.split("-")[1] for p in parts] == ["000000", "000001", "000002"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in parts)
    assert stat.S_IMODE((tmp_path / "weird").stat().st_mode) == 0o700
    assert not list((tmp_path / "weird").glob(".*"))
    # A new run in the same directory continues the numbering, and readers see both runs.
    again = PartWriter("weird", WEIRD, tmp_path)
    again.add(Weird("C2", 9.0, "y", "9", "capture"))
    again.close()
    assert sorted(p.name.split("-")[1] for p in (tmp_path / "weird").glob("part-*"))[-1] == "000003"
    frame = load_tables(tmp_path)["weird"]
    assert frame.height == 8 and frame["ts"].to_list() == [*map(float, range(7)), 9.0]


def test_snapshot_writer_replaces_the_whole_table(tmp_path: Path) -> None:
    w = SnapshotWriter("weird", WEIRD, tmp_path)
    w.add(Weird("C1", 1.0, "x", "1", "capture"))
    w.close()
    w.add(Weird("C1", 1.0, "x", "1", "capture"))
    w.add(Weird("C2", 2.0, "y", "2", "capture"))
    assert w.close() == 2
    assert pl.read_parquet(tmp_path / "weird.parquet").height == 2
    assert stat.S_IMODE((tmp_path / "weird.parquet").stat().st_mode) == 0o600


def test_dumpcap_drop_line() -> None:
    # As dumpcap 4.0 prints it when a capture ends (seen in tests/live/test_live.py runs).
    line = (
        "Packets received/dropped on interface 'Loopback: lo': 120/3 "
        "(pcap:2/dumpcap:1/flushed:0/ps_ifdrop:5) (97.5%)"
    )
    m = DROPS.search(line)
    assert m is not None
    assert (m["iface"], m["recv"], m["drop"], m["pcap"], m["dumpcap"], m["ifdrop"]) == (
        "Loopback: lo", "120", "3", "2", "1", "5",
    )  # fmt: skip


def test_dumpcap_error_is_made_one_line() -> None:
    stderr = "Capturing on 'nosuch0'\ndumpcap: There is no device named \"nosuch0\".\n(No such device exists)\n"
    assert _first_error(stderr) == 'There is no device named "nosuch0". (No such device exists)'


def test_ring_filter() -> None:
    assert ring_filter(None, [11112, 104, 104]) == "tcp port 104 or tcp port 11112"
    assert ring_filter("net 10.0.0.0/8", [104]) == "(net 10.0.0.0/8) and (tcp port 104)"


def test_syslog_line_and_address() -> None:
    alert = {
        "severity": "high", "rule": "wildcard_query", "title": "Wildcard patient query",
        "orig_h": "10.0.0.5", "resp_h": "10.0.0.9", "calling_ae": "X", "called_ae": None,
        "detail": "patient-root C-FIND matches everyone", "uid": "Cabc",
    }  # fmt: skip
    assert syslog_message(alert) == (
        "[high] wildcard_query: Wildcard patient query; 10.0.0.5 -> 10.0.0.9 (X -> ?); "
        "patient-root C-FIND matches everyone; uid=Cabc"
    )
    with pytest.raises(ConfigError):
        SyslogSink("no-port-here")


def test_outdir_of_live_loads_with_stats(tmp_path: Path) -> None:
    from analyzer.logs.records import STATS

    w = PartWriter("stats", STATS, tmp_path)
    w.add(tuple([1.0, 1.0] + [0] * 5 + [0] * 10 + [0.0, 1.0]))  # type: ignore[arg-type]
    w.close()
    PartWriter("conn", TABLES["conn"], tmp_path).close()
    tables = load_tables(tmp_path)
    assert tables["stats"].height == 1 and "stats" in tables.found
    assert os.path.isdir(tmp_path / "stats")
