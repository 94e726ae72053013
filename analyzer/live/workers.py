"""``live --workers N``: one reader fanning records out to N worker processes.

    dumpcap -> reader thread -> main process: WorkerPool.dispatch(record)
        a plain Ethernet/IPv4/TCP frame goes to the worker of its flow's shard
        (``pipeline.plain_frame_shard``); any other frame (fragments, VLAN, IPv6, options,
        anything the decoder would report about) goes to every worker, which decodes it and
        keeps it only if it is of its shard (and only worker 0 reports frame-level anomalies)
    worker k: Pipeline(shard=(k, N)) -> per-flow tables as its own part files (``-wK``),
              summary records back to the main process with its capture clock
    main process: summary records merged by (emit_ts, uid, seq) up to the slowest worker's
              clock -> the cross-flow stage: finding parts, alerts.jsonl, syslog, the asset
              snapshot; the stats table; rotation commands to every worker

Each round the main process sends every worker its records and the newest capture time, so an
idle worker's clock still advances and never holds back the merge. A worker that dies is
recorded (``analyzer_worker_died``) and replaced; what it had written stays.
"""

from __future__ import annotations

import gc
import multiprocessing
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from analyzer.capture.formats import Record
from analyzer.config import Config
from analyzer.findings.summary import SummaryRecord, order_key
from analyzer.lean import leave_out, start_lean
from analyzer.live.stats import rss_mb
from analyzer.logs.records import TABLES
from analyzer.logs.sinks import RowSink
from analyzer.output.writer import PartWriter, TableWriter
from analyzer.protocols.service import DICOM
from analyzer.run.pipeline import Pipeline, plain_frame_shard
from analyzer.tcp.flow import Flow

Batch = list[Record]


@dataclass(slots=True)
class WorkerState:
    """What a worker last reported."""

    clock: float = float("-inf")
    open_flows: int = 0
    dicom_flows: int = 0
    associations: int = 0
    rss: float = 0.0
    ports: set[int] = field(default_factory=set)
    """Server ports where the worker recognised DICOM (the ring follows them)."""


MAIN_TABLES = ("finding", "asset")
"""Written by the main process's cross-flow stage only."""


class _Discard:
    """The sink of a table a worker never fills (its rows come from the main process)."""

    def add(self, row: object) -> None:
        pass

    def close(self) -> int:
        return 0


class _Feed:
    """A worker's summary feed: records collected between two reports."""

    def __init__(self) -> None:
        self.records: list[SummaryRecord] = []

    def put(self, record: SummaryRecord) -> None:
        self.records.append(record)


def _worker_main(
    k: int,
    n: int,
    config: Config,
    outdir: str,
    inbox: Connection,
    outbox: Connection,
    fmt: str = "parquet",
) -> None:
    """One worker: records in, per-flow part files out, summary records back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop
    leave_out()  # as the CLI (start_lean made it so already when the CLI started it)
    out = Path(outdir)
    writers: dict[str, TableWriter] = {
        name: PartWriter(name, schema, out, tag=f"-w{k}", fmt=fmt)
        for name, schema in TABLES.items()
        if name not in MAIN_TABLES
    }
    sinks: dict[str, RowSink[Any]] = {**writers, **{name: _Discard() for name in MAIN_TABLES}}
    feed = _Feed()
    ports: set[int] = set()

    def on_service(flow: Flow, service: str) -> None:
        if service == DICOM:
            ports.add(flow.resp_p)

    pipe = Pipeline(config, sinks, shard=(k, n), summaries=feed, on_service=on_service)
    gc.freeze()  # the process's long-lived objects: the cyclic collector leaves them alone

    def report() -> None:
        assoc = writers["dicom_assoc"]
        status = WorkerState(
            clock=pipe.table.now,
            open_flows=pipe.table.open_flows,
            dicom_flows=pipe.summary.services.get(DICOM, 0),
            associations=assoc.count + len(assoc.rows),
            rss=rss_mb(),
            ports=set(ports),
        )
        outbox.send((feed.records, status))
        feed.records = []

    while True:
        try:
            kind, value = inbox.recv()
        except EOFError:
            kind, value = "stop", None
        if kind == "records":
            records, clock = value
            pipe.feed(records)  # the packet path of analyze, error boundary included
            pipe.table.tick(clock)
        elif kind == "expire":
            clock = max(pipe.table.now, value)
            pipe.table.expire(clock)
            pipe.fragments.expire(clock)
        elif kind == "rotate":
            for w in writers.values():
                w.flush()
        elif kind == "stop":
            pipe.finish()
            report()
            outbox.send(None)
            return
        report()


@dataclass(slots=True)
class _Worker:
    proc: BaseProcess
    inbox: Connection
    outbox: Connection
    pending: Batch = field(default_factory=list)
    state: WorkerState = field(default_factory=WorkerState)
    held: list[SummaryRecord] = field(default_factory=list)
    outstanding: int = 0
    """Messages sent whose report has not been read yet."""


class WorkerPool:
    """The main process's side: dispatch, the merge of summary records, worker health."""

    def __init__(
        self,
        config: Config,
        n: int,
        outdir: Path,
        deliver: Callable[[SummaryRecord], None],
        report: Callable[[float, str, str], None],
        fmt: str = "parquet",
    ) -> None:
        self.config = config
        self.fmt = fmt
        self.n = n
        self.outdir = outdir
        self.deliver = deliver
        self.report = report
        self.ctx = multiprocessing.get_context("spawn")
        self.workers = [self._start(k) for k in range(n)]
        self.deaths = 0
        self.last_ts = 0.0
        self.retired = WorkerState()
        """What replaced workers had counted (their associations stay in their parts)."""

    def _start(self, k: int) -> _Worker:
        inbox_r, inbox_w = self.ctx.Pipe(duplex=False)
        outbox_r, outbox_w = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(
            target=_worker_main,
            args=(k, self.n, self.config, str(self.outdir), inbox_r, outbox_w, self.fmt),
            name=f"dicom-analyzer-live-worker-{k}",
            daemon=True,
        )
        start_lean(proc)
        inbox_r.close()
        outbox_w.close()
        return _Worker(proc, inbox_w, outbox_r)

    # -- records ----------------------------------------------------------------------------

    def dispatch(self, rec: Record) -> None:
        ts, linktype, buf, wire_len = rec
        if ts > self.last_ts:
            self.last_ts = ts
        k = plain_frame_shard(linktype, buf, wire_len, self.n)
        if k is None:
            for w in self.workers:
                w.pending.append(rec)
        else:
            self.workers[k].pending.append(rec)

    def send(self) -> None:
        """One round: each worker gets its records and the newest capture time. The reports of
        the round before are read now (one round in flight: workers decode while this process
        reads and dispatches the next records)."""
        self._round("records", lambda w: (w.pending, self.last_ts), in_flight=1)
        for w in self.workers:
            w.pending = []

    def command(self, kind: str, value: object = None) -> None:
        """A command every worker has carried out when this returns."""
        self._round(kind, lambda w: value, in_flight=0)

    def _round(self, kind: str, value: Callable[[_Worker], object], in_flight: int) -> None:
        for k, w in enumerate(self.workers):
            try:
                w.inbox.send((kind, value(w)))
                w.outstanding += 1
            except (BrokenPipeError, OSError):
                self._replace(k)
        for w in list(self.workers):
            while w.outstanding > in_flight and w in self.workers:
                self._collect(w)
        self._release()

    def _collect(self, w: _Worker) -> None:
        try:
            msg = w.outbox.recv()
        except (EOFError, OSError):
            self._replace(self.workers.index(w))
            return
        w.outstanding -= 1
        if msg is None:
            return
        records, state = msg
        w.held.extend(records)
        w.state = state

    def _replace(self, k: int) -> None:
        old = self.workers[k]
        old.proc.join(0.1)
        code = old.proc.exitcode
        self.deaths += 1
        self.report(
            time.time(),
            "analyzer_worker_died",
            f"worker {k} of {self.n} ended (exit code {code}); its open flows are lost, "
            "what it had written is kept; restarting it",
        )
        # what it had reported still goes to the cross-flow stage, in order
        held = old.held
        self.retired.dicom_flows += old.state.dicom_flows
        self.retired.associations += old.state.associations
        self.retired.ports |= old.state.ports
        self.workers[k] = self._start(k)
        self.workers[k].held = held

    def _release(self, final: bool = False) -> None:
        """Hand the cross-flow stage every record older than the slowest worker's clock."""
        watermark = float("inf") if final else min(w.state.clock for w in self.workers)
        ready: list[SummaryRecord] = []
        for w in self.workers:
            if not w.held:
                continue
            keep: list[SummaryRecord] = []
            for r in w.held:
                (ready if r.emit_ts < watermark else keep).append(r)
            w.held = keep
        ready.sort(key=order_key)
        for r in ready:
            self.deliver(r)

    # -- status and end ---------------------------------------------------------------------

    def totals(self) -> WorkerState:
        r = self.retired
        s = WorkerState(dicom_flows=r.dicom_flows, associations=r.associations, ports=set(r.ports))
        for w in self.workers:
            s.open_flows += w.state.open_flows
            s.dicom_flows += w.state.dicom_flows
            s.associations += w.state.associations
            s.rss += w.state.rss
            s.ports |= w.state.ports
        return s

    def stop(self) -> None:
        """Every worker finishes its flows and writes its last parts; all records are used."""
        for w in self.workers:
            while w.outstanding > 0 and w in self.workers:
                self._collect(w)
        for w in self.workers:
            try:
                w.inbox.send(("records", (w.pending, self.last_ts)))
                w.inbox.send(("stop", None))
            except (BrokenPipeError, OSError):
                continue
        for w in self.workers:
            while True:
                try:
                    msg = w.outbox.recv()
                except (EOFError, OSError):
                    break
                if msg is None:
                    break
                records, state = msg
                w.held.extend(records)
                w.state = state
            w.proc.join(30)
        self._release(final=True)


__all__ = ["WorkerPool"]
