"""What rules see of the run: configuration, hashing, trust, and the way out."""

from __future__ import annotations

from collections.abc import Callable

from analyzer.config import Config, TrustTest
from analyzer.findings.finding import Finding
from analyzer.privacy import Hasher
from analyzer.state.baseline import Baseline

Emit = Callable[[Finding, object | None], None]


class RuleContext:
    def __init__(
        self, config: Config, hasher: Hasher, emit: Emit, baseline: Baseline | None = None
    ) -> None:
        self.config = config
        self.baseline = baseline if baseline is not None else Baseline()
        """What the inventory knew before the record a rule is looking at (this run, and
        earlier runs with a state directory: ``analyzer/state/``)."""
        self.hasher = hasher
        self._emit = emit
        self.trusted = TrustTest(config.trusted_networks)
        """``trusted(host)``: is ``host`` inside the configured trusted networks?"""

    def emit(self, finding: Finding, dedup: object | None = None) -> None:
        """Report ``finding``; with ``dedup``, once per key per rule's dedup window."""
        self._emit(finding, dedup)

    def release(self) -> None:
        self.trusted.clear()
