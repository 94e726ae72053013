"""What an HTTP body carries, read as it streams past, keeping only what the decoders need.

    Content-Encoding gzip / deflate   inflated with an output cap (a bomb is an anomaly)
    multipart/related                 split into parts at the boundary (RFC 2046 5.1.1)
    application/dicom                 a Part 10 file: preamble, ``DICM``, file meta (group
                                      0002, explicit VR little endian), dataset head decoded
                                      by the same selective decoder as DIMSE datasets
    application/dicom+json            PS3.18 F.2: an array of datasets, tags as keys
    application/dicom+xml             PS3.19 A.1: NativeDicomModel documents

Every other body is counted, never kept. Memory per body: the dataset head (``max_head``),
or ``MAX_DOCUMENT`` for a JSON or XML document, plus one multipart delimiter's worth.
"""

from __future__ import annotations

import json
import struct
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pydicom.datadict import keyword_for_tag

from analyzer.dicom.dataset import DatasetSummary, summarize
from analyzer.dicom.elements import Element

MAX_INFLATE = 64 << 20
BOMB_RATIO = 100
MAX_DOCUMENT = 8 << 20
MAX_PARTS = 10_000
MAX_PART_HEADERS = 8 << 10
MAX_DATASETS = 1000
"""Datasets of one body decoded (a QIDO answer can hold thousands: they are counted)."""
PE, ELF = b"MZ", b"\x7fELF"


def media_type(value: str | None) -> tuple[str, dict[str, str]]:
    """``multipart/related; type="application/dicom"; boundary=x`` -> (type, params)."""
    if not value:
        return "", {}
    head, *rest = value.split(";")
    params = {}
    for p in rest:
        k, _, v = p.strip().partition("=")
        params[k.strip().lower()] = v.strip().strip('"')
    return head.strip().lower(), params


@dataclass(slots=True)
class Part10:
    """One Part 10 object seen in a body."""

    preamble: str
    """``zeros``, ``pe`` (MZ), ``elf``, ``other`` or ``none`` (no preamble and no DICM)."""
    transfer_syntax: str | None
    sop_class_uid: str | None
    sop_instance_uid: str | None
    bytes: int
    dataset: DatasetSummary | None


@dataclass(slots=True)
class BodyFacts:
    wire_bytes: int = 0
    decoded_bytes: int = 0
    objects: list[Part10] = field(default_factory=list)
    datasets: list[DatasetSummary] = field(default_factory=list)
    """Datasets from JSON/XML documents and Part 10 objects (what PHI is read from)."""
    results: int | None = None
    """Datasets in a dicom+json/xml answer (QIDO: the number of matches)."""
    parts: int = 0
    anomalies: list[tuple[str, str]] = field(default_factory=list)


class ObjectSink(Protocol):
    """Takes a Part 10 object's bytes as they arrive (the ``export`` command)."""

    def data(self, data: bytes) -> None: ...

    def end(self, obj: Part10, complete: bool) -> None: ...


SinkFactory = Callable[[], ObjectSink | None]


def file_meta_elements(b: bytes, pos: int = 0) -> tuple[dict[int, str], int]:
    """The group 0002 elements (explicit VR little endian) from ``pos`` as text, by element
    number, and where the group ends."""
    out = {}
    while pos + 8 <= len(b):
        group, elem = struct.unpack_from("<HH", b, pos)
        if group != 2:
            break
        vr = b[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR"):
            length, vpos = struct.unpack_from("<I", b, pos + 8)[0], pos + 12
        else:
            length, vpos = struct.unpack_from("<H", b, pos + 6)[0], pos + 8
        out[elem] = b[vpos : vpos + length].rstrip(b"\0 ").decode("ascii", "replace")
        pos = vpos + length
    return out, pos


class _Part10Reader:
    def __init__(self, max_head: int, sink: ObjectSink | None = None) -> None:
        self.max_head = max_head
        self.head = bytearray()
        self.size = 0
        self.sink = sink

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        if self.sink is not None:
            self.sink.data(data)
        room = self.max_head + 4096 - len(self.head)
        if room > 0:
            self.head += data[:room]

    def finish(self, complete: bool) -> Part10:
        obj = self._decode(complete)
        if self.sink is not None:
            self.sink.end(obj, complete)
        return obj

    def _decode(self, complete: bool) -> Part10:
        b = bytes(self.head)
        if b[128:132] == b"DICM":
            pre, start = b[:128], 132
            kind = (
                "zeros"
                if not pre.strip(b"\0")
                else "pe"
                if pre.startswith(PE)
                else "elf"
                if pre.startswith(ELF)
                else "other"
            )
        elif b[:4] == b"DICM":
            kind, start = "none", 4
        else:
            return Part10("none", None, None, None, self.size, None)
        meta, pos = file_meta_elements(b, start)
        syntax = meta.get(0x0010)
        head = b[pos : pos + self.max_head]
        ds = summarize(
            head,
            syntax,
            complete=complete and self.size <= len(self.head),
            max_head=self.max_head,
        )
        return Part10(kind, syntax, ds.sop_class_uid, ds.sop_instance_uid, self.size, ds)


class _Multipart:
    """Splits a multipart body; hands each part's bytes to a reader made for its type."""

    def __init__(
        self, boundary: str, facts: BodyFacts, max_head: int, sinks: SinkFactory | None
    ) -> None:
        self.sinks = sinks
        self.delim = b"\r\n--" + boundary.encode("latin-1")
        self.buf = bytearray(b"\r\n")  # the first delimiter has no CRLF before it
        self.facts = facts
        self.max_head = max_head
        self.state = "preamble"
        self.part: _Part10Reader | _Document | None = None
        self.headers = bytearray()
        self.done = False

    def feed(self, data: bytes) -> None:
        self.buf += data
        while self.buf and not self.done:
            if self.state == "headers":
                if self.buf.startswith(b"\r\n"):  # a part without headers
                    self._start(b"")
                    del self.buf[:2]
                    self.state = "body"
                    continue
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > MAX_PART_HEADERS:
                        self.facts.anomalies.append(
                            ("http_multipart_headers_too_long", f"{len(self.buf)} bytes")
                        )
                        self.done = True
                    return
                self._start(bytes(self.buf[:end]))
                del self.buf[: end + 4]
                self.state = "body"
                continue
            i = self.buf.find(self.delim)
            if i < 0:
                keep = len(self.delim) + 2
                if len(self.buf) > keep:
                    self._body(bytes(self.buf[:-keep]))
                    del self.buf[:-keep]
                return
            self._body(bytes(self.buf[:i]))
            self._end_part(True)
            after = self.buf[i + len(self.delim) : i + len(self.delim) + 2]
            if len(after) < 2:
                del self.buf[:i]
                return
            if after == b"--":
                self.done = True
                self.buf.clear()
                return
            del self.buf[: i + len(self.delim)]
            nl = self.buf.find(b"\r\n")
            if nl < 0:
                return
            del self.buf[: nl + 2]
            self.state = "headers"

    def _start(self, raw: bytes) -> None:
        self.facts.parts += 1
        if self.facts.parts > MAX_PARTS:
            self.done = True
            self.facts.anomalies.append(("http_multipart_too_many_parts", f"over {MAX_PARTS}"))
            return
        ctype = ""
        for line in raw.split(b"\r\n"):
            k, _, v = line.decode("latin-1").partition(":")
            if k.strip().lower() == "content-type":
                ctype = media_type(v)[0]
        self.part = _reader(ctype, self.max_head, self.sinks)

    def _body(self, data: bytes) -> None:
        if self.state == "body" and self.part is not None and data:
            self.part.feed(data)

    def _end_part(self, complete: bool) -> None:
        if self.state == "body" and self.part is not None:
            _collect(self.part, self.facts, complete)
        self.part = None

    def finish(self) -> None:
        if not self.done:
            self._body(bytes(self.buf))
            self._end_part(False)
            self.facts.anomalies.append(
                ("http_multipart_unterminated", "the body ended before the closing boundary")
            )


class _Document:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.buf = bytearray()
        self.over = False

    def feed(self, data: bytes) -> None:
        if len(self.buf) + len(data) > MAX_DOCUMENT:
            self.over = True
            return
        self.buf += data


def _reader(
    ctype: str, max_head: int, sinks: SinkFactory | None = None
) -> _Part10Reader | _Document | None:
    if ctype == "application/dicom":
        return _Part10Reader(max_head, sinks() if sinks is not None else None)
    if ctype == "application/dicom+json":
        return _Document("json")
    if ctype == "application/dicom+xml":
        return _Document("xml")
    return None


def _collect(reader: _Part10Reader | _Document, facts: BodyFacts, complete: bool) -> None:
    if isinstance(reader, _Part10Reader):
        obj = reader.finish(complete)
        facts.objects.append(obj)
        if obj.dataset is not None and len(facts.datasets) < MAX_DATASETS:
            facts.datasets.append(obj.dataset)
        return
    if reader.over:
        facts.anomalies.append(
            ("http_document_too_large", f"{reader.kind} body over {MAX_DOCUMENT} bytes: not read")
        )
        return
    try:
        found = (
            dicom_json(bytes(reader.buf)) if reader.kind == "json" else dicom_xml(bytes(reader.buf))
        )
    except (ValueError, ET.ParseError, RecursionError) as exc:
        facts.anomalies.append((f"http_dicom_{reader.kind}_invalid", str(exc)[:120]))
        return
    facts.results = (facts.results or 0) + len(found)
    facts.datasets.extend(found[: MAX_DATASETS - len(facts.datasets)])


def _summary(elements: list[Element]) -> DatasetSummary:
    def top(tag: int) -> str | None:
        return next((e.value for e in elements if e.depth == 0 and e.tag == tag), None)

    return DatasetSummary(
        transfer_syntax_uid=None,
        sop_class_uid=top(0x00080016),
        sop_instance_uid=top(0x00080018),
        elements=tuple(elements),
        partial=False,
        anomalies=(),
    )


def _json_value(attr: dict[str, object]) -> str | None:
    values = attr.get("Value")
    if not isinstance(values, list):
        return None
    out = []
    for v in values:
        if isinstance(v, dict):
            pn = v.get("Alphabetic")
            if pn is not None:
                out.append(str(pn))
        elif v is not None:
            out.append(str(v))
    return "\\".join(out)[:256] if out else None


def _json_dataset(obj: object, depth: int, out: list[Element]) -> None:
    if not isinstance(obj, dict) or depth > 8:
        return
    for key, attr in obj.items():
        if not isinstance(attr, dict) or len(key) != 8:
            continue
        try:
            tag = int(key, 16)
        except ValueError:
            continue
        vr = str(attr.get("vr", ""))
        value = None if vr == "SQ" else _json_value(attr)
        out.append(Element(tag, keyword_for_tag(tag) or "", vr, value, len(value or ""), depth))
        if vr == "SQ" and isinstance(attr.get("Value"), list):
            for item in attr["Value"]:
                _json_dataset(item, depth + 1, out)


def dicom_json(text: bytes) -> list[DatasetSummary]:
    doc = json.loads(text) if text.strip() else []
    items = doc if isinstance(doc, list) else [doc]
    found = []
    for item in items:
        elements: list[Element] = []
        _json_dataset(item, 0, elements)
        found.append(_summary(elements))
    return found


def dicom_xml(text: bytes) -> list[DatasetSummary]:
    root = ET.fromstring(text)
    models = (
        [root] if root.tag.endswith("NativeDicomModel") else list(root.iter("NativeDicomModel"))
    )
    found = []
    for model in models:
        elements: list[Element] = []
        _xml_dataset(model, 0, elements)
        found.append(_summary(elements))
    return found


def _xml_dataset(node: ET.Element, depth: int, out: list[Element]) -> None:
    for attr in node.findall("DicomAttribute"):
        try:
            tag = int(attr.get("tag", ""), 16)
        except ValueError:
            continue
        vr = attr.get("vr", "")
        if vr == "SQ":
            out.append(Element(tag, keyword_for_tag(tag) or "", vr, None, 0, depth))
            if depth < 8:
                for item in attr.findall("Item"):
                    _xml_dataset(item, depth + 1, out)
            continue
        parts = [v.text or "" for v in attr.findall("Value")]
        for pn in attr.findall("PersonName"):
            alpha = pn.find("Alphabetic")
            if alpha is not None:
                parts.append("^".join((c.text or "") for c in alpha))
        value = "\\".join(parts)[:256] or None
        out.append(Element(tag, keyword_for_tag(tag) or "", vr, value, len(value or ""), depth))


class BodyReader:
    """One message body: ``feed`` its bytes as they arrive, ``finish`` for the facts."""

    def __init__(
        self,
        content_type: str | None,
        content_encoding: str | None,
        max_head: int,
        sinks: SinkFactory | None = None,
    ) -> None:
        """``sinks``: where each Part 10 object's bytes go as well (``export``)."""
        self.facts = BodyFacts()
        ctype, params = media_type(content_type)
        self.inflater: zlib._Decompress | None = None
        enc = (content_encoding or "").strip().lower()
        if enc in ("gzip", "x-gzip"):
            self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self.inflater = zlib.decompressobj(zlib.MAX_WBITS)
        self.capped = False
        self.multipart: _Multipart | None = None
        self.single: _Part10Reader | _Document | None = None
        if ctype.startswith("multipart/"):
            boundary = params.get("boundary")
            if boundary:
                self.multipart = _Multipart(boundary, self.facts, max_head, sinks)
            else:
                self.facts.anomalies.append(("http_multipart_no_boundary", ctype))
        else:
            self.single = _reader(ctype, max_head, sinks)

    @property
    def buffered(self) -> int:
        """Bytes held now (a Part 10 head, a JSON/XML document, a multipart tail)."""
        n = len(self.multipart.buf) if self.multipart is not None else 0
        part = self.multipart.part if self.multipart is not None else self.single
        if isinstance(part, _Part10Reader):
            n += len(part.head)
        elif isinstance(part, _Document):
            n += len(part.buf)
        return n

    @property
    def interested(self) -> bool:
        return self.multipart is not None or self.single is not None

    def feed(self, data: bytes) -> None:
        f = self.facts
        f.wire_bytes += len(data)
        if self.inflater is not None:
            if self.capped:
                return
            try:
                data = self.inflater.decompress(data, MAX_INFLATE - f.decoded_bytes)
            except zlib.error as exc:
                f.anomalies.append(("http_content_encoding_error", str(exc)[:120]))
                self.capped = True
                return
            if f.decoded_bytes + len(data) >= MAX_INFLATE and self.inflater.unconsumed_tail:
                self.capped = True
                if BOMB_RATIO * f.wire_bytes < MAX_INFLATE:
                    f.anomalies.append(
                        (
                            "http_decompression_bomb",
                            f"{f.wire_bytes} bytes inflate past {MAX_INFLATE}; stopped there",
                        )
                    )
        f.decoded_bytes += len(data)
        if self.multipart is not None:
            self.multipart.feed(data)
        elif self.single is not None:
            self.single.feed(data)

    def finish(self, complete: bool) -> BodyFacts:
        if self.multipart is not None:
            self.multipart.finish()
        elif self.single is not None:
            _collect(self.single, self.facts, complete)
        return self.facts
