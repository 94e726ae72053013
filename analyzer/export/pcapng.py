"""A pcapng writer (draft-ietf-opsawg-pcapng): what ``carve`` needs and no more.

Every block: type(4) total length(4) body, padded to 32 bits, total length(4) again.

    Section Header Block (0x0A0D0D0A): byte-order magic 0x1A2B3C4D, version 1.0, section
    length -1 (unknown).
    Interface Description Block (1): link type(2) reserved(2) snaplen(4), options:
    if_tsresol (9) = 9: timestamps in nanoseconds. One per link type met.
    Enhanced Packet Block (6): interface id(4) timestamp high(4) low(4) captured length(4)
    original length(4) packet data, options: opt_comment (1), UTF-8.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import IO

SHB = 0x0A0D0D0A
IDB = 1
EPB = 6
OPT_END = 0
OPT_COMMENT = 1
IF_TSRESOL = 9


def _option(code: int, value: bytes) -> bytes:
    pad = -len(value) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


def _block(kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    total = len(body) + 12
    return struct.pack("<II", kind, total) + body + struct.pack("<I", total)


class PcapngWriter:
    """Frames with their link type; one interface per link type. The file is created 0600."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.out: IO[bytes] = os.fdopen(fd, "wb")
        self.interfaces: dict[int, int] = {}
        self.frames = 0
        self.out.write(_block(SHB, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))

    def frame(
        self, ts: float, linktype: int, data: bytes, wire_len: int, comment: str | None = None
    ) -> None:
        iface = self.interfaces.get(linktype)
        if iface is None:
            iface = self.interfaces[linktype] = len(self.interfaces)
            options = _option(IF_TSRESOL, b"\x09") + _option(OPT_END, b"")
            self.out.write(_block(IDB, struct.pack("<HHI", linktype, 0, 0) + options))
        ns = round(ts * 1e9)
        body = struct.pack("<IIIII", iface, ns >> 32, ns & 0xFFFFFFFF, len(data), wire_len)
        body += data + b"\0" * (-len(data) % 4)
        if comment:
            body += _option(OPT_COMMENT, comment.encode("utf-8")) + _option(OPT_END, b"")
        self.out.write(_block(EPB, body))
        self.frames += 1

    def close(self) -> None:
        self.out.close()
