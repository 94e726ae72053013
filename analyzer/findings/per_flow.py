"""The per-flow stage of the rules: one association or flow at a time.

``FlowRules`` is a DICOM observer (it sees each association's events as they happen) and is
told of every finished flow; its rules' findings become ``Candidate`` records for the
cross-flow stage, which folds repeats across flows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from analyzer.dicom.messages import Anomaly, Message
from analyzer.findings.model import FlowRule, Rule, hooked
from analyzer.logs.http_flow import Exchange
from analyzer.logs.observer import DicomObserver, MessageInfo
from analyzer.logs.views import AssocView, FlowView

ReportError = Callable[[str | None, float, str, str], None]


def call_guarded(
    rule: Rule,
    hook: str,
    uid: str | None,
    ts: float,
    args: tuple[object, ...],
    strict: bool,
    report: ReportError,
) -> None:
    """``rule.hook(*args)`` inside an error boundary: an exception becomes an
    ``analyzer_internal_error`` anomaly (and re-raises in strict mode)."""
    try:
        getattr(rule, hook)(*args)
    except Exception as exc:
        if strict:
            raise
        report(
            uid,
            ts,
            "analyzer_internal_error",
            f"rule {rule.id}.{hook}: {type(exc).__name__}: {exc}",
        )


HOOKS = ("on_message", "on_anomaly", "on_association_end", "on_flow_end", "on_http", "finish")


class FlowRules(DicomObserver):
    def __init__(self, rules: Sequence[FlowRule], strict: bool, report: ReportError) -> None:
        self.rules = list(rules)
        self.strict = strict
        self.report = report
        self.hooked = hooked(self.rules, HOOKS, FlowRule)

    def _each(self, hook: str, uid: str | None, ts: float, *args: object) -> None:
        for r in self.hooked[hook]:
            call_guarded(r, hook, uid, ts, args, self.strict, self.report)

    def message(self, a: AssocView, m: Message, info: MessageInfo) -> None:
        self._each("on_message", a.uid, m.ts, a, m)

    def anomaly(self, a: AssocView, an: Anomaly) -> None:
        self._each("on_anomaly", a.uid, an.ts, a, an)

    def ended(self, a: AssocView, reason: str) -> None:
        self._each("on_association_end", a.uid, a.ts, a)

    def flow_ended(self, f: FlowView) -> None:
        self._each("on_flow_end", f.uid, f.last_ts, f)

    def http(self, ex: Exchange) -> None:
        self._each("on_http", ex.uid, ex.ts, ex)

    def finish(self) -> None:
        self._each("finish", None, 0.0)

    def release(self) -> None:
        self.rules = []
        self.hooked = {hook: [] for hook in HOOKS}
