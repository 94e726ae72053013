"""``dicom-analyzer live``: the offline pipeline fed by dumpcap, for days.

    dumpcap -w - ──pipe──> reader thread (pcapng records) ──bounded queue──> main thread:
        Pipeline.packet ... findings -> alerts.jsonl (+ stdout, syslog) at once
        every --stats-interval: a stats row and a line on stderr
        every --rotate-minutes / --rotate-mb: each table's rows -> OUTDIR/<table>/part-*.parquet
        idle flows expire on the wall clock even when no packet arrives
    dumpcap dies -> the gap is recorded (weird + stats) and it is restarted with back-off.

A full queue blocks the reader, the pipe fills, and dumpcap (not us) drops and counts it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from analyzer.capture.formats import read_pcapng_batches
from analyzer.config import Config
from analyzer.errors import InputError, OutputError
from analyzer.live.alerts import alert_sinks
from analyzer.live.dumpcap import CaptureError, Dumpcap, RunResult, list_interfaces
from analyzer.live.ring import Ring
from analyzer.live.stats import STATS, KernelCounters, rss_mb
from analyzer.live.workers import WorkerPool
from analyzer.logs.records import TABLES, Stats
from analyzer.output.writer import PartWriter, SnapshotWriter, TableWriter
from analyzer.protocols.service import DICOM
from analyzer.run.pipeline import Pipeline, release_free_memory
from analyzer.tcp.flow import Flow

QUEUE_RECORDS = 50_000
"""About the records the reader thread may be ahead (in batches: ``QUEUE_BATCHES``)."""
QUEUE_BATCHES = QUEUE_RECORDS // 64
"""A batch is what one read of dumpcap's pipe brought, at most 64 records
(``read_pcapng_batches``): the queue holds at most ``QUEUE_RECORDS`` records, as before."""
BATCH = 4096
START_TIMEOUT = 10.0
EXPIRE_EVERY = 5.0


@dataclass(slots=True)
class LiveOptions:
    interfaces: list[str]
    outdir: Path
    bpf: str | None = None
    rotate_seconds: float = 300.0
    rotate_bytes: int = 64_000_000
    stats_interval: float = 60.0
    alerts_stdout: bool = False
    syslog: str | None = None
    ring_dir: Path | None = None
    ring_files: int = 10
    ring_mb: int = 100
    duration: float | None = None
    quiet: bool = False
    restart_delay: float = 1.0
    max_restart_delay: float = 30.0
    buffer_mb: int = 64
    """Kernel capture buffer per interface (dumpcap -B): bursts wait there, not dropped."""
    workers: int = 1
    """Worker processes for the per-flow stage (``live/workers.py``); 1: all in this one."""
    fmt: str = "parquet"
    """Part files as Parquet, or as whole Zeek logs (``zeek``, ``zeek-json``)."""


@dataclass(slots=True)
class LiveSummary:
    packets: int = 0
    restarts: int = 0
    rotations: int = 0
    findings: int = 0
    stopped_by: str = ""


class _FirstBytes:
    """Wraps dumpcap's stdout; notes when the first bytes (the pcapng header) arrive."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.started = threading.Event()

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if data:
            self.started.set()
        return data


@dataclass(slots=True)
class _Interval:
    started: float
    packets: int = 0
    wire_bytes: int = 0
    lag: float = 0.0
    gap: float = 0.0


@dataclass(slots=True)
class _Totals:
    received: int = 0
    dropped: int = 0
    runs: int = 0
    dicom_ports: set[int] = field(default_factory=set)


class LiveMonitor:
    def __init__(self, config: Config, options: LiveOptions) -> None:
        self.config = config
        self.opt = options
        self.outdir = options.outdir
        self.queue: queue.Queue[tuple[str, Any]] = queue.Queue(QUEUE_BATCHES)
        self._read_records = 0
        """Records the reader thread has queued (written by it alone)."""
        self._taken_records = 0
        """Records the loop has taken from the queue (written by it alone)."""
        self.stop_requested = ""
        self.summary = LiveSummary()
        self.totals = _Totals(dicom_ports=set(config.dicom_ports))
        self.kernel = KernelCounters(options.interfaces)
        self._generation = 0
        self._dumpcap: Dumpcap | None = None
        self._stop_sent = 0.0
        self._restart_at: float | None = None
        self._delay = options.restart_delay
        self._down_since: float | None = None
        self._ports_changed = False
        self.ring: Ring | None = None
        self.pipe: Pipeline | None = None
        self.stats_writer: PartWriter | None = None
        self.writers: dict[str, TableWriter] = {}
        self._sinks: list[Callable[[dict[str, Any]], None]] = []
        self.interval = _Interval(time.monotonic())
        self.pool: WorkerPool | None = None

    # -- setup ------------------------------------------------------------------------------

    def _check_interfaces(self) -> None:
        probe = Dumpcap(self.opt.interfaces, to_stdout=False)
        known = list_interfaces(probe.exe)
        missing = [i for i in self.opt.interfaces if i not in known]
        if missing:
            raise CaptureError(
                f"no such capture interface: {', '.join(missing)} "
                f"(dumpcap sees: {', '.join(known) or 'none'})"
            )

    def _open_outputs(self) -> None:
        out = self.outdir
        self.writers = {
            name: (
                SnapshotWriter(name, schema, out, fmt=self.opt.fmt)
                if name == "asset"
                else PartWriter(name, schema, out, fmt=self.opt.fmt)
            )
            for name, schema in TABLES.items()
        }
        self.stats_writer = PartWriter("stats", STATS, out, fmt=self.opt.fmt)
        if self.opt.workers > 1 and self.config.salt is None:
            # one salt for the run, shared in memory with the workers, never written
            self.config = dataclasses.replace(self.config, salt=secrets.token_bytes(32))
        self.pipe = Pipeline(
            self.config,
            self.writers,
            alerts=out / "alerts.jsonl",
            on_service=self._on_service,
            append_alerts=True,
        )
        self._sinks = alert_sinks(
            self.opt.alerts_stdout, self.opt.syslog, self.config.alerts_format == "ecs"
        )
        self.pipe.engine.listeners.extend(self._sinks)
        if self.opt.workers > 1:
            cross = self.pipe.engine.cross
            assert cross is not None
            self.pool = WorkerPool(
                self.config,
                self.opt.workers,
                out,
                cross.put,
                self.pipe.weirds.capture,
                self.opt.fmt,
            )

    def _follow_ports(self, ports: set[int]) -> None:
        new = ports - self.totals.dicom_ports
        if new:
            self.totals.dicom_ports |= new
            self._ports_changed = True

    def _on_service(self, flow: Flow, service: str) -> None:
        if service == DICOM and flow.resp_p not in self.totals.dicom_ports:
            self.totals.dicom_ports.add(flow.resp_p)
            self._ports_changed = True

    # -- dumpcap ----------------------------------------------------------------------------

    def _start_capture(self, first: bool) -> bool:
        """Start dumpcap and its reader thread; on the first start a failure is an error."""
        self._generation += 1
        gen = self._generation
        dc = Dumpcap(self.opt.interfaces, self.opt.bpf, buffer_mb=self.opt.buffer_mb)
        stream = dc.start()
        assert stream is not None
        wrapped = _FirstBytes(stream)
        self._dumpcap = dc
        thread = threading.Thread(
            target=self._read, args=(wrapped, gen), name=f"capture-{gen}", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if wrapped.started.wait(0.05):
                break
            if not dc.running():
                res = dc.result()
                if first:
                    where = ", ".join(self.opt.interfaces)
                    raise CaptureError(f"cannot capture on {where}: {res.error or res.describe}")
                self._dumpcap = None
                return False
        self.totals.runs += 1
        return True

    def _read(self, stream: _FirstBytes, gen: int) -> None:
        put = self.queue.put
        name = "dumpcap"

        def weird(ts: float, what: str, detail: str) -> None:
            put(("weird", (ts, what, detail)))

        try:
            # a batch per read of the pipe: a queue operation per packet cost a quarter of
            # the loop's time at 400 Mbps
            for batch in read_pcapng_batches(stream, weird, name):  # type: ignore[arg-type]
                self._read_records += len(batch)
                put(("recs", batch))
        except (InputError, OSError, ValueError) as exc:
            put(("weird", (time.time(), "capture_stream_error", f"{name}: {exc}")))
        finally:
            put(("eof", gen))

    def _capture_ended(self, gen: int) -> None:
        dc = self._dumpcap
        if gen != self._generation or dc is None:
            return
        res = dc.result()
        self._account(res)
        if self.stop_requested:
            self._dumpcap = None
            return
        now = time.time()
        self._down_since = now
        assert self.pipe is not None
        self.pipe.weirds.capture(
            now,
            "capture_process_died",
            f"{res.describe}; restarting in {self._delay:.0f} s (traffic in between is not seen)",
        )
        self.summary.restarts += 1
        self._restart_at = time.monotonic() + self._delay
        self._dumpcap = None

    def _account(self, res: RunResult) -> None:
        for d in res.drops:
            self.totals.received += d.received
            self.totals.dropped += d.dropped

    def _maybe_restart(self) -> None:
        if self._restart_at is None or time.monotonic() < self._restart_at or self.stop_requested:
            return
        self._restart_at = None
        ok = self._start_capture(first=False)
        assert self.pipe is not None
        now = time.time()
        if ok:
            gap = now - (self._down_since or now)
            self.interval.gap += gap
            self.pipe.weirds.capture(
                now, "capture_restarted", f"dumpcap restarted after a {gap:.1f} s gap"
            )
            self._delay = self.opt.restart_delay
            self._down_since = None
        else:
            self.pipe.weirds.capture(now, "capture_restart_failed", "dumpcap failed to restart")
            self._delay = min(self._delay * 2, self.opt.max_restart_delay)
            self._restart_at = time.monotonic() + self._delay

    # -- the loop ---------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = signal.Signals(signum).name

    def run(self) -> LiveSummary:
        self._check_interfaces()
        self._open_outputs()
        assert self.pipe is not None
        if self.opt.ring_dir is not None:
            self.ring = Ring(self.opt.interfaces, self.opt.bpf, self.opt.ring_dir,
                             self.opt.ring_files, self.opt.ring_mb)  # fmt: skip
            self.ring.start(self.totals.dicom_ports)
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._start_capture(first=True)
            if not self.opt.quiet:
                print(
                    f"live: capturing on {', '.join(self.opt.interfaces)}"
                    f"{f' ({self.opt.bpf})' if self.opt.bpf else ''}; tables in {self.outdir}, "
                    f"alerts in {self.outdir / 'alerts.jsonl'}; SIGINT or SIGTERM to stop",
                    file=sys.stderr,
                    flush=True,
                )
            self._loop()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if self._dumpcap is not None:
                self._dumpcap.stop()
            if self.ring is not None:
                self.ring.stop()
        return self.summary

    def _loop(self) -> None:
        pipe = self.pipe
        assert pipe is not None
        pool = self.pool
        packet = pipe.record_handler() if pool is None else None
        strict = self.config.strict
        get = self.queue.get
        get_nowait = self.queue.get_nowait
        started = time.monotonic()
        self.interval = _Interval(started)
        next_stats = started + self.opt.stats_interval
        next_rotate = started + self.opt.rotate_seconds
        next_expire = started + EXPIRE_EVERY
        rotate_bytes = 0
        while True:
            try:
                item: tuple[str, Any] | None = get(timeout=0.2)
            except queue.Empty:
                item = None
            n = 0
            last_ts = 0.0
            while item is not None:
                kind, value = item
                if kind == "recs":
                    wire = 0
                    for rec in value:
                        ts, linktype, buf, wire_len = rec
                        if pool is not None:
                            pool.dispatch(rec)
                        else:
                            assert packet is not None
                            try:
                                packet(ts, linktype, buf, wire_len)
                            except Exception as exc:
                                if strict:
                                    raise
                                pipe.weirds.capture(
                                    ts, "analyzer_internal_error", f"{type(exc).__name__}: {exc}"
                                )
                        wire += wire_len
                        last_ts = ts
                    n += len(value)
                    self._taken_records += len(value)
                    self.interval.wire_bytes += wire
                    rotate_bytes += wire
                elif kind == "weird":
                    pipe.weirds.capture(*value)
                elif kind == "eof":
                    self._capture_ended(value)
                if n >= BATCH:
                    break
                try:
                    item = get_nowait()
                except queue.Empty:
                    item = None
            if pool is not None:
                pool.send()  # also when idle: the workers' clocks and the merge move on
                self._follow_ports(pool.totals().ports)
            now = time.monotonic()
            if n:
                self.interval.packets += n
                self.summary.packets += n
                self.interval.lag = max(self.interval.lag, time.time() - last_ts)
            if self.stop_requested:
                if self._dumpcap is None:
                    break
                if not self._stop_sent:
                    self._stop_sent = now
                    self._signal_dumpcap()
                elif now - self._stop_sent > 15.0 and self._dumpcap.proc is not None:
                    self._dumpcap.proc.kill()
                continue
            if self.opt.duration is not None and now - started >= self.opt.duration:
                self.stop_requested = "duration"
                continue
            self._maybe_restart()
            if now >= next_expire:
                next_expire = now + EXPIRE_EVERY
                clock = max(pipe.table.now, time.time())
                pipe.table.expire(clock)
                pipe.fragments.expire(clock)
                if pool is not None:
                    pool.command("expire", time.time())
                if self.ring is not None:
                    why = self.ring.check()
                    if why is not None:
                        pipe.weirds.capture(
                            time.time(), "ring_capture_died", f"{why}; restarting it"
                        )
                    if why is not None or self._ports_changed:
                        self._ports_changed = False
                        self.ring.start(self.totals.dicom_ports)
            if now >= next_stats:
                next_stats = now + self.opt.stats_interval
                self._stats_row(now)
            if now >= next_rotate or rotate_bytes >= self.opt.rotate_bytes:
                next_rotate = now + self.opt.rotate_seconds
                rotate_bytes = 0
                self.rotate()
        self._finish()

    def _signal_dumpcap(self) -> None:
        dc = self._dumpcap
        if dc is not None and dc.proc is not None and dc.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                dc.proc.send_signal(signal.SIGTERM)

    # -- outputs ----------------------------------------------------------------------------

    def rotate(self) -> None:
        """Make everything decoded so far durable: one part per table, a fresh asset snapshot."""
        pipe = self.pipe
        assert pipe is not None and self.stats_writer is not None
        if self.pool is not None:
            self.pool.command("rotate")
        for name, writer in self.writers.items():
            if name != "asset":
                writer.flush()
        asset = self.writers["asset"]
        pipe.inventory.write(asset)
        asset.close()
        if pipe.engine.cross is not None:
            pipe.engine.cross.save_state()  # the baseline survives a crash or a restart
        self.stats_writer.flush()
        self.summary.rotations += 1
        release_free_memory()

    def _stats_row(self, now: float) -> None:
        pipe = self.pipe
        assert pipe is not None and self.stats_writer is not None
        iv = self.interval
        elapsed = max(now - iv.started, 1e-9)
        kdrop, kmiss = self.kernel.deltas()
        open_flows = pipe.table.open_flows
        dicom_flows = pipe.summary.services.get(DICOM, 0)
        associations = self.writers["dicom_assoc"].count + len(self.writers["dicom_assoc"].rows)
        rss = rss_mb()
        if self.pool is not None:
            t = self.pool.totals()
            open_flows, dicom_flows, associations = t.open_flows, t.dicom_flows, t.associations
            rss += t.rss
        row = Stats(
            ts=time.time(),
            interval=elapsed,
            packets=iv.packets,
            wire_bytes=iv.wire_bytes,
            packets_total=self.summary.packets,
            queued=self._read_records - self._taken_records,
            lag=iv.lag,
            open_flows=open_flows,
            dicom_flows=dicom_flows,
            associations=associations,
            findings=pipe.engine.count,
            dumpcap_runs=self.totals.runs,
            dumpcap_restarts=self.summary.restarts,
            dumpcap_received=self.totals.received,
            dumpcap_dropped=self.totals.dropped,
            kernel_rx_dropped=kdrop,
            kernel_rx_missed=kmiss,
            gap_seconds=iv.gap,
            rss_mb=rss,
        )
        self.stats_writer.add(row)
        if not self.opt.quiet:
            print(
                f"live: {self.summary.packets:,} pkts total, {iv.packets:,} new "
                f"({iv.packets / elapsed:,.0f}/s, "
                f"{iv.wire_bytes / elapsed / 1e6:,.2f} MB/s), {open_flows:,} flows open, "
                f"{row.associations:,} assoc, {pipe.engine.count:,} findings, drops dumpcap "
                f"{self.totals.dropped:,} kernel {kdrop:,}, lag {iv.lag:.2f} s, "
                f"restarts {self.summary.restarts}, rss {row.rss_mb:.0f} MB",
                file=sys.stderr,
                flush=True,
            )
        self.interval = _Interval(now)

    def _finish(self) -> None:
        pipe = self.pipe
        assert pipe is not None and self.stats_writer is not None
        if self.pool is not None:
            self.pool.stop()  # the workers' last flows and summary records, before the stage ends
            self._follow_ports(self.pool.totals().ports)
        self._stats_row(time.monotonic())
        pipe.finish()
        self.stats_writer.close()
        self.summary.findings = pipe.engine.count
        self.summary.stopped_by = self.stop_requested
        for sink in self._sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                close()


def run_live(config: Config, options: LiveOptions) -> LiveSummary:
    monitor = LiveMonitor(config, options)
    try:
        options.outdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{options.outdir}: cannot create output directory: {exc.strerror}"
        ) from None
    if not os.access(options.outdir, os.W_OK):
        raise OutputError(f"{options.outdir}: output directory is not writable")
    return monitor.run()
