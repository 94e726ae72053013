"""One analysis run: capture records in, output tables out.

readers -> merged_records -> Decoder.packet -> FlowTable.on_tcp -> Flow/Stream
        -> ServiceSniffer -> protocol decoder sinks;  finished flows -> conn rows
"""

from __future__ import annotations

import ctypes
import gc
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer.capture import CaptureReader, Record, merged_records
from analyzer.config import Config
from analyzer.dicom.association import DicomLimits
from analyzer.dicom_sink import DicomSink
from analyzer.findings.context import FlowView, TlsInfo
from analyzer.findings.engine import FindingEngine
from analyzer.inventory import Inventory
from analyzer.net.decode import Decoder, DecodeStats
from analyzer.net.fragments import FragmentReassembler
from analyzer.output.schema import TABLES
from analyzer.output.writer import TableWriter
from analyzer.progress import Progress
from analyzer.service import DICOM, TLS, DecoderFactory, ServiceSniffer
from analyzer.tcp.events import StreamSink
from analyzer.tcp.flow import Flow
from analyzer.tcp.table import FlowTable, ip_text
from analyzer.tls import TlsSink
from analyzer.weird import WeirdLog


def _malloc_trim() -> Callable[[], None]:
    """glibc keeps freed heap (Parquet part writes, packet buffers) for reuse; a long run hands
    it back now and then so that its footprint stays flat. A no-op where there is no glibc."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0) and None


release_free_memory = _malloc_trim()


def no_decoder(flow: Flow, service: str) -> StreamSink | None:
    """Recognised flows whose protocol has no decoder: drop the payload."""
    return None


@dataclass(slots=True)
class RunSummary:
    inputs: int = 0
    stats: DecodeStats = field(default_factory=DecodeStats)
    flows: int = 0
    flows_evicted: int = 0
    services: dict[str, int] = field(default_factory=dict)
    weird: int = 0
    findings: int = 0
    warnings: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False


class Pipeline:
    def __init__(
        self,
        config: Config,
        writers: dict[str, TableWriter],
        decoder_factory: DecoderFactory | None = None,
        alerts: Path | None = None,
        on_service: Callable[[Flow, str], None] | None = None,
        append_alerts: bool = False,
    ) -> None:
        """``on_service`` hears of every flow whose protocol was recognised (live mode uses it
        to follow the DICOM ports in use)."""
        self.config = config
        self.writers = writers
        self.summary = RunSummary()
        limits = config.limits
        self.weirds = WeirdLog(limits, writers["weird"].add)
        self.fragments = FragmentReassembler(
            max_datagrams=limits.max_fragment_datagrams,
            max_bytes=limits.max_fragment_bytes,
            timeout=limits.fragment_timeout,
            report=self.weirds.capture,
        )
        ports = config.dicom_ports
        self._dicom_limits = DicomLimits()
        self._dicom_write = {name: w.add for name, w in writers.items()}
        self.engine = FindingEngine(
            config, self._dicom_write, alerts, self.weirds.row, append_alerts
        )
        self.inventory = Inventory(self.engine.tags, config.capture_phi)
        self._tls: dict[str, TlsInfo] = {}
        if decoder_factory is None:
            decoder_factory = self._decoder

        if on_service is not None:
            inner, notify = decoder_factory, on_service

            def decoder_factory(flow: Flow, service: str) -> StreamSink | None:
                notify(flow, service)
                return inner(flow, service)

        def make_sink(flow: Flow) -> StreamSink:
            return ServiceSniffer(flow, decoder_factory, ports)

        self.table = FlowTable(config, self.weirds, self._conn_row, make_sink)
        self.decoder = Decoder(self.table.on_tcp, self.weirds.capture, self.fragments)

    def _decoder(self, flow: Flow, service: str) -> StreamSink | None:
        if service == DICOM:
            return DicomSink(
                flow, self._dicom_write, self._dicom_limits, self.engine, self.inventory
            )
        if service == TLS:
            uid = flow.uid
            return TlsSink(lambda info: self._tls.__setitem__(uid, info))
        return None

    def _conn_row(self, flow: Flow) -> None:
        o, r = flow.streams
        svc = flow.service
        if svc is not None:
            self.summary.services[svc] = self.summary.services.get(svc, 0) + 1
        self.writers["conn"].add(
            (
                flow.uid,
                flow.ts,
                ip_text(flow.orig_h),
                flow.orig_p,
                ip_text(flow.resp_h),
                flow.resp_p,
                "tcp",
                svc,
                flow.last_ts - flow.ts,
                o.noff,
                r.noff,
                flow.conn_state(),
                o.missed + r.missed,
                flow.history,
                flow.pkts[0],
                flow.ip_bytes[0],
                flow.pkts[1],
                flow.ip_bytes[1],
                flow.vlan,
                flow.end_reason,
            )
        )
        self.engine.on_flow_end(
            FlowView(
                uid=flow.uid,
                ts=flow.ts,
                last_ts=flow.last_ts,
                orig_h=ip_text(flow.orig_h),
                orig_p=flow.orig_p,
                resp_h=ip_text(flow.resp_h),
                resp_p=flow.resp_p,
                service=svc,
                conn_state=flow.conn_state(),
                history=flow.history,
                orig_bytes=o.noff,
                resp_bytes=r.noff,
                had_association=svc == DICOM,
                tls=self._tls.pop(flow.uid, None),
            )
        )

    def feed(
        self, records: Iterable[Record], on_progress: Callable[[int], None] | None = None
    ) -> None:
        """Process records; an internal error in one packet is an anomaly, not the end."""
        packet = self.decoder.packet
        strict = self.config.strict
        for n, (ts, linktype, buf, wire_len) in enumerate(records, 1):
            try:
                packet(ts, linktype, buf, wire_len)
            except Exception as exc:
                if strict:
                    raise
                self.weirds.capture(ts, "analyzer_internal_error", f"{type(exc).__name__}: {exc}")
            if not n & 0x3FFF:
                self.fragments.expire(self.table.now)
                if on_progress is not None:
                    on_progress(n)
                if not n & 0x3FFFF:
                    release_free_memory()

    def _drop_state(self) -> None:
        """Free what the rules and the inventory learned before the tables are merged, so that
        the merge's peak does not stack on top of the per-host state."""
        self.engine.release()
        self.inventory.release()
        ip_text.cache_clear()
        gc.collect()
        release_free_memory()

    def finish(self) -> RunSummary:
        self.table.finish_all()
        self.engine.finish()
        self.inventory.write(self.writers["asset"].add)
        self.weirds.finish()
        self._drop_state()
        s = self.summary
        s.stats = self.decoder.stats
        s.flows = self.table.created
        s.flows_evicted = self.table.evicted
        s.weird = self.weirds.total
        s.findings = self.engine.count
        for name, writer in self.writers.items():
            s.rows[name] = writer.close()
        return s


def chunk_rows(table: str) -> int:
    """Rows buffered per table before a part file: asset rows carry up to 11 lists each and
    all come at once at the end, so they go in small chunks."""
    return 512 if table == "asset" else 4096


def run_analysis(
    config: Config,
    readers: list[CaptureReader],
    outdir: Path,
    fmt: str,
    progress: Progress,
    decoder_factory_builder: Callable[[dict[str, Any], DicomLimits], DecoderFactory] | None = None,
) -> RunSummary:
    """Analyze ``readers`` into tables in ``outdir``. ``decoder_factory_builder`` (for tools
    such as crosscheck) receives the table writers and DICOM limits and returns the factory
    of protocol decoders."""
    started = time.monotonic()
    writers = {
        name: TableWriter(name, schema, outdir, fmt, chunk_rows=chunk_rows(name))
        for name, schema in TABLES.items()
    }
    factory = None
    if decoder_factory_builder is not None:
        factory = decoder_factory_builder({n: w.add for n, w in writers.items()}, DicomLimits())
    pipe = Pipeline(config, writers, factory, alerts=outdir / "alerts.jsonl")
    pipe.summary.inputs = len(readers)

    def on_progress(packets: int) -> None:
        progress.update(sum(r.position() for r in readers), packets)

    try:
        pipe.feed(merged_records(readers, pipe.weirds.capture), on_progress)
    except KeyboardInterrupt:
        pipe.summary.interrupted = True
    finally:
        progress.done()
    summary = pipe.finish()
    summary.seconds = time.monotonic() - started
    return summary
