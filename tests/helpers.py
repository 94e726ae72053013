"""Shared test helpers: run the pipeline in-process and drive the flow table directly."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from analyzer.capture import open_inputs
from analyzer.config import Config, Limits
from analyzer.logs.records import Weird
from analyzer.logs.weird import WeirdLog
from analyzer.run.pipeline import RunSummary, run_analysis
from analyzer.run.progress import Progress
from analyzer.tcp.flow import Flow
from analyzer.tcp.table import FlowTable

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "captures"
SAMPLE = CAPTURES / "dicom_lab.pcap"
SAMPLE_FILES = sorted(p for p in CAPTURES.iterdir() if p.suffix in (".pcap", ".pcapng"))
"""Every single-file sample capture (``captures/rotated`` is a directory of them)."""
TEST_SALT = b"golden-test-salt"
"""Fixed so that hashes in golden tables are stable; real runs use a random in-memory salt."""


@dataclass
class Result:
    conn: pl.DataFrame
    weird: pl.DataFrame
    summary: RunSummary


def record_offsets(data: bytes) -> list[int]:
    """Every record's offset in a little-endian classic pcap file, walked from its header (a
    record that runs past the end is listed too)."""
    offsets, pos = [], 24
    while pos < len(data):
        offsets.append(pos)
        pos += 16 + int.from_bytes(data[pos + 8 : pos + 12], "little")
    return offsets


def analyze(
    inputs: list[Path | str] | Path | str,
    outdir: Path,
    config: Config | None = None,
    shard: tuple[int, int] | None = None,
) -> Result:
    """Run ``analyze`` in-process (strict: an internal error fails the test); with ``shard``,
    the per-flow stage of that shard only (summary records in ``outdir/summary``)."""
    items = [str(p) for p in inputs] if isinstance(inputs, list) else [str(inputs)]
    cfg = config or Config()
    cfg = dataclasses.replace(cfg, strict=True, salt=cfg.salt or TEST_SALT)
    readers, _ = open_inputs(items)
    outdir.mkdir(parents=True, exist_ok=True)
    summary = run_analysis(
        cfg, readers, outdir, "parquet", Progress(None, enabled=False), shard=shard
    )
    return Result(
        pl.read_parquet(outdir / "conn.parquet"), pl.read_parquet(outdir / "weird.parquet"), summary
    )


@dataclass
class Collector:
    """A stream sink that records every event, in order."""

    events: list[tuple[str, int, object]] = field(default_factory=list)
    closed: str | None = None

    def data(self, direction: int, ts: float, data: bytes) -> None:
        self.events.append(("data", direction, bytes(data)))

    def gap(self, direction: int, ts: float, length: int) -> None:
        self.events.append(("gap", direction, length))

    unread: list[int] = field(default_factory=lambda: [0, 0])

    def footprint(self) -> int:
        return 0

    def close(self, ts: float, reason: str) -> None:
        self.closed = reason

    def stream(self, direction: int) -> list[bytes | int]:
        """Data as bytes and gaps as ints, adjacent data joined."""
        out: list[bytes | int] = []
        for kind, d, item in self.events:
            if d != direction:
                continue
            if kind == "data" and out and isinstance(out[-1], bytes):
                out[-1] += item  # type: ignore[operator]
            else:
                out.append(item)  # type: ignore[arg-type]
        return out


SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08
CLIENT, SERVER = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])


@dataclass
class Driver:
    """Feeds hand-made TCP segments straight into a FlowTable (no packet bytes needed)."""

    limits: Limits = field(default_factory=Limits)
    conns: list[Flow] = field(default_factory=list)
    weirds: list[Weird] = field(default_factory=list)
    sinks: list[Collector] = field(default_factory=list)
    with_sink: bool = True

    def __post_init__(self) -> None:
        cfg = Config(limits=self.limits, strict=True)
        self.log = WeirdLog(self.limits, self.weirds.append)

        def factory(flow: Flow) -> Collector | None:
            if not self.with_sink:
                return None
            sink = Collector()
            self.sinks.append(sink)
            return sink

        self.table = FlowTable(cfg, self.log, self.conns.append, factory)

    def seg(
        self,
        ts: float,
        flags: int,
        seq: int,
        ack: int = 0,
        payload: bytes = b"",
        *,
        from_client: bool = True,
        wire_len: int | None = None,
        sport: int = 40000,
        dport: int = 11112,
        win: int = 65535,
    ) -> None:
        src, dst = (CLIENT, SERVER) if from_client else (SERVER, CLIENT)
        sp, dp = (sport, dport) if from_client else (dport, sport)
        n = len(payload) if wire_len is None else wire_len
        self.table.on_tcp(
            ts,
            src,
            sp,
            dst,
            dp,
            seq & 0xFFFFFFFF,
            ack & 0xFFFFFFFF,
            flags,
            win,
            payload,
            0,
            len(payload),
            n,
            40 + n,
            None,
        )

    def finish(self) -> None:
        self.table.finish_all()

    def weird_names(self) -> set[str]:
        return {row.name for row in self.weirds}


def dicom_driver(
    config: Config | None = None,
) -> tuple[Driver, dict[str, Any], Any]:
    """A Driver whose flows are DICOM, wired as the pipeline wires them: (driver, the records
    of every table by name, the rule engine). Call ``engine.finish()`` after ``drv.finish()``
    for the findings."""
    from analyzer.findings.engine import RuleEngine
    from analyzer.logs.dicom_flow import DicomFlow
    from analyzer.logs.dicom_tables import DicomTables
    from analyzer.logs.phi_log import PhiLog
    from analyzer.logs.records import RECORDS
    from analyzer.logs.sinks import ListSink
    from analyzer.privacy import PhiPolicy

    config = config or Config(strict=True)
    rows: dict[str, Any] = {name: ListSink() for name in RECORDS}
    drv = Driver(limits=config.limits, with_sink=False)
    engine = RuleEngine(config, rows["finding"], lambda *a: None, clock=lambda: drv.table.now)
    phi = PhiPolicy(engine.hasher, False, config.capture_phi)
    observers = [
        DicomTables(
            rows["dimse"], rows["dicom_object"], rows["dicom_context"], rows["dicom_assoc"]
        ),
        PhiLog(rows["phi"], phi),
        engine.flow_rules,
        engine.emitter,
    ]
    drv.table.sink_factory = lambda flow: DicomFlow(flow, config.dicom, phi, observers)
    return drv, rows, engine


def dicom_events(path: Path, outdir: Path) -> list[object]:
    """Every DICOM parser event of a capture, in order, from a real pipeline run."""
    from analyzer.logs.dicom_flow import DicomFlow

    events: list[object] = []
    original = DicomFlow._events

    def recording(self: DicomFlow, evs: list) -> None:  # type: ignore[type-arg]
        events.extend(evs)
        original(self, evs)

    readers, _ = open_inputs([str(path)])
    outdir.mkdir(parents=True, exist_ok=True)
    DicomFlow._events = recording  # type: ignore[method-assign]
    try:
        run_analysis(Config(strict=True), readers, outdir, "parquet", Progress(None, enabled=False))
    finally:
        DicomFlow._events = original  # type: ignore[method-assign]
    return events
