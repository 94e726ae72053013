"""Internet checksums (RFC 1071) of IPv4 headers and TCP segments, and the verdict policy.

The ones' complement sum of 16-bit words is the big-endian integer of the bytes modulo
0xFFFF (2**16 is 1 modulo 0xFFFF): one C-level conversion and one remainder, no loop in
Python. A header or segment whose checksum is right sums to 0 modulo 0xFFFF. For a whole
segment the integer is first folded (its high and low halves at a multiple of 16 bits
added: the same sum modulo 0xFFFF), which costs less than the remainder of the long one.

Checksum offload: a host that hands checksums to its NIC captures its own outgoing segments
before the NIC fills them in. Linux leaves the folded sum of the pseudo header there (the
"partial" checksum). A span port never sees one: the NIC finished it before the wire.
"""

from __future__ import annotations

import enum

IPPROTO_TCP = 6
FOLDS = tuple((bits, (1 << bits) - 1) for bits in (5920, 2960, 1488))
"""Fold points (multiples of 16 bits) that bring a full-sized segment's integer (1,480
bytes: 11,840 bits) down to about 1,500 bits before the remainder; any size stays exact."""


class Checksums(enum.StrEnum):
    AUTO = "auto"
    """Verify; a partial (offloaded) checksum is accepted in a flow direction that has not
    carried a correct one before (a capture taken on the sending host)."""
    VERIFY = "verify"
    """Verify; only a correct checksum is accepted (a sensor on a span port)."""
    IGNORE = "ignore"
    """Verify nothing (Zeek's -C)."""


class Verdict(enum.IntEnum):
    GOOD = 0
    """Correct."""
    PARTIAL = 1
    """The offload pattern: the pseudo-header sum in place of the checksum."""
    BAD_TCP = 2
    BAD_IP = 3
    UNPROVEN = 4
    """Accepted without telling whether the sender offloads: not verifiable (cut by the
    snaplen), or correct in a datagram reassembled from fragments (a kernel computes those in
    software even when it offloads the rest)."""


def ip_header_ok(buf: bytes, o: int, ihl: int) -> bool:
    return int.from_bytes(buf[o : o + ihl], "big") % 0xFFFF == 0


def tcp_verdict(buf: bytes, t: int, end: int, src: bytes, dst: bytes) -> Verdict:
    """The TCP segment ``buf[t:end]`` (header and payload) from ``src`` to ``dst`` (4 or 16
    bytes each): the pseudo header is addresses, protocol and TCP length (RFC 793, RFC 8200
    8.1; the word order does not change a ones' complement sum)."""
    length = end - t
    pseudo = (int.from_bytes(src + dst, "big") + IPPROTO_TCP + length) % 0xFFFF
    segment = int.from_bytes(buf[t:end], "big")
    if length & 1:
        segment <<= 8  # the odd last byte is the high half of a zero-padded word
    for bits, mask in FOLDS:
        segment = (segment >> bits) + (segment & mask)
    if (pseudo + segment) % 0xFFFF == 0:
        return Verdict.GOOD
    field = (buf[t + 16] << 8) | buf[t + 17]
    if field % 0xFFFF == pseudo:
        return Verdict.PARTIAL
    return Verdict.BAD_TCP
