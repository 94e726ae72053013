"""Inputs a forensic analyst actually has: cut and corrupt gzip captures, damage reported by
name even with -q, output directories that are too open or hold another run's tables."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import dpkt
import polars as pl

from tests.helpers import CAPTURES

SAMPLE = CAPTURES / "dicom_lab.pcap"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analyzer", *args], capture_output=True, text=True)


def zcat_tcp_packets(path: Path) -> int:
    """What ``zcat`` recovers of a cut file: the TCP packets of every whole record."""
    out = subprocess.run(["zcat", str(path)], capture_output=True, check=False).stdout
    n, pos = 0, 24
    while pos + 16 <= len(out):
        caplen = int.from_bytes(out[pos + 8 : pos + 12], "little")
        if pos + 16 + caplen > len(out):
            break
        eth = dpkt.ethernet.Ethernet(out[pos + 16 : pos + 16 + caplen])
        n += isinstance(getattr(eth.data, "data", None), dpkt.tcp.TCP)
        pos += 16 + caplen
    return n


def zcat_tcp_packets_of(data: bytes, tmp_path: Path) -> int:
    whole = tmp_path / "whole.pcap.gz"
    whole.write_bytes(data)
    return zcat_tcp_packets(whole)


def test_cut_gzip_is_analysed_up_to_the_cut(tmp_path: Path) -> None:
    whole = gzip.compress(SAMPLE.read_bytes())
    total = zcat_tcp_packets_of(whole, tmp_path)
    for keep in (len(whole) // 8, len(whole) // 2, len(whole) - 40):
        cut = tmp_path / f"cut_{keep}.pcap.gz"
        cut.write_bytes(whole[:keep])
        out = tmp_path / f"out_{keep}"
        done = run("analyze", str(cut), "-o", str(out), "-q")
        assert done.returncode == 0, done.stderr
        assert str(cut) in done.stderr and "capture_corrupt_compression" in done.stderr
        conn = pl.read_parquet(out / "conn.parquet")
        weird = pl.read_parquet(out / "weird.parquet")
        assert conn.height > 0
        # every packet that zcat recovers is analysed (the old reader lost up to 1 MiB)
        packets = conn["orig_pkts"].sum() + conn["resp_pkts"].sum()
        assert packets >= zcat_tcp_packets(cut) and packets < total
        assert "capture_corrupt_compression" in set(weird["name"])


def test_corrupt_gzip_at_the_start_is_exit_3_naming_the_file(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(SAMPLE.read_bytes()))
    data[20:40] = b"\xff" * 20
    bad = tmp_path / "bad.pcap.gz"
    bad.write_bytes(bytes(data))
    done = run("analyze", str(bad), "-o", str(tmp_path / "o"))
    assert done.returncode == 3 and str(bad) in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_damage_warning_names_the_file_even_when_quiet(tmp_path: Path) -> None:
    done = run("analyze", str(CAPTURES / "truncated_tail.pcap"), "-o", str(tmp_path / "o"), "-q")
    assert done.returncode == 0
    assert "truncated_tail.pcap" in done.stderr and "capture_truncated" in done.stderr


def test_output_directory_open_to_others_is_restricted(tmp_path: Path) -> None:
    out = tmp_path / "wide"
    out.mkdir(mode=0o755)
    out.chmod(0o755)
    done = run("analyze", str(SAMPLE), "-o", str(out), "-q")
    assert done.returncode == 0, done.stderr
    assert out.stat().st_mode & 0o777 == 0o700
    assert "restricted to 700" in done.stderr


def test_tables_of_another_format_are_reported(tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert run("analyze", str(SAMPLE), "-o", str(out), "-q", "--format", "csv").returncode == 0
    done = run("analyze", str(SAMPLE), "-o", str(out), "-q")
    assert done.returncode == 0 and "another format" in done.stderr and "conn.csv" in done.stderr


def test_crosscheck_of_a_missing_file_says_so(tmp_path: Path) -> None:
    done = run("crosscheck", str(tmp_path / "nope.pcap"))
    assert done.returncode == 3 and "no such file" in done.stderr


def test_output_that_cannot_be_created_is_exit_4(tmp_path: Path) -> None:
    done = run("analyze", str(SAMPLE), "-o", "/proc/x/y", "-q")
    assert done.returncode == 4 and "Traceback" not in done.stderr
