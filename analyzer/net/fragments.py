"""IPv4 and IPv6 fragment reassembly with bounded memory.

Fragments are keyed by (src, dst, id, protocol). A datagram is complete when the
fragment without "more fragments" has arrived and the pieces cover it without holes.
Overlapping pieces that disagree are reported; the first copy wins.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

FragKey = tuple[bytes, bytes, int, int]
Report = Callable[[float, str, str], None]

MAX_DATAGRAM = 65535 + 8


class _Datagram:
    __slots__ = ("pieces", "total", "first_ts", "size")

    def __init__(self, ts: float) -> None:
        self.pieces: dict[int, bytes] = {}
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
        if offset in dg.pieces:
            old = dg.pieces[offset]
            if old[: len(data)] != data[: len(old)]:
                self.report(ts, "ip_fragment_overlap_mismatch", f"offset {offset}")
            if len(data) <= len(old):
                return self._complete(key, dg)
        else:
            for o, piece in dg.pieces.items():
                lo, hi = max(o, offset), min(o + len(piece), end)
                if lo < hi and piece[lo - o : hi - o] != data[lo - offset : hi - offset]:
                    self.report(ts, "ip_fragment_overlap_mismatch", f"offset {lo}")
                    break
        prev = dg.pieces.get(offset)
        dg.pieces[offset] = data
        grown = len(data) - (len(prev) if prev is not None else 0)
        dg.size += grown
        self.held += grown
        return self._complete(key, dg)

    def _complete(self, key: FragKey, dg: _Datagram) -> bytes | None:
        if dg.total is None:
            return None
        covered = 0
        for o in sorted(dg.pieces):
            if o > covered:
                return None
            covered = max(covered, o + len(dg.pieces[o]))
        if covered < dg.total:
            return None
        out = bytearray(covered)
        for o in sorted(dg.pieces, reverse=True):  # lower offsets written last: they win overlaps
            out[o : o + len(dg.pieces[o])] = dg.pieces[o]
        del self.pending[key]
        self.held -= dg.size
        self.completed += 1
        return bytes(out[: dg.total])

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
