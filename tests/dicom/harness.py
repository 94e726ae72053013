"""The feed harness: every way of chopping a stream must give the same events."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import fields, is_dataclass, replace
from typing import Any

from analyzer.dicom.association import AssociationParser

Stream = list[tuple[int, bytes]]
"""(direction, bytes) in wire order."""


def _normal(ev: Any) -> Any:
    """An event with its timestamp zeroed, for comparing across chop patterns."""
    if is_dataclass(ev) and any(f.name == "ts" for f in fields(ev)):
        return replace(ev, ts=0.0)  # type: ignore[type-var]
    return ev


def run(
    stream: Stream,
    chop: Callable[[bytes], list[bytes]],
    *,
    close: bool = True,
    make: Callable[[], AssociationParser] = AssociationParser,
) -> tuple[list[Any], AssociationParser]:
    parser = make()
    events: list[Any] = []
    for direction, data in stream:
        for piece in chop(data):
            events += parser.feed(direction, piece, 1.0)
    if close:
        events += parser.close(2.0)
    return [_normal(e) for e in events], parser


def whole(b: bytes) -> list[bytes]:
    return [b]


def bytewise(b: bytes) -> list[bytes]:
    return [b[i : i + 1] for i in range(len(b))]


def random_splits(seed: int) -> Callable[[bytes], list[bytes]]:
    def chop(b: bytes) -> list[bytes]:
        rnd = random.Random(seed + len(b))
        cuts = (
            sorted(rnd.sample(range(1, len(b)), min(len(b) - 1, rnd.randint(0, 12))))
            if len(b) > 1
            else []
        )
        edges = [0, *cuts, len(b)]
        return [b[a:z] for a, z in zip(edges, edges[1:], strict=False)]

    return chop


def check_all_ways(stream: Stream, *, close: bool = True) -> list[Any]:
    """Events for ``stream``, asserted identical whole, byte by byte and at random splits."""
    expected, _ = run(stream, whole, close=close)
    assert run(stream, bytewise, close=close)[0] == expected
    for seed in range(5):
        assert run(stream, random_splits(seed), close=close)[0] == expected
    # trailing bytes: the start of a further PDU changes nothing that came before it
    trailing = [*stream, (stream[-1][0], b"\x04\x00\x00\x00")]
    assert run(trailing, whole, close=False)[0] == run(stream, whole, close=False)[0]
    return expected
