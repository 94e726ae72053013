"""Transport: cleartext associations, cleartext on the TLS port, TLS on DICOM ports."""

from __future__ import annotations

from analyzer.findings.model import Finding, FlowRule, Severity
from analyzer.findings.rules.common import VERSION_NAMES, assoc_finding
from analyzer.logs.views import AssocView, FlowView


class CleartextAssociation(FlowRule):
    id = "cleartext_association"
    title = "DICOM association in cleartext"
    description = (
        "An A-ASSOCIATE-RQ was readable on the wire. Higher when data followed, and again when a "
        "host is outside the trusted networks."
    )
    severity = Severity.LOW
    options = {"dedup_window": 3600.0}

    def on_association_end(self, a: AssocView) -> None:
        if a.request is None and a.accept is None:
            return
        sev, why = Severity.LOW, "association set-up only"
        if a.n_dimse or a.pdata_pdus:
            sev, why = Severity.MEDIUM, f"{a.n_dimse} DIMSE messages in clear"
        outside = [h for h in (a.orig_h, a.resp_h) if not self.ctx.trusted(h)]
        if outside:
            sev, why = (
                Severity.HIGH,
                f"{why}; host(s) outside the trusted networks: {', '.join(outside)}",
            )
        self.ctx.emit(
            assoc_finding(
                self.id,
                a,
                sev,
                self.title,
                why,
                {"n_dimse": a.n_dimse, "untrusted_hosts": outside, "resp_p": a.resp_p},
            ),
            dedup=(a.orig_h, a.resp_h, a.resp_p, a.called_ae),
        )


class CleartextOnTlsPort(FlowRule):
    id = "cleartext_on_tls_port"
    title = "Cleartext DICOM on the DICOM-TLS port"
    description = "A cleartext association on port 2762 (IANA dicom-tls), where TLS is expected."
    severity = Severity.HIGH
    options = {"tls_ports": [2762], "dedup_window": 3600.0}

    def on_association_end(self, a: AssocView) -> None:
        if a.resp_p in self.opt["tls_ports"] and (a.request is not None or a.accept is not None):
            self.ctx.emit(
                assoc_finding(
                    self.id,
                    a,
                    self.severity,
                    self.title,
                    f"port {a.resp_p} carried a readable A-ASSOCIATE",
                    {"resp_p": a.resp_p},
                ),
                dedup=(a.orig_h, a.resp_h, a.resp_p),
            )


class TlsOnDicomPort(FlowRule):
    id = "tls_on_dicom_port"
    title = "TLS on a DICOM port"
    description = "The client's first bytes on a DICOM port are a TLS record; versions below TLS 1.2 are flagged."
    severity = Severity.INFO
    options = {"min_version": 0x0303, "dedup_window": 3600.0}

    def on_flow_end(self, f: FlowView) -> None:
        if f.service != "ssl" or f.resp_p not in self.ctx.config.dicom_ports:
            return
        tls = f.tls
        version = (tls.negotiated_version or tls.client_max_version) if tls else None
        sev = Severity.INFO
        detail = "TLS " + (
            VERSION_NAMES.get(version, hex(version)) if version else "version unknown"
        )
        if version is not None and version < self.opt["min_version"]:
            sev, detail = Severity.MEDIUM, detail + ": below TLS 1.2"
        self.ctx.emit(
            Finding(
                rule=self.id,
                severity=sev,
                title=self.title,
                detail=detail,
                ts=f.ts,
                uid=f.uid,
                orig_h=f.orig_h,
                resp_h=f.resp_h,
                wireshark_filter=f.wireshark_filter() + " && tls",
                evidence={
                    "version": VERSION_NAMES.get(version or 0),
                    "sni": tls.sni if tls else None,
                    "client_max_version": VERSION_NAMES.get(tls.client_max_version or 0)
                    if tls
                    else None,
                },
            ),
            dedup=(f.orig_h, f.resp_h, f.resp_p),
        )
