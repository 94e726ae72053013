"""``--alerts-format ecs``: every alert of several captures is a valid ECS document, checked
against ECS's own field definitions (``tests/data/ecs_fields.json``, from ``ecs_flat.yml``):
each field exists with that name, has that type, is an array where ECS says so, and holds only
ECS's allowed values; fields ECS does not define live under ``dicom_analyzer.*``."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from analyzer.capture import open_inputs
from analyzer.config import Config
from analyzer.run.pipeline import run_analysis
from analyzer.run.progress import Progress
from tests.helpers import CAPTURES, TEST_SALT

FIELDS: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parent.parent / "data" / "ecs_fields.json").read_text()
)
TEXT = {"keyword", "text", "wildcard", "match_only_text", "constant_keyword", "flattened"}
NUMBERS = {"long", "integer", "short", "byte", "unsigned_long"}
FLOATS = {"float", "double", "scaled_float", "half_float"}


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and not name.startswith("dicom_analyzer"):
            out.update(flatten(v, name + "."))
        else:
            out[name] = v
    return out


def check(name: str, value: Any) -> None:
    if name == "dicom_analyzer" or name.startswith("dicom_analyzer."):
        return  # the custom namespace
    assert name in FIELDS, f"{name} is not an ECS field"
    f = FIELDS[name]
    values = value if isinstance(value, list) else [value]
    assert isinstance(value, list) == f["array"], f"{name}: array {f['array']} in ECS"
    for v in values:
        t = f["type"]
        if t in TEXT:
            assert isinstance(v, str), name
        elif t == "date":
            datetime.fromisoformat(v.replace("Z", "+00:00"))
        elif t in NUMBERS:
            assert isinstance(v, int) and not isinstance(v, bool), name
        elif t in FLOATS:
            assert isinstance(v, int | float), name
        elif t == "ip":
            ipaddress.ip_address(v)
        elif t == "boolean":
            assert isinstance(v, bool), name
        else:
            raise AssertionError(f"{name}: ECS type {t} not expected here")
        if f["allowed"]:
            assert v in f["allowed"], f"{name}: {v} not among {f['allowed']}"


@pytest.mark.parametrize(
    "capture", ["dicomweb.pcap", "harvest.pcap", "nmap_scan.pcap", "dicom_lab.pcap"]
)
def test_every_alert_is_a_valid_ecs_document(capture: str, tmp_path: Path) -> None:
    readers, _ = open_inputs([str(CAPTURES / capture)])
    config = dataclasses.replace(Config(), strict=True, salt=TEST_SALT, alerts_format="ecs")
    run_analysis(config, readers, tmp_path, "parquet", Progress(None, enabled=False))
    docs = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert docs
    for doc in docs:
        for name, value in flatten(doc).items():
            check(name, value)
        assert doc["event"]["kind"] == "alert" and doc["rule"]["id"]
        assert doc["@timestamp"].endswith("Z")
    techniques = {t for d in docs for t in d.get("threat", {}).get("technique", {}).get("id", [])}
    assert techniques  # ATT&CK where a rule maps to it (T1040 for cleartext patient data)


def test_a_wrong_document_fails_the_check() -> None:
    """The check is not vacuous."""
    for name, value in (
        ("event.kind", "finding"),  # not an allowed value
        ("event.severity", "high"),  # a long in ECS
        ("source.ip", "pacs.example"),
        ("event.category", "network"),  # an array in ECS
        ("dicom.patient", "x"),  # not ECS, and not our namespace
    ):
        with pytest.raises((AssertionError, ValueError)):
            check(name, value)


def test_native_alerts_are_the_default(tmp_path: Path) -> None:
    readers, _ = open_inputs([str(CAPTURES / "dicom_lab.pcap")])
    config = dataclasses.replace(Config(), strict=True, salt=TEST_SALT)
    run_analysis(config, readers, tmp_path, "parquet", Progress(None, enabled=False))
    first = json.loads((tmp_path / "alerts.jsonl").read_text().splitlines()[0])
    assert "rule" in first and isinstance(first["rule"], str) and "@timestamp" not in first
