"""No output file holds a synthetic patient value or a passcode unless --capture-phi is given;
with it, values appear in the phi table only."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.helpers import CAPTURES, analyze

SAMPLES = sorted(p for p in CAPTURES.glob("*.pcap*") if p.is_file()) + [CAPTURES / "rotated"]
PHI_VALUES = [
    "DOE^JANE",
    "ROE^RICHARD",
    "MUSTERMANN",
    "PAT-0001",
    "PAT-0002",
    "PAT-0003",
    "PAT-0004",
    "PAT-0005",
    "19700101",
    "19651231",
    "19801115",
    "19750305",
    "ACC000101",
    "ACC-WL-0001",
    "Müller",
    "Jürgen",
    "Yamada",
    "山田",
    "WHO^DOCTOR",
    "Synthetic General Hospital",
    "PAT-BOMB",
]
SECRETS = [
    "lab-pass",
    "wrong-guess",
    "radiology",
    "KRB5-SERVICE-TICKET",
    "saml:Assertion",
    "eyJhbGciOiJIUzI1NiJ9",
]


def run(capture: Path, out: Path, *extra: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "analyzer", "analyze", str(capture), "-o", str(out), "-q", *extra],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def leaks(out: Path, needles: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in out.iterdir():
        data = path.read_bytes()
        text = data.decode("utf-8", "replace") if path.suffix != ".parquet" else ""
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            text = frame.write_ndjson()
        for needle in needles:
            if needle in text or needle.encode() in data:
                found.setdefault(path.name, []).append(needle)
    return found


@pytest.mark.parametrize("capture", SAMPLES, ids=lambda p: p.name)
def test_nothing_leaks_by_default(capture: Path, tmp_path: Path) -> None:
    for fmt in ("parquet", "jsonl"):
        out = tmp_path / fmt
        run(capture, out, "--format", fmt)
        assert leaks(out, PHI_VALUES + SECRETS) == {}
        for path in out.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_capture_phi_puts_values_in_the_phi_table_only(tmp_path: Path) -> None:
    run(CAPTURES / "dicom_lab.pcap", tmp_path, "--capture-phi")
    found = leaks(tmp_path, PHI_VALUES + SECRETS)
    assert set(found) == {"phi.parquet"}
    assert "DOE^JANE" in found["phi.parquet"]
    run(CAPTURES / "user_identity.pcap", tmp_path / "ui", "--capture-phi")
    assert (
        leaks(tmp_path / "ui", SECRETS) == {}
    )  # passcodes and tokens are never written, even then


def test_short_values_are_masked_whole_and_tiers_are_named() -> None:
    from analyzer.privacy import matching_key_only, redact, tier

    assert redact("M") == "***" and redact("DOE^JANE") == "D***^J***"
    assert redact("WHO^DOCTOR") == "W***^D***" and redact("CT") == "***"
    assert tier("PatientName", "PN") == "direct" and tier("PatientID", "LO") == "direct"
    assert tier("PatientBirthDate", "DA") == "quasi" and tier("RetrieveAETitle", "AE") == "quasi"
    assert tier("StudyInstanceUID", "UI") == "uid"
    assert matching_key_only("*") and matching_key_only(" ? ") and matching_key_only("")
    assert not matching_key_only("DOE*")


def test_wildcard_query_keys_are_not_patient_data(tmp_path: Path) -> None:
    """The lab's C-FIND asks PatientName=*: a matching key, not a fourth patient."""
    analyze(CAPTURES / "dicom_lab.pcap", tmp_path)
    phi = pl.read_parquet(tmp_path / "phi.parquet")
    assert phi["patient_key"].drop_nulls().n_unique() == 3
    dimse = pl.read_parquet(tmp_path / "dimse.parquet")
    queries = dimse.filter(pl.col("command") == "C-FIND-RQ").select("uid", "message_id")
    assert queries.height > 0
    asked = phi.join(queries, on=["uid", "message_id"]).filter(pl.col("direction") == "orig")
    assert "PatientName" not in set(asked["keyword"])  # PatientName=* names nobody
    assert set(phi["tier"]) <= {"direct", "quasi", "uid"} and "direct" in set(phi["tier"])


@pytest.mark.parametrize(
    "elements",
    [
        [(0x00100010, "DOE^JANE", 0), (0x00100020, "PAT-0001", 0), (0x00100030, "19700101", 0)],
        [(0x00100010, "DOE^JANE", 0), (0x00100030, "19700101", 0)],
        [(0x00100010, "*", 0), (0x00100020, "", 0), (0x00100030, "19700101", 0)],
        [(0x00100010, "ROE^RICHARD", 1), (0x00100020, "PAT-0002", 1)],  # in a sequence only
        [(0x00100020, "PAT-0003", 1), (0x00100010, "DOE*", 0)],
        [(0x00080050, "ACC000101", 0)],
        [],
    ],
)
def test_one_pass_summary_names_the_patient_as_patient_key_does(
    elements: list[tuple[int, str, int]],
) -> None:
    """``PhiPolicy.summarize`` reads the identifiers in its pass over the PHI elements; the
    key must be the one ``patient_key`` builds from the dataset's top level."""
    from pydicom.datadict import dictionary_keyword, dictionary_VR

    from analyzer.dicom.dataset import DatasetSummary
    from analyzer.dicom.elements import Element
    from analyzer.privacy import Hasher, PhiPolicy

    ds = DatasetSummary(
        transfer_syntax_uid=None,
        sop_class_uid=None,
        sop_instance_uid=None,
        elements=tuple(
            Element(tag, dictionary_keyword(tag), dictionary_VR(tag), value, len(value), depth)
            for tag, value, depth in elements
        ),
        partial=False,
        anomalies=(),
    )
    policy = PhiPolicy(Hasher(b"salt"), include_uids=False, capture_phi=False)
    summary = policy.summarize(ds)
    assert summary.patient_key == policy.patient_key(ds)
    assert [e.value for e in summary.elements] == [v for _, v, _ in elements if v.strip("*?")]
