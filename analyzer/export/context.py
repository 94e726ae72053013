"""What the parts of an export share: the selection, the totals (counted from the manifest
when the run ends), and the run's context as the object writers see it (a Protocol, so the
writers need not import the ``Exporter``)."""

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


class _Weird(Protocol):
    def weird(self, ts: float, name: str, detail: str) -> None: ...


def report(
    ctx: ExportContext,
    flow_uid: str,
    weird: _Weird,
    written: tuple[Path | None, int, str | None],
    *,
    ts: float,
    message_id: int | None,
    direction: int,
    sop_class_uid: str | None,
    sop_instance_uid: str | None,
    transfer_syntax: str | None,
    source_ae: str | None,
    patient_key: str | None,
    dataset_bytes: int,
    reason: str | None,
    missing: list[str],
    what: str,
) -> None:
    """One object's manifest row and, when it is damaged or not written, its weird row
    (``what`` names it there)."""
    path, size, sha = written
    if reason is not None:
        weird.weird(
            ts,
            "export_object_partial" if path is not None else "export_object_skipped",
            f"{what}: {reason}" + (f", missing {', '.join(missing[:8])}" if missing else ""),
        )
    ctx.manifest.add(
        Exported(
            uid=flow_uid,
            ts=ts,
            message_id=message_id,
            direction="orig" if direction == 0 else "resp",
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
            transfer_syntax=transfer_syntax,
            source_ae=source_ae,
            patient_key=patient_key,
            path=str(path.relative_to(ctx.directory.parent)) if path is not None else None,
            file_bytes=size,
            dataset_bytes=dataset_bytes,
            sha256=sha,
            complete=reason is None,
            reason=reason,
            missing=missing,
            deidentified=ctx.deidentify is not None,
        )
    )
