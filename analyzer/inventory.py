"""The ``asset`` table: one row per DICOM endpoint (address, port for SCPs, role).

Facts come from associations (AE titles, implementation, max PDU, SOP classes, transfer
syntaxes) and from the datasets an endpoint sends (manufacturer, model, station, serial
number, software versions, modality). Values that PS3.15 lists as identifying (station
name, serial number) are always redacted here: PHI values go to the phi table only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from analyzer.dicom.dataset import DatasetSummary
from analyzer.phi import redact

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


@dataclass(slots=True)
class Endpoint:
    first_seen: float
    last_seen: float
    n_associations: int = 0
    max_pdu: int | None = None
    values: dict[str, set[str]] = field(default_factory=dict)

    def add(self, column: str, value: str | None) -> None:
        if value:
            bucket = self.values.setdefault(column, set())
            if len(bucket) < MAX_VALUES:
                bucket.add(sys.intern(value) if len(value) <= 64 else value)


class Inventory:
    def __init__(self, phi_tags: frozenset[int], capture_phi: bool) -> None:
        self.endpoints: dict[tuple[str, int | None, str], Endpoint] = {}
        self.phi_tags = phi_tags
        self.capture_phi = capture_phi

    def endpoint(self, ip: str, port: int | None, role: str, ts: float) -> Endpoint | None:
        key = (ip, port, role)
        ep = self.endpoints.get(key)
        if ep is None:
            if len(self.endpoints) >= MAX_ENDPOINTS:
                return None
            ep = self.endpoints[key] = Endpoint(ts, ts)
        ep.first_seen = min(ep.first_seen, ts)
        ep.last_seen = max(ep.last_seen, ts)
        return ep

    def association(self, view: Any) -> None:
        rq, ac = view.request, view.accept
        if rq is None and ac is None:
            return
        scu = self.endpoint(view.orig_h, None, "scu", view.ts)
        scp = self.endpoint(view.resp_h, view.resp_p, "scp", view.ts)
        for ep, assoc, title in ((scu, rq, view.calling_ae), (scp, ac, view.called_ae)):
            if ep is None:
                continue
            ep.n_associations += 1
            ep.add("ae_titles", title)
            if assoc is not None:
                ep.add("implementation_class_uids", assoc.implementation_class_uid)
                ep.add("implementation_version_names", assoc.implementation_version_name)
                if assoc.max_pdu_length is not None:
                    ep.max_pdu = assoc.max_pdu_length
        for cs in view.contexts():
            if cs.result == 0 and cs.abstract_syntax:
                for ep in (scu, scp):
                    if ep is not None:
                        ep.add("sop_classes", cs.abstract_syntax)
                        ep.add("transfer_syntaxes", cs.transfer_syntax)

    def dataset(self, view: Any, direction: int, ds: DatasetSummary, ts: float) -> None:
        ep = (
            self.endpoint(view.orig_h, None, "scu", ts)
            if direction == 0
            else self.endpoint(view.resp_h, view.resp_p, "scp", ts)
        )
        if ep is None:
            return
        for e in ds.elements:
            column = DEVICE_KEYWORDS.get(e.keyword) if e.depth == 0 else None
            if column and e.value:
                ep.add(column, redact(e.value) if e.tag in self.phi_tags else e.value)

    def write(self, add: Callable[[tuple[Any, ...]], None]) -> None:
        for (ip, port, role), ep in sorted(
            self.endpoints.items(), key=lambda kv: (kv[1].first_seen, kv[0][0])
        ):
            v = ep.values

            def col(name: str, values: dict[str, set[str]] = v) -> list[str]:
                return sorted(values.get(name, ()))

            add(
                (
                    ip,
                    port,
                    role,
                    col("ae_titles"),
                    col("implementation_class_uids"),
                    col("implementation_version_names"),
                    ep.max_pdu,
                    col("manufacturers"),
                    col("models"),
                    col("stations"),
                    col("device_serial_numbers"),
                    col("software_versions"),
                    col("modalities"),
                    col("sop_classes"),
                    col("transfer_syntaxes"),
                    ep.n_associations,
                    ep.first_seen,
                    ep.last_seen,
                )
            )
