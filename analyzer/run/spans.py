"""``analyze --workers N`` on one large plain pcap file: the file cut in time, not by flow.

Sharding by flow hash (``run/workers.py``) makes every worker read and frame the whole file,
which costs each of them about a fifth of a whole run on bulk C-STORE traffic. A plain pcap
file can instead be cut into N spans of records of about equal size (``pcap_cuts``, at record
boundaries): worker ``k`` reads only its span, as the cluster's tasks read their run of files
(``run/carry.py``): the flows still open at its span's end are followed into the rest of the
file (only their packets are analysed; the others move the clock, and a fast check skips them
once the span is done), and stop being followed when they end. The next span's worker sees
their tail as a flow begun mid-stream; the merge drops those fragments
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
from collections.abc import Iterator
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from analyzer.capture import CaptureReader, Record, WeirdSink
from analyzer.capture.formats import PCAP_MAGIC, pcap_cuts
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


class SpanProgress(Progress):
    """A span's progress (bytes from its start), published through shared counters."""

    def __init__(self, start: int, done: Synchronized[int], packets: Synchronized[int]) -> None:
        super().__init__(None, enabled=False)
        self.origin, self.done_bytes, self.packets = start, done, packets

    def update(self, done_bytes: int, packets: int) -> None:
        self.done_bytes.value = max(0, done_bytes - self.origin)
        self.packets.value = packets


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


def _worker(
    k: int,
    config: Config,
    reader: CaptureReader,
    cuts: SynchronizedArray[int],
    ready: Event,
    outdir: str,
    done: Synchronized[int],
    packets: Synchronized[int],
    results: Queue[tuple[int, RunSummary | None, str | None]],
) -> None:
    leave_out()  # as the CLI (start_lean made it so already when the CLI started it)
    signal.signal(signal.SIGINT, interrupt_once)
    try:
        ready.wait()
        offsets: list[int] = cuts[:]
        if offsets[0] < 0:
            results.put((k, None, "the file could not be cut"))
            return
        progress = SpanProgress(offsets[k], done, packets)
        summary = analyze_span(config, reader, offsets, k, Path(outdir), progress)
        results.put((k, summary, None))
    except KeyboardInterrupt:
        results.put((k, None, INTERRUPTED))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        results.put((k, None, f"{type(exc).__name__}: {exc}"))


def run_spans(
    config: Config,
    reader: CaptureReader,
    outdir: Path,
    fmt: str,
    progress: Progress,
    workers: int,
) -> RunSummary | None:
    """Analyze ``reader``'s file in ``workers`` spans into tables in ``outdir``; None when the
    file cannot be cut (the caller shards by flow instead)."""
    started = time.monotonic()
    if config.salt is None:
        config = dataclasses.replace(config, salt=secrets.token_bytes(32))
    ctx = multiprocessing.get_context("spawn")
    scratch = Path(tempfile.mkdtemp(prefix=".workers-", dir=outdir))
    dirs = [scratch / f"w{k}" for k in range(workers)]
    for d in dirs:
        d.mkdir(mode=0o700)
    done = [ctx.Value("q", 0) for _ in range(workers)]
    packets = [ctx.Value("q", 0) for _ in range(workers)]
    shared_cuts = ctx.Array("q", workers + 1)
    ready = ctx.Event()
    results: Queue[tuple[int, RunSummary | None, str | None]] = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            args=(
                k,
                config,
                reader,
                shared_cuts,
                ready,
                str(dirs[k]),
                done[k],
                packets[k],
                results,
            ),  # fmt: skip
            name=f"dicom-analyzer-worker-{k}",
        )
        for k in range(1, workers)
    ]
    summaries: dict[int, RunSummary] = {}
    errors: list[str] = []
    missing: list[int] = []

    class Overall(Progress):
        """Span 0's progress, shown with the others' (bytes and packets summed)."""

        def __init__(self) -> None:
            super().__init__(None, enabled=False)

        def update(self, done_bytes: int, n: int) -> None:
            done[0].value, packets[0].value = done_bytes - 24, n
            progress.update(sum(d.value for d in done), sum(p.value for p in packets))

    def interrupt_children() -> None:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGINT)

    merger = Merger(ctx, config, outdir, fmt)
    try:
        for p in procs:
            start_lean(p)  # they import while the cuts are found
        assert reader.path is not None
        cuts = pcap_cuts(reader.path, workers)
        shared_cuts[:] = cuts if cuts is not None else [-1] * (workers + 1)
        ready.set()
        if cuts is None:
            for p in procs:
                p.join(30)
            merger.cancel()
            shutil.rmtree(scratch, ignore_errors=True)
            return None
        summaries[0] = analyze_span(config, reader, cuts, 0, dirs[0], Overall())
        if summaries[0].interrupted:
            interrupt_children()
        while len(summaries) + len(errors) + len(missing) < workers:
            try:
                try:
                    k, summary, error = results.get(timeout=0.25)
                except queue.Empty:
                    if not any(p.is_alive() for p in procs) and results.empty():
                        break
                    progress.update(sum(d.value for d in done), sum(p.value for p in packets))
                    continue
                if summary is not None:
                    summaries[k] = summary
                elif error == INTERRUPTED:
                    summaries[0].interrupted = True
                    missing.append(k)
                else:
                    errors.append(f"worker {k}: {error}")
            except KeyboardInterrupt:
                summaries[0].interrupted = True
                interrupt_children()
    except BaseException:
        for p in procs:
            p.join(30)
        raise
    finally:
        progress.done()
    for k, p in enumerate(procs, 1):
        if k in summaries:
            continue  # joined after the merge started: its interpreter's exit takes a while
        p.join(30)
        if k not in missing and not any(e.startswith(f"worker {k}:") for e in errors):
            errors.append(f"worker {k}: ended without a result (exit code {p.exitcode})")
    if errors:  # no table that silently lacks a span
        for p in procs:
            p.join(30)
        merger.cancel()
        shutil.rmtree(scratch, ignore_errors=True)
        raise RuntimeError("; ".join(errors))
    ks = sorted(summaries)
    wrong = [
        k
        for k in ks
        if k + 1 < workers and summaries[k].span_end != cuts[k + 1] and not summaries[k].interrupted
    ]
    if wrong:  # a cut that is not where the records are: nothing of this run is used
        for p in procs:
            p.join(30)
        merger.cancel()
        shutil.rmtree(scratch, ignore_errors=True)
        raise CutMissed(
            f"span {wrong[0]} ended at offset {summaries[wrong[0]].span_end}, "
            f"not at its cut {cuts[wrong[0] + 1]}"
        )
    try:
        merger.start_merge([[str(dirs[k]), summaries[k].followed] for k in ks])
        for p in procs:
            p.join(30)
        summary, dropped, dropped_services = merger.result()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    parts = [summaries[k] for k in ks]
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
    for svc, count in dropped_services.items():
        summary.services[svc] -= count
    summary.interrupted = any(s.interrupted for s in parts)
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
