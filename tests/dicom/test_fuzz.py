"""Hypothesis fuzzing: random bytes and splits never raise and never grow buffers past caps."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.dicom.association import AssociationParser
from analyzer.dicom.limits import DicomLimits
from tests.dicom import fixtures as fx

LIMITS = DicomLimits(max_control_pdu=4096, max_command=1024, max_dataset_head=2048, max_pending=4)
VALID = [
    fx.A_ASSOCIATE_RQ_USER_ID_USER_PASS,
    fx.A_ASSOCIATE_AC_PLAIN,
    fx.c_echo_rq(),
    fx.c_store_rq(max_pdu=64),
    fx.c_find_rq(),
    fx.A_RELEASE_RQ_PDU,
    fx.A_ABORT_USER,
]


def check_bounds(parser: AssociationParser) -> None:
    for framer in parser.framers:
        assert framer.buffered <= max(LIMITS.max_control_pdu, 1 << 16) + 16
    for pending in parser.pending:
        assert len(pending) <= LIMITS.max_pending
        for p in pending.values():
            assert len(p.command_raw) <= LIMITS.max_command
            assert p.head is None or len(p.head) <= LIMITS.max_dataset_head


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.binary(max_size=300)), max_size=20), st.booleans())
def test_random_bytes_never_raise(chunks: list[tuple[int, bytes]], midstream: bool) -> None:
    parser = AssociationParser(LIMITS, midstream=midstream)
    for direction, data in chunks:
        parser.feed(direction, data, 1.0)
        check_bounds(parser)
    parser.close(2.0)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_real_pdus_never_raise(data: st.DataObject) -> None:
    parser = AssociationParser(LIMITS)
    for raw in data.draw(st.lists(st.sampled_from(VALID), min_size=1, max_size=6)):
        b = bytearray(raw)
        for _ in range(data.draw(st.integers(0, 6))):
            b[data.draw(st.integers(0, len(b) - 1))] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(b)))
        parser.feed(data.draw(st.integers(0, 1)), bytes(b[:cut]), 1.0)
        parser.feed(data.draw(st.integers(0, 1)), bytes(b[cut:]), 1.0)
        if data.draw(st.booleans()):
            parser.gap(data.draw(st.integers(0, 1)), 1.0, data.draw(st.integers(1, 5000)))
        check_bounds(parser)
    parser.close(2.0)
