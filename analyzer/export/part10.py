"""The DICOM file format's head (PS3.10 7.1): preamble, prefix and File Meta Information.

    Offset  Length  Description
    0       128     preamble (zeros for objects taken off DIMSE)
    128     4       "DICM"
    132     ...     group 0002, always Explicit VR Little Endian:

    (0002,0000) UL  File Meta Information Group Length: bytes after this element
    (0002,0001) OB  File Meta Information Version, 00 01
    (0002,0002) UI  Media Storage SOP Class UID (the C-STORE's Affected SOP Class UID)
    (0002,0003) UI  Media Storage SOP Instance UID (its Affected SOP Instance UID)
    (0002,0010) UI  Transfer Syntax UID (the presentation context's accepted syntax)
    (0002,0012) UI  Implementation Class UID (ours)
    (0002,0013) SH  Implementation Version Name (ours)
    (0002,0016) AE  Source Application Entity Title (the AE that sent the object)

The dataset follows exactly as it crossed the wire (PS3.10 7.1: a deflated transfer syntax
deflates the dataset only, as on the wire).
"""

from __future__ import annotations

import struct

from analyzer import __version__

IMPLEMENTATION_CLASS_UID = "2.25.252027836649972027379941088998135696770"
"""A UUID-derived UID (PS3.5 B.2) that names this software."""
IMPLEMENTATION_VERSION = ("DCMANALYZER_" + __version__.replace(".", ""))[:16]
PREAMBLE = bytes(128)

_SHORT = struct.Struct("<HH2sH")
_LONG = struct.Struct("<HH2sHI")


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"UN"):
        return _LONG.pack(0x0002, element, vr, 0, len(value)) + value
    return _SHORT.pack(0x0002, element, vr, len(value)) + value


def _ui(value: str) -> bytes:
    raw = value.encode("ascii", "replace")[:64]
    return raw + b"\0" if len(raw) % 2 else raw


def _text(value: str, length: int) -> bytes:
    raw = value.encode("ascii", "replace")[:length]
    return raw + b" " if len(raw) % 2 else raw


def file_meta(
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax: str,
    source_ae: str | None,
    preamble: bytes = PREAMBLE,
) -> bytes:
    """The bytes before the dataset: preamble, ``DICM`` and group 0002."""
    body = b"".join(
        (
            _element(0x0001, b"OB", b"\x00\x01"),
            _element(0x0002, b"UI", _ui(sop_class_uid)),
            _element(0x0003, b"UI", _ui(sop_instance_uid)),
            _element(0x0010, b"UI", _ui(transfer_syntax)),
            _element(0x0012, b"UI", _ui(IMPLEMENTATION_CLASS_UID)),
            _element(0x0013, b"SH", _text(IMPLEMENTATION_VERSION, 16)),
            _element(0x0016, b"AE", _text(source_ae, 16)) if source_ae else b"",
        )
    )
    length = _SHORT.pack(0x0002, 0x0000, b"UL", 4) + struct.pack("<I", len(body))
    return preamble + b"DICM" + length + body
