"""The ``asset`` table: one row per DICOM endpoint (address, port for SCPs, role).

Facts come from associations (AE titles, implementation, max PDU, SOP classes, transfer
syntaxes) and from the datasets an endpoint sends (manufacturer, model, station, serial
number, software versions, modality). Values that PS3.15 lists as identifying (station
name, serial number) are always redacted here: PHI values go to the phi table only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple, Protocol

from analyzer.dicom.messages import Message
from analyzer.logs.observer import DicomObserver, MessageInfo
from analyzer.logs.records import I32, Asset
from analyzer.logs.sinks import RowSink
from analyzer.logs.views import AssocView
from analyzer.privacy import redact
from analyzer.tcp.events import Direction

if TYPE_CHECKING:
    from analyzer.logs.http_flow import Exchange

MAX_ENDPOINTS = 20_000
MAX_VALUES = 32
DEVICE_KEYWORDS = {
    "Manufacturer": "manufacturers",
    "ManufacturerModelName": "models",
    "StationName": "stations",
    "DeviceSerialNumber": "device_serial_numbers",
    "SoftwareVersions": "software_versions",
    "Modality": "modalities",
}


MAX_VOCABULARY = 1 << 16
"""Distinct values (AE titles, UIDs, models...) the inventory remembers across endpoints."""


class Vocabulary:
    """Every distinct value once, numbered: an endpoint keeps the numbers of its values per
    column (at most ``max_values``), not the strings. Numbers, not bit masks: a mask grows with
    the highest number in it, which an attacker who floods the vocabulary first controls."""

    __slots__ = ("ids", "values")

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.values: list[str] = []

    def number(self, value: str) -> int:
        """The number of ``value`` (-1 when the vocabulary is full and the value is new)."""
        i = self.ids.get(value)
        if i is None:
            if len(self.values) >= MAX_VOCABULARY:
                return -1
            i = self.ids[value] = len(self.values)
            self.values.append(value)
        return i

    def decode(self, numbers: tuple[int, ...]) -> list[str]:
        return sorted(self.values[i] for i in numbers)


COLUMNS = (
    "ae_titles",
    "implementation_class_uids",
    "implementation_version_names",
    "manufacturers",
    "models",
    "stations",
    "device_serial_numbers",
    "software_versions",
    "modalities",
    "sop_classes",
    "transfer_syntaxes",
)
COLUMN_INDEX = {name: i for i, name in enumerate(COLUMNS)}


@dataclass(slots=True)
class Endpoint:
    first_seen: float
    last_seen: float
    n_associations: int = 0
    max_pdu: int | None = None
    values: list[tuple[int, ...]] = field(default_factory=lambda: [()] * len(COLUMNS))
    """Per column, the vocabulary numbers of its values (the empty tuple is shared)."""

    def add(
        self, vocabulary: Vocabulary, column: str, value: str | None, limit: int = MAX_VALUES
    ) -> None:
        if value:
            i = COLUMN_INDEX[column]
            have = self.values[i]
            if len(have) < limit:
                n = vocabulary.number(value)
                if n >= 0 and n not in have:
                    self.values[i] = (*have, n)


class AssetFact(NamedTuple):
    """One thing learned about an endpoint: a summary record of the cross-flow stage, which
    keeps the inventory (an endpoint is seen by every flow it takes part in, so the table is
    built once over all of them, inline or after a merge of per-flow runs).

    ``column`` is a list column of ``asset`` (``value`` added), ``association`` (one more
    association, ``value`` null), ``max_pdu`` (``number``) or ``seen`` (``ts`` widens the
    endpoint's first/last seen)."""

    emit_ts: float
    uid: str
    seq: I32
    ts: float
    ip: str
    port: I32 | None
    role: str
    column: str
    value: str | None
    number: int | None


MAX_REPORTED = 100_000
"""Endpoint values remembered as already reported (then forgotten all at once)."""


class Endpoints(Protocol):
    """The flow an inventory fact comes from (an association, or an HTTP exchange)."""

    @property
    def uid(self) -> str: ...
    @property
    def orig_h(self) -> str: ...
    @property
    def resp_h(self) -> str: ...
    @property
    def resp_p(self) -> int: ...


class _AssocFacts:
    __slots__ = ("sent", "first", "last")

    def __init__(self) -> None:
        self.sent: set[tuple[int, str, str]] = set()
        self.first: list[float | None] = [None, None]
        self.last: list[float | None] = [None, None]


class AssetFacts(DicomObserver):
    """The per-flow half of the inventory: turns an association's events into ``AssetFact``
    records (device attributes as datasets show them, each once per association; AE titles,
    implementation, contexts and the time range when the association ends)."""

    def __init__(
        self,
        stamp: Callable[[str], tuple[float, int]],
        put: Callable[[AssetFact], None],
        phi_tags: frozenset[int],
        capture_phi: bool,
    ) -> None:
        self.stamp = stamp
        self.put = put
        self.phi_tags = phi_tags
        self.capture_phi = capture_phi
        self.assocs: dict[str, _AssocFacts] = {}
        self.reported: set[tuple[str, int | None, str, str, str]] = set()

    def http(self, ex: Exchange) -> None:
        """DICOMweb: what the Part 10 objects of an exchange say of the side that sent them
        (a STOW request: the client; a WADO answer: the server)."""
        for side, facts in ((0, ex.sent), (1, ex.received)):
            if facts.objects:  # the time range (never folded: value facts are said once)
                self._fact(ex, side, ex.ts, "seen")
            for obj in facts.objects:
                if obj.sop_class_uid:
                    self._fact(ex, side, ex.ts, "sop_classes", obj.sop_class_uid)
                if obj.transfer_syntax:
                    self._fact(ex, side, ex.ts, "transfer_syntaxes", obj.transfer_syntax)
                if obj.dataset is None:
                    continue
                for e in obj.dataset.elements:
                    column = DEVICE_KEYWORDS.get(e.keyword) if e.depth == 0 else None
                    if column and e.value:
                        value = redact(e.value) if e.tag in self.phi_tags else e.value
                        self._fact(ex, side, ex.ts, column, value)

    @staticmethod
    def _endpoint(view: Endpoints, side: int) -> tuple[str, int | None, str]:
        if side == Direction.ORIG:
            return view.orig_h, None, "scu"
        return view.resp_h, view.resp_p, "scp"

    def _fact(
        self,
        view: Endpoints,
        side: int,
        ts: float,
        column: str,
        value: str | None = None,
        number: int | None = None,
    ) -> None:
        ip, port, role = self._endpoint(view, side)
        if value is not None:
            # a value this process already reported for the endpoint changes nothing in the
            # inventory (a union, whose caps only ever fill): say it once (a storescu-like
            # client proposes 128 SOP classes in every association)
            key = (ip, port, role, column, value)
            if key in self.reported:
                return
            if len(self.reported) >= MAX_REPORTED:
                self.reported.clear()
            self.reported.add(key)
        emit_ts, seq = self.stamp(view.uid)
        self.put(AssetFact(emit_ts, view.uid, seq, ts, ip, port, role, column, value, number))

    def message(self, view: AssocView, m: Message, info: MessageInfo) -> None:
        ds = m.dataset
        if ds is None:
            return
        st = self.assocs.get(view.uid)
        if st is None:
            st = self.assocs[view.uid] = _AssocFacts()
        side = 0 if m.direction == Direction.ORIG else 1
        if st.first[side] is None:
            st.first[side] = m.ts
        st.last[side] = m.ts
        for e in ds.elements:
            column = DEVICE_KEYWORDS.get(e.keyword) if e.depth == 0 else None
            if column and e.value:
                value = redact(e.value) if e.tag in self.phi_tags else e.value
                key = (side, column, value)
                if key not in st.sent:
                    st.sent.add(key)
                    self._fact(view, side, m.ts, column, value)

    def ended(self, view: AssocView, reason: str) -> None:
        st = self.assocs.pop(view.uid, None)
        rq, ac = view.request, view.accept
        if rq is not None or ac is not None:
            for side, assoc, title in ((0, rq, view.calling_ae), (1, ac, view.called_ae)):
                self._fact(view, side, view.ts, "association")
                if title:
                    self._fact(view, side, view.ts, "ae_titles", title)
                if assoc is not None:
                    if assoc.implementation_class_uid:
                        self._fact(
                            view, side, view.ts, "implementation_class_uids",
                            assoc.implementation_class_uid,
                        )  # fmt: skip
                    if assoc.implementation_version_name:
                        self._fact(
                            view, side, view.ts, "implementation_version_names",
                            assoc.implementation_version_name,
                        )  # fmt: skip
                    if assoc.max_pdu_length is not None:
                        self._fact(view, side, view.ts, "max_pdu", number=assoc.max_pdu_length)
            for cs in view.contexts():
                if cs.result == 0 and cs.abstract_syntax:
                    for side in (0, 1):
                        self._fact(view, side, view.ts, "sop_classes", cs.abstract_syntax)
                        if cs.transfer_syntax:
                            self._fact(view, side, view.ts, "transfer_syntaxes", cs.transfer_syntax)
        if st is not None:
            for side in (0, 1):
                first, last = st.first[side], st.last[side]
                if first is not None and last is not None:
                    self._fact(view, side, first, "seen")
                    if last != first:
                        self._fact(view, side, last, "seen")


class Inventory:
    """The cross-flow half: endpoints from ``AssetFact`` records; writes the ``asset`` log."""

    def __init__(
        self,
        max_endpoints: int = MAX_ENDPOINTS,
        max_values: int = MAX_VALUES,
    ) -> None:
        self.max_endpoints = max_endpoints
        self.max_values = max_values
        self.endpoints: dict[tuple[str, int | None, str], Endpoint] = {}
        self.vocabulary = Vocabulary()

    def release(self) -> None:
        """Forget every endpoint (after ``write``)."""
        self.endpoints.clear()
        self.vocabulary = Vocabulary()

    def endpoint(self, ip: str, port: int | None, role: str, ts: float) -> Endpoint | None:
        key = (ip, port, role)
        ep = self.endpoints.get(key)
        if ep is None:
            if len(self.endpoints) >= self.max_endpoints:
                return None
            ep = self.endpoints[key] = Endpoint(ts, ts)
        ep.first_seen = min(ep.first_seen, ts)
        ep.last_seen = max(ep.last_seen, ts)
        return ep

    def fact(self, r: AssetFact) -> None:
        ep = self.endpoint(r.ip, r.port, r.role, r.ts)
        if ep is None:
            return
        column = r.column
        if column == "association":
            ep.n_associations += 1
        elif column == "max_pdu":
            ep.max_pdu = r.number
        elif column != "seen":
            ep.add(self.vocabulary, column, r.value, self.max_values)

    def write(self, sink: RowSink[Asset]) -> None:
        decode = self.vocabulary.decode
        for (ip, port, role), ep in sorted(
            self.endpoints.items(), key=lambda kv: (kv[1].first_seen, kv[0][0])
        ):
            m = ep.values

            def col(name: str, m: list[tuple[int, ...]] = m) -> list[str]:
                return decode(m[COLUMN_INDEX[name]])

            sink.add(
                Asset(
                    ip=ip,
                    port=port,
                    role=role,
                    ae_titles=col("ae_titles"),
                    implementation_class_uids=col("implementation_class_uids"),
                    implementation_version_names=col("implementation_version_names"),
                    max_pdu=ep.max_pdu,
                    manufacturers=col("manufacturers"),
                    models=col("models"),
                    stations=col("stations"),
                    device_serial_numbers=col("device_serial_numbers"),
                    software_versions=col("software_versions"),
                    modalities=col("modalities"),
                    sop_classes=col("sop_classes"),
                    transfer_syntaxes=col("transfer_syntaxes"),
                    n_associations=ep.n_associations,
                    first_seen=ep.first_seen,
                    last_seen=ep.last_seen,
                )
            )
