"""Open capture inputs and merge several of them into one time-ordered record stream.

Inputs may be files, directories (every capture inside, in time order), gzip-compressed
captures, or ``-`` for standard input. Rotated span-port files are merged by timestamp
with at most a few files open at once: a file is opened only when the merged stream
reaches the time its first record carries.
"""

from __future__ import annotations

import heapq
import io
import os
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

from analyzer.capture.formats import (
    GZIP_MAGIC,
    PCAP_MAGIC,
    PCAPNG_MAGIC,
    Mapped,
    Record,
    Skip,
    WeirdSink,
    map_file,
    read_pcap,
    read_pcapng,
)
from analyzer.errors import InputError

__all__ = ["CaptureReader", "Record", "Skip", "WeirdSink", "merged_records", "open_inputs"]


@dataclass(slots=True)
class CaptureReader:
    """One capture input; ``open()`` yields its records from the beginning."""

    name: str
    path: Path | None
    """None for standard input, which can be read only once."""
    size: int | None
    first_ts: float | None = None
    _stdin_stream: IO[bytes] | None = None
    _raw: IO[bytes] | None = None
    _mapped: Mapped | None = None
    span: tuple[int, int] | None = None
    """Only the records that begin between these offsets of a plain pcap file
    (``pcap_cuts``)."""
    bound: Callable[[int, int], int] | None = None
    """With ``span``: where the span ends as its reader goes (``Mapped.bound``)."""
    stopped_at: int | None = None
    """Where the reading of a mapped file stopped: after its last record, or where damage
    ended it (a span's end is checked against it)."""

    def position(self) -> int:
        """Bytes of the underlying (possibly compressed) file consumed so far."""
        if self._mapped is not None:
            return self._mapped.pos
        raw = self._raw
        if raw is None:
            return 0
        if raw.closed:
            return self.size or 0
        try:
            return raw.tell()
        except (OSError, ValueError):
            return 0

    def records(self, weird: WeirdSink, skip: Skip | None = None) -> Iterator[Record]:
        """The records; ``skip``: those a follow phase leaves out (``Skip``; a plain pcap
        file's only, as they are read in place)."""
        raw: IO[bytes]
        if self.path is None:
            stream = self._stdin_stream
            if stream is None:
                raise InputError(f"{self.name}: standard input can be read only once")
            self._stdin_stream = None
            raw = stream
        else:
            try:
                raw = open(self.path, "rb")  # noqa: SIM115 - closed in finally
            except OSError as exc:
                raise InputError(f"{self.name}: cannot open: {exc.strerror}") from None
        self._raw = raw
        name = self.name
        try:
            # a plain pcap file is mapped into memory and read in place (records handed
            # straight from ``read_pcap``: one generator less per record); anything else
            # (pcapng, gzip, standard input) through a read buffer
            plain = self.path is not None and isinstance(raw, io.BufferedReader)
            mm = map_file(raw) if plain and _peek(raw, 4, name) in PCAP_MAGIC else None
            if mm is not None:
                with mm:
                    if len(mm) < 24:
                        raise InputError(f"{name}: pcap file header is cut off")
                    start, end = self.span or (24, len(mm))
                    self._mapped = Mapped(mm, start, end, self.bound)
                    yield from read_pcap(raw, mm[:24], weird, name, self._mapped, skip)
            elif self.span is not None:
                raise InputError(f"{name}: a span of records needs a plain pcap file")
            else:
                yield from _records_of(raw, name, weird)
        finally:
            if self._mapped is not None:
                self.stopped_at = self._mapped.pos
            self._mapped = None
            raw.close()


def _records_of(raw: IO[bytes], name: str, weird: WeirdSink) -> Iterator[Record]:
    fh = _decompressed(raw, name)
    magic = _peek(fh, 4, name)
    if magic in PCAP_MAGIC:
        header = fh.read(24)
        if len(header) < 24:
            raise InputError(f"{name}: pcap file header is cut off")
        yield from read_pcap(fh, header, weird, name)
    elif magic == PCAPNG_MAGIC:
        yield from read_pcapng(fh, weird, name)
    else:
        raise InputError(_not_a_capture(name, magic))


def _peek(fh: Any, n: int, name: str) -> bytes:
    try:
        head: bytes = fh.peek(n)[:n]
        return head
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{name}: cannot read: {exc}") from None


class Gunzip(io.RawIOBase):
    """gzip members decompressed as they come, every byte that inflates handed over before a
    cut or corrupt stream is reported. ``gzip.GzipFile`` raises on a cut stream and loses
    what the failing read had inflated (up to a megabyte of good packets); here the error is
    raised on the read after the last good byte, so the record reader keeps everything and
    names the damage."""

    CHUNK = 1 << 13
    """Compressed bytes inflated per step: what a corrupt block costs at most."""

    def __init__(self, fh: IO[bytes]) -> None:
        super().__init__()
        self.fh = fh
        self.z: zlib._Decompress | None = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.out = b""
        self.error: Exception | None = None
        self.done = False
        self.started = False
        self.pending = b""
        """Bytes read past the end of a member: the start of the next one."""

    def readable(self) -> bool:
        return True

    def readinto(self, b: WriteableBuffer) -> int:
        while not self.out and not self.done:
            self._inflate()
        if not self.out:
            if self.error is not None:
                error, self.error = self.error, None
                raise error
            return 0
        view = memoryview(b).cast("B")
        n = min(len(view), len(self.out))
        view[:n] = self.out[:n]
        self.out = self.out[n:]
        return n

    def _inflate(self) -> None:
        z = self.z
        data = (z.unconsumed_tail if z is not None else b"") or self.pending
        self.pending = b""
        data = data or self.fh.read(self.CHUNK)
        if not data:
            self.done = True
            if z is not None and self.started:  # inside a member: the stream was cut
                self.error = EOFError(
                    "compressed file ended before the end-of-stream marker was reached"
                )
            return
        if z is None:  # another member follows (concatenated gzip files)
            if not data.strip(b"\x00"):
                return  # zero padding after the last member
            z = self.z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.started = True
        try:
            self.out = z.decompress(data, self.CHUNK * 4)
        except zlib.error as exc:
            self.done = True
            self.error = exc
            return
        if z.eof:
            rest = z.unused_data
            self.z = None
            if rest:
                self.pending = rest


def _decompressed(raw: IO[bytes], name: str) -> Any:
    """A peekable reader over ``raw``, decompressed when it is gzip."""
    fh: Any = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(cast(Any, raw))
    if _peek(fh, 2, name) == GZIP_MAGIC:
        return io.BufferedReader(Gunzip(fh), 1 << 20)
    return fh


def _not_a_capture(name: str, magic: bytes) -> str:
    if not magic:
        return f"{name}: empty file, not a capture"
    return f"{name}: not a pcap or pcapng capture (starts with {magic.hex()})"


def _sniff_file(path: Path, name: str) -> tuple[str | None, float | None]:
    """Return (error, first timestamp) for a capture file without keeping it open."""
    try:
        with open(path, "rb") as raw:
            it = _records_of(raw, name, lambda *_: None)  # a generator
            try:
                first = next(it, None)
            except InputError as exc:
                return str(exc), None
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
    except OSError as exc:
        return f"{name}: cannot open: {exc.strerror}", None
    return None, first[0] if first else None


def open_inputs(inputs: list[str]) -> tuple[list[CaptureReader], list[str]]:
    """Resolve command-line inputs to readers sorted by first timestamp.

    Returns (readers, warnings). A named file that is not a capture raises InputError;
    a non-capture inside a named directory is skipped with a warning.
    """
    readers: list[CaptureReader] = []
    warnings: list[str] = []
    if "-" in inputs:
        if len(inputs) > 1:
            raise InputError("-: standard input cannot be combined with other inputs")
        stream = sys.stdin.buffer
        return [CaptureReader("<stdin>", None, None, None, stream)], warnings
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = 0
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                error, first = _sniff_file(child, str(child))
                if error is not None:
                    warnings.append(f"skipped {error}")
                    continue
                readers.append(CaptureReader(str(child), child, child.stat().st_size, first))
                found += 1
            if not found:
                raise InputError(f"{item}: directory holds no capture files")
            continue
        if not path.exists():
            raise InputError(f"{item}: no such file or directory")
        error, first = _sniff_file(path, item)
        if error is not None:
            raise InputError(error)
        readers.append(CaptureReader(item, path, os.path.getsize(path), first))
    readers.sort(key=lambda r: (r.first_ts is None, r.first_ts or 0.0, r.name))
    return readers, warnings


def merged_records(
    readers: list[CaptureReader], weird: WeirdSink, skip: Skip | None = None
) -> Iterator[Record]:
    """All records of all readers in timestamp order, opening files lazily.

    Rotated files do not overlap, so usually one file is open at a time; files that
    do overlap in time (two interfaces) are interleaved record by record. One reader's
    records are its own iterator (no generator in between). ``skip`` is used for a single
    reader only: a reader that skips records ticks the clock past the others' next record.
    """
    if len(readers) == 1:
        return readers[0].records(weird, skip)
    return _merged(readers, weird)


def _merged(readers: list[CaptureReader], weird: WeirdSink) -> Iterator[Record]:
    pending = [r for r in readers if r.first_ts is not None]
    heap: list[tuple[float, int, Record, Iterator[Record]]] = []
    order = 0

    def start(reader: CaptureReader) -> None:
        nonlocal order
        it = reader.records(weird)
        rec = next(it, None)
        if rec is not None:
            heapq.heappush(heap, (rec[0], order, rec, it))
            order += 1

    index = 0
    while heap or index < len(pending):
        while index < len(pending) and (not heap or (pending[index].first_ts or 0.0) <= heap[0][0]):
            start(pending[index])
            index += 1
        if not heap:
            continue
        _, o, rec, it = heap[0]
        yield rec
        nxt = next(it, None)
        if nxt is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (nxt[0], o, nxt, it))
