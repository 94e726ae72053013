"""Malformed and exploit-shaped traffic: bad UIDs and AE titles, framing errors, aborts, churn."""

from __future__ import annotations

import re

from analyzer.dicom.messages import Anomaly, Message
from analyzer.findings.model import CrossFlowRule, Finding, FlowRule, Severity
from analyzer.findings.rules.common import assoc_finding
from analyzer.findings.summary import AssocSummary, FlowSummary
from analyzer.findings.windows import Windows
from analyzer.logs.views import AssocView
from analyzer.tcp.events import Direction

UID_OK = re.compile(r"^[0-9.]*$")
HOSTILE = re.compile(r"[/\\;|$`]|\.\.")
FRAMING = frozenset(
    {
        "dicom_pdu_unknown_type",
        "dicom_pdu_length_invalid",
        "dicom_item_overrun",
        "dicom_item_truncated",
        "dicom_pdv_length_invalid",
        "dicom_pdv_even_context_id",
        "dicom_pdv_reserved_bits",
        "dicom_context_not_negotiated",
        "dicom_pdu_too_large",
        "dicom_pdu_reserved_nonzero",
        "dicom_item_unknown",
    }
)
CUT_SHORT = frozenset({"dicom_pdu_incomplete", "dicom_pdu_truncated"})
"""Malformed when the peer closed the connection on them (FIN or RST); not when the capture
or our timeout cut the flow."""


def _bad_uid(value: str) -> bool:
    return len(value) > 64 or not UID_OK.match(value)


class MalformedUid(FlowRule):
    id = "malformed_uid"
    title = "Malformed UID"
    description = (
        "A UI value with characters other than digits and dots, or over 64 bytes; path or shell "
        "characters (/ \\ .. ; | $ `) suggest an attack on SCPs that build file names or commands from UIDs."
    )
    severity = Severity.MEDIUM
    options = {"dedup_window": 3600.0}

    def _check(self, a: AssocView, where: str, value: str | None, ts: float) -> None:
        if not value or not _bad_uid(value):
            return
        hostile = bool(HOSTILE.search(value))
        sev = Severity.HIGH if hostile else self.severity
        self.ctx.emit(
            assoc_finding(
                self.id,
                a,
                sev,
                self.title,
                f"{where}: {value[:80]!r}",
                {"where": where, "length": len(value), "hostile_characters": hostile},
                ts=ts,
            ),
            dedup=(a.uid, where, value[:80]),
        )

    def on_association_end(self, a: AssocView) -> None:
        for assoc in (a.request, a.accept):
            if assoc is None:
                continue
            self._check(a, "implementation class UID", assoc.implementation_class_uid, a.ts)
            self._check(a, "application context", assoc.application_context, a.ts)
            for c in assoc.contexts:
                self._check(a, f"abstract syntax (context {c.context_id})", c.abstract_syntax, a.ts)
                for t in c.transfer_syntaxes:
                    self._check(a, f"transfer syntax (context {c.context_id})", t, a.ts)

    def on_message(self, a: AssocView, m: Message) -> None:
        c = m.command
        for where, value in (
            ("affected SOP class", c.affected_sop_class_uid),
            ("affected SOP instance", c.affected_sop_instance_uid),
            ("requested SOP class", c.requested_sop_class_uid),
            ("requested SOP instance", c.requested_sop_instance_uid),
        ):
            self._check(a, where, value, m.ts)
        if m.dataset is not None:
            for e in m.dataset.elements:
                if e.vr == "UI" and e.value:
                    for part in e.value.split("\\"):
                        self._check(a, e.keyword or f"{e.tag:08X}", part, m.ts)


class MalformedAeTitle(FlowRule):
    id = "malformed_ae_title"
    title = "Malformed AE title"
    description = "An AE title with a backslash or control characters, or all spaces."
    severity = Severity.MEDIUM

    def on_association_end(self, a: AssocView) -> None:
        rq = a.request or a.accept
        if rq is None:
            return
        for role, raw in (("calling", rq.calling_ae_raw), ("called", rq.called_ae_raw)):
            bad = [b for b in raw.rstrip(b" \x00") if b < 0x20 or b == 0x7F or b == 0x5C]
            if bad or not raw.strip(b" \x00"):
                why = (
                    "all spaces"
                    if not raw.strip(b" \x00")
                    else f"{len(bad)} backslash/control byte(s)"
                )
                self.ctx.emit(
                    assoc_finding(
                        self.id,
                        a,
                        self.severity,
                        self.title,
                        f"{role} AE title: {why}",
                        {"role": role, "raw_hex": raw.hex()},
                    )
                )


class PduFramingError(FlowRule):
    id = "pdu_framing_error"
    title = "DICOM framing error"
    description = (
        "PDU type outside 1..7, an item overrunning its parent or of an undefined type, an even or "
        "unnegotiated presentation context, a PDV length out of range, reserved bits set, a PDU "
        "over the peer's maximum, a PDU the peer closed the connection in the middle of."
    )
    severity = Severity.MEDIUM
    options = {"dedup_window": 3600.0}

    def on_anomaly(self, a: AssocView, an: Anomaly) -> None:
        if an.name in FRAMING or (an.name in CUT_SHORT and a.close_reason in ("fin", "rst")):
            self.ctx.emit(
                assoc_finding(
                    self.id,
                    a,
                    self.severity,
                    self.title,
                    f"{an.name}: {an.detail}",
                    {"anomaly": an.name, "direction": Direction(an.direction).label},
                    ts=an.ts,
                ),
                dedup=(a.uid, an.name),
            )


class ProviderAbort(FlowRule):
    id = "provider_abort"
    title = "The DICOM provider aborted on a protocol violation"
    description = (
        "A-ABORT from the service provider with reason 1, 2, 4, 5 or 6: the peer saw a violation."
    )
    severity = Severity.MEDIUM

    def on_association_end(self, a: AssocView) -> None:
        ab = a.abort
        if ab is None or ab.source != 2:
            return
        if ab.reason in (1, 2, 4, 5, 6):
            sev, detail = (
                self.severity,
                f"abort reason {ab.reason}: the provider saw a protocol violation",
            )
        elif ab.reason == 0:
            sev, detail = (
                Severity.LOW,
                "abort by the provider without a reason (pynetdicom's answer to violations)",
            )
        else:
            return
        self.ctx.emit(
            assoc_finding(
                self.id,
                a,
                sev,
                self.title,
                detail,
                {"source": ab.source, "reason": ab.reason},
                dicom_filter="dicom.pdu.type == 7",
            )
        )


class ConnectionChurn(CrossFlowRule):
    id = "connection_churn"
    title = "Connection churn"
    description = (
        "Many associations or bare connects per second from one source without release; rejects "
        "for congestion (source 3) are evidence of a saturated SCP."
    )
    severity = Severity.MEDIUM
    options = {"window": 10.0, "max_connections": 20, "dedup_window": 300.0}

    def setup(self) -> None:
        self.seen: Windows[str, str] = self.windows(self.opt["window"])
        self.congestion: dict[str, int] = {}
        self.released: set[str] = set()

    def on_association(self, a: AssocSummary) -> None:
        if a.released and len(self.released) < 100_000:
            self.released.add(a.uid)
        if a.reject_source == 3:
            self.congestion[a.resp_h] = self.congestion.get(a.resp_h, 0) + 1

    def on_flow(self, f: FlowSummary) -> None:
        if f.resp_p not in self.ctx.config.dicom_ports and not f.had_association:
            return
        if f.uid in self.released:
            self.released.discard(f.uid)
            return
        q = self.seen.add(f.orig_h, f.ts, f.uid)
        if len(q) >= self.opt["max_connections"]:
            self.ctx.emit(
                Finding(
                    rule=self.id,
                    severity=self.severity,
                    title=self.title,
                    detail=f"{len(q)} unreleased connections in {self.opt['window']:.0f} s from {f.orig_h}",
                    ts=f.ts,
                    uid=f.uid,
                    orig_h=f.orig_h,
                    resp_h=f.resp_h,
                    evidence={
                        "connections": len(q),
                        "congestion_rejects": self.congestion.get(f.resp_h, 0),
                    },
                    wireshark_filter=f"{'ipv6' if ':' in f.orig_h else 'ip'}.src=={f.orig_h} && tcp.flags.syn==1",
                ),
                dedup=f.orig_h,
            )


TRAVERSAL = ("../", "..\\", "/..", "\\..")
SHELL = frozenset(";|&$`<>\n\r")
FILE_NAME_KEYWORDS = frozenset(
    {"PatientID", "StudyID", "AccessionNumber", "SeriesNumber", "InstanceNumber"}
)
"""Besides every UI: attributes real SCPs have built file and directory names from."""


UID_CHARACTERS = str.maketrans("", "", "0123456789.")


def _path_danger(value: str) -> str | None:
    if not value.translate(UID_CHARACTERS):
        return None  # digits and dots (every well-formed UID, most numbers): none of the below
    if any(t in value for t in TRAVERSAL):
        return "path traversal"
    if value.startswith(("/", "\\")) or value[1:3] in (":\\", ":/"):
        return "absolute path"
    if not SHELL.isdisjoint(value):
        return "shell metacharacter"
    return None


class PathTraversalValue(FlowRule):
    id = "path_traversal_value"
    title = "File-name attack in a DICOM value"
    description = (
        "A UID, Patient ID, Study ID or accession number holding ../, an absolute path or a "
        "shell metacharacter: SCPs have built file names from these (path traversal, command "
        "injection). Datasets in both directions are checked (a malicious server sends objects "
        "to the client in C-GET). The value itself is not written, only the attribute."
    )
    severity = Severity.HIGH
    options = {"dedup_window": 3600.0}

    def on_message(self, a: AssocView, m: Message) -> None:
        c = m.command
        where = [
            ("AffectedSOPInstanceUID", c.affected_sop_instance_uid),
            ("RequestedSOPInstanceUID", c.requested_sop_instance_uid),
        ]
        if m.dataset is not None:
            where += [
                (e.keyword or f"{e.tag:08X}", e.value)
                for e in m.dataset.elements
                if e.value and (e.vr == "UI" or e.keyword in FILE_NAME_KEYWORDS)
            ]
        for keyword, value in where:
            danger = _path_danger(value) if value else None
            if danger is None:
                continue
            self.ctx.emit(
                assoc_finding(
                    self.id,
                    a,
                    self.severity,
                    self.title,
                    f"{danger} in {keyword} sent by the {Direction(m.direction).label}",
                    {
                        "attribute": keyword,
                        "danger": danger,
                        "sent_by": Direction(m.direction).label,
                    },
                    ts=m.ts,
                ),
                dedup=(a.uid, keyword, danger),
            )
