"""Recognise the application protocol of a flow from its first bytes, not its port.

Every new flow starts with a ``ServiceSniffer`` as its sink. It holds back the first
few bytes of each direction, decides, then hands the flow to the decoder for that
service (replaying what it held) or drops the payload so that reassembly stops
copying bytes nobody reads.

DICOM (PS3.8 9.3): the requester speaks first with an A-ASSOCIATE-RQ
    0x01, reserved 0x00, PDU length (4, big endian), protocol version 0x0001;
the acceptor answers 0x02 (AC), 0x03 (RJ) or 0x07 (A-ABORT). A flow picked up
mid-stream on a DICOM port is taken when its first bytes look like any PDU header.
"""

from __future__ import annotations

from collections.abc import Callable

from analyzer.tcp.events import StreamSink
from analyzer.tcp.flow import Flow

DICOM = "dicom"
TLS = "ssl"

MIN_ASSOC_RQ_LENGTH = 68  # version, reserved, two AE titles, 32 reserved bytes
MAX_ASSOC_RQ_LENGTH = 1 << 20
MAX_PDU_LENGTH_MIDSTREAM = 1 << 28
NEED = 10
MAX_HELD_EVENTS = 64

DecoderFactory = Callable[[Flow, str], StreamSink | None]


def looks_like_associate_rq(head: bytes) -> bool:
    """The first bytes of a requester's stream are an A-ASSOCIATE-RQ header."""
    if len(head) < NEED or head[0] != 0x01 or head[1] != 0x00:
        return False
    length = int.from_bytes(head[2:6], "big")
    return MIN_ASSOC_RQ_LENGTH <= length <= MAX_ASSOC_RQ_LENGTH and head[6:8] == b"\x00\x01"


def looks_like_pdu_header(head: bytes) -> bool:
    """Any PS3.8 PDU header: type 1..7, reserved 0, a plausible length."""
    if len(head) < 6 or not 1 <= head[0] <= 7 or head[1] != 0:
        return False
    length = int.from_bytes(head[2:6], "big")
    if head[0] in (3, 5, 6, 7):  # RJ, release RQ/RP, abort: fixed 4-byte bodies
        return length == 4
    return 4 <= length <= MAX_PDU_LENGTH_MIDSTREAM


def looks_like_tls(head: bytes) -> bool:
    """A TLS handshake record: content type 22, version 3.x."""
    return len(head) >= 3 and head[0] == 0x16 and head[1] == 0x03 and head[2] <= 0x04


class ServiceSniffer:
    """The first sink of every flow: buffers a few bytes, recognises, hands over."""

    __slots__ = ("flow", "factory", "held", "order", "dicom_ports")

    def __init__(self, flow: Flow, factory: DecoderFactory, dicom_ports: frozenset[int]) -> None:
        self.flow = flow
        self.factory = factory
        self.dicom_ports = dicom_ports
        self.held: list[bytearray] = [bytearray(), bytearray()]
        self.order: list[tuple[int, float, bytes | int]] = []

    def data(self, direction: int, ts: float, data: bytes) -> None:
        self.order.append((direction, ts, data))
        self.held[direction] += data[:NEED]
        self._decide()

    def gap(self, direction: int, ts: float, length: int) -> None:
        self.order.append((direction, ts, length))
        self._decide(gap_in=direction)

    def close(self, ts: float, reason: str) -> None:
        self._decide(final=True)
        sink = self.flow.sink
        if sink is not None and sink is not self:
            sink.close(ts, reason)

    def _decide(self, gap_in: int | None = None, final: bool = False) -> None:
        orig, resp = self.held
        flow = self.flow
        service: str | None = None
        decided = False
        if flow.midstream or gap_in is not None:
            on_port = flow.resp_p in self.dicom_ports or flow.orig_p in self.dicom_ports
            if on_port and (
                looks_like_pdu_header(bytes(orig)) or looks_like_pdu_header(bytes(resp))
            ):
                service, decided = DICOM, True
            elif len(orig) >= NEED or len(resp) >= NEED or final:
                decided = True
        elif len(orig) >= NEED:
            decided = True
            if looks_like_associate_rq(bytes(orig)):
                service = DICOM
            elif looks_like_tls(bytes(orig)):
                service = TLS
        elif resp and not orig:
            decided = True  # the server spoke first: not DICOM
        elif final or len(self.order) > MAX_HELD_EVENTS:
            decided = True
        if not decided:
            return
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
