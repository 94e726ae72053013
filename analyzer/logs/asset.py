"""The ``asset`` table: one row per DICOM endpoint (address, port for SCPs, role).

Facts come from associations (AE titles, implementation, max PDU, SOP classes, transfer
syntaxes) and from the datasets an endpoint sends (manufacturer, model, station, serial
number, software versions, modality). Values that PS3.15 lists as identifying (station
name, serial number) are always redacted here: PHI values go to the phi table only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from analyzer.dicom.messages import Message
from analyzer.logs.observer import DicomObserver, MessageInfo
from analyzer.logs.records import Asset
from analyzer.logs.sinks import RowSink
from analyzer.logs.views import AssocView
from analyzer.privacy import redact
from analyzer.tcp.events import Direction

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
    """Every distinct value once, numbered: an endpoint keeps a bit mask per column instead of
    a set of strings (a client that negotiated 128 SOP classes costs 32 bytes, not 2 KB)."""

    __slots__ = ("ids", "values")

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.values: list[str] = []

    def bit(self, value: str) -> int:
        """The bit of ``value`` (0 when the vocabulary is full and the value is new)."""
        i = self.ids.get(value)
        if i is None:
            if len(self.values) >= MAX_VOCABULARY:
                return 0
            i = self.ids[value] = len(self.values)
            self.values.append(value)
        return 1 << i

    def decode(self, mask: int) -> list[str]:
        out = []
        while mask:
            low = mask & -mask
            out.append(self.values[low.bit_length() - 1])
            mask ^= low
        return sorted(out)


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
    masks: list[int] = field(default_factory=lambda: [0] * len(COLUMNS))

    def add(
        self, vocabulary: Vocabulary, column: str, value: str | None, limit: int = MAX_VALUES
    ) -> None:
        if value:
            i = COLUMN_INDEX[column]
            mask = self.masks[i]
            if mask.bit_count() < limit:
                self.masks[i] = mask | vocabulary.bit(value)


class Inventory(DicomObserver):
    """Learns endpoints from associations and datasets; writes the ``asset`` log at the end."""

    def __init__(
        self,
        phi_tags: frozenset[int],
        capture_phi: bool,
        max_endpoints: int = MAX_ENDPOINTS,
        max_values: int = MAX_VALUES,
    ) -> None:
        self.max_endpoints = max_endpoints
        self.max_values = max_values
        self.endpoints: dict[tuple[str, int | None, str], Endpoint] = {}
        self.vocabulary = Vocabulary()
        self.phi_tags = phi_tags
        self.capture_phi = capture_phi

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

    def ended(self, view: AssocView, reason: str) -> None:
        rq, ac = view.request, view.accept
        if rq is None and ac is None:
            return
        vocab = self.vocabulary
        scu = self.endpoint(view.orig_h, None, "scu", view.ts)
        scp = self.endpoint(view.resp_h, view.resp_p, "scp", view.ts)
        for ep, assoc, title in ((scu, rq, view.calling_ae), (scp, ac, view.called_ae)):
            if ep is None:
                continue
            ep.n_associations += 1
            ep.add(vocab, "ae_titles", title, self.max_values)
            if assoc is not None:
                ep.add(
                    vocab,
                    "implementation_class_uids",
                    assoc.implementation_class_uid,
                    self.max_values,
                )
                ep.add(
                    vocab,
                    "implementation_version_names",
                    assoc.implementation_version_name,
                    self.max_values,
                )
                if assoc.max_pdu_length is not None:
                    ep.max_pdu = assoc.max_pdu_length
        for cs in view.contexts():
            if cs.result == 0 and cs.abstract_syntax:
                for ep in (scu, scp):
                    if ep is not None:
                        ep.add(vocab, "sop_classes", cs.abstract_syntax, self.max_values)
                        ep.add(vocab, "transfer_syntaxes", cs.transfer_syntax, self.max_values)

    def message(self, view: AssocView, m: Message, info: MessageInfo) -> None:
        ds, ts = m.dataset, m.ts
        if ds is None:
            return
        ep = (
            self.endpoint(view.orig_h, None, "scu", ts)
            if m.direction == Direction.ORIG
            else self.endpoint(view.resp_h, view.resp_p, "scp", ts)
        )
        if ep is None:
            return
        for e in ds.elements:
            column = DEVICE_KEYWORDS.get(e.keyword) if e.depth == 0 else None
            if column and e.value:
                value = redact(e.value) if e.tag in self.phi_tags else e.value
                ep.add(self.vocabulary, column, value, self.max_values)

    def write(self, sink: RowSink[Asset]) -> None:
        decode = self.vocabulary.decode
        for (ip, port, role), ep in sorted(
            self.endpoints.items(), key=lambda kv: (kv[1].first_seen, kv[0][0])
        ):
            m = ep.masks

            def col(name: str, m: list[int] = m) -> list[str]:
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
