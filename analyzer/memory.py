"""The memory budget: what traffic can make the analyzer hold, estimated where it is held.

Sizes are measured with ``tracemalloc`` on this code (``benchmarks/flow_sizes.py``
repeats the measurement) and rounded up. The budget (``[limits] memory_budget``) covers the
whole process: a fixed part is set aside for the interpreter and libraries and for the
structures whose own caps bound them (inventory, vocabulary, rule windows, finding keys,
undecided flows, IP fragments); the rest is for open flows, whose every byte of state is
estimated (``Flow.footprint``). Past it, flows are shed: see ``FlowTable.shed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from analyzer.dicom.sizes import CONTEXT, DICOM_FLOW, PENDING_MESSAGE

if TYPE_CHECKING:
    from analyzer.config import Limits

TCP_FLOW = 2_600
"""A flow with its two streams, table entries and service sniffer (measured 2,503)."""
QUERY = 400
"""One query or retrieve remembered with its patients (besides them)."""
SMALL_ENTRY = 120
"""A dict or set entry with a short string or tuple: requests awaiting an answer, patients."""
BUFFERED_PIECE = 96
"""One buffered segment or delivery besides its bytes."""

BASELINE = 112 << 20
"""The interpreter with pydicom, polars and the rest loaded, the writers' row chunks."""
ENDPOINT = 700
VOCABULARY_VALUE = 200
WINDOW_KEY = 400
DEDUP_KEY = 250
WINDOWED_RULES = 8
"""Cross-flow rules with sliding windows, each capped at ``max_window_keys`` keys."""
MIN_FLOWS = 4 << 20

__all__ = ["CONTEXT", "DICOM_FLOW", "PENDING_MESSAGE", "Budget", "budget_of"]


@dataclass(frozen=True, slots=True)
class Budget:
    total: int
    reserved: int
    """Baseline plus what the capped global structures can reach."""

    @property
    def flows(self) -> int:
        """Bytes open flows may hold together."""
        return max(self.total - self.reserved, MIN_FLOWS)


def budget_of(limits: Limits, max_vocabulary: int = 1 << 16) -> Budget:
    reserved = (
        BASELINE
        + limits.max_endpoints * ENDPOINT
        + max_vocabulary * VOCABULARY_VALUE
        + limits.max_window_keys * WINDOW_KEY * WINDOWED_RULES
        + limits.max_dedup_keys * DEDUP_KEY
        + limits.max_sniff_total
        + limits.max_fragment_bytes
    )
    return Budget(limits.memory_budget, reserved)
