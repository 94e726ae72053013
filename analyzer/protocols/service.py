"""Recognise the application protocol of a flow from its first bytes, not its port.

Every new flow starts with a ``ServiceSniffer`` as its sink. It holds back the first
few bytes of each direction, decides, then hands the flow to the decoder for that
service (replaying what it held) or drops the payload so that reassembly stops
copying bytes nobody reads.

DICOM (PS3.8 9.3): the requester speaks first with an A-ASSOCIATE-RQ
    0x01, reserved 0x00, PDU length (4, big endian), protocol version 0x0001;
the acceptor answers 0x02 (AC), 0x03 (RJ) or 0x07 (A-ABORT). A flow picked up
mid-stream is scanned for PDU headers (see ``ServiceSniffer``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from analyzer.config import Config
from analyzer.dicom.framing import HeaderRule
from analyzer.http.parser import looks_like_http_request
from analyzer.memory import BUFFERED_PIECE
from analyzer.tcp.events import StreamSink
from analyzer.tcp.flow import Flow

DICOM = "dicom"
TLS = "ssl"
HTTP = "http"

MAX_PDU_LENGTH_MIDSTREAM = 1 << 28
"""A P-DATA length beyond this is not taken as a header when scanning a mid-stream flow."""
MAX_HELD_EVENTS = 64

DecoderFactory = Callable[[Flow, str], StreamSink | None]


@dataclass(slots=True)
class SniffLimits:
    """The sniffers' bounds (from ``[limits]`` and ``[dicom]``) and the bytes they hold now,
    shared by the sniffers of one pipeline."""

    need: int
    midstream_hold: int
    max_total: int
    header: HeaderRule
    """The "plausible PDU header" rule, shared with the framer."""
    midstream_header: HeaderRule
    held_total: int = 0

    @classmethod
    def of(cls, config: Config) -> SniffLimits:
        lim = config.limits
        return cls(
            need=lim.sniff_bytes,
            midstream_hold=lim.midstream_hold,
            max_total=lim.max_sniff_total,
            header=HeaderRule(config.dicom.max_control_pdu, config.dicom.max_control_pdu),
            midstream_header=HeaderRule(MAX_PDU_LENGTH_MIDSTREAM, config.dicom.max_control_pdu),
        )


def looks_like_associate_rq(head: bytes, rule: HeaderRule) -> bool:
    """The first bytes of a requester's stream are an A-ASSOCIATE-RQ header."""
    return len(head) >= 10 and head[0] == 0x01 and rule.verdict(head, 0) is True


def looks_like_pdu(head: bytes, rule: HeaderRule | None = None) -> bool:
    """A PDU header other than the RQ's as the first bytes: a defined type with a consistent
    header (``rule``), or an undefined type (8 to 0x7F) with reserved byte 0 and a length
    under 1 MiB. On a DICOM port that is malformed DICOM, not some other protocol (RDP's
    ``03 00 00 13`` is no A-ASSOCIATE-RJ: an RJ is 4 bytes long)."""
    if len(head) < 6 or head[1] != 0:
        return False
    if 1 <= head[0] <= 7:
        return rule is not None and rule.verdict(head, 0) is True
    return 8 <= head[0] < 0x80 and int.from_bytes(head[2:6], "big") < 1 << 20


def guess_protocol(head: bytes) -> str:
    """What the first bytes of a flow that is neither DICOM nor TLS look like."""
    if head[:4] in (b"GET ", b"POST", b"PUT ", b"HEAD", b"OPTI", b"DELE", b"PATC", b"CONN"):
        return "http"
    if head.startswith(b"HTTP/"):
        return "http"
    if head.startswith(b"SSH-"):
        return "ssh"
    if head[:4] in (b"220 ", b"220-", b"EHLO", b"HELO"):
        return "smtp/ftp"
    if head[:2] == b"\x03\x00":
        return "rdp"
    if head[4:8] in (b"\xffSMB", b"\xfeSMB"):
        return "smb"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head[:64]):
        return "text"
    return "binary"


def looks_like_tls(head: bytes) -> bool:
    """A TLS handshake record: content type 22, version 3.x."""
    return len(head) >= 3 and head[0] == 0x16 and head[1] == 0x03 and head[2] <= 0x04


class ServiceSniffer:
    """The first sink of every flow: buffers a few bytes, recognises, hands over.

    A flow seen from its SYN is decided on its first 10 bytes. A flow picked up
    mid-stream is scanned for PDU headers (its first bytes are rarely one): on a DICOM
    port one plausible header is enough, elsewhere the header after it must be
    plausible too. Held bytes are bounded per flow and across all flows.
    """

    __slots__ = ("flow", "factory", "held", "order", "dicom_ports", "scan_pos", "limits", "unread")

    def __init__(
        self,
        flow: Flow,
        factory: DecoderFactory,
        dicom_ports: frozenset[int],
        limits: SniffLimits,
    ) -> None:
        self.limits = limits
        self.flow = flow
        self.factory = factory
        self.dicom_ports = dicom_ports
        self.held: list[bytearray] = [bytearray(), bytearray()]
        self.order: list[tuple[int, float, bytes | int]] = []
        self.scan_pos = [0, 0]
        self.unread = [0, 0]  # every byte is looked at until the flow is recognised

    def data(self, direction: int, ts: float, data: bytes) -> None:
        self.order.append((direction, ts, data))
        midstream = self.flow.midstream
        lim = self.limits
        hold = lim.midstream_hold - len(self.held[direction]) if midstream else lim.need
        keep = data[:hold]
        self.held[direction] += keep
        lim.held_total += len(keep)
        self._decide()

    def skip(self, direction: int, n: int) -> None:
        pass  # never called: every byte is read (``unread`` stays 0)

    def cross(self, direction: int, data: bytes) -> bool:
        return False

    def footprint(self) -> int:
        return len(self.held[0]) + len(self.held[1]) + len(self.order) * BUFFERED_PIECE

    def gap(self, direction: int, ts: float, length: int) -> None:
        self.order.append((direction, ts, length))
        if not self.flow.midstream and not self.held[0]:
            self.flow.midstream = True  # the stream's first bytes are lost: scan like mid-stream
        self._decide()

    def close(self, ts: float, reason: str) -> None:
        self._decide(final=True)
        sink = self.flow.sink
        if sink is not None and sink is not self:
            sink.close(ts, reason)

    def _on_dicom_port(self) -> bool:
        return self.flow.resp_p in self.dicom_ports or self.flow.orig_p in self.dicom_ports

    def _midstream(self, final: bool) -> tuple[bool, str | None]:
        on_port = self._on_dicom_port()
        lim = self.limits
        plausible = lim.midstream_header.plausible
        hold = lim.midstream_hold
        for d in (0, 1):
            buf = self.held[d]
            i = self.scan_pos[d]
            while i + 12 <= len(buf):
                if plausible(buf, i):
                    if on_port:
                        return True, DICOM
                    nxt = i + 6 + int.from_bytes(buf[i + 2 : i + 6], "big")
                    if nxt + 12 <= len(buf):
                        if plausible(buf, nxt):
                            return True, DICOM
                    elif len(buf) < hold and not final:
                        break  # wait for the bytes of the next header
                i += 1
            self.scan_pos[d] = i
        full = (
            all(len(h) >= hold for h in self.held)
            or any(len(h) >= hold for h in self.held)
            and len(self.order) > MAX_HELD_EVENTS
        )
        over = lim.held_total > lim.max_total
        return final or full or over or len(self.order) > 4 * MAX_HELD_EVENTS, None

    def _decide(self, final: bool = False) -> None:
        orig, resp = self.held
        flow = self.flow
        service: str | None = None
        decided = False
        if flow.midstream:
            decided, service = self._midstream(final)
        elif len(orig) >= self.limits.need:
            decided = True
            if looks_like_associate_rq(bytes(orig), self.limits.header):
                service = DICOM
            elif looks_like_tls(bytes(orig)):
                service = TLS
            elif self._on_dicom_port() and looks_like_pdu(bytes(orig), self.limits.header):
                service = DICOM
            elif looks_like_http_request(bytes(orig)):
                service = HTTP
        elif resp and not orig:
            decided = True  # the server spoke first: not DICOM
        elif final or len(self.order) > MAX_HELD_EVENTS:
            decided = True
        if not decided:
            return
        if service in (None, HTTP) and (orig or resp) and self._on_dicom_port():
            flow.guess = guess_protocol(bytes(orig or resp))
        self.limits.held_total -= len(orig) + len(resp)
        self.held = [bytearray(), bytearray()]
        flow.service = service
        sink = self.factory(flow, service) if service is not None else None
        flow.set_sink(sink)
        if sink is not None:
            for direction, ts, item in self.order:
                if isinstance(item, int):
                    sink.gap(direction, ts, item)
                else:
                    sink.data(direction, ts, item)
        self.order.clear()
