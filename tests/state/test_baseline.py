"""The persistent baseline (``--state DIR``, ``[state] dir``, ``dicom-analyzer baseline``):
learned, kept, merged and bounded across runs; what it changes in ``inventory_change`` and
``third_party_move``; a corrupt or foreign state is one clear line."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from analyzer.config import Config, load_config
from analyzer.dicom.consts import CommandField as CF
from analyzer.findings.rules import inventory_change, query
from analyzer.findings.summary import FactKind
from analyzer.state.baseline import Baseline
from analyzer.state.store import FILE, StateDir, StateError
from tests.findings.harness import CLIENT, SERVER, RuleHarness, assoc_summary, fact
from tests.helpers import CAPTURES, ROOT, TEST_SALT, analyze

PY = sys.executable
TWO = CAPTURES / "two_interfaces.pcapng"
"""A storescp called STORESCP at 10.231.0.2 and, in a second association, at 127.0.0.1."""


def kinds(h: RuleHarness) -> list[str]:
    return [str(f.evidence["kind"]) for f in h.findings]


def learned(**kw: object) -> Baseline:
    """A baseline as a state directory with one earlier run holds it."""
    h = RuleHarness(inventory_change.InventoryChange)
    h.rule.on_association(assoc_summary(**kw))
    b = h.baseline
    b.runs, b.learned_before = 1, True
    return b


# -- the rules, on hand-built records -----------------------------------------------------


def test_without_an_earlier_run_nothing_is_new_just_for_being_first() -> None:
    h = RuleHarness(inventory_change.InventoryChange)
    h.rule.on_association(assoc_summary())
    h.rule.on_association(assoc_summary(orig_h="10.0.0.77", calling_ae="OTHER"))
    assert h.findings == []  # one run alone: every host is new, none is reported as such


def test_a_learned_baseline_reports_new_hosts_and_peers() -> None:
    h = RuleHarness(inventory_change.InventoryChange, baseline=learned())
    h.rule.on_association(assoc_summary())  # as before
    assert h.findings == []
    h.rule.on_association(assoc_summary(orig_h="10.0.0.77", calling_ae="NEWCOMER"))
    assert kinds(h) == ["new DICOM host"] and h.severities == ["low"]
    assert h.findings[0].evidence == {"kind": "new DICOM host", "host": "10.0.0.77", "role": "scu"}
    h.rule.on_association(assoc_summary(orig_h="10.0.0.77", calling_ae="NEWCOMER"))
    assert len(h.findings) == 1  # learned at once
    h.rule.on_association(
        assoc_summary(
            orig_h=SERVER,
            resp_h="10.0.0.88",
            calling_ae="PACS",
            called_ae="ROGUE",
            request_version="PACS_1",
        )  # fmt: skip
    )
    assert kinds(h)[1:] == ["new DICOM host"] and h.severities[1] == "medium"  # a new server
    h.rule.on_association(assoc_summary(orig_h="10.0.0.77", resp_h=CLIENT, called_ae="MODALITY"))
    assert kinds(h)[-1] == "new peer"


def test_versions_titles_and_destinations_compare_with_earlier_runs() -> None:
    b = learned(request_version="LAB_1")
    b.fact(fact(FactKind.MOVE_REQUEST, ae="ARCHIVE"))
    h = RuleHarness(inventory_change.InventoryChange, baseline=b)
    h.rule.on_association(assoc_summary(request_version="LAB_2"))
    h.rule.on_association(assoc_summary(orig_h="10.0.0.6", calling_ae="MODALITY"))
    h.rule.on_fact(fact(FactKind.MOVE_REQUEST, ae="ARCHIVE"))
    h.rule.on_fact(fact(FactKind.MOVE_REQUEST, ae="ELSEWHERE"))
    assert kinds(h) == [
        "new implementation version",
        "new DICOM host",
        "AE title from a second address",
        "new move destination",
    ]
    assert h.findings[0].detail == f"MODALITY@{CLIENT}: LAB_1 -> LAB_2"


def test_first_move_destination_is_new_once_a_baseline_exists() -> None:
    b = learned()
    assert not b.move_destinations
    h = RuleHarness(inventory_change.InventoryChange, baseline=b)
    h.rule.on_fact(fact(FactKind.MOVE_REQUEST, ae="ARCHIVE"))
    assert kinds(h) == ["new move destination"]


def test_third_party_move_to_a_host_new_to_the_baseline_is_high() -> None:
    def run(b: Baseline | None, dest_h: str) -> list[str]:
        h = RuleHarness(query.ThirdPartyMove, baseline=b)
        move = dict(calling_ae="WS", message_id=1)
        h.rule.on_fact(fact(FactKind.MOVE_REQUEST, ae="ARCHIVE", message_ts=200.0, **move))
        # the sub-association is learned before the final C-MOVE response arrives
        h.baseline.association(assoc_summary(ts=201.0, orig_h=SERVER, resp_h=dest_h))
        h.rule.on_fact(fact(FactKind.STORE, ae="WS", ae_message_id=1, resp_h=dest_h))
        h.rule.on_fact(fact(FactKind.RETRIEVE_RESPONSE, command_field=CF.C_MOVE_RSP, **move))
        return [f"{f.severity.label}: {f.detail}" for f in h.findings]

    assert run(None, "10.0.0.60") == [
        "medium: WS asked PACS to send data to ARCHIVE at 10.0.0.60:104"
    ]
    b = learned(resp_h="10.0.0.50")
    assert run(b, "10.0.0.50")[0].startswith("medium")  # known before the move
    (line,) = run(learned(resp_h="10.0.0.50"), "10.0.0.60")
    assert line.startswith("high") and "a host the baseline had not seen before" in line


# -- the state file ---------------------------------------------------------------------------


def test_state_round_trips_and_merges_concurrent_writers(tmp_path: Path) -> None:
    one, two = StateDir(tmp_path / "s", 100, 100), StateDir(tmp_path / "s", 100, 100)
    a, b = one.load(), two.load()
    assert not a.learned_before and a.runs == 0
    a.association(assoc_summary(calling_ae="A_SIDE", request_version="V1", ts=10.0))
    b.association(assoc_summary(orig_h="10.0.0.99", calling_ae="B_SIDE", ts=20.0))
    b.fact(fact(FactKind.MOVE_REQUEST, ae="ARCHIVE"))
    one.save(a)
    two.save(b)  # written meanwhile by another process: merged, not overwritten
    got = StateDir(tmp_path / "s", 100, 100).load()
    assert got.learned_before and got.runs == 2
    assert set(got.hosts) == {CLIENT, SERVER, "10.0.0.99"}
    assert got.host_of("A_SIDE") == CLIENT and got.host_of("B_SIDE") == "10.0.0.99"
    assert got.version_of(CLIENT, "A_SIDE") == "V1" and got.knows_destination("ARCHIVE")
    assert got.knows_peer(CLIENT, SERVER, 104) and got.hosts[SERVER].roles == {"scp"}
    one.save(a)  # a second save of the same run does not count it again
    assert StateDir(tmp_path / "s", 100, 100).load().runs == 2
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "s" / FILE).stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [".lock", FILE]  # no temp file


def test_state_is_bounded_by_last_sight() -> None:
    b = Baseline(max_hosts=50, max_entries=1000)
    for i in range(200):
        b.association(
            assoc_summary(orig_h=f"10.1.{i // 250}.{i % 250}", calling_ae=f"T{i}", ts=float(i))
        )
    assert len(b.hosts) <= 50
    assert "10.1.0.199" in b.hosts and "10.1.0.0" not in b.hosts  # the oldest went first
    merged = Baseline(max_hosts=10, max_entries=10)
    merged.merge(b)
    assert len(merged.hosts) <= 10 and len(merged.ae_titles) <= 10


@pytest.mark.parametrize(
    "content, says",
    [
        (b"{not json", "corrupt baseline: not JSON"),
        (b"\x00\xff\xfe garbage", "corrupt baseline: not JSON"),
        (b'{"hello": "world"}', "not a dicom-analyzer baseline"),
        (b"[1, 2, 3]", "not a dicom-analyzer baseline"),
        (b'{"format": "dicom-analyzer baseline", "version": 9}', "written by a newer"),
        (
            b'{"format": "dicom-analyzer baseline", "version": 1, "hosts": {"h": 5}}',
            "corrupt baseline: a host is not an object",
        ),
        (
            b'{"format": "dicom-analyzer baseline", "version": 1, "peers": [["a", "b", "x", 1]]}',
            "corrupt baseline: a peer entry",
        ),
        (b"[" * 100_000, "corrupt baseline: not JSON"),
    ],
)
def test_a_corrupt_or_foreign_state_is_one_line_and_left_alone(
    tmp_path: Path, content: bytes, says: str
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / FILE).write_bytes(content)
    with pytest.raises(StateError, match=says):
        StateDir(state, 100, 100).load()
    r = subprocess.run(
        [
            PY,
            "-m",
            "analyzer",
            "analyze",
            str(TWO),
            "-o",
            str(tmp_path / "out"),
            "--state",
            str(state),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dicom-analyzer: error: ") and says in lines[0]
    assert (state / FILE).read_bytes() == content  # never silently reset
    assert not (tmp_path / "out" / "conn.parquet").exists()  # failed before any work


def test_state_directory_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    r = subprocess.run(
        [PY, "-m", "analyzer", "baseline", str(TWO), "--state", str(tmp_path / "file")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "is a file" in r.stderr


# -- end to end: analyze twice, baseline, workers, config ------------------------------------


def split(tmp_path: Path) -> tuple[Path, Path]:
    """two_interfaces.pcapng cut by Wireshark into the 10.231.0.0/24 association and the
    loopback one: STORESCP's first home and its second."""
    parts = []
    for name, host in (("first", "10.231.0.2"), ("second", "127.0.0.1")):
        out = tmp_path / f"{name}.pcapng"
        subprocess.run(
            ["tshark", "-r", str(TWO), "-Y", f"ip.addr=={host}", "-w", str(out)],
            check=True,
            capture_output=True,
        )
        parts.append(out)
    return parts[0], parts[1]


def inventory(out: Path) -> list[tuple[str, str]]:
    f = pl.read_parquet(out / "finding.parquet").filter(pl.col("rule") == "inventory_change")
    return sorted(f.select("severity", "detail").iter_rows())


needs_tshark = pytest.mark.skipif(not shutil.which("tshark"), reason="needs tshark")


@needs_tshark
def test_analyze_twice_the_second_run_reflects_the_first(tmp_path: Path) -> None:
    first, second = split(tmp_path)
    state = tmp_path / "state"
    alone = analyze(second, tmp_path / "alone")
    assert inventory(tmp_path / "alone") == [] and alone.summary.findings > 0
    cfg = dataclasses.replace(Config(), state_dir=state)
    analyze(first, tmp_path / "run1", cfg)
    assert inventory(tmp_path / "run1") == []  # nothing to compare with yet
    doc = json.loads((state / FILE).read_text())
    assert doc["runs"] == 1 and doc["ae_titles"]["STORESCP"]["host"] == "10.231.0.2"
    analyze(second, tmp_path / "run2", cfg)
    assert inventory(tmp_path / "run2") == [
        ("low", "127.0.0.1 (scu, MODALITY_CT1) is not in the baseline"),
        ("medium", "127.0.0.1 (scp, STORESCP) is not in the baseline"),
        ("medium", "STORESCP first seen at 10.231.0.2, now at 127.0.0.1"),
    ]
    analyze(second, tmp_path / "run3", cfg)  # the same traffic again: nothing new any more
    assert inventory(tmp_path / "run3") == [
        ("medium", "STORESCP first seen at 10.231.0.2, now at 127.0.0.1")
    ]
    assert json.loads((state / FILE).read_text())["runs"] == 3


@needs_tshark
@pytest.mark.parametrize("workers", ["1", "2"])
def test_baseline_command_learns_and_analyze_compares(tmp_path: Path, workers: str) -> None:
    first, second = split(tmp_path)
    state = tmp_path / "state"
    r = subprocess.run(
        [PY, "-m", "analyzer", "baseline", str(first), "--state", str(state), "--workers", workers],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    assert f"baseline: {state / FILE}: 2 hosts, 2 ae titles" in r.stderr
    assert sorted(p.name for p in state.iterdir()) == [".lock", FILE]  # no tables left behind
    cfg = tmp_path / "site.toml"
    cfg.write_text('[state]\ndir = "state"\n[privacy]\nsalt = "a-test-salt"\n')
    assert load_config(cfg).state_dir == state  # relative to the config file
    out = tmp_path / "out"
    r = subprocess.run(
        [PY, "-m", "analyzer", "analyze", str(second), "-o", str(out), "--config", str(cfg),
         "--workers", workers, "-q"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert ("medium", "STORESCP first seen at 10.231.0.2, now at 127.0.0.1") in inventory(out)
    assert json.loads((state / FILE).read_text())["runs"] == 2


def test_the_same_capture_twice_learns_and_then_stays_quiet(tmp_path: Path) -> None:
    """A capture with many hosts and titles: the second run finds nothing new in it (the first
    run's "first C-MOVE to NOWHERE" was new then), and its other findings are the first's."""
    cfg = dataclasses.replace(Config(), state_dir=tmp_path / "state", salt=TEST_SALT)
    for n in (1, 2):
        analyze(CAPTURES / "orthanc_qr.pcap", tmp_path / f"run{n}", cfg)
    one, two = (pl.read_parquet(tmp_path / f"run{n}" / "finding.parquet") for n in (1, 2))
    new_kinds = ("new DICOM host", "new peer", "new move destination")
    assert not two.filter(pl.col("detail").str.contains("|".join(new_kinds))).height
    cols = ["rule", "severity", "detail"]
    was_new = pl.col("detail").str.starts_with("first C-MOVE to")
    assert one.filter(was_new).height == 1
    assert sorted(two.select(cols).rows()) == sorted(one.filter(~was_new).select(cols).rows())
    doc = json.loads((tmp_path / "state" / FILE).read_text())
    assert doc["move_destinations"] and doc["peers"] and doc["runs"] == 2
    assert os.stat(tmp_path / "state" / FILE).st_mode & 0o777 == 0o600


def test_a_state_that_cannot_be_written_is_an_anomaly_not_a_lost_run(tmp_path: Path) -> None:
    from analyzer.findings.cross_flow import CrossFlowStage
    from analyzer.findings.sink import FindingSink
    from analyzer.logs.sinks import ListSink

    state = StateDir(tmp_path / "state", 100, 100)
    rows: list[tuple[object, ...]] = []
    stage = CrossFlowStage(
        [], FindingSink(ListSink(), {}), False, lambda *row: rows.append(row), None,
        state.load(), state,
    )  # fmt: skip
    stage.baseline.association(assoc_summary())
    shutil.rmtree(tmp_path / "state")
    (tmp_path / "state").write_text("not a directory any more")
    stage.finish()
    ((uid, _, name, detail),) = rows
    assert uid is None and name == "analyzer_state_not_saved" and "is a file" in str(detail)
