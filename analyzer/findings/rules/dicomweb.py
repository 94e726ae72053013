"""DICOMweb and HTTP: what the existing rules look for, read from HTTP exchanges, and the one
detection only HTTP can carry: a Part 10 file whose preamble is an executable.

The rule ids are the DIMSE ones where the meaning is the same (``docs/detections.md`` says so
per rule); each of those rules calls the function here from its ``on_http`` hook.
"""

from __future__ import annotations

import shlex

from analyzer.findings.finding import Finding, Severity
from analyzer.findings.model import FlowRule, Rule
from analyzer.http.dicomweb import QIDO, WADO_RS, WADO_URI
from analyzer.logs.http_flow import Exchange, query_dataset
from analyzer.privacy import matching_key_only, phi_tags

DATA_SERVICES = (QIDO, WADO_RS, WADO_URI)


def http_finding(
    rule: Rule, ex: Exchange, severity: Severity, detail: str, evidence: dict[str, object]
) -> Finding:
    flt = ex.wireshark_filter()
    return Finding(
        rule=rule.id,
        severity=severity,
        title=rule.title,
        detail=detail,
        ts=ex.ts,
        uid=ex.uid,
        orig_h=ex.orig_h,
        resp_h=ex.resp_h,
        evidence={"method": ex.request.method, "uri": ex.target.path[:200], **evidence},
        wireshark_filter=flt,
        tshark=f"tshark -n -r CAPTURE -d tcp.port=={ex.resp_p},http -Y {shlex.quote(flt + ' && http')}",
    )


def basic_credentials(rule: FlowRule, ex: Exchange) -> None:
    a = ex.auth
    if a.scheme != "basic":
        return
    user = rule.ctx.hasher(a.username) if a.username else None
    rule.ctx.emit(
        http_finding(
            rule,
            ex,
            rule.severity,
            f"HTTP Basic credentials in clear (password of {a.secret_length} characters)",
            {"auth_scheme": "basic", "username_hash": user, "password_length": a.secret_length},
        ),
        dedup=(ex.orig_h, ex.resp_h, ex.resp_p, user),
    )


def token(rule: FlowRule, ex: Exchange) -> None:
    a = ex.auth
    if a.scheme in (None, "basic", "digest"):
        return
    rule.ctx.emit(
        http_finding(
            rule,
            ex,
            rule.severity,
            f"{a.scheme} credential of {a.secret_length} characters in clear: replayable",
            {"auth_scheme": a.scheme, "token_length": a.secret_length},
        ),
        dedup=(ex.orig_h, ex.resp_h, ex.resp_p, a.scheme),
    )


def answered_without_auth(rule: FlowRule, ex: Exchange) -> None:
    if ex.service not in DATA_SERVICES or ex.auth.scheme is not None:
        return
    if ex.status is None or not 200 <= ex.status < 300:
        return
    results = ex.received.results or 0
    objects = len(ex.received.objects)
    if not results and not objects:
        return
    rule.ctx.emit(
        http_finding(
            rule,
            ex,
            rule.severity,
            f"{ex.service} answered without credentials: {results} result(s), {objects} object(s)",
            {"service": ex.service, "results": results, "objects": objects, "status": ex.status},
        ),
        dedup=(ex.orig_h, ex.resp_h, ex.resp_p, ex.service),
    )


def wildcard(rule: FlowRule, ex: Exchange) -> None:
    """A QIDO search whose patient keys match everyone (``*``, empty) and nothing narrows it."""
    if ex.service != QIDO:
        return
    query = query_dataset(ex.target)
    if query is None:
        return
    keys = {e.keyword: e.value for e in query.elements}
    if "PatientName" not in keys and "PatientID" not in keys:
        return
    if not all(matching_key_only(keys.get(k)) for k in ("PatientName", "PatientID") if k in keys):
        return
    narrowing = [
        k for k, v in keys.items() if k not in ("PatientName", "PatientID") and v and v.strip("*?")
    ]
    if narrowing:
        return
    rule.ctx.emit(
        http_finding(
            rule,
            ex,
            rule.severity,
            f"QIDO-RS {ex.target.level}-level search matching every patient "
            f"({', '.join(sorted(keys))} wildcard or empty)",
            {"keys": sorted(keys), "level": ex.target.level, "results": ex.received.results},
        ),
        dedup=(ex.orig_h, ex.resp_h, ex.resp_p),
    )


def large_answer(rule: FlowRule, ex: Exchange, paged: dict[str, int]) -> None:
    """More than ``max_results`` datasets in one QIDO-RS answer, or in the pages of one
    connection (``limit``/``offset`` walking through everything: ``paged`` keeps the running
    total per flow until it ends)."""
    results = ex.received.results or 0
    if ex.service != QIDO:
        return
    limit = rule.opt["max_results"]
    if results > limit:
        rule.ctx.emit(
            http_finding(
                rule,
                ex,
                rule.severity,
                f"{results} matches in one QIDO-RS answer",
                {"matches": results},
            )
        )
        return
    names = {k.lower() for k, _ in ex.target.params}
    if "offset" not in names and "limit" not in names:
        return
    before = paged.get(ex.uid, 0)
    paged[ex.uid] = total = before + results
    if before <= limit < total:
        rule.ctx.emit(
            http_finding(
                rule,
                ex,
                rule.severity,
                f"{total} matches paged through with limit/offset on one connection",
                {"matches": total, "paged": True},
            ),
            dedup=(ex.uid,),
        )


def phi(rule: FlowRule, ex: Exchange) -> None:
    if ex.service is None:
        return
    query = query_dataset(ex.target)
    datasets = [*([query] if query is not None else []), *ex.sent.datasets, *ex.received.datasets]
    counts: dict[str, int] = {}
    tags = phi_tags(bool(rule.opt.get("include_uids", False)))
    for ds in datasets:
        for e in ds.elements:
            if e.tag in tags and e.value and not matching_key_only(e.value):
                counts[e.keyword] = counts.get(e.keyword, 0) + 1
    if not counts:
        return
    outside = [h for h in (ex.orig_h, ex.resp_h) if not rule.ctx.trusted(h)]
    rule.ctx.emit(
        http_finding(
            rule,
            ex,
            Severity.CRITICAL if outside else rule.severity,
            f"{sum(counts.values())} PHI values ({len(counts)} attributes) in {ex.service} over cleartext HTTP",
            {"attributes": dict(sorted(counts.items())), "service": ex.service},
        ),
        dedup=(ex.uid,),
    )


class ExecutablePreamble(FlowRule):
    id = "executable_preamble"
    title = "Executable hidden in a DICOM file's preamble"
    description = (
        "A Part 10 object in an HTTP body (STOW-RS, WADO) whose 128-byte preamble starts with "
        "MZ (a Windows PE) or \\x7fELF: a PE/DICOM polyglot (CVE-2019-11687) that runs as a "
        "program and still opens as an image. Either direction."
    )
    severity = Severity.CRITICAL

    def on_http(self, ex: Exchange) -> None:
        for direction, facts in (("orig", ex.sent), ("resp", ex.received)):
            for obj in facts.objects:
                if obj.preamble not in ("pe", "elf"):
                    continue
                sender = ex.orig_h if direction == "orig" else ex.resp_h
                self.ctx.emit(
                    http_finding(
                        self,
                        ex,
                        self.severity,
                        f"{'PE' if obj.preamble == 'pe' else 'ELF'} executable in the preamble of "
                        f"SOP instance {obj.sop_instance_uid} sent by {sender} ({ex.service or 'HTTP'})",
                        {
                            "preamble": obj.preamble,
                            "sop_instance_uid": obj.sop_instance_uid,
                            "sop_class_uid": obj.sop_class_uid,
                            "sender": sender,
                            "direction": direction,
                            "references": "CVE-2019-11687",
                        },
                    )
                )
