"""Cleartext PHI: patient-identifying attributes (PS3.15 Table E.1-1) in readable datasets."""

from __future__ import annotations

from analyzer.findings.model import FlowRule, Severity
from analyzer.findings.rules import dicomweb
from analyzer.findings.rules.common import assoc_finding
from analyzer.logs.http_flow import Exchange
from analyzer.logs.views import AssocView


class CleartextPhi(FlowRule):
    id = "cleartext_phi"
    title = "Patient data in cleartext"
    description = (
        "A dataset on a cleartext association holds a value for an attribute of PS3.15 Table E.1-1 "
        "(sequences included); counted per attribute and per patient (hashed). Values only with "
        "--capture-phi, and then only in the phi table."
    )
    severity = Severity.HIGH
    options = {"include_uids": False, "dedup_window": 300.0}

    def on_http(self, ex: Exchange) -> None:
        dicomweb.phi(self, ex)

    def on_association_end(self, a: AssocView) -> None:
        if not a.phi_counts:
            return
        total = sum(a.phi_counts.values())
        outside = [h for h in (a.orig_h, a.resp_h) if not self.ctx.trusted(h)]
        sev = Severity.CRITICAL if outside else self.severity
        self.ctx.emit(
            assoc_finding(
                self.id,
                a,
                sev,
                self.title,
                f"{total} identifying values of {a.n_patients} patient(s) readable on the wire",
                {
                    "attributes": dict(sorted(a.phi_counts.items())),
                    "patients": a.n_patients,
                    "untrusted_hosts": outside,
                },
            )
        )


class PhiToUntrustedHost(FlowRule):
    id = "phi_to_untrusted_host"
    title = "Patient data to or from an untrusted host"
    description = (
        "Identifying values (PS3.15 Table E.1-1) crossed the wire on an association with a host "
        "outside the trusted networks ([networks] trusted): patient data leaving, or arriving "
        "from, somewhere it should not."
    )
    severity = Severity.CRITICAL

    def on_association_end(self, a: AssocView) -> None:
        if not a.phi_counts:
            return
        outside = [h for h in (a.orig_h, a.resp_h) if not self.ctx.trusted(h)]
        if not outside:
            return
        total = sum(a.phi_counts.values())
        self.ctx.emit(
            assoc_finding(
                self.id,
                a,
                self.severity,
                self.title,
                f"{total} identifying values of {a.n_patients} patient(s) with "
                f"{', '.join(outside)} outside the trusted networks",
                {
                    "untrusted_hosts": outside,
                    "attributes": dict(sorted(a.phi_counts.items())),
                    "patients": a.n_patients,
                },
            )
        )
