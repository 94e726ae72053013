"""Inventory changes: AE titles on new hosts, new titles on known hosts, new software, new move targets."""

from __future__ import annotations

from analyzer.findings.model import CrossFlowRule, Severity
from analyzer.findings.rules.common import AssocRef, assoc_finding
from analyzer.findings.summary import AssocSummary, DimseFact, FactKind


class InventoryChange(CrossFlowRule):
    id = "inventory_change"
    title = "DICOM inventory change"
    description = (
        "A known AE title from an address it is not known at (spoofing?), an AE title seen from a "
        "second address, a new AE title on a host, a new implementation version, a new move "
        "destination; with a state directory, also a new DICOM host or a new peer of known hosts "
        "(compared with what earlier runs learned)."
    )
    severity = Severity.LOW
    options = {"dedup_window": 86400.0}

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
        base = self.ctx.baseline
        sides: list[tuple[str | None, str, str, str | None]] = []
        if a.has_request:
            sides.append((a.calling_ae, a.orig_h, "scu", a.request_version))
            if a.accepted:
                sides.append((a.called_ae, a.resp_h, "scp", a.accept_version))
        known = self.ctx.config.known_ae_titles
        homes: dict[str, str] = {}  # first homes within this record (learned after it)
        for title, host, role, version in sides:
            if base.learned_before and not base.knows_host(host):
                self._emit(
                    a,
                    Severity.MEDIUM if role == "scp" else Severity.LOW,
                    "new DICOM host",
                    f"{host} ({role}{', ' + title if title else ''}) is not in the baseline",
                    {"host": host, "role": role},
                )
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
            first = base.host_of(title) or homes.setdefault(title, host)
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
            old = base.version_of(host, title) if version else None
            if old is not None and old != version:
                self._emit(
                    a,
                    Severity.LOW,
                    "new implementation version",
                    f"{title}@{host}: {old} -> {version}",
                    {"ae_title": title, "host": host, "version": version},
                )
        if (
            a.accepted
            and base.learned_before
            and base.knows_host(a.orig_h)
            and base.knows_host(a.resp_h)
            and not base.knows_peer(a.orig_h, a.resp_h, a.resp_p)
        ):
            self._emit(
                a,
                Severity.LOW,
                "new peer",
                f"first association from {a.orig_h} to {a.resp_h}:{a.resp_p}",
                {"client": a.orig_h, "server": a.resp_h, "port": a.resp_p},
            )

    def on_fact(self, f: DimseFact) -> None:
        dest = f.ae
        base = self.ctx.baseline
        if (
            f.kind == FactKind.MOVE_REQUEST
            and dest
            and not base.knows_destination(dest)
            and (base.move_destinations or base.learned_before)  # the first one is the baseline
        ):
            self._emit(
                f,
                Severity.LOW,
                "new move destination",
                f"first C-MOVE to {dest}",
                {"move_destination": dest},
                ts=f.message_ts,
            )
