"""The oracle of the differential dataset test: the decoder as it was before the element walk
(pydicom's ``read_dataset`` builds a ``Dataset``, every element converted, then walked).

Kept as it ran in production so that ``tests/dicom/test_elements.py`` can compare the walk with
pydicom's full decode on every dataset. Originally:

The only place that touches pydicom's reader: dataset heads in, small summaries out.

A dataset is decoded from its first ``max_head`` bytes in the transfer syntax its
presentation context accepted, stopping before Pixel Data (group 7FE0). Deflated
Explicit VR Little Endian is inflated with an output cap, so a deflate bomb costs at
most that cap and is reported. Text is decoded with the dataset's Specific Character
Set (ISO 2022 escapes included) by pydicom. Nothing here returns a ``Dataset``.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
BULK_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN", "SQ"})
MAX_VALUE_CHARS = 256
BOMB_RATIO = 100
"""Dataset heads compress about 5:1; past this ratio at the output cap it is a bomb."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Element:
    """One decoded element. ``depth`` 0 is top level; deeper ones sit in sequences."""

    tag: int
    keyword: str
    vr: str
    value: str | None
    """Text of the value (bulk VRs: None); cut to 256 characters."""
    length: int
    depth: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetSummary:
    transfer_syntax_uid: str | None
    sop_class_uid: str | None
    sop_instance_uid: str | None
    elements: tuple[Element, ...]
    partial: bool
    anomalies: tuple[tuple[str, str], ...]

    def get(self, keyword: str) -> str | None:
        for e in self.elements:
            if e.depth == 0 and e.keyword == keyword:
                return e.value
        return None


def syntax_flags(transfer_syntax: str | None) -> tuple[bool, bool, bool]:
    """(implicit VR, little endian, deflated). Unknown and encapsulated syntaxes are explicit LE."""
    if transfer_syntax == IMPLICIT_LE:
        return True, True, False
    if transfer_syntax == EXPLICIT_BE:
        return False, False, False
    return False, True, transfer_syntax == DEFLATED_LE


def inflate(head: bytes, max_out: int) -> tuple[bytes, bool, list[tuple[str, str]]]:
    """Raw-deflate ``head`` up to ``max_out`` bytes: (data, capped, anomalies)."""
    out: list[tuple[str, str]] = []
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        data = d.decompress(head, max_out)
    except zlib.error as exc:
        return b"", False, [("dicom_deflate_error", str(exc))]
    capped = len(data) >= max_out and not d.eof
    used = len(head) - len(d.unconsumed_tail)
    if capped and len(data) > BOMB_RATIO * max(used, 1):
        out.append(
            (
                "dicom_deflate_bomb",
                f"{used} compressed bytes inflate past {max_out} bytes; stopped there",
            )
        )
    return data, capped, out


def _text(elem: DataElement) -> str | None:
    if elem.VR in BULK_VRS:
        return None
    value: Any = elem.value
    if value is None or value == "":
        return ""
    if isinstance(value, bytes):
        return None
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        s = "\\".join(str(v) for v in value)
    else:
        s = str(value)
    return s[:MAX_VALUE_CHARS]


def _walk(ds: Dataset, depth: int, out: list[Element], limit: int) -> None:
    for tag in list(ds.keys()):
        if len(out) >= limit:
            return
        raw = ds.get_item(tag)
        length = getattr(raw, "length", None)
        elem = ds[tag]
        if not isinstance(length, int) or length == 0xFFFFFFFF:
            length = len(elem.value) if isinstance(elem.value, bytes | str) else 0
        out.append(
            Element(
                tag=int(elem.tag),
                keyword=elem.keyword or "",
                vr=str(elem.VR),
                value=_text(elem),
                length=length,
                depth=depth,
            )
        )
        if elem.VR == "SQ" and depth < 8:
            for item in elem.value or ():
                _walk(item, depth + 1, out, limit)


def summarize(
    head: bytes,
    transfer_syntax: str | None,
    *,
    complete: bool,
    max_head: int,
    max_elements: int = 2000,
) -> DatasetSummary:
    """Decode the head of a dataset; ``complete`` says whether ``head`` is the whole of it."""
    implicit, little, deflated = syntax_flags(transfer_syntax)
    anomalies: list[tuple[str, str]] = []
    data = head
    if deflated:
        data, capped, anomalies = inflate(head, max_head)
        complete = complete and not capped
    stopped = False

    def stop(tag: BaseTag, vr: str | None, length: int) -> bool:
        nonlocal stopped
        if tag.group == 0x7FE0:
            stopped = True
        return stopped

    elements: list[Element] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = read_dataset(BytesIO(data), implicit, little, stop_when=stop)
            _walk(ds, 0, elements, max_elements)
    except Exception as exc:  # pydicom raises many types on hostile input
        anomalies.append(("dicom_dataset_undecodable", f"{type(exc).__name__}: {str(exc)[:200]}"))
    partial = not stopped and (not complete or bool(anomalies))
    if partial and not complete and not anomalies:
        anomalies.append(
            ("dicom_dataset_truncated", f"decoded {len(elements)} elements from {len(data)} bytes")
        )
    by_kw = {e.keyword: e.value for e in elements if e.depth == 0}
    return DatasetSummary(
        transfer_syntax_uid=transfer_syntax,
        sop_class_uid=by_kw.get("SOPClassUID"),
        sop_instance_uid=by_kw.get("SOPInstanceUID"),
        elements=tuple(elements),
        partial=partial,
        anomalies=tuple(anomalies),
    )
