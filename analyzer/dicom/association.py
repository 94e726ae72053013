"""The sans-IO association parser: both directions of one TCP flow in, events out.

    parser = AssociationParser(limits)
    events = parser.feed(direction, data, ts)   # direction 0 = requester (TCP originator)
    events += parser.gap(direction, ts, length)
    events += parser.close(ts)

PDVs are joined per (direction, presentation context): the command set is buffered
(small), the dataset is not: only its first ``max_dataset_head`` bytes are kept for
decoding and the rest is counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.dicom.consts import (
    COMMAND_FIELD,
    IDENTIFIER_COMMANDS,
    RESPONSE_BIT,
    CommandField,
    PduType,
)
from analyzer.dicom.dataset import DEFLATED_LE, EXPLICIT_BE, DatasetSummary, summarize
from analyzer.dicom.dimse import Command, decode_command
from analyzer.dicom.events import (
    ControlPdu,
    FramerEvent,
    FramingAnomaly,
    PdvChunk,
    Resynchronized,
)
from analyzer.dicom.framing import HEADER, P_DATA, PDV_HEADER, S_HEADER, S_PDV_VALUE, PduFramer
from analyzer.dicom.items import Associate, decode_abort, decode_associate, decode_reject
from analyzer.dicom.limits import DicomLimits
from analyzer.dicom.messages import (
    Aborted,
    Anomaly,
    AssociateAccepted,
    AssociateRejected,
    AssociateRequested,
    DicomEvent,
    Message,
    PickedUpMidstream,
    ReleaseReplied,
    ReleaseRequested,
)
from analyzer.dicom.sizes import CONTEXT, DICOM_FLOW, PENDING_MESSAGE
from analyzer.dicom.states import State, next_state
from analyzer.dicom.tap import DatasetTap


@dataclass(slots=True)
class _Pending:
    ts: float
    context_id: int
    command_raw: bytearray
    command: Command | None = None
    head: bytearray | None = None
    dataset_bytes: int = 0
    truncated: bool = False
    summary: DatasetSummary | None = None
    """The head decoded as soon as its walk reached Pixel Data: nothing after it is read, so
    the head stops growing there (a CT slice's 5 kB header, not 64 KiB of pixels)."""
    scan: int = 0
    """Where the search for the Pixel Data group resumes in ``head``."""
    tries: int = 0


@dataclass(slots=True)
class ContextState:
    """What the association knows about one presentation context."""

    context_id: int
    abstract_syntax: str | None = None
    proposed: tuple[str, ...] = ()
    result: int | None = None
    transfer_syntax: str | None = None


class AssociationParser:
    def __init__(
        self,
        limits: DicomLimits | None = None,
        *,
        midstream: bool = False,
        keep: frozenset[int] | None = None,
    ) -> None:
        """``keep``: tags whose values are converted in datasets other than query
        identifiers (which keep every value); ``None``: every value everywhere."""
        self.limits = limits or DicomLimits()
        self.keep = keep
        lim = self.limits
        self.framers = (
            PduFramer(max_control_pdu=lim.max_control_pdu, midstream=midstream),
            PduFramer(max_control_pdu=lim.max_control_pdu, midstream=midstream),
        )
        self.state = State.ESTABLISHED if midstream else State.IDLE
        self.midstream = midstream
        self.request: Associate | None = None
        self.accept: Associate | None = None
        self.contexts: dict[int, ContextState] = {}
        self.pending: tuple[dict[int, _Pending], dict[int, _Pending]] = ({}, {})
        self.n_dimse = 0
        self.pdu_counts: dict[int, int] = {}
        self._out: list[DicomEvent] = []
        self._midstream_said = False
        self.n_anomalies = 0
        self.orphan_bytes = [0, 0]
        self._rejected = False
        self.unread = [0, 0]
        """Per direction: ``feed`` of fewer bytes than this would only count them (the sink's
        ``unread``)."""
        self.tap: DatasetTap | None = None
        """Hears every dataset byte (``dicom/tap.py``); set before the first ``feed``."""
        for d, framer in enumerate(self.framers):
            framer.acceptable = lambda ptype, d=d: next_state(self.state, ptype, d) is not None

    # -- input ------------------------------------------------------------------

    def feed(self, direction: int, data: bytes, ts: float) -> list[DicomEvent]:
        fr = self.framers[direction]
        n = len(data)
        if fr.state == S_PDV_VALUE and not fr.pdv_first and n < fr.pdv_left and not fr.pdv_mch & 1:
            # The middle of a dataset PDV (most segments of a C-STORE): no event can come of
            # these bytes, so they are only counted (and kept while the head has room).
            p = self.pending[direction].get(fr.pdv_ctx)
            if p is not None and p.head is not None and p.command is not None:
                fr.pdv_left -= n
                fr.pdu_left -= n
                if p.summary is None and len(p.head) < self.limits.max_dataset_head:
                    self._add_head(p, data)
                    if p.summary is not None or len(p.head) >= self.limits.max_dataset_head:
                        self.unread[direction] = fr.pdv_left
                else:
                    self.unread[direction] = fr.pdv_left
                p.dataset_bytes += n
                if self.tap is not None:  # a tap reads every byte: none may be skipped
                    self.unread[direction] = 0
                    self.tap.data(direction, p.context_id, data)
                return []
        self._out = []
        self._handle(direction, fr.feed(data, ts), ts)
        self.unread[direction] = fr.pdv_left if self.counts_only(direction) else 0
        return self._out

    def skip(self, direction: int, n: int) -> None:
        """Count ``n`` in-order bytes, fewer than ``unread[direction]``: the middle of a dataset
        PDV past its kept head (what ``feed`` would do with them, without reading them)."""
        fr = self.framers[direction]
        fr.pdv_left -= n
        fr.pdu_left -= n
        self.unread[direction] = fr.pdv_left
        self.pending[direction][fr.pdv_ctx].dataset_bytes += n

    def cross(self, direction: int, data: bytes) -> bool:
        """A segment at a P-DATA-TF boundary inside a dataset being counted (see ``skip``):
        the rest of the PDV being counted, when it ends its PDU (possibly none of it: the
        previous segment ended the PDU), then, if the segment goes on, the next P-DATA-TF's
        header and first bytes of one PDV of the same dataset on the same context, whose
        value goes on past the segment::

            [rest of the PDV] | 04 00 LLLL (PDU header) | llll cc mm (PDV header) | value...

        Counted as ``feed`` would count it (PDUs, state machine, the message's bytes) and
        True; False, and nothing done, for anything else (``feed`` takes it: the last
        fragment, a command, other PDVs, anomalies, a header cut by the segment's end)."""
        fr = self.framers[direction]
        if fr.pdv_mch & 3 or fr.buf:
            return False  # a command, or the dataset's last fragment: its end is an event
        if fr.state == S_PDV_VALUE:
            k = fr.pdv_left
            if k != fr.pdu_left or k != self.unread[direction]:
                return False  # more PDVs in this PDU, or not counting (the head is read)
        elif fr.state == S_HEADER and not fr.pdv_left and not fr.pdu_left:
            k = 0  # the previous segment ended both; counting?
            if not self._counting(self.pending[direction].get(fr.pdv_ctx)):
                return False
        else:
            return False
        n = len(data)
        p = self.pending[direction][fr.pdv_ctx]
        if n == k:  # the segment ends with the PDU
            fr.pdv_left = fr.pdu_left = 0
            fr.state = S_HEADER
            p.dataset_bytes += k
            self.unread[direction] = 0
            return True
        rest = n - k - HEADERS
        if rest <= 0 or data[k] != P_DATA or data[k + 1]:
            return False
        length = int.from_bytes(data[k + 2 : k + 6], "big")
        value = int.from_bytes(data[k + 6 : k + 10], "big") - 2
        ctx, mch = data[k + 10], data[k + 11]
        if (
            ctx != fr.pdv_ctx
            or mch & ~2
            or not ctx & 1
            or length > fr.max_pdu
            or not rest < value <= length - PDV_HEADER
            or next_state(self.state, P_DATA, direction) != self.state
        ):
            return False
        if not self.midstream:
            cs = self.contexts.get(ctx)
            if cs is None or cs.result not in (0, None):
                return False  # an anomaly for each PDV: ``feed`` reports it
        fr.pdus += 1
        fr.pdu_type = P_DATA
        fr.state = S_PDV_VALUE
        fr.pdu_left = length - PDV_HEADER - rest
        fr.pdv_left = value - rest
        fr.pdv_mch = mch
        fr.pdv_first = fr.pdu_start = False
        self.pdu_counts[P_DATA] = self.pdu_counts.get(P_DATA, 0) + 1
        p.dataset_bytes += k + rest
        self.unread[direction] = fr.pdv_left
        return True

    def counts_only(self, direction: int) -> bool:
        """``feed`` would only count the next bytes (fewer than the PDV has left): inside a
        dataset PDV, past its first bytes, the dataset head already complete."""
        fr = self.framers[direction]
        if fr.state != S_PDV_VALUE or fr.pdv_first or fr.pdv_mch & 1:
            return False
        return self._counting(self.pending[direction].get(fr.pdv_ctx))

    def _counting(self, p: _Pending | None) -> bool:
        """Is ``p`` a dataset whose next bytes are only counted (its head complete)?"""
        return (
            p is not None
            and self.tap is None
            and p.head is not None
            and p.command is not None
            and (p.summary is not None or len(p.head) >= self.limits.max_dataset_head)
        )

    def footprint(self) -> int:
        """Bytes of state (``analyzer/memory.py``): the decoder, its contexts, buffered
        control PDUs, messages in progress."""
        n = DICOM_FLOW + len(self.contexts) * CONTEXT
        n += self.framers[0].buffered + self.framers[1].buffered
        for pending in self.pending:
            for p in pending.values():
                n += PENDING_MESSAGE + len(p.command_raw) + (len(p.head) if p.head else 0)
        return n

    def gap(self, direction: int, ts: float, length: int) -> list[DicomEvent]:
        self._out = []
        self.unread[direction] = 0
        tap = self.tap
        for p in self.pending[direction].values():
            p.truncated = True
            if tap is not None and p.command is not None and p.command.has_dataset:
                if p.head is None:  # its dataset may have begun in the lost bytes
                    p.head = bytearray()
                    tap.begin(direction, p.context_id, p.command, ts)
                tap.lost(direction, p.context_id, length, ts)
        self._anomaly(ts, direction, "dicom_stream_gap", f"{length} bytes lost; resynchronising")
        self._handle(direction, self.framers[direction].gap(ts), ts)
        return self._out

    def close(self, ts: float) -> list[DicomEvent]:
        """The TCP flow ended: decode what came of a cut control PDU (an A-ASSOCIATE-RQ whose
        length claims more than arrived still names its AE titles and user identity), and
        report messages that never completed."""
        self._out = []
        for direction in (0, 1):
            self._handle(direction, self.framers[direction].cut_short(ts), ts)
        for direction in (0, 1):
            for p in list(self.pending[direction].values()):
                if p.command is not None:
                    p.truncated = True
                    self._emit_message(direction, p, ts)
                else:
                    self._anomaly(
                        ts,
                        direction,
                        "dicom_message_incomplete",
                        f"command on context {p.context_id} never completed",
                    )
            self.pending[direction].clear()
            if self.orphan_bytes[direction]:
                self._anomaly(
                    ts,
                    direction,
                    "dicom_midstream_partial_message",
                    f"{self.orphan_bytes[direction]} dataset bytes of a message that began "
                    "before the capture",
                )
            framer = self.framers[direction]
            if framer.pdu_open:
                self._anomaly(
                    ts,
                    direction,
                    "dicom_pdu_incomplete",
                    f"P-DATA-TF cut off with {framer.pdu_left} bytes to go",
                )
            if self.framers[direction].buffered:
                self._anomaly(
                    ts,
                    direction,
                    "dicom_pdu_incomplete",
                    f"{self.framers[direction].buffered} bytes of an unfinished PDU at close",
                )
        for framer in self.framers:
            # the framers' ``acceptable`` closes over this parser: without this, parser and
            # framers form a cycle that only the cyclic collector frees, buffers and all (a
            # flood of shed flows held hundreds of megabytes that way)
            framer.acceptable = None
            framer.buf = bytearray()
        if self.n_anomalies > MAX_ANOMALIES:
            self._out.append(
                Anomaly(
                    ts=ts,
                    direction=0,
                    name="dicom_anomalies_suppressed",
                    detail=f"{self.n_anomalies - MAX_ANOMALIES} more anomalies in this "
                    f"association were counted, not reported",
                )
            )
        return self._out

    # -- framer events ----------------------------------------------------------

    def _anomaly(self, ts: float, direction: int, name: str, detail: str) -> None:
        """Every anomaly reaches the rules and the weird log; past ``MAX_ANOMALIES`` in one
        association they are only counted (a flood of garbage must not cost a rule call
        per byte), and one row at the close says how many."""
        self.n_anomalies += 1
        if self.n_anomalies <= MAX_ANOMALIES:
            self._out.append(Anomaly(ts=ts, direction=direction, name=name, detail=detail))

    def _handle(self, direction: int, events: list[FramerEvent], ts: float) -> None:
        for ev in events:
            if isinstance(ev, PdvChunk):
                self._pdv(direction, ev)
            elif isinstance(ev, ControlPdu):
                self._control(direction, ev)
            elif isinstance(ev, FramingAnomaly):
                if ev.pdu_type is not None:
                    self._transition(ev.ts, direction, ev.pdu_type)
                self._anomaly(ev.ts, direction, ev.name, ev.detail)
            elif isinstance(ev, Resynchronized):
                if self.midstream and not self._midstream_said:
                    self._midstream_said = True
                    self._out.append(PickedUpMidstream(ts=ev.ts, direction=direction))
                if ev.skipped:
                    self._anomaly(
                        ev.ts,
                        direction,
                        "dicom_resync",
                        f"skipped {ev.skipped} bytes to the next PDU",
                    )

    def _transition(self, ts: float, direction: int, pdu_type: int) -> bool:
        """Move the state machine; False (and an anomaly) when the PDU is unexpected."""
        self.pdu_counts[pdu_type] = self.pdu_counts.get(pdu_type, 0) + 1
        new = next_state(self.state, pdu_type, direction)
        if new is None:
            self._anomaly(
                ts,
                direction,
                "dicom_unexpected_pdu",
                f"{PduType(pdu_type).name} from the {'requester' if direction == 0 else 'acceptor'} "
                f"in state {self.state.name}",
            )
            return False
        self.state = new
        return True

    def _control(self, direction: int, ev: ControlPdu) -> None:
        ts, ptype = ev.ts, ev.pdu_type
        if ev.truncated:
            self._anomaly(
                ts,
                direction,
                "dicom_pdu_truncated",
                f"{PduType(ptype).name}: decoded from the first {len(ev.body)} bytes only",
            )
        if (
            ptype in (PduType.A_ASSOCIATE_AC, PduType.A_ASSOCIATE_RJ)
            and self.state == State.IDLE
            and direction == 1
        ):
            self._anomaly(
                ts,
                direction,
                "dicom_answer_before_request",
                f"{PduType(ptype).name} before any A-ASSOCIATE-RQ was decoded",
            )
        self._transition(ts, direction, ptype)
        # an unexpected PDU is an anomaly (above); it never rewrites what the association
        # already recorded: no second request, no accept after a reject or the other way
        if ptype == PduType.A_ASSOCIATE_RQ and self.request is not None:
            return
        if ptype in (PduType.A_ASSOCIATE_AC, PduType.A_ASSOCIATE_RJ) and (
            self.accept is not None
            or self.state == State.REJECTED
            and ptype == PduType.A_ASSOCIATE_AC
        ):
            return
        if ptype == PduType.A_ASSOCIATE_RJ and self._rejected:
            return
        if ptype in (PduType.A_ASSOCIATE_RQ, PduType.A_ASSOCIATE_AC):
            assoc = decode_associate(ptype, ev.body)
            for name, detail in assoc.anomalies:
                self._anomaly(ts, direction, name, detail)
            if ptype == PduType.A_ASSOCIATE_RQ:
                self.request = assoc
                for c in assoc.contexts:
                    cs = self.contexts.setdefault(c.context_id, ContextState(c.context_id))
                    cs.abstract_syntax = c.abstract_syntax  # the answer may have come first
                    cs.proposed = c.transfer_syntaxes
                self._out.append(AssociateRequested(ts=ts, associate=assoc))
            else:
                self.accept = assoc
                for c in assoc.contexts:
                    if self.request is not None and c.context_id not in self.contexts:
                        self._anomaly(
                            ts,
                            direction,
                            "dicom_context_not_proposed",
                            f"A-ASSOCIATE-AC answers presentation context {c.context_id}, "
                            "which the request did not propose",
                        )
                    cs = self.contexts.setdefault(c.context_id, ContextState(c.context_id))
                    cs.result = c.result
                    cs.transfer_syntax = c.transfer_syntaxes[0] if c.transfer_syntaxes else None
                self._out.append(AssociateAccepted(ts=ts, associate=assoc))
        elif ptype == PduType.A_ASSOCIATE_RJ:
            self._rejected = True
            self._out.append(AssociateRejected(ts=ts, reject=decode_reject(ev.body)))
        elif ptype == PduType.A_RELEASE_RQ:
            self._out.append(ReleaseRequested(ts=ts, direction=direction))
        elif ptype == PduType.A_RELEASE_RP:
            self._out.append(ReleaseReplied(ts=ts, direction=direction))
        elif ptype == PduType.A_ABORT:
            self._out.append(Aborted(ts=ts, direction=direction, abort=decode_abort(ev.body)))

    def requester_roles(self, context_id: int) -> tuple[bool, bool] | None:
        """(SCU, SCP) roles of the requester on a context as negotiated (PS3.7 D.3.3.4): the
        acceptor's 0x54 answer where it gave one, else the default (SCU only). None when the
        negotiation was not seen."""
        cs = self.contexts.get(context_id)
        if self.request is None or self.accept is None or cs is None or cs.result != 0:
            return None
        uid = cs.abstract_syntax
        answer = next((r for r in self.accept.roles if r.sop_class_uid == uid), None)
        proposed = next((r for r in self.request.roles if r.sop_class_uid == uid), None)
        if answer is None or proposed is None:
            return True, False
        return (
            answer.scu_role == 1 and proposed.scu_role == 1,
            answer.scp_role == 1 and proposed.scp_role == 1,
        )

    def _check_role(self, ts: float, direction: int, context_id: int, cf: int | None) -> None:
        """A request its sender may not issue on that context: a C-STORE from the acceptor of
        a C-GET whose requester never took the Storage SCP role, an N-EVENT-REPORT (Storage
        Commitment's answer) from a requester that is not the SCP."""
        if cf is None or cf & RESPONSE_BIT or cf == CommandField.C_CANCEL_RQ:
            return
        roles = self.requester_roles(context_id)
        if roles is None:
            return
        scu, scp = roles
        as_scp = cf == CommandField.N_EVENT_REPORT_RQ  # the one request an SCP sends
        allowed = (scp if as_scp else scu) if direction == 0 else (scu if as_scp else scp)
        if not allowed:
            # the requester's role that would have allowed it (the acceptor takes the other)
            needed = "SCP" if as_scp == (direction == 0) else "SCU"
            sender = "requester" if direction == 0 else "acceptor"
            uid = self.contexts[context_id].abstract_syntax
            self._anomaly(
                ts,
                direction,
                "dicom_role_not_negotiated",
                f"{COMMAND_FIELD.get(cf, hex(cf))} from the {sender} on context {context_id} "
                f"({uid}) without the requester's {needed} role negotiated",
            )

    def _pdv(self, direction: int, ev: PdvChunk) -> None:
        if ev.pdu_start:
            self._transition(ev.ts, direction, PduType.P_DATA_TF)
        if ev.first:
            cs = self.contexts.get(ev.context_id)
            if not self.midstream and (cs is None or cs.result not in (0, None)):
                self._anomaly(
                    ev.ts,
                    direction,
                    "dicom_context_not_negotiated",
                    f"PDV on presentation context {ev.context_id}",
                )
        pending = self.pending[direction]
        p = pending.get(ev.context_id)
        if ev.is_command:
            if p is None or p.command is not None:
                if p is not None and p.command is not None:
                    p.truncated = True  # a new command before the old dataset finished
                    self._emit_message(direction, p, ev.ts)
                if len(pending) >= self.limits.max_pending:
                    self._anomaly(
                        ev.ts, direction, "dicom_too_many_pending", "oldest message dropped"
                    )
                    dropped = pending.pop(next(iter(pending)))
                    if self.tap is not None and dropped.head is not None:
                        self.tap.end(direction, dropped.context_id, None)
                p = pending[ev.context_id] = _Pending(ev.ts, ev.context_id, bytearray())
            if len(p.command_raw) + len(ev.data) > self.limits.max_command:
                self._anomaly(
                    ev.ts, direction, "dicom_command_too_large", "command set over its cap"
                )
                p.truncated = True
            else:
                p.command_raw += ev.data
            if ev.end and ev.is_last:
                p.command = decode_command(bytes(p.command_raw))
                for name, detail in p.command.anomalies:
                    self._anomaly(ev.ts, direction, name, detail)
                self._check_role(ev.ts, direction, ev.context_id, p.command.command_field)
                if not p.command.has_dataset:
                    self._emit_message(direction, p, ev.ts)
            return
        if p is None:
            if self.midstream:
                self.orphan_bytes[direction] += len(ev.data)  # began before the capture did
            elif ev.first:
                self._anomaly(
                    ev.ts,
                    direction,
                    "dicom_dataset_without_command",
                    f"dataset PDV on context {ev.context_id} with no command before it",
                )
            return
        if p.command is None:
            return  # the command's own last fragment is still to come (or was lost)
        if p.head is None:
            p.head = bytearray()
            if self.tap is not None:
                self.tap.begin(direction, p.context_id, p.command, ev.ts)
        if self.tap is not None:
            self.tap.data(direction, p.context_id, ev.data)
        if p.summary is None and len(p.head) < self.limits.max_dataset_head:
            self._add_head(p, ev.data)
        p.dataset_bytes += len(ev.data)
        if ev.end and ev.is_last:
            self._emit_message(direction, p, ev.ts)

    def _add_head(self, p: _Pending, data: bytes) -> None:
        """Keep the dataset's first bytes; once they reach the Pixel Data group (7FE0), decode
        the head there and keep no more (the walk would stop there anyway)."""
        assert p.head is not None and p.command is not None
        head = p.head
        head += data[: self.limits.max_dataset_head - len(head)]
        if p.tries >= MAX_PIXEL_TRIES:
            return
        cs = self.contexts.get(p.context_id)
        syntax = cs.transfer_syntax if cs is not None else None
        if syntax is None or syntax == DEFLATED_LE:
            return  # deflated bytes hide their tags; an unknown syntax is guessed at the end
        marker = b"\x7f\xe0" if syntax == EXPLICIT_BE else b"\xe0\x7f"
        while p.tries < MAX_PIXEL_TRIES:
            i = head.find(marker, p.scan)
            if i < 0:
                p.scan = max(len(head) - 1, 0)
                return
            p.scan = i + 1
            p.tries += 1
            summary = self._summarize(p, syntax, complete=False)
            if not summary.partial:  # the walk stopped at Pixel Data: this is the whole head
                p.summary = summary
                return

    def _summarize(self, p: _Pending, syntax: str, *, complete: bool) -> DatasetSummary:
        assert p.head is not None
        identifier = p.command is not None and p.command.command_field in IDENTIFIER_COMMANDS
        return summarize(
            bytes(p.head),
            syntax,
            complete=complete,
            max_head=self.limits.max_dataset_head,
            keep=None if identifier else self.keep,
        )

    def _emit_message(self, direction: int, p: _Pending, ts: float) -> None:
        self.pending[direction].pop(p.context_id, None)
        command = p.command or Command()
        dataset: DatasetSummary | None = None
        if p.summary is not None:
            dataset = p.summary
        elif p.head is not None:
            cs = self.contexts.get(p.context_id)
            syntax = cs.transfer_syntax if cs is not None else None
            if syntax is None:
                syntax = infer_syntax(bytes(p.head[:16]))
            complete = p.dataset_bytes <= len(p.head) and not p.truncated
            dataset = self._summarize(p, syntax, complete=complete)
        if dataset is not None:
            for name, detail in dataset.anomalies:
                self._anomaly(ts, direction, name, detail)
        self.n_dimse += 1
        message = Message(
            ts=p.ts,
            direction=direction,
            context_id=p.context_id,
            command=command,
            dataset=dataset,
            dataset_bytes=p.dataset_bytes,
            truncated=p.truncated,
        )
        if self.tap is not None and p.head is not None:
            self.tap.end(direction, p.context_id, message)
        self._out.append(message)


HEADERS = HEADER + PDV_HEADER
"""A P-DATA-TF header and its first PDV's header."""
MAX_ANOMALIES = 1000
"""Anomalies of one association handed on; the rest are counted."""
MAX_PIXEL_TRIES = 4
"""Walks tried at a Pixel Data marker in a head; a marker inside a value costs one more."""


def infer_syntax(head: bytes) -> str:
    """Guess Implicit or Explicit VR Little Endian from a dataset's first element."""
    if len(head) >= 6 and head[4:6].isalpha() and head[4:6].isupper():
        return "1.2.840.10008.1.2.1"
    return "1.2.840.10008.1.2"
