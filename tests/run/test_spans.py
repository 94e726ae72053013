"""``analyze --workers N`` on one plain pcap file cuts it in time (``run/spans.py``): the tables
equal one process's, as multisets of rows with the same uids, wherever the cuts fall (inside
associations, PDUs and datasets, between the fragments of a datagram)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

import analyzer.run.launch as launch
import analyzer.run.spans as spans
from analyzer.capture import Record, open_inputs
from analyzer.capture.formats import pcap_cuts
from analyzer.run.workers import run_parallel
from tests.helpers import CAPTURES, record_offsets
from tests.run import dying
from tests.run.test_fast_path import FAST, QUIET, busy_stores, run, store_session, tables, write

PCAPS = sorted(
    p for p in CAPTURES.glob("*.pcap") if p.read_bytes()[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d")
)  # fmt: skip


def spans_run(capture: Path, out: Path, workers: int) -> None:
    readers, _ = open_inputs([str(capture)])
    out.mkdir(parents=True)
    summary = spans.run_spans(FAST, readers[0], out, "parquet", QUIET, workers)
    assert summary is not None


def test_sample_pcaps_are_plain() -> None:
    assert len(PCAPS) >= 25


@pytest.mark.parametrize("capture", PCAPS, ids=lambda p: p.name)
def test_spans_equal_one_process(capture: Path, tmp_path: Path) -> None:
    run(capture, tmp_path / "one", FAST)
    spans_run(capture, tmp_path / "three", 3)
    assert tables(tmp_path / "three") == tables(tmp_path / "one")


def test_cuts_fall_on_record_record_offsets(tmp_path: Path) -> None:
    capture = write(store_session().out, tmp_path / "c.pcap")
    cuts = pcap_cuts(capture, 4)
    assert cuts is not None and cuts[0] == 24 and cuts[-1] == capture.stat().st_size
    assert cuts == sorted(cuts) and len(set(cuts)) == 5
    assert set(cuts[1:-1]) <= set(record_offsets(capture.read_bytes()))
    (tmp_path / "ng.pcapng").write_bytes(b"\x0a\x0d\x0d\x0a" + b"\x00" * 60)
    assert pcap_cuts(tmp_path / "ng.pcapng", 2) is None


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_cuts_found_near_the_target_are_the_walked_record_offsets(parts: int) -> None:
    """The cut is the first record boundary at or after each target offset, on every sample
    capture (found by resynchronising there, not by walking the file)."""
    import bisect

    for capture in PCAPS:
        data = capture.read_bytes()
        if data[:4] != b"\xd4\xc3\xb2\xa1":
            continue
        offsets = record_offsets(data)
        cuts = pcap_cuts(capture, parts)
        assert cuts is not None, capture.name
        for k in range(1, parts):
            target = max(len(data) * k // parts, cuts[k - 1])
            i = bisect.bisect_left(offsets, target)
            assert cuts[k] == (offsets[i] if i < len(offsets) else len(data)), capture.name


def test_cuts_walk_where_no_record_looks_plausible(tmp_path: Path) -> None:
    """A writer that records a wire length shorter than the captured one (some do) defeats the
    search near the target: the cuts are then walked from the file's start, and still fall on
    the first boundary at or after each target."""
    import bisect

    capture = write(store_session().out, tmp_path / "c.pcap")
    data = bytearray(capture.read_bytes())
    offsets = record_offsets(bytes(data))
    for o in offsets:  # wire length = captured length - 1
        caplen = int.from_bytes(data[o + 8 : o + 12], "little")
        data[o + 12 : o + 16] = (caplen - 1).to_bytes(4, "little")
    capture.write_bytes(bytes(data))
    cuts = pcap_cuts(capture, 3)
    assert cuts is not None
    for k in (1, 2):
        i = bisect.bisect_left(offsets, len(data) * k // 3)
        assert cuts[k] == offsets[i]


def fake_records(size: int, ts: int) -> bytes:
    """``size`` bytes that read as a chain of small pcap records (64-byte frames)."""
    one = ts.to_bytes(4, "little") + (0).to_bytes(4, "little") + (64).to_bytes(4, "little") * 2
    chain = (one + b"\xee" * 64) * (size // 80 + 1)
    return chain[:size]


def lookalike_capture(path: Path) -> Path:
    """Two store sessions with a frame between them whose 200 kB read as pcap records, and the
    middle of the file inside it."""
    first = store_session(1_700_000_000.0).out
    last = store_session(1_700_000_100.0).out
    before = sum(16 + len(buf) for _, buf in first)
    after = sum(16 + len(buf) for _, buf in last)
    payload = before + after + 24 - 16 - 14 + 4000
    big = (1_700_000_050.0, b"\x00" * 12 + b"\x88\xb5" + fake_records(payload, 1_700_000_050))
    return write([*first, big, *last], path)


def missed_cut_equals_one_process(
    capture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Two workers on ``capture`` (the minimum span lowered), whose cut misses: the run says
    so and its tables equal one process's. Returns its output directory."""
    run(capture, tmp_path / "one", FAST)
    monkeypatch.setattr(launch, "MIN_SPAN", 0)
    readers, _ = open_inputs([str(capture)])
    out = tmp_path / "two"
    out.mkdir()
    summary = run_parallel(FAST, [str(capture)], readers, out, "parquet", QUIET, 2)
    assert tables(out) == tables(tmp_path / "one")
    assert any("cut in time missed" in w for w in summary.warnings), summary.warnings
    return out


def test_a_cut_fooled_by_record_lookalikes_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A frame in the middle of the file carries 200 kB that read as pcap records: the cut
    found there is not a record boundary. The span before it does not end at the cut, so the
    spans' work is dropped and the file is analysed by flow hash: the tables equal one
    process's, and the run says why it took the long way."""
    capture = lookalike_capture(tmp_path / "c.pcap")
    data = capture.read_bytes()
    cuts = pcap_cuts(capture, 2)
    assert cuts is not None and cuts[1] not in record_offsets(data), "the lookalikes fool the cut"
    out = missed_cut_equals_one_process(capture, tmp_path, monkeypatch)
    assert not list(out.glob(".workers-*")), "no scratch directory left behind"


def test_damage_before_a_cut_ends_the_run_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record header with an implausible length in the first half: one process stops
    there; the first span stops there too, short of its cut, so the later span's records
    (which one process never reads) are not used either: the file goes by flow hash."""
    capture = write(busy_stores(2, stores=1), tmp_path / "c.pcap")
    data = bytearray(capture.read_bytes())
    offsets = record_offsets(bytes(data))
    bad = next(o for o in offsets if o > len(data) // 3)
    data[bad + 8 : bad + 12] = (0xFFFFFF).to_bytes(4, "little")
    capture.write_bytes(bytes(data))
    cuts = pcap_cuts(capture, 2)
    assert cuts is not None and cuts[1] > bad, "the cut is found past the damage"
    out = missed_cut_equals_one_process(capture, tmp_path, monkeypatch)
    assert any("capture_corrupt_record" in r for r in tables(out)["weird"])


def test_cut_inside_busy_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four clients storing at once, the file cut into 2 and 3 spans through ``run_parallel``
    (the minimum span lowered so that a small file is split)."""
    capture = write(busy_stores(4, stores=2), tmp_path / "c.pcap")
    run(capture, tmp_path / "one", FAST)
    one = tables(tmp_path / "one")
    assert sum("C-STORE-RQ" in r for r in one["dimse"]) == 8  # every store decoded
    assert not any("checksum_bad" in r for r in one["weird"])
    used = []
    real = spans.run_spans

    def counting(*args: object, **kw: object) -> object:
        used.append(args[5])
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(launch, "MIN_SPAN", 0)
    monkeypatch.setattr("analyzer.run.workers.run_spans", counting)
    for workers in (2, 3):
        readers, _ = open_inputs([str(capture)])
        out = tmp_path / f"w{workers}"
        out.mkdir()
        run_parallel(FAST, [str(capture)], readers, out, "parquet", QUIET, workers)
        assert tables(out) == tables(tmp_path / "one")
    assert used == [2, 3]


def test_followed_flows_take_the_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past its span's end a worker follows the flows still open; once its own records are
    done no new flow can start, so the bulk of the followed ones is settled on the fast path
    (``Carry.settled``), and the spans still equal one process."""
    from analyzer.config import Config
    from analyzer.tcp.table import FlowTable

    capture = write(busy_stores(4, stores=2), tmp_path / "c.pcap")
    cuts = pcap_cuts(capture, 2)
    assert cuts is not None
    data = capture.read_bytes()
    cut_ts = int.from_bytes(data[cuts[1] : cuts[1] + 4], "little") + (
        int.from_bytes(data[cuts[1] + 4 : cuts[1] + 8], "little") * 1e-6
    )
    hits: list[float] = []
    counted = FlowTable.counted

    def counting(self: FlowTable, ts: float, frame: bytes) -> bool:
        done = counted(self, ts, frame)
        if done:
            hits.append(ts)
        return done

    monkeypatch.setattr(FlowTable, "counted", counting)
    readers, _ = open_inputs([str(capture)])
    out = tmp_path / "span0"
    out.mkdir()
    summary = spans.analyze_span(Config(strict=True), readers[0], (cuts[0], cuts[1]), out, QUIET)
    assert summary.followed, "the cut falls inside the stores"
    followed_hits = sum(1 for ts in hits if ts >= cut_ts)
    assert followed_hits > 100, followed_hits
    monkeypatch.setattr(launch, "MIN_SPAN", 0)
    spans_run(capture, tmp_path / "two", 2)
    run(capture, tmp_path / "one", FAST)
    assert tables(tmp_path / "two") == tables(tmp_path / "one")


def test_a_span_worker_that_dies_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed by the system while it holds a span leaves no silent hole: the run fails
    with a clear line, and no scratch directory stays behind."""
    import time

    capture = write(busy_stores(2, stores=1), tmp_path / "c.pcap")
    readers, _ = open_inputs([str(capture)])
    out = tmp_path / "o"
    out.mkdir()
    real_take = launch.Board.take

    def take(self: launch.Board, k: int) -> int | None:
        if k == 0 and self.taken_by[0] >= 0:  # this process waits for the worker's first take
            deadline = time.monotonic() + 60
            while self.taken_by[1] < 0 and time.monotonic() < deadline:
                time.sleep(0.05)
        return real_take(self, k)

    monkeypatch.setattr(launch.Board, "take", take)
    monkeypatch.setattr(launch, "SPAN_WORKER", dying.holding_a_span)
    with pytest.raises(RuntimeError, match="worker 1: ended without a result"):
        spans.run_spans(FAST, readers[0], out, "parquet", QUIET, 2)
    assert not list(out.glob(".workers-*"))


def test_a_worker_that_dies_before_taking_a_span_leaves_no_hole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that dies before it takes a span holds none: the other processes take every
    span, the tables equal one process's, and the run says what happened."""
    capture = write(busy_stores(2, stores=1), tmp_path / "c.pcap")
    run(capture, tmp_path / "one", FAST)
    readers, _ = open_inputs([str(capture)])
    out = tmp_path / "o"
    out.mkdir()
    monkeypatch.setattr(launch, "SPAN_WORKER", dying.at_once)
    summary = spans.run_spans(FAST, readers[0], out, "parquet", QUIET, 2)
    assert summary is not None
    assert tables(out) == tables(tmp_path / "one")
    assert any("worker 1 ended (exit code 9) before taking a span" in w for w in summary.warnings)


def test_span_targets() -> None:
    """One span per process, of equal size (the rest is balanced by steals)."""
    assert launch.span_targets(300 << 20, 2) == [150 << 20]
    assert launch.span_targets(1000, 4) == [250, 500, 750]
    assert launch.span_targets(1000, 1) == []


def board_of(cuts: list[int], steal_min: int) -> launch.Board:
    """A board in this process, as ``launch_spans`` makes it, its first spans set."""
    import multiprocessing

    board = launch.Board.new(multiprocessing.get_context("spawn"), launch.room(2), steal_min)
    board.set_cuts(cuts)
    return board


def test_a_steal_cuts_where_the_reader_has_not_been(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A free process takes the second half of what a span's reader has not yet been allowed to
    read: the cut is a record boundary at or after that reach, the span's reader stops exactly
    there, and the stolen span holds the rest, record for record. A span with less than the
    minimum ahead, one whose reader is done, and a closed board give nothing to steal."""
    from analyzer.capture.formats import Mapped

    monkeypatch.setattr(Mapped, "WINDOW", 4096)
    capture = write(busy_stores(4, stores=2), tmp_path / "c.pcap")
    data = capture.read_bytes()
    offsets = record_offsets(data)
    size = len(data)
    cuts = pcap_cuts(capture, 2)
    assert cuts is not None
    board = board_of(cuts, steal_min=4096)
    assert board.take(0) == 0 and board.take(1) == 1 and board.take(1) is None
    board.finish(1)
    readers, _ = open_inputs([str(capture)])
    own = [o for o in offsets if o < cuts[1]]
    span0 = dataclasses.replace(readers[0], span=(24, cuts[1]), bound=board.bound(0))
    records = span0.records(lambda *a: None)
    first = [next(records) for _ in range(len(own) // 3)]
    reach = board.reach[0]
    assert own[len(first) - 1] < reach < cuts[1], "the reader may read a window ahead"
    assert board.steal(1, capture) == 2
    cut = board.starts[2]
    assert cut in offsets and reach <= cut < cuts[1]
    assert cut - reach >= (cuts[1] - reach) // 2
    assert (board.ends[0], board.ends[2], board.taken_by[2]) == (cut, cuts[1], 1)
    rest = list(records)
    assert len(first) + len(rest) == sum(1 for o in own if o < cut)
    assert span0.stopped_at == cut
    stolen = dataclasses.replace(readers[0], span=(cut, cuts[1])).records(lambda *a: None)
    assert [r[2] for r in stolen] == [
        data[o + 16 : o + 16 + int.from_bytes(data[o + 8 : o + 12], "little")]
        for o in own
        if o >= cut
    ]
    assert board.finish(0) == cut and board.order() == [0, 2, 1]
    assert board.steal(0, capture) == 3, "span 2 was not read yet: its second half goes"
    assert board.ends[2] == board.starts[3] and board.ends[3] == cuts[1]
    for j in (2, 3):
        board.finish(j)
    assert board.steal(0, capture) is None, "every reader is done"
    assert board_of(cuts, steal_min=size).steal(1, capture) is None, "less than the minimum"
    closed = board_of(cuts, steal_min=4096)
    closed.take(0)
    closed.close()
    assert closed.steal(1, capture) is None and closed.take(1) is None


def test_no_steal_without_room_on_the_board(tmp_path: Path) -> None:
    import multiprocessing

    capture = write(busy_stores(4, stores=2), tmp_path / "c.pcap")
    cuts = pcap_cuts(capture, 2)
    assert cuts is not None
    full = launch.Board.new(multiprocessing.get_context("spawn"), 2, 4096)
    full.set_cuts(cuts)
    full.take(0)
    full.take(1)
    assert full.steal(0, capture) is None
    roomy = board_of(cuts, steal_min=4096)
    roomy.take(0)
    roomy.take(1)
    assert roomy.steal(0, capture) == 2


def test_a_stolen_cut_fooled_by_record_lookalikes_is_caught_by_its_span(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A steal finds its cut as the first cuts are found, near its target: bytes inside a
    record that read as records fool it as they fool those. The span it was cut from does not
    end there (the record that holds the cut is read whole, or ends the reading), which is what ``run_spans``
    checks of every span, stolen or not, before it uses any (``CutMissed``)."""
    capture = lookalike_capture(tmp_path / "c.pcap")
    data = capture.read_bytes()
    board = board_of([24, len(data)], steal_min=4096)
    board.take(0)
    assert board.steal(1, capture) == 1
    cut = board.starts[1]
    assert cut not in record_offsets(data), "the lookalikes fool the steal"
    readers, _ = open_inputs([str(capture)])
    out = tmp_path / "span0"
    out.mkdir()
    summary = spans.analyze_span(FAST, readers[0], (24, len(data)), out, QUIET, board, 0)
    assert board.ends[0] == cut < len(data)
    assert summary.span_end != cut, "caught"


def test_a_free_process_takes_the_rest_of_a_slow_span(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker finishes its span while this process has read a third of its own, and takes
    the second half of the rest (this process's reader waits there until it has): the span
    ends early at the steal's cut and the tables still equal one process's, uids included."""
    import time

    from analyzer.capture.formats import Mapped

    capture = write(busy_stores(4, stores=2), tmp_path / "c.pcap")
    size = capture.stat().st_size
    run(capture, tmp_path / "one", FAST)
    monkeypatch.setattr(launch, "STEAL_MIN", size // 20)
    monkeypatch.setattr(Mapped, "WINDOW", 4096)  # this process's reader only
    readers, _ = open_inputs([str(capture)])
    out = tmp_path / "two"
    out.mkdir()
    started = launch.launch_spans(FAST, readers[0], out, "parquet", 2)
    board = started.board
    real = launch.SpanEnd.__call__
    waited: list[float] = []

    def slow(self: launch.SpanEnd, pos: int, window: int) -> int:
        if self.j == 0 and not waited and pos > board.ends[0] // 3:
            deadline = time.monotonic() + 60
            while board.spans.value < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            waited.append(pos)
        return real(self, pos, window)

    monkeypatch.setattr(launch.SpanEnd, "__call__", slow)
    summary = spans.run_spans(FAST, readers[0], out, "parquet", QUIET, 2, started)
    assert summary is not None
    assert waited and board.spans.value >= 3, "the worker stole"
    assert board.taken_by[2] == 1 and board.starts[2] > waited[0]
    cuts = pcap_cuts(capture, 2)
    assert cuts is not None and board.ends[0] == board.starts[2] < cuts[1]
    assert tables(out) == tables(tmp_path / "one")


def test_spans_take_records_in_file_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Time stamps that step back (every seventh record stamped 5 ms late, as a capture from
    several NIC queues has them): one process reads a file in its order, and so does a span
    past its end (``follow_in_file_order``), not merged by time. The tables equal one
    process's, cut into a tail of small spans."""
    frames = busy_stores(4, stores=2)
    frames = [(ts + 0.005 if i % 7 == 3 else ts, buf) for i, (ts, buf) in enumerate(frames)]
    assert any(a[0] > b[0] for a, b in zip(frames, frames[1:], strict=False))
    capture = write(frames, tmp_path / "c.pcap")
    monkeypatch.setattr(launch, "STEAL_MIN", capture.stat().st_size // 40)
    run(capture, tmp_path / "one", FAST)
    spans_run(capture, tmp_path / "two", 3)
    assert tables(tmp_path / "two") == tables(tmp_path / "one")


@pytest.mark.parametrize("fmt", ["jsonl", "zeek"])
def test_spans_in_text_formats(fmt: str, tmp_path: Path) -> None:
    """The merge leaves the followed flows' fragments out as it appends a text table."""
    from analyzer.run.pipeline import run_analysis

    capture = write(busy_stores(4, stores=2), tmp_path / "c.pcap")
    readers, _ = open_inputs([str(capture)])
    (tmp_path / "one").mkdir()
    run_analysis(FAST, readers, tmp_path / "one", fmt, QUIET)
    readers, _ = open_inputs([str(capture)])
    (tmp_path / "two").mkdir()
    summary = spans.run_spans(FAST, readers[0], tmp_path / "two", fmt, QUIET, 2)
    assert summary is not None and summary.flows == 4

    def lines(out: Path) -> dict[str, list[str]]:
        return {
            p.name: sorted(x for x in p.read_text().splitlines() if not x.startswith("#"))
            for p in out.iterdir()
            if p.suffix in (".jsonl", ".log") and p.name != "alerts.jsonl"
        }

    one, two = lines(tmp_path / "one"), lines(tmp_path / "two")
    assert one == two
    assert any("C-STORE-RQ" in x for x in one[f"dimse.{'jsonl' if fmt == 'jsonl' else 'log'}"])


def test_ctrl_c_in_a_span_stops_the_spans_and_keeps_the_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the main process analyses its first span (its summary says interrupted):
    no span is taken after it, the workers are told, and the run still merges what was
    decoded into tables, says it was interrupted and leaves no scratch directory."""
    capture = write(busy_stores(4, stores=2), tmp_path / "c.pcap")
    monkeypatch.setattr(launch, "STEAL_MIN", capture.stat().st_size // 40)  # else it would steal
    real = spans.analyze_span
    taken: list[int] = []

    def interrupted_first(*args: object, **kw: object) -> object:
        summary = real(*args, **kw)  # type: ignore[arg-type]
        taken.append(int(args[6]))  # type: ignore[call-overload]
        if len(taken) == 1:
            summary.interrupted = True
        return summary

    monkeypatch.setattr(spans, "analyze_span", interrupted_first)
    readers, _ = open_inputs([str(capture)])
    out = tmp_path / "o"
    out.mkdir()
    summary = spans.run_spans(FAST, readers[0], out, "parquet", QUIET, 2)
    assert summary is not None and summary.interrupted
    assert taken == [0], "this process takes no span after the interrupt"
    assert (out / "conn.parquet").exists() and (out / "alerts.jsonl").exists()
    assert tables(out)["conn"], "what was decoded is kept"
    assert not list(out.glob(".workers-*"))


@pytest.mark.parametrize("in_order", [True, False], ids=["span", "files"])
@pytest.mark.parametrize("in_reader", [True, False], ids=["reader-skips", "task-skips"])
def test_past_its_span_a_task_reads_only_its_followed_flows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_reader: bool, in_order: bool
) -> None:
    """Past its span's end a task hands on only the records of the flows it follows (known by
    their 12 bytes of addresses and ports, ``Carry.frames``), and only while they last (a
    flow's leave the set when it ends); every other record just moves the clock, and the
    reading stops soon after the last flow ended. A plain pcap file's reader skips those
    records itself (``Skip``); any other reader hands them all on and the task skips them: the
    same records reach the pipeline either way, and the same rows come out. A span takes its
    later records after its own (``follow_in_file_order``); a task of files merges them by
    time where they overlap: the same here, where they do not.
    The capture: two stores cut in their middle, then, 100 s later, two new sessions on the
    same ports (no longer followed: their flows ended)."""
    import socket

    import polars as pl
    from polars.testing import assert_frame_equal

    from analyzer.capture import Skip
    from analyzer.run.pipeline import Pipeline, run_analysis

    first = busy_stores(2, stores=2)
    again = [(ts + 100.0, buf) for ts, buf in busy_stores(2, stores=1)]
    capture = write(first + again, tmp_path / "c.pcap")
    offsets = record_offsets(capture.read_bytes())
    cut, size = offsets[len(first) // 2], capture.stat().st_size
    readers, _ = open_inputs([str(capture)])
    read: list[object] = []
    later_reader = dataclasses.replace(readers[0], span=(cut, size))

    def rest(weird: object, skip: Skip) -> Iterator[Record]:
        for rec in later_reader.records(weird, skip if in_reader else None):  # type: ignore[arg-type]
            read.append(rec)
            yield rec

    passed: list[Record] = []
    feed = Pipeline.feed

    def spy(self: Pipeline, records: Iterable[Record], on_progress: object = None) -> None:
        def each() -> Iterator[Record]:
            for rec in records:
                passed.append(rec)
                yield rec

        feed(self, each(), on_progress)  # type: ignore[arg-type]

    monkeypatch.setattr(Pipeline, "feed", spy)
    own = dataclasses.replace(readers[0], span=(24, cut))
    out = tmp_path / "span0"
    out.mkdir()
    summary = run_analysis(
        FAST,
        [own],
        out,
        "parquet",
        QUIET,
        shard=(0, 1),
        follow=rest,
        follow_in_file_order=in_order,
    )
    assert summary.stats_own is not None and summary.stats_own.packets == len(first) // 2
    conn = pl.read_parquet(out / "conn.parquet").filter(pl.col("uid").is_in(summary.followed))
    assert conn.height == 2
    last: dict[bytes, float] = {}
    for h1, p1, h2, p2, ts, duration in conn.select(
        "orig_h", "orig_p", "resp_h", "resp_p", "ts", "duration"
    ).rows():
        a, b = socket.inet_aton(h1), socket.inet_aton(h2)
        end = ts.timestamp() if hasattr(ts, "timestamp") else ts
        end += duration.total_seconds() if hasattr(duration, "total_seconds") else duration
        last[a + b + p1.to_bytes(2, "big") + p2.to_bytes(2, "big")] = end
        last[b + a + p2.to_bytes(2, "big") + p1.to_bytes(2, "big")] = end
    later = passed[len(first) // 2 :]
    assert later, "the followed flows' later records were analysed"
    past_end: dict[float, int] = {}  # per flow (its last ts), records passed after it
    for ts, _, buf, _ in later:
        assert buf[26:38] in last
        if ts > last[buf[26:38]] + 1e-6:
            past_end[last[buf[26:38]]] = past_end.get(last[buf[26:38]], 0) + 1
    # a record of the same ports after a flow's last one is passed on only while the flow
    # still lingers in the table: the first (whose tick of the clock ends the flow)
    assert all(n == 1 for n in past_end.values()), past_end
    assert later_reader.stopped_at is not None and later_reader.stopped_at < size, "it stopped"
    assert len(read) < len(first) - len(first) // 2 + len(again), "it stopped before the end"
    if in_reader:
        assert read == later, "the reader handed on only the followed flows' records"
    else:
        assert len(read) > len(later), "the task skipped the other flows' records"
    whole = tmp_path / "whole"
    whole.mkdir()
    monkeypatch.setattr(Pipeline, "feed", feed)
    other = run_analysis(
        FAST,
        [own],
        whole,
        "parquet",
        QUIET,
        shard=(0, 1),
        follow=(lambda weird, skip: later_reader.records(weird, None if in_reader else skip)),
        follow_in_file_order=not in_order,
    )
    assert other.followed == summary.followed
    for name in ("conn", "dicom", "weird"):
        if (out / f"{name}.parquet").exists() or (whole / f"{name}.parquet").exists():
            assert_frame_equal(
                pl.read_parquet(whole / f"{name}.parquet").sort("uid"),
                pl.read_parquet(out / f"{name}.parquet").sort("uid"),
            )
