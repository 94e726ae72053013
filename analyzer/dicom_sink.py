"""The DICOM decoder of one flow as a stream sink: parser events become table rows.

Lives outside ``analyzer/dicom/`` so the parser stays free of network and output code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from analyzer.dicom.association import AssociationParser, DicomLimits
from analyzer.dicom.consts import (
    ABORT_REASON,
    ABORT_SOURCE,
    COMMAND_FIELD,
    CONTEXT_RESULT,
    REJECT_REASON,
    REJECT_RESULT,
    REJECT_SOURCE,
    label,
    status_category,
    status_label,
)
from analyzer.dicom.messages import (
    Aborted,
    Anomaly,
    AssociateAccepted,
    AssociateRejected,
    DicomEvent,
    Message,
    PickedUpMidstream,
)
from analyzer.dicom.states import State
from analyzer.tcp.events import CloseReason
from analyzer.tcp.flow import Flow
from analyzer.tcp.table import ip_text

if TYPE_CHECKING:
    from analyzer.findings.engine import FindingEngine
    from analyzer.inventory import Inventory

Row = tuple[Any, ...]
IDENTIFIER_COMMANDS = frozenset({0x0020, 0x8020, 0x0021, 0x8021, 0x0010, 0x8010})
MAX_PENDING_REQUESTS = 1024
"""Requests awaiting their final response, per association (oldest dropped beyond)."""
PENDING_STATUSES = frozenset({0xFF00, 0xFF01})
DIRECTION = ("orig", "resp")


class DicomSink:
    """Feeds one flow's streams to an AssociationParser and writes its tables."""

    __slots__ = (
        "flow",
        "parser",
        "write",
        "reject",
        "abort",
        "ended",
        "requests",
        "engine",
        "inventory",
        "view",
    )

    def __init__(
        self,
        flow: Flow,
        write: Mapping[str, Callable[[Row], None]],
        limits: DicomLimits,
        engine: FindingEngine | None = None,
        inventory: Inventory | None = None,
    ) -> None:
        from analyzer.findings.context import AssocView

        self.flow = flow
        self.write = write
        self.engine = engine
        self.inventory = inventory
        self.view = AssocView(self)
        self.parser = AssociationParser(limits, midstream=flow.midstream)
        self.reject: AssociateRejected | None = None
        self.abort: Aborted | None = None
        self.ended = False
        self.requests: dict[tuple[int, int], float] = {}
        """(requester direction, message id) -> request ts, until the final response."""

    def data(self, direction: int, ts: float, data: bytes) -> None:
        self._events(self.parser.feed(direction, data, ts))

    def gap(self, direction: int, ts: float, length: int) -> None:
        self._events(self.parser.gap(direction, ts, length))

    def close(self, ts: float, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        self._events(self.parser.close(ts))
        if self.requests:
            ids = ", ".join(str(m) for _, m in list(self.requests)[:10])
            self.flow.weird(
                ts,
                "dicom_request_unanswered",
                f"{len(self.requests)} request(s) without a final response (message ids {ids})",
            )
        self._assoc_row(reason)
        if self.inventory is not None:
            self.inventory.association(self.view)
        if self.engine is not None:
            self.engine.on_association_end(self.view)

    def _events(self, events: list[DicomEvent]) -> None:
        for ev in events:
            if isinstance(ev, Message):
                self._message(ev)
            elif isinstance(ev, Anomaly):
                self.flow.weird(ev.ts, ev.name, f"{DIRECTION[ev.direction]}: {ev.detail}")
                if self.engine is not None:
                    self.engine.on_anomaly(self.view, ev)
            elif isinstance(ev, AssociateAccepted):
                self._context_rows()
            elif isinstance(ev, AssociateRejected):
                self.reject = ev
            elif isinstance(ev, Aborted):
                self.abort = ev
                self.view.abort_direction = ev.direction
            elif isinstance(ev, PickedUpMidstream):
                self.flow.weird(
                    ev.ts, "dicom_midstream_pickup", "association picked up after it started"
                )

    def _message(self, m: Message) -> None:
        c = m.command
        cf = c.command_field
        name = COMMAND_FIELD.get(cf, "unknown") if cf is not None else "unknown"
        status = c.status
        uid = self.flow.uid
        request_ts = self._pair(m, cf, status)
        self.write["dimse"](
            (
                uid,
                m.ts,
                DIRECTION[m.direction],
                m.context_id,
                name,
                cf,
                c.message_id,
                c.message_id_responded,
                c.affected_sop_class_uid,
                c.affected_sop_instance_uid,
                c.requested_sop_class_uid,
                c.requested_sop_instance_uid,
                c.priority,
                c.move_destination,
                c.move_originator_ae,
                c.move_originator_message_id,
                status,
                status_label(status) if status is not None else None,
                status_category(status) if status is not None else None,
                c.error_comment,
                m.dataset_bytes,
                c.n_remaining,
                c.n_completed,
                c.n_failed,
                c.n_warning,
                m.truncated,
                request_ts,
                (m.ts - request_ts) if request_ts is not None else None,
            )
        )
        ds = m.dataset
        patient: str | None = None
        if ds is not None:
            keywords, patient = (
                self.engine.phi_summary(ds) if self.engine is not None else ([], None)
            )
            self.write["dicom_object"](
                (
                    uid,
                    m.ts,
                    c.message_id if c.message_id is not None else c.message_id_responded,
                    DIRECTION[m.direction],
                    name,
                    "identifier" if cf in IDENTIFIER_COMMANDS else "dataset",
                    ds.sop_class_uid or c.sop_class_uid,
                    ds.sop_instance_uid or c.sop_instance_uid,
                    ds.transfer_syntax_uid,
                    m.dataset_bytes,
                    len(ds.elements),
                    m.truncated or ds.partial,
                    keywords,
                    patient,
                )
            )
            if self.inventory is not None:
                self.inventory.dataset(self.view, m.direction, ds, m.ts)
        if self.engine is not None:
            self.engine.on_message(self.view, m, patient)

    def _pair(self, m: Message, cf: int | None, status: int | None) -> float | None:
        """Remember a request; for a response, return its request's ts (None if unseen)."""
        c = m.command
        if cf is None:
            return None
        if not cf & 0x8000:
            if c.message_id is not None and cf != 0x0FFF:  # C-CANCEL gets no response of its own
                if len(self.requests) >= MAX_PENDING_REQUESTS:
                    self.requests.pop(next(iter(self.requests)))
                self.requests[(m.direction, c.message_id)] = m.ts
            return None
        responded = c.message_id_responded if c.message_id_responded is not None else -1
        key = (1 - m.direction, responded)
        request_ts = self.requests.get(key)
        if request_ts is None:
            if not self.parser.midstream:
                name = COMMAND_FIELD.get(cf, hex(cf))
                self.flow.weird(
                    m.ts, "dicom_response_without_request", f"{name} to message id {responded}"
                )
        elif status not in PENDING_STATUSES:
            del self.requests[key]
        return request_ts

    def _context_rows(self) -> None:
        for cs in self.parser.contexts.values():
            self.write["dicom_context"](
                (
                    self.flow.uid,
                    cs.context_id,
                    cs.abstract_syntax,
                    list(cs.proposed),
                    label(CONTEXT_RESULT, cs.result),
                    cs.result,
                    cs.transfer_syntax,
                )
            )

    def _assoc_row(self, reason: str) -> None:
        p, f = self.parser, self.flow
        rq, ac = p.request, p.accept
        if (
            rq is None
            and ac is None
            and self.reject is None
            and self.abort is None
            and not p.n_dimse
        ):
            return  # recognised as DICOM but nothing decodable crossed the wire
        if ac is None and rq is not None:
            self._context_rows()  # proposed contexts of a rejected or unanswered association
        state = p.state
        end_state = {State.RELEASED: "released", State.ABORTED: "aborted"}.get(state)
        if end_state is None:
            open_at_end = reason in (
                CloseReason.IDLE,
                CloseReason.EVICTED,
                CloseReason.END_OF_CAPTURE,
            )
            end_state = "timeout" if open_at_end and state != State.REJECTED else "closed"
        if ac is not None:
            result = "accepted"
        elif self.reject is not None:
            result = "rejected"
        elif self.abort is not None:
            result = "aborted"
        else:
            result = "unknown"
        rj = self.reject.reject if self.reject else None
        ab = self.abort.abort if self.abort else None
        uid_ = rq.user_identity if rq else None
        self.write["dicom_assoc"](
            (
                f.uid,
                f.ts,
                ip_text(f.orig_h),
                f.orig_p,
                ip_text(f.resp_h),
                f.resp_p,
                rq.calling_ae if rq else (ac.calling_ae if ac else None),
                rq.called_ae if rq else (ac.called_ae if ac else None),
                result,
                label(REJECT_RESULT, rj.result) if rj else None,
                label(REJECT_SOURCE, rj.source) if rj else None,
                REJECT_REASON.get((rj.source, rj.reason), "unknown") if rj else None,
                label(ABORT_SOURCE, ab.source) if ab else None,
                label(ABORT_REASON, ab.reason) if ab else None,
                uid_.identity_type if uid_ else None,
                uid_.response_requested if uid_ else None,
                (ac.server_response_length is not None) if (ac and uid_) else None,
                (uid_.identity_type == 2 and uid_.secondary_length > 0) if uid_ else False,
                rq.application_context if rq else None,
                rq.implementation_class_uid if rq else None,
                rq.implementation_version_name if rq else None,
                ac.implementation_class_uid if ac else None,
                ac.implementation_version_name if ac else None,
                rq.max_pdu_length if rq else None,
                ac.max_pdu_length if ac else None,
                len(rq.contexts) if rq else None,
                sum(1 for c in ac.contexts if c.result == 0) if ac else None,
                end_state,
                p.midstream or f.midstream,
                p.n_dimse,
            )
        )
