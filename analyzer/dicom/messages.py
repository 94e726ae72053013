"""What the association parser reports: one frozen event per thing that crossed the wire."""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.dicom.dataset import DatasetSummary
from analyzer.dicom.dimse import Command
from analyzer.dicom.items import Abort, Associate, Reject


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociateRequested:
    ts: float
    associate: Associate


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociateAccepted:
    ts: float
    associate: Associate


@dataclass(frozen=True, slots=True, kw_only=True)
class AssociateRejected:
    ts: float
    reject: Reject


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseRequested:
    ts: float
    direction: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseReplied:
    ts: float
    direction: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Aborted:
    ts: float
    direction: int
    abort: Abort


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One DIMSE message: its command set and, if one followed, its dataset."""

    ts: float
    direction: int
    context_id: int
    command: Command
    dataset: DatasetSummary | None
    dataset_bytes: int
    truncated: bool
    """Bytes of the command or dataset were lost (gap) or cut (end of stream)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Anomaly:
    ts: float
    direction: int
    name: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PickedUpMidstream:
    ts: float
    direction: int


DicomEvent = (
    AssociateRequested
    | AssociateAccepted
    | AssociateRejected
    | ReleaseRequested
    | ReleaseReplied
    | Aborted
    | Message
    | Anomaly
    | PickedUpMidstream
)
