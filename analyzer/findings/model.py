"""Findings, severities, and the two kinds of rule.

A rule is a class with an ``id`` (snake_case, from the detection reference), a ``title``, a
``description``, a default ``severity`` and ``options`` (defaults the config may override).

- A ``FlowRule`` sees one association or flow at a time (the per-flow stage, which can run
  in many processes); its findings go to the cross-flow stage as candidates, where repeats
  are folded.
- A ``CrossFlowRule`` sees only the summary records of ``findings.summary``, in timestamp
  order, and keeps bounded windows over them (the cross-flow stage, run once).

Each overrides the hooks it needs; the engine calls each inside its own error boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from analyzer.findings.finding import Finding, Severity

if TYPE_CHECKING:
    from analyzer.dicom.messages import Anomaly, Message
    from analyzer.findings.context import RuleContext
    from analyzer.findings.summary import AssocSummary, DimseFact, FlowSummary
    from analyzer.findings.windows import Windows
    from analyzer.logs.http_flow import Exchange
    from analyzer.logs.views import AssocView, FlowView


class Rule:
    """What both kinds of rule declare."""

    id: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    severity: ClassVar[Severity] = Severity.LOW
    options: ClassVar[dict[str, Any]] = {}
    stage: ClassVar[str] = ""

    def __init__(self, ctx: RuleContext, options: dict[str, Any]) -> None:
        self.ctx = ctx
        self.opt = options
        self.setup()

    def setup(self) -> None:
        """Create the rule's own state; ``self.opt`` holds its options, defaults merged."""

    def finish(self) -> None:
        """The run is over: report what state still holds."""


def hooked(rules: Sequence[Rule], hooks: Sequence[str], base: type[Rule]) -> dict[str, list[Rule]]:
    """Per hook, the rules whose class defines it (calling the others would call a no-op)."""
    return {h: [r for r in rules if getattr(type(r), h) is not getattr(base, h)] for h in hooks}


class FlowRule(Rule):
    """A rule over one association or flow at a time."""

    stage = "per-flow"

    def on_message(self, assoc: AssocView, message: Message) -> None:
        """A DIMSE message of an association (its dataset summary included)."""

    def on_anomaly(self, assoc: AssocView, anomaly: Anomaly) -> None:
        """A protocol anomaly inside an association."""

    def on_association_end(self, assoc: AssocView) -> None:
        """The association is over (released, aborted, rejected, closed or timed out)."""

    def on_flow_end(self, flow: FlowView) -> None:
        """Any TCP flow ended (DICOM or not)."""

    def on_http(self, exchange: Exchange) -> None:
        """An HTTP request and its response (DICOMweb or not) ended."""


class CrossFlowRule(Rule):
    """A rule over the summary records of every flow, in timestamp order."""

    stage = "cross-flow"

    def on_association(self, a: AssocSummary) -> None:
        """An association ended."""

    def on_flow(self, f: FlowSummary) -> None:
        """A TCP flow ended."""

    def on_fact(self, fact: DimseFact) -> None:
        """A query, retrieve or store fact from inside an association."""

    def windows(self, seconds: float, max_items: int = 4096) -> Windows[Any, Any]:
        """Per-key sliding windows bounded by the run's ``max_window_keys``."""
        from analyzer.findings.windows import Windows

        return Windows(seconds, max_items, self.ctx.config.limits.max_window_keys)


__all__ = ["CrossFlowRule", "Finding", "FlowRule", "Rule", "Severity"]
