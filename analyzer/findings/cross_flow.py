"""The cross-flow stage of the rules: summary records of every flow, in timestamp order.

Inline (``analyze``, ``live``) the per-flow stage puts records here as it produces them;
records of one clock tick are held and sorted by ``(uid, seq)`` before they are used, so the
order is the one a merge of independent per-flow runs gives (``replay``). Every record goes to
the cross-flow rules; candidates of per-flow rules go to the finding sink, which folds
repeats across flows; asset facts go to the inventory.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from analyzer.errors import AnalyzerError
from analyzer.findings.model import CrossFlowRule, hooked
from analyzer.findings.per_flow import ReportError, call_guarded
from analyzer.findings.sink import FindingSink
from analyzer.findings.summary import (
    AssocSummary,
    Candidate,
    DimseFact,
    FlowSummary,
    SummaryRecord,
)
from analyzer.logs.asset import AssetFact, Inventory
from analyzer.state.baseline import Baseline
from analyzer.state.store import StateDir


class CrossFlowStage:
    def __init__(
        self,
        rules: Sequence[CrossFlowRule],
        sink: FindingSink,
        strict: bool,
        report: ReportError,
        inventory: Inventory | None = None,
        baseline: Baseline | None = None,
        state: StateDir | None = None,
    ) -> None:
        """``inventory``: kept from the ``AssetFact`` records (None: they are ignored).
        ``baseline`` learns from every record after the rules have seen it; with ``state`` it
        is saved there by ``save_state`` and ``finish``."""
        self.rules = list(rules)
        self.hooked = hooked(self.rules, ("on_association", "on_flow", "on_fact"), CrossFlowRule)
        self.baseline = baseline if baseline is not None else Baseline()
        self.state = state
        self.inventory = inventory
        self.sink = sink
        self.strict = strict
        self.report = report
        self._tick: list[SummaryRecord] = []
        self._tick_ts = float("-inf")
        self.records = 0

    def put(self, record: SummaryRecord) -> None:
        """Take one record; records of an earlier tick than the current one join the current."""
        if record.emit_ts > self._tick_ts:
            self.flush()
            self._tick_ts = record.emit_ts
        self._tick.append(record)

    def flush(self) -> None:
        """Use the held records of the current tick."""
        if not self._tick:
            return
        tick, self._tick = self._tick, []
        tick.sort(key=lambda r: (r.uid, r.seq))
        for r in tick:
            self._dispatch(r)

    def run(self, ordered: Iterable[SummaryRecord]) -> None:
        """Use records that are already in ``(emit_ts, uid, seq)`` order (a replay)."""
        for r in ordered:
            self._dispatch(r)

    def _dispatch(self, r: SummaryRecord) -> None:
        self.records += 1
        if isinstance(r, AssetFact):
            if self.inventory is not None:
                self.inventory.fact(r)
            return
        if isinstance(r, Candidate):
            self.sink.candidate(r)
            return
        if isinstance(r, AssocSummary):
            hook, ts = "on_association", r.ts
        elif isinstance(r, FlowSummary):
            hook, ts = "on_flow", r.last_ts
        elif isinstance(r, DimseFact):
            hook, ts = "on_fact", r.message_ts
        else:  # pragma: no cover - the union is closed
            return
        for rule in self.hooked[hook]:
            call_guarded(rule, hook, r.uid, ts, (r,), self.strict, self.report)
        if isinstance(r, AssocSummary):
            self.baseline.association(r)
        elif isinstance(r, DimseFact):
            self.baseline.fact(r)

    def save_state(self) -> None:
        """Write the baseline to the state directory (live does at every rotation). A state
        that cannot be written is an anomaly row, never the loss of the run's tables."""
        if self.state is not None:
            try:
                self.state.save(self.baseline)
            except AnalyzerError as exc:
                self.report(None, 0.0, "analyzer_state_not_saved", str(exc))

    def finish(self) -> None:
        self.flush()
        for rule in self.rules:
            call_guarded(rule, "finish", None, 0.0, (), self.strict, self.report)
        self.save_state()

    def release(self) -> None:
        self.rules = []
        self.hooked = {hook: [] for hook in self.hooked}
        self.sink.release()
