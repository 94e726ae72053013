"""crosscheck: our decoding agrees with Wireshark's DICOM dissector on every sample capture."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.config import Config
from analyzer.tools.crosscheck import FlowFacts, HttpFacts, compare, compare_http, crosscheck
from tests.helpers import CAPTURES

SAMPLES = sorted(p for p in CAPTURES.glob("*.pcap*") if p.is_file()) + [
    CAPTURES / "rotated" / "span.pcap"
]
NO_DICOM_FOR_WIRESHARK: set[str] = set()


@pytest.mark.parametrize("capture", SAMPLES, ids=lambda p: p.name)
def test_no_disagreement_with_wireshark(capture: Path) -> None:
    disagreements, unchecked, flows = crosscheck(str(capture), Config())
    assert disagreements == []
    assert flows > 0 and len(unchecked) < flows  # Wireshark really decoded something to compare


def test_a_real_difference_is_reported() -> None:
    """The comparison is not vacuous: a changed command or AE title is a disagreement."""
    key = frozenset({("10.0.0.1", 40000), ("10.0.0.2", 104)})
    ours = FlowFacts(
        calling_ae="A", called_ae="B", commands={("10.0.0.1", 40000): [(0x30, 1, None, None)]}
    )
    ours.pdus.update({1: 1, 2: 1, 4: 2})
    wire = FlowFacts(
        calling_ae="A", called_ae="B", commands={("10.0.0.1", 40000): [(0x30, 2, None, None)]}
    )
    wire.pdus.update({1: 1, 2: 1, 4: 2})
    found, _ = compare({key: ours}, {key: wire})
    assert [d.what for d in found] == ["commands from 10.0.0.1:40000"]
    wire.called_ae = "C"
    wire.pdus[4] = 3
    found, _ = compare({key: ours}, {key: wire})
    assert {d.what for d in found} == {
        "commands from 10.0.0.1:40000",
        "called AE",
        "P-DATA-TF count",
    }


def test_cli_exit_codes(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "analyzer", "crosscheck", str(CAPTURES / "orthanc_qr.pcap")],
        capture_output=True,
        text=True,
    )
    assert (
        done.returncode == 0
        and "6 DICOM or HTTP flow(s), 6 checked against Wireshark, 0 disagreement(s)" in done.stderr
    )
    bogus = tmp_path / "x.pcap"
    bogus.write_text("nope")
    done = subprocess.run(
        [sys.executable, "-m", "analyzer", "crosscheck", str(bogus)], capture_output=True, text=True
    )
    assert done.returncode == 3 and "Traceback" not in done.stderr


def test_an_http_difference_is_reported() -> None:
    key = frozenset({("10.0.0.1", 40000), ("10.0.0.2", 8042)})
    ours = HttpFacts(requests=[("GET", "/dicom-web/studies", ("PatientName",))], statuses=[200])
    same = HttpFacts(requests=list(ours.requests), statuses=[200])
    assert compare_http({key: ours}, {key: same}) == ([], [])
    other = HttpFacts(requests=[("GET", "/dicom-web/series", ("PatientName",))], statuses=[401])
    found, _ = compare_http({key: ours}, {key: other})
    assert [d.what for d in found] == ["HTTP requests", "HTTP status codes"]
    assert compare_http({key: ours}, {}) == ([], ["10.0.0.1:40000 <-> 10.0.0.2:8042"])
