"""Hand-built frames for what the lab captures do not contain. Named for their scenario."""

from __future__ import annotations

import struct

MAC_HEADER = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01"


def tcp_header(
    sport: int, dport: int, seq: int, ack: int, flags: int, options: bytes = b""
) -> bytes:
    doff = (20 + len(options)) // 4
    return (
        struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 65535, 0, 0) + options
    )


def ipv4(
    payload: bytes,
    *,
    options: bytes = b"",
    ident: int = 1,
    frag: int = 0,
    total: int | None = None,
    src: bytes = b"\x0a\x00\x00\x01",
    dst: bytes = b"\x0a\x00\x00\x02",
) -> bytes:
    ihl = (20 + len(options)) // 4
    length = total if total is not None else ihl * 4 + len(payload)
    return (
        struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, length, ident, frag, 64, 6, 0, src, dst)
        + options
        + payload
    )


def ipv6(next_header: int, payload: bytes) -> bytes:
    src = bytes.fromhex("fd000000000000000000000000000001")
    dst = bytes.fromhex("fd000000000000000000000000000002")
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), next_header, 64, src, dst) + payload


def ethernet(ip: bytes, ethertype: int = 0x0800) -> bytes:
    return MAC_HEADER + struct.pack("!H", ethertype) + ip


# TCP SYN to port 104 in IPv4 with a router-alert option (ihl 6)
IPV4_OPTIONS_SYN = ethernet(
    ipv4(tcp_header(40000, 104, 1000, 0, 0x02), options=b"\x94\x04\x00\x00")
)

# IPv6: hop-by-hop (PadN) -> destination options (PadN) -> TCP SYN to port 104
_HBH = bytes([60, 0, 1, 4, 0, 0, 0, 0])
_DST = bytes([6, 0, 1, 4, 0, 0, 0, 0])
IPV6_EXT_CHAIN_SYN = ethernet(ipv6(0, _HBH + _DST + tcp_header(40000, 104, 1000, 0, 0x02)), 0x86DD)


def ipv6_fragments(payload: bytes, split: int) -> list[bytes]:
    """A TCP segment sent as two IPv6 fragments after a hop-by-hop header."""
    first, second = payload[:split], payload[split:]
    hbh = bytes([44, 0, 1, 4, 0, 0, 0, 0])
    frag1 = struct.pack("!BBHI", 6, 0, 0 | 1, 0xBEEF)
    frag2 = struct.pack("!BBHI", 6, 0, split | 0, 0xBEEF)
    return [
        ethernet(ipv6(0, hbh + frag1 + first), 0x86DD),
        ethernet(ipv6(0, hbh + frag2 + second), 0x86DD),
    ]


# IPv4 header claiming 1400 bytes in a 60-byte frame that was not cut by a snaplen
IPV4_LENGTH_LIE = ethernet(ipv4(tcp_header(40000, 104, 1000, 0, 0x02), total=1400))

# Ethernet frame cut inside the IPv4 header
IPV4_HEADER_CUT = ethernet(ipv4(tcp_header(40000, 104, 1000, 0, 0x02)))[:24]

# TCP data offset 3 (less than the 20-byte minimum)
TCP_BAD_OFFSET = ethernet(ipv4(struct.pack("!HHIIBBHHH", 40000, 104, 1, 0, 3 << 4, 0x10, 0, 0, 0)))
