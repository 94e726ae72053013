"""``live`` with everything of the SOC issue: two live sessions on loopback with real peers
(DCMTK echoscu, then pynetdicom under the same AE title) and one state directory; the second
session, with two workers, compares with what the first one learned, runs a site rule from
``[rules] modules``, suppresses a rule and writes ECS alerts; every part file is a whole Zeek
log that a Zeek log reader (parsezeeklogs) reads."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.live.test_live import PEERS, PY, needs_capture, peers, start_live  # noqa: F401

parsezeeklogs = pytest.importorskip("parsezeeklogs")


def session(out: Path, port: int, fmt: str, state: Path, client: list[str], *extra: str) -> None:
    live, _, stderr = start_live(
        out, f"tcp port {port}", "--format", fmt, "--state", str(state),
        "--stats-interval", "600", "--rotate-minutes", "600", *extra,
    )  # fmt: skip
    try:
        subprocess.run(client, check=True, capture_output=True, timeout=60)
        subprocess.run(client, check=True, capture_output=True, timeout=60)
        time.sleep(0.5)
    finally:
        live.send_signal(signal.SIGINT)
        assert live.wait(60) == 0, stderr.read_text()


def read_logs(out: Path, table: str) -> list[dict[str, object]]:
    """Every row of every part of ``table`` (``asset``: its snapshot), through the reader."""
    files = [out / "asset.log"] if table == "asset" else sorted((out / table).glob("part-*.log"))
    rows: list[dict[str, object]] = []
    for f in files:
        text = f.read_text()
        assert not f.name.startswith(".")
        if text.startswith("#separator"):  # TSV: Zeek's header and footer on every part
            assert f"#path\t{table}" in text and text.rstrip().splitlines()[-1].startswith("#close")
        rows.extend(parsezeeklogs.read_zeek(str(f)))
    return rows


SITE_RULE = """
from analyzer.findings.model import FlowRule, Severity
from analyzer.findings.rules.common import assoc_finding


class LabEcho(FlowRule):
    id = "lab_echo"
    title = "An association from the lab's pynetdicom"
    description = "Every association whose calling AE title is PYNETDICOM_SCU."
    severity = Severity.INFO

    def on_association_end(self, assoc):
        if assoc.calling_ae == "PYNETDICOM_SCU":
            self.ctx.emit(
                assoc_finding(self.id, assoc, self.severity, self.title, "seen", {}),
                dedup=(assoc.orig_h,),
            )
"""


@needs_capture
def test_live_supports_state_zeek_logs_site_rules_suppressions_and_ecs(
    tmp_path: Path,
    peers: dict[str, object],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = int(peers["a"])  # type: ignore[call-overload]
    state = tmp_path / "state"
    dcmtk = ["/usr/bin/echoscu", "-aet", "PYNETDICOM_SCU", "-aec", "PYSCP", "127.0.0.1", str(a)]
    session(tmp_path / "one", a, "zeek", state, dcmtk)
    doc = json.loads((state / "baseline.json").read_text())
    assert doc["runs"] == 1
    (version,) = [v for h, t, v, _ in doc["versions"] if t == "PYNETDICOM_SCU"]
    assert version.startswith("OFFIS_DCMTK")
    assoc = read_logs(tmp_path / "one", "dicom_assoc")
    assert [r["calling_ae"] for r in assoc] == ["PYNETDICOM_SCU"] * 2
    assert len(read_logs(tmp_path / "one", "conn")) == 2
    assert read_logs(tmp_path / "one", "asset") and read_logs(tmp_path / "one", "stats")
    assert not [
        r for r in read_logs(tmp_path / "one", "finding") if r["rule"] == "inventory_change"
    ]

    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "lab_rules.py").write_text(SITE_RULE)
    cfg = tmp_path / "site.toml"
    cfg.write_text(
        '[rules]\nmodules = ["lab_rules"]\n'
        '[[suppress]]\nrules = ["no_user_identity"]\nreason = "lab traffic, accepted"\n'
    )
    monkeypatch.setenv("PYTHONPATH", str(mods))
    pynetdicom = [PY, str(PEERS), "echo", "127.0.0.1", str(a), "PYSCP"]
    session(
        tmp_path / "two", a, "zeek-json", state, pynetdicom,
        "--workers", "2", "--config", str(cfg), "--alerts-format", "ecs",
    )  # fmt: skip
    changes = [r for r in read_logs(tmp_path / "two", "finding") if r["rule"] == "inventory_change"]
    (change,) = changes  # the second association is as the first: learned, not new
    assert str(change["detail"]).startswith(f"PYNETDICOM_SCU@127.0.0.1: {version} -> PYNETDICOM")
    assert change["count"] == 1
    assert len(read_logs(tmp_path / "two", "dicom_assoc")) == 2
    findings = read_logs(tmp_path / "two", "finding")
    site = [r for r in findings if r["rule"] == "lab_echo"]
    assert len(site) == 1 and site[0]["count"] == 2  # the site rule, folded over both
    quiet = [r for r in findings if r["rule"] == "no_user_identity"]
    assert quiet and all(r["suppressed"] == "suppress[1]" for r in quiet)
    alerts = [
        json.loads(line) for line in (tmp_path / "two" / "alerts.jsonl").read_text().splitlines()
    ]
    assert alerts and all(a["event"]["kind"] == "alert" and "@timestamp" in a for a in alerts)
    ids = {a["rule"]["id"] for a in alerts}
    assert {"inventory_change", "lab_echo"} <= ids and "no_user_identity" not in ids
    assert json.loads((state / "baseline.json").read_text())["runs"] == 2
