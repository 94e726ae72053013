"""Capture inputs: formats, byte orders, compression, stdin, many files, damage."""

from __future__ import annotations

import gzip
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import dpkt
import polars as pl
import pytest

from analyzer.capture import open_inputs
from analyzer.errors import InputError
from tests.helpers import CAPTURES, SAMPLE, analyze, record_offsets


def linktypes_of(path: Path) -> set[int]:
    """Link types declared in a capture's headers (pcap file header or every pcapng IDB)."""
    raw = path.read_bytes()
    if raw[:4] == b"\x0a\x0d\x0d\x0a":
        with open(path, "rb") as fh:
            return {dpkt.pcapng.Reader(fh).datalink()} | _pcapng_idb_types(raw)
    order = "<" if raw[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    return {struct.unpack(order + "I", raw[20:24])[0] & 0xFFFF}


def _pcapng_idb_types(raw: bytes) -> set[int]:
    out, pos = set(), 0
    while pos + 12 <= len(raw):
        btype, length = struct.unpack("<II", raw[pos : pos + 8])
        if btype == 1:
            out.add(struct.unpack("<H", raw[pos + 8 : pos + 10])[0])
        pos += length
    return out


def test_big_endian_pcap_reads_like_little_endian(tmp_path: Path) -> None:
    assert (CAPTURES / "bigendian.pcap").read_bytes()[:4] == b"\xa1\xb2\xc3\xd4"
    be = analyze(CAPTURES / "bigendian.pcap", tmp_path / "be")
    le = analyze(SAMPLE, tmp_path / "le")
    assert be.conn.equals(le.conn)


@pytest.mark.tshark
def test_nanosecond_pcap_keeps_sub_microsecond_time(tmp_path: Path) -> None:
    path = CAPTURES / "loopback_nano.pcap"
    assert path.read_bytes()[:4] == b"\x4d\x3c\xb2\xa1"
    first = subprocess.run(
        ["tshark", "-r", str(path), "-c", "1", "-T", "fields", "-e", "frame.time_epoch"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ts = analyze(path, tmp_path).conn["ts"][0]
    assert abs(ts - float(first)) < 1e-6
    assert round(ts * 1e9) % 1000 != 0 or first.endswith("000")


def test_pcapng_with_two_interfaces_of_different_link_types(tmp_path: Path) -> None:
    path = CAPTURES / "two_interfaces.pcapng"
    assert _pcapng_idb_types(path.read_bytes()) == {1, 113}  # Ethernet and dumpcap's "any" (SLL)
    conn = analyze(path, tmp_path).conn
    assert sorted(conn["resp_h"].to_list()) == ["10.231.0.2", "127.0.0.1"]
    assert conn["service"].to_list() == ["dicom", "dicom"]


def test_gzip_compressed_capture(tmp_path: Path) -> None:
    gz = tmp_path / "sample.pcap.gz"
    with open(SAMPLE, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert analyze(gz, tmp_path / "gz").conn.equals(analyze(SAMPLE, tmp_path / "plain").conn)


def test_stdin(tmp_path: Path) -> None:
    out = tmp_path / "stdin"
    with open(SAMPLE, "rb") as fh:
        done = subprocess.run(
            [sys.executable, "-m", "analyzer", "analyze", "-", "-o", str(out), "-q"],
            stdin=fh,
            capture_output=True,
            text=True,
        )
    assert done.returncode == 0, done.stderr
    # standard input has no known size: the default is every core, whose rows come grouped by
    # worker, so compare the rows as a multiset
    piped = pl.read_parquet(out / "conn.parquet")
    whole = analyze(SAMPLE, tmp_path / "file").conn
    assert piped.height == whole.height and sorted(piped.rows()) == sorted(whole.rows())


def test_interleaved_files_are_merged_in_time_order(tmp_path: Path) -> None:
    """Two files holding alternate packets of one capture give that capture back."""
    with open(SAMPLE, "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        packets = [(ts, bytes(buf)) for ts, buf in reader]
    for name, part in (("odd.pcap", packets[1::2]), ("even.pcap", packets[0::2])):
        with open(tmp_path / name, "wb") as fh:
            w = dpkt.pcap.Writer(fh, snaplen=262144, linktype=1)
            for ts, buf in part:
                w.writepkt(buf, ts)
    split = analyze([tmp_path / "odd.pcap", tmp_path / "even.pcap"], tmp_path / "split")
    whole = analyze(SAMPLE, tmp_path / "whole")
    assert split.conn.drop("history").equals(whole.conn.drop("history"))
    # packets of two files with the same microsecond cannot be ordered by anything; such
    # swaps look like retransmissions (T) but never change bytes, gaps or states
    strip = [h.replace("T", "").replace("t", "") for h in split.conn["history"]]
    assert strip == whole.conn["history"].to_list()


def test_truncated_last_record_keeps_everything_before(tmp_path: Path) -> None:
    result = analyze(CAPTURES / "truncated_tail.pcap", tmp_path)
    assert result.conn.height >= 2
    names = result.weird.filter(pl.col("source") == "capture")["name"].to_list()
    assert names == ["capture_truncated"]


def test_implausible_record_length_stops_the_file_not_the_run(tmp_path: Path) -> None:
    raw = bytearray(SAMPLE.read_bytes())
    pos, n = 24, 0
    while n < 30:  # walk to the 31st record header
        caplen = struct.unpack("<I", raw[pos + 8 : pos + 12])[0]
        pos += 16 + caplen
        n += 1
    raw[pos + 8 : pos + 12] = struct.pack("<I", 0x7FFFFFFF)
    bad = tmp_path / "corrupt.pcap"
    bad.write_bytes(bytes(raw))
    result = analyze(bad, tmp_path / "out")
    assert result.summary.stats.packets == 30
    assert "capture_corrupt_record" in result.weird["name"].to_list()


def test_hostile_pcapng_block_length(tmp_path: Path) -> None:
    raw = bytearray((CAPTURES / "two_interfaces.pcapng").read_bytes())
    pos, blocks = 0, 0
    while blocks < 8:
        length = struct.unpack("<I", raw[pos + 4 : pos + 8])[0]
        pos += length
        blocks += 1
    raw[pos + 4 : pos + 8] = struct.pack("<I", 0xFFFFFFF0)
    bad = tmp_path / "hostile.pcapng"
    bad.write_bytes(bytes(raw))
    result = analyze(bad, tmp_path / "out")
    assert "capture_corrupt_record" in result.weird["name"].to_list()
    assert result.summary.stats.packets > 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"GET / HTTP/1.1\r\n\r\n", "not a pcap or pcapng capture"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "pcap file header is cut off"),
    ],
)
def test_not_a_capture_is_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "input.pcap"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        open_inputs([str(path)])


def test_directory_skips_non_captures(tmp_path: Path) -> None:
    shutil.copy(SAMPLE, tmp_path / "a.pcap")
    (tmp_path / "README.txt").write_text("notes")
    readers, warnings = open_inputs([str(tmp_path)])
    assert [Path(r.name).name for r in readers] == ["a.pcap"]
    assert len(warnings) == 1 and "README.txt" in warnings[0]


@pytest.mark.parametrize(
    ("name", "linktype"),
    [
        ("dicom_lab.pcap", 1),
        ("any_sll.pcap", 113),
        ("any_sll2.pcap", 276),
        ("raw_ip.pcap", 101),
        ("bsd_null.pcap", 0),
        ("bsd_loop.pcap", 108),
        ("vlan_8021q.pcap", 1),
        ("qinq.pcap", 1),
        ("ipv4_fragments.pcap", 1),
    ],
)
def test_every_link_type_comes_from_a_capture(name: str, linktype: int, tmp_path: Path) -> None:
    path = CAPTURES / name
    assert linktypes_of(path) == {linktype}
    result = analyze(path, tmp_path)
    assert result.conn.height > 0
    assert (result.conn["service"] == "dicom").sum() > 0
    assert result.summary.stats.malformed == 0


def test_vlan_ids_are_recorded(tmp_path: Path) -> None:
    assert analyze(CAPTURES / "vlan_8021q.pcap", tmp_path / "v").conn[
        "vlan"
    ].unique().to_list() == [100]
    assert analyze(CAPTURES / "qinq.pcap", tmp_path / "q").conn["vlan"].unique().to_list() == [200]


def test_reencapsulated_captures_keep_the_flows(tmp_path: Path) -> None:
    base = analyze(SAMPLE, tmp_path / "base").conn.drop("vlan")
    for name in ("vlan_8021q.pcap", "qinq.pcap", "bsd_null.pcap"):
        other = analyze(CAPTURES / name, tmp_path / name).conn.drop("vlan")
        # Ethernet headers are gone or longer, IP and TCP are not: everything else is equal
        assert other.equals(base), name


def test_ipv4_fragments_are_reassembled(tmp_path: Path) -> None:
    result = analyze(CAPTURES / "ipv4_fragments.pcap", tmp_path)
    assert result.summary.stats.fragments > 10
    (row,) = result.conn.rows(named=True)
    assert row["conn_state"] == "SF" and row["missed_bytes"] == 0 and row["service"] == "dicom"


def test_ipv6(tmp_path: Path) -> None:
    conn = analyze(CAPTURES / "ipv6_lab.pcap", tmp_path).conn
    assert set(conn["resp_h"].to_list()) == {"fd00:dc::2"}
    assert (conn["service"] == "dicom").sum() == 3


def test_a_span_reads_the_records_that_begin_in_it() -> None:
    """A span ``(start, end)`` of a plain pcap file takes every record that begins before
    ``end`` whole, however ``end`` falls (inside a record's data, inside its header, on the
    next boundary), and says where it stopped; the rest of the file takes the others."""
    import dataclasses

    data = SAMPLE.read_bytes()
    offsets = record_offsets(data)
    last = offsets[-1]
    assert last + 16 + int.from_bytes(data[last + 8 : last + 12], "little") == len(data)
    assert len(offsets) > 20
    reader = open_inputs([str(SAMPLE)])[0][0]
    every = list(reader.records(lambda *a: None))
    k = len(offsets) // 2
    for end in (offsets[k], offsets[k] + 5, offsets[k] + 20, offsets[k + 1] - 1):
        weird: list[tuple[float, str, str]] = []
        head = dataclasses.replace(reader, span=(24, end))
        got = list(head.records(lambda ts, name, detail, w=weird: w.append((ts, name, detail))))
        begun = sum(1 for o in offsets if o < end)
        assert got == every[:begun] and not weird
        assert head.stopped_at == (offsets[begun] if begun < len(offsets) else len(data))
        tail = dataclasses.replace(reader, span=(head.stopped_at, len(data)))
        assert got + list(tail.records(lambda *a: None)) == every
