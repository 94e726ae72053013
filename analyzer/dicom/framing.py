"""One direction's byte stream split into PDUs (PS3.8 9.3), P-DATA streamed PDV by PDV.

PDU header (6 bytes): type(1) reserved(1) length(4, big endian).
PDV item (PS3.8 9.3.5.1): length(4) presentation-context-id(1) message-control-header(1)
value(length - 2). Control header bit 0: command (1) or dataset (0); bit 1: last fragment.

Control PDUs are buffered whole up to ``max_control_pdu``. P-DATA is never buffered:
each incoming chunk yields ``PdvChunk`` events that reference its bytes. After a TCP gap,
or when a stream is picked up mid-way, the framer scans for the next plausible PDU
header and says how many bytes it skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from analyzer.dicom.events import ControlPdu, FramerEvent, FramingAnomaly, PdvChunk, Resynchronized

HEADER = 6
PDV_HEADER = 6
TYPE_AND_ZERO = re.compile(rb"[\x01-\x07]\x00")
"""Where a PDU header may begin: its type, then the reserved byte."""
P_DATA = 4
FIXED_FOUR = (3, 5, 6, 7)  # RJ, release RQ/RP, abort: bodies of exactly 4 bytes

# states
S_HEADER, S_CONTROL, S_PDV_HEADER, S_PDV_VALUE, S_SYNC = range(5)


class PduFramer:
    __slots__ = (
        "state",
        "buf",
        "pdu_type",
        "pdu_left",
        "pdv_left",
        "pdv_ctx",
        "pdv_mch",
        "pdv_first",
        "max_control_pdu",
        "max_pdu",
        "max_sync_scan",
        "header",
        "skipped",
        "events",
        "ts",
        "pdus",
        "pdu_start",
        "acceptable",
    )

    def __init__(
        self,
        *,
        max_control_pdu: int = 1 << 20,
        max_pdu: int = 1 << 28,
        max_sync_scan: int = 1 << 16,
        midstream: bool = False,
    ) -> None:
        self.state = S_SYNC if midstream else S_HEADER
        self.acceptable: Callable[[int], bool] | None = None
        """Set by the association parser: may a PDU of this type come now? A resync candidate
        of a type the association cannot take (an RJ or AC once it is established, an RQ
        twice) is no candidate: command PDVs begin with bytes that look like an RJ header."""
        self.buf = bytearray()
        self.pdu_type = 0
        self.pdu_left = 0
        self.pdv_left = 0
        self.pdv_ctx = 0
        self.pdv_mch = 0
        self.pdv_first = True
        self.max_control_pdu = max_control_pdu
        self.max_pdu = max_pdu
        self.max_sync_scan = max_sync_scan
        self.header = HeaderRule(max_pdu, max_control_pdu)
        self.skipped = 0
        self.events: list[FramerEvent] = []
        self.ts = 0.0
        self.pdus = 0
        self.pdu_start = False

    @property
    def buffered(self) -> int:
        return len(self.buf)

    @property
    def pdu_open(self) -> bool:
        """A P-DATA-TF PDU started and has not ended."""
        return self.state in (S_PDV_HEADER, S_PDV_VALUE) and self.pdu_left > 0

    def gap(self, ts: float) -> list[FramerEvent]:
        """Bytes were lost: whatever was in progress is gone; find the next PDU."""
        self.events = []
        if self.state == S_CONTROL and self.buf:
            self.events.append(
                ControlPdu(ts=ts, pdu_type=self.pdu_type, body=bytes(self.buf), truncated=True)
            )
        self.state = S_SYNC
        self.buf.clear()
        return self.events

    def cut_short(self, ts: float) -> list[FramerEvent]:
        """The stream ended: a control PDU still being buffered (its length claimed more than
        came) is handed over as truncated, so what arrived of it is decoded."""
        self.events = []
        if self.state == S_CONTROL and self.buf:
            self.events.append(
                ControlPdu(ts=ts, pdu_type=self.pdu_type, body=bytes(self.buf), truncated=True)
            )
            self.buf.clear()
            self.state = S_HEADER
        return self.events

    def feed(self, data: bytes, ts: float) -> list[FramerEvent]:
        self.events = []
        self.ts = ts
        pos, n = 0, len(data)
        while pos < n:
            state = self.state
            if state == S_PDV_VALUE:
                take = min(self.pdv_left, self.pdu_left, n - pos)
                self.pdv_left -= take
                self.pdu_left -= take
                end = self.pdv_left == 0
                self.events.append(
                    PdvChunk(
                        ts=ts,
                        context_id=self.pdv_ctx,
                        is_command=bool(self.pdv_mch & 1),
                        is_last=bool(self.pdv_mch & 2),
                        data=data[pos : pos + take],
                        first=self.pdv_first,
                        end=end,
                        pdu_start=self.pdv_first and self.pdu_start,
                    )
                )
                if self.pdv_first:
                    self.pdu_start = False
                self.pdv_first = False
                pos += take
                if end:
                    self.state = S_PDV_HEADER if self.pdu_left else S_HEADER
                continue
            if state == S_SYNC:
                data, pos = self._sync(data, pos)
                n = len(data)
                continue
            need = (
                HEADER
                if state == S_HEADER
                else PDV_HEADER
                if state == S_PDV_HEADER
                else self.pdu_left
            )
            have = len(self.buf)
            take = min(need - have, n - pos)
            if have == 0 and take == need:
                chunk = data[pos : pos + take]
            else:
                self.buf += data[pos : pos + take]
                chunk = bytes(self.buf) if len(self.buf) == need else b""
            pos += take
            if len(chunk) < need:
                continue
            self.buf.clear()
            if state == S_HEADER:
                self._header(chunk)
            elif state == S_PDV_HEADER:
                self._pdv_header(chunk)
            else:
                self.events.append(ControlPdu(ts=ts, pdu_type=self.pdu_type, body=chunk))
                self.state = S_HEADER
        return self.events

    def _anomaly(self, name: str, detail: str, pdu_type: int | None = None) -> None:
        self.events.append(FramingAnomaly(ts=self.ts, name=name, detail=detail, pdu_type=pdu_type))

    def _header(self, h: bytes) -> None:
        ptype, length = h[0], int.from_bytes(h[2:6], "big")
        self.pdus += 1
        if not 1 <= ptype <= 7:
            self._anomaly("dicom_pdu_unknown_type", f"PDU type {ptype:#04x}")
            self._rescan(h)
            return
        if h[1] != 0:
            self._anomaly(
                "dicom_pdu_reserved_nonzero", f"reserved byte {h[1]:#04x} in {ptype:#04x} PDU"
            )
        self.pdu_type = ptype
        if ptype == P_DATA:
            if length > self.max_pdu or length < PDV_HEADER:
                self._anomaly("dicom_pdu_length_invalid", f"P-DATA-TF of {length} bytes")
                self._rescan(h)
                return
            self.pdu_left = length
            self.pdu_start = True
            self.state = S_PDV_HEADER
            return
        if (ptype in FIXED_FOUR and length != 4) or length > self.max_control_pdu or length < 4:
            self._anomaly("dicom_pdu_length_invalid", f"PDU type {ptype} with length {length}")
            self._rescan(h)
            return
        self.pdu_left = length
        self.state = S_CONTROL

    def _pdv_header(self, h: bytes) -> None:
        length = int.from_bytes(h[0:4], "big")
        ctx, mch = h[4], h[5]
        if length < 2 or length - 2 > self.pdu_left - PDV_HEADER:
            self._anomaly(
                "dicom_pdv_length_invalid",
                f"PDV of {length} bytes in {self.pdu_left} left of the PDU",
                P_DATA if self.pdu_start else None,
            )
            self.pdu_start = False
            self._rescan(h)
            return
        if mch & 0xFC:
            self._anomaly("dicom_pdv_reserved_bits", f"message control header {mch:#04x}")
        if ctx % 2 == 0:
            self._anomaly("dicom_pdv_even_context_id", f"presentation context {ctx}")
        self.pdu_left -= PDV_HEADER
        self.pdv_left = length - 2
        self.pdv_ctx = ctx
        self.pdv_mch = mch
        self.pdv_first = True
        if self.pdv_left == 0:
            self.events.append(
                PdvChunk(
                    ts=self.ts,
                    context_id=ctx,
                    is_command=bool(mch & 1),
                    is_last=bool(mch & 2),
                    data=b"",
                    first=True,
                    end=True,
                    pdu_start=self.pdu_start,
                )
            )
            self.pdu_start = False
            self.state = S_PDV_HEADER if self.pdu_left else S_HEADER
        else:
            self.state = S_PDV_VALUE

    def _rescan(self, header: bytes) -> None:
        """A header that cannot be one: scan for the next PDU from its second byte (a PDU
        length one too short leaves one byte before the real next header)."""
        self.state = S_SYNC
        self.skipped += 1
        self.buf = bytearray(header[1:])

    def _sync(self, data: bytes, pos: int) -> tuple[bytes, int]:
        """Scan for a plausible PDU header; keep the undecided tail between calls. Returns the
        bytes to go on with and where: after a header is found, the bytes from it (held ones
        included), so ``feed`` continues in its own loop (never a recursion per header)."""
        self.buf += data[pos:]
        buf = self.buf
        # Only a type byte 1..7 followed by a zero can begin a header: the scan jumps from one
        # such pair to the next (a C search); every position before is no header. Positions
        # with fewer than 6 bytes after them cannot be judged yet: the scan waits there.
        wait = max(len(buf) - 5, 0)
        i = wait
        scanned = bytes(buf)  # the search holds what it scans: ``buf`` is resized below
        for m in TYPE_AND_ZERO.finditer(scanned, 0, wait + 1):  # pairs that begin before wait
            j = m.start()
            verdict = self.header.verdict(scanned, j)
            if verdict is None:
                i = j  # too few bytes left to judge this position: wait for more
                break
            if verdict and self._candidate(buf, j):
                self.skipped += j
                self.events.append(Resynchronized(ts=self.ts, skipped=self.skipped))
                self.skipped = 0
                rest = scanned[j:]
                buf.clear()
                self.state = S_HEADER
                return rest, 0
        self.skipped += i
        del buf[:i]
        return data, len(data)

    def _candidate(self, buf: bytearray, i: int) -> bool:
        """A plausible header found by the scan that the association can take now and that
        the header after it (where the bytes reach) confirms."""
        ptype = buf[i]
        if self.acceptable is not None and not self.acceptable(ptype):
            return False
        after = i + 6 + int.from_bytes(buf[i + 2 : i + 6], "big")
        return self.header.verdict(buf, after) is not False if after < len(buf) else True


@dataclass(frozen=True, slots=True)
class HeaderRule:
    """Is there a consistent PDU header at ``b[i]``? The one rule shared by the service
    sniffer (is this flow DICOM?) and the framer (where does the next PDU start after a gap?).

    Offset  Length  Field
    0       1       PDU type, 1..7
    1       1       reserved, 0
    2       4       PDU length (big endian): 4 for RJ, release and abort; 68 (two AE titles
                    and the reserved bytes) to ``max_control`` for RQ/AC; for P-DATA-TF a
                    first PDV header of 6 bytes up to ``max_pdata``
    6       2       RQ/AC: protocol version 0x0001. RJ/release/abort: reserved (byte 6 is 0)
    6       4       P-DATA-TF: first PDV length, 2 to PDU length - 4
    10      1       P-DATA-TF: presentation context id, odd
    11      1       P-DATA-TF: message control header, 0..3

    RQ/AC are judged on 8 bytes, RJ/release/abort on 10, P-DATA-TF on 12.
    """

    max_pdata: int
    max_control: int = 1 << 20

    def verdict(self, b: bytes | bytearray, i: int) -> bool | None:
        """True or False; None when there are too few bytes at ``i`` to tell yet."""
        if len(b) - i < 6:
            return None
        ptype = b[i]
        if not 1 <= ptype <= 7 or b[i + 1] != 0:
            return False
        length = int.from_bytes(b[i + 2 : i + 6], "big")
        if ptype in FIXED_FOUR:
            if length != 4:
                return False
            return None if len(b) - i < 10 else b[i + 6] == 0
        if ptype == P_DATA:
            if len(b) - i < 12:
                return None
            if not PDV_HEADER <= length <= self.max_pdata:
                return False
            pdv = int.from_bytes(b[i + 6 : i + 10], "big")
            return 2 <= pdv <= length - 4 and b[i + 10] % 2 == 1 and b[i + 11] <= 3
        if len(b) - i < 8:
            return None
        return 68 <= length <= self.max_control and b[i + 6 : i + 8] == b"\x00\x01"

    def plausible(self, b: bytes | bytearray, i: int) -> bool:
        return bool(self.verdict(b, i))
