"""Which frames the per-packet loop (``Pipeline.feed``) offers the bulk fast path: exactly the
plain ones (``plain_frame``, the readable statement of the test that the loop spells from one
unpack of the header fields, ``PLAIN_HEAD``)."""

from __future__ import annotations

from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.capture import open_inputs
from analyzer.run.pipeline import Pipeline, plain_frame, table_writers
from analyzer.tcp.table import FlowTable
from tests.capture.test_skip import SEEDS, records_of, write_pcap
from tests.run.test_fast_path import FAST


@settings(max_examples=100, deadline=None)
@given(seed=SEEDS, flip=st.lists(st.tuples(st.integers(0, 59), st.integers(0, 255)), max_size=4))
def test_the_fast_path_is_offered_the_plain_frames_only(
    tmp_path_factory: pytest.TempPathFactory,
    seed: list[tuple[int, str, int, bool]],
    flip: list[tuple[int, int]],
) -> None:
    records = records_of(seed)
    for i, (at, value) in enumerate(flip):  # a few bytes of the headers changed anyhow
        ts, buf, wire = records[i % len(records)]
        records[i % len(records)] = (ts, buf[:at] + bytes([value]) + buf[at + 1 :], wire)
    path = write_pcap(tmp_path_factory.mktemp("plain") / "c.pcap", records)
    every = list(open_inputs([str(path)])[0][0].records(lambda ts, name, detail: None))
    offered: list[bytes] = []

    def spy(self: FlowTable, ts: float, frame: bytes) -> bool:
        offered.append(frame)
        return False  # every frame then takes the whole path as well

    out = tmp_path_factory.mktemp("out")
    pipe = Pipeline(FAST, table_writers(out, "parquet"), alerts=out / "alerts.jsonl")
    with mock.patch.object(FlowTable, "counted", spy):
        pipe.feed(every)
    pipe.finish()
    assert offered == [rec[2] for rec in every if plain_frame(rec[1], rec[2], rec[3])]
