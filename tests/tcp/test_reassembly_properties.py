"""Property tests: whatever the capture did to a stream's segments, reassembly is exact."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.config import Limits
from tests.helpers import ACK, CLIENT, FIN, PSH, SERVER, SYN, Driver

MASK = 0xFFFFFFFF


@st.composite
def segmented(draw: st.DrawFn, max_size: int = 3000) -> tuple[bytes, int, list[tuple[int, int]]]:
    """A payload, an ISN (wrap-around included) and its cut into [start, end) segments."""
    data = draw(st.binary(min_size=1, max_size=max_size))
    isn = draw(st.one_of(st.integers(0, MASK), st.integers(MASK - 4000, MASK)))
    cuts = (
        sorted(draw(st.sets(st.integers(1, len(data) - 1), max_size=40))) if len(data) > 1 else []
    )
    bounds = [0, *cuts, len(data)]
    return data, isn, list(zip(bounds, bounds[1:], strict=False))


def open_flow(drv: Driver, isn: int, ts: float = 1.0) -> None:
    drv.seg(ts, SYN, isn)
    drv.seg(ts, SYN | ACK, 5000, isn + 1, from_client=False)
    drv.seg(ts, ACK, isn + 1, 5001)


@settings(max_examples=150, deadline=None)
@given(segmented(), st.randoms(use_true_random=False), st.data())
def test_any_order_duplication_and_overlap_gives_the_original_bytes(case, rnd, draw) -> None:
    data, isn, segments = case
    sent = list(segments)
    sent += [
        segments[i] for i in draw.draw(st.lists(st.integers(0, len(segments) - 1), max_size=10))
    ]
    for _ in range(draw.draw(st.integers(0, 6))):  # overlapping ranges across boundaries
        a = draw.draw(st.integers(0, len(data) - 1))
        b = draw.draw(st.integers(a + 1, len(data)))
        sent.append((a, b))
    rnd.shuffle(sent)
    drv = Driver()
    open_flow(drv, isn)
    for a, b in sent:
        drv.seg(2.0, ACK | PSH, isn + 1 + a, 5001, data[a:b])
    drv.seg(3.0, FIN | ACK, isn + 1 + len(data), 5001)
    drv.seg(3.0, FIN | ACK, 5001, isn + 2 + len(data), from_client=False)
    drv.seg(3.0, ACK, isn + 2 + len(data), 5002)
    drv.finish()
    sink = drv.sinks[0]
    assert sink.stream(0) == [data]
    flow = drv.conns[0]
    assert flow.streams[0].missed == 0
    assert flow.streams[0].noff == len(data)
    assert flow.conn_state() == "SF"
    assert "tcp_retransmission_inconsistent" not in drv.weird_names()
    assert "tcp_overlap_inconsistent" not in drv.weird_names()


@settings(max_examples=150, deadline=None)
@given(segmented(), st.randoms(use_true_random=False), st.data(), st.booleans())
def test_dropped_segments_become_gaps_of_exactly_their_size(case, rnd, draw, acked) -> None:
    data, isn, segments = case
    if len(segments) < 2:
        return
    dropped = draw.draw(
        st.sets(st.integers(0, len(segments) - 1), min_size=1, max_size=len(segments) - 1)
    )
    kept = [s for i, s in enumerate(segments) if i not in dropped]
    rnd.shuffle(kept)
    drv = Driver()
    open_flow(drv, isn)
    for a, b in kept:
        drv.seg(2.0, ACK | PSH, isn + 1 + a, 5001, data[a:b])
    if acked:  # the server acknowledged everything: holes are declared at once
        drv.seg(2.5, ACK, 5001, isn + 1 + len(data), from_client=False)
    drv.seg(3.0, FIN | ACK, isn + 1 + len(data), 5001)
    drv.finish()
    expected: list[bytes | int] = []
    for i, (a, b) in enumerate(segments):
        item: bytes | int = (b - a) if i in dropped else data[a:b]
        if expected and type(expected[-1]) is type(item) and isinstance(item, bytes):
            expected[-1] += item  # type: ignore[operator]
        elif expected and isinstance(item, int) and isinstance(expected[-1], int):
            expected[-1] += item  # adjacent drops form one hole
        else:
            expected.append(item)
    got = drv.sinks[0].stream(0)
    merged: list[bytes | int] = []
    for item in got:  # a hole may be reported in pieces; sizes must add up
        if merged and isinstance(item, int) and isinstance(merged[-1], int):
            merged[-1] += item
        else:
            merged.append(item)
    assert merged == expected
    missing = sum(b - a for i, (a, b) in enumerate(segments) if i in dropped)
    assert drv.conns[0].streams[0].missed == missing
    assert drv.conns[0].streams[0].noff == len(data)
    assert "tcp_content_gap" in drv.weird_names()


@settings(max_examples=60, deadline=None)
@given(segmented(max_size=20000), st.randoms(use_true_random=False))
def test_a_small_reorder_buffer_never_loses_or_invents_bytes(case, rnd) -> None:
    data, isn, segments = case
    limits = Limits(max_ooo_bytes=512, max_ooo_segments=4)
    rnd.shuffle(segments)
    drv = Driver(limits=limits)
    open_flow(drv, isn)
    key = (CLIENT, 40000, SERVER, 11112)
    for a, b in segments:
        drv.seg(2.0, ACK, isn + 1 + a, 5001, data[a:b])
        stream = drv.table.flows[key].streams[0]
        assert stream.ooo_bytes <= limits.max_ooo_bytes
        assert len(stream.ooo or []) <= limits.max_ooo_segments
    drv.finish()
    pos = 0
    for kind, _, item in drv.sinks[0].events:
        if kind == "data":
            assert data[pos : pos + len(item)] == item  # type: ignore[arg-type]
            pos += len(item)  # type: ignore[arg-type]
        else:
            pos += item  # type: ignore[operator]
    assert pos == len(data)


def test_overlap_with_different_bytes_is_an_anomaly() -> None:
    drv = Driver()
    open_flow(drv, 100)
    drv.seg(2.0, ACK, 101, 5001, b"ABCDEFGH")
    drv.seg(2.1, ACK, 105, 5001, b"XXXXijkl")  # first 4 bytes contradict what was delivered
    drv.seg(2.2, ACK, 120, 5001, b"future")
    drv.seg(2.3, ACK, 120, 5001, b"FUTURE")  # contradicts the buffered copy
    drv.finish()
    assert {"tcp_retransmission_inconsistent", "tcp_overlap_inconsistent"} <= drv.weird_names()
    assert drv.sinks[0].stream(0)[0] == b"ABCDEFGHijkl"


def test_hostile_sequence_numbers_are_dropped_not_buffered() -> None:
    drv = Driver()
    open_flow(drv, 1000)
    for i in range(2000):  # far-away segments: each would otherwise open a huge hole
        drv.seg(2.0, ACK, 1001 + (1 << 27) + i * 7919, 5001, b"x" * 100)
    stream = drv.table.flows[(CLIENT, 40000, SERVER, 11112)].streams[0]
    assert stream.ooo_bytes == 0
    drv.seg(3.0, ACK, 1001, 5001, b"real data")
    drv.finish()
    assert drv.sinks[0].stream(0) == [b"real data"]
    assert "tcp_seq_jump" in drv.weird_names()
    assert drv.conns[0].streams[0].missed == 0
