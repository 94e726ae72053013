"""Every finding's Wireshark filter works as printed in a default tshark, and so does its tshark
command: on the sample captures each matches at least one frame, and only frames of the
finding's flows."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import polars as pl
import pytest

from tests.helpers import SAMPLE_FILES, analyze

FIELDS = ["ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport"]


def frames(args: list[str]) -> set[tuple[str, int, str, int]]:
    """(src, sport, dst, dport) of every frame tshark selects."""
    extra = ["-T", "fields", *(a for f in FIELDS for a in ("-e", f))]
    run = subprocess.run(args + extra, capture_output=True, text=True)
    assert run.returncode in (0, 2), run.stderr  # 2: the capture is cut short, read up to it
    assert "isn't a valid" not in run.stderr and "not a valid" not in run.stderr, run.stderr
    out = run.stdout
    seen = set()
    for line in out.splitlines():
        ip4s, ip6s, sp, ip4d, ip6d, dp = (line.split("\t") + [""] * 6)[:6]
        if sp and dp:  # the first address of tunnelled frames is the outer one
            src, dst = (ip4s or ip6s).split(",")[0], (ip4d or ip6d).split(",")[0]
            seen.add((src, int(sp.split(",")[0]), dst, int(dp.split(",")[0])))
    return seen


@pytest.mark.parametrize("capture", SAMPLE_FILES, ids=[p.name for p in SAMPLE_FILES])
def test_filters_select_the_findings_frames(capture: Path, tmp_path: Path) -> None:
    analyze(capture, tmp_path)
    findings = pl.read_parquet(tmp_path / "finding.parquet")
    conn = pl.read_parquet(tmp_path / "conn.parquet")
    ends = {
        r["uid"]: {
            (r["orig_h"], r["orig_p"], r["resp_h"], r["resp_p"]),
            (r["resp_h"], r["resp_p"], r["orig_h"], r["orig_p"]),
        }
        for r in conn.iter_rows(named=True)
    }
    checked: dict[str, set[tuple[str, int, str, int]]] = {}
    for f in findings.iter_rows(named=True):
        flows = set().union(*(ends.get(u, set()) for u in f["uids"] or [f["uid"]] if u))
        for how, args in (
            ("filter", ["tshark", "-n", "-r", str(capture), "-Y", f["wireshark_filter"]]),
            ("command", shlex.split(f["tshark_command"].replace("CAPTURE", str(capture)))),
        ):
            key = " ".join(args)
            if key not in checked:
                checked[key] = frames(args)
            got = checked[key]
            assert got, (f["rule"], how, key)
            per_flow = "tcp.port==" in f["wireshark_filter"]  # not a host's behaviour
            if flows and per_flow and not f["uids_omitted"]:
                assert got <= flows, (f["rule"], how, key, got - flows)
            elif f["orig_h"]:  # more flows than the row lists: at least the hosts are its own
                assert all(f["orig_h"] in (s, d) for s, _, d, _ in got), (f["rule"], how, key)


def test_clauses_that_a_default_wireshark_cannot_match_move_to_the_command() -> None:
    from analyzer.findings.rules.common import filters

    flow = "ip.addr==10.0.0.1 && ip.addr==10.0.0.2 && tcp.port==40000 && tcp.port==4242"
    default, command = filters(flow, 4242, 'dicom.tag.value.str contains "*"')
    assert default == flow
    assert "-d tcp.port==4242,dicom" in command and "-o dicom.tag_tree:TRUE" in command
    default, command = filters(flow.replace("4242", "104"), 104, "dicom.pdu.type == 7")
    assert default.endswith("&& dicom.pdu.type == 7") and "-d " not in command
