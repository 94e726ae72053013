"""Small helpers shared by rules."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol

from analyzer.findings.model import Finding, Severity

MAX_KEYS = 50_000


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
    evidence: dict[str, Any],
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


class Windows:
    """Per-key sliding windows of (ts, item), bounded in keys and items.

    A window is a plain list (about 100 bytes for one event, where a deque costs 600): most
    keys are hosts seen once or twice."""

    def __init__(self, seconds: float, max_items: int = 4096, max_keys: int = MAX_KEYS) -> None:
        self.seconds = seconds
        self.max_keys = max_keys
        self.max_items = max_items
        self.data: OrderedDict[Any, list[tuple[float, Any]]] = OrderedDict()

    def add(self, key: Any, ts: float, item: Any) -> list[tuple[float, Any]]:
        q = self.data.get(key)
        if q is None:
            q = self.data[key] = []
            while len(self.data) > self.max_keys:
                self.data.popitem(last=False)
        else:
            self.data.move_to_end(key)
        q.append((ts, item))
        horizon = ts - self.seconds
        stale = 0
        for t, _ in q:
            if t >= horizon:
                break
            stale += 1
        excess = len(q) - stale - self.max_items
        if stale or excess > 0:
            del q[: stale + max(excess, 0)]
        # the least recently touched key is first: drop it once its whole window has passed
        oldest_key = next(iter(self.data))
        oldest = self.data[oldest_key]
        if oldest_key != key and (not oldest or oldest[-1][0] < horizon):
            del self.data[oldest_key]
        return q


VERSION_NAMES = {
    0x0300: "SSL 3.0",
    0x0301: "TLS 1.0",
    0x0302: "TLS 1.1",
    0x0303: "TLS 1.2",
    0x0304: "TLS 1.3",
}
