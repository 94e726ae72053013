"""One direction of a TCP connection reassembled into an ordered byte stream.

Positions are 64-bit stream offsets (first data byte = 0), so sequence-number
wrap-around is handled once, in ``offset_of``. Segments carry their wire length and
how much of it was captured; ``data`` is None when nobody wants the payload, and the
accounting (bytes, gaps, retransmissions) stays exact either way.

Gaps are declared when the peer acknowledged bytes never seen and they have not come within
a grace (``ack_grace_*``: a span port that merges both directions may show the ACK, even the
answer, before the segment it acknowledges), when the out-of-order buffer exceeds its cap, and
when the flow ends with bytes still missing. While one direction waits for acknowledged bytes,
the other direction's data is held back and delivered after them, in causal order.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from typing import Protocol

from analyzer.config import Limits
from analyzer.memory import BUFFERED_PIECE
from analyzer.tcp.events import StreamSink


class Flow(Protocol):
    """What a stream reports to its connection: anomalies and history letters."""

    def weird(self, ts: float, name: str, detail: str) -> None: ...

    def mark_log(self, letter: str, direction: int, count: int) -> None: ...


MASK = 0xFFFFFFFF
HALF = 0x80000000
WRAP = 0x100000000

# An out-of-order piece: (offset, wire length, captured length, data or None, capture time)
Piece = tuple[int, int, int, bytes | None, float]


class Stream:
    __slots__ = (
        "direction",
        "flow",
        "limits",
        "sink",
        "started",
        "nseq",
        "noff",
        "fin_off",
        "ooo",
        "ooo_keys",
        "ooo_bytes",
        "recent",
        "recent_bytes",
        "missed",
        "retrans",
        "gaps",
        "peer",
        "hold",
        "held",
        "held_bytes",
        "hole",
        "hole_ts",
        "hole_pkts",
    )

    def __init__(self, direction: int, flow: Flow, limits: Limits) -> None:
        self.direction = direction
        self.flow = flow
        self.limits = limits
        self.sink: StreamSink | None = None
        self.started = False
        self.nseq = 0
        """Sequence number of the next byte expected (mod 2**32)."""
        self.noff = 0
        """Stream offset of the next byte expected: everything before it is delivered."""
        self.fin_off: int | None = None
        # allocated on first use: most streams never reorder or compare anything
        self.ooo: list[Piece] | None = None
        self.ooo_keys: list[int] | None = None
        self.ooo_bytes = 0
        self.recent: deque[tuple[int, bytes, int, int]] | None = None
        """The bytes delivered last, for the retransmission check: (offset, buf, start, n),
        the bytes being ``buf[start:start + n]`` (a frame kept whole rather than copied)."""
        self.recent_bytes = 0
        self.missed = 0
        self.retrans = 0
        self.gaps = 0
        self.peer: Stream | None = None
        """The other direction (set by the flow)."""
        self.hold = False
        """The peer waits for bytes it acknowledged: this direction's data waits behind them."""
        self.held: list[tuple[float, bytes | None, int]] | None = None
        """Held deliveries: (ts, data, 0) or (ts, None, gap length)."""
        self.held_bytes = 0
        self.hole: int | None = None
        """Offset up to which the peer acknowledged bytes not seen yet."""
        self.hole_ts = 0.0
        self.hole_pkts = 0

    def start(self, seq: int) -> None:
        """Begin the stream at ``seq``, the sequence number of its first data byte."""
        self.started = True
        self.nseq = seq & MASK
        self.noff = 0

    def offset_of(self, seq: int) -> int:
        d = (seq - self.nseq) & MASK
        if d >= HALF:
            d -= WRAP
        return self.noff + d

    def buffered(self) -> int:
        """Bytes this direction holds: out of order, recently delivered, held back."""
        pieces = (len(self.ooo) if self.ooo else 0) + (len(self.held) if self.held else 0)
        pieces += len(self.recent) if self.recent else 0
        return self.ooo_bytes + self.recent_bytes + self.held_bytes + pieces * BUFFERED_PIECE

    # -- segments ---------------------------------------------------------------

    def segment(self, ts: float, seq: int, data: bytes | None, cap: int, n: int) -> None:
        """Take ``n`` payload bytes at ``seq``, ``cap`` of them captured (``data``)."""
        off = self.offset_of(seq)
        noff = self.noff
        if off == noff and not self.ooo and self.fin_off is None:
            self._deliver(ts, data, cap, n)
            if self.hole is not None and self.noff >= self.hole:
                self._hole_closed(ts)
            return
        self._segment(ts, off, noff, data, cap, n)
        if self.hole is not None and self.noff >= self.hole:
            self._hole_closed(ts)

    def _segment(
        self, ts: float, off: int, noff: int, data: bytes | None, cap: int, n: int
    ) -> None:
        end = off + n
        if self.fin_off is not None and end > self.fin_off:
            self.flow.weird(ts, "tcp_data_after_fin", f"{end - self.fin_off} bytes beyond FIN")
            n = max(0, self.fin_off - off)
            cap = min(cap, n)
            if data is not None:
                data = data[:cap]
            end = off + n
            if n == 0:
                return
        if end <= noff:
            self._retransmitted(ts, off, data)
            return
        if off > noff:
            if off - noff > self.limits.max_seq_jump:
                self.flow.weird(
                    ts, "tcp_seq_jump", f"segment {off - noff} bytes ahead of the stream"
                )
                return
            self._insert(ts, off, data, cap, n)
            ooo = self.ooo
            if ooo and (
                self.ooo_bytes > self.limits.max_ooo_bytes
                or len(ooo) > self.limits.max_ooo_segments
            ):
                self.flow.weird(
                    ts,
                    "tcp_reassembly_overflow",
                    f"{self.ooo_bytes} bytes in {len(ooo)} segments waiting; hole declared a gap",
                )
                self._skip_to(ts, ooo[0][0])
                self._drain(ts)
            return
        skip = noff - off
        if data is not None:
            self._retransmitted(ts, off, data[:skip])
            data = data[skip:]
        else:
            self._count_retransmission()
        self._deliver(ts, data, max(0, cap - skip), n - skip)
        self._drain(ts)

    def fin(self, ts: float, seq: int, n: int) -> None:
        """Record a FIN carried after ``n`` payload bytes at ``seq``."""
        off = self.offset_of(seq) + n
        if self.fin_off is None:
            self.fin_off = max(off, self.noff)
        elif off != self.fin_off:
            self.flow.weird(ts, "tcp_fin_inconsistent", "FIN at a different sequence number")

    def acked(self, ts: float, ack: int) -> None:
        """The peer acknowledged everything before ``ack``: bytes missing there are waited
        for during the grace, then they are gaps."""
        d = (ack - self.nseq) & MASK
        if d == 0 or d >= HALF or d > self.limits.max_seq_jump:
            return
        target = self.noff + d
        if self.fin_off is not None and target > self.fin_off:
            target = self.fin_off  # the ACK of a FIN counts one more
        if target <= self.noff:
            return
        if self.limits.ack_grace_packets <= 0:
            self._skip_acked(ts, target)
            return
        if self.hole is None:
            self.hole_ts, self.hole_pkts = ts, 0
            if self.peer is not None:
                self.peer.hold = True
        self.hole = max(self.hole or 0, target)

    def tick(self, ts: float) -> None:
        """A packet of the flow went by: end the wait for acknowledged bytes past its grace."""
        self.hole_pkts += 1
        lim = self.limits
        if self.hole_pkts > lim.ack_grace_packets or ts - self.hole_ts > lim.ack_grace_seconds:
            self._expire_hole(ts)

    def _expire_hole(self, ts: float) -> None:
        if self.hole is not None:
            self._skip_acked(self.hole_ts, self.hole)  # missing since the ACK that showed it
            self._hole_closed(ts)

    def _hole_closed(self, ts: float) -> None:
        self.hole = None
        peer = self.peer
        if peer is not None and peer.hold:
            peer.hold = False
            peer._release()

    def _release(self) -> None:
        held, self.held, self.held_bytes = self.held, None, 0
        sink = self.sink
        if not held or sink is None:
            return
        for ts, data, gap in held:
            if data is not None:
                sink.data(self.direction, ts, data)
            else:
                sink.gap(self.direction, ts, gap)

    def _hold(self, ts: float, data: bytes | None, gap: int) -> None:
        if self.held is None:
            self.held = []
        self.held.append((ts, data, gap))
        self.held_bytes += len(data) if data is not None else 0
        if self.held_bytes > self.limits.ack_grace_bytes and self.peer is not None:
            self.peer._expire_hole(ts)

    def _skip_acked(self, ts: float, target: int) -> None:
        while self.noff < target:
            if self.ooo and self.ooo[0][0] <= self.noff:
                self._drain(ts)
                continue
            nxt = self.ooo[0][0] if self.ooo else target
            self._skip_to(ts, min(nxt, target))
            self._drain(ts)

    def flush(self, ts: float) -> None:
        """Hand over everything buffered, holes as gaps (the flow is ending)."""
        self._expire_hole(ts)
        while self.ooo:
            if self.ooo[0][0] > self.noff:
                self._skip_to(ts, self.ooo[0][0])
            self._drain(ts)
        if self.fin_off is not None and self.fin_off > self.noff:
            self._skip_to(ts, self.fin_off)

    # -- internals --------------------------------------------------------------

    def _deliver(self, ts: float, data: bytes | None, cap: int, n: int) -> None:
        sink = self.sink
        if cap > 0 and data:
            if sink is not None:
                if self.hold:
                    self._hold(ts, data, 0)
                else:
                    sink.data(self.direction, ts, data)
            keep = self.limits.overlap_check_bytes
            if keep and sink is not None:
                recent = self.recent
                if recent is None:
                    recent = self.recent = deque()
                recent.append((self.noff, data, 0, len(data)))
                self.recent_bytes += len(data)
                while self.recent_bytes > keep and len(recent) > 1:
                    self.recent_bytes -= recent.popleft()[3]
        self.noff += n
        self.nseq = (self.nseq + n) & MASK
        if n > cap:
            self._gap(ts, n - cap)

    def _gap(self, ts: float, length: int) -> None:
        """``length`` bytes ending at the current offset were sent but never captured."""
        self.flow.weird(
            ts,
            "tcp_content_gap",
            f"{'orig' if self.direction == 0 else 'resp'}: {length} bytes missing at offset {self.noff - length}",
        )
        self.missed += length
        self.gaps += 1
        self.flow.mark_log("G", self.direction, self.gaps)
        if self.sink is not None:
            if self.hold:
                self._hold(ts, None, length)
            else:
                self.sink.gap(self.direction, ts, length)

    def _skip_to(self, ts: float, target: int) -> None:
        length = target - self.noff
        if length <= 0:
            return
        self.noff = target
        self.nseq = (self.nseq + length) & MASK
        self._gap(ts, length)

    def _count_retransmission(self) -> None:
        self.retrans += 1
        self.flow.mark_log("T", self.direction, self.retrans)

    def _retransmitted(self, ts: float, off: int, data: bytes | None) -> None:
        self._count_retransmission()
        if not data or not self.recent:
            return
        end = off + len(data)
        for ro, rd, rs, rn in reversed(self.recent):
            lo = ro if ro > off else off
            re = ro + rn
            hi = re if re < end else end
            if lo < hi and rd[rs + lo - ro : rs + hi - ro] != data[lo - off : hi - off]:
                self.flow.weird(
                    ts,
                    "tcp_retransmission_inconsistent",
                    f"{hi - lo} retransmitted bytes at offset {lo} differ from the first copy",
                )
                return
            if ro <= off:
                return

    def _insert(self, ts: float, off: int, data: bytes | None, cap: int, n: int) -> None:
        """Buffer [off, off+n) minus what is already buffered, comparing overlaps."""
        end = off + n
        if self.ooo is None or self.ooo_keys is None:
            self.ooo, self.ooo_keys = [], []
        ooo, keys = self.ooo, self.ooo_keys
        i = bisect_right(keys, off) - 1
        if i < 0:
            i = 0
        pos = off
        pieces: list[Piece] = []
        while i < len(ooo) and pos < end:
            o, length, c, d, _ = ooo[i]
            if o + length <= pos:
                i += 1
                continue
            if o >= end:
                break
            if o > pos:
                pieces.append(_cut(off, data, cap, pos, o, ts))
            lo, hi = max(o, off), min(o + c, off + cap)
            if (
                data is not None
                and d is not None
                and lo < hi
                and d[lo - o : hi - o] != data[lo - off : hi - off]
            ):
                self.flow.weird(
                    ts, "tcp_overlap_inconsistent", f"buffered bytes at offset {lo} differ"
                )
            self._count_retransmission()
            pos = o + length
            i += 1
        if pos < end:
            pieces.append(_cut(off, data, cap, pos, end, ts))
        for piece in pieces:
            j = bisect_right(keys, piece[0])
            keys.insert(j, piece[0])
            ooo.insert(j, piece)
            self.ooo_bytes += piece[2]

    def _drain(self, ts: float) -> None:
        ooo, keys = self.ooo, self.ooo_keys
        if not ooo or keys is None:
            return
        while ooo and ooo[0][0] <= self.noff:
            o, n, cap, data, pts = ooo.pop(0)
            keys.pop(0)
            self.ooo_bytes -= cap
            if o + n <= self.noff:
                continue
            skip = self.noff - o
            if skip:
                if data is not None:
                    data = data[skip:]
                cap = max(0, cap - skip)
                n -= skip
            self._deliver(pts, data, cap, n)  # when it was captured, not when drained


def _cut(off: int, data: bytes | None, cap: int, lo: int, hi: int, ts: float) -> Piece:
    """The part [lo, hi) of a segment starting at ``off`` with ``cap`` captured bytes."""
    cap_hi = min(hi, off + cap)
    c = max(0, cap_hi - lo)
    d = data[lo - off : lo - off + c] if data is not None else None
    return (lo, hi - lo, c, d, ts)
