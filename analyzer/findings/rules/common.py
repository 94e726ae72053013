"""Small helpers shared by rules."""

from __future__ import annotations

import shlex
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
    @property
    def resp_p(self) -> int: ...
    def wireshark_filter(self) -> str: ...


WIRESHARK_DICOM_PORT = 104
"""The one port a default Wireshark decodes as DICOM (its DICOM heuristic is off by default)."""


def filters(flow: str, port: int, clause: str = "") -> tuple[str, str]:
    """(a display filter that works as printed in a default Wireshark, the exact tshark command
    for all of it). A ``dicom.*`` clause needs the flow decoded as DICOM (``-d`` off port 104),
    and ``dicom.tag.*`` fields need the tag tree preference; without them the clause matches
    nothing, so the default filter keeps only what it can match."""
    needs_tree = "dicom.tag" in clause
    decoded = port == WIRESHARK_DICOM_PORT
    default = flow + (f" && {clause}" if clause and decoded and not needs_tree else "")
    command = ["tshark", "-n", "-r", "CAPTURE"]
    if not decoded:
        command += ["-d", f"tcp.port=={port},dicom"]
    if needs_tree:
        command += ["-o", "dicom.tag_tree:TRUE"]
    full = flow + (f" && {clause}" if clause else "")
    return default, " ".join([*command, "-Y", shlex.quote(full)])


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
    wf, tshark = filters(a.wireshark_filter(), a.resp_p, dicom_filter)
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
        tshark=tshark,
    )


VERSION_NAMES = {
    0x0300: "SSL 3.0",
    0x0301: "TLS 1.0",
    0x0302: "TLS 1.1",
    0x0303: "TLS 1.2",
    0x0304: "TLS 1.3",
}


__all__ = ["AssocRef", "VERSION_NAMES", "Windows", "assoc_finding"]
