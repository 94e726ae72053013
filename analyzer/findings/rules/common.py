"""Small helpers shared by rules."""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from analyzer.findings.context import AssocView
from analyzer.findings.model import Finding, Severity

MAX_KEYS = 50_000


def assoc_finding(
    rule: str,
    a: AssocView,
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
    """Per-key sliding windows of (ts, item), bounded in keys and items."""

    def __init__(self, seconds: float, max_items: int = 4096) -> None:
        self.seconds = seconds
        self.max_items = max_items
        self.data: OrderedDict[Any, deque[tuple[float, Any]]] = OrderedDict()

    def add(self, key: Any, ts: float, item: Any) -> deque[tuple[float, Any]]:
        q = self.data.get(key)
        if q is None:
            q = self.data[key] = deque(maxlen=self.max_items)
            while len(self.data) > MAX_KEYS:
                self.data.popitem(last=False)
        else:
            self.data.move_to_end(key)
        q.append((ts, item))
        while q and ts - q[0][0] > self.seconds:
            q.popleft()
        # the least recently touched key is first: drop it once its whole window has passed
        oldest_key = next(iter(self.data))
        oldest = self.data[oldest_key]
        if oldest_key != key and (not oldest or ts - oldest[-1][0] > self.seconds):
            del self.data[oldest_key]
        return q


VERSION_NAMES = {
    0x0300: "SSL 3.0",
    0x0301: "TLS 1.0",
    0x0302: "TLS 1.1",
    0x0303: "TLS 1.2",
    0x0304: "TLS 1.3",
}
