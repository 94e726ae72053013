"""The flow table: finds each segment's connection, creates, times out and evicts flows.

Memory is bounded by ``Limits.max_flows``: beyond it the least recently active flow
is closed early (reason ``evicted``) with an anomaly row. Timeouts run on capture
time, from three LRU lists (handshake attempts, active flows, closing flows) so the
oldest flow of each kind is always at the front.
"""

from __future__ import annotations

import functools
import hashlib
import socket
import struct
from collections import OrderedDict, deque
from collections.abc import Callable

from analyzer.config import Config
from analyzer.logs.weird import WeirdLog
from analyzer.memory import budget_of
from analyzer.net.checksum import Checksums, Verdict, ip_header_ok, tcp_verdict
from analyzer.tcp.events import CloseReason, StreamSink
from analyzer.tcp.flow import (
    ACK,
    ACTIVE,
    ATTEMPT,
    CLOSING,
    ESTABLISHED,
    FIN,
    RESET,
    RST,
    SYN,
    SYN_ACK_SENT,
    SYN_SENT,
    Flow,
)
from analyzer.tcp.stream import HALF, MASK, Stream

P_DATA_TF = 4
"""The first byte of a segment that may begin a P-DATA-TF PDU."""

FlowKey = tuple[bytes, int, bytes, int]
SinkFactory = Callable[[Flow], StreamSink | None]
PROTECTED_SERVICE = "dicom"
"""Flows of this service are shed last."""
EXPIRE_EVERY = 1.0
UID_MAP_MAX = 1 << 16
TCP_HEAD = struct.Struct("!HHIIBBH").unpack_from
LANE_HEAD = struct.Struct("!IIBBH").unpack_from
"""A TCP header from its sequence number on (the ports are in a lane's key)."""
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@functools.lru_cache(maxsize=8192)
def ip_text(addr: bytes) -> str:
    """The text form of an address; cached, so that the tables and rules holding a busy host
    share one string instead of keeping a copy each."""
    return socket.inet_ntop(socket.AF_INET if len(addr) == 4 else socket.AF_INET6, addr)


def make_uid(ts: float, key: FlowKey, n: int, sensor: str | None = None) -> str:
    """A Zeek-like flow uid, the same for the same input on every run (and sensor)."""
    src, sport, dst, dport = key
    text = f"{ts:.6f}|{src.hex()}|{sport}|{dst.hex()}|{dport}|{n}"
    if sensor is not None:
        text += f"|{sensor}"
    digest = hashlib.blake2b(text.encode(), digest_size=12).digest()
    v = int.from_bytes(digest, "big")
    out = []
    for _ in range(17):
        v, r = divmod(v, 62)
        out.append(_B62[r])
    return "C" + "".join(out)


def _end_reason(flow: Flow, otherwise: str) -> str:
    if RESET in flow.state:
        return CloseReason.RST
    return CloseReason.FIN if flow.closed() else otherwise


class _Lane:
    """One direction of a flow whose segments ``counted`` settles, with what the checks
    found: valid until the flow's next whole-path segment or its end."""

    __slots__ = ("flow", "d", "s", "o", "sink", "acked", "lru", "keep")

    def __init__(
        self,
        flow: Flow,
        d: int,
        sink: StreamSink | None,
        acked: bool,
        lru: OrderedDict[int, Flow],
        keep: int,
    ) -> None:
        self.flow = flow
        self.d = d
        self.s = flow.streams[d]
        self.o = flow.streams[1 - d]
        self.sink = sink
        self.acked = acked
        """The direction's ACK letter is in the history (a pure ACK adds nothing to it)."""
        self.lru = lru
        self.keep = keep


class FlowTable:
    def __init__(
        self,
        config: Config,
        weirds: WeirdLog,
        on_end: Callable[[Flow], None],
        sink_factory: SinkFactory,
    ) -> None:
        self.config = config
        self.limits = config.limits
        self.weirds = weirds
        self.on_end = on_end
        self.sink_factory = sink_factory
        self.flows: dict[FlowKey, Flow] = {}
        self.lanes: dict[bytes, _Lane] = {}
        """Flow directions ``counted`` settled, by the frame bytes of their addresses and
        ports (``counted``); at most two per open flow."""
        self.lru: tuple[OrderedDict[int, Flow], ...] = (OrderedDict(), OrderedDict(), OrderedDict())
        self.now = 0.0
        self.next_expire = 0.0
        self.created = 0
        self.evicted = 0
        self._uid_ts = -1.0
        self._uid_seen: dict[FlowKey, int] = {}
        """Flows opened per 4-tuple at the current timestamp (uids stay distinct); bounded:
        past ``UID_MAP_MAX`` it starts over in a new epoch that is part of the uid."""
        self._uid_epoch = 0
        self.verdict: Callable[[], Verdict] | None = None
        """The checksums of the segment being handed over (set by the pipeline unless
        checksums are ignored); asked only where a segment's content or flags matter."""
        self.bad_checksums = 0
        self.offloaded_checksums = 0
        self.mem = 0
        """Estimated bytes all open flows hold (each flow's ``mem``, kept current)."""
        self.mem_limit = budget_of(self.limits).flows
        self.shed_flows = 0
        self.flowless: Callable[[float, str, str], None] = weirds.capture
        """Where a segment with no flow reports (a bad SYN): per shard, never deduplicated."""
        self._placeholder = Flow(
            uid="",
            flow_id=0,
            ts=0.0,
            orig_h=b"",
            orig_p=0,
            resp_h=b"",
            resp_p=0,
            limits=self.limits,
            weirds=weirds,
            vlan=None,
        )

    @property
    def open_flows(self) -> int:
        return sum(len(lru) for lru in self.lru)

    def tick(self, ts: float) -> None:
        """Capture time passes (a packet of another shard): flows time out as in a whole run."""
        if ts > self.now:
            self.now = ts
            if ts >= self.next_expire:
                self.expire(ts)

    def on_tcp(
        self,
        ts: float,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        seq: int,
        ack: int,
        flags: int,
        win: int,
        frame: bytes,
        start: int,
        cap_end: int,
        n: int,
        ip_len: int,
        vlan: int | None,
    ) -> None:
        if ts > self.now:
            self.now = ts
            if ts >= self.next_expire:
                self.expire(ts)
        key = (src, sport, dst, dport)
        flow = self.flows.get(key)
        unread = False
        if flow is None:
            d = 0
        else:
            if flow.lanes is not None:
                self._drop_lanes(flow)
            d = 0 if (sport == flow.orig_p and src == flow.orig_h) else 1
            if n:  # nothing reads these bytes? (inline, not a Stream method: the common segment)
                sink = flow.sink
                if sink is None:
                    unread = True
                elif n < sink.unread[d]:
                    s = flow.streams[d]
                    unread = (
                        s.nseq == seq
                        and not s.ooo
                        and s.fin_off is None
                        and not s.hold
                        and not s.held
                    )
                    if (
                        unread
                        and not flags & (SYN | FIN | RST)
                        and win
                        and cap_end - start == n
                        and flow.bucket == ACTIVE
                        and s.hole is None
                    ):
                        o = flow.streams[1 - d]
                        if (
                            o.hole is None
                            and (not flags & ACK or ack == o.nseq or not o.started)
                            and flow.state[d] not in (SYN_SENT, SYN_ACK_SENT)
                        ):
                            self._counted(flow, d, s, ts, frame, start, n, ip_len)
                            sink.skip(d, n)
                            return
        correct = False
        # SYN, FIN, RST and data are verified, except bytes nothing reads: a flow with no
        # decoder, or in order inside a dataset past its kept head (the sink's ``unread``)
        if self.verdict is not None and (flags & (SYN | FIN | RST) or (n and not unread)):
            verdict = self._checksum(ts, flow, d, key, seq, n)
            if verdict is None:
                return
            correct = verdict == Verdict.GOOD
        if flow is None:
            flow, d = self._new(ts, key, flags, vlan)
        else:
            if flags & SYN and not flags & ACK and self._is_new_connection(flow, d, seq):
                self._finish(flow, ts, CloseReason.PORT_REUSE)
                flow, d = self._new(ts, key, flags, vlan)
        if correct:
            flow.ck_full |= 1 << d
        cap = cap_end - start
        data = frame[start:cap_end] if (flow.sink is not None and cap > 0) else None
        if cap < n:
            flow.weird_once(
                ts,
                "capture_snaplen_truncated",
                f"payload cut to {cap} of {n} bytes by the capture's snaplen; the rest counts as missed",
            )
        flow.packet(d, ts, seq, ack, flags, win, data, cap, n, ip_len)
        if flow.closed():
            bucket = CLOSING
        elif flow.bucket == ACTIVE or n or ESTABLISHED in flow.state:
            bucket = ACTIVE
        else:
            bucket = ATTEMPT
        lru = self.lru
        if bucket == CLOSING and flow.sink is not None:
            self._release_sink(flow, ts)
        if bucket != flow.bucket:
            del lru[flow.bucket][flow.id]
            lru[bucket][flow.id] = flow
            flow.bucket = bucket
        else:
            lru[bucket].move_to_end(flow.id)
        if n and flow.end_reason is None and not (flow.sink is not None and unread):
            # only bytes something reads can make a flow hold more
            size = flow.footprint()
            self.mem += size - flow.mem
            flow.mem = size
            if self.mem > self.mem_limit:
                self.shed(ts)

    def counted(self, ts: float, frame: bytes) -> bool:
        """Settle a plain Ethernet/IPv4/TCP frame (checked by the caller, ``Pipeline.feed``)
        that is the common segment of a bulk transfer (``_counted``), the segment that crosses
        from one P-DATA-TF of such a transfer into the next (``StreamSink.cross``), or a pure
        ACK that acknowledges nothing new (what the receiver of a C-STORE sends); False: not
        one, it takes the whole path. Also False when the clock is due to expire flows.

        A flow direction settled here once has a *lane* (``_Lane``, keyed by the frame's
        addresses and ports as they stand in it): what the checks of ``_settle`` found about
        the flow's state stays true until a segment of the flow takes the whole path or the
        flow ends (both drop its lanes), so the next segments of that direction are checked
        only for what changes from one segment to the next (flags, window, sequence and
        acknowledgement numbers, the sink's ``unread``)."""
        lane = self.lanes.get(frame[26:38])
        if lane is None or ts >= self.next_expire:
            return self._settle(ts, frame)
        seq, ack, offres, flags, win = LANE_HEAD(frame, 38)
        if flags & (SYN | FIN | RST) or not win:
            return False
        ip_len = frame[16] << 8 | frame[17]
        n = ip_len - 20 - (offres >> 4 << 2)
        flow = lane.flow
        o = lane.o
        if not n:
            if flags != ACK or not lane.acked or (o.started and 0 < (ack - o.nseq) & MASK < HALF):
                return self._settle(ts, frame)
            if ts > self.now:
                self.now = ts
            d = lane.d
            flow.last_ts = ts
            flow.pkts[d] += 1
            flow.ip_bytes[d] += ip_len
            lane.lru.move_to_end(flow.id)
            return True
        s = lane.s
        sink = lane.sink
        if sink is None or seq != s.nseq or (flags & ACK and ack != o.nseq and o.started):
            return self._settle(ts, frame)
        d = lane.d
        start = 34 + (offres >> 4 << 2)
        unread = sink.unread[d]
        if n >= unread:
            return self._cross(flow, d, s, sink, ts, frame, start, n, unread)
        if ts > self.now:
            self.now = ts
        flow.last_ts = ts
        flow.pkts[d] += 1
        flow.ip_bytes[d] += ip_len
        keep = lane.keep
        if keep:
            recent = s.recent
            if recent is None:
                recent = s.recent = deque()
            recent.append((s.noff, frame, start, n))  # the frame, not a copy of its bytes
            s.recent_bytes += n
            while s.recent_bytes > keep and len(recent) > 1:
                s.recent_bytes -= recent.popleft()[3]
        s.noff += n
        s.nseq = (s.nseq + n) & MASK
        lane.lru.move_to_end(flow.id)
        sink.skip(d, n)
        return True

    def _settle(self, ts: float, frame: bytes) -> bool:
        """``counted`` without a lane: every check; a lane for the next segments when it
        settles the frame."""
        if ts >= self.next_expire:
            return False
        src, dst = frame[26:30], frame[30:34]
        sport, dport, seq, ack, offres, flags, win = TCP_HEAD(frame, 34)
        flow = self.flows.get((src, sport, dst, dport))
        if flow is None or flow.bucket != ACTIVE or flags & (SYN | FIN | RST) or not win:
            return False
        d = 0 if (sport == flow.orig_p and src == flow.orig_h) else 1
        s = flow.streams[d]
        o = flow.streams[1 - d]
        if (
            s.hole is not None
            or o.hole is not None
            or not s.started
            or flow.state[d] in (SYN_SENT, SYN_ACK_SENT)
        ):
            return False
        start = 34 + (offres >> 4 << 2)
        end = 14 + (frame[16] << 8 | frame[17])
        n = end - start
        if not n:
            # ``Flow.packet`` would only count it: its letter is in the history already and
            # ``Stream.acked`` ignores an ACK at or before what was seen
            if flags != ACK or ("A" if d == 0 else "a") not in flow.history:
                return False
            if o.started and 0 < (ack - o.nseq) & MASK < HALF:
                return False
            if ts > self.now:
                self.now = ts
            flow.last_ts = ts
            flow.pkts[d] += 1
            flow.ip_bytes[d] += end - 14
            self.lru[ACTIVE].move_to_end(flow.id)
            self._lane(frame, flow, d)
            return True
        sink = flow.sink
        if (
            sink is None
            or s.nseq != seq
            or s.ooo
            or s.fin_off is not None
            or s.hold
            or s.held
            or (flags & ACK and ack != o.nseq and o.started)
        ):
            return False
        unread = sink.unread[d]
        if n < unread:
            if ts > self.now:
                self.now = ts
            self._counted(flow, d, s, ts, frame, start, n, end - 14)
            sink.skip(d, n)
            self._lane(frame, flow, d)
            return True
        if not self._cross(flow, d, s, sink, ts, frame, start, n, unread):
            return False
        self._lane(frame, flow, d)
        return True

    def _cross(
        self,
        flow: Flow,
        d: int,
        s: Stream,
        sink: StreamSink,
        ts: float,
        frame: bytes,
        start: int,
        n: int,
        unread: int,
    ) -> bool:
        """A segment at a P-DATA-TF boundary of a dataset being counted (``StreamSink.cross``),
        the flow's state checked by the caller. Its bytes are read (the headers), so its
        checksums are verified as on the whole path."""
        if not unread and frame[start] != P_DATA_TF:
            return False
        end = start + n
        verify = self.verdict is not None
        if verify and not (
            ip_header_ok(frame, 14, 20)
            and tcp_verdict(frame, 34, end, frame[26:30], frame[30:34]) == Verdict.GOOD
        ):
            return False  # the whole path reports it
        if not sink.cross(d, frame[start:end]):
            return False
        if verify:
            flow.ck_full |= 1 << d
        if ts > self.now:
            self.now = ts
        # nothing is held: the headers read became counters (as ``skip``, no new footprint)
        self._counted(flow, d, s, ts, frame, start, n, end - 14)
        return True

    def _lane(self, frame: bytes, flow: Flow, d: int) -> None:
        key = frame[26:38]
        if key in self.lanes:
            return
        self.lanes[key] = _Lane(
            flow,
            d,
            flow.sink,
            ("A" if d == 0 else "a") in flow.history,
            self.lru[ACTIVE],
            self.limits.overlap_check_bytes,
        )
        if flow.lanes is None:
            flow.lanes = [key]
        else:
            flow.lanes.append(key)

    def _drop_lanes(self, flow: Flow) -> None:
        """The flow's state may change (a segment takes the whole path, the flow ends): its
        lanes no longer hold."""
        assert flow.lanes is not None
        for key in flow.lanes:
            self.lanes.pop(key, None)
        flow.lanes = None

    def _counted(
        self,
        flow: Flow,
        d: int,
        s: Stream,
        ts: float,
        frame: bytes,
        start: int,
        n: int,
        ip_len: int,
    ) -> None:
        """The common segment of a bulk transfer, in one step: in order, fully captured, no
        SYN/FIN/RST, a non-zero window, acknowledging nothing new and no wait for acknowledged
        bytes in either direction. What ``Flow.packet`` and ``Stream.segment`` would do with
        it, without the calls: counters, the stream's position, the bytes kept for the
        retransmission check. The caller settles the sink (``skip`` or ``cross``). The lane
        path of ``counted`` spells the same steps inline (the per-segment loop: a call less)."""
        flow.last_ts = ts
        flow.pkts[d] += 1
        flow.ip_bytes[d] += ip_len
        keep = self.limits.overlap_check_bytes
        if keep:
            recent = s.recent
            if recent is None:
                recent = s.recent = deque()
            recent.append((s.noff, frame, start, n))
            s.recent_bytes += n
            while s.recent_bytes > keep and len(recent) > 1:
                s.recent_bytes -= recent.popleft()[3]
        s.noff += n
        s.nseq = (s.nseq + n) & MASK
        self.lru[ACTIVE].move_to_end(flow.id)

    def _checksum(
        self, ts: float, flow: Flow | None, d: int, key: FlowKey, seq: int, n: int
    ) -> Verdict | None:
        """Verify a segment's checksums where they matter: SYN, FIN and RST always; data unless
        nothing reads it. Pure ACKs are not verified: a forged one needs no bad checksum.
        None: drop it."""
        assert self.verdict is not None
        verdict = self.verdict()
        if verdict == Verdict.GOOD or verdict == Verdict.UNPROVEN:
            return verdict
        if (
            verdict == Verdict.PARTIAL
            and self.config.checksums == Checksums.AUTO
            and (flow is None or not flow.ck_full >> d & 1)
        ):
            self.offloaded_checksums += 1
            return verdict
        self.bad_checksums += 1
        what = "IPv4 header" if verdict == Verdict.BAD_IP else "TCP"
        why = ""
        if verdict == Verdict.PARTIAL:
            why = (
                " (the offload pattern, after a correct checksum in this direction)"
                if self.config.checksums == Checksums.AUTO
                else " (the offload pattern of a capture taken on the sending host)"
            )
        detail = (
            f"{ip_text(key[0])}:{key[1]} > {ip_text(key[2])}:{key[3]} seq {seq}, {n} bytes: "
            f"{what} checksum wrong{why}; segment not used"
        )
        name = "ip_checksum_bad" if verdict == Verdict.BAD_IP else "tcp_checksum_bad"
        if flow is not None:
            flow.weird(ts, name, detail)
        else:
            self.flowless(ts, name, detail)
        return None

    def _is_new_connection(self, flow: Flow, d: int, seq: int) -> bool:
        """A SYN on a known 4-tuple starts a new connection unless it repeats the old one."""
        if (
            flow.closed()
            or flow.streams[0].fin_off is not None
            or flow.streams[1].fin_off is not None
        ):
            return True
        if d == 0 and flow.syn_seq is not None:
            return seq != flow.syn_seq and flow.bucket == ACTIVE
        return d == 1 and flow.bucket == ACTIVE

    def _new(self, ts: float, key: FlowKey, flags: int, vlan: int | None) -> tuple[Flow, int]:
        src, sport, dst, dport = key
        flipped = False
        if flags & SYN:
            flipped = bool(flags & ACK)
        elif self._looks_like_server(sport, dport):
            flipped = True
        okey = (dst, dport, src, sport) if flipped else key
        if len(self.lru[0]) + len(self.lru[1]) + len(self.lru[2]) >= self.limits.max_flows:
            self._evict(ts)
        if ts != self._uid_ts:
            self._uid_ts = ts
            self._uid_epoch = 0
            self._uid_seen.clear()
        elif len(self._uid_seen) >= UID_MAP_MAX:  # a flood of flows sharing one timestamp
            self._uid_epoch += 1
            self._uid_seen.clear()
        nth = self._uid_seen.get(okey, 0)
        self._uid_seen[okey] = nth + 1
        self.created += 1
        flow = Flow(
            uid=make_uid(ts, okey, nth + (self._uid_epoch << 20), self.config.sensor),
            flow_id=self.created,
            ts=ts,
            orig_h=okey[0],
            orig_p=okey[1],
            resp_h=okey[2],
            resp_p=okey[3],
            limits=self.limits,
            weirds=self.weirds,
            vlan=vlan,
        )
        if flipped:
            flow.history = "^"
        self.flows[flow.keys[0]] = flow
        self.flows[flow.keys[1]] = flow
        self.lru[ATTEMPT][flow.id] = flow
        flow.set_sink(self.sink_factory(flow))
        d = 1 if flipped else 0
        return flow, d

    def _looks_like_server(self, sport: int, dport: int) -> bool:
        ports = self.config.dicom_ports
        if sport in ports and dport not in ports:
            return True
        if dport in ports:
            return False
        return sport < 1024 <= dport

    def expire(self, now: float) -> None:
        self.next_expire = now + EXPIRE_EVERY
        lim = self.limits
        for bucket, timeout in (
            (CLOSING, lim.close_linger),
            (ATTEMPT, lim.attempt_timeout),
            (ACTIVE, lim.idle_timeout),
        ):
            lru = self.lru[bucket]
            while lru:
                flow = next(iter(lru.values()))
                if now - flow.last_ts < timeout:
                    break
                reason = (
                    CloseReason.RST
                    if RESET in flow.state
                    else (CloseReason.FIN if bucket == CLOSING else CloseReason.IDLE)
                )
                self._finish(flow, now, reason)

    def _evict(self, ts: float) -> None:
        for bucket in (CLOSING, ATTEMPT, ACTIVE):
            lru = self.lru[bucket]
            if lru:
                flow = next(iter(lru.values()))
                if bucket == CLOSING:
                    # already closed by FIN or RST, only lingering for late ACKs: ending it
                    # early loses nothing, and it ended the way it ended, not by eviction
                    reason = CloseReason.RST if RESET in flow.state else CloseReason.FIN
                    self._finish(flow, ts, reason)
                    return
                self.evicted += 1
                self.weirds.capture(
                    ts,
                    "tcp_flow_table_full",
                    f"evicted {flow.uid} to stay under {self.limits.max_flows} flows",
                )
                self._finish(flow, ts, CloseReason.EVICTED)
                return

    def _release_sink(self, flow: Flow, ts: float) -> None:
        """TCP is over: hand the consumer everything now rather than after the linger,
        so decoder state is freed at once (late ACKs still count in conn)."""
        o, r = flow.streams
        if o.ooo or r.ooo or o.hole is not None or r.hole is not None:
            return  # bytes still waiting for a hole to fill; the linger may bring them
        o.flush(ts)
        r.flush(ts)
        sink = flow.sink
        flow.set_sink(None)
        if sink is not None:
            sink.close(ts, _end_reason(flow, CloseReason.FIN))

    def shed(self, ts: float) -> None:
        """Over the memory budget: end the flows that hold the most, those not decoded as
        DICOM first (TLS, unknown, undecided), until the total is back under 90% of the
        budget. Each is logged as evicted with a ``memory_budget_shed`` row; what it had
        decoded is written as for any flow that ends."""
        target = self.mem_limit * 9 // 10
        victims = sorted(
            {id(f): f for f in self.flows.values()}.values(),
            key=lambda f: (f.service == PROTECTED_SERVICE, -f.mem),
        )
        for flow in victims:
            if self.mem <= target:
                break
            self.shed_flows += 1
            flow.weird(
                ts,
                "memory_budget_shed",
                f"held about {flow.mem:,} bytes ({flow.service or 'no service'}); ended to keep "
                f"open flows under {self.mem_limit >> 20} MB (limits.memory_budget)",
            )
            self.evicted += 1
            self._finish(flow, ts, CloseReason.EVICTED)

    def _finish(self, flow: Flow, ts: float, reason: str) -> None:
        if flow.lanes is not None:
            self._drop_lanes(flow)
        self.mem -= flow.mem
        flow.mem = 0
        del self.lru[flow.bucket][flow.id]
        for k in flow.keys:
            if self.flows.get(k) is flow:
                del self.flows[k]
        end_ts = max(ts, flow.last_ts) if reason != CloseReason.END_OF_CAPTURE else flow.last_ts
        flow.end_reason = reason
        # The same error boundary as a packet's, whichever path ends the flow (an idle expiry
        # set off by another flow's packet, eviction, the end of the capture): a failure is an
        # anomaly of this flow, and the flow is still logged.
        try:
            flow.streams[0].flush(end_ts)
            flow.streams[1].flush(end_ts)
            if flow.sink is not None:
                flow.sink.close(end_ts, reason)
        except Exception as exc:
            if self.config.strict:
                raise
            flow.weird(end_ts, "analyzer_internal_error", f"{type(exc).__name__}: {exc}")
        self.weirds.flow_done(flow, end_ts)
        try:
            self.on_end(flow)
        except Exception as exc:
            if self.config.strict:
                raise
            self.weirds.flow(
                flow, end_ts, "analyzer_internal_error", f"{type(exc).__name__}: {exc}"
            )
        flow.detach(self._placeholder)

    def finish_all(self) -> None:
        for bucket in (CLOSING, ATTEMPT, ACTIVE):
            lru = self.lru[bucket]
            while lru:
                flow = next(iter(lru.values()))
                self._finish(flow, self.now, _end_reason(flow, CloseReason.END_OF_CAPTURE))
