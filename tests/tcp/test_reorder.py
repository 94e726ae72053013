"""Reordering across directions, as a span port or aggregating tap that merges both directions
delivers it: the peer's ACK, even its answer, before the segment it acknowledges. The lab
capture is rewritten with segments moved after the packets that acknowledge (and answer) them,
in both directions, at the start of a flow, in the middle of a C-STORE and at its end; the
tables must be those of the capture as recorded, with nothing declared missing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dpkt
import polars as pl
import pytest

from tests.helpers import CAPTURES, analyze

LAB = CAPTURES / "dicom_lab.pcap"
Frame = tuple[float, bytes]
PER_FLOW = ("dicom_assoc", "dicom_context", "dimse", "dicom_object", "phi")


def frames() -> list[Frame]:
    with LAB.open("rb") as fh:
        return [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(fh)]


def tcp(buf: bytes) -> dpkt.tcp.TCP | None:
    ip = dpkt.ethernet.Ethernet(buf).data
    return ip.data if isinstance(getattr(ip, "data", None), dpkt.tcp.TCP) else None


def move_after(packets: list[Frame], i: int, j: int) -> list[Frame]:
    """Move packet ``i`` to just after packet ``j`` (j > i), stamped after it (a span port
    stamps in the order it delivers)."""
    moved = packets[i]
    out = packets[:i] + packets[i + 1 : j + 1] + [(packets[j][0] + 1e-6, moved[1])]
    out += packets[j + 1 :]
    return out


def index_of(packets: list[Frame], pred: Callable[[dpkt.tcp.TCP], bool], start: int = 0) -> int:
    for k in range(start, len(packets)):
        t = tcp(packets[k][1])
        if t is not None and pred(t):
            return k
    raise AssertionError("no such packet")


def acker(packets: list[Frame], i: int, answer: bool) -> int:
    """The first packet of the other direction that acknowledges packet ``i``'s bytes (with
    ``answer``: the first such packet that also carries data)."""
    t = tcp(packets[i][1])
    assert t is not None
    end = (t.seq + len(t.data)) & 0xFFFFFFFF
    return index_of(
        packets,
        lambda u: (
            u.sport == t.dport
            and u.dport == t.sport
            and bool(u.flags & dpkt.tcp.TH_ACK)
            and ((u.ack - end) & 0xFFFFFFFF) < 0x80000000
            and (bool(u.data) or not answer)
        ),
        i + 1,
    )


def client_data(port: int, nth: int) -> Callable[[list[Frame]], int]:
    def find(packets: list[Frame]) -> int:
        k = -1
        for _ in range(nth + 1):
            k = index_of(packets, lambda u: u.sport == port and bool(u.data), k + 1)
        return k

    return find


def store_flow_port() -> int:
    """The client port of the lab's C-STORE association (the one with several segments)."""
    packets = frames()
    i = index_of(packets, lambda u: u.dport == 11112 and len(u.data) == 1448)
    t = tcp(packets[i][1])
    assert t is not None
    return int(t.sport)


def scenario(name: str, packets: list[Frame]) -> list[Frame]:
    port = store_flow_port()
    if name == "rq-after-ac":  # the start: A-ASSOCIATE-RQ after the AC that answers it
        i = client_data(port, 0)(packets)
        return move_after(packets, i, acker(packets, i, answer=True))
    if name == "mid-store-after-ack":  # the middle of a C-STORE: a segment after its ACK
        i = client_data(port, 3)(packets)
        return move_after(packets, i, acker(packets, i, answer=False))
    if name == "pdv-header-after-answer":  # the segment holding the next command's header
        i = index_of(packets, lambda u: u.sport == port and len(u.data) == 12)  # a PDV header
        return move_after(packets, i, acker(packets, i, answer=True))
    if name == "release-after-rp":  # the end: A-RELEASE-RQ after the RP
        i = index_of(packets, lambda u: u.sport == port and u.data[:2] == b"\x05\x00")
        return move_after(packets, i, acker(packets, i, answer=True))
    if name == "server-answer-after-client":  # the other direction: a C-STORE-RSP after
        i = index_of(packets, lambda u: u.dport == port and u.data[:1] == b"\x04")
        return move_after(packets, i, acker(packets, i, answer=True))
    raise AssertionError(name)


SCENARIOS = [
    "rq-after-ac",
    "mid-store-after-ack",
    "pdv-header-after-answer",
    "release-after-rp",
    "server-answer-after-client",
]


def write(packets: list[Frame], path: Path) -> Path:
    with path.open("wb") as fh:
        w = dpkt.pcap.Writer(fh, snaplen=262144, linktype=1, nano=False)
        for ts, buf in packets:
            w.writepkt(buf, ts)
    return path


def rows(out: Path, table: str) -> list[str]:
    frame = pl.read_parquet(out / f"{table}.parquet")
    drop = [c for c in ("ts", "request_ts", "rtt") if c in frame.columns]  # moved packets' times
    return sorted(repr(r) for r in frame.drop(drop).rows())


@pytest.mark.parametrize("name", SCENARIOS)
def test_late_segment_fills_the_hole(name: str, tmp_path: Path) -> None:
    original = frames()
    moved = scenario(name, original)
    assert moved != original
    analyze(LAB, tmp_path / "as_recorded")
    analyze(write(moved, tmp_path / f"{name}.pcap"), tmp_path / "reordered")
    conn = pl.read_parquet(tmp_path / "reordered" / "conn.parquet")
    assert conn["missed_bytes"].sum() == 0
    weird = pl.read_parquet(tmp_path / "reordered" / "weird.parquet")
    assert not {"tcp_content_gap", "dicom_stream_gap", "dicom_request_unanswered"} & set(
        weird["name"]
    )
    for table in PER_FLOW:
        assert rows(tmp_path / "reordered", table) == rows(tmp_path / "as_recorded", table), table
    assoc = pl.read_parquet(tmp_path / "reordered" / "dicom_assoc.parquet")
    assert set(assoc["result"]) == {"accepted"} and not assoc["midstream"].any()


def test_without_grace_the_old_behaviour_loses_the_request(tmp_path: Path) -> None:
    """The same capture with the grace off (ack_grace_packets = 0): what the issue saw."""
    import dataclasses

    from analyzer.config import Config

    moved = scenario("rq-after-ac", frames())
    config = Config()
    config = dataclasses.replace(
        config, limits=dataclasses.replace(config.limits, ack_grace_packets=0)
    )
    analyze(write(moved, tmp_path / "m.pcap"), tmp_path / "o", config)
    conn = pl.read_parquet(tmp_path / "o" / "conn.parquet")
    assert conn["missed_bytes"].sum() > 0


def test_a_lost_segment_is_still_a_gap_after_the_grace(tmp_path: Path) -> None:
    analyze(CAPTURES / "lost_segment.pcap", tmp_path / "o")
    conn = pl.read_parquet(tmp_path / "o" / "conn.parquet")
    weird = pl.read_parquet(tmp_path / "o" / "weird.parquet")
    assert conn["missed_bytes"].sum() == 244 and "tcp_content_gap" in set(weird["name"])
    # the answer to the request cut by the gap is no longer taken for an orphan
    assert "dicom_response_without_request" not in set(weird["name"])
