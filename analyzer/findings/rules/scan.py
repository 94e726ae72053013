"""AE titles and scanning: brute force, promiscuous SCPs, probes, scans, service enumeration."""

from __future__ import annotations

from analyzer.dicom.consts import ContextResult
from analyzer.dicom.states import State
from analyzer.findings.model import CrossFlowRule, Finding, FlowRule, Severity
from analyzer.findings.rules.common import assoc_finding
from analyzer.findings.summary import AssocSummary, FlowSummary
from analyzer.findings.windows import Windows
from analyzer.logs.views import AssocView

NMAP_SIGNATURE = {
    "calling_ae": "ECHOSCU",
    "implementation_class_uid": "1.2.276.0.7230010.3.0.3.6.2",
    "implementation_version_name": "OFFIS_DCMTK_362",
    "max_pdu": 16384,
    "contexts": (("1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),),
}
"""What nmap's dicom-ping and dicom-brute send, whatever the called AE title (dicom-brute
varies it): DCMTK 3.6.2's identity, one Verification context with Implicit VR LE only."""
PLACEHOLDER_TITLES = frozenset({"ANY-SCP", "ANYSCP", "ANY", "*", "DEFAULT"})


class AeTitleBruteforce(CrossFlowRule):
    id = "ae_title_bruteforce"
    title = "AE title guessing"
    description = (
        "Many rejects for an unrecognised called (reason 7) or calling (reason 3) AE title from one client "
        "to one server, with several distinct titles; critical when an accept follows."
    )
    severity = Severity.HIGH
    options = {"window": 300.0, "min_rejects": 5, "min_titles": 3, "dedup_window": 3600.0}

    def setup(self) -> None:
        self.rejects: Windows[tuple[str, str], str] = self.windows(self.opt["window"])
        self.alerted: set[tuple[str, str]] = set()

    def on_association(self, a: AssocSummary) -> None:
        pair = (a.orig_h, a.resp_h)
        if a.reject_source == 1 and a.reject_reason in (3, 7):
            title = (a.called_ae if a.reject_reason == 7 else a.calling_ae) or ""
            q = self.rejects.add(pair, a.ts, title)
            titles = {t for _, t in q}
            if len(q) >= self.opt["min_rejects"] and len(titles) >= self.opt["min_titles"]:
                self.alerted.add(pair)
                self.ctx.emit(
                    assoc_finding(
                        self.id,
                        a,
                        self.severity,
                        self.title,
                        f"{len(q)} rejects for {len(titles)} AE titles",
                        {
                            "rejects": len(q),
                            "distinct_titles": len(titles),
                            "titles_sample": sorted(titles)[:10],
                        },
                        dicom_filter="dicom.assoc.reject.reason",
                    ),
                    dedup=pair,
                )
        elif a.accepted and pair in self.alerted:
            self.alerted.discard(pair)
            self.ctx.emit(
                assoc_finding(
                    self.id,
                    a,
                    Severity.CRITICAL,
                    "AE title guessed",
                    f"accepted with called AE title {a.called_ae!r} after guessing",
                    {"guessed_title": a.called_ae},
                )
            )


class PromiscuousScp(CrossFlowRule):
    id = "promiscuous_scp"
    title = "SCP accepts any called AE title"
    description = "One server accepts two or more distinct called AE titles, or a placeholder such as ANY-SCP."
    severity = Severity.MEDIUM
    options = {"min_titles": 2, "dedup_window": 86400.0}

    def setup(self) -> None:
        self.titles: dict[tuple[str, int, str], set[str]] = {}

    def on_association(self, a: AssocSummary) -> None:
        if not a.accepted or a.called_ae is None:
            return
        # one server software: another program later on the same port is an inventory change
        server = (a.resp_h, a.resp_p, a.accept_class_uid or "")
        seen = self.titles.setdefault(server, set())
        if len(seen) < 64:
            seen.add(a.called_ae)
        if a.called_ae.upper() in PLACEHOLDER_TITLES or len(seen) >= self.opt["min_titles"]:
            self.ctx.emit(
                assoc_finding(
                    self.id,
                    a,
                    self.severity,
                    self.title,
                    f"{a.resp_h}:{a.resp_p} accepted called AE titles {sorted(seen)[:10]}",
                    {"accepted_titles": sorted(seen)[:20]},
                ),
                dedup=server,
            )


class AssociationProbe(FlowRule):
    id = "association_probe"
    title = "Association probe"
    description = (
        "RQ, then AC or RJ, then TCP close: no P-DATA, no release, no abort. "
        "nmap's dicom-ping and dicom-brute look exactly like this."
    )
    severity = Severity.LOW
    options = {"dedup_window": 300.0}

    def on_association_end(self, a: AssocView) -> None:
        if a.request is None or (a.accept is None and a.reject is None):
            return
        if (
            a.pdata_pdus
            or a.abort is not None
            or a.state in (State.RELEASED, State.RELEASE_REQUESTED)
        ):
            return
        rq = a.request
        if rq.user_identity is not None and a.reject is not None:
            return  # a login that was refused: identity_rejected, not a probe
        fingerprint = {
            "calling_ae": rq.calling_ae,
            "implementation_class_uid": rq.implementation_class_uid,
            "implementation_version_name": rq.implementation_version_name,
            "max_pdu": rq.max_pdu_length,
            "contexts": tuple((c.abstract_syntax, c.transfer_syntaxes) for c in rq.contexts),
        }
        nmap = fingerprint == NMAP_SIGNATURE
        facts = {
            "calling_ae": rq.calling_ae,
            "called_ae": rq.called_ae,
            "implementation_class_uid": rq.implementation_class_uid,
            "implementation_version_name": rq.implementation_version_name,
        }
        sev = Severity.MEDIUM if nmap or a.accept is not None else self.severity
        detail = (
            "matches nmap's dicom-ping/dicom-brute"
            if nmap
            else "set-up and close without any service use"
        )
        self.ctx.emit(
            assoc_finding(
                self.id,
                a,
                sev,
                self.title,
                detail,
                {**facts, "nmap": nmap, "answer": "accepted" if a.accept else "rejected"},
            ),
            # one row per tool (never two tools folded together), whatever titles it tries
            dedup=(
                a.orig_h,
                a.resp_h,
                a.resp_p,
                rq.calling_ae,
                rq.implementation_class_uid,
                rq.implementation_version_name,
            ),
        )


class DicomScan(CrossFlowRule):
    id = "dicom_scan"
    title = "DICOM scan"
    description = "One source tries DICOM on many hosts or ports within a short time (RQs, or connects to DICOM ports)."
    severity = Severity.HIGH
    options = {"window": 60.0, "min_targets": 4, "dedup_window": 3600.0}

    def setup(self) -> None:
        self.targets: Windows[str, tuple[str, int]] = self.windows(self.opt["window"])

    def _add(self, src: str, ts: float, target: tuple[str, int], uid: str, resp_h: str) -> None:
        q = self.targets.add(src, ts, target)
        distinct = {t for _, t in q}
        if len(distinct) >= self.opt["min_targets"]:
            self.ctx.emit(
                Finding(
                    rule=self.id,
                    severity=self.severity,
                    title=self.title,
                    detail=f"{len(distinct)} DICOM targets in {self.opt['window']:.0f} s",
                    ts=ts,
                    uid=uid,
                    orig_h=src,
                    resp_h=resp_h,
                    evidence={"targets": sorted(f"{h}:{p}" for h, p in distinct)[:20]},
                    wireshark_filter=f"{'ipv6' if ':' in src else 'ip'}.src=={src} && tcp.flags.syn==1",
                ),
                dedup=src,
            )

    def on_association(self, a: AssocSummary) -> None:
        if a.has_request:
            self._add(a.orig_h, a.ts, (a.resp_h, a.resp_p), a.uid, a.resp_h)

    def on_flow(self, f: FlowSummary) -> None:
        if (
            not f.had_association
            and f.resp_p in self.ctx.config.dicom_ports
            and f.conn_state in ("S0", "REJ", "RSTOS0", "RSTO", "RSTR", "SH", "OTH")
        ):
            self._add(f.orig_h, f.ts, (f.resp_h, f.resp_p), f.uid, f.resp_h)


class ServiceEnumeration(FlowRule):
    id = "service_enumeration"
    title = "SOP class enumeration"
    description = (
        "An RQ proposing many presentation contexts that the acceptor mostly rejects as "
        "abstract-syntax-not-supported: a map of what the SCP offers."
    )
    severity = Severity.MEDIUM
    options = {"min_contexts": 16, "min_rejected_fraction": 0.5, "dedup_window": 3600.0}

    def on_association_end(self, a: AssocView) -> None:
        if a.request is None or a.accept is None:
            return
        proposed = len(a.request.contexts)
        rejected = sum(
            1 for c in a.accept.contexts if c.result == ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED
        )
        if (
            proposed >= self.opt["min_contexts"]
            and rejected >= self.opt["min_rejected_fraction"] * proposed
        ):
            self.ctx.emit(
                assoc_finding(
                    self.id,
                    a,
                    self.severity,
                    self.title,
                    f"{proposed} contexts proposed, {rejected} abstract syntaxes not supported",
                    {"proposed": proposed, "not_supported": rejected},
                ),
                dedup=(a.orig_h, a.resp_h, a.resp_p),
            )
