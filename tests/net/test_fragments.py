"""IP fragment reassembly: the first copy of every byte wins (no splice of two copies), and a
datagram in thousands of tiny fragments, in any order, is reassembled exactly."""

from __future__ import annotations

import random
import time

from analyzer.net.fragments import FragmentReassembler

KEY = (b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", 7, 6)


def reassembler(reports: list[tuple[str, str]]) -> FragmentReassembler:
    return FragmentReassembler(
        max_datagrams=16,
        max_bytes=1 << 20,
        timeout=30.0,
        report=lambda ts, n, d: reports.append((n, d)),
    )


def test_first_copy_wins_and_is_never_spliced() -> None:
    reports: list[tuple[str, str]] = []
    r = reassembler(reports)
    assert r.add(1.0, KEY, 0, True, b"CALLING_AE_HOSTILE") is None  # the hostile copy first
    assert r.add(1.1, KEY, 8, True, b"_AE_GOODAE_GENUINE") is None  # overlaps bytes 8..17
    whole = r.add(1.2, KEY, 26, False, b"!!")
    # bytes 0-17 from the first copy, whole; the second adds only bytes 18-25
    assert whole == b"CALLING_AE_HOSTILE" + b"_GENUINE" + b"!!"
    assert ("ip_fragment_overlap_mismatch", "offset 8") in reports


def test_tiny_fragments_in_any_order() -> None:
    payload = bytes(random.Random(1).randrange(256) for _ in range(65_000))
    chunks = [(o, payload[o : o + 8]) for o in range(0, len(payload), 8)]
    order = list(range(len(chunks)))
    random.Random(2).shuffle(order)
    reports: list[tuple[str, str]] = []
    r = reassembler(reports)
    started = time.process_time()
    out = None
    for n, k in enumerate(order):
        o, data = chunks[k]
        out = r.add(1.0, KEY, o, o + 8 < len(payload), data)
        if n < len(order) - 1:
            assert out is None
    spent = time.process_time() - started
    assert out == payload and not reports
    # not a timing target (that is benchmarks' job): a guard against going quadratic again,
    # which took 13 s here; linear work is a few hundredths of a second
    assert spent < 5.0


def test_duplicates_and_overlaps_add_nothing() -> None:
    reports: list[tuple[str, str]] = []
    r = reassembler(reports)
    assert r.add(1.0, KEY, 0, True, b"abcdefgh") is None
    assert r.add(1.0, KEY, 4, True, b"efghijkl") is None  # overlaps, agrees
    assert r.add(1.0, KEY, 0, True, b"abcdefgh") is None  # a duplicate
    assert r.held == 12
    assert r.add(1.0, KEY, 12, False, b"mnop") == b"abcdefghijklmnop"
    assert not reports and r.held == 0
