"""The end of the cross-flow stage: repeats folded, the ``finding`` log and the alerts."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from analyzer.findings.model import Finding
from analyzer.findings.summary import Candidate, dedup_json, evidence_json
from analyzer.logs.records import FindingRow
from analyzer.logs.sinks import RowSink

MAX_DEDUP_KEYS = 20_000
Alert = dict[str, Any]


class FindingSink:
    """Writes each finding once per (rule, key) per the rule's ``dedup_window``."""

    def __init__(
        self,
        table: RowSink[FindingRow],
        windows: Mapping[str, float],
        alerts: Path | None = None,
        append_alerts: bool = False,
        max_keys: int = MAX_DEDUP_KEYS,
    ) -> None:
        """``windows``: rule id -> its dedup window in seconds (rules without one: 3600)."""
        self.table = table
        self.windows = windows
        self._dedup: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.max_keys = max_keys
        self.count = 0
        self.listeners: list[Callable[[Alert], None]] = []
        """Called with each alert as it is raised (live mode: stdout, syslog)."""
        self._alerts: IO[str] | None = None
        if alerts is not None:
            mode = os.O_APPEND if append_alerts else os.O_TRUNC
            fd = os.open(alerts, os.O_WRONLY | os.O_CREAT | mode, 0o600)
            os.fchmod(fd, 0o600)
            self._alerts = os.fdopen(fd, "w", encoding="utf-8")

    def emit(self, f: Finding, dedup: object | None = None) -> None:
        """A finding of a cross-flow rule."""
        row = FindingRow(
            uid=f.uid,
            ts=f.ts,
            rule=f.rule,
            severity=f.severity.label,
            title=f.title,
            detail=f.detail,
            orig_h=f.orig_h,
            resp_h=f.resp_h,
            calling_ae=f.calling_ae,
            called_ae=f.called_ae,
            evidence=evidence_json(f.evidence),
            wireshark_filter=f.wireshark_filter,
        )
        self._write(row, dedup_json(dedup), f.evidence)

    def candidate(self, c: Candidate) -> None:
        """A finding of a per-flow rule."""
        row = FindingRow(
            uid=c.uid or None,
            ts=c.ts,
            rule=c.rule,
            severity=c.severity,
            title=c.title,
            detail=c.detail,
            orig_h=c.orig_h,
            resp_h=c.resp_h,
            calling_ae=c.calling_ae,
            called_ae=c.called_ae,
            evidence=c.evidence,
            wireshark_filter=c.wireshark_filter,
        )
        self._write(row, c.dedup, None)

    def _write(self, row: FindingRow, dedup: str | None, evidence: object | None) -> None:
        if dedup is not None:
            key = (row.rule, dedup)
            last = self._dedup.get(key)
            if last is not None and row.ts - last < self.windows.get(row.rule, 3600.0):
                return
            self._dedup[key] = row.ts
            self._dedup.move_to_end(key)
            while len(self._dedup) > self.max_keys:
                self._dedup.popitem(last=False)
        self.count += 1
        self.table.add(row)
        if self._alerts is None and not self.listeners:
            return
        alert: Alert = row._asdict()
        alert["evidence"] = json.loads(row.evidence) if evidence is None else evidence
        if self._alerts is not None:
            self._alerts.write(json.dumps(alert, sort_keys=True, default=str) + "\n")
            self._alerts.flush()
        for listener in self.listeners:
            listener(alert)

    def release(self) -> None:
        self._dedup.clear()

    def close(self) -> None:
        if self._alerts is not None:
            self._alerts.close()
            self._alerts = None
