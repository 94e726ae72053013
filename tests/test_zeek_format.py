"""``--format zeek`` and ``zeek-json``: every log reads back with a Zeek log reader
(parsezeeklogs, which reads Zeek's TSV and JSON logs by their header) with the same rows and
values as the Parquet tables."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from tests.helpers import CAPTURES, TEST_SALT

parsezeeklogs = pytest.importorskip("parsezeeklogs")

CAPTURES_USED = ["dicom_lab.pcap", "dicomweb.pcap", "malformed.pcap", "charsets.pcap"]


def run(capture: str, out: Path, fmt: str) -> None:
    import dataclasses

    from analyzer.capture import open_inputs
    from analyzer.config import Config
    from analyzer.run.pipeline import run_analysis
    from analyzer.run.progress import Progress

    out.mkdir(parents=True, exist_ok=True)
    readers, _ = open_inputs([str(CAPTURES / capture)])
    config = dataclasses.replace(Config(), strict=True, salt=TEST_SALT)
    run_analysis(config, readers, out, fmt, Progress(None, enabled=False))


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, abs_tol=1e-6)
    if a == "" and b is None:  # "(empty)" for an empty string reads back as empty
        return True
    return a == b or (a in ([], None) and b in ([], None))


@pytest.mark.parametrize("capture", CAPTURES_USED)
@pytest.mark.parametrize("fmt", ["zeek", "zeek-json"])
def test_every_log_reads_back(capture: str, fmt: str, tmp_path: Path) -> None:
    run(capture, tmp_path / "pq", "parquet")
    run(capture, tmp_path / "zk", fmt)
    logs = sorted((tmp_path / "zk").glob("*.log"))
    assert "conn" in {p.stem for p in logs}
    for missing in {p.stem for p in (tmp_path / "pq").glob("*.parquet")} - {p.stem for p in logs}:
        assert (
            fmt == "zeek-json"
            and pl.read_parquet(tmp_path / "pq" / f"{missing}.parquet").height == 0
        )
    for log in logs:
        rows = list(parsezeeklogs.read_zeek(str(log)))
        table = pl.read_parquet(tmp_path / "pq" / f"{log.stem}.parquet")
        assert len(rows) == table.height, log.name
        for ours, theirs in zip(table.iter_rows(named=True), rows, strict=True):
            for name, value in ours.items():
                key = {"orig_h": "id.orig_h", "orig_p": "id.orig_p"}.get(name, name)
                key = {"resp_h": "id.resp_h", "resp_p": "id.resp_p"}.get(key, key)
                if value is None and fmt == "zeek-json":
                    assert key not in theirs  # Zeek's JSON leaves unset fields out
                    continue
                assert same(value, theirs.get(key)), (log.name, name, value, theirs.get(key))


def test_conn_log_has_zeeks_header(tmp_path: Path) -> None:
    run("dicom_lab.pcap", tmp_path, "zeek")
    lines = (tmp_path / "conn.log").read_text().splitlines()
    assert lines[0] == "#separator \\x09" and lines[4] == "#path\tconn"
    fields = lines[6].split("\t")
    assert fields[:7] == [
        "#fields",
        "ts",
        "uid",
        "id.orig_h",
        "id.orig_p",
        "id.resp_h",
        "id.resp_p",
    ]
    types = lines[7].split("\t")
    assert types[:7] == ["#types", "time", "string", "addr", "port", "addr", "port"]
    assert lines[-1].startswith("#close\t")
    refused = [line for line in lines if "\tREJ\t" in line]
    assert refused and "\t-\t" in refused[0]  # an unset service
