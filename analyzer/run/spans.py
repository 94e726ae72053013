"""``analyze --workers N`` on one large plain pcap file: the file cut in time, not by flow.

Sharding by flow hash (``run/workers.py``) makes every worker read and frame the whole file,
which costs each of them about a fifth of a whole run on bulk C-STORE traffic. A plain pcap
file can instead be cut into spans of records (``pcap_cuts_at``, at record boundaries, each
checked by the span before it: ``CutMissed``): one large span per process, then a tail of
smaller ones (``span_targets``) that whichever process is free takes next (``Board``), so that
the processes finish together. A process reads only the spans it takes, as the cluster's tasks
read their run of files (``run/carry.py``): the flows still open at a span's end are followed
into the rest of the file (only their packets are analysed; the others move the clock, and a
fast check skips them once the span is done), and stop being followed when they end. The
next span sees their tail as a flow begun mid-stream; the merge drops those fragments
(``run/fragments.py``), then runs the cross-flow stage once (``run/merge.py``).
The tables equal a single process's, as multisets of rows, uids included
(``tests/run/test_spans.py``).

Used when no export is requested, the only input is a plain (uncompressed, classic) pcap
file and it holds at least ``MIN_SPAN`` bytes per worker; otherwise flow-hash sharding.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import queue
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from analyzer.capture import CaptureReader, Record, WeirdSink
from analyzer.capture.formats import PCAP_MAGIC, pcap_cuts_at
from analyzer.config import Config
from analyzer.lean import leave_out, start_lean
from analyzer.net.decode import DecodeStats
from analyzer.run.fragments import Fragments, drop_fragments, fragments
from analyzer.run.merge import interrupt_once, merge_parts
from analyzer.run.pipeline import RunSummary, run_analysis
from analyzer.run.progress import Progress

if TYPE_CHECKING:
    from multiprocessing.queues import Queue


class CutMissed(Exception):
    """A span's records did not end at its cut: the bytes there only looked like records (or
    damage ended the reading before it). The caller analyses the file another way."""


MIN_SPAN = 64 << 20
"""Bytes per worker below which a file is sharded by flow hash instead (spans cost a fixed
start-up and the fragments of the flows that cross each cut)."""
TAIL_SHARE = 5
"""One part in this many of a large file is cut into the smaller spans of ``span_targets``."""
MIN_TAIL = 32 << 20
"""The smallest of those spans (each costs a span's start-up, end and cut)."""
INTERRUPTED = "interrupted"


def splittable(reader: CaptureReader, workers: int) -> bool:
    """Can ``reader`` be cut into ``workers`` spans?"""
    if reader.path is None or reader.size is None or reader.size < workers * MIN_SPAN:
        return False
    try:
        with open(reader.path, "rb") as fh:
            return fh.read(4) in PCAP_MAGIC
    except OSError:
        return False


def span_targets(size: int, workers: int) -> list[int]:
    """Where the cuts of a ``size``-byte file aim: ``workers`` large spans, one per process at
    the start, then a tail of ever smaller spans (each half of what is left, down to
    ``MIN_TAIL``) that whichever process is free takes next, so that the processes finish
    together however the load of the machine or the traffic's density differ between them."""
    tail = size // TAIL_SHARE
    if tail < 2 * MIN_TAIL:
        return [size * k // workers for k in range(1, workers)]
    big = (size - tail) // workers
    targets = [big * k for k in range(1, workers + 1)]
    at, rest = targets[-1], size - targets[-1]
    while rest // 2 >= MIN_TAIL:
        at += rest // 2
        rest -= rest // 2
        targets.append(at)
    return targets


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
    config: Config, reader: CaptureReader, cuts: list[int], k: int, outdir: Path, progress: Progress
) -> RunSummary:
    """The per-flow stage of span ``k`` of ``reader``'s file into ``outdir``; the flows open at
    its end are followed into the rest of the file."""
    assert reader.path is not None
    start, end, size = cuts[k], cuts[k + 1], cuts[-1]
    own = dataclasses.replace(reader, span=(start, end))

    def rest(weird: WeirdSink) -> Iterator[Record]:
        later = dataclasses.replace(reader, span=(end, size))
        yield from later.records(weird)

    follow = rest if end < size else None
    summary = run_analysis(config, [own], outdir, "parquet", progress, shard=(0, 1), follow=follow)
    summary.span_end = own.stopped_at
    return summary


@dataclasses.dataclass(slots=True)
class Board:
    """What the processes of one run share: the cuts, the next span to take, who took which,
    each span's progress."""

    cuts: SynchronizedArray[int]
    ready: Event
    next_span: Synchronized[int]
    taken_by: SynchronizedArray[int]
    """Per span, the process that took it (0: the main process), -1 while nobody has."""
    done: list[Synchronized[int]]
    packets: list[Synchronized[int]]

    def take(self, k: int) -> int | None:
        """The next span for process ``k``, or None when every span is taken."""
        with self.next_span.get_lock():
            j: int = self.next_span.value
            if j >= len(self.taken_by):
                return None
            self.next_span.value = j + 1
            self.taken_by[j] = k
        return j

    def close(self) -> None:
        """No span is taken any more (Ctrl-C)."""
        with self.next_span.get_lock():
            self.next_span.value = len(self.taken_by)


Result = tuple[int, RunSummary | None, str | None]


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
        board.ready.wait()
        offsets: list[int] = board.cuts[:]
        if offsets[0] < 0:
            return
        while True:
            taken = board.take(k)
            if taken is None:
                return
            j = taken
            progress = SpanProgress(offsets[j], offsets[j + 1], board.done[j], board.packets[j])
            summary = analyze_span(config, reader, offsets, j, Path(dirs[j]), progress)
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
) -> RunSummary | None:
    """Analyze ``reader``'s file in spans (``span_targets``) on ``workers`` processes, this one
    included, into tables in ``outdir``; None when the file cannot be cut (the caller shards
    by flow instead). ``CutMissed``: a cut was not at a record boundary."""
    started = time.monotonic()
    if config.salt is None:
        config = dataclasses.replace(config, salt=secrets.token_bytes(32))
    assert reader.path is not None and reader.size is not None
    targets = span_targets(reader.size, workers)
    n = len(targets) + 1
    ctx = multiprocessing.get_context("spawn")
    scratch = Path(tempfile.mkdtemp(prefix=".workers-", dir=outdir))
    dirs = [scratch / f"s{j}" for j in range(n)]
    for d in dirs:
        d.mkdir(mode=0o700)
    taken_by = ctx.Array("i", n)
    taken_by[:] = [-1] * n
    board = Board(
        cuts=ctx.Array("q", n + 1),
        ready=ctx.Event(),
        next_span=ctx.Value("i", 0),
        taken_by=taken_by,
        done=[ctx.Value("q", 0) for _ in range(n)],
        packets=[ctx.Value("q", 0) for _ in range(n)],
    )
    results: Queue[Result] = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            args=(k, config, reader, board, [str(d) for d in dirs], results),
            name=f"dicom-analyzer-worker-{k}",
        )
        for k in range(1, workers)
    ]
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

    merger = Merger(ctx, config, outdir, fmt)

    def abandon() -> None:
        """Nothing of this run is merged: the processes end, the scratch goes."""
        for p in procs:
            p.join(30)
        merger.cancel()
        shutil.rmtree(scratch, ignore_errors=True)

    reported: set[int] = set()
    try:
        for p in procs:
            start_lean(p)  # they import while the cuts are found
        cuts = pcap_cuts_at(reader.path, targets)
        board.cuts[:] = cuts if cuts is not None else [-1] * (n + 1)
        board.ready.set()
        if cuts is None:
            abandon()
            return None
        while not interrupted:
            try:
                taken = board.take(0)
                if taken is None:
                    break
                j = taken
                span = SpanProgress(cuts[j], cuts[j + 1], board.done[j], board.packets[j], show)
                summaries[j] = analyze_span(config, reader, cuts, j, dirs[j], span)
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
            waiting = [j for j in range(n) if board.taken_by[j] > 0 and j not in reported]
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
        for p in procs:
            p.join(30)
        raise
    finally:
        progress.done()
    if errors:  # no table that silently lacks a span
        abandon()
        raise RuntimeError("; ".join(errors))
    ks = sorted(summaries)
    if not interrupted:
        wrong = [j for j in ks if j + 1 < n and summaries[j].span_end != cuts[j + 1]]
        if wrong:  # a cut that is not where the records are: nothing of this run is used
            abandon()
            raise CutMissed(
                f"span {wrong[0]} ended at offset {summaries[wrong[0]].span_end}, "
                f"not at its cut {cuts[wrong[0] + 1]}"
            )
    try:
        merger.start_merge([[str(dirs[j]), summaries[j].followed] for j in ks])
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


class Merger:
    """The merge in a process of its own, started with the workers (it imports meanwhile): the
    main process, which analysed span 0, would otherwise add the merge's peak to what its own
    tables left behind. Ctrl-C does not stop it (the merge of what was decoded must run)."""

    def __init__(
        self, ctx: multiprocessing.context.SpawnContext, config: Config, outdir: Path, fmt: str
    ) -> None:
        self.go: Queue[list[list[object]] | None] = ctx.Queue()
        self.done: Queue[tuple[RunSummary, int, dict[str, int]] | str] = ctx.Queue()
        self.proc = ctx.Process(
            target=_merger,
            args=(config, str(outdir), fmt, self.go, self.done),
            name="dicom-analyzer-merge",
            daemon=True,  # never outlives the main process, whatever stops it
        )
        start_lean(self.proc)
        if self.proc.pid is not None:
            # lowest priority: it imports while every core analyses a span, and would take
            # their time; by the time it merges, nothing else runs
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, self.proc.pid, 19)

    def start_merge(self, parts: list[list[object]]) -> None:
        self.go.put(parts)

    def result(self) -> tuple[RunSummary, int, dict[str, int]]:
        while True:
            try:
                got = self.done.get(timeout=0.5)
                break
            except queue.Empty:
                if not self.proc.is_alive() and self.done.empty():
                    got = f"ended without a result (exit code {self.proc.exitcode})"
                    break
        if isinstance(got, str):
            self.proc.join(30)
            raise RuntimeError(f"merge: {got}")
        return got  # not joined: it exits while the caller goes on (a daemon, joined at exit)

    def cancel(self) -> None:
        self.go.put(None)
        self.proc.join(30)


def _merger(
    config: Config,
    outdir: str,
    fmt: str,
    go: Queue[list[list[object]] | None],
    done: Queue[tuple[RunSummary, int, dict[str, int]] | str],
) -> None:
    leave_out()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parts = go.get()
    if parts is None:
        return
    try:
        dirs = [Path(str(d)) for d, _ in parts]
        drops = fragments(dirs, [{"followed": followed} for _, followed in parts])
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


__all__ = ["MIN_SPAN", "CutMissed", "analyze_span", "run_spans", "splittable"]
