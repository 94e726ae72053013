"""IPv4 and IPv6 fragment reassembly with bounded memory.

Fragments are keyed by (src, dst, id, protocol). A datagram is complete when the
fragment without "more fragments" has arrived and the pieces cover it without holes.
Overlapping pieces that disagree are reported; the first copy of every byte wins (the
pieces are held as non-overlapping ranges, so copies are never spliced).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable

FragKey = tuple[bytes, bytes, int, int]
Report = Callable[[float, str, str], None]

MAX_DATAGRAM = 65535 + 8


class _Datagram:
    """The pieces received so far, as sorted, non-overlapping byte ranges: the first copy of
    every byte is kept (a later overlapping copy adds only the bytes not seen yet), so an
    insertion never splices two copies, and adding a fragment costs a binary search plus the
    pieces it overlaps, never a pass over all of them."""

    __slots__ = ("starts", "pieces", "total", "first_ts", "size")

    def __init__(self, ts: float) -> None:
        self.starts: list[int] = []
        self.pieces: list[bytes] = []
        self.total: int | None = None
        self.first_ts = ts
        self.size = 0


class FragmentReassembler:
    def __init__(
        self, *, max_datagrams: int, max_bytes: int, timeout: float, report: Report
    ) -> None:
        self.max_datagrams = max_datagrams
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.report = report
        self.pending: OrderedDict[FragKey, _Datagram] = OrderedDict()
        self.held = 0
        self.completed = 0
        self.dropped = 0

    def add(self, ts: float, key: FragKey, offset: int, more: bool, data: bytes) -> bytes | None:
        """Add one fragment; return the whole payload once every piece is there."""
        end = offset + len(data)
        if end > MAX_DATAGRAM:
            self.report(ts, "ip_fragment_too_large", f"fragment ends at byte {end}")
            self.dropped += 1
            return None
        dg = self.pending.get(key)
        if dg is None:
            self._make_room(ts, len(data))
            dg = self.pending[key] = _Datagram(ts)
        if not more:
            if dg.total is not None and dg.total != end:
                self.report(ts, "ip_fragment_inconsistent", "two different last fragments")
            dg.total = end
        grown = self._insert(ts, dg, offset, data)
        dg.size += grown
        self.held += grown
        return self._complete(key, dg)

    def _insert(self, ts: float, dg: _Datagram, offset: int, data: bytes) -> int:
        """Insert the bytes of ``data`` not held yet; report overlaps that disagree. Returns
        the bytes added."""
        starts, pieces = dg.starts, dg.pieces
        end = offset + len(data)
        i = bisect_right(starts, offset) - 1
        pos = offset
        if i >= 0 and starts[i] + len(pieces[i]) > pos:  # the piece before reaches in
            pos = self._compare(ts, starts[i], pieces[i], offset, data, pos)
        j = i + 1
        new: list[tuple[int, bytes]] = []
        while pos < end and j < len(starts) and starts[j] < end:
            o = starts[j]
            if o > pos:
                new.append((pos, data[pos - offset : o - offset]))
            pos = max(pos, self._compare(ts, o, pieces[j], offset, data, o))
            j += 1
        if pos < end:
            new.append((pos, data[pos - offset :]))
        at = i + 1
        for o, piece in new:  # each goes just before the first held piece after it
            while at < len(starts) and starts[at] < o:
                at += 1
            starts.insert(at, o)
            pieces.insert(at, piece)
            at += 1
        return sum(len(p) for _, p in new)

    def _compare(self, ts: float, o: int, piece: bytes, offset: int, data: bytes, pos: int) -> int:
        """Compare ``data`` with a held piece where they overlap from ``pos``; return where the
        held piece ends (the first copy is kept)."""
        lo, hi = max(o, pos), min(o + len(piece), offset + len(data))
        if lo < hi and piece[lo - o : hi - o] != data[lo - offset : hi - offset]:
            self.report(ts, "ip_fragment_overlap_mismatch", f"offset {lo}")
        return o + len(piece)

    def _complete(self, key: FragKey, dg: _Datagram) -> bytes | None:
        total = dg.total
        if total is None or dg.size < total or not dg.starts or dg.starts[0] != 0:
            return None
        covered = 0
        for o, piece in zip(dg.starts, dg.pieces, strict=True):
            if o > covered:
                return None  # a hole
            covered = o + len(piece)
            if covered >= total:
                break
        if covered < total:
            return None
        del self.pending[key]
        self.held -= dg.size
        self.completed += 1
        return b"".join(dg.pieces)[:total]

    def _make_room(self, ts: float, need: int) -> None:
        while self.pending and (
            len(self.pending) >= self.max_datagrams or self.held + need > self.max_bytes
        ):
            _, dg = self.pending.popitem(last=False)
            self.held -= dg.size
            self.dropped += 1
            self.report(ts, "ip_fragment_table_full", "oldest incomplete datagram dropped")

    def expire(self, now: float) -> None:
        while self.pending:
            key, dg = next(iter(self.pending.items()))
            if now - dg.first_ts < self.timeout:
                return
            del self.pending[key]
            self.held -= dg.size
            self.dropped += 1
            self.report(now, "ip_fragment_timeout", f"{len(dg.pieces)} pieces never completed")
