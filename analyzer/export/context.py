"""What the parts of an export share: the selection, the totals, and the run's context as
the object writers see it (a Protocol, so the writers need not import the ``Exporter``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from analyzer.export.deidentify import Deidentify
from analyzer.logs.records import Exported
from analyzer.logs.sinks import RowSink
from analyzer.privacy import PhiPolicy


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportFilter:
    """Which objects to write; an empty set selects all."""

    uids: frozenset[str] = frozenset()
    sop_instances: frozenset[str] = frozenset()
    sop_classes: frozenset[str] = frozenset()
    patient_keys: frozenset[str] = frozenset()
    complete_only: bool = False


@dataclass(slots=True)
class Totals:
    written: int = 0
    partial: int = 0
    skipped: int = 0
    bytes: int = 0


class ExportContext(Protocol):
    directory: Path
    manifest: RowSink[Exported]
    phi: PhiPolicy
    select: ExportFilter
    deidentify: Deidentify | None
    totals: Totals
