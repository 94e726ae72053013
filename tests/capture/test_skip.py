"""A reader that skips a follow phase's records itself (``Skip``): it leaves out exactly the
plain frames (``plain_frame``, the pipeline's own test) of flows not followed, and moves the
clock as if every record had been ticked one by one."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.capture import Record, Skip, open_inputs
from analyzer.run.pipeline import plain_frame_ends
from tests.hostile import frame

A, B, SERVER = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), bytes([10, 0, 0, 9])
FOLLOWED = A + SERVER + (40000).to_bytes(2, "big") + (104).to_bytes(2, "big")


@dataclass
class Clock:
    """The flow table's clock as ``FlowTable.tick`` keeps it: an expiry pass (recorded) once
    time reaches ``next_expire``, then one a second later."""

    now: float = 0.0
    next_expire: float = 0.0
    expired_at: list[float] = field(default_factory=list)

    def tick(self, ts: float) -> None:
        if ts > self.now:
            self.now = ts
            if ts >= self.next_expire:
                self.expired_at.append(ts)
                self.next_expire = ts + 1.0


def write_pcap(path: Path, records: list[tuple[float, bytes, int]], linktype: int = 1) -> Path:
    """A classic pcap file of ``(ts, data, wire_len)`` records (Ethernet unless told)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)]
    for ts, data, wire in records:
        sec = int(ts)
        out.append(struct.pack("<IIII", sec, round((ts - sec) * 1e6), len(data), wire) + data)
    path.write_bytes(b"".join(out))
    return path


def flow_frame(client: bytes, cport: int, payload: bytes = b"x" * 40) -> bytes:
    return frame(client, SERVER, cport, 104, 1, 1, 0x18, payload)


def vlan(buf: bytes) -> bytes:
    return buf[:12] + b"\x81\x00\x00\x05" + buf[12:]


def fragment(buf: bytes) -> bytes:
    return buf[:20] + b"\x20\x00" + buf[22:]  # more fragments


VARIANTS = {
    "plain": lambda b: b,
    "vlan": vlan,
    "fragment": fragment,
    "not-tcp": lambda b: b[:23] + b"\x11" + b[24:],
    "ip-options": lambda b: b[:14] + b"\x46" + b[15:],
    "short-ip-length": lambda b: b[:16] + b"\x00\x10" + b[18:],
    "long-ip-length": lambda b: b[:16] + b"\x05\xdc" + b[18:],
    "short-tcp-header": lambda b: b[:46] + b"\x40" + b[47:],
    "dont-fragment": lambda b: b[:20] + b"\x40\x00" + b[22:],
}


def records_of(
    seed: list[tuple[int, str, int, bool]],
) -> list[tuple[float, bytes, int]]:
    """``(flow, variant, time step, cut)``: flow 0 is the followed one (both directions)."""
    out: list[tuple[float, bytes, int]] = []
    ts = 100.0
    for flow, variant, step, cut in seed:
        ts += (step - 2) * 0.15  # now and then back in time
        if flow == 0:
            buf = flow_frame(A, 40000)
        elif flow == 1:
            buf = frame(SERVER, A, 104, 40000, 1, 1, 0x10)  # the reply direction
        else:
            buf = flow_frame(B, 40000 + flow)
        buf = VARIANTS[variant](buf)
        out.append((ts, buf[:60] if cut else buf, len(buf)))
    return out


def read_skipping(
    path: Path, clock: Clock, frames: set[bytes], done_after: float | None = None
) -> tuple[list[Record], int | None, list[float]]:
    """Records handed on by a reader told to skip, each ticked as the pipeline would; where
    it stopped; the clock's time as each was analysed."""
    reader = open_inputs([str(path)])[0][0]
    skip = Skip(clock, lambda: done_after is not None and clock.now >= done_after)
    skip.frames = frames
    out, now_seen = [], []
    for rec in reader.records(lambda ts, name, detail: None, skip):
        clock.tick(rec[0])
        out.append(rec)
        now_seen.append(clock.now)
    return out, reader.stopped_at, now_seen


SEEDS = st.lists(
    st.tuples(
        st.integers(0, 3), st.sampled_from(sorted(VARIANTS)), st.integers(0, 9), st.booleans()
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(seed=SEEDS)
def test_a_skipping_reader_hands_on_what_the_task_would_keep(tmp_path_factory, seed) -> None:  # type: ignore[no-untyped-def]
    path = write_pcap(tmp_path_factory.mktemp("skip") / "c.pcap", records_of(seed))
    every = list(open_inputs([str(path)])[0][0].records(lambda ts, name, detail: None))
    frames = {FOLLOWED, FOLLOWED[4:8] + FOLLOWED[:4] + FOLLOWED[10:12] + FOLLOWED[8:10]}
    whole = Clock()
    kept, seen = [], []
    for rec in every:  # what the task does with every record handed on
        ends = plain_frame_ends(rec[1], rec[2], rec[3])
        whole.tick(rec[0])
        if ends is None or ends in frames:
            kept.append(rec)
            seen.append(whole.now)
    clock = Clock()
    got, _, now_seen = read_skipping(path, clock, frames)
    assert got == kept
    assert now_seen == seen  # the clock as each record handed on is analysed
    assert clock.expired_at == whole.expired_at
    assert clock.now == whole.now


def test_reading_ends_once_done(tmp_path: Path) -> None:
    recs = [(100.0 + i * 0.5, flow_frame(B, 50000), 0) for i in range(40)]
    recs = [(ts, buf, len(buf)) for ts, buf, _ in recs]
    path = write_pcap(tmp_path / "c.pcap", recs)
    clock = Clock()
    got, stopped, _ = read_skipping(path, clock, {FOLLOWED}, done_after=105.0)
    assert got == []
    assert clock.expired_at == [100.0, 101.0, 102.0, 103.0, 104.0, 105.0]
    assert stopped is not None and stopped < path.stat().st_size


def test_nothing_is_skipped_until_frames_are_set(tmp_path: Path) -> None:
    recs = [(100.0 + i * 0.5, flow_frame(B, 50000)) for i in range(10)]
    path = write_pcap(tmp_path / "c.pcap", [(ts, b, len(b)) for ts, b in recs])
    clock = Clock()
    skip = Skip(clock, lambda: False)
    got = []
    for rec in open_inputs([str(path)])[0][0].records(lambda ts, name, detail: None, skip):
        got.append(rec[0])
        clock.tick(rec[0])
        if len(got) == 4:
            skip.frames = {FOLLOWED}  # the own records are done
    assert got == [100.0, 100.5, 101.0, 101.5]
    assert clock.now == 104.5
    assert clock.expired_at == [100.0, 101.0, 102.0, 103.0, 104.0]


def test_a_capture_not_of_ethernet_is_handed_on_whole(tmp_path: Path) -> None:
    """The test reads Ethernet offsets: records of another link type (here Linux cooked
    capture) are all handed on, for the task to look at."""
    recs = [(100.0 + i * 0.5, flow_frame(B, 50000)) for i in range(10)]
    path = write_pcap(tmp_path / "c.pcap", [(ts, b, len(b)) for ts, b in recs], linktype=113)
    clock = Clock()
    got, _, _ = read_skipping(path, clock, {FOLLOWED})
    assert [rec[0] for rec in got] == [ts for ts, _ in recs]
    assert {rec[1] for rec in got} == {113}
