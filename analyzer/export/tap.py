"""The export command's dataset tap: every C-STORE dataset of a flow to a Part 10 file.

C-STOREs are what carries objects in DIMSE, whichever way they go: a modality's store, the
sub-operations of a C-MOVE (on the association the mover opens) and of a C-GET (from the
acceptor, on the same association). Each object is written as its PDVs arrive, named
``<SOP instance UID>.<flow uid>.<o|r><message id>.dcm`` (``.partial.dcm`` when bytes are
missing), and gets a row in the ``exported`` manifest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from analyzer.config import Config
from analyzer.dicom.association import infer_syntax
from analyzer.dicom.consts import CommandField
from analyzer.dicom.dimse import Command
from analyzer.dicom.messages import Message
from analyzer.export.context import ExportFilter, report
from analyzer.export.deidentify import DatasetStream, Deidentify, DeidentifyError
from analyzer.export.objects import ObjectFile, safe_stem
from analyzer.export.part10 import file_meta
from analyzer.export.web import WebSinks, web_sinks
from analyzer.logs.records import EXPORT_TABLES, Exported
from analyzer.logs.sinks import RowSink
from analyzer.logs.views import AssocView
from analyzer.output.writer import TableWriter
from analyzer.privacy import Hasher, PhiPolicy
from analyzer.tcp.flow import Flow

PARTIAL = ".partial.dcm"
COMPLETE = ".dcm"


class Exporter:
    """The run's export: where files go, what is selected, the manifest."""

    def __init__(
        self,
        directory: Path,
        manifest: RowSink[Exported],
        phi: PhiPolicy,
        select: ExportFilter,
        deidentify: Deidentify | None = None,
    ) -> None:
        self.directory = directory
        self.manifest = manifest
        self.phi = phi
        self.select = select
        self.deidentify = deidentify

    def tap(self, flow: Flow, view: AssocView) -> FlowTap | None:
        if self.select.uids and flow.uid not in self.select.uids:
            return None
        return FlowTap(self, flow, view)

    def http(self, flow: Flow) -> WebSinks | None:
        """The Part 10 objects of an HTTP flow's bodies (``export/web.py``)."""
        if self.select.uids and flow.uid not in self.select.uids:
            return None
        return web_sinks(self, flow)


@dataclass(slots=True)
class _Object:
    ts: float
    command: Command
    syntax: str | None
    source_ae: str | None
    file: ObjectFile | None
    stream: DatasetStream | None
    missing: list[str]
    dataset_bytes: int = 0
    failed: str | None = None


class FlowTap:
    """A ``DatasetTap`` (``analyzer/dicom/tap.py``) for one flow."""

    __slots__ = ("exporter", "flow", "view", "objects")

    def __init__(self, exporter: Exporter, flow: Flow, view: AssocView) -> None:
        self.exporter = exporter
        self.flow = flow
        self.view = view
        self.objects: dict[tuple[int, int], _Object] = {}

    def begin(self, direction: int, context_id: int, command: Command, ts: float) -> None:
        if command.command_field != CommandField.C_STORE_RQ:
            return
        sel = self.exporter.select
        if sel.sop_instances and command.affected_sop_instance_uid not in sel.sop_instances:
            return
        if sel.sop_classes and command.affected_sop_class_uid not in sel.sop_classes:
            return
        syntax = next(
            (c.transfer_syntax for c in self.view.contexts() if c.context_id == context_id), None
        )
        ae = self.view.calling_ae if direction == 0 else self.view.called_ae
        obj = _Object(ts, command, syntax, ae, None, None, [])
        deid = self.exporter.deidentify
        if deid is not None:
            if syntax is None:
                obj.failed = "transfer syntax unknown: cannot de-identify"
            else:
                obj.stream = DatasetStream(deid, syntax)
        if obj.failed is None:
            obj.file = ObjectFile(
                self.exporter.directory, self._stem(direction, obj), self._head(obj)
            )
        self.objects[(direction, context_id)] = obj

    def _stem(self, direction: int, obj: _Object) -> str:
        instance = obj.command.affected_sop_instance_uid
        deid = self.exporter.deidentify
        if deid is not None and instance:
            instance = deid.uid(instance)
        msg = obj.command.message_id
        return f"{safe_stem(instance)}.{self.flow.uid}.{'or'[direction]}{msg if msg is not None else 'x'}"

    def _head(self, obj: _Object) -> Callable[[bytes], bytes]:
        def head(first: bytes) -> bytes:
            if obj.syntax is None:
                obj.syntax = infer_syntax(first)
            c, deid = obj.command, self.exporter.deidentify
            instance = c.affected_sop_instance_uid or ""
            if deid is not None and instance:
                instance = deid.uid(instance)
            return file_meta(
                sop_class_uid=c.affected_sop_class_uid or "",
                sop_instance_uid=instance,
                transfer_syntax=obj.syntax,
                source_ae=obj.source_ae if deid is None else None,  # an E.1-1 attribute
            )

        return head

    def data(self, direction: int, context_id: int, data: bytes) -> None:
        obj = self.objects.get((direction, context_id))
        if obj is None:
            return
        obj.dataset_bytes += len(data)
        if obj.file is None:
            return
        if obj.stream is not None:
            try:
                data = obj.stream.feed(data)
            except DeidentifyError as exc:
                self._fail(obj, str(exc))
                return
        obj.file.write(data)

    def lost(self, direction: int, context_id: int, length: int, ts: float) -> None:
        obj = self.objects.get((direction, context_id))
        if obj is None:
            return
        obj.missing.append(f"{obj.dataset_bytes}+{length}")
        if obj.stream is not None:  # a gap inside a head cannot be de-identified safely
            self._fail(obj, "bytes lost: cannot de-identify a damaged dataset")

    def _fail(self, obj: _Object, why: str) -> None:
        obj.failed = why
        if obj.file is not None:
            obj.file.discard()
            obj.file = None
        obj.stream = None

    def end(self, direction: int, context_id: int, message: Message | None) -> None:
        obj = self.objects.pop((direction, context_id), None)
        if obj is None:
            return
        ex = self.exporter
        reason = obj.failed
        if message is None:
            reason = reason or "dropped unfinished: too many messages pending"
        elif obj.missing:
            reason = reason or f"{len(obj.missing)} gap(s) in the stream"
        elif message.truncated:
            obj.missing.append(f"{obj.dataset_bytes}+?")
            reason = reason or "the stream ended before the dataset's last fragment"
        complete = reason is None
        key = None
        if message is not None and message.dataset is not None:
            key = ex.phi.patient_key(message.dataset)
        if ex.select.patient_keys and key not in ex.select.patient_keys:
            if obj.file is not None:
                obj.file.discard()
            return
        path: Path | None = None
        size, sha = 0, None
        if obj.file is not None and (complete or not ex.select.complete_only):
            if obj.stream is not None:
                try:
                    obj.file.write(obj.stream.finish())
                except DeidentifyError as exc:
                    self._fail(obj, str(exc))
                    reason, complete = str(exc), False
            if obj.file is not None:
                path, size, sha = obj.file.close(COMPLETE if complete else PARTIAL)
        elif obj.file is not None:
            obj.file.discard()
        c = obj.command
        report(
            ex,
            self.flow.uid,
            self.flow,
            (path, size, sha),
            ts=obj.ts,
            message_id=c.message_id,
            direction=direction,
            sop_class_uid=c.affected_sop_class_uid,
            sop_instance_uid=c.affected_sop_instance_uid,
            transfer_syntax=obj.syntax,
            source_ae=obj.source_ae,
            patient_key=key,
            dataset_bytes=obj.dataset_bytes,
            reason=reason,
            missing=obj.missing,
            what=c.affected_sop_instance_uid or "unknown instance",
        )


@dataclass(frozen=True, slots=True)
class ExportJob:
    """What to export and where (picklable: it travels to ``--workers`` processes)."""

    directory: Path
    select: ExportFilter
    deidentify: bool


def export_taps(config: Config, job: ExportJob, tables: Path, fmt: str) -> ExportHooks:
    """The dataset taps and HTTP object sinks of one process, and its manifest writer (into
    ``tables``)."""
    manifest = TableWriter("exported", EXPORT_TABLES["exported"], tables, fmt)
    hasher = Hasher(config.salt)  # the run's salt: patient keys as in the phi table
    phi = PhiPolicy(hasher, False, config.capture_phi)
    exporter = Exporter(
        job.directory, manifest, phi, job.select, Deidentify(hasher) if job.deidentify else None
    )
    return ExportHooks(exporter.tap, exporter.http, {"exported": manifest})


@dataclass(frozen=True, slots=True)
class ExportHooks:
    taps: Callable[[Flow, AssocView], FlowTap | None]
    http: Callable[[Flow], WebSinks | None]
    writers: dict[str, TableWriter]
