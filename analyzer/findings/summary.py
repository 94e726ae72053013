"""The summary records: all that the cross-flow stage sees of the per-flow stage.

Four typed records, each stamped with ``emit_ts`` (the capture clock when the per-flow stage
produced it), the flow ``uid`` and ``seq`` (the record's number within its flow). The
cross-flow stage consumes them ordered by ``(emit_ts, uid, seq)``: inline as packets stream
(records of one clock tick are sorted before they are used), or after the fact from the
``summary/`` tables that independent per-flow runs wrote, merged and sorted. Both orders are
the same, so both give the same findings.

- ``AssocSummary``: an association ended (endpoints, AE titles, outcome codes, identity type,
  implementation versions).
- ``FlowSummary``: a TCP flow ended (endpoints, service, Zeek conn_state).
- ``DimseFact``: one of the few DIMSE facts cross-flow rules need: a C-MOVE request with its
  destination, a C-STORE (bytes, move originator), a final C-MOVE/C-GET response, a C-FIND
  whose patient name or ID is a short prefix (the prefix as a keyed hash).
- ``Candidate``: a finding of a per-flow rule with its de-duplication key; the cross-flow stage
  folds repeats across flows and writes it.
- ``AssetFact`` (``logs.asset``): one thing learned about an endpoint; the cross-flow stage
  keeps the asset inventory from them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import NamedTuple, Protocol

from analyzer.dicom.consts import CommandField, is_pending
from analyzer.dicom.messages import Message
from analyzer.dicom.states import State
from analyzer.findings.finding import Finding
from analyzer.http.dicomweb import attribute_keyword
from analyzer.logs.asset import AssetFact
from analyzer.logs.http_flow import Exchange
from analyzer.logs.observer import DicomObserver, MessageInfo
from analyzer.logs.records import I32, schema_of
from analyzer.logs.views import AssocView, FlowView, flow_filter
from analyzer.privacy import Hasher

PREFIX = re.compile(r"^[^*?]{1,2}\*$")
"""A patient name or ID query key that is one or two characters and a trailing ``*``."""


class AssocSummary(NamedTuple):
    emit_ts: float
    uid: str
    seq: I32
    ts: float
    orig_h: str
    orig_p: I32
    resp_h: str
    resp_p: I32
    calling_ae: str | None
    called_ae: str | None
    has_request: bool
    accepted: bool
    reject_result: I32 | None
    reject_source: I32 | None
    reject_reason: I32 | None
    abort_source: I32 | None
    identity_type: I32 | None
    released: bool
    request_version: str | None
    """The requester's implementation version name."""
    accept_version: str | None
    accept_class_uid: str | None
    """The acceptor's implementation class UID."""

    def wireshark_filter(self) -> str:
        return flow_filter(self.orig_h, self.orig_p, self.resp_h, self.resp_p)


class FlowSummary(NamedTuple):
    emit_ts: float
    uid: str
    seq: I32
    ts: float
    last_ts: float
    orig_h: str
    orig_p: I32
    resp_h: str
    resp_p: I32
    service: str | None
    conn_state: str
    had_association: bool


class FactKind:
    MOVE_REQUEST = "move_request"
    STORE = "store"
    RETRIEVE_RESPONSE = "retrieve_response"
    FIND_PREFIX = "find_prefix"
    HTTP_REJECTED = "http_rejected"
    """A 401 or 403 answer (``status``); ``ae`` holds the auth scheme tried, if any."""


class DimseFact(NamedTuple):
    """``ts`` and the endpoint fields are the association's; ``message_ts`` the message's."""

    emit_ts: float
    uid: str
    seq: I32
    ts: float
    orig_h: str
    orig_p: I32
    resp_h: str
    resp_p: I32
    calling_ae: str | None
    called_ae: str | None
    message_ts: float
    kind: str
    command_field: I32 | None
    message_id: I32 | None
    """The request's message id (for a response: the one it answers)."""
    status: I32 | None
    amount: int | None
    """Dataset bytes of a C-STORE; completed sub-operations of a retrieve response."""
    ae: str | None
    """Move destination of a C-MOVE; move originator AE title of a C-STORE."""
    ae_message_id: I32 | None
    """Move originator message id of a C-STORE."""
    attribute: str | None
    value_key: str | None
    """Keyed hash of a prefix query value (upper case)."""
    from_acceptor: bool
    """Sent by the association acceptor (a C-STORE of a C-GET goes to ``orig_h``)."""

    def wireshark_filter(self) -> str:
        return flow_filter(self.orig_h, self.orig_p, self.resp_h, self.resp_p)

    @property
    def receiver(self) -> str:
        """The host the message went to."""
        return self.orig_h if self.from_acceptor else self.resp_h


class Candidate(NamedTuple):
    emit_ts: float
    uid: str
    seq: I32
    rule: str
    severity: str
    title: str
    detail: str
    ts: float
    orig_h: str | None
    resp_h: str | None
    calling_ae: str | None
    called_ae: str | None
    evidence: str
    """JSON, keys sorted."""
    wireshark_filter: str | None
    dedup: str | None
    """JSON of the rule's de-duplication key (None: every occurrence counts)."""
    tshark: str | None


SummaryRecord = AssocSummary | FlowSummary | DimseFact | Candidate | AssetFact
SUMMARY_RECORDS: dict[str, type[SummaryRecord]] = {
    "summary_assoc": AssocSummary,
    "summary_flow": FlowSummary,
    "summary_fact": DimseFact,
    "summary_candidate": Candidate,
    "summary_asset": AssetFact,
}
SUMMARY_TABLES = {name: schema_of(rec) for name, rec in SUMMARY_RECORDS.items()}


def order_key(r: SummaryRecord) -> tuple[float, str, int]:
    return (r.emit_ts, r.uid, r.seq)


def evidence_json(evidence: object) -> str:
    return json.dumps(evidence, sort_keys=True, default=str)


def dedup_json(dedup: object | None) -> str | None:
    return None if dedup is None else json.dumps(dedup, default=str)


class SummaryFeed(Protocol):
    """Where the per-flow stage puts its summary records (the cross-flow stage, or tables)."""

    def put(self, record: SummaryRecord) -> None: ...


class Stamper:
    """Stamps records with the capture clock and a per-flow sequence number."""

    __slots__ = ("clock", "feed", "_seq")

    def __init__(self, clock: Callable[[], float], feed: SummaryFeed) -> None:
        self.clock = clock
        self.feed = feed
        self._seq: dict[str, int] = {}

    def put(self, record: SummaryRecord) -> None:
        self.feed.put(record)

    def stamp(self, uid: str) -> tuple[float, int]:
        n = self._seq.get(uid, 0)
        self._seq[uid] = n + 1
        return self.clock(), n

    def flow_done(self, uid: str) -> None:
        """``uid`` will produce no more records."""
        self._seq.pop(uid, None)

    def candidate(self, f: Finding, dedup: object | None) -> None:
        uid = f.uid or ""
        emit_ts, seq = self.stamp(uid)
        self.feed.put(
            Candidate(
                emit_ts=emit_ts,
                uid=uid,
                seq=seq,
                rule=f.rule,
                severity=f.severity.label,
                title=f.title,
                detail=f.detail,
                ts=f.ts,
                orig_h=f.orig_h,
                resp_h=f.resp_h,
                calling_ae=f.calling_ae,
                called_ae=f.called_ae,
                evidence=evidence_json(f.evidence),
                wireshark_filter=f.wireshark_filter,
                dedup=dedup_json(dedup),
                tshark=f.tshark,
            )
        )

    def flow(self, f: FlowView) -> None:
        emit_ts, seq = self.stamp(f.uid)
        self.feed.put(
            FlowSummary(
                emit_ts=emit_ts,
                uid=f.uid,
                seq=seq,
                ts=f.ts,
                last_ts=f.last_ts,
                orig_h=f.orig_h,
                orig_p=f.orig_p,
                resp_h=f.resp_h,
                resp_p=f.resp_p,
                service=f.service,
                conn_state=f.conn_state,
                had_association=f.had_association,
            )
        )
        self.flow_done(f.uid)


class SummaryEmitter(DicomObserver):
    """The observer that turns an association's events into summary records."""

    __slots__ = ("stamper", "hasher")

    def __init__(self, stamper: Stamper, hasher: Hasher) -> None:
        self.stamper = stamper
        self.hasher = hasher

    def _fact(
        self,
        a: AssocView,
        m: Message,
        kind: str,
        *,
        message_id: int | None = None,
        count: int | None = None,
        ae: str | None = None,
        ae_message_id: int | None = None,
        attribute: str | None = None,
        value_key: str | None = None,
    ) -> None:
        emit_ts, seq = self.stamper.stamp(a.uid)
        self.stamper.feed.put(
            DimseFact(
                emit_ts=emit_ts,
                uid=a.uid,
                seq=seq,
                ts=a.ts,
                orig_h=a.orig_h,
                orig_p=a.orig_p,
                resp_h=a.resp_h,
                resp_p=a.resp_p,
                calling_ae=a.calling_ae,
                called_ae=a.called_ae,
                message_ts=m.ts,
                kind=kind,
                command_field=m.command.command_field,
                message_id=message_id,
                status=m.command.status,
                amount=count,
                ae=ae,
                ae_message_id=ae_message_id,
                attribute=attribute,
                value_key=value_key,
                from_acceptor=m.direction == 1,
            )
        )

    def message(self, a: AssocView, m: Message, info: MessageInfo) -> None:
        c = m.command
        cf = c.command_field
        if cf == CommandField.C_MOVE_RQ and c.move_destination:
            self._fact(a, m, FactKind.MOVE_REQUEST, message_id=c.message_id, ae=c.move_destination)
        elif cf == CommandField.C_STORE_RQ:
            self._fact(
                a,
                m,
                FactKind.STORE,
                message_id=c.message_id,
                count=m.dataset_bytes,
                ae=c.move_originator_ae,
                ae_message_id=c.move_originator_message_id,
            )
        elif cf in (CommandField.C_MOVE_RSP, CommandField.C_GET_RSP) and not is_pending(c.status):
            self._fact(
                a,
                m,
                FactKind.RETRIEVE_RESPONSE,
                message_id=c.message_id_responded,
                count=c.n_completed,
            )
        elif cf == CommandField.C_FIND_RQ and m.dataset is not None:
            for key in ("PatientName", "PatientID"):
                value = m.dataset.get(key)
                if value and PREFIX.match(value.strip()):
                    self._fact(
                        a,
                        m,
                        FactKind.FIND_PREFIX,
                        message_id=c.message_id,
                        attribute=key,
                        value_key=self.hasher(value.strip().upper()),
                    )

    def http(self, ex: Exchange) -> None:
        """The cross-flow facts of a DICOMweb/HTTP exchange: refusals (credential guessing),
        QIDO prefix searches (enumeration), objects moved (bulk retrieve, STOW volume)."""
        if ex.status in (401, 403):
            self._http_fact(ex, FactKind.HTTP_REJECTED, ae=ex.auth.scheme)
        if ex.service == "QIDO-RS" and ex.status is not None and ex.status < 400:
            params = dict(ex.target.params)
            for name, value in params.items():
                key = attribute_keyword(name)
                if key in ("PatientName", "PatientID") and PREFIX.match(value.strip()):
                    self._http_fact(
                        ex,
                        FactKind.FIND_PREFIX,
                        attribute=key,
                        value_key=self.hasher(value.strip().upper()),
                    )
        for facts, from_server in ((ex.sent, False), (ex.received, True)):
            size = sum(o.bytes for o in facts.objects)
            if size:
                self._http_fact(ex, FactKind.STORE, count=size, from_acceptor=from_server)

    def _http_fact(
        self,
        ex: Exchange,
        kind: str,
        *,
        count: int | None = None,
        ae: str | None = None,
        attribute: str | None = None,
        value_key: str | None = None,
        from_acceptor: bool = False,
    ) -> None:
        emit_ts, seq = self.stamper.stamp(ex.uid)
        self.stamper.feed.put(
            DimseFact(
                emit_ts=emit_ts,
                uid=ex.uid,
                seq=seq,
                ts=ex.ts,
                orig_h=ex.orig_h,
                orig_p=ex.orig_p,
                resp_h=ex.resp_h,
                resp_p=ex.resp_p,
                calling_ae=None,
                called_ae=None,
                message_ts=ex.ts,
                kind=kind,
                command_field=None,
                message_id=ex.depth,
                status=ex.status,
                amount=count,
                ae=ae,
                ae_message_id=None,
                attribute=attribute,
                value_key=value_key,
                from_acceptor=from_acceptor,
            )
        )

    def ended(self, a: AssocView, reason: str) -> None:
        rq, ac, rj, ab = a.request, a.accept, a.reject, a.abort
        ui = a.identity
        emit_ts, seq = self.stamper.stamp(a.uid)
        self.stamper.feed.put(
            AssocSummary(
                emit_ts=emit_ts,
                uid=a.uid,
                seq=seq,
                ts=a.ts,
                orig_h=a.orig_h,
                orig_p=a.orig_p,
                resp_h=a.resp_h,
                resp_p=a.resp_p,
                calling_ae=a.calling_ae,
                called_ae=a.called_ae,
                has_request=rq is not None,
                accepted=ac is not None,
                reject_result=rj.result if rj else None,
                reject_source=rj.source if rj else None,
                reject_reason=rj.reason if rj else None,
                abort_source=ab.source if ab else None,
                identity_type=ui.identity_type if ui else None,
                released=a.state == State.RELEASED,
                request_version=rq.implementation_version_name if rq else None,
                accept_version=ac.implementation_version_name if ac else None,
                accept_class_uid=ac.implementation_class_uid if ac else None,
            )
        )
