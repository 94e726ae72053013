"""The seam between the DICOM flow driver and what consumes its events.

The driver (``dicom_flow.DicomFlow``) feeds the parser, keeps the association's outcome and
hands every event, in order, to each observer of an ordered list wired once by the pipeline:
the DICOM tables, the PHI table, the inventory, the per-flow rules, the summary records of
the cross-flow stage. An observer overrides the hooks it needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.dicom.messages import Anomaly, Message
from analyzer.logs.views import AssocView
from analyzer.privacy import PhiSummary


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """What the driver worked out once for a message, shared by every observer."""

    command: str
    """The command's PS3.7 name, or ``unknown``."""
    request_ts: float | None
    """For a response: the ts of its request, when the request was seen."""
    phi: PhiSummary | None
    """The dataset's PHI content (None: no dataset)."""


class DicomObserver:
    """Hooks called by the DICOM flow driver; the defaults do nothing."""

    def message(self, a: AssocView, m: Message, info: MessageInfo) -> None:
        """A DIMSE message (its dataset summary included)."""

    def anomaly(self, a: AssocView, an: Anomaly) -> None:
        """A protocol anomaly inside the association."""

    def accepted(self, a: AssocView) -> None:
        """The A-ASSOCIATE-AC crossed: the presentation contexts are settled."""

    def ended(self, a: AssocView, reason: str) -> None:
        """The association is over; ``reason`` is how its TCP flow ended."""
