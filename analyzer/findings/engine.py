"""The rules of a run, wired in two stages.

    per-flow stage:   DicomFlow observers ... FlowRules (candidates), SummaryEmitter (records)
                      finished flows ........ FlowRules.flow_ended, Stamper.flow
                           │ summary records (findings.summary), stamped (emit_ts, uid, seq)
                           ▼
    cross-flow stage: CrossFlowStage: CrossFlowRules, FindingSink (repeats folded, finding
                      table, alerts.jsonl)

``feed`` replaces the cross-flow stage by another consumer of the records (a per-flow-only
run writes them to tables; ``findings.replay`` runs the cross-flow stage over them later).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from analyzer.config import Config
from analyzer.errors import ConfigError
from analyzer.findings.catalog import CROSS_FLOW_RULES, FLOW_RULES
from analyzer.findings.context import RuleContext
from analyzer.findings.cross_flow import CrossFlowStage
from analyzer.findings.model import CrossFlowRule, FlowRule, Rule
from analyzer.findings.per_flow import FlowRules, ReportError
from analyzer.findings.sink import Alert, FindingSink
from analyzer.findings.site import all_rules, site_rules
from analyzer.findings.summary import Stamper, SummaryEmitter, SummaryFeed
from analyzer.logs.asset import Inventory
from analyzer.logs.records import FindingRow
from analyzer.logs.sinks import RowSink
from analyzer.logs.views import FlowView
from analyzer.privacy import Hasher
from analyzer.state.baseline import MAX_ENTRIES
from analyzer.state.store import StateDir


def check_rule_config(config: Config) -> None:
    rules = all_rules(config.rule_modules)
    for rid in config.rules_disabled | set(config.rule_options):
        if rid not in rules:
            raise ConfigError(f"unknown rule '{rid}' in [rules] (see: dicom-analyzer rules)")
    for rid, opts in config.rule_options.items():
        for key in opts:
            if key not in rules[rid].options:
                raise ConfigError(f"rule {rid} has no option '{key}'")


def flow_rule_classes(config: Config) -> list[type[FlowRule]]:
    site = [c for c in site_rules(config.rule_modules) if issubclass(c, FlowRule)]
    return [*FLOW_RULES, *site]


def cross_rule_classes(config: Config) -> list[type[CrossFlowRule]]:
    site = [c for c in site_rules(config.rule_modules) if issubclass(c, CrossFlowRule)]
    return [*CROSS_FLOW_RULES, *site]


def rule_options(config: Config, cls: type[Rule]) -> dict[str, Any]:
    return {**cls.options, **config.rule_options.get(cls.id, {})}


def dedup_windows(config: Config) -> dict[str, float]:
    return {
        rid: float(rule_options(config, cls).get("dedup_window", 3600.0))
        for rid, cls in all_rules(config.rule_modules).items()
    }


def cross_flow_stage(
    config: Config,
    hasher: Hasher,
    finding_table: RowSink[FindingRow],
    report_error: ReportError,
    alerts: Path | None = None,
    append_alerts: bool = False,
    inventory: Inventory | None = None,
) -> CrossFlowStage:
    """The cross-flow rules, the finding sink and the inventory, ready for summary records."""
    sink = FindingSink(
        finding_table,
        dedup_windows(config),
        alerts,
        append_alerts,
        max_keys=config.limits.max_dedup_keys,
        ecs=config.alerts_format == "ecs",
        suppressions=config.suppressions,
    )
    state = open_state(config)
    baseline = state.load() if state is not None else None
    ctx = RuleContext(config, hasher, sink.emit, baseline)
    rules = [
        cls(ctx, rule_options(config, cls))
        for cls in cross_rule_classes(config)
        if cls.id not in config.rules_disabled
    ]
    return CrossFlowStage(rules, sink, config.strict, report_error, inventory, ctx.baseline, state)


def open_state(config: Config) -> StateDir | None:
    """The state directory of ``[state] dir`` / ``--state`` (None: nothing persists)."""
    if config.state_dir is None:
        return None
    return StateDir(config.state_dir, config.limits.max_endpoints, MAX_ENTRIES)


class RuleEngine:
    def __init__(
        self,
        config: Config,
        finding_table: RowSink[FindingRow],
        report_error: ReportError,
        clock: Callable[[], float],
        alerts: Path | None = None,
        append_alerts: bool = False,
        feed: SummaryFeed | None = None,
        inventory: Inventory | None = None,
    ) -> None:
        check_rule_config(config)
        self.config = config
        self.hasher = Hasher(config.salt)
        self.cross: CrossFlowStage | None = None
        if feed is None:
            self.cross = cross_flow_stage(
                config, self.hasher, finding_table, report_error, alerts, append_alerts, inventory
            )
            feed = self.cross
        self.stamper = Stamper(clock, feed)
        self.flow_ctx = RuleContext(config, self.hasher, self.stamper.candidate)
        self.flow_rules = FlowRules(
            [
                cls(self.flow_ctx, rule_options(config, cls))
                for cls in flow_rule_classes(config)
                if cls.id not in config.rules_disabled
            ],
            config.strict,
            report_error,
        )
        self.emitter = SummaryEmitter(self.stamper, self.hasher)

    @property
    def count(self) -> int:
        """Findings written so far (0 when another consumer takes the records)."""
        return self.cross.sink.count if self.cross is not None else 0

    @property
    def listeners(self) -> list[Callable[[Alert], None]]:
        """Called with each alert as it is raised (needs the inline cross-flow stage)."""
        if self.cross is None:
            raise RuntimeError("no inline cross-flow stage: its records go elsewhere")
        return self.cross.sink.listeners

    def flow_ended(self, flow: FlowView) -> None:
        self.flow_rules.flow_ended(flow)
        self.stamper.flow(flow)

    def finish(self) -> None:
        self.flow_rules.finish()
        if self.cross is not None:
            self.cross.finish()
            self.cross.sink.close()

    def release(self) -> None:
        """Forget the rules' and the de-duplication state (the run is over; the counts stay)."""
        self.flow_rules.release()
        self.flow_ctx.release()
        if self.cross is not None:
            self.cross.release()
