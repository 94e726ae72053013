"""Fuzz targets: bytes in, no exception out (but the ones a bad input is allowed to raise).

Each target turns one fuzzer input into work for one layer, in process, with internal errors
re-raised (``strict``) so that the error boundary cannot hide a crash:

- ``dicom``: the sans-IO association parser, fed both directions in fuzzer-chosen chunks,
  gaps and a close, with small limits whose bounds are asserted after every call;
- ``capture``: the pcap/pcapng readers on the input as a file (an ``InputError`` is the
  allowed answer to a file that is not a capture);
- ``http``: the passive HTTP parser and the body readers behind it (multipart, gzip, Part 10,
  dicom+json/xml), both directions in fuzzer-chosen chunks and gaps, as the HTTP flow drives
  them (``logs.http_flow.HttpFlow`` with its rows in memory);
- ``pipeline``: the whole per-packet pipeline (decoder, fragments, flows, reassembly, service
  recognition, DICOM decoding, rules, tables in memory) on Ethernet frames cut from the input,
  each frame's link, IP and TCP headers chosen around a real DICOM conversation.

Seeds (``seeds``) are real bytes from the sample captures and pynetdicom-encoded PDUs.
"""

from __future__ import annotations

import dataclasses
import io
import struct
from collections.abc import Callable, Iterator

from analyzer.capture.sources import _records_of
from analyzer.config import Config, Limits
from analyzer.dicom.association import AssociationParser
from analyzer.dicom.limits import DicomLimits
from analyzer.errors import InputError
from analyzer.logs.records import RECORDS
from analyzer.logs.sinks import ListSink
from analyzer.net.checksum import Checksums
from analyzer.run.pipeline import Pipeline

DICOM_LIMITS = DicomLimits(
    max_control_pdu=4096, max_command=1024, max_dataset_head=2048, max_pending=4
)


def _chunks(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(op, direction, bytes): op 0 data, 1 gap of len(bytes) + 1; each chunk is a 2-byte
    header (op and direction in the first, length in the second) then that many bytes."""
    pos = 0
    while pos + 2 <= len(data):
        ctl, length = data[pos], data[pos + 1] * 8
        pos += 2
        yield (ctl >> 7) & 1 if ctl & 0x40 else 0, ctl & 1, data[pos : pos + length]
        pos += length


def dicom(data: bytes) -> None:
    midstream = bool(data[:1] and data[0] & 0x80)
    parser = AssociationParser(DICOM_LIMITS, midstream=midstream)
    ts = 1.0
    for op, direction, chunk in _chunks(data[1:]):
        ts += 0.001
        if op:
            parser.gap(direction, ts, len(chunk) + 1)
        else:
            parser.feed(direction, chunk, ts)
        _check_bounds(parser)
    parser.close(ts + 1)


def _check_bounds(parser: AssociationParser) -> None:
    for framer in parser.framers:
        assert framer.buffered <= DICOM_LIMITS.max_control_pdu + 16, framer.buffered
    for pending in parser.pending:
        assert len(pending) <= DICOM_LIMITS.max_pending
        for p in pending.values():
            assert len(p.command_raw) <= DICOM_LIMITS.max_command
            assert p.head is None or len(p.head) <= DICOM_LIMITS.max_dataset_head


def capture(data: bytes) -> None:
    weirds: list[tuple[float, str, str]] = []
    fh = io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]
    try:
        for n, _record in enumerate(_records_of(fh, "fuzz.pcap", lambda *w: weirds.append(w))):
            if n > 10_000:
                break
    except InputError:
        pass  # "not a capture" is the right answer to most inputs


PIPELINE_CONFIG = dataclasses.replace(
    Config(),
    strict=True,
    salt=b"fuzz-salt",
    limits=dataclasses.replace(Limits(), max_flows=64, max_fragment_datagrams=16),
    dicom=DICOM_LIMITS,
)
CLIENT, SERVER = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
_ETH = bytes.fromhex("020000000002020000000001")


def frames(data: bytes) -> Iterator[tuple[float, int, bytes, int]]:
    """Records from the input: each is a 4-byte header (flags: bit 0 direction, bits 1-3 FIN,
    SYN, RST, bit 4 no ACK, bit 6 IPv4 fragments, bit 7 raw; a length; a sequence step) and then its payload. Most become a plain
    TCP segment of one conversation on port 104, with sequence numbers that follow the bytes
    unless the step says otherwise; some are raw frames (any link, any header)."""
    pos, ts = 0, 1000.0
    seq = [1000, 5000]
    while pos + 4 <= len(data):
        flags, length, step = (
            data[pos],
            struct.unpack_from(">H", data, pos + 1)[0] % 1600,
            data[pos + 3],
        )
        pos += 4
        payload = data[pos : pos + length]
        pos += length
        ts += 0.0005
        if flags & 0x80:  # a raw frame: whatever the fuzzer wrote, on Ethernet
            yield ts, 1, payload, len(payload) + (step & 3)
            continue
        d = flags & 1
        tcp_flags = ((flags >> 1) & 0x07) | (0 if flags & 0x10 else 0x10)  # FIN SYN RST, ACK
        if step & 0x80:
            seq[d] = (seq[d] + (step & 0x7F) - 64) & 0xFFFFFFFF  # a jump or an overlap
        src, dst = (CLIENT, SERVER) if d == 0 else (SERVER, CLIENT)
        sport, dport = (40000, 104) if d == 0 else (104, 40000)
        tcp = (
            struct.pack(
                ">HHIIBBHHH", sport, dport, seq[d], seq[1 - d], 0x50, tcp_flags, 65535, 0, 0
            )
            + payload
        )
        seq[d] = (seq[d] + len(payload) + (1 if tcp_flags & 0x03 else 0)) & 0xFFFFFFFF
        if flags & 0x40 and len(tcp) > 16:  # two IPv4 fragments, maybe overlapping
            cut = max(8, (len(tcp) // 2) & ~7)
            for off, part, more in (
                (0, tcp[:cut], 1),
                (cut - (step & 8), tcp[cut - (step & 8) :], 0),
            ):
                ip = _ipv4(src, dst, part, ident=step, frag=(off >> 3) | (0x2000 if more else 0))
                yield ts, 1, _ETH + b"\x08\x00" + ip, 14 + len(ip)
            continue
        ip = _ipv4(src, dst, tcp)
        yield ts, 1, _ETH + b"\x08\x00" + ip, 14 + len(ip)


def _ipv4(src: bytes, dst: bytes, body: bytes, ident: int = 0, frag: int = 0) -> bytes:
    header = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(body), ident, frag, 64, 6, 0, src, dst)
    return header + body


class _Pipeline(Pipeline):
    def _drop_state(self) -> None:
        """Nothing to free for the merge (no tables are merged); the full collection it runs
        would be most of an input's time."""


def pipeline(data: bytes) -> None:
    sinks = {name: ListSink() for name in RECORDS}
    config = dataclasses.replace(PIPELINE_CONFIG, checksums=_mode(data))
    p = _Pipeline(config, sinks)
    p.feed(frames(data[1:]))
    p.finish()


def _mode(data: bytes) -> Checksums:
    # the frames carry zero checksums: only "ignore" lets segments through, but the other
    # modes exercise the verification paths
    return Checksums.IGNORE if not data or data[0] & 3 else Checksums.AUTO


def http(data: bytes) -> None:
    from analyzer.logs.http_flow import HttpFlow
    from analyzer.privacy import Hasher, PhiPolicy

    sink = ListSink()
    flow = _FakeFlow()
    h = HttpFlow(
        flow,  # type: ignore[arg-type]
        sink,
        sink,
        sink,
        PhiPolicy(Hasher(b"fuzz-salt"), False, False),
        lambda ex: None,
        4096,
    )
    ts = 1.0
    for op, direction, chunk in _chunks(data):
        ts += 0.001
        if op:
            h.gap(direction, ts, len(chunk) + 1)
        else:
            h.data(direction, ts, chunk)
        assert len(h.parser.waiting) <= (1 << 20) + len(chunk)
    h.close(ts + 1, "fin")


class _FakeFlow:
    """What the HTTP flow driver reads of a TCP flow."""

    uid = "Cfuzz"
    orig_h = b"\x0a\x00\x00\x01"
    resp_h = b"\x0a\x00\x00\x02"
    orig_p = 40000
    resp_p = 8042

    def weird(self, ts: float, name: str, detail: str) -> None:
        pass


TARGETS: dict[str, Callable[[bytes], None]] = {
    "dicom": dicom,
    "http": http,
    "capture": capture,
    "pipeline": pipeline,
}
