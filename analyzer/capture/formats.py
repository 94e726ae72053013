"""Record framing for classic pcap and pcapng, streamed from a binary file.

Both readers yield ``Record`` tuples ``(ts, linktype, data, wire_len)`` and never
raise on damaged content: a truncated or corrupt tail is reported through the
``weird`` callback and ends that file, keeping every record before it.

dpkt's own readers assume one interface per pcapng file and trust block lengths,
so the hot path frames records here with precompiled structs; dpkt still parses
the rare Interface Description Blocks (their options carry the time resolution).
"""

from __future__ import annotations

import io
import mmap
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol, TypeVar

Record = tuple[float, int, bytes, int]
WeirdSink = Callable[[float, str, str], None]

MAX_RECORD = 256 * 1024
"""Largest captured length accepted (libpcap's own maximum snaplen)."""
MAX_BLOCK = 16 * 1024 * 1024
"""Largest pcapng block accepted; anything larger is treated as corruption."""
CHUNK = 1 << 20

# Classic pcap magic (as it appears in the first four bytes) -> (byte order, ts unit)
PCAP_MAGIC: dict[bytes, tuple[str, float]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"

# pcapng block types (pcapng spec section 11.1)
BT_SHB = 0x0A0D0D0A
BT_IDB = 0x00000001
BT_PB = 0x00000002
BT_SPB = 0x00000003
BT_EPB = 0x00000006
OPT_IF_TSRESOL = 9
OPT_IF_TSOFFSET = 14

_DECOMPRESS_ERRORS = (EOFError, zlib.error, OSError)


PLAIN_HEAD = struct.Struct("!12xHBxH2xHxB22xB")
"""The fields of an Ethernet/IPv4/TCP frame's first 47 bytes that tell a plain frame
(``run.pipeline.plain_frame``): EtherType (12), IP version and header length (14), IP total
length (16), IP flags and fragment offset (20), protocol (23), TCP data offset (46)."""
NOT_PLAIN = (0, 0, 0, 0, 0, 0)
"""``PLAIN_HEAD``'s fields for a frame too short or not Ethernet: no plain frame's."""


class Clock(Protocol):
    """The flow table's clock as a reader that skips records moves it (``Skip``)."""

    @property
    def now(self) -> float: ...

    @property
    def next_expire(self) -> float: ...

    def tick(self, ts: float) -> None: ...


@dataclass(slots=True)
class Skip:
    """Records a follow phase has no use for (``run/carry.py``), skipped inside the reader
    rather than handed on one by one. Until ``frames`` is set every record is handed on; from
    then on a plain Ethernet/IPv4/TCP frame (as ``run.pipeline.plain_frame`` tests it) whose
    addresses and ports, the 12 bytes at offset 26, are not in ``frames`` is not: its time
    only moves ``clock``, which is ticked as soon as a time reaches ``next_expire`` and
    brought up to the latest time before the next record handed on, so that it reads as if
    every record had been ticked. Reading ends once ``done()`` (asked after each tick that
    reached ``next_expire`` and after each record handed on)."""

    clock: Clock
    done: Callable[[], bool]
    frames: set[bytes] | None = None


class _Chunks:
    """A read buffer that hands out exact byte counts without a read() per record."""

    __slots__ = ("fh", "buf", "pos", "eof", "error")

    def __init__(self, fh: IO[bytes], initial: bytes = b"") -> None:
        self.fh = fh
        self.buf = initial
        self.pos = 0
        self.eof = False
        self.error: str | None = None

    def take(self, n: int) -> bytes | None:
        """Return exactly ``n`` bytes, or None at end of input (short tail kept in ``buf``)."""
        end = self.pos + n
        if end > len(self.buf):
            if not self._fill(n):
                return None
            end = self.pos + n
        out = self.buf[self.pos : end]
        self.pos = end
        return out

    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def end(self) -> int:
        """Where the bytes that can be read now end."""
        return len(self.buf)

    def _fill(self, n: int) -> bool:
        parts = [self.buf[self.pos :]]
        have = len(parts[0])
        # read1: what is there now, up to the size (a pipe from tcpdump or a worker's copy of
        # stdin must not wait for a whole megabyte before the packets in it are analysed)
        read = getattr(self.fh, "read1", self.fh.read)
        while have < n and not self.eof:
            try:
                chunk = read(max(CHUNK, n - have))
            except _DECOMPRESS_ERRORS as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                chunk = b""
            if not chunk:
                self.eof = True
                break
            parts.append(chunk)
            have += len(chunk)
        self.buf = b"".join(parts)
        self.pos = 0
        return have >= n


class Mapped:
    """A whole uncompressed file mapped into memory, with ``_Chunks``' interface: records are
    sliced straight from the page cache, with no read buffer to copy and refill."""

    __slots__ = ("buf", "pos", "limit", "bound", "stretch", "eof", "error", "released")

    WINDOW = 2 << 20
    """Bytes read between two releases of the pages already read."""

    def __init__(
        self,
        buf: mmap.mmap,
        pos: int,
        limit: int | None = None,
        bound: Callable[[int, int], int] | None = None,
    ) -> None:
        self.buf = buf
        self.pos = pos
        self.limit = len(buf) if limit is None else min(limit, len(buf))
        """Where the records end (a span of the file: ``pcap_cuts``): a record that begins
        before it is read whole, one that begins at or after it is not read."""
        self.bound = bound
        """Asked before each window, with the position and the window's size: where the span
        ends now (another process may take its rest: ``run.launch.SpanEnd``); never before
        the position plus the window it was last asked with."""
        self.stretch = 0
        """The end of the record that crosses ``limit``, once it is asked for."""
        self.eof = True
        self.error: str | None = None
        self.released = pos & ~(mmap.PAGESIZE - 1)
        if hasattr(mmap, "MADV_SEQUENTIAL"):
            buf.madvise(mmap.MADV_SEQUENTIAL)

    def end(self) -> int:
        if self.bound is not None:
            self.limit = min(self.limit, self.bound(self.pos, self.WINDOW))
        end = min(self.limit, self.pos + self.WINDOW)
        return end if end >= self.stretch else self.stretch

    def _fill(self, n: int) -> bool:
        """Drop the pages already read from this process (they stay in the page cache), so
        that its resident size does not grow with the file; True while ``n`` bytes of a
        record that begins before ``limit`` remain."""
        upto = self.pos & ~(mmap.PAGESIZE - 1)
        if upto - self.released >= self.WINDOW and hasattr(mmap, "MADV_DONTNEED"):
            self.buf.madvise(mmap.MADV_DONTNEED, self.released, upto - self.released)
            self.released = upto
        if self.pos >= self.limit or self.pos + n > len(self.buf):
            return False
        if self.pos + n > self.limit:
            self.stretch = self.pos + n
        return True

    def remaining(self) -> int:
        """Bytes of a record cut off by the end of the file (none past ``limit``)."""
        return len(self.buf) - self.pos if self.pos < self.limit else 0


def map_file(fh: IO[bytes]) -> mmap.mmap | None:
    """The file behind ``fh`` mapped read-only, or None where that cannot be (a pipe, an
    empty or special file): those are read in chunks."""
    try:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


_T = TypeVar("_T")

CHAIN = 16
"""Record headers in a row that must be plausible where ``pcap_cuts`` resynchronises."""


def pcap_cuts(path: str | os.PathLike[str], parts: int) -> list[int] | None:
    """Offsets that cut the records of a classic pcap file into ``parts`` runs of about equal
    size: ``[24, c1, ..., file size]``; None when the file is not a plain pcap file (or a
    record header before a cut is implausible: ``pcap_cuts_at``)."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    return pcap_cuts_at(path, [size * k // parts for k in range(1, parts)])


def pcap_cuts_at(path: str | os.PathLike[str], targets: list[int]) -> list[int] | None:
    """Offsets that cut the records of a classic pcap file near each of ``targets`` (in
    order): ``[24, c1, ..., file size]``, ``ck`` the first record boundary at or after the
    ``k``-th target; None when the file is not a plain pcap file.

    Each cut is found near its target, not by walking every record header before it (that took
    a second per 4 GB before any work could start): the first offset at or after the target
    where ``CHAIN`` record headers in a row are plausible (``_plausible_chain``). That is the
    first record boundary there in any real capture, but bytes inside a record can be crafted
    to look like records: the reader of the span before a cut checks it, as it must stop
    exactly there (``CaptureReader.stopped_at``), and ``run_spans`` gives up the cuts when it
    does not. Where no chain is found near the target, the record headers are walked from the
    previous cut (None when one is implausible or cut off before the target)."""

    def find(mm: mmap.mmap, order: str, unit: float, earliest: int) -> list[int] | None:
        cuts = [24]
        for t in targets:
            target = max(t, cuts[-1])
            cut = _resync(mm, order, unit, target, earliest)
            if cut is None:
                cut = _walk(mm, order, cuts[-1], target)
            if cut is None:
                return None
            cuts.append(cut)
        cuts.append(len(mm))
        return cuts

    return _in_pcap(path, find)


def pcap_cut_near(path: str | os.PathLike[str], target: int) -> int | None:
    """The first record boundary at or after ``target`` in a classic pcap file, found near it
    as ``pcap_cuts_at`` finds one (never walked from the start); None where none is found
    there, or the file is not one."""

    def find(mm: mmap.mmap, order: str, unit: float, earliest: int) -> int | None:
        if not 24 <= target < len(mm) - 16:
            return None
        return _resync(mm, order, unit, target, earliest)

    try:
        return _in_pcap(path, find)
    except OSError:
        return None


def _in_pcap(
    path: str | os.PathLike[str], find: Callable[[mmap.mmap, str, float, int], _T | None]
) -> _T | None:
    """``find(mm, byte order, time unit, earliest seconds)`` on a classic pcap file mapped into
    memory (earliest: a day before its first record); None when the file is not one."""
    with open(path, "rb") as fh:
        if fh.read(4) not in PCAP_MAGIC:
            return None
        mm = map_file(fh)
        if mm is None:
            return None
        with mm:
            order, unit = PCAP_MAGIC[mm[:4]]
            first = struct.unpack_from(order + "I", mm, 24)[0] if len(mm) >= 40 else 0
            return find(mm, order, unit, first - 86400)


def _resync(mm: mmap.mmap, order: str, unit: float, target: int, earliest: int) -> int | None:
    """The first offset in ``[target, target + 2 records)`` where a plausible chain begins
    (its seconds not before ``earliest``)."""
    head = struct.Struct(order + "IIII").unpack_from
    frac_max = 1_000_000 if unit == 1e-6 else 1_000_000_000
    size = len(mm)
    for pos in range(target, min(target + 2 * (16 + MAX_RECORD), size - 15)):
        sec, frac, caplen, wire = head(mm, pos)
        if (
            frac < frac_max
            and 0 < caplen <= wire <= MAX_RECORD
            and sec >= earliest
            and _plausible_chain(mm, head, frac_max, pos, sec)
        ):
            return pos
    return None


def _plausible_chain(
    mm: mmap.mmap,
    head: Callable[[mmap.mmap, int], tuple[int, int, int, int]],
    frac_max: int,
    pos: int,
    sec: int,
) -> bool:
    """Do ``CHAIN`` record headers from ``pos`` (or all of them to the file's exact end) look
    like records: the sub-second part in range, some bytes captured, at most the wire length
    and that at most ``MAX_RECORD``, the seconds never an hour before the previous record's?
    (The wire-length bound rejects the chain read 4 bytes early, whose wire length is the
    next record's seconds; the time order rejects the one read with the sub-second part as
    seconds; a captured length above zero and ``_resync``'s earliest seconds reject a run of
    zero bytes.)"""
    size = len(mm)
    for _ in range(CHAIN):
        if pos == size:
            return True
        if pos + 16 > size:
            return False
        prev = sec
        sec, frac, caplen, wire = head(mm, pos)
        if frac >= frac_max or not 0 < caplen <= wire <= MAX_RECORD or sec < prev - 3600:
            return False
        pos += 16 + caplen
    return pos <= size


def _walk(mm: mmap.mmap, order: str, pos: int, target: int) -> int | None:
    """The first record boundary at or after ``target``, walking the record headers from the
    boundary ``pos``; None: a header before it is implausible or cut off."""
    caplen_at = struct.Struct(order + "I").unpack_from
    size = len(mm)
    released = pos
    drop = hasattr(mmap, "MADV_DONTNEED")
    while pos < target:
        # a window at a time (then its pages are released, as read_pcap does: RSS stays flat)
        stop = min(target, released + Mapped.WINDOW, size - 15)
        if pos >= stop:
            return None  # a record header would run past the end of the file
        while pos < stop:
            caplen = caplen_at(mm, pos + 8)[0]
            if caplen > MAX_RECORD:
                return None
            pos += 16 + caplen
        if pos - released >= Mapped.WINDOW:
            upto = min(pos, size) & ~(mmap.PAGESIZE - 1)
            if drop:
                start = released & ~(mmap.PAGESIZE - 1)
                mm.madvise(mmap.MADV_DONTNEED, start, upto - start)
            released = upto
    return min(pos, size)


def _end_of_input(chunks: _Chunks | Mapped, ts: float, weird: WeirdSink, what: str) -> None:
    if chunks.error is not None:
        weird(ts, "capture_corrupt_compression", f"{what}: {chunks.error}")
    elif chunks.remaining():
        weird(ts, "capture_truncated", f"{what}: {chunks.remaining()} bytes of a cut-off record")


def _implausible(
    chunks: _Chunks | Mapped, pos: int, ts: float, caplen: int, weird: WeirdSink, name: str
) -> None:
    """A pcap record header at ``pos`` whose captured length no capture has: reading ends."""
    chunks.pos = pos
    weird(ts, "capture_corrupt_record", f"{name}: record length {caplen} is not plausible")


def _refilled(
    chunks: _Chunks | Mapped, pos: int, need: int, ts: float, weird: WeirdSink, name: str
) -> bool:
    """The pcap record loops' step past their buffer's whole records (read up to ``pos``):
    True with ``need`` more bytes to read, else the end of the input reported."""
    chunks.pos = pos
    if chunks._fill(need):
        return True
    if need > 16 and chunks.remaining() >= 16:
        chunks.pos += 16  # the header was whole: the cut-off part is the data
    _end_of_input(chunks, ts, weird, name)
    return False


def read_pcap(
    fh: IO[bytes],
    header: bytes,
    weird: WeirdSink,
    name: str,
    mapped: Mapped | None = None,
    skip: Skip | None = None,
) -> Iterator[Record]:
    """Yield the records of a classic pcap file whose 24-byte header was already read (from
    ``fh``, or from ``mapped``, the whole file in memory, positioned after the header);
    ``skip``: the records to leave out once it is set (``Skip``).

    File header (24 bytes): magic(4) version_major(2) version_minor(2)
    thiszone(4) sigfigs(4) snaplen(4) linktype(4, low 16 bits are the link type).
    Record header (16 bytes): ts_sec(4) ts_frac(4) caplen(4) wire_len(4).
    """
    order, unit = PCAP_MAGIC[header[:4]]
    linktype = struct.unpack(order + "I", header[20:24])[0] & 0xFFFF
    unpack_from = struct.Struct(order + "IIII").unpack_from
    chunks: _Chunks | Mapped = mapped if mapped is not None else _Chunks(fh)
    ts = 0.0
    while True:
        if skip is not None and skip.frames is not None and linktype == 1:
            yield from _skipping(chunks, unpack_from, unit, skip, skip.frames, weird, name)
            return
        # every whole record in the buffer, without a call per record; then refill
        buf, pos = chunks.buf, chunks.pos
        end = chunks.end()
        need = 16
        while pos + 16 <= end:
            sec, frac, caplen, wire_len = unpack_from(buf, pos)
            ts = sec + frac * unit
            if caplen > MAX_RECORD:
                _implausible(chunks, pos, ts, caplen, weird, name)
                return
            nxt = pos + 16 + caplen
            if nxt > end:
                need = 16 + caplen
                break
            yield ts, linktype, buf[pos + 16 : nxt], wire_len if wire_len >= caplen else caplen
            pos = nxt
            if skip is not None and skip.frames is not None and linktype == 1:
                break  # the skipping loop from here on
        if not _refilled(chunks, pos, need, ts, weird, name):
            return


def _skipping(
    chunks: _Chunks | Mapped,
    unpack_from: Callable[[Any, int], tuple[Any, ...]],
    unit: float,
    skip: Skip,
    frames: set[bytes],
    weird: WeirdSink,
    name: str,
) -> Iterator[Record]:
    """``read_pcap``'s loop over Ethernet records once ``skip`` is set."""
    clock, done = skip.clock, skip.done
    plain_head = PLAIN_HEAD.unpack_from
    now, next_expire = clock.now, clock.next_expire
    ts = 0.0
    try:
        while True:
            buf, pos = chunks.buf, chunks.pos
            end = chunks.end()
            need = 16
            while pos + 16 <= end:
                sec, frac, caplen, wire_len = unpack_from(buf, pos)
                ts = sec + frac * unit
                if caplen > MAX_RECORD:
                    _implausible(chunks, pos, ts, caplen, weird, name)
                    return
                nxt = pos + 16 + caplen
                if nxt > end:
                    need = 16 + caplen
                    break
                p = pos + 16
                eth, ver_ihl, ip_len, frag, proto, tcp_off = (
                    plain_head(buf, p) if caplen >= 54 and wire_len <= caplen else NOT_PLAIN
                )
                if (
                    eth == 0x0800
                    and ver_ihl == 0x45
                    and proto == 6
                    and not frag & 0x3FFF
                    and 54 <= 34 + (tcp_off >> 4 << 2) <= 14 + ip_len <= caplen
                    and buf[p + 26 : p + 38] not in frames
                ):
                    pos = nxt
                    if ts > now:
                        now = ts
                        if ts >= next_expire:
                            chunks.pos = pos
                            clock.tick(ts)
                            next_expire = clock.next_expire
                            if done():
                                return
                    continue
                if now > clock.now:
                    clock.tick(now)
                chunks.pos = nxt
                yield ts, 1, buf[p:nxt], wire_len if wire_len >= caplen else caplen
                if done():
                    return
                pos = nxt
                now, next_expire = clock.now, clock.next_expire
            if not _refilled(chunks, pos, need, ts, weird, name):
                return
    finally:
        if now > clock.now:
            clock.tick(now)


class _Interface:
    __slots__ = ("linktype", "unit", "offset", "snaplen")

    def __init__(self, linktype: int, unit: float, offset: int, snaplen: int) -> None:
        self.linktype = linktype
        self.unit = unit
        self.offset = offset
        self.snaplen = snaplen


def _parse_idb(block: bytes, little: bool) -> _Interface:
    """Interface Description Block: linktype(2) reserved(2) snaplen(4) options."""
    import dpkt  # here, not at the top: only pcapng needs it (0.1 s to import)

    cls = (
        dpkt.pcapng.InterfaceDescriptionBlockLE if little else dpkt.pcapng.InterfaceDescriptionBlock
    )
    idb = cls(block)
    unit = 1e-6
    offset = 0
    for opt in idb.opts:
        if opt.code == OPT_IF_TSRESOL and len(opt.data) >= 1:
            v = opt.data[0]
            unit = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -(v & 0x7F)
        elif opt.code == OPT_IF_TSOFFSET and len(opt.data) >= 8:
            offset = struct.unpack("<q" if little else ">q", opt.data[:8])[0]
    return _Interface(int(idb.linktype), unit, offset, int(idb.snaplen))


def read_pcapng(fh: IO[bytes], weird: WeirdSink, name: str) -> Iterator[Record]:
    """Yield the packets of a pcapng file, every section and interface included."""
    for rec in _pcapng(fh, weird, name):
        if rec is not None:
            yield rec


def read_pcapng_batches(
    fh: IO[bytes], weird: WeirdSink, name: str, most: int = 64
) -> Iterator[list[Record]]:
    """The packets of a pcapng stream in lists of at most ``most``: each list what the bytes
    read so far hold, handed over before the next read (which may wait for a pipe: ``live``'s
    dumpcap), so a batch never waits for more traffic."""
    batch: list[Record] = []
    for rec in _pcapng(fh, weird, name):
        if rec is not None:
            batch.append(rec)
            if len(batch) < most:
                continue
        if batch:
            yield batch
            batch = []
    if batch:
        yield batch


def _pcapng(fh: IO[bytes], weird: WeirdSink, name: str) -> Iterator[Record | None]:
    """The packets of a pcapng stream, and None before a block needs bytes not yet read.

    Block: type(4) total_length(4) body trailing_total_length(4).
    EPB body: interface_id(4) ts_high(4) ts_low(4) caplen(4) wire_len(4) data options.
    SPB body: wire_len(4) data.  PB (obsolete): interface_id(2) drops(2) ts_high(4)
    ts_low(4) caplen(4) wire_len(4) data.
    """
    chunks = _Chunks(fh)
    take = chunks.take
    little = True
    interfaces: list[_Interface] = []
    head_s = struct.Struct("<II")
    epb_s = struct.Struct("<IIIII")
    ts = 0.0
    while True:
        if chunks.remaining() < 8:
            yield None  # the next read may wait
        head = take(8)
        if head is None:
            _end_of_input(chunks, ts, weird, name)
            return
        if head[:4] == PCAPNG_MAGIC:
            bom = take(4)
            if bom is None:
                _end_of_input(chunks, ts, weird, name)
                return
            if bom == b"\x4d\x3c\x2b\x1a":
                little = True
            elif bom == b"\x1a\x2b\x3c\x4d":
                little = False
            else:
                weird(ts, "capture_corrupt_record", f"{name}: bad pcapng byte-order magic")
                return
            order = "<" if little else ">"
            head_s = struct.Struct(order + "II")
            epb_s = struct.Struct(order + "IIIII")
            length = head_s.unpack(head)[1]
            if length < 28 or length % 4 or length > MAX_BLOCK:
                weird(ts, "capture_corrupt_record", f"{name}: section header length {length}")
                return
            if take(length - 12) is None:
                _end_of_input(chunks, ts, weird, name)
                return
            interfaces = []
            continue
        btype, length = head_s.unpack(head)
        if length < 12 or length % 4 or length > MAX_BLOCK:
            weird(ts, "capture_corrupt_record", f"{name}: block length {length} is not plausible")
            return
        if chunks.remaining() < length - 8:
            yield None
        body = take(length - 8)
        if body is None:
            _end_of_input(chunks, ts, weird, name)
            return
        if btype == BT_EPB:
            if len(body) < 24:
                weird(ts, "capture_corrupt_record", f"{name}: short enhanced packet block")
                continue
            iface_id, hi, lo, caplen, wire_len = epb_s.unpack_from(body)
            if iface_id >= len(interfaces):
                weird(ts, "capture_unknown_interface", f"{name}: interface {iface_id}")
                continue
            iface = interfaces[iface_id]
            ts = iface.offset + ((hi << 32) | lo) * iface.unit
            if 20 + caplen > len(body) - 4:
                weird(ts, "capture_corrupt_record", f"{name}: packet overruns its block")
                continue
            yield ts, iface.linktype, body[20 : 20 + caplen], max(wire_len, caplen)
        elif btype == BT_IDB:
            from dpkt import UnpackError

            try:
                interfaces.append(_parse_idb(head + body, little))
            except (UnpackError, struct.error, ValueError, IndexError) as exc:
                weird(ts, "capture_corrupt_record", f"{name}: interface block: {exc}")
                return
        elif btype == BT_SPB:
            if not interfaces or len(body) < 8:
                weird(
                    ts, "capture_corrupt_record", f"{name}: simple packet block without interface"
                )
                continue
            wire_len = struct.unpack_from("<I" if little else ">I", body)[0]
            iface = interfaces[0]
            caplen = min(wire_len, len(body) - 8)
            if iface.snaplen:
                caplen = min(caplen, iface.snaplen)
            yield ts, iface.linktype, body[4 : 4 + caplen], max(wire_len, caplen)
        elif btype == BT_PB:
            if len(body) < 24:
                continue
            o = "<" if little else ">"
            iface_id, _drops, hi, lo, caplen, wire_len = struct.unpack_from(o + "HHIIII", body)
            if iface_id >= len(interfaces) or 20 + caplen > len(body) - 4:
                weird(ts, "capture_corrupt_record", f"{name}: bad packet block")
                continue
            iface = interfaces[iface_id]
            ts = iface.offset + ((hi << 32) | lo) * iface.unit
            yield ts, iface.linktype, body[20 : 20 + caplen], max(wire_len, caplen)
        # other blocks (statistics, name resolution, custom) carry no packets
