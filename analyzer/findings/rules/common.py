"""Small helpers shared by rules."""

from __future__ import annotations

from typing import Protocol

from analyzer.findings.finding import Finding, Severity
from analyzer.findings.windows import Windows


class AssocRef(Protocol):
    """What a finding names of its association: an ``AssocView`` (per-flow rules) or a
    summary record (cross-flow rules)."""

    @property
    def uid(self) -> str: ...
    @property
    def ts(self) -> float: ...
    @property
    def orig_h(self) -> str: ...
    @property
    def resp_h(self) -> str: ...
    @property
    def calling_ae(self) -> str | None: ...
    @property
    def called_ae(self) -> str | None: ...
    def wireshark_filter(self) -> str: ...


def assoc_finding(
    rule: str,
    a: AssocRef,
    severity: Severity,
    title: str,
    detail: str,
    evidence: dict[str, object],
    ts: float | None = None,
    dicom_filter: str = "",
) -> Finding:
    wf = a.wireshark_filter() + (f" && {dicom_filter}" if dicom_filter else "")
    return Finding(
        rule=rule,
        severity=severity,
        title=title,
        detail=detail,
        ts=ts if ts is not None else a.ts,
        uid=a.uid,
        orig_h=a.orig_h,
        resp_h=a.resp_h,
        calling_ae=a.calling_ae,
        called_ae=a.called_ae,
        evidence=evidence,
        wireshark_filter=wf,
    )


VERSION_NAMES = {
    0x0300: "SSL 3.0",
    0x0301: "TLS 1.0",
    0x0302: "TLS 1.1",
    0x0303: "TLS 1.2",
    0x0304: "TLS 1.3",
}


__all__ = ["AssocRef", "VERSION_NAMES", "Windows", "assoc_finding"]
