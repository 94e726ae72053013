"""``analyze --workers N``: the per-flow stage in N processes, the cross-flow stage once.

Every worker reads the whole input (files are opened by each worker; standard input is read
once by the parent and copied to every worker through a pipe), decodes every packet's link and
IP layers (so every fragment of a datagram is reassembled everywhere), and keeps only the TCP
flows of its shard: a symmetric hash of the 4-tuple (``pipeline.flow_shard``), so both
directions of a flow land in the same worker. Packets of other shards still move the worker's
clock, so flows time out as in a single run. Each worker writes its per-flow tables and its
summary records into a private scratch directory; the parent then

- concatenates the per-flow tables (``conn``, ``dicom_*``, ``dimse``, ``phi``, ``weird``),
  sorted by time, into the output format;
- runs the cross-flow stage once over all workers' summary records merged in
  ``(emit_ts, uid, seq)`` order (``findings.replay``): the ``finding`` table, ``alerts.jsonl``
  and the ``asset`` inventory;
- removes the scratch directory.

Hashes need one salt across workers: without ``[privacy] salt`` the parent draws a random one
for the run and hands it to the workers in memory (never written). Ctrl-C reaches every worker;
each stops, writes what it has, and the merge still runs.
"""

from __future__ import annotations

import dataclasses
import io
import multiprocessing
import os
import queue
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import IO, TYPE_CHECKING

from analyzer.capture import CaptureReader, open_inputs
from analyzer.config import Config
from analyzer.lean import leave_out, start_lean
from analyzer.run.launch import Launch, spans_apply, usable_cores
from analyzer.run.merge import interrupt_once as _interrupt_once
from analyzer.run.merge import merge_parts as _merge
from analyzer.run.pipeline import RunSummary, run_analysis
from analyzer.run.progress import Progress
from analyzer.run.spans import CutMissed, run_spans

if TYPE_CHECKING:
    from multiprocessing.queues import Queue

    from _typeshed import WriteableBuffer

    from analyzer.export.tap import ExportJob

INTERRUPTED = "interrupted"
STDIN_CHUNK = 1 << 20


class PipeStream(io.RawIOBase):
    """A readable binary stream over a ``multiprocessing`` pipe (a worker's copy of stdin)."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn
        self.buf = b""
        self.eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: WriteableBuffer) -> int:
        if not self.buf and not self.eof:
            try:
                self.buf = self.conn.recv_bytes()
            except EOFError:
                self.buf = b""
            if not self.buf:
                self.eof = True
        view = memoryview(b).cast("B")
        n = min(len(view), len(self.buf))
        view[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


class SharedProgress(Progress):
    """A worker's progress, published to the parent through shared counters."""

    def __init__(self, done: Synchronized[int], packets: Synchronized[int]) -> None:
        super().__init__(None, enabled=False)
        self.done_bytes, self.packets = done, packets

    def update(self, done_bytes: int, packets: int) -> None:
        self.done_bytes.value = done_bytes
        self.packets.value = packets


def _worker(
    k: int,
    n: int,
    config: Config,
    inputs: list[str],
    conn: Connection | None,
    outdir: str,
    done: Synchronized[int],
    packets: Synchronized[int],
    results: Queue[tuple[int, RunSummary | None, str | None]],
    export: ExportJob | None = None,
) -> None:
    leave_out()  # as the CLI (start_lean made it so already when the CLI started it)
    signal.signal(signal.SIGINT, _interrupt_once)
    try:
        if conn is not None:
            stream: IO[bytes] = io.BufferedReader(PipeStream(conn), STDIN_CHUNK)
            readers = [CaptureReader("<stdin>", None, None, None, stream)]
        else:
            readers, _ = open_inputs(inputs)
        summary = _shard(
            config, readers, Path(outdir), SharedProgress(done, packets), (k, n), export
        )
        results.put((k, summary, None))
    except KeyboardInterrupt:
        results.put((k, None, INTERRUPTED))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        results.put((k, None, f"{type(exc).__name__}: {exc}"))


def _shard(
    config: Config,
    readers: list[CaptureReader],
    outdir: Path,
    progress: Progress,
    shard: tuple[int, int],
    export: ExportJob | None,
) -> RunSummary:
    """One shard's per-flow stage into ``outdir`` (with ``export``: its objects too)."""
    if export is None:
        return run_analysis(config, readers, outdir, "parquet", progress, shard=shard)
    from analyzer.export.tap import export_taps

    hooks = export_taps(config, export, outdir, "parquet")
    return run_analysis(
        config,
        readers,
        outdir,
        "parquet",
        progress,
        shard=shard,
        taps=hooks.taps,
        extra_writers=hooks.writers,
        http_objects=hooks.http,
    )


def _tee_stdin(conns: list[Connection]) -> None:
    fd = sys.stdin.fileno()  # unbuffered: a daemon thread must hold no lock at exit
    try:
        while chunk := os.read(fd, STDIN_CHUNK):
            for c in conns:
                c.send_bytes(chunk)
    except (BrokenPipeError, OSError):
        pass
    finally:
        for c in conns:
            try:
                c.send_bytes(b"")
                c.close()
            except OSError:
                pass


def run_parallel(
    config: Config,
    inputs: list[str],
    readers: list[CaptureReader],
    outdir: Path,
    fmt: str,
    progress: Progress,
    workers: int,
    export: ExportJob | None = None,
    launch: Launch | None = None,
) -> RunSummary:
    """Analyze ``inputs`` with ``workers`` processes into tables in ``outdir``; with
    ``export``, each process writes its flows' objects and the manifests are merged.
    ``launch``: the processes of a span run, started already (``run/launch.py``)."""
    missed: str | None = None
    if launch is not None or spans_apply(inputs, readers, workers, export is not None):
        try:
            spans = run_spans(config, readers[0], outdir, fmt, progress, workers, launch)
        except CutMissed as exc:
            spans, missed = None, str(exc)
        if spans is not None:
            return spans
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
    results: Queue[tuple[int, RunSummary | None, str | None]] = ctx.Queue()
    stdin = inputs == ["-"]
    pipes = [ctx.Pipe(duplex=False) for _ in range(workers)] if stdin else []
    # shards 1..N-1 in new processes; shard 0 here (this process has everything imported)
    procs = [
        ctx.Process(
            target=_worker,
            args=(
                k,
                workers,
                config,
                inputs,
                pipes[k][0] if stdin else None,
                str(dirs[k]),
                done[k],
                packets[k],
                results,
                export,
            ),  # fmt: skip
            name=f"dicom-analyzer-worker-{k}",
        )
        for k in range(1, workers)
    ]
    summaries: dict[int, RunSummary] = {}
    errors: list[str] = []
    missing: list[int] = []

    def collect(timeout: float) -> None:
        try:
            k, summary, error = results.get(timeout=timeout)
        except queue.Empty:
            return
        if summary is not None:
            summaries[k] = summary
        elif error == INTERRUPTED:
            summaries[0].interrupted = True
            missing.append(k)
        else:
            errors.append(f"worker {k}: {error}")

    def interrupt_children() -> None:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGINT)

    class Overall(Progress):
        """Shard 0's progress, shown as the slowest worker's."""

        def __init__(self) -> None:
            super().__init__(None, enabled=False)

        def update(self, done_bytes: int, n: int) -> None:
            done[0].value, packets[0].value = done_bytes, n
            progress.update(min(d.value for d in done), min(p.value for p in packets))

    try:
        for p in procs:
            start_lean(p)
        own_readers = readers
        if stdin:
            threading.Thread(target=_tee_stdin, args=([w for _, w in pipes],), daemon=True).start()
            own_stream: IO[bytes] = io.BufferedReader(PipeStream(pipes[0][0]), STDIN_CHUNK)
            own_readers = [CaptureReader("<stdin>", None, None, None, own_stream)]
        summaries[0] = _shard(config, own_readers, dirs[0], Overall(), (0, workers), export)
        if summaries[0].interrupted:
            interrupt_children()
        while len(summaries) + len(errors) + len(missing) < workers:
            try:
                collect(0.25)
                if not any(p.is_alive() for p in procs) and results.empty():
                    break
                progress.update(min(d.value for d in done), min(p.value for p in packets))
            except KeyboardInterrupt:
                summaries[0].interrupted = True
                interrupt_children()
    finally:
        progress.done()
        for p in procs:
            p.join(30)
    interrupted = any(s.interrupted for s in summaries.values())
    for k, p in enumerate(procs, 1):
        if (
            k not in summaries
            and k not in missing
            and not any(e.startswith(f"worker {k}:") for e in errors)
        ):
            errors.append(f"worker {k}: ended without a result (exit code {p.exitcode})")
    if errors:  # a worker's internal error: no table that silently lacks a shard
        shutil.rmtree(scratch, ignore_errors=True)
        raise RuntimeError("; ".join(errors))
    try:
        summary = _merge(
            config, [dirs[k] for k in sorted(summaries)], outdir, fmt, export is not None
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    parts = [summaries[k] for k in sorted(summaries)]
    first = parts[0] if parts else RunSummary()
    summary.inputs = len(readers) or 1
    summary.stats = first.stats
    summary.flows = sum(s.flows for s in parts)
    summary.flows_evicted = sum(s.flows_evicted for s in parts)
    summary.segments_bad_checksum = sum(s.segments_bad_checksum for s in parts)
    summary.segments_offloaded = sum(s.segments_offloaded for s in parts)
    for s in parts:
        for svc, count in s.services.items():
            summary.services[svc] = summary.services.get(svc, 0) + count
        summary.warnings.extend(w for w in s.warnings if w not in summary.warnings)
    if missed is not None:
        summary.warnings.append(
            f"the file was analysed again by flow hash: its cut in time missed ({missed})"
        )
    summary.interrupted = interrupted or any(s.interrupted for s in parts)
    summary.seconds = time.monotonic() - started
    return summary


__all__ = ["run_parallel", "usable_cores"]
