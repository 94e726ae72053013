"""The processes of a span run (``run/spans.py``), started before this process imports the
analysis.

A spawned process imports the analysis afresh (pydicom, polars, the decoders: about as long
as this process took). Started only once this process had imported all of it, the span worker
began its first span that much later, on a core idle meanwhile. The command line therefore
starts them (``launch_spans``) as soon as it knows the input, the output directory and the
number of workers, and only then imports the rest; ``run_spans`` takes the launch over. This
module imports nothing heavy (``tests/run/test_launch.py`` checks it), and neither do the
targets it names (``Entry``): each imports ``run/spans.py`` in its own process.

Everything the processes share is made here, before they start (shared counters and events
pass only to a process at its start): the ``Board``, the result queue, the merge's queues.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import multiprocessing
import os
import queue
import secrets
import shutil
import signal
import tempfile
import time
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzer.capture import CaptureReader
from analyzer.capture.formats import PCAP_MAGIC, pcap_cut_near
from analyzer.config import Config
from analyzer.lean import start_lean

if TYPE_CHECKING:
    from multiprocessing.queues import Queue

    from analyzer.run.pipeline import RunSummary

MIN_SPAN = 64 << 20
"""Bytes per worker below which a file is sharded by flow hash instead (spans cost a fixed
start-up and the fragments of the flows that cross each cut)."""
STEAL_MIN = 64 << 20
"""Bytes a span must still have ahead of its reader for a free process to take the second half
of them (``Board.steal``): a cut costs both sides about as much as 25 MB of analysis."""


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def splittable(reader: CaptureReader, workers: int) -> bool:
    """Can ``reader`` be cut into ``workers`` spans?"""
    if reader.path is None or reader.size is None or reader.size < workers * MIN_SPAN:
        return False
    try:
        with open(reader.path, "rb") as fh:
            return fh.read(4) in PCAP_MAGIC
    except OSError:
        return False


def spans_apply(
    inputs: list[str], readers: list[CaptureReader], workers: int, export: bool = False
) -> bool:
    """Does ``analyze --workers`` cut this input in spans (else: flow-hash sharding)?"""
    return (
        workers > 1
        and not export
        and inputs != ["-"]
        and len(readers) == 1
        and splittable(readers[0], workers)
    )


def span_targets(size: int, workers: int) -> list[int]:
    """Where the first cuts of a ``size``-byte file aim: one span per process, of equal size.
    A process that finishes its span while another still has at least ``STEAL_MIN`` bytes
    ahead takes the second half of them (``Board.steal``), so that the processes finish
    together however the load of the machine or the traffic's density differ between them,
    with a cut only where one is needed."""
    return [size * k // workers for k in range(1, workers)]


def room(workers: int) -> int:
    """Spans a run's board holds: one per process, then the steals."""
    return 4 * workers + 4


@dataclasses.dataclass(slots=True)
class Board:
    """What the processes of one run share: the spans (their first cuts, then one more per
    steal), who took which, how far each one's reader may have read, each one's progress. Its
    lock is ``next_span``'s."""

    starts: SynchronizedArray[int]
    """Per span, the offset of its first record (-1 in the first: the run does not take place)."""
    ends: SynchronizedArray[int]
    """Per span, where its records end: moved earlier when another process takes the rest."""
    reach: SynchronizedArray[int]
    """Per span, the offset before which its reader may take a record before it asks for its
    end again (``SpanEnd``): a steal cuts at or after it."""
    spans: Synchronized[int]
    """Spans on the board: the first ones (one per process), then one per steal."""
    ready: Event
    next_span: Synchronized[int]
    taken_by: SynchronizedArray[int]
    """Per span, the process that took it (0: the main process), -1 while nobody has."""
    done: list[Synchronized[int]]
    packets: list[Synchronized[int]]
    steal_min: int = STEAL_MIN

    @classmethod
    def new(cls, ctx: SpawnContext, n: int, steal_min: int) -> Board:
        """An empty board with room for ``n`` spans, to pass to processes at their start."""
        taken_by = ctx.Array("i", n)
        taken_by[:] = [-1] * n
        return cls(
            starts=ctx.Array("q", n),
            ends=ctx.Array("q", n),
            reach=ctx.Array("q", n),
            spans=ctx.Value("i", 0),
            ready=ctx.Event(),
            next_span=ctx.Value("i", 0),
            taken_by=taken_by,
            done=[ctx.Value("q", 0) for _ in range(n)],
            packets=[ctx.Value("q", 0) for _ in range(n)],
            steal_min=steal_min,
        )

    def set_cuts(self, cuts: list[int] | None) -> None:
        """The first spans, ``cuts[k]`` to ``cuts[k + 1]`` (None: the run does not take place),
        then ``ready``."""
        with self.next_span.get_lock():
            if cuts is None:
                self.starts[0] = -1
                self.spans.value = 0
            else:
                n = len(cuts) - 1
                self.starts[:n] = cuts[:-1]
                self.ends[:n] = cuts[1:]
                self.reach[:n] = cuts[:-1]
                self.spans.value = n
        self.ready.set()

    def abandoned(self) -> bool:
        return bool(self.starts[0] < 0)

    def take(self, k: int) -> int | None:
        """The next span for process ``k`` that nobody took yet, or None."""
        with self.next_span.get_lock():
            j: int = self.next_span.value
            if j >= self.spans.value:
                return None
            self.next_span.value = j + 1
            self.taken_by[j] = k
        return j

    def steal(self, k: int, path: str | os.PathLike[str]) -> int | None:
        """For process ``k``, once no span is left to take: the second half of what the span
        with most bytes ahead of its reader still has (at least ``steal_min``), cut at a record
        boundary (``pcap_cut_near``) that its reader has not reached; None when there is no
        such span (or no room on the board, or no boundary found, or the board is closed)."""
        while True:
            with self.next_span.get_lock():
                if self._closed() or self.spans.value >= len(self.taken_by):
                    return None
                best, most = -1, self.steal_min - 1
                for j in range(self.spans.value):
                    if self.taken_by[j] >= 0 and self.ends[j] - self.reach[j] > most:
                        best, most = j, self.ends[j] - self.reach[j]
                if best < 0:
                    return None
                end = self.ends[best]
                target = self.reach[best] + most // 2
            cut = pcap_cut_near(path, target)
            if cut is None or cut >= end:
                return None
            with self.next_span.get_lock():
                if self._closed():
                    return None
                if self.ends[best] == end and self.reach[best] <= cut:
                    m: int = self.spans.value
                    if m >= len(self.taken_by):
                        return None
                    self.starts[m], self.ends[m], self.reach[m] = cut, end, cut
                    self.taken_by[m] = k
                    self.ends[best] = cut
                    self.spans.value = m + 1
                    self.next_span.value = max(self.next_span.value, m + 1)
                    return m
            # its reader went past the cut meanwhile, or another process stole first: again

    def bound(self, j: int) -> SpanEnd:
        return SpanEnd(self, j)

    def finish(self, j: int) -> int:
        """Span ``j``'s reader is done: nothing more of it is stolen; its end."""
        with self.next_span.get_lock():
            end: int = self.ends[j]
            self.reach[j] = end
        return end

    def order(self) -> list[int]:
        """The spans on the board in the file's order."""
        return sorted(range(self.spans.value), key=lambda j: self.starts[j])

    def close(self) -> None:
        """No span is taken or stolen any more (Ctrl-C)."""
        with self.next_span.get_lock():
            self.next_span.value = len(self.taken_by) + 1

    def _closed(self) -> bool:
        """Was ``close`` called? (Asked under the lock; ``take`` sees it as no span left.)"""
        return bool(self.next_span.value > len(self.taken_by))

    def wait_ready(self) -> bool:
        """In a worker: wait for the cuts; False when the process that started this one is
        gone (it would never set them)."""
        while not self.ready.wait(0.5):
            if parent_gone():
                return False
        return True


@dataclasses.dataclass(frozen=True, slots=True)
class SpanEnd:
    """Span ``j``'s end, as its reader asks for it before each window of records (``Mapped``):
    it may have moved earlier (a steal), never before what the reader was told it may read,
    and the reader's position plus the window becomes what it may read before it asks again."""

    board: Board
    j: int

    def __call__(self, pos: int, window: int) -> int:
        board, j = self.board, self.j
        with board.next_span.get_lock():
            end: int = board.ends[j]
            if min(end, pos + window) > board.reach[j]:
                board.reach[j] = min(end, pos + window)
        return end


def parent_gone() -> bool:
    """In a started process: has the process that started it ended?"""
    parent = multiprocessing.parent_process()
    return parent is not None and not parent.is_alive()


Result = tuple[int, "RunSummary | None", "str | None"]


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """A process's target named by module and function: the module is imported in that
    process only (this module stays below ``run/spans.py`` in the import layers)."""

    module: str
    name: str

    def __call__(self, *args: Any) -> None:
        # a Ctrl-C while it imports is the main process's to handle (it ends the launch or
        # the run); the target then sets its own handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        getattr(importlib.import_module(self.module), self.name)(*args)


SPAN_WORKER = Entry("analyzer.run.spans", "_worker")
MERGE = Entry("analyzer.run.spans", "_merger")


class Merger:
    """The merge in a process of its own, started with the workers (it imports meanwhile): the
    main process, which analysed span 0, would otherwise add the merge's peak to what its own
    tables left behind. Ctrl-C does not stop it (the merge of what was decoded must run)."""

    def __init__(self, ctx: SpawnContext, config: Config, outdir: Path, fmt: str) -> None:
        self.go: Queue[list[list[object]] | None] = ctx.Queue()
        self.done: Queue[tuple[RunSummary, int, dict[str, int]] | str] = ctx.Queue()
        self.proc = ctx.Process(
            target=MERGE,
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


@dataclasses.dataclass(slots=True)
class Launch:
    """The started processes of one span run, until ``run_spans`` takes them (``taken``)."""

    config: Config
    """The run's configuration, with the salt every process hashes with."""
    targets: list[int]
    scratch: Path
    dirs: list[Path]
    board: Board
    results: Queue[Result]
    procs: list[SpawnProcess]
    merger: Merger
    started: float
    taken: bool = False

    def cancel(self) -> None:
        """The run will not take place (an error before it): ``stop``. Nothing once
        ``run_spans`` took the launch over."""
        if self.taken:
            return
        self.taken = True
        self.stop()

    def stop(self) -> None:
        """Nothing of the run is merged: no span is taken any more (without cuts, none was),
        the processes end, the scratch goes."""
        if not self.board.ready.is_set():
            self.board.set_cuts(None)
        self.board.close()
        for p in self.procs:
            p.join(30)
        self.merger.cancel()
        shutil.rmtree(self.scratch, ignore_errors=True)


def launch_spans(
    config: Config, reader: CaptureReader, outdir: Path, fmt: str, workers: int
) -> Launch:
    """Start the span workers 1..``workers``-1 and the merge process of a span run of
    ``reader`` into ``outdir``; they import while this process goes on."""
    started = time.monotonic()
    if config.salt is None:
        config = dataclasses.replace(config, salt=secrets.token_bytes(32))
    assert reader.size is not None
    targets = span_targets(reader.size, workers)
    n = room(workers)
    ctx = multiprocessing.get_context("spawn")
    scratch = Path(tempfile.mkdtemp(prefix=".workers-", dir=outdir))
    dirs = [scratch / f"s{j}" for j in range(n)]
    for d in dirs:
        d.mkdir(mode=0o700)
    board = Board.new(ctx, n, STEAL_MIN)
    results: Queue[Result] = ctx.Queue()
    procs = [
        ctx.Process(
            target=SPAN_WORKER,
            args=(k, config, reader, board, [str(d) for d in dirs], results),
            name=f"dicom-analyzer-worker-{k}",
        )
        for k in range(1, workers)
    ]
    for p in procs:
        start_lean(p)
    merger = Merger(ctx, config, outdir, fmt)
    return Launch(config, targets, scratch, dirs, board, results, procs, merger, started)


__all__ = [
    "MERGE",
    "MIN_SPAN",
    "SPAN_WORKER",
    "STEAL_MIN",
    "Board",
    "Entry",
    "Launch",
    "Merger",
    "SpanEnd",
    "launch_spans",
    "parent_gone",
    "room",
    "span_targets",
    "spans_apply",
    "splittable",
    "usable_cores",
]
