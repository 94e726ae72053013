"""The framer's resynchronising scan jumps between possible header starts (a type byte 1..7
and a zero, found by a C search). It must decide exactly as judging every position in turn
does: the same header found, the same bytes skipped, the same wait for more bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.dicom.events import Resynchronized
from analyzer.dicom.framing import PduFramer
from tests.dicom import fixtures as fx


def reference(framer: PduFramer, buf: bytes) -> tuple[int | None, int]:
    """(where the first acceptable header is, or None; how many bytes a wait keeps) as a
    position-by-position scan of ``buf`` decides."""
    i = 0
    while i < len(buf):
        verdict = framer.header.verdict(buf, i)
        if verdict is None:
            return None, len(buf) - i
        if verdict and framer._candidate(bytearray(buf), i):
            return i, 0
        i += 1
    return None, 0


PIECES = st.one_of(
    st.binary(min_size=0, max_size=64),
    st.sampled_from(
        [
            fx.A_RELEASE_RQ_PDU,
            fx.A_RELEASE_RP_PDU,
            b"\x04\x00\x00\x00\x00\x10\x00\x00\x00\x0c\x01\x00",
            b"\x04\x00\x00\x00\x00\x10",
            b"\x07\x00\x00\x00\x00\x04\x00\x00",
            b"\x01\x00",
            b"\x04\x00",
            b"\x00" * 7,
        ]
    ),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(PIECES, max_size=12))
def test_the_scan_decides_as_judging_every_position(pieces: list[bytes]) -> None:
    buf = b"".join(pieces)
    framer = PduFramer(midstream=True)
    found, kept = reference(framer, buf)
    events = framer.feed(buf, 1.0)
    synced = [e for e in events if isinstance(e, Resynchronized)]
    if found is None:
        assert not synced
        assert framer.buffered == kept
        assert framer.skipped == len(buf) - kept
    else:
        assert synced and synced[0].skipped == found
