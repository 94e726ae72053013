"""One analysis run: capture records in, output tables out.

readers -> merged_records -> Decoder.packet -> FlowTable.on_tcp -> Flow/Stream
        -> ServiceSniffer -> DicomFlow (parser) -> observers: DicomTables, PhiLog, Inventory,
           FlowRules, SummaryEmitter -> summary records -> CrossFlowStage -> finding log
finished flows -> conn log, FlowRules.flow_ended, FlowSummary
"""

from __future__ import annotations

import ctypes
import gc
import heapq
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import polars as pl

from analyzer.capture import CaptureReader, Record, Skip, WeirdSink, merged_records
from analyzer.capture.formats import NOT_PLAIN, PLAIN_HEAD
from analyzer.config import Config
from analyzer.dicom.tap import DatasetTap
from analyzer.findings.engine import RuleEngine
from analyzer.findings.summary import SummaryFeed
from analyzer.http.bodies import ObjectSink
from analyzer.logs.asset import AssetFacts, Inventory
from analyzer.logs.dicom_flow import DicomFlow
from analyzer.logs.dicom_tables import DicomTables
from analyzer.logs.http_flow import Exchange, HttpFlow
from analyzer.logs.observer import DicomObserver
from analyzer.logs.phi_log import PhiLog
from analyzer.logs.records import TABLES, Conn, Weird
from analyzer.logs.sinks import LogSet, RowSink
from analyzer.logs.views import AssocView, FlowView
from analyzer.logs.weird import WeirdLog
from analyzer.net.checksum import Checksums
from analyzer.net.decode import Decoder, DecodeStats, TcpHandler
from analyzer.net.fragments import FragmentReassembler
from analyzer.output.writer import TableWriter
from analyzer.privacy import PhiPolicy
from analyzer.protocols.service import DICOM, HTTP, TLS, ServiceSniffer, SniffLimits
from analyzer.protocols.tls import TlsInfo, TlsSink
from analyzer.run.carry import Carry
from analyzer.run.progress import Progress
from analyzer.tcp.events import StreamSink
from analyzer.tcp.flow import Flow
from analyzer.tcp.table import FlowTable, ip_text

WebSinks = Callable[[Exchange, int], ObjectSink | None]
"""An HTTP flow's object sinks (``export``): one per Part 10 object of a body."""


def _malloc_trim() -> Callable[[], None]:
    """glibc keeps freed heap (Parquet part writes, packet buffers) for reuse; a long run hands
    it back now and then so that its footprint stays flat. A no-op where there is no glibc."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    return lambda: trim(0) and None


release_free_memory = _malloc_trim()


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
    segments_bad_checksum: int = 0
    """TCP segments (and whole packets) not used for a wrong checksum, by the flow table."""
    segments_offloaded: int = 0
    """Segments accepted with an offloaded (partial) checksum."""
    stats_own: DecodeStats | None = None
    """With flows followed into later files: the counts of the task's own files."""
    followed: list[str] = field(default_factory=list)
    """The uids of the flows followed into later files."""
    followed_until: dict[str, float] = field(default_factory=dict)
    """When each followed flow ended (``Carry.until``)."""
    span_end: int | None = None
    """Where a span's own records ended (``run/spans.py`` checks it against the cut)."""

    @property
    def bad_checksums(self) -> int:
        return self.segments_bad_checksum + self.stats.bad_checksum


class Pipeline:
    """One run's layers wired together (see the module docstring).

    ``shard=(k, n)``: analyse only the TCP flows whose symmetric hash falls in shard ``k`` of
    ``n`` (every packet still moves the clock, so flows time out exactly as in a whole run);
    capture-level anomalies are kept by shard 0 only. ``summaries``: give the summary records
    to this consumer instead of the inline cross-flow stage (a per-flow-only run)."""

    def __init__(
        self,
        config: Config,
        writers: Mapping[str, RowSink[Any]],
        alerts: Path | None = None,
        on_service: Callable[[Flow, str], None] | None = None,
        append_alerts: bool = False,
        observers: Sequence[DicomObserver] = (),
        shard: tuple[int, int] | None = None,
        summaries: SummaryFeed | None = None,
        taps: Callable[[Flow, AssocView], DatasetTap | None] | None = None,
        http_objects: Callable[[Flow], WebSinks | None] | None = None,
        carry: bool = False,
    ) -> None:
        """``carry``: flows open when the input ends may be followed into later files
        (``follow``; ``run/carry.py``). ``taps`` gives a DICOM flow's parser a dataset tap and ``http_objects`` an HTTP flow
        its object sinks (``export``). ``on_service`` hears of every flow whose protocol was recognised (live mode uses it
        to follow the DICOM ports in use); ``observers`` are added after the standard ones
        (tools such as crosscheck)."""
        self.config = config
        self.logs = logs = LogSet.of(writers)
        self.writers = writers
        self.summary = RunSummary()
        limits = config.limits
        self.shard = shard
        weird_sink: Callable[[Weird], None] = logs.weird.add
        if shard is not None and shard[0] != 0:
            weird_sink = _drop_flowless(weird_sink)
        self.carry: Carry | None = None
        if carry:
            self.carry = Carry()
            weird_sink = self.carry.gate(weird_sink)
        self.weirds = WeirdLog(limits, weird_sink)
        self.fragments = FragmentReassembler(
            max_datagrams=limits.max_fragment_datagrams,
            max_bytes=limits.max_fragment_bytes,
            timeout=limits.fragment_timeout,
            report=self.weirds.capture,
        )
        self._dicom_limits = config.dicom
        self.inventory = Inventory(limits.max_endpoints, limits.max_values_per_column)
        self.engine = RuleEngine(
            config,
            logs.finding,
            self.weirds.row,
            clock=lambda: self.table.now,
            alerts=alerts,
            append_alerts=append_alerts,
            feed=summaries,
            inventory=self.inventory,
        )
        include_uids = bool(config.rule_options.get("cleartext_phi", {}).get("include_uids", False))
        self.phi = PhiPolicy(self.engine.hasher, include_uids, config.capture_phi)
        stamper = self.engine.stamper
        self.asset_facts = asset_facts = AssetFacts(
            stamper.stamp, stamper.put, self.phi.tags, config.capture_phi
        )
        self.observers: tuple[DicomObserver, ...] = (
            DicomTables(logs.dimse, logs.dicom_object, logs.dicom_context, logs.dicom_assoc),
            PhiLog(logs.phi, self.phi),
            asset_facts,
            self.engine.flow_rules,
            self.engine.emitter,
            *observers,
        )
        self._taps = taps
        self._http_objects = http_objects
        self._tls: dict[str, TlsInfo] = {}
        self._on_service = on_service
        ports = config.dicom_ports
        sniffing = SniffLimits.of(config)

        def make_sink(flow: Flow) -> StreamSink:
            return ServiceSniffer(flow, self._decoder, ports, sniffing)

        self.table = FlowTable(config, self.weirds, self._flow_ended, make_sink)
        # the table's flow-less rows come from segments only this shard sees: never dropped
        dropping = shard is not None and shard[0] != 0
        self.table_weirds = WeirdLog(limits, logs.weird.add) if dropping else self.weirds
        self.table.flowless = self.table_weirds.capture
        on_tcp: TcpHandler = self.table.on_tcp
        if self.carry is not None:
            on_tcp = self.carry.handler(self.table, on_tcp)
        if shard is not None and shard[1] > 1:  # one shard of one (a span): every flow
            on_tcp = _sharded(self.table, *shard, on_tcp)
        verify = config.checksums != Checksums.IGNORE
        self.decoder = Decoder(on_tcp, self.weirds.capture, self.fragments, check_fragments=verify)
        if verify:
            self.table.verdict = self.decoder.verdict

    def _decoder(self, flow: Flow, service: str) -> StreamSink | None:
        if self._on_service is not None:
            self._on_service(flow, service)
        if service == DICOM:
            lim = self.config.limits
            dicom = DicomFlow(
                flow,
                self._dicom_limits,
                self.phi,
                self.observers,
                lim.max_pending_requests,
                lim.max_queries,
                self.config.strict,
            )
            if self._taps is not None:
                dicom.parser.tap = self._taps(flow, dicom.view)
            return dicom
        if service == HTTP:
            logs = self.logs
            return HttpFlow(
                flow,
                logs.http,
                logs.dicomweb,
                logs.phi,
                self.phi,
                self._http_exchange,
                self._dicom_limits.max_dataset_head,
                self._http_objects(flow) if self._http_objects is not None else None,
            )
        if service == TLS:
            uid = flow.uid
            return TlsSink(lambda info: self._tls.__setitem__(uid, info))
        return None

    def _http_exchange(self, ex: Exchange) -> None:
        """An HTTP exchange ended: the per-flow rules, then its summary records."""
        self.engine.flow_rules.http(ex)
        self.asset_facts.http(ex)
        self.engine.emitter.http(ex)

    def _flow_ended(self, flow: Flow) -> None:
        if self.carry is not None:
            self.carry.ended(flow)
        svc = flow.service
        if svc is not None:
            self.summary.services[svc] = self.summary.services.get(svc, 0) + 1
        self.logs.conn.add(conn_record(flow))
        o, r = flow.streams
        self.engine.flow_ended(
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
                protocol_guess=flow.guess,
            )
        )

    def feed(
        self, records: Iterable[Record], on_progress: Callable[[int], None] | None = None
    ) -> None:
        """Process records; an internal error in one packet is an anomaly, not the end.

        Most frames of a busy capture are plain (Ethernet, IPv4 without options or fragments,
        TCP, whole, lengths consistent: ``plain_frame``, spelled inline here from one unpack of
        the header fields it reads, ``PLAIN_HEAD``), and two kinds of them
        are settled here without the decoder: in a shard worker, a frame of another shard is
        only counted and moves the clock; a bulk segment nothing reads (``FlowTable.counted``)
        is counted in one step. Every other frame takes the decoder. ``[limits]
        bulk_fast_path = false`` turns the second off; the tables are the same either way
        (``tests/run/test_fast_path.py``)."""
        packet: Callable[[float, int, bytes, int], None] = self.decoder.packet
        stats = self.decoder.stats
        table = self.table
        counted = table.counted if self.config.limits.bulk_fast_path else None
        k, shards = self.shard if self.shard is not None else (0, 1)
        tick = table.tick
        carry = self.carry
        crc32 = zlib.crc32
        strict = self.config.strict
        plain = plain_bytes = 0  # frames settled here: added to ``stats`` at the end
        plain_head = PLAIN_HEAD.unpack_from
        try:
            for n, (ts, linktype, buf, wire_len) in enumerate(records, 1):
                try:
                    eth, ver_ihl, ip_len, frag, proto, tcp_off = (
                        plain_head(buf)
                        if linktype == 1 and wire_len == len(buf) >= 54
                        else NOT_PLAIN
                    )
                    if (
                        eth == 0x0800
                        and ver_ihl == 0x45
                        and proto == 6
                        and not frag & 0x3FFF
                        and 54 <= 34 + (tcp_off >> 4 << 2) <= 14 + ip_len <= wire_len
                    ):
                        if shards > 1:
                            a, b = buf[26:30] + buf[34:36], buf[30:34] + buf[36:38]
                            other = crc32(a + b if a < b else b + a) % shards != k
                        else:
                            other = False
                        if other:
                            plain += 1
                            plain_bytes += wire_len
                            tick(ts)
                        elif (
                            counted is not None
                            # later records before the own ones are done: ``Carry.handler``
                            and (carry is None or not carry.later or carry.settled)
                            and counted(ts, buf)
                        ):
                            plain += 1
                            plain_bytes += wire_len
                        else:
                            packet(ts, linktype, buf, wire_len)
                    else:
                        packet(ts, linktype, buf, wire_len)
                except Exception as exc:
                    if strict:
                        raise
                    self.weirds.capture(
                        ts, "analyzer_internal_error", f"{type(exc).__name__}: {exc}"
                    )
                if not n & 0x3FFF:
                    self.fragments.expire(self.table.now)
                    if on_progress is not None:
                        on_progress(n)
                    if not n & 0x3FFFF:
                        release_free_memory()
        finally:
            stats.packets += plain
            stats.wire_bytes += plain_bytes
            stats.ipv4 += plain
            stats.tcp += plain

    def record_handler(self) -> Callable[[float, int, bytes, int], None]:
        """One record at a time as ``feed`` takes it (the bulk fast path first), for a caller
        that is handed records one by one (``live``); the caller keeps its error boundary."""
        packet = self.decoder.packet
        if (
            not self.config.limits.bulk_fast_path
            or self.shard is not None
            or self.carry is not None
        ):
            return packet
        stats = self.decoder.stats
        counted = self.table.counted

        def handle(ts: float, linktype: int, buf: bytes, wire_len: int) -> None:
            if plain_frame(linktype, buf, wire_len) and counted(ts, buf):
                stats.packets += 1
                stats.wire_bytes += wire_len
                stats.ipv4 += 1
                stats.tcp += 1
            else:
                packet(ts, linktype, buf, wire_len)

        return handle

    def feed_owned(
        self,
        own: Iterable[Record],
        later: Iterable[Record],
        on_progress: Callable[[int], None] | None = None,
        in_file_order: bool = False,
    ) -> None:
        """Process the task's own records merged by time with the later files' records, which
        only its own flows take (``run/carry.py``); stop once the own records are done and
        every flow has ended. Own records before the first later one are taken as they come
        (files cut in time rarely overlap): the merge costs only where they do.
        ``in_file_order``: the later records follow the own ones in one file (a span's), and
        are taken after them, in the file's order, as one whole run reads that file."""
        carry = self.carry
        assert carry is not None
        flows, tick = self.table.flows, self.table.tick

        def only_own_flows(rest: Iterable[Record]) -> Iterator[Record]:
            """Later records once the own ones are done: those of flows the task has. A plain
            frame of no flow left only moves the clock; the check reads its 12 bytes of
            addresses and ports (``plain_frame_ends``, ``Carry.frames``)."""
            carry.later = True
            frames = carry.frames
            for i, rec in enumerate(rest, 1):
                if not i & 0xFF and not flows:
                    break
                ends = plain_frame_ends(rec[1], rec[2], rec[3])
                if ends is not None and ends not in frames:
                    tick(rec[0])
                    continue
                yield rec
            carry.later = False

        if in_file_order:
            stats = self.decoder.stats
            self.feed(own, on_progress)
            n_own = stats.packets
            self.summary.stats_own = DecodeStats(packets=n_own, wire_bytes=stats.wire_bytes)
            carry.own_files_done()
            progress = None if on_progress is None else (lambda n: on_progress(n_own + n))
            self.feed(only_own_flows(later), progress)
            return
        stats = self.summary.stats_own = DecodeStats()
        later_it = iter(later)
        first_later = next(later_it, None)

        def merged(own_rest: Iterable[Record], later_rest: Iterable[Record]) -> Iterator[Record]:
            """Own and later records overlapping in time, merged as one whole run reads them."""
            own_done = False

            def own_tagged() -> Iterator[tuple[float, int, Record]]:
                nonlocal own_done
                for rec in own_rest:
                    yield rec[0], 0, rec
                own_done = True
                carry.own_files_done()

            def later_tagged() -> Iterator[tuple[float, int, Record]]:
                for rec in later_rest:
                    yield rec[0], 1, rec

            both = heapq.merge(own_tagged(), later_tagged(), key=lambda t: (t[0], t[1]))
            for i, (ts, source, rec) in enumerate(both, 1):
                carry.later = source == 1
                if not carry.later:
                    stats.packets += 1
                    stats.wire_bytes += rec[3]
                elif own_done:
                    if not i & 0xFF and not flows:
                        return
                    ends = plain_frame_ends(rec[1], rec[2], rec[3])
                    if ends is not None and ends not in carry.frames:
                        tick(ts)
                        continue
                yield rec
            carry.later = False

        def records() -> Iterator[Record]:
            own_it = iter(own)
            n = wire = 0  # counted in locals, added to ``stats`` once
            try:
                for rec in own_it:
                    if first_later is not None and rec[0] > first_later[0]:  # from here, overlap
                        yield from merged(chain([rec], own_it), chain([first_later], later_it))
                        return
                    n += 1
                    wire += rec[3]
                    yield rec
            finally:
                stats.packets += n
                stats.wire_bytes += wire
            carry.own_files_done()
            if first_later is not None:
                yield from only_own_flows(chain([first_later], later_it))

        self.feed(records(), on_progress)

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
        self.inventory.write(self.logs.asset)
        self.weirds.finish()
        if self.table_weirds is not self.weirds:
            self.table_weirds.finish()
        self._drop_state()
        s = self.summary
        s.stats = self.decoder.stats
        s.segments_bad_checksum = self.table.bad_checksums
        s.segments_offloaded = self.table.offloaded_checksums
        s.flows = self.table.created
        s.flows_evicted = self.table.evicted
        s.weird = self.weirds.total + (
            self.table_weirds.total if self.table_weirds is not self.weirds else 0
        )
        s.findings = self.engine.count
        for name, writer in self.writers.items():
            close = getattr(writer, "close", None)
            s.rows[name] = close() if close is not None else 0
        return s


def conn_record(flow: Flow) -> Conn:
    """The ``conn`` log's record of a finished flow."""
    o, r = flow.streams
    return Conn(
        uid=flow.uid,
        ts=flow.ts,
        orig_h=ip_text(flow.orig_h),
        orig_p=flow.orig_p,
        resp_h=ip_text(flow.resp_h),
        resp_p=flow.resp_p,
        proto="tcp",
        service=flow.service,
        duration=flow.last_ts - flow.ts,
        orig_bytes=o.noff,
        resp_bytes=r.noff,
        conn_state=flow.conn_state(),
        missed_bytes=o.missed + r.missed,
        history=flow.history,
        orig_pkts=flow.pkts[0],
        orig_ip_bytes=flow.ip_bytes[0],
        resp_pkts=flow.pkts[1],
        resp_ip_bytes=flow.ip_bytes[1],
        vlan=flow.vlan,
        end_reason=flow.end_reason,
    )


def flow_shard(src: bytes, sport: int, dst: bytes, dport: int, n: int) -> int:
    """The shard of a TCP flow: the same for both directions and in every process."""
    a, b = src + sport.to_bytes(2, "big"), dst + dport.to_bytes(2, "big")
    return zlib.crc32(a + b if a < b else b + a) % n


def plain_frame(linktype: int, buf: bytes, wire_len: int) -> bool:
    """A plain Ethernet/IPv4/TCP frame: no VLAN, IP options or fragment, whole, lengths
    consistent (nothing the decoder would report about it). ``Pipeline.feed`` spells the same
    test inline (its per-packet loop)."""
    return (
        linktype == 1
        and wire_len == len(buf) >= 54
        and buf[12] == 8
        and buf[13] == 0
        and buf[14] == 0x45
        and buf[23] == 6
        and not (buf[20] & 0x3F or buf[21])
        and 54 <= 34 + (buf[46] >> 4 << 2) <= 14 + (buf[16] << 8 | buf[17]) <= wire_len
    )


def plain_frame_shard(linktype: int, buf: bytes, wire_len: int, n: int) -> int | None:
    """The ``flow_shard`` of a ``plain_frame``, read from its bytes; None for any other frame,
    which every shard must decode itself."""
    if plain_frame(linktype, buf, wire_len):
        a, b = buf[26:30] + buf[34:36], buf[30:34] + buf[36:38]
        return zlib.crc32(a + b if a < b else b + a) % n
    return None


def plain_frame_ends(linktype: int, buf: bytes, wire_len: int) -> bytes | None:
    """The 12 bytes of addresses and ports of a ``plain_frame`` (``Carry.frames``), or None
    for any other frame."""
    return buf[26:38] if plain_frame(linktype, buf, wire_len) else None


def _sharded(table: FlowTable, k: int, n: int, on_tcp: TcpHandler) -> TcpHandler:
    tick = table.tick

    def on_tcp_in_shard(
        ts: float, src: bytes, sport: int, dst: bytes, dport: int, *rest: Any
    ) -> None:
        if flow_shard(src, sport, dst, dport, n) == k:
            on_tcp(ts, src, sport, dst, dport, *rest)
        else:
            tick(ts)

    return on_tcp_in_shard


def _drop_flowless(add: Callable[[Weird], None]) -> Callable[[Weird], None]:
    def add_flow_rows(row: Weird) -> None:
        if row.uid is not None:
            add(row)

    return add_flow_rows


def chunk_rows(table: str) -> int:
    """Rows buffered per table before they become a columnar frame: rows that carry lists
    (asset rows up to 11, an object's PHI keywords some 30 names) go in small chunks, as
    turning Python lists into list columns takes several times the frame's size for a while
    (4,096 ``dicom_object`` rows: 18 MB above a 6 MB frame)."""
    schema = TABLES[table]
    return 512 if any(isinstance(t, pl.List) for t in schema.values()) else 4096


def table_writers(outdir: Path, fmt: str, sensor: str | None = None) -> dict[str, TableWriter]:
    writers = {
        name: TableWriter(name, schema, outdir, fmt, chunk_rows=chunk_rows(name))
        for name, schema in TABLES.items()
    }
    for w in writers.values():
        w.sensor = sensor
    return writers


def run_analysis(
    config: Config,
    readers: list[CaptureReader],
    outdir: Path,
    fmt: str,
    progress: Progress,
    observers: Sequence[DicomObserver] = (),
    shard: tuple[int, int] | None = None,
    taps: Callable[[Flow, AssocView], DatasetTap | None] | None = None,
    extra_writers: Mapping[str, TableWriter] | None = None,
    http_objects: Callable[[Flow], WebSinks | None] | None = None,
    follow: Callable[[WeirdSink, Skip], Iterable[Record]] | None = None,
    follow_in_file_order: bool = False,
) -> RunSummary:
    """Analyze ``readers`` into tables in ``outdir``; with ``follow`` (the records of the later
    files of the same capture, given the weird sink and the records to skip), the flows open
    at the end are followed there (``run/carry.py``; the summary's ``followed`` names them;
    ``follow_in_file_order``: ``Pipeline.feed_owned``). ``taps`` and ``extra_writers``: the
    ``export`` command's dataset taps and its manifest. ``observers`` (tools such as
    crosscheck) see every association's events after the standard ones. With ``shard``, only
    that shard's flows are analysed and the cross-flow stage is left to ``findings.replay``:
    the summary records go to ``outdir/summary/``."""
    started = time.monotonic()
    writers = table_writers(outdir, fmt, config.sensor)
    writers.update(extra_writers or {})
    summaries = None
    if shard is not None:
        from analyzer.findings.replay import SummaryLog

        summaries = SummaryLog(outdir)
    pipe = Pipeline(
        config,
        writers,
        alerts=outdir / "alerts.jsonl",
        observers=observers,
        shard=shard,
        summaries=summaries,
        taps=taps,
        http_objects=http_objects,
        carry=follow is not None,
    )
    pipe.summary.inputs = len(readers)

    def on_progress(packets: int) -> None:
        progress.update(sum(r.position() for r in readers), packets)

    # what exists now (modules, the pipeline, pydicom's dictionary) lives for the whole run:
    # the cyclic collector stops walking it again and again (7% of the instructions of a
    # CT run); given back to it once the run is done
    gc.freeze()
    try:
        try:
            if follow is None:
                pipe.feed(merged_records(readers, pipe.weirds.capture), on_progress)
            else:
                own = merged_records(readers, pipe.weirds.capture)
                assert pipe.carry is not None and pipe.carry.skip is not None
                later = follow(lambda ts, name, detail: None, pipe.carry.skip)
                pipe.feed_owned(own, later, on_progress, follow_in_file_order)
                pipe.summary.followed = sorted(pipe.carry.followed)
        except KeyboardInterrupt:
            pipe.summary.interrupted = True
        finally:
            progress.done()
        summary = pipe.finish()
        if pipe.carry is not None:  # the flows still open at the end ended in ``finish``
            until = pipe.carry.until
            summary.followed_until = {u: until[u] for u in summary.followed if u in until}
    finally:
        gc.unfreeze()
    if summaries is not None:
        summaries.close()
    summary.seconds = time.monotonic() - started
    return summary
