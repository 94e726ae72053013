"""The finding engine: runs every enabled rule inside its own error boundary and writes
the ``finding`` table, ``alerts.jsonl`` and the ``phi`` table."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from analyzer.config import Config
from analyzer.dicom.dataset import DatasetSummary
from analyzer.dicom.messages import Anomaly, Message
from analyzer.errors import ConfigError
from analyzer.findings import rules as _rules  # noqa: F401  (registers the rules)
from analyzer.findings.context import AssocView, FlowView, QueryState, RuleContext
from analyzer.findings.model import RULES, Finding, Rule
from analyzer.phi import Hasher, phi_tags, redact

Row = tuple[Any, ...]
MAX_DEDUP_KEYS = 20_000
MAX_QUERIES = 4096
QUERY_COMMANDS = frozenset({0x0020, 0x0021, 0x0010})
DIRECTION = ("orig", "resp")


class FindingEngine:
    def __init__(
        self,
        config: Config,
        write: Mapping[str, Callable[[Row], None]],
        alerts: Path | None,
        report_error: Callable[[str | None, float, str, str], None],
        append_alerts: bool = False,
    ) -> None:
        self.config = config
        self.write = write
        self.report_error = report_error
        self.hasher = Hasher(config.salt)
        self.ctx = RuleContext(config, self.hasher, self.emit)
        self._check_config()
        self.rules: list[Rule] = []
        for rid, cls in RULES.items():
            if rid in config.rules_disabled:
                continue
            self.rules.append(cls(self.ctx, {**cls.options, **config.rule_options.get(rid, {})}))
        self._dedup: OrderedDict[tuple[str, object], float] = OrderedDict()
        self.count = 0
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        """Called with each alert as it is raised (live mode: stdout, syslog)."""
        self._alerts: IO[str] | None = None
        if alerts is not None:
            mode = os.O_APPEND if append_alerts else os.O_TRUNC
            fd = os.open(alerts, os.O_WRONLY | os.O_CREAT | mode, 0o600)
            os.fchmod(fd, 0o600)
            self._alerts = os.fdopen(fd, "w", encoding="utf-8")
        self.include_uids = bool(
            config.rule_options.get("cleartext_phi", {}).get("include_uids", False)
        )
        self.tags = phi_tags(self.include_uids)

    def _check_config(self) -> None:
        for rid in self.config.rules_disabled | set(self.config.rule_options):
            if rid not in RULES:
                raise ConfigError(f"unknown rule '{rid}' in [rules] (see: dicom-analyzer rules)")
        for rid, opts in self.config.rule_options.items():
            for key in opts:
                if key not in RULES[rid].options:
                    raise ConfigError(f"rule {rid} has no option '{key}'")

    # -- dispatch with an error boundary per rule ---------------------------------------

    def _call(self, rule: Rule, hook: str, uid: str | None, ts: float, *args: Any) -> None:
        try:
            getattr(rule, hook)(*args)
        except Exception as exc:
            if self.config.strict:
                raise
            self.report_error(
                uid,
                ts,
                "analyzer_internal_error",
                f"rule {rule.id}.{hook}: {type(exc).__name__}: {exc}",
            )

    def on_message(self, assoc: AssocView, m: Message, patient: str | None = None) -> None:
        """``patient``: the dataset's patient key when the caller already computed it."""
        if m.dataset is not None:
            self._phi_rows(assoc, m, m.dataset, patient)
        self._track_query(assoc, m)
        for r in self.rules:
            self._call(r, "on_message", assoc.uid, m.ts, assoc, m)

    def on_anomaly(self, assoc: AssocView, a: Anomaly) -> None:
        for r in self.rules:
            self._call(r, "on_anomaly", assoc.uid, a.ts, assoc, a)

    def on_association_end(self, assoc: AssocView) -> None:
        for r in self.rules:
            self._call(r, "on_association_end", assoc.uid, assoc.ts, assoc)

    def on_flow_end(self, flow: FlowView) -> None:
        for r in self.rules:
            self._call(r, "on_flow_end", flow.uid, flow.last_ts, flow)

    def release(self) -> None:
        """Forget the rules' and the de-duplication state (the run is over; the counts stay)."""
        self.rules = []
        self._dedup.clear()
        self.ctx.release()

    def finish(self) -> None:
        for r in self.rules:
            self._call(r, "finish", None, 0.0)
        if self._alerts is not None:
            self._alerts.close()
            self._alerts = None

    def _track_query(self, assoc: AssocView, m: Message) -> None:
        c = m.command
        cf = c.command_field
        if cf in QUERY_COMMANDS and c.message_id is not None:
            if len(assoc.queries) < MAX_QUERIES:
                keys = (
                    {e.keyword: e.value or "" for e in m.dataset.elements if e.depth == 0}
                    if m.dataset
                    else {}
                )
                assoc.queries[(m.direction, c.message_id)] = QueryState(
                    command=cf,
                    message_id=c.message_id,
                    sop_class_uid=c.affected_sop_class_uid,
                    ts=m.ts,
                    keys=keys,
                    move_destination=c.move_destination,
                )
        elif cf is not None and cf & 0x8000 and (cf & 0x7FFF) in QUERY_COMMANDS:
            q = assoc.queries.get((1 - m.direction, c.message_id_responded or -1))
            if q is None:
                return
            if c.status in (0xFF00, 0xFF01):
                q.pending += 1
                if m.dataset is not None and len(q.patients) < 100_000:
                    key = self.hasher.patient_key(
                        m.dataset.get("PatientID"),
                        m.dataset.get("PatientName"),
                        m.dataset.get("PatientBirthDate"),
                    )
                    if key:
                        q.patients.add(key)
            else:
                q.final_status = c.status
            if c.n_completed is not None:
                q.completed = c.n_completed
        elif cf == 0x0001:
            assoc.store_bytes += m.dataset_bytes

    # -- PHI -----------------------------------------------------------------------------

    def phi_summary(self, ds: DatasetSummary) -> tuple[list[str], str | None]:
        """(keywords of PHI attributes with a value, patient key) for one dataset."""
        keywords = sorted(
            {e.keyword or f"{e.tag:08X}" for e in ds.elements if e.tag in self.tags and e.value}
        )
        key = self.hasher.patient_key(
            ds.get("PatientID"), ds.get("PatientName"), ds.get("PatientBirthDate")
        )
        return keywords, key

    def _phi_rows(
        self, assoc: AssocView, m: Message, ds: DatasetSummary, patient: str | None
    ) -> None:
        c = m.command
        message_id = c.message_id if c.message_id is not None else c.message_id_responded
        if patient is None:
            patient = self.hasher.patient_key(
                ds.get("PatientID"), ds.get("PatientName"), ds.get("PatientBirthDate")
            )
        if patient:
            assoc.patients.add(patient)
        for e in ds.elements:
            if e.tag not in self.tags or not e.value:
                continue
            keyword = e.keyword or f"{e.tag:08X}"
            assoc.phi_counts[keyword] = assoc.phi_counts.get(keyword, 0) + 1
            value = e.value if self.config.capture_phi else redact(e.value)
            self.write["phi"](
                (
                    assoc.uid,
                    m.ts,
                    message_id,
                    DIRECTION[m.direction],
                    f"({e.tag >> 16:04X},{e.tag & 0xFFFF:04X})",
                    keyword,
                    e.vr,
                    value,
                    self.hasher(e.value),
                    e.length,
                    e.depth,
                    patient,
                )
            )

    # -- output --------------------------------------------------------------------------

    def emit(self, f: Finding, dedup: object | None = None) -> None:
        if dedup is not None:
            key = (f.rule, dedup)
            window = float(self._options(f.rule).get("dedup_window", 3600.0))
            last = self._dedup.get(key)
            if last is not None and f.ts - last < window:
                return
            self._dedup[key] = f.ts
            self._dedup.move_to_end(key)
            while len(self._dedup) > MAX_DEDUP_KEYS:
                self._dedup.popitem(last=False)
        self.count += 1
        evidence = json.dumps(f.evidence, sort_keys=True, default=str)
        self.write["finding"](
            (
                f.uid,
                f.ts,
                f.rule,
                f.severity.label,
                f.title,
                f.detail,
                f.orig_h,
                f.resp_h,
                f.calling_ae,
                f.called_ae,
                evidence,
                f.wireshark_filter,
            )
        )
        if self._alerts is None and not self.listeners:
            return
        alert = {
            "ts": f.ts,
            "uid": f.uid,
            "rule": f.rule,
            "severity": f.severity.label,
            "title": f.title,
            "detail": f.detail,
            "orig_h": f.orig_h,
            "resp_h": f.resp_h,
            "calling_ae": f.calling_ae,
            "called_ae": f.called_ae,
            "evidence": f.evidence,
            "wireshark_filter": f.wireshark_filter,
        }
        if self._alerts is not None:
            self._alerts.write(json.dumps(alert, sort_keys=True, default=str) + "\n")
            self._alerts.flush()
        for listener in self.listeners:
            listener(alert)

    def _options(self, rid: str) -> dict[str, Any]:
        cls = RULES[rid]
        return {**cls.options, **self.config.rule_options.get(rid, {})}
