"""Inventory changes: AE titles on new hosts, new titles on known hosts, new software, new move targets."""

from __future__ import annotations

from analyzer.findings.model import CrossFlowRule, Severity
from analyzer.findings.rules.common import AssocRef, assoc_finding
from analyzer.findings.summary import AssocSummary, DimseFact, FactKind

MAX = 100_000


class InventoryChange(CrossFlowRule):
    id = "inventory_change"
    title = "DICOM inventory change"
    description = (
        "A known AE title from an address it is not known at (spoofing?), an AE title seen from a "
        "second address, a new AE title on a host, a new implementation version, a new move destination."
    )
    severity = Severity.LOW
    options = {"dedup_window": 86400.0}

    def setup(self) -> None:
        self.hosts_of: dict[str, str] = {}
        self.versions: dict[tuple[str, str], str] = {}
        self.destinations: set[str] = set()

    def _emit(
        self,
        a: AssocRef,
        sev: Severity,
        kind: str,
        detail: str,
        evidence: dict[str, object],
        ts: float | None = None,
    ) -> None:
        self.ctx.emit(
            assoc_finding(
                self.id, a, sev, f"{self.title}: {kind}", detail, {"kind": kind, **evidence}, ts=ts
            ),
            dedup=(kind, *sorted(str(v) for v in evidence.values())),
        )

    def on_association(self, a: AssocSummary) -> None:
        sides: list[tuple[str | None, str, str | None]] = []
        if a.has_request:
            sides.append((a.calling_ae, a.orig_h, a.request_version))
            if a.accepted:
                sides.append((a.called_ae, a.resp_h, a.accept_version))
        known = self.ctx.config.known_ae_titles
        for title, host, version in sides:
            if not title:
                continue
            if title in known and host not in known[title]:
                self._emit(
                    a,
                    Severity.HIGH,
                    "known AE title from a new address",
                    f"{title} is known at {sorted(known[title])}, seen at {host}",
                    {"ae_title": title, "host": host},
                )
            first = self.hosts_of.setdefault(title, host) if len(self.hosts_of) < MAX else host
            if first != host:
                self._emit(
                    a,
                    Severity.MEDIUM,
                    "AE title from a second address",
                    f"{title} first seen at {first}, now at {host}",
                    {"ae_title": title, "host": host},
                )
            known_hosts = {h for hosts in known.values() for h in hosts}
            if host in known_hosts and host not in known.get(title, frozenset()):
                self._emit(
                    a,
                    Severity.MEDIUM,
                    "new AE title on a known host",
                    f"{host} is in the inventory but not as {title}",
                    {"ae_title": title, "host": host},
                )
            if version:
                old = self.versions.setdefault((host, title), version)
                if old != version:
                    self._emit(
                        a,
                        Severity.LOW,
                        "new implementation version",
                        f"{title}@{host}: {old} -> {version}",
                        {"ae_title": title, "host": host, "version": version},
                    )
                    self.versions[(host, title)] = version

    def on_fact(self, f: DimseFact) -> None:
        dest = f.ae
        if f.kind == FactKind.MOVE_REQUEST and dest and dest not in self.destinations:
            if self.destinations and len(self.destinations) < MAX:
                self._emit(
                    f,
                    Severity.LOW,
                    "new move destination",
                    f"first C-MOVE to {dest}",
                    {"move_destination": dest},
                    ts=f.message_ts,
                )
            self.destinations.add(dest)
