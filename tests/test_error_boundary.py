"""An internal error while a flow is being finished (at the end of the capture, or in an idle
expiry set off by another flow's packet) is an ``analyzer_internal_error`` row of that flow;
the flow is still logged and every other table is written."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl
import pytest

from analyzer.capture import open_inputs
from analyzer.config import Config
from analyzer.dicom.association import AssociationParser
from analyzer.run.pipeline import run_analysis
from analyzer.run.progress import Progress
from tests.helpers import CAPTURES, TEST_SALT


def run(capture: Path, out: Path, config: Config) -> None:
    readers, _ = open_inputs([str(capture)])
    out.mkdir()
    run_analysis(config, readers, out, "parquet", Progress(None, enabled=False))


def boom(self: AssociationParser, ts: float) -> list[object]:
    raise RuntimeError("injected failure while closing")


@pytest.mark.parametrize(
    ("name", "idle"),
    [("dicom_lab.pcap", None), ("malformed.pcap", 0.001)],
    ids=["end-of-capture-and-fin", "idle-expiry"],
)
def test_failure_while_finishing_a_flow_keeps_it(
    name: str, idle: float | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = CAPTURES / name
    config = Config(salt=TEST_SALT)
    if idle is not None:  # idle flows expire when a later packet of another flow arrives
        limits = dataclasses.replace(
            config.limits, idle_timeout=idle, close_linger=idle, attempt_timeout=idle
        )
        config = dataclasses.replace(config, limits=limits)
    run(capture, tmp_path / "clean", config)
    monkeypatch.setattr(AssociationParser, "close", boom)
    run(capture, tmp_path / "broken", config)
    clean = {
        t: pl.read_parquet(tmp_path / "clean" / f"{t}.parquet") for t in ("conn", "dicom_assoc")
    }
    broken = {
        t: pl.read_parquet(tmp_path / "broken" / f"{t}.parquet") for t in ("conn", "dicom_assoc")
    }
    assert broken["conn"]["uid"].sort().to_list() == clean["conn"]["uid"].sort().to_list()
    assert (
        broken["dicom_assoc"]["uid"].sort().to_list()
        == clean["dicom_assoc"]["uid"].sort().to_list()
    )
    if idle is not None:
        conn = clean["conn"]
        assert conn.filter(
            (pl.col("end_reason") == "timeout") & (pl.col("service") == "dicom")
        ).height
    weird = pl.read_parquet(tmp_path / "broken" / "weird.parquet")
    errors = weird.filter(pl.col("name") == "analyzer_internal_error")
    assert errors.height == clean["dicom_assoc"].height  # one per DICOM flow, each with its uid
    assert set(errors["uid"]) == set(clean["dicom_assoc"]["uid"])
    assert "injected failure" in errors["detail"][0]


def test_strict_mode_still_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AssociationParser, "close", boom)
    with pytest.raises(RuntimeError, match="injected"):
        run(CAPTURES / "dicom_lab.pcap", tmp_path / "o", Config(strict=True, salt=TEST_SALT))
