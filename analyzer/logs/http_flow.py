"""One HTTP flow as a stream sink: drives the parser, pairs requests with responses, reads the
bodies DICOMweb cares about, and writes the ``http``, ``dicomweb`` and ``phi`` rows; each
finished exchange goes to the per-flow rules (``FlowRule.on_http``)."""

from __future__ import annotations

import base64
import binascii
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR, tag_for_keyword

from analyzer.dicom.dataset import DatasetSummary
from analyzer.dicom.elements import Element
from analyzer.http.bodies import BodyFacts, BodyReader, ObjectSink
from analyzer.http.dicomweb import Target, attribute_keyword, classify
from analyzer.http.parser import (
    Body,
    Headers,
    HttpAnomaly,
    HttpEvent,
    HttpParser,
    MessageEnd,
    RequestHead,
    ResponseHead,
)
from analyzer.logs.records import DicomWeb, Http, Phi
from analyzer.logs.sinks import RowSink
from analyzer.logs.views import flow_filter
from analyzer.memory import SMALL_ENTRY
from analyzer.privacy import PhiPolicy, tier
from analyzer.tcp.flow import Flow
from analyzer.tcp.table import ip_text

MAX_PENDING = 256
"""Requests awaiting their response (pipelining); the oldest is reported beyond."""
TOKEN_HEADERS = frozenset({"x-api-key", "api-key", "apikey", "x-auth-token", "x-access-token"})


def header(headers: Headers, name: str) -> str | None:
    return next((v for k, v in headers if k == name), None)


@dataclass(slots=True)
class Auth:
    scheme: str | None = None
    """``basic``, ``bearer``, ``digest``, another scheme, or an API-key header's name."""
    username: str | None = None
    """In memory only: the table and findings get its keyed hash."""
    secret_length: int = 0


@dataclass(slots=True)
class Exchange:
    """One request and its response, as the rules see it (nothing secret is kept)."""

    uid: str
    ts: float
    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int
    depth: int
    request: RequestHead
    target: Target
    auth: Auth
    status: int | None = None
    response: ResponseHead | None = None
    sent: BodyFacts = field(default_factory=BodyFacts)
    received: BodyFacts = field(default_factory=BodyFacts)
    complete: bool = True

    @property
    def service(self) -> str | None:
        return self.target.service

    def wireshark_filter(self) -> str:
        """The exchange's TCP flow (a default Wireshark decodes HTTP only on its HTTP ports:
        the tshark command of a finding adds the decode-as)."""
        return flow_filter(self.orig_h, self.orig_p, self.resp_h, self.resp_p)


def parse_auth(headers: Headers) -> Auth:
    value = header(headers, "authorization")
    if value is None:
        for k, v in headers:
            if k in TOKEN_HEADERS:
                return Auth(k, None, len(v))
        return Auth()
    scheme, _, cred = value.strip().partition(" ")
    scheme = scheme.lower()
    cred = cred.strip()
    if scheme == "basic":
        try:
            user, _, password = (
                base64.b64decode(cred, validate=True).decode("utf-8", "replace").partition(":")
            )
        except (binascii.Error, ValueError):
            return Auth("basic", None, len(cred))
        return Auth("basic", user, len(password))
    if scheme == "digest":
        digest_user: str | None = next(
            (
                p.split("=", 1)[1].strip().strip('"')
                for p in cred.split(",")
                if p.strip().startswith("username=")
            ),
            None,
        )
        return Auth("digest", digest_user, 0)
    return Auth(scheme or None, None, len(cred))


class HttpFlow:
    """The StreamSink of a flow recognised as HTTP."""

    __slots__ = (
        "flow", "parser", "http", "dicomweb", "phi_sink", "phi", "on_exchange", "max_head",
        "pending", "current", "reading", "depth", "unread", "ended", "objects",
    )  # fmt: skip

    def __init__(
        self,
        flow: Flow,
        http: RowSink[Http],
        dicomweb: RowSink[DicomWeb],
        phi_sink: RowSink[Phi],
        phi: PhiPolicy,
        on_exchange: Callable[[Exchange], None],
        max_head: int,
        objects: Callable[[Exchange, int], ObjectSink | None] | None = None,
    ) -> None:
        """``objects``: a sink for each Part 10 object of a body (``export``)."""
        self.objects = objects
        self.flow = flow
        self.parser = HttpParser()
        self.http, self.dicomweb, self.phi_sink, self.phi = http, dicomweb, phi_sink, phi
        self.on_exchange = on_exchange
        self.max_head = max_head
        self.pending: deque[tuple[Exchange, BodyReader | None]] = deque()
        """Requests in order; the first one's response is the next to come."""
        self.current: Exchange | None = None
        """The exchange whose response is being read."""
        self.reading: BodyReader | None = None
        self.depth = 0
        self.unread = [0, 0]
        self.ended = False

    # -- StreamSink -------------------------------------------------------------------

    def data(self, direction: int, ts: float, data: bytes) -> None:
        self._events(self.parser.feed(direction, data, ts))

    def skip(self, direction: int, n: int) -> None:
        pass  # never called: every byte is read (``unread`` stays 0)

    def cross(self, direction: int, data: bytes) -> bool:
        return False

    def gap(self, direction: int, ts: float, length: int) -> None:
        self._events(self.parser.gap(direction, ts, length))

    def close(self, ts: float, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        self._events(self.parser.close(ts))
        if self.current is not None:
            self._finish(self.current, ts, complete=False)
        while self.pending:
            ex, reader = self.pending.popleft()
            if reader is not None:
                ex.sent = reader.finish(False)
            self._finish(ex, ts, complete=False)

    def footprint(self) -> int:
        """Bytes of state (``analyzer/memory.py``): requests awaiting answers, response bytes
        held for their request, the bodies being read."""
        n = len(self.pending) * SMALL_ENTRY * 4 + len(self.parser.waiting)
        n += sum(len(b) for b in self.parser.scan)
        if self.pending and self.pending[-1][1] is not None:
            n += self.pending[-1][1].buffered
        if self.reading is not None:
            n += self.reading.buffered
        return n

    # -- events -----------------------------------------------------------------------

    def _events(self, events: list[HttpEvent]) -> None:
        for ev in events:
            if isinstance(ev, RequestHead):
                self._request(ev)
            elif isinstance(ev, ResponseHead):
                self._response(ev)
            elif isinstance(ev, Body):
                reader = self._reader(ev.direction)
                if reader is not None:
                    reader.feed(ev.data)
                elif ev.direction == 1 and self.current is not None:
                    self.current.received.wire_bytes += len(ev.data)
                elif ev.direction == 0 and self.pending:
                    self.pending[-1][0].sent.wire_bytes += len(ev.data)
            elif isinstance(ev, MessageEnd):
                self._message_end(ev)
            elif isinstance(ev, HttpAnomaly):
                self.flow.weird(
                    ev.ts, ev.name, f"{'orig' if ev.direction == 0 else 'resp'}: {ev.detail}"
                )

    def _reader(self, direction: int) -> BodyReader | None:
        if direction == 0:
            return self.pending[-1][1] if self.pending else None
        return self.reading

    def _request(self, ev: RequestHead) -> None:
        self.depth += 1
        f = self.flow
        ex = Exchange(
            uid=f.uid,
            ts=ev.ts,
            orig_h=ip_text(f.orig_h),
            orig_p=f.orig_p,
            resp_h=ip_text(f.resp_h),
            resp_p=f.resp_p,
            depth=self.depth,
            request=ev,
            target=classify(ev.method, ev.target),
            auth=parse_auth(ev.headers),
        )
        reader = self._body_reader(ex, 0, ev.headers)
        if len(self.pending) >= MAX_PENDING:
            old, _ = self.pending.popleft()
            self._finish(old, ev.ts, complete=False)
        self.pending.append((ex, reader))

    def _message_end(self, ev: MessageEnd) -> None:
        if ev.direction == 0:
            if self.pending:
                sent, reader = self.pending[-1]
                if reader is not None:
                    sent.sent = reader.finish(ev.complete)
                    self.pending[-1] = (sent, None)
                sent.complete = sent.complete and ev.complete
            return
        ex = self.current
        if ex is None:
            return
        if self.reading is not None:
            ex.received = self.reading.finish(ev.complete)
            self.reading = None
        self.current = None
        self._finish(ex, ev.ts, complete=ex.complete and ev.complete)

    def _response(self, ev: ResponseHead) -> None:
        if ev.informational:
            return
        if self.current is not None:  # the previous response never ended
            self._finish(self.current, ev.ts, complete=False)
        if not self.pending:
            return
        ex, reader = self.pending.popleft()
        if reader is not None:  # the request's body is still streaming (100-continue)
            ex.sent = reader.finish(False)
        ex.response, ex.status = ev, ev.status
        self.current = ex
        self.reading = self._body_reader(ex, 1, ev.headers)

    def _body_reader(self, ex: Exchange, direction: int, headers: Headers) -> BodyReader:
        objects = self.objects
        return BodyReader(
            header(headers, "content-type"),
            header(headers, "content-encoding"),
            self.max_head,
            (lambda: objects(ex, direction)) if objects is not None else None,
        )

    # -- rows -------------------------------------------------------------------------

    def _finish(self, ex: Exchange, ts: float, complete: bool) -> None:
        ex.complete = complete
        for name, detail in (*ex.sent.anomalies, *ex.received.anomalies):
            self.flow.weird(ts, name, detail)
        req, resp = ex.request, ex.response
        auth = ex.auth
        self.http.add(
            Http(
                uid=ex.uid,
                ts=ex.ts,
                trans_depth=ex.depth,
                method=req.method,
                host=header(req.headers, "host"),
                uri=ex.target.path[:1024],
                query_keys=[k for k, _ in ex.target.params][:64],
                version=req.version,
                status=ex.status,
                reason=resp.reason if resp is not None else None,
                request_body_bytes=ex.sent.wire_bytes,
                response_body_bytes=ex.received.wire_bytes,
                request_content_type=header(req.headers, "content-type"),
                response_content_type=header(resp.headers, "content-type") if resp else None,
                user_agent=header(req.headers, "user-agent"),
                auth_scheme=auth.scheme,
                username_hash=self.phi.hasher(auth.username) if auth.username else None,
                dicomweb=ex.service,
                complete=complete,
            )
        )
        if ex.service is not None:
            self._dicomweb(ex)
        self._phi(ex)
        self.on_exchange(ex)

    def _dicomweb(self, ex: Exchange) -> None:
        t = ex.target
        objects = [*ex.sent.objects, *ex.received.objects]
        self.dicomweb.add(
            DicomWeb(
                uid=ex.uid,
                ts=ex.ts,
                trans_depth=ex.depth,
                service=t.service or "other",
                level=t.level,
                study_instance_uid=t.study,
                series_instance_uid=t.series,
                sop_instance_uid=t.instance,
                resource=t.resource,
                query_attributes=list(dict.fromkeys(t.attributes)),
                n_results=ex.received.results,
                n_instances=len(objects),
                instance_bytes=sum(o.bytes for o in objects),
                sop_classes=sorted({o.sop_class_uid for o in objects if o.sop_class_uid})[:32],
                transfer_syntaxes=sorted({o.transfer_syntax for o in objects if o.transfer_syntax})[
                    :32
                ],
                status=ex.status,
                executable_preambles=sum(o.preamble in ("pe", "elf") for o in objects),
            )
        )

    def _phi(self, ex: Exchange) -> None:
        query = query_dataset(ex.target)
        for direction, datasets in (
            ("orig", [query, *ex.sent.datasets] if query is not None else ex.sent.datasets),
            ("resp", ex.received.datasets),
        ):
            for ds in datasets:
                summary = self.phi.summarize(ds)
                for e in summary.elements:
                    value = e.value or ""
                    self.phi_sink.add(
                        Phi(
                            uid=ex.uid,
                            ts=ex.ts,
                            message_id=ex.depth,
                            direction=direction,
                            tag=f"({e.tag >> 16:04X},{e.tag & 0xFFFF:04X})",
                            keyword=e.keyword or f"{e.tag:08X}",
                            vr=e.vr or None,
                            value=self.phi.shown(value),
                            value_hash=self.phi.hasher(value),
                            value_length=e.length,
                            depth=e.depth,
                            patient_key=summary.patient_key,
                            tier=tier(e.keyword, e.vr),
                        )
                    )


def query_dataset(t: Target) -> DatasetSummary | None:
    """A QIDO or WADO-URI query's attribute matches as a dataset (for the PHI reading)."""
    if t.service is None:
        return None
    elements = []
    for name, value in t.params:
        keyword = attribute_keyword(name)
        if keyword is None:
            continue
        tag = tag_for_keyword(keyword)
        if tag is None:
            continue
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            vr = "UN"
        elements.append(Element(tag, keyword, vr, value[:256], len(value), 0))
    if not elements:
        return None
    return DatasetSummary(
        transfer_syntax_uid=None,
        sop_class_uid=None,
        sop_instance_uid=None,
        elements=tuple(elements),
        partial=False,
        anomalies=(),
    )
