"""Dataset heads in, small summaries out.

A dataset is decoded from its first ``max_head`` bytes in the transfer syntax its
presentation context accepted, stopping before Pixel Data (group 7FE0). Deflated
Explicit VR Little Endian is inflated with an output cap, so a deflate bomb costs at
most that cap and is reported. Text is decoded with the dataset's Specific Character
Set (ISO 2022 escapes included) by pydicom. Nothing here returns a ``Dataset``: the
elements are walked as encoded (``elements.py``) and only the values a caller keeps
are converted.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from analyzer.dicom.elements import Element, walk

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
BOMB_RATIO = 100
"""Dataset heads compress about 5:1; past this ratio at the output cap it is a bomb."""


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


def summarize(
    head: bytes,
    transfer_syntax: str | None,
    *,
    complete: bool,
    max_head: int,
    max_elements: int = 2000,
    keep: frozenset[int] | None = None,
) -> DatasetSummary:
    """Decode the head of a dataset; ``complete`` says whether ``head`` is the whole of it.
    Values are converted for the tags in ``keep`` and every UI (``None``: every value)."""
    implicit, little, deflated = syntax_flags(transfer_syntax)
    anomalies: list[tuple[str, str]] = []
    data = head
    if deflated:
        data, capped, anomalies = inflate(head, max_head)
        complete = complete and not capped
    w = walk(data, implicit=implicit, little=little, keep=keep, max_elements=max_elements)
    anomalies.extend(w.anomalies)
    elements = w.elements
    partial = not w.stopped and (not complete or bool(anomalies))
    if partial and not complete and not anomalies:
        anomalies.append(
            ("dicom_dataset_truncated", f"decoded {len(elements)} elements from {len(data)} bytes")
        )
    sop_class = sop_instance = None
    for e in elements:
        if e.depth == 0:
            if e.tag == 0x00080016:
                sop_class = e.value
            elif e.tag == 0x00080018:
                sop_instance = e.value
    return DatasetSummary(
        transfer_syntax_uid=transfer_syntax,
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        elements=elements,
        partial=partial,
        anomalies=tuple(anomalies),
    )


__all__ = ["DatasetSummary", "Element", "inflate", "summarize", "syntax_flags"]
