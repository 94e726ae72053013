"""``carve``: exactly the frames of the flows asked for, as Wireshark itself groups them (its TCP
stream index, plus the IP fragments it reassembled into those segments), comments included."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import dpkt
import polars as pl
import pytest

from tests.helpers import CAPTURES

pytestmark = pytest.mark.tshark


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "analyzer", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )


def frames_of(path: Path) -> list[tuple[float, bytes]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        reader = dpkt.pcapng.Reader(f) if path.suffix == ".pcapng" else dpkt.pcap.Reader(f)
        return [(round(ts, 6), bytes(buf)) for ts, buf in reader]


def wireshark_frames(capture: Path, flows: list[tuple[str, int, str, int]]) -> set[int]:
    """Frame numbers of these TCP 4-tuples and of the fragments behind their segments."""
    clauses = " || ".join(
        f"(ip.addr=={a} && ip.addr=={b} && tcp.port=={ap} && tcp.port=={bp})"
        if ":" not in a
        else f"(ipv6.addr=={a} && ipv6.addr=={b} && tcp.port=={ap} && tcp.port=={bp})"
        for a, ap, b, bp in flows
    )
    out = subprocess.run(
        ["tshark", "-n", "-r", str(capture), "-Y", clauses, "-T", "fields"]
        + ["-e", "frame.number", "-e", "ip.fragment"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    numbers: set[int] = set()
    for line in out.splitlines():
        number, _, fragments = line.partition("\t")
        numbers.add(int(number))
        numbers.update(int(x) for x in fragments.split(",") if x)
    return numbers


def conn(capture: Path | str, tmp: Path) -> pl.DataFrame:
    out = tmp / "tables"
    assert cli("analyze", capture, "-o", out, "-q").returncode == 0
    return pl.read_parquet(out / "conn.parquet")


@pytest.mark.parametrize("name", ["ipv4_fragments.pcap", "ipv6_lab.pcap", "dicom_lab.pcap"])
def test_exactly_the_flows_frames(name: str, tmp_path: Path) -> None:
    capture = CAPTURES / name
    flows = conn(capture, tmp_path).filter(pl.col("service") == "dicom").head(2)
    out = tmp_path / "carved.pcapng"
    result = cli("carve", capture, "-o", out, *[a for u in flows["uid"] for a in ("--uid", u)])
    assert result.returncode == 0, result.stderr
    expected = wireshark_frames(
        capture,
        [(r["orig_h"], r["orig_p"], r["resp_h"], r["resp_p"]) for r in flows.iter_rows(named=True)],
    )
    original = frames_of(capture)
    assert frames_of(out) == [original[i - 1] for i in sorted(expected)]
    if name == "ipv4_fragments.pcap":
        assert any(b"\x20\x00" in f[20:22] for _, f in frames_of(out))  # a more-fragments frame


def test_rotated_files_merge_into_one_flow_with_its_findings(tmp_path: Path) -> None:
    rotated = CAPTURES / "rotated"
    tables = tmp_path / "tables"
    assert cli("analyze", rotated, "-o", tables, "-q").returncode == 0
    flows = pl.read_parquet(tables / "conn.parquet").filter(pl.col("service") == "dicom")
    uid = flows["uid"][0]
    out = tmp_path / "carved.pcapng"
    result = cli("carve", rotated, "-o", out, "--uid", uid, "--finding", tables / "alerts.jsonl")
    assert result.returncode == 0, result.stderr
    carved = frames_of(out)
    assert len(carved) == flows["orig_pkts"][0] + flows["resp_pkts"][0]
    comments = subprocess.run(
        [
            "tshark",
            "-n",
            "-r",
            str(out),
            "-Y",
            "frame.comment",
            "-T",
            "fields",
            "-e",
            "frame.comment",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert comments.count(f"dicom-analyzer flow {uid}") == 1  # on the first frame only
    rules = pl.read_parquet(tables / "finding.parquet").filter(pl.col("uids").list.contains(uid))
    assert rules.height > 0
    for rule in rules["rule"]:
        assert f"finding: {rule} (" in comments
    # the same from the finding table, and the command the finding itself gives
    command = rules["carve_command"][0]
    assert command.startswith("dicom-analyzer carve CAPTURE -o ") and f"--uid {uid}" in command


def test_unknown_flow_and_bad_inputs_are_one_line(tmp_path: Path) -> None:
    out = tmp_path / "x.pcapng"
    missing = cli("carve", CAPTURES / "dicom_lab.pcap", "-o", out, "--uid", "Cnosuchflow")
    assert missing.returncode == 3 and "no such flow" in missing.stderr
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"garbage")
    for args in (
        (bad, "-o", out, "--uid", "C1"),
        ("-", "-o", out, "--uid", "C1"),
        (CAPTURES / "dicom_lab.pcap", "-o", tmp_path / "no" / "x.pcapng", "--uid", "C1"),
        (CAPTURES / "dicom_lab.pcap", "-o", out, "--uid", "C1", "--finding", bad),
    ):
        r = cli("carve", *args)
        assert r.returncode in (3, 4), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_output_is_private(tmp_path: Path) -> None:
    flows = conn(CAPTURES / "dicom_lab.pcap", tmp_path)
    out = tmp_path / "carved.pcapng"
    assert (
        cli("carve", CAPTURES / "dicom_lab.pcap", "-o", out, "--uid", flows["uid"][0]).returncode
        == 0
    )
    assert out.stat().st_mode & 0o077 == 0
    assert (
        shutil.which("capinfos") is None
        or "pcapng"
        in subprocess.run(
            ["capinfos", "-t", str(out)], capture_output=True, text=True, check=False
        ).stdout.lower()
    )
