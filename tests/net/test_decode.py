"""Header decoding on hand-built frames: options, extension chains, fragments, lies."""

from __future__ import annotations

import pytest

from analyzer.net.decode import Decoder
from analyzer.net.fragments import FragmentReassembler
from tests.net import fixtures as fx

Seen = list[tuple[object, ...]]


def decoder() -> tuple[Decoder, Seen, list[str]]:
    seen: Seen = []
    weird: list[str] = []

    def on_tcp(
        ts, src, sport, dst, dport, seq, ack, flags, win, frame, start, cap_end, n, ip_len, vlan
    ):  # type: ignore[no-untyped-def]
        seen.append((src, sport, dst, dport, seq, flags, frame[start:cap_end], n))

    frags = FragmentReassembler(
        max_datagrams=8, max_bytes=1 << 16, timeout=30, report=lambda t, n, d: weird.append(n)
    )
    return Decoder(on_tcp, lambda t, n, d: weird.append(n), frags), seen, weird


def test_ipv4_options_are_skipped() -> None:
    dec, seen, weird = decoder()
    dec.packet(1.0, 1, fx.IPV4_OPTIONS_SYN, len(fx.IPV4_OPTIONS_SYN))
    assert seen and seen[0][1:4:2] == (40000, 104) and seen[0][5] == 0x02 and not weird


def test_ipv6_extension_header_chain() -> None:
    dec, seen, weird = decoder()
    dec.packet(1.0, 1, fx.IPV6_EXT_CHAIN_SYN, len(fx.IPV6_EXT_CHAIN_SYN))
    assert len(seen) == 1 and seen[0][3] == 104 and not weird


def test_ipv6_fragments_reassemble() -> None:
    payload = fx.tcp_header(40000, 104, 7, 0, 0x18) + b"A-ASSOCIATE" * 20
    dec, seen, weird = decoder()
    first, second = fx.ipv6_fragments(payload, 104)
    dec.packet(1.0, 1, second, len(second))  # out of order
    assert not seen
    dec.packet(1.0, 1, first, len(first))
    assert len(seen) == 1 and seen[0][6] == b"A-ASSOCIATE" * 20 and not weird


def test_ipv4_fragment_overlap_mismatch_is_reported() -> None:
    body = fx.tcp_header(40000, 104, 7, 0, 0x18) + bytes(range(64))
    dec, seen, weird = decoder()
    a = fx.ethernet(fx.ipv4(body[:48], ident=9, frag=0x2000))
    b = fx.ethernet(
        fx.ipv4(b"\xff" * 8 + body[48:], ident=9, frag=40 // 8)
    )  # overlaps 40..48 with other bytes
    dec.packet(1.0, 1, a, len(a))
    dec.packet(1.0, 1, b, len(b))
    assert "ip_fragment_overlap_mismatch" in weird
    assert seen and seen[0][6][:28] == body[20:48]  # the first copy wins


@pytest.mark.parametrize(
    ("frame", "name"),
    [
        (fx.IPV4_LENGTH_LIE, "ip_length_exceeds_frame"),
        (fx.IPV4_HEADER_CUT, "ip_truncated"),
        (fx.TCP_BAD_OFFSET, "tcp_bad_header"),
        (b"\x00" * 10, "link_truncated"),
    ],
)
def test_malformed_headers_are_anomalies(frame: bytes, name: str) -> None:
    dec, seen, weird = decoder()
    dec.packet(1.0, 1, frame, len(frame))
    assert name in weird and dec.stats.malformed == 1


def test_unknown_link_type_is_counted_once() -> None:
    dec, seen, weird = decoder()
    for _ in range(3):
        dec.packet(1.0, 147, b"\x00" * 40, 40)
    assert weird == ["link_unsupported"] and dec.stats.unsupported_link == 3


def test_fragment_memory_is_bounded() -> None:
    dec, seen, weird = decoder()
    for i in range(100):  # first halves only: nothing ever completes
        f = fx.ethernet(fx.ipv4(b"x" * 1000, ident=i, frag=0x2000))
        dec.packet(float(i), 1, f, len(f))
    assert len(dec.fragments.pending) <= 8 and dec.fragments.held <= 1 << 16
    assert "ip_fragment_table_full" in weird
