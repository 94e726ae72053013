"""One TCP connection: both stream directions plus Zeek-style state and history.

``conn_state`` and ``history`` follow Zeek's conn.log meanings: history letters are
upper case for the originator and lower case for the responder; S H F R repeat only
for a new sequence number, A D I Q appear once, and T G W repeat at 1, 10, 100, ...
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from analyzer.config import Limits
from analyzer.memory import TCP_FLOW
from analyzer.tcp.events import StreamSink
from analyzer.tcp.stream import Stream

if TYPE_CHECKING:
    from analyzer.logs.weird import WeirdLog

# Endpoint states (names after Zeek's TCP_* endpoint states)
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# Timeout buckets
ATTEMPT, ACTIVE, CLOSING = 0, 1, 2

_RSTOS0 = re.compile(r"\^?S[^HAFGIQ]*R")


class Flow:
    __slots__ = (
        "uid",
        "id",
        "keys",
        "orig_h",
        "orig_p",
        "resp_h",
        "resp_p",
        "ts",
        "last_ts",
        "streams",
        "pkts",
        "ip_bytes",
        "state",
        "history",
        "_marks",
        "service",
        "sink",
        "vlan",
        "bucket",
        "weirds",
        "weird_counts",
        "midstream",
        "end_reason",
        "syn_seq",
        "ck_full",
        "mem",
        "guess",
        "lanes",
    )

    def __init__(
        self,
        *,
        uid: str,
        flow_id: int,
        ts: float,
        orig_h: bytes,
        orig_p: int,
        resp_h: bytes,
        resp_p: int,
        limits: Limits,
        weirds: WeirdLog,
        vlan: int | None,
    ) -> None:
        self.uid = uid
        self.id = flow_id
        self.orig_h = orig_h
        self.orig_p = orig_p
        self.resp_h = resp_h
        self.resp_p = resp_p
        self.keys = ((orig_h, orig_p, resp_h, resp_p), (resp_h, resp_p, orig_h, orig_p))
        self.ts = ts
        self.last_ts = ts
        self.streams = (Stream(0, self, limits), Stream(1, self, limits))
        self.streams[0].peer, self.streams[1].peer = self.streams[1], self.streams[0]
        self.pkts = [0, 0]
        self.ip_bytes = [0, 0]
        self.state = [INACTIVE, INACTIVE]
        self.history = ""
        self._marks: dict[str, int] | None = None
        self.service: str | None = None
        self.sink: StreamSink | None = None
        self.vlan = vlan
        self.bucket = ATTEMPT
        self.weirds = weirds
        self.weird_counts: dict[str, int] | None = None
        self.midstream = False
        self.end_reason: str | None = None
        self.syn_seq: int | None = None
        self.ck_full = 0
        self.mem = 0
        self.guess: str | None = None
        """On a DICOM port, what a flow that is neither DICOM nor TLS looks like."""
        """The estimate of what this flow holds, as last counted in the table's total."""
        """Bit per direction: a segment with a correct checksum was seen (auto mode)."""
        self.lanes: list[bytes] | None = None
        """Keys of this flow's entries in ``FlowTable.lanes`` (None: none)."""

    # -- history ----------------------------------------------------------------

    def mark_once(self, letter: str, direction: int) -> None:
        ch = letter if direction == 0 else letter.lower()
        if ch not in self.history:
            self.history += ch

    def mark_seq(self, letter: str, direction: int, seq: int) -> None:
        """A SYN, SYN-ACK, FIN or RST: its letter again for each new sequence number, but
        (as Zeek does for repeats) only at counts 1, 10, 100, ... so that a flood of them
        cannot grow ``history`` without bound."""
        ch = letter if direction == 0 else letter.lower()
        marks = self._marks
        if marks is None:
            marks = self._marks = {}
        if marks.get(ch) != seq:
            marks[ch] = seq
            key = "#" + ch
            n = marks.get(key, 0) + 1
            marks[key] = n
            if n <= 2:
                self.history += ch  # a repeat once is common (retransmitted SYN with new seq)
            else:
                self.mark_log(letter, direction, n)

    def mark_log(self, letter: str, direction: int, count: int) -> None:
        """Add ``letter`` when ``count`` reaches 1, 10, 100, ..."""
        while count >= 10 and count % 10 == 0:
            count //= 10
        if count == 1:
            self.history += letter if direction == 0 else letter.lower()

    # -- packets ----------------------------------------------------------------

    def detach(self, placeholder: Flow) -> None:
        """Break the flow/stream/sink reference cycles once the flow is finished, so it
        is freed at once instead of waiting for the cyclic garbage collector."""
        self.set_sink(None)
        for stream in self.streams:
            stream.flow = placeholder
            stream.peer = None

    def footprint(self) -> int:
        """Bytes this flow holds (``analyzer/memory.py``): itself, its buffers, its decoder."""
        s0, s1 = self.streams
        n = TCP_FLOW + s0.buffered() + s1.buffered()
        sink = self.sink
        return n + sink.footprint() if sink is not None else n

    def set_sink(self, sink: StreamSink | None) -> None:
        self.sink = sink
        self.streams[0].sink = sink
        self.streams[1].sink = sink

    def weird(self, ts: float, name: str, detail: str) -> None:
        self.weirds.flow(self, ts, name, detail)

    def weird_once(self, ts: float, name: str, detail: str) -> None:
        """Report ``name`` only the first time it happens on this flow."""
        if not self.weird_counts or name not in self.weird_counts:
            self.weirds.flow(self, ts, name, detail)

    def packet(
        self,
        d: int,
        ts: float,
        seq: int,
        ack: int,
        flags: int,
        win: int,
        data: bytes | None,
        cap: int,
        n: int,
        ip_len: int,
    ) -> None:
        self.last_ts = ts
        self.pkts[d] += 1
        self.ip_bytes[d] += ip_len
        stream = self.streams[d]
        state = self.state
        if flags & SYN:
            if flags & (FIN | RST):
                self.mark_once("Q", d)
            if flags & ACK:
                self.mark_seq("H", d, seq)
                if state[d] in (INACTIVE, PARTIAL, SYN_SENT):
                    state[d] = SYN_ACK_SENT
            else:
                self.mark_seq("S", d, seq)
                if d == 0 and self.syn_seq is None:
                    self.syn_seq = seq
                if state[d] == INACTIVE:
                    state[d] = SYN_SENT
            if not stream.started:
                stream.start(seq + 1)
            seq = (seq + 1) & 0xFFFFFFFF
        elif not stream.started:
            stream.start(seq)
            if state[d] == INACTIVE:
                state[d] = PARTIAL
                self.midstream = True
        if flags & FIN and flags & RST:
            self.mark_once("I", d)
        other = self.streams[1 - d]
        if flags & ACK and other.started:
            # what this packet acknowledges was sent before its own data
            other.acked(ts, ack)
        if n:
            self.mark_once("D", d)
            stream.segment(ts, seq, data, cap, n)
        elif flags & ACK and not flags & (SYN | FIN | RST):
            self.mark_once("A", d)
        if win == 0 and not flags & (SYN | RST):
            counts = self._marks
            if counts is None:
                counts = self._marks = {}
            key = "#W" if d == 0 else "#w"
            counts[key] = counts.get(key, 0) + 1
            self.mark_log("W", d, counts[key])
        if flags & FIN:
            self.mark_seq("F", d, seq)
            stream.fin(ts, seq, n)
            if state[d] != RESET:
                state[d] = CLOSED
        if flags & RST:
            self.mark_seq("R", d, seq)
            state[d] = RESET
        if flags & ACK and not flags & SYN and state[d] in (SYN_SENT, SYN_ACK_SENT):
            state[d] = ESTABLISHED
            if state[1 - d] in (SYN_SENT, SYN_ACK_SENT):
                state[1 - d] = ESTABLISHED
        if other.hole is not None:
            other.tick(ts)
        if stream.hole is not None:
            stream.tick(ts)

    # -- summary ----------------------------------------------------------------

    def closed(self) -> bool:
        """True once the connection is over as far as TCP is concerned."""
        a, b = self.state
        return RESET in (a, b) or (a == CLOSED and b == CLOSED)

    def conn_state(self) -> str:
        os_, rs = self.state
        o_inactive = os_ in (INACTIVE, PARTIAL)
        r_inactive = rs in (INACTIVE, PARTIAL)
        if rs == RESET:
            if os_ in (SYN_SENT, SYN_ACK_SENT) or (
                os_ == RESET and self.streams[0].noff == 0 and self.streams[1].noff == 0
            ):
                return "REJ"
            return "RSTRH" if o_inactive else "RSTR"
        if os_ == RESET:
            if r_inactive:
                return "RSTOS0" if _RSTOS0.match(self.history) else "OTH"
            return "RSTO"
        if rs == CLOSED and os_ == CLOSED:
            return "SF"
        if os_ == CLOSED:
            return "SH" if r_inactive else "S2"
        if rs == CLOSED:
            return "SHR" if o_inactive else "S3"
        if os_ == SYN_SENT and rs == INACTIVE:
            return "S0"
        if os_ == ESTABLISHED and rs == ESTABLISHED:
            return "S1"
        return "OTH"
