"""``analyze --workers N`` on one large plain pcap file: the file cut in time, not by flow.

Sharding by flow hash (``run/workers.py``) makes every worker read and frame the whole file,
which costs each of them about a fifth of a whole run on bulk C-STORE traffic. A plain pcap
file can instead be cut into spans of records (``pcap_cuts_at``, at record boundaries, each
checked by the span before it: ``CutMissed``): one span per process, of equal size
(``span_targets``); a process done with its span takes the second half of what another
span's reader has not reached yet (``Board.steal``: the cut falls at a record boundary past
where that reader may have read, which it learns before its next window, ``SpanEnd``), so
that the processes finish together with no more cuts than needed. A process reads only the
spans it takes, as the cluster's tasks read their run of files (``run/carry.py``): the flows
still open at a span's end are followed into the rest of the file (only their packets are
analysed; the others move the clock, and a fast check skips them once the span is done), and
stop being followed when they end. The next span sees their tail as a flow begun mid-stream;
the merge drops those fragments (``run/fragments.py``, the spans in the file's order), then
runs the cross-flow stage once (``run/merge.py``).
The tables equal a single process's, as multisets of rows, uids included
(``tests/run/test_spans.py``).

Used when no export is requested, the only input is a plain (uncompressed, classic) pcap
file and it holds at least ``MIN_SPAN`` bytes per worker; otherwise flow-hash sharding. The
processes are started by ``run/launch.py``, the command line's first step.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from analyzer.capture import CaptureReader, Record, Skip, WeirdSink
from analyzer.capture.formats import pcap_cuts_at
from analyzer.config import Config
from analyzer.lean import leave_out
from analyzer.net.decode import DecodeStats
from analyzer.run.fragments import Fragments, drop_fragments, fragments
from analyzer.run.launch import MIN_SPAN, Board, Launch, Result, launch_spans, parent_gone
from analyzer.run.merge import interrupt_once, merge_parts
from analyzer.run.pipeline import RunSummary, run_analysis
from analyzer.run.progress import Progress

if TYPE_CHECKING:
    from multiprocessing.queues import Queue


class CutMissed(Exception):
    """A span's records did not end at its cut: the bytes there only looked like records (or
    damage ended the reading before it). The caller analyses the file another way."""


INTERRUPTED = "interrupted"


class SpanProgress(Progress):
    """A span's progress (bytes from its start), published through shared counters."""

    def __init__(
        self,
        start: int,
        end: int,
        done: Synchronized[int],
        packets: Synchronized[int],
        show: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(None, enabled=False)
        self.origin, self.length, self.done_bytes, self.packets = start, end - start, done, packets
        self.show = show
        """The main process's: the whole run's progress shown after each update."""

    def update(self, done_bytes: int, packets: int) -> None:
        self.done_bytes.value = min(max(0, done_bytes - self.origin), self.length)
        self.packets.value = packets
        if self.show is not None:
            self.show()


def analyze_span(
    config: Config,
    reader: CaptureReader,
    span: tuple[int, int],
    outdir: Path,
    progress: Progress,
    board: Board | None = None,
    j: int = 0,
) -> RunSummary:
    """The per-flow stage of the records of ``reader``'s file from ``span[0]`` to ``span[1]``
    into ``outdir``; the flows open at its end are followed into the rest of the file. With
    ``board``: it is span ``j`` there, whose end may move earlier while it is read (a steal)."""
    assert reader.path is not None and reader.size is not None
    start, end = span
    size = reader.size
    bound = board.bound(j) if board is not None else None
    own = dataclasses.replace(reader, span=(start, end), bound=bound)

    def rest(weird: WeirdSink, skip: Skip) -> Iterator[Record]:
        # a generator: the span's end is final only once its own records are read
        at = board.finish(j) if board is not None else end
        if at < size:
            later = dataclasses.replace(reader, span=(at, size), bound=None)
            yield from later.records(weird, skip)

    summary = run_analysis(
        config,
        [own],
        outdir,
        "parquet",
        progress,
        shard=(0, 1),
        follow=rest if board is not None or end < size else None,
        follow_in_file_order=True,
    )
    summary.span_end = own.stopped_at
    return summary


def _next(board: Board, k: int, path: Path) -> int | None:
    """Process ``k``'s next span: one nobody took yet, else a steal."""
    j = board.take(k)
    return j if j is not None else board.steal(k, path)


def _worker(
    k: int,
    config: Config,
    reader: CaptureReader,
    board: Board,
    dirs: list[str],
    results: Queue[Result],
) -> None:
    """Process ``k``: spans taken one after the other until none is left, each reported as
    ``(span, summary, None)``, or ``(span, None, error)`` (span -1: before the first)."""
    leave_out()  # as the CLI (start_lean made it so already when the CLI started it)
    signal.signal(signal.SIGINT, interrupt_once)
    j = -1
    try:
        if not board.wait_ready() or board.abandoned():
            return
        assert reader.path is not None
        while True:
            taken = _next(board, k, reader.path)
            if taken is None:
                return
            j = taken
            start, end = board.starts[j], board.ends[j]
            progress = SpanProgress(start, end, board.done[j], board.packets[j])
            summary = analyze_span(config, reader, (start, end), Path(dirs[j]), progress, board, j)
            results.put((j, summary, None))
            if summary.interrupted:
                return
    except KeyboardInterrupt:
        results.put((j, None, INTERRUPTED))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        results.put((j, None, f"worker {k}: {type(exc).__name__}: {exc}"))


def run_spans(
    config: Config,
    reader: CaptureReader,
    outdir: Path,
    fmt: str,
    progress: Progress,
    workers: int,
    launch: Launch | None = None,
) -> RunSummary | None:
    """Analyze ``reader``'s file in spans (``span_targets``) on ``workers`` processes, this one
    included, into tables in ``outdir``; None when the file cannot be cut (the caller shards
    by flow instead). ``CutMissed``: a cut was not at a record boundary. ``launch``: the
    processes, started already (``run/launch.py``); else they are started here."""
    if launch is None:
        launch = launch_spans(config, reader, outdir, fmt, workers)
    launch.taken = True
    started, config, board, results = launch.started, launch.config, launch.board, launch.results
    procs, merger, scratch, dirs = launch.procs, launch.merger, launch.scratch, launch.dirs
    abandon = launch.stop
    assert reader.path is not None
    summaries: dict[int, RunSummary] = {}
    errors: list[str] = []
    warnings: list[str] = []
    interrupted = False

    def show() -> None:
        progress.update(sum(d.value for d in board.done), sum(p.value for p in board.packets))

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        board.close()
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGINT)

    def receive(got: Result) -> None:
        j, summary, error = got
        if summary is not None:
            summaries[j] = summary
            if summary.interrupted:
                interrupt()
        elif error == INTERRUPTED:
            interrupt()
        elif error is not None:
            errors.append(error)

    reported: set[int] = set()
    try:
        cuts = pcap_cuts_at(reader.path, launch.targets)  # while the processes import
        board.set_cuts(cuts)
        if cuts is None:
            abandon()
            return None
        while not interrupted:
            try:
                taken = _next(board, 0, reader.path)
                if taken is None:
                    break
                j = taken
                start, end = board.starts[j], board.ends[j]
                span = SpanProgress(start, end, board.done[j], board.packets[j], show)
                summaries[j] = analyze_span(config, reader, (start, end), dirs[j], span, board, j)
                reported.add(j)
                if summaries[j].interrupted:
                    interrupt()
                while True:  # what the workers reported meanwhile (an error stops nothing)
                    got = results.get_nowait()
                    reported.add(got[0])
                    receive(got)
            except queue.Empty:
                pass
            except KeyboardInterrupt:
                interrupt()
        while True:
            waiting = [
                j for j in range(board.spans.value) if board.taken_by[j] > 0 and j not in reported
            ]
            if not waiting:
                break
            try:
                try:
                    got = results.get(timeout=0.25)
                except queue.Empty:
                    owners = {board.taken_by[j] for j in waiting}
                    if not any(procs[k - 1].is_alive() for k in owners) and results.empty():
                        for k in sorted(owners):
                            code = procs[k - 1].exitcode
                            errors.append(f"worker {k}: ended without a result (exit code {code})")
                        break
                    show()
                    continue
                reported.add(got[0])
                receive(got)
            except KeyboardInterrupt:
                interrupt()
    except BaseException:
        abandon()
        raise
    finally:
        progress.done()
    if errors:  # no table that silently lacks a span
        abandon()
        raise RuntimeError("; ".join(errors))
    ks = [j for j in board.order() if j in summaries]  # in the file's order
    if not interrupted:
        size = reader.size or 0
        wrong = [j for j in ks if board.ends[j] < size and summaries[j].span_end != board.ends[j]]
        if wrong:  # a cut that is not where the records are: nothing of this run is used
            abandon()
            raise CutMissed(
                f"span {wrong[0]} ended at offset {summaries[wrong[0]].span_end}, "
                f"not at its cut {board.ends[wrong[0]]}"
            )
    try:
        merger.start_merge(
            [[str(dirs[j]), summaries[j].followed, summaries[j].followed_until] for j in ks]
        )
        for k, p in enumerate(procs, 1):
            p.join(30)
            if p.exitcode and k not in set(board.taken_by[:]):
                warnings.append(f"worker {k} ended (exit code {p.exitcode}) before taking a span")
        summary, dropped, dropped_services = merger.result()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    parts = [summaries[j] for j in ks]
    summary.inputs = 1
    summary.stats = DecodeStats()
    for s in parts:  # each span's own records (a followed flow's later ones are not)
        own = s.stats_own or s.stats
        summary.stats.packets += own.packets
        summary.stats.wire_bytes += own.wire_bytes
        summary.stats.bad_checksum += s.stats.bad_checksum
    summary.flows = sum(s.flows for s in parts) - dropped
    summary.flows_evicted = sum(s.flows_evicted for s in parts)
    summary.segments_bad_checksum = sum(s.segments_bad_checksum for s in parts)
    summary.segments_offloaded = sum(s.segments_offloaded for s in parts)
    for s in parts:
        for svc, count in s.services.items():
            summary.services[svc] = summary.services.get(svc, 0) + count
        summary.warnings.extend(w for w in s.warnings if w not in summary.warnings)
    summary.warnings.extend(warnings)
    for svc, count in dropped_services.items():
        summary.services[svc] -= count
    summary.interrupted = interrupted or any(s.interrupted for s in parts)
    summary.seconds = time.monotonic() - started
    return summary


def _merger(
    config: Config,
    outdir: str,
    fmt: str,
    go: Queue[list[list[object]] | None],
    done: Queue[tuple[RunSummary, int, dict[str, int]] | str],
) -> None:
    leave_out()  # Ctrl-C stays ignored (``launch.Entry``): the merge of what was decoded runs
    while True:
        try:
            parts = go.get(timeout=0.5)
            break
        except queue.Empty:
            if parent_gone():
                return
    if parts is None:
        return
    try:
        dirs = [Path(str(d)) for d, _, _ in parts]
        metas = [{"followed": f, "followed_until": u} for _, f, u in parts]
        drops = fragments(dirs, metas)
        dropped_services = _services(drops)
        drop_fragments(drops, tables=False)  # the merge leaves them out as it reads
        summary = merge_parts(
            config, dirs, Path(outdir), fmt, fragments={d: f.uids for d, f in drops.items()}
        )
        done.put((summary, sum(len(f.uids) for f in drops.values()), dropped_services))
    except BaseException as exc:  # noqa: BLE001 - reported to the main process
        done.put(f"{type(exc).__name__}: {exc}")


def _services(drops: dict[Path, Fragments]) -> dict[str, int]:
    """Flows per service among the fragments about to be dropped."""
    out: dict[str, int] = {}
    for d, f in drops.items():
        if f.uids and (d / "conn.parquet").exists():
            conn = pl.read_parquet(d / "conn.parquet", columns=["uid", "service"])
            for svc in conn.filter(pl.col("uid").is_in(sorted(f.uids)))["service"].to_list():
                if svc is not None:
                    out[svc] = out.get(svc, 0) + 1
    return out


__all__ = ["MIN_SPAN", "CutMissed", "analyze_span", "run_spans"]
