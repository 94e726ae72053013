"""``export`` of the Part 10 objects DICOMweb carries (STOW-RS requests, WADO-RS and WADO-URI
answers, any ``application/dicom`` body or multipart part).

They cross the wire as files already, so they are written as they came, preamble included:
a PE/DICOM polyglot stays evidence, named ``NAME.EXECUTABLE.dcm`` and made read-only (0400).
With ``--deidentify`` the preamble and file meta are replaced by ours (zero preamble,
pseudonymised SOP instance) and the dataset goes through the same streamed profile as DIMSE
objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from analyzer.export.context import ExportContext, report
from analyzer.export.deidentify import DatasetStream, DeidentifyError
from analyzer.export.objects import ObjectFile, safe_stem
from analyzer.export.part10 import file_meta
from analyzer.http.bodies import ObjectSink, Part10, file_meta_elements
from analyzer.tcp.flow import Flow

if TYPE_CHECKING:
    from analyzer.logs.http_flow import Exchange

WebSinks = Callable[["Exchange", int], ObjectSink | None]
"""An HTTP flow's object sinks: one per Part 10 object of an exchange's body (direction)."""

COMPLETE, PARTIAL, EXECUTABLE = ".dcm", ".partial.dcm", ".EXECUTABLE.dcm"
MAX_META = 64 << 10


class _Deidentified:
    """Preamble and file meta replaced, dataset streamed through the profile."""

    def __init__(self, exporter: ExportContext) -> None:
        self.exporter = exporter
        self.head = bytearray()
        self.stream: DatasetStream | None = None

    def feed(self, data: bytes) -> bytes:
        if self.stream is not None:
            return self.stream.feed(data)
        self.head += data
        if len(self.head) < 144:
            return b""
        if self.head[128:132] != b"DICM":
            raise DeidentifyError("not a Part 10 file: nothing to de-identify by")
        end = 144 + int.from_bytes(self.head[140:144], "little")
        if end > MAX_META:
            raise DeidentifyError("file meta too long")
        if len(self.head) < end:
            return b""
        meta, _ = file_meta_elements(bytes(self.head[132:end]))
        syntax = meta.get(0x0010, "")
        deid = self.exporter.deidentify
        assert deid is not None
        self.stream = DatasetStream(deid, syntax)
        out = file_meta(
            sop_class_uid=meta.get(0x0002, ""),
            sop_instance_uid=deid.uid(meta.get(0x0003, "")) if meta.get(0x0003) else "",
            transfer_syntax=syntax,
            source_ae=None,
        )
        rest = bytes(self.head[end:])
        self.head = bytearray()
        return out + self.stream.feed(rest)

    def finish(self) -> bytes:
        if self.stream is None:
            raise DeidentifyError("the object ended inside its file meta")
        return self.stream.finish()


class WebObject(ObjectSink):
    """One Part 10 object of one HTTP body."""

    def __init__(
        self, exporter: ExportContext, flow: Flow, ex: Exchange, direction: int, n: int
    ) -> None:
        self.exporter, self.flow, self.ex, self.direction = exporter, flow, ex, direction
        stem = f"web.{flow.uid}.{'or'[direction]}{ex.depth}-{n}"
        self.file: ObjectFile | None = ObjectFile(exporter.directory, stem, lambda _: b"")
        self.deid = _Deidentified(exporter) if exporter.deidentify is not None else None
        self.bytes = 0
        self.failed: str | None = None

    def data(self, data: bytes) -> None:
        self.bytes += len(data)
        if self.file is None:
            return
        if self.deid is not None:
            try:
                data = self.deid.feed(data)
            except DeidentifyError as exc:
                self._fail(str(exc))
                return
        self.file.write(data)

    def _fail(self, why: str) -> None:
        self.failed = why
        if self.file is not None:
            self.file.discard()
            self.file = None

    def end(self, obj: Part10, complete: bool) -> None:
        exporter = self.exporter
        select = exporter.select
        instance = obj.sop_instance_uid
        if (select.sop_instances and instance not in select.sop_instances) or (
            select.sop_classes and obj.sop_class_uid not in select.sop_classes
        ):
            if self.file is not None:
                self.file.discard()
            return
        key = exporter.phi.patient_key(obj.dataset) if obj.dataset is not None else None
        if select.patient_keys and key not in select.patient_keys:
            if self.file is not None:
                self.file.discard()
            return
        if self.deid is not None and self.file is not None and complete:
            try:
                self.file.write(self.deid.finish())
            except DeidentifyError as exc:
                self._fail(str(exc))
        if self.deid is not None and not complete:
            self._fail("bytes missing: cannot de-identify a damaged object")
        reason = self.failed or (None if complete else "the body ended before the object did")
        executable = obj.preamble in ("pe", "elf") and self.deid is None
        path, size, sha = None, 0, None
        if self.file is not None and (reason is None or not select.complete_only):
            deid = exporter.deidentify
            named = deid.uid(instance) if deid is not None and instance else instance
            self.file.stem = (
                f"{safe_stem(named)}.{self.flow.uid}.{'or'[self.direction]}{self.ex.depth}"
            )
            suffix = EXECUTABLE if executable else COMPLETE if reason is None else PARTIAL
            path, size, sha = self.file.close(suffix, 0o400 if executable else 0o600)
        elif self.file is not None:
            self.file.discard()
        report(
            exporter,
            self.flow.uid,
            self.flow,
            (path, size, sha),
            ts=self.ex.ts,
            message_id=self.ex.depth,
            direction=self.direction,
            sop_class_uid=obj.sop_class_uid,
            sop_instance_uid=instance,
            transfer_syntax=obj.transfer_syntax,
            source_ae=None,
            patient_key=key,
            dataset_bytes=self.bytes,
            reason=reason,
            missing=[] if complete else [f"{self.bytes}+?"],
            what=f"{instance or 'unknown instance'} ({self.ex.service or 'HTTP'})",
        )


def web_sinks(exporter: ExportContext, flow: Flow) -> Callable[[Exchange, int], ObjectSink | None]:
    """The object sinks of one HTTP flow: one per Part 10 object of each body."""
    counter = [0]

    def make(ex: Exchange, direction: int) -> ObjectSink | None:
        counter[0] += 1
        return WebObject(exporter, flow, ex, direction, counter[0])

    return make
