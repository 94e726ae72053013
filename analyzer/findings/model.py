"""Findings, severities and the rule registry.

A rule is a class with an ``id`` (snake_case, from shared/DETECTIONS.md), a ``title``, a
``description``, a default ``severity`` and ``options`` (defaults the config may override).
It overrides the hooks it needs; the engine calls each inside its own error boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from analyzer.dicom.messages import Anomaly, Message
    from analyzer.findings.context import AssocView, FlowView, RuleContext


class Severity(IntEnum):
    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    rule: str
    severity: Severity
    title: str
    detail: str
    ts: float
    uid: str | None = None
    orig_h: str | None = None
    resp_h: str | None = None
    calling_ae: str | None = None
    called_ae: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    wireshark_filter: str | None = None


class Rule:
    id: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    severity: ClassVar[Severity] = Severity.LOW
    options: ClassVar[dict[str, Any]] = {}

    def __init__(self, ctx: RuleContext, options: dict[str, Any]) -> None:
        self.ctx = ctx
        self.opt = options
        self.setup()

    def setup(self) -> None:
        """Create the rule's own state; ``self.opt`` holds its options, defaults merged."""

    # hooks: override what the rule needs
    def on_message(self, assoc: AssocView, message: Message) -> None:
        """A DIMSE message of an association (its dataset summary included)."""

    def on_anomaly(self, assoc: AssocView, anomaly: Anomaly) -> None:
        """A protocol anomaly inside an association."""

    def on_association_end(self, assoc: AssocView) -> None:
        """The association is over (released, aborted, rejected, closed or timed out)."""

    def on_flow_end(self, flow: FlowView) -> None:
        """Any TCP flow ended (DICOM or not)."""

    def finish(self) -> None:
        """The run is over: report what cross-flow state still holds."""


RULES: dict[str, type[Rule]] = {}


def register(cls: type[Rule]) -> type[Rule]:
    if not cls.id or cls.id in RULES:
        raise ValueError(f"rule id {cls.id!r} missing or registered twice")
    RULES[cls.id] = cls
    return cls
