"""One flow's DICOM decoder as a stream sink: drives the parser, keeps the association's
outcome, pairs requests with responses, and hands every event to the observers in order.

Lives outside ``analyzer/dicom/`` so the parser stays free of network and output code.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from pydicom.datadict import tag_for_keyword

from analyzer.dicom.association import AssociationParser
from analyzer.dicom.consts import (
    COMMAND_FIELD,
    QUERY_RETRIEVE,
    CommandField,
    is_pending,
    is_response,
    request_of,
)
from analyzer.dicom.limits import DicomLimits
from analyzer.dicom.messages import (
    Aborted,
    Anomaly,
    AssociateAccepted,
    AssociateRejected,
    DicomEvent,
    Message,
    PickedUpMidstream,
)
from analyzer.logs.asset import DEVICE_KEYWORDS
from analyzer.logs.observer import DicomObserver, MessageInfo
from analyzer.logs.views import AssocOutcome, AssocView, QueryState
from analyzer.memory import QUERY, SMALL_ENTRY
from analyzer.privacy import PhiPolicy, PhiSummary
from analyzer.tcp.events import Direction
from analyzer.tcp.flow import Flow

MAX_PATIENTS_PER_QUERY = 100_000

ALWAYS_KEPT = frozenset(
    tag_for_keyword(k) or 0
    for k in (*DEVICE_KEYWORDS, "SOPClassUID", "SOPInstanceUID", "QueryRetrieveLevel")
)
"""Tags whose values something reads in every dataset, besides the PHI attributes (every
UI value is converted anyway, for ``malformed_uid``)."""


@functools.lru_cache(maxsize=8)
def kept_tags(phi_tags: frozenset[int]) -> frozenset[int]:
    """The tags whose values a stored (non-identifier) dataset's decoding converts."""
    return phi_tags | ALWAYS_KEPT


class DicomFlow:
    """Feeds one flow's streams to an AssociationParser and its events to the observers."""

    __slots__ = (
        "flow",
        "parser",
        "outcome",
        "view",
        "observers",
        "phi",
        "requests",
        "ended",
        "max_requests",
        "max_queries",
        "strict",
        "unread",
        "skip",
        "cross",
    )

    def __init__(
        self,
        flow: Flow,
        limits: DicomLimits,
        phi: PhiPolicy,
        observers: Sequence[DicomObserver],
        max_requests: int = 1024,
        max_queries: int = 4096,
        strict: bool = False,
    ) -> None:
        """``max_requests``: requests awaiting their final response (the oldest is forgotten
        beyond); ``max_queries``: queries and retrieves remembered."""
        self.strict = strict
        self.max_requests = max_requests
        self.max_queries = max_queries
        self.flow = flow
        self.parser = AssociationParser(limits, midstream=flow.midstream, keep=kept_tags(phi.tags))
        self.outcome = AssocOutcome()
        self.view = AssocView(flow, self.parser, self.outcome)
        self.observers = observers
        self.phi = phi
        self.requests: dict[tuple[Direction, int], float] = {}
        """(requester direction, message id) -> request ts, until the final response."""
        self.ended = False
        self.unread = self.parser.unread
        self.skip = self.parser.skip
        self.cross = self.parser.cross

    def data(self, direction: int, ts: float, data: bytes) -> None:
        self._events(self.parser.feed(direction, data, ts))

    def footprint(self) -> int:
        o = self.outcome
        return (
            self.parser.footprint()
            + len(o.queries) * QUERY
            + sum(len(q.patients) for q in o.queries.values()) * SMALL_ENTRY
            + (len(o.patients) + len(o.phi_counts) + len(self.requests)) * SMALL_ENTRY
        )

    def gap(self, direction: int, ts: float, length: int) -> None:
        self._events(self.parser.gap(direction, ts, length))

    def close(self, ts: float, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.outcome.close_reason = reason
        try:
            self._events(self.parser.close(ts))
        except Exception as exc:
            if self.strict:
                raise
            # the association is still reported with what was decoded before
            self.flow.weird(ts, "analyzer_internal_error", f"{type(exc).__name__}: {exc}")
        if self.requests:
            ids = ", ".join(str(m) for _, m in list(self.requests)[:10])
            self.flow.weird(
                ts,
                "dicom_request_unanswered",
                f"{len(self.requests)} request(s) without a final response (message ids {ids})",
            )
        for o in self.observers:
            o.ended(self.view, reason)

    def _events(self, events: list[DicomEvent]) -> None:
        view, outcome = self.view, self.outcome
        for ev in events:
            if isinstance(ev, Message):
                self._message(ev)
            elif isinstance(ev, Anomaly):
                self.flow.weird(ev.ts, ev.name, f"{Direction(ev.direction).label}: {ev.detail}")
                for o in self.observers:
                    o.anomaly(view, ev)
            elif isinstance(ev, AssociateAccepted):
                for o in self.observers:
                    o.accepted(view)
            elif isinstance(ev, AssociateRejected):
                outcome.reject = ev.reject
            elif isinstance(ev, Aborted):
                outcome.abort = ev.abort
                outcome.abort_direction = Direction(ev.direction)
            elif isinstance(ev, PickedUpMidstream):
                self.flow.weird(
                    ev.ts, "dicom_midstream_pickup", "association picked up after it started"
                )

    def _message(self, m: Message) -> None:
        cf = m.command.command_field
        name = COMMAND_FIELD.get(cf, "unknown") if cf is not None else "unknown"
        request_ts = self._pair(m, cf)
        phi: PhiSummary | None = None
        if m.dataset is not None:
            phi = self.phi.summarize(m.dataset)
            if phi.patient_key:
                self.outcome.patients.add(phi.patient_key)
            counts = self.outcome.phi_counts
            for e in phi.elements:
                keyword = e.keyword or f"{e.tag:08X}"
                counts[keyword] = counts.get(keyword, 0) + 1
        self._track_query(m, cf)
        info = MessageInfo(name, request_ts, phi)
        view = self.view
        for o in self.observers:
            o.message(view, m, info)

    def _pair(self, m: Message, cf: int | None) -> float | None:
        """Remember a request; for a response, return its request's ts (None if unseen)."""
        c = m.command
        if cf is None:
            return None
        direction = Direction(m.direction)
        if not is_response(cf):
            if c.message_id is not None and cf != CommandField.C_CANCEL_RQ:  # no response
                if len(self.requests) >= self.max_requests:
                    self.requests.pop(next(iter(self.requests)))
                self.requests[(direction, c.message_id)] = m.ts
            return None
        responded = c.message_id_responded if c.message_id_responded is not None else -1
        key = (direction.peer, responded)
        request_ts = self.requests.get(key)
        if request_ts is None:
            if not self.parser.midstream:
                label = COMMAND_FIELD.get(cf, hex(cf))
                self.flow.weird(
                    m.ts, "dicom_response_without_request", f"{label} to message id {responded}"
                )
        elif not is_pending(c.status):
            del self.requests[key]
        return request_ts

    def _track_query(self, m: Message, cf: int | None) -> None:
        """Queries and retrieves with what came back; bytes stored."""
        c = m.command
        queries = self.outcome.queries
        direction = Direction(m.direction)
        if cf in QUERY_RETRIEVE and c.message_id is not None:
            if len(queries) < self.max_queries:  # the identifier itself is not kept
                queries[(direction, c.message_id)] = QueryState(
                    command=cf,
                    message_id=c.message_id,
                    sop_class_uid=c.affected_sop_class_uid,
                    ts=m.ts,
                    move_destination=c.move_destination,
                )
        elif cf is not None and is_response(cf) and request_of(cf) in QUERY_RETRIEVE:
            q = queries.get((direction.peer, c.message_id_responded or -1))
            if q is None:
                return
            if is_pending(c.status):
                q.pending += 1
                if m.dataset is not None and len(q.patients) < MAX_PATIENTS_PER_QUERY:
                    key = self.phi.patient_key(m.dataset)
                    if key:
                        q.patients.add(key)
            else:
                q.final_status = c.status
            if c.n_completed is not None:
                q.completed = c.n_completed
        elif cf == CommandField.C_STORE_RQ:
            self.outcome.store_bytes += m.dataset_bytes
