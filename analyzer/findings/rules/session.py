"""Session events an analyst expects one finding each for: DICOM off the standard ports, every
rejected or aborted association, and something else than DICOM on a DICOM port."""

from __future__ import annotations

from analyzer.dicom.consts import (
    ABORT_REASON,
    ABORT_SOURCE,
    REJECT_REASON,
    REJECT_RESULT,
    REJECT_SOURCE,
    label,
)
from analyzer.findings.model import Finding, FlowRule, Severity
from analyzer.findings.rules.common import assoc_finding
from analyzer.logs.views import AssocView, FlowView

DICOM_SERVICE, TLS_SERVICE = "dicom", "ssl"
STANDARD_PORTS = [104, 11112, 2761, 2762]
"""IANA's DICOM ports: 104 (the well-known), 11112 (registered), 2761 and 2762 (DICOM over TLS
and ISCL). Orthanc's 4242 is not among them."""
AE_TITLE_REJECTS = {(1, 3), (1, 7)}
"""(source, reason) of an RJ that refused an AE title: the answer a title guesser collects."""


class NonstandardPort(FlowRule):
    id = "nonstandard_port"
    title = "DICOM on a non-standard port"
    description = (
        "An association recognised by its content on a port other than the standard ones "
        "(option standard_ports: 104, 11112, 2761, 2762); an inventory item, or traffic hiding "
        "from port-based monitoring."
    )
    severity = Severity.INFO
    options = {"standard_ports": STANDARD_PORTS, "dedup_window": 3600.0}

    def on_association_end(self, a: AssocView) -> None:
        ports = self.opt["standard_ports"]
        if a.resp_p in ports or a.orig_p in ports:
            return
        self.ctx.emit(
            assoc_finding(
                self.id,
                a,
                self.severity,
                self.title,
                f"DICOM on port {a.resp_p}",
                {"port": a.resp_p},
            ),
            dedup=(a.resp_h, a.resp_p),
        )


class AssociationRejected(FlowRule):
    id = "association_rejected"
    title = "Association rejected"
    description = (
        "Every A-ASSOCIATE-RJ, with its result, source and reason. Low when an AE title was "
        "refused (what a title guesser collects), info otherwise."
    )
    severity = Severity.INFO
    options = {"dedup_window": 300.0}

    def on_association_end(self, a: AssocView) -> None:
        rj = a.reject
        if rj is None:
            return
        reason = REJECT_REASON.get((rj.source, rj.reason), "unknown")
        sev = Severity.LOW if (rj.source, rj.reason) in AE_TITLE_REJECTS else self.severity
        self.ctx.emit(
            assoc_finding(
                self.id,
                a,
                sev,
                self.title,
                f"rejected ({label(REJECT_RESULT, rj.result)}) by the "
                f"{label(REJECT_SOURCE, rj.source)}: {reason}",
                {
                    "result": label(REJECT_RESULT, rj.result),
                    "source": label(REJECT_SOURCE, rj.source),
                    "reason": reason,
                },
                dicom_filter="dicom.pdu.type == 3",
            ),
            dedup=(a.orig_h, a.resp_h, rj.source, rj.reason),
        )


class AssociationAborted(FlowRule):
    id = "association_aborted"
    title = "Association aborted"
    description = (
        "Every A-ABORT, by the service user or the provider, with its reason and who sent it "
        "(provider aborts on a protocol violation are also provider_abort)."
    )
    severity = Severity.INFO
    options = {"dedup_window": 300.0}

    def on_association_end(self, a: AssocView) -> None:
        ab = a.abort
        if ab is None:
            return
        sender = a.abort_direction.label if a.abort_direction is not None else None
        self.ctx.emit(
            assoc_finding(
                self.id,
                a,
                self.severity,
                self.title,
                f"aborted by the {label(ABORT_SOURCE, ab.source)} "
                f"({label(ABORT_REASON, ab.reason)})",
                {
                    "source": label(ABORT_SOURCE, ab.source),
                    "reason": label(ABORT_REASON, ab.reason),
                    "sent_by": sender,
                },
                dicom_filter="dicom.pdu.type == 7",
            ),
            dedup=(a.orig_h, a.resp_h, ab.source, ab.reason),
        )


class NonDicomOnDicomPort(FlowRule):
    id = "non_dicom_on_dicom_port"
    title = "Not DICOM on a DICOM port"
    description = (
        "A flow to a DICOM port whose first bytes are neither DICOM nor TLS (HTTP, an SSH or "
        "mail banner, RDP, SMB, text or binary junk), with a guess of the protocol."
    )
    severity = Severity.LOW
    options = {"dedup_window": 3600.0}

    def on_flow_end(self, f: FlowView) -> None:
        if f.protocol_guess is None or f.service in (DICOM_SERVICE, TLS_SERVICE):
            return  # HTTP is decoded (its own tables) and still counts here
        self.ctx.emit(
            Finding(
                rule=self.id,
                severity=self.severity,
                title=self.title,
                detail=f"{f.protocol_guess} on DICOM port {f.resp_p}",
                ts=f.ts,
                uid=f.uid,
                orig_h=f.orig_h,
                resp_h=f.resp_h,
                wireshark_filter=f.wireshark_filter(),
                evidence={"protocol_guess": f.protocol_guess, "port": f.resp_p},
            ),
            dedup=(f.orig_h, f.resp_h, f.resp_p, f.protocol_guess),
        )
