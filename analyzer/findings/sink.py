"""The end of the cross-flow stage: repeats folded, the ``finding`` log and the alerts."""

from __future__ import annotations

import json
import os
import shlex
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from analyzer.findings.ecs import to_ecs
from analyzer.findings.model import Finding
from analyzer.findings.references import references
from analyzer.findings.summary import Candidate, dedup_json, evidence_json
from analyzer.findings.suppress import Suppression
from analyzer.logs.records import FindingRow
from analyzer.logs.sinks import RowSink

MAX_DEDUP_KEYS = 20_000
Alert = dict[str, Any]


MAX_FOLDED_UIDS = 20


class _Fold:
    """A finding written once its ``dedup_window`` has passed, with what was folded into it."""

    __slots__ = ("row", "count", "last_ts", "uids", "omitted")

    def __init__(self, row: FindingRow) -> None:
        self.row = row
        self.count = 1
        self.last_ts = row.ts
        self.uids: list[str] = [row.uid] if row.uid else []
        self.omitted = 0

    def add(self, uid: str | None, ts: float) -> None:
        self.count += 1
        self.last_ts = max(self.last_ts, ts)
        if uid and uid not in self.uids:
            if len(self.uids) < MAX_FOLDED_UIDS:
                self.uids.append(uid)
            else:
                self.omitted += 1

    def final(self) -> FindingRow:
        return self.row._replace(
            count=self.count,
            first_ts=self.row.ts,
            last_ts=self.last_ts,
            uids=self.uids,
            uids_omitted=self.omitted,
            carve_command=carve_command(self.uids),
        )


def carve_command(uids: list[str]) -> str | None:
    """``dicom-analyzer carve`` for these flows (CAPTURE: the capture files analysed)."""
    if not uids:
        return None
    flows = " ".join(f"--uid {u}" for u in uids)
    return f"dicom-analyzer carve CAPTURE -o {uids[0]}.pcapng {flows}"


class FindingSink:
    """Folds repeats of a finding per (rule, key) within the rule's ``dedup_window``: the first
    occurrence is alerted at once; the ``finding`` row is written when the window has passed (or
    the run ends, or the key is pushed out) with the count, the first and last time and the
    flows it covers, and a final alert says how many were folded when there were more."""

    def __init__(
        self,
        table: RowSink[FindingRow],
        windows: Mapping[str, float],
        alerts: Path | None = None,
        append_alerts: bool = False,
        max_keys: int = MAX_DEDUP_KEYS,
        ecs: bool = False,
        suppressions: tuple[Suppression, ...] = (),
    ) -> None:
        """``windows``: rule id -> its dedup window in seconds (rules without one: 3600);
        ``ecs``: the alerts file holds ECS documents (``findings/ecs.py``)."""
        self.ecs = ecs
        self.table = table
        self.windows = windows
        self._folds: OrderedDict[tuple[str, str], _Fold] = OrderedDict()
        self.max_keys = max_keys
        self.suppressions = suppressions
        self.suppressed: dict[str, int] = {}
        """Findings (occurrences, folded ones included) matched per ``[[suppress]]`` entry."""
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
        key = dedup_json(dedup)
        if key is not None and not self.suppressions and self._folded(f.rule, key, f.uid, f.ts):
            return
        row = _row(
            f.uid, f.ts, f.rule, f.severity.label, f.title, f.detail, f.orig_h, f.resp_h,
            f.calling_ae, f.called_ae, evidence_json(f.evidence), f.wireshark_filter, f.tshark,
        )  # fmt: skip
        self._write(row, key, f.evidence)

    def _folded(self, rule: str, key: str, uid: str | None, ts: float) -> bool:
        """Counted into its open fold, as ``_write`` would, without a row built first (a rule
        past its threshold repeats on every event: ``bulk_retrieve`` on every stored object)."""
        self.expire(ts)
        fold = self._folds.get((rule, key))
        if fold is None or ts - fold.row.ts >= self.windows.get(rule, 3600.0):
            return False
        fold.add(uid, ts)
        return True

    def candidate(self, c: Candidate) -> None:
        """A finding of a per-flow rule."""
        row = _row(
            c.uid or None, c.ts, c.rule, c.severity, c.title, c.detail, c.orig_h, c.resp_h,
            c.calling_ae, c.called_ae, c.evidence, c.wireshark_filter, c.tshark,
        )  # fmt: skip
        self._write(row, c.dedup, None)

    def _suppress(self, row: FindingRow) -> FindingRow:
        for entry in self.suppressions:
            if entry.matches(row.rule, (row.orig_h, row.resp_h), (row.calling_ae, row.called_ae)):
                self.suppressed[entry.name] = self.suppressed.get(entry.name, 0) + 1
                return row._replace(suppressed=entry.name)
        return row

    def _write(self, row: FindingRow, dedup: str | None, evidence: object | None) -> None:
        self.expire(row.ts)
        if self.suppressions:
            row = self._suppress(row)
        if dedup is None:
            self.count += 1
            self.table.add(row)
            self._alert(row, evidence)
            return
        key = (row.rule, dedup)
        fold = self._folds.get(key)
        if fold is not None and row.ts - fold.row.ts < self.windows.get(row.rule, 3600.0):
            fold.add(row.uid, row.ts)
            return
        if fold is not None:
            self._close(key)
        self._folds[key] = _Fold(row)
        self.count += 1
        self._alert(row, evidence)
        while len(self._folds) > self.max_keys:
            self._close(next(iter(self._folds)))

    def expire(self, now: float) -> None:
        """Write the folds whose window has passed (oldest first)."""
        folds, windows = self._folds, self.windows
        while folds:
            key, fold = next(iter(folds.items()))
            if now - fold.row.ts < windows.get(fold.row.rule, 3600.0):
                return
            self._close(key)

    def _close(self, key: tuple[str, str]) -> None:
        fold = self._folds.pop(key)
        row = fold.final()
        self.table.add(row)
        if fold.count > 1:  # the final count, for a SIEM that saw the first alert
            self._alert(row, None)

    def _alert(self, row: FindingRow, evidence: object | None) -> None:
        if (self._alerts is None and not self.listeners) or row.suppressed is not None:
            return  # a suppressed finding is written and counted, never alerted
        alert: Alert = row._asdict()
        alert["evidence"] = json.loads(row.evidence) if evidence is None else evidence
        if self._alerts is not None:
            doc = to_ecs(alert) if self.ecs else alert
            self._alerts.write(json.dumps(doc, sort_keys=True, default=str) + "\n")
            self._alerts.flush()
        for listener in self.listeners:
            listener(alert)

    def flush(self) -> None:
        """The run ends: every open fold is written with its count."""
        while self._folds:
            self._close(next(iter(self._folds)))

    def release(self) -> None:
        self.flush()

    def close(self) -> None:
        self.flush()
        if self._alerts is not None:
            self._alerts.close()
            self._alerts = None


def _row(
    uid: str | None, ts: float, rule: str, severity: str, title: str, detail: str,
    orig_h: str | None, resp_h: str | None, calling_ae: str | None, called_ae: str | None,
    evidence: str, wireshark_filter: str | None, tshark: str | None,
) -> FindingRow:  # fmt: skip
    return FindingRow(
        uid=uid,
        ts=ts,
        rule=rule,
        severity=severity,
        title=title,
        detail=detail,
        orig_h=orig_h,
        resp_h=resp_h,
        calling_ae=calling_ae,
        called_ae=called_ae,
        evidence=evidence,
        wireshark_filter=wireshark_filter,
        count=1,
        first_ts=ts,
        last_ts=ts,
        uids=[uid] if uid else [],
        uids_omitted=0,
        references=references(rule),
        tshark_command=tshark
        or (
            f"tshark -n -r CAPTURE -Y {shlex.quote(wireshark_filter)}" if wireshark_filter else None
        ),
        carve_command=carve_command([uid] if uid else []),
        suppressed=None,
    )
