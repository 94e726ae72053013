"""Command line: ``dicom-analyzer analyze INPUT... -o OUTDIR``.

Exit codes:
    0  success (warnings, e.g. a truncated capture, are printed but do not fail the run)
    1  internal error (a bug: please report it)
    2  usage or configuration error
    3  an input could not be read as a capture
    4  an output could not be written
    5  crosscheck found disagreements with Wireshark
    130 interrupted (tables hold everything processed until then)
"""

from __future__ import annotations

import os

# The packet path is single-threaded Python; polars only writes tables. One polars thread
# lowers the memory its Parquet merges take (benchmarks/run.py shows it) and costs no speed.
os.environ.setdefault("POLARS_MAX_THREADS", "1")
# polars allocates with jemalloc, which by default keeps freed pages for seconds; after each
# part file that is tens of MB. Hand them back at once (benchmarks/run.py: no speed cost).
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
from pathlib import Path
from typing import TYPE_CHECKING

from analyzer import __version__
from analyzer.config import Config, load_config
from analyzer.errors import AnalyzerError, ConfigError, InputError, OutputError
from analyzer.net.checksum import Checksums
from analyzer.output.formats import FORMATS, LIVE_FORMATS, TABLE_FORMATS
from analyzer.run.progress import Progress

if TYPE_CHECKING:
    from analyzer.capture import CaptureReader
    from analyzer.run.pipeline import RunSummary


def _without_numpy() -> None:
    """Keep numpy (and what else pydicom would import for pixel data, ``analyzer/lean.py``) out
    of an analysis process: about 12 MB of the memory budget and 0.3 s of start-up. Plots
    bring them back (``_with_numpy``); a process that already has numpy keeps it."""
    from analyzer.lean import leave_out

    leave_out()


def _with_numpy() -> None:
    from analyzer.lean import bring_back

    bring_back()


SMALL_INPUT = 512_000_000
"""Below this many input bytes one process beats starting several (measured on realistic CT
traffic: at 277 MB two workers took 4.6-5.0 s where one took 4.0-4.4 s; at 1 GB two win)."""

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 3
EXIT_DISAGREE = 5
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dicom-analyzer",
        description="Passive DICOM network traffic analyzer.",
        epilog="Exit codes: 0 ok, 1 internal error, 2 usage/config, 3 bad input, 4 cannot write output, "
        "5 crosscheck disagreements, 130 interrupted.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("analyze", help="analyze captures into tables")
    _run_options(
        a,
        "OUTDIR",
        "directory for the tables",
        FORMATS,
        "table format (default parquet; zeek and zeek-json: Zeek's TSV and JSON logs)",
        nargs="*",
    )
    _alerts_option(a)
    _state_option(a)
    a.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run on a Dask cluster: tcp://HOST:8786 (a running scheduler; inputs and OUTDIR "
        "on a file system every worker shares) or local:N (N local worker processes); "
        "needs the cluster extra",
    )
    a.add_argument(
        "--sensor",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="the captures of one sensor (a file or directory; repeat for more sensors and "
        "files): analysed as separate captures, named in the sensor column (with --dask)",
    )
    a.add_argument(
        "--sensor-dirs",
        action="store_true",
        help="each INPUT is a directory of one sensor, named after it (with --dask)",
    )
    a.add_argument(
        "--task-mb",
        type=float,
        default=256.0,
        metavar="MB",
        help="input bytes per cluster task: files are cut into runs of about this size "
        "(default 256)",
    )
    a.add_argument(
        "--shards",
        type=int,
        metavar="N",
        help="flow-hash shards per run of files (default: enough for two tasks per worker)",
    )
    a.add_argument(
        "--capture-phi",
        action="store_true",
        help="write PHI values (phi table only); by default they are redacted and hashed",
    )
    a.add_argument(
        "--report",
        action="store_true",
        help="also write OUTDIR/report.html (plots, findings, assets; one self-contained file)",
    )
    a.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes for the per-flow stage (default: the usable cores, 1 for inputs under "
        f"{SMALL_INPUT // 1_000_000} MB)",
    )
    e = sub.add_parser(
        "export",
        help="write every object carried by C-STORE as a DICOM file, with a manifest",
    )
    _run_options(
        e,
        "DIR",
        "directory for the objects (DIR/objects/), the exported manifest and the tables",
        TABLE_FORMATS,
        "table format (default parquet)",
    )
    e.add_argument("--uid", action="append", default=[], metavar="FLOW", help="only this flow")
    e.add_argument(
        "--sop-instance", action="append", default=[], metavar="UID", help="only this object"
    )
    e.add_argument(
        "--sop-class", action="append", default=[], metavar="UID", help="only this SOP class"
    )
    e.add_argument(
        "--patient-key",
        action="append",
        default=[],
        metavar="KEY",
        help="only this patient (the patient_key of the phi table; needs the same [privacy] salt)",
    )
    e.add_argument(
        "--complete-only",
        action="store_true",
        help="skip objects with missing bytes (default: written as NAME.partial.dcm)",
    )
    e.add_argument(
        "--deidentify",
        action="store_true",
        help="apply the PS3.15 Basic Application Level Confidentiality Profile before writing",
    )
    e.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes, as for analyze (each writes the objects of its flows)",
    )
    cv = sub.add_parser("carve", help="write every frame of the given flows to one pcapng")
    cv.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="pcap/pcapng files (gzip ok) or directories"
    )
    cv.add_argument("-o", "--output", required=True, metavar="OUT.pcapng", help="file to write")
    cv.add_argument(
        "--uid",
        action="append",
        required=True,
        metavar="UID",
        help="a flow uid from the tables (repeat for more flows)",
    )
    cv.add_argument(
        "--finding",
        metavar="FILE",
        help="a finding table or alerts.jsonl: its findings on these flows go in the comment",
    )
    cv.add_argument("--config", metavar="FILE", help="TOML configuration file")
    _checksum_options(cv)
    bl = sub.add_parser(
        "baseline",
        help="learn the inventory baseline (--state DIR) from captures known to be clean",
    )
    bl.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="pcap/pcapng files (gzip ok), directories, or -"
    )
    _state_option(bl)
    bl.add_argument("--config", metavar="FILE", help="TOML configuration file")
    bl.add_argument("--workers", type=int, metavar="N", help="processes, as for analyze")
    bl.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    bl.add_argument("--strict", action="store_true", help=argparse.SUPPRESS)
    _checksum_options(bl)
    sub.add_parser("rules", help="list the detection rules, their severity and options")
    lv = sub.add_parser(
        "live",
        help="watch interfaces through dumpcap: alerts at once, tables rotated into part files",
    )
    lv.add_argument(
        "-i", "--interface", action="append", required=True, metavar="IFACE",
        help="capture interface (repeat for several)",
    )  # fmt: skip
    lv.add_argument("-f", "--filter", metavar="BPF", help="capture filter for dumpcap")
    lv.add_argument(
        "-o", "--output", required=True, metavar="OUTDIR", help="directory for the tables"
    )
    lv.add_argument("--config", metavar="FILE", help="TOML configuration file")
    lv.add_argument(
        "--format",
        choices=LIVE_FORMATS,
        default="parquet",
        help="part files as Parquet (default) or whole Zeek logs: zeek (TSV) or zeek-json",
    )
    lv.add_argument(
        "--rotate-minutes", type=float, default=5.0, metavar="N",
        help="write every table's new rows to a part file every N minutes (default 5)",
    )  # fmt: skip
    lv.add_argument(
        "--rotate-mb", type=float, default=64.0, metavar="M",
        help="... or after M MB of captured traffic, whichever comes first (default 64)",
    )  # fmt: skip
    lv.add_argument(
        "--stats-interval", type=float, default=60.0, metavar="S",
        help="seconds between health lines and stats rows (default 60)",
    )  # fmt: skip
    lv.add_argument("--alerts-stdout", action="store_true", help="print each alert as a JSON line")
    _alerts_option(lv)
    _state_option(lv)
    lv.add_argument(
        "--syslog", nargs="?", const="/dev/log", metavar="ADDRESS",
        help="send each alert to syslog (default /dev/log, or HOST:PORT over UDP)",
    )  # fmt: skip
    lv.add_argument(
        "--ring", metavar="DIR", help="keep a ring buffer of the raw DICOM packets in DIR"
    )
    lv.add_argument(
        "--ring-files", type=int, default=10, metavar="N", help="ring buffer files (default 10)"
    )
    lv.add_argument(
        "--ring-mb", type=int, default=100, metavar="M", help="size of each ring file (default 100)"
    )
    lv.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    lv.add_argument(
        "--buffer-mb",
        type=int,
        default=64,
        metavar="MB",
        help="kernel capture buffer per interface, for bursts (dumpcap -B; default 64)",
    )
    lv.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes for decoding, fed by one reader (default 1: all in one process)",
    )
    lv.add_argument("--capture-phi", action="store_true", help="write PHI values (phi table only)")
    _checksum_options(lv)
    lv.add_argument("-q", "--quiet", action="store_true", help="no health lines on stderr")
    r = sub.add_parser("report", help="write an HTML report of an output directory")
    r.add_argument("outdir", metavar="OUTDIR", help="tables written by analyze or live")
    r.add_argument("-o", "--output", required=True, metavar="FILE", help="the HTML file to write")
    r.add_argument(
        "--config", metavar="FILE", help="TOML configuration (trusted networks, DICOM ports)"
    )
    c = sub.add_parser("crosscheck", help="compare our DICOM decoding with Wireshark's dissector")
    c.add_argument("capture", metavar="CAPTURE", help="one pcap or pcapng file")
    c.add_argument("--config", metavar="FILE", help="TOML configuration file")
    return p


def _prepare_outdir(path: Path, fmt: str) -> list[str]:
    """Create (0700) or check the output directory; return warnings about it."""
    warnings = []
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create output directory: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise OutputError(f"{path}: output directory is not writable")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:  # the tables hold PHI hashes and metadata: owner only
        try:
            path.chmod(0o700)
        except OSError as exc:
            raise OutputError(
                f"{path}: output directory is open to others ({mode:o}) and cannot be "
                f"restricted: {exc.strerror}"
            ) from None
        warnings.append(f"{path}: output directory was {mode:o}, restricted to 700")
    return warnings


def _stale_tables(path: Path, fmt: str) -> list[str]:
    """A warning when ``path`` holds tables of another format."""
    from analyzer.logs.records import TABLES
    from analyzer.output.formats import EXTENSIONS

    stale = sorted(
        p.name
        for other in FORMATS
        if EXTENSIONS[other] != EXTENSIONS[fmt]
        for p in path.glob(f"*.{EXTENSIONS[other]}")
        if p.stem in TABLES
    )
    if not stale:
        return []
    return [
        f"{path}: holds tables of another format from an earlier run, left as they are: "
        f"{', '.join(stale[:6])}{' ...' if len(stale) > 6 else ''}"
    ]


def _print_summary(s: RunSummary, outdir: Path | str, fmt: str) -> None:
    st = s.stats
    rate = st.packets / s.seconds if s.seconds > 0 else 0.0
    err = sys.stderr
    print(
        f"{st.packets:,} packets ({st.wire_bytes / 1e6:,.1f} MB) from {s.inputs} input(s) "
        f"in {s.seconds:.1f} s ({rate:,.0f} pkt/s)",
        file=err,
    )
    services = ", ".join(f"{n} {k}" for k, n in sorted(s.services.items())) or "none recognised"
    print(
        f"{s.flows:,} TCP flows ({services}); {s.findings:,} findings; {s.weird:,} anomalies",
        file=err,
    )
    if s.segments_offloaded:
        print(
            f"{s.segments_offloaded:,} segments carried offloaded checksums (a capture taken on "
            "the sending host): accepted",
            file=err,
        )
    for name, rows in s.rows.items():
        print(f"  {str(outdir).rstrip('/')}/{name}.{fmt}: {rows:,} rows", file=err)


def _run_options(
    p: argparse.ArgumentParser,
    outdir: str,
    output_help: str,
    formats: tuple[str, ...],
    format_help: str,
    nargs: str = "+",
) -> None:
    """What every command that analyses captures into tables takes (analyze, export)."""
    p.add_argument(
        "inputs",
        nargs=nargs,
        metavar="INPUT",
        help="pcap/pcapng files (gzip ok), directories of them, or - for stdin",
    )
    p.add_argument("-o", "--output", required=True, metavar=outdir, help=output_help)
    p.add_argument("--format", choices=formats, default="parquet", help=format_help)
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--strict", action="store_true", help="stop on internal errors (for debugging)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    _checksum_options(p)


def _alerts_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--alerts-format",
        choices=("native", "ecs"),
        help="alerts.jsonl as finding rows (native, the default) or Elastic Common Schema documents",
    )


def _with_alerts(config: Config, args: argparse.Namespace) -> Config:
    fmt = getattr(args, "alerts_format", None)
    return dataclasses.replace(config, alerts_format=fmt) if fmt else config


def _state_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state",
        metavar="DIR",
        help="keep the inventory baseline in DIR across runs and compare with it "
        "(default: [state] dir of the config file; none: each run stands alone)",
    )


def _with_state(config: Config, args: argparse.Namespace) -> Config:
    """``--state`` over ``[state] dir``; a state that cannot be used fails before any work."""
    given = getattr(args, "state", None)
    if given:
        config = dataclasses.replace(config, state_dir=Path(given))
    if config.state_dir is not None:
        from analyzer.findings.engine import open_state

        state = open_state(config)
        assert state is not None
        state.load()
    return config


def _checksum_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checksums",
        choices=[c.value for c in Checksums],
        help="IPv4/TCP checksum verification: auto (default: a segment with a wrong checksum "
        "is not used; the offload pattern of a capture taken on the sending host is accepted), "
        "verify (span ports: only correct checksums), ignore",
    )
    p.add_argument(
        "-C",
        "--ignore-checksums",
        action="store_true",
        help="same as --checksums ignore (Zeek's -C)",
    )


def _with_checksums(config: Config, args: argparse.Namespace) -> Config:
    mode = Checksums.IGNORE if args.ignore_checksums else args.checksums
    return dataclasses.replace(config, checksums=Checksums(mode)) if mode else config


def _active(config: Config) -> Config:
    """Expired ``[[suppress]]`` entries are reported and not applied."""
    import datetime as dt

    today = dt.date.today()
    expired = [e for e in config.suppressions if e.expired(today)]
    for e in expired:
        print(
            f"warning: {e.name} expired on {e.expires} and is not applied ({e.reason})",
            file=sys.stderr,
        )
    if not expired:
        return config
    return dataclasses.replace(
        config, suppressions=tuple(e for e in config.suppressions if e not in expired)
    )


def _print_suppressed(config: Config, outdir: Path) -> None:
    """Suppressed findings are counted per entry, never lost: they stay in the finding table."""
    if not config.suppressions:
        return
    import polars as pl

    from analyzer.report.load import load_table

    frame = load_table(outdir, "finding")
    counts = dict(
        frame.filter(pl.col("suppressed").is_not_null())
        .group_by("suppressed")
        .agg(pl.col("count").sum())
        .iter_rows()
    )
    for e in config.suppressions:
        print(
            f"{e.name}: {counts.get(e.name, 0):,} finding occurrence(s) suppressed ({e.reason})",
            file=sys.stderr,
        )


def _run_config(args: argparse.Namespace) -> Config:
    config = _with_state(
        _with_alerts(_with_checksums(_active(load_config(args.config)), args), args), args
    )
    capture_phi = getattr(args, "capture_phi", False)
    if args.strict or capture_phi:
        config = dataclasses.replace(
            config,
            strict=config.strict or args.strict,
            capture_phi=config.capture_phi or capture_phi,
        )
    return config


def _open_run(
    args: argparse.Namespace, stale: bool = True
) -> tuple[list[CaptureReader], Path, Progress, int | None]:
    """Inputs, the output directory (created 0700) and the progress bar of a run; ``stale``:
    warn here of tables of another format in it (``_stale_tables``)."""
    from analyzer.capture import open_inputs

    readers, warnings = open_inputs(args.inputs)
    outdir = Path(args.output)
    warnings += _prepare_outdir(outdir, args.format)
    if stale:
        warnings += _stale_tables(outdir, args.format)
    total = sum(r.size or 0 for r in readers) or None
    progress = Progress(total, enabled=not args.quiet and sys.stderr.isatty())
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return readers, outdir, progress, total


def _export(args: argparse.Namespace) -> int:
    _without_numpy()
    from analyzer.export.context import ExportFilter
    from analyzer.export.run import run_export

    config = _run_config(args)
    select = ExportFilter(
        uids=frozenset(args.uid),
        sop_instances=frozenset(args.sop_instance),
        sop_classes=frozenset(args.sop_class),
        patient_keys=frozenset(args.patient_key),
        complete_only=args.complete_only,
    )
    readers, outdir, progress, total = _open_run(args)
    result = run_export(
        config,
        args.inputs,
        readers,
        outdir,
        args.format,
        progress,
        select,
        deidentify=args.deidentify,
        workers=_workers(args.workers, args.inputs, total),
    )
    summary, t = result.summary, result.totals
    if not args.quiet:
        _print_summary(summary, outdir, args.format)
        print(
            f"exported {t.written:,} complete and {t.partial:,} partial object(s), "
            f"{t.bytes / 1e6:,.1f} MB, into {result.directory}; {t.skipped:,} not written "
            "(see the exported table)",
            file=sys.stderr,
        )
    for line in _capture_problems(outdir) if summary.rows.get("weird", 0) else []:
        print(f"warning: {line}", file=sys.stderr)
    return EXIT_INTERRUPTED if summary.interrupted else EXIT_OK


def _carve(args: argparse.Namespace) -> int:
    _without_numpy()
    from analyzer.export.carve import carve

    config = _with_checksums(load_config(args.config), args)
    out = Path(args.output)
    if not out.parent.is_dir():
        raise OutputError(f"{out.parent}: no such directory")
    finding = Path(args.finding) if args.finding else None
    if finding is not None and not finding.is_file():
        raise InputError(f"{finding}: no such file")
    result = carve(config, args.inputs, out, args.uid, finding)
    for uid, n in result.flows.items():
        print(f"{uid}: {n:,} frames" if n else f"{uid}: no such flow in the input", file=sys.stderr)
    print(f"{result.frames:,} frames written to {out}", file=sys.stderr)
    return EXIT_OK if all(result.flows.values()) else EXIT_BAD_INPUT


def _analyze(args: argparse.Namespace) -> int:
    _without_numpy()
    config = _run_config(args)
    if args.report and args.format not in TABLE_FORMATS:
        raise ConfigError("--report reads parquet, csv or jsonl tables, not Zeek logs")
    if args.dask:
        return _analyze_on_cluster(args, config)
    if args.sensor or args.sensor_dirs:
        raise ConfigError("--sensor and --sensor-dirs need --dask (local:N runs on this machine)")
    if not args.inputs:
        raise ConfigError("no INPUT given")
    readers, outdir, progress, total = _open_run(args, stale=False)
    workers = _workers(args.workers, args.inputs, total)
    # a span run's processes start before this one imports the analysis (run/launch.py)
    from analyzer.run.launch import launch_spans, spans_apply

    launch = (
        launch_spans(config, readers[0], outdir, args.format, workers)
        if spans_apply(args.inputs, readers, workers)
        else None
    )
    try:
        for w in _stale_tables(outdir, args.format):
            print(f"warning: {w}", file=sys.stderr)
        from analyzer.run.pipeline import run_analysis

        if workers > 1:
            from analyzer.run.workers import run_parallel

            summary = run_parallel(
                config, args.inputs, readers, outdir, args.format, progress, workers, None, launch
            )
        else:
            summary = run_analysis(config, readers, outdir, args.format, progress)
    finally:
        if launch is not None:
            launch.cancel()  # nothing once the run took it over
    if not args.quiet:
        _print_summary(summary, outdir, args.format)
        _print_suppressed(config, outdir)
        _print_state(config)
    for line in summary.warnings:
        print(f"warning: {line}", file=sys.stderr)
    # damage is reported even with -q (tcpdump's habit: quiet progress, loud damage)
    for line in _capture_problems(outdir) if summary.rows.get("weird", 0) else []:
        print(f"warning: {line}", file=sys.stderr)
    if summary.bad_checksums:
        hint = (
            "; a capture taken on the sending host carries offloaded checksums: "
            "--checksums auto or -C"
            if config.checksums == Checksums.VERIFY
            else ""
        )
        print(
            f"warning: {summary.bad_checksums:,} packets with a wrong checksum were not used "
            f"(tcp_checksum_bad/ip_checksum_bad in the weird table){hint}",
            file=sys.stderr,
        )
    if args.report:
        _write_report(outdir, config, args.quiet)
    return EXIT_INTERRUPTED if summary.interrupted else EXIT_OK


def _analyze_on_cluster(args: argparse.Namespace, config: Config) -> int:
    from analyzer.cluster.plan import make_plan, sensor_inputs
    from analyzer.cluster.run import run_cluster

    if args.workers is not None:
        raise ConfigError(
            "--workers is for one machine; with --dask the cluster's workers run the tasks"
        )
    if args.task_mb <= 0 or (args.shards is not None and args.shards < 1):
        raise ConfigError("--task-mb and --shards must be positive")
    plan = make_plan(
        sensor_inputs(args.inputs, args.sensor, args.sensor_dirs), int(args.task_mb * 1e6)
    )
    for w in plan.warnings:
        print(f"warning: {w}", file=sys.stderr)
    from analyzer.cluster.remote import is_url

    url = is_url(args.output)
    if url and args.report:
        raise ConfigError("--report needs a local output directory, not a URL")
    outdir = Path(args.output)
    if not url:
        for w in _prepare_outdir(outdir, args.format):
            print(f"warning: {w}", file=sys.stderr)
    progress = Progress(plan.total_bytes or None, enabled=not args.quiet and sys.stderr.isatty())
    result = run_cluster(
        config, plan, args.output, args.format, args.dask, progress, args.quiet, args.shards
    )
    summary = result.run
    if not args.quiet:
        _print_summary(summary, args.output, args.format)
        print(
            f"dask: {result.tasks} tasks on {result.workers} worker(s), {result.retries} "
            f"retried, {result.fragments} flow fragment(s) stitched across file runs",
            file=sys.stderr,
        )
        for name, t in sorted(result.per_sensor.items()):
            print(
                f"  sensor {name}: {t.get('files', 0)} file(s), "
                f"{t.get('input_bytes', 0) / 1e6:,.1f} MB, {t.get('packets', 0):,} packets, "
                f"{t.get('flows', 0):,} flows, {t.get('tasks', 0)} task(s)",
                file=sys.stderr,
            )
        if not url:
            _print_suppressed(config, outdir)
        _print_state(config)
    if args.report:
        _write_report(outdir, config, args.quiet)
    return EXIT_INTERRUPTED if summary.interrupted else EXIT_OK


def _write_report(outdir: Path, config: Config, quiet: bool) -> None:
    """``--report``: OUTDIR/report.html from the tables just written."""
    _with_numpy()
    from analyzer.report.html import write_report

    path = write_report(outdir, outdir / "report.html", config)
    if not quiet:
        print(f"report: {path}", file=sys.stderr)


def _workers(requested: int | None, inputs: list[str], total: int | None) -> int:
    from analyzer.run.launch import usable_cores

    if requested is not None:
        if requested < 1:
            raise ConfigError("--workers must be at least 1")
        return requested
    if inputs != ["-"] and (total or 0) < SMALL_INPUT:
        return 1
    return usable_cores()


def _capture_problems(outdir: Path, most: int = 10) -> list[str]:
    """Capture-level damage (truncation, corruption) found during the run, each naming its
    file; processing went on up to the damage."""
    import polars as pl

    from analyzer.report.load import load_table

    frame = load_table(outdir, "weird")
    if frame.height == 0:
        return []
    bad = (
        frame.filter(pl.col("source") == "capture")
        .select("name", "detail")
        .unique(maintain_order=True)
    )
    lines = [
        f"damaged input, processed up to the damage ({name}): {detail}"
        for name, detail in bad.head(most).iter_rows()
    ]
    if bad.height > most:
        lines.append(f"... and {bad.height - most} more (see the weird table)")
    return lines


def _print_state(config: Config) -> None:
    """What the state directory holds after the run."""
    from analyzer.findings.engine import open_state

    state = open_state(config)
    if state is None:
        return
    b = state.load()
    counts = ", ".join(f"{n:,} {k.replace('_', ' ')}" for k, n in b.counts().items())
    print(f"baseline: {state.file}: {counts} (learned over {b.runs} run(s))", file=sys.stderr)


def _baseline(args: argparse.Namespace) -> int:
    """Analyse captures known to be clean only to learn: tables go to a temporary directory
    inside the state directory (owner only) and are removed; no rule runs."""
    _without_numpy()
    import tempfile

    from analyzer.findings.engine import open_state
    from analyzer.findings.site import all_rules
    from analyzer.run.pipeline import run_analysis

    config = _run_config(args)
    state = open_state(config)
    if state is None:
        raise ConfigError("baseline needs --state DIR (or [state] dir in the config file)")
    config = dataclasses.replace(
        config, rules_disabled=frozenset(all_rules(config.rule_modules)), suppressions=()
    )
    from analyzer.capture import open_inputs

    readers, warnings = open_inputs(args.inputs)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    total = sum(r.size or 0 for r in readers) or None
    progress = Progress(total, enabled=not args.quiet and sys.stderr.isatty())
    workers = _workers(args.workers, args.inputs, total)
    with tempfile.TemporaryDirectory(prefix=".baseline-run-", dir=state.path) as tmp:
        if workers > 1:
            from analyzer.run.workers import run_parallel

            summary = run_parallel(
                config, args.inputs, readers, Path(tmp), "parquet", progress, workers
            )
        else:
            summary = run_analysis(config, readers, Path(tmp), "parquet", progress)
    if not args.quiet:
        print(
            f"baseline: learned from {summary.stats.packets:,} packets of "
            f"{summary.inputs} input(s)",
            file=sys.stderr,
        )
        _print_state(config)
    return EXIT_INTERRUPTED if summary.interrupted else EXIT_OK


def _rules() -> int:
    from analyzer.findings.catalog import RULES
    from analyzer.findings.references import references

    for rid, cls in sorted(RULES.items()):
        opts = ", ".join(f"{k}={v}" for k, v in cls.options.items()) or "-"
        print(f"{rid:<26} {cls.severity.label:<8} {cls.title}")
        print(f"{'':<26} {cls.description}")
        print(f"{'':<26} stage: {cls.stage}; options: {opts}")
        print(f"{'':<26} references: {'; '.join(references(rid)) or '-'}")
    return EXIT_OK


def _live(args: argparse.Namespace) -> int:
    _without_numpy()
    from analyzer.live.monitor import LiveOptions, run_live

    config = _with_state(
        _with_alerts(_with_checksums(_active(load_config(args.config)), args), args), args
    )
    if args.capture_phi:
        config = dataclasses.replace(config, capture_phi=True)
    for name in ("rotate_minutes", "rotate_mb", "stats_interval", "workers", "buffer_mb"):
        if getattr(args, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive")
    options = LiveOptions(
        interfaces=args.interface,
        outdir=Path(args.output),
        bpf=args.filter,
        rotate_seconds=args.rotate_minutes * 60.0,
        rotate_bytes=int(args.rotate_mb * 1e6),
        stats_interval=args.stats_interval,
        alerts_stdout=args.alerts_stdout,
        syslog=args.syslog,
        ring_dir=Path(args.ring) if args.ring else None,
        ring_files=args.ring_files,
        ring_mb=args.ring_mb,
        duration=args.duration,
        quiet=args.quiet,
        workers=args.workers,
        buffer_mb=args.buffer_mb,
        fmt=args.format,
    )
    summary = run_live(config, options)
    if not args.quiet:
        print(
            f"live: stopped ({summary.stopped_by or 'capture ended'}): {summary.packets:,} packets, "
            f"{summary.findings:,} findings, {summary.rotations} rotations, "
            f"{summary.restarts} dumpcap restarts",
            file=sys.stderr,
        )
        _print_state(config)
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    _with_numpy()
    from analyzer.report.html import write_report

    config = load_config(args.config)
    path = write_report(args.outdir, args.output, config)
    print(f"report: {path}", file=sys.stderr)
    return EXIT_OK


def _crosscheck(args: argparse.Namespace) -> int:
    from analyzer.tools.crosscheck import crosscheck

    disagreements, unchecked, flows = crosscheck(args.capture, load_config(args.config))
    for d in disagreements:
        print(f"{d.flow}  {d.what}: ours {d.ours} | wireshark {d.wireshark}")
    for name in unchecked:
        print(f"{name}  unchecked: Wireshark decoded no DICOM (or HTTP) here")
    checked = flows - len(unchecked)
    print(
        f"{flows} DICOM or HTTP flow(s), {checked} checked against Wireshark, "
        f"{len(disagreements)} disagreement(s)",
        file=sys.stderr,
    )
    return EXIT_DISAGREE if disagreements else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.umask(0o077)  # nothing we write is readable by others, even between create and chmod
    try:
        if args.command == "analyze":
            return _analyze(args)
        if args.command == "crosscheck":
            return _crosscheck(args)
        if args.command == "export":
            return _export(args)
        if args.command == "carve":
            return _carve(args)
        if args.command == "live":
            return _live(args)
        if args.command == "report":
            return _report(args)
        if args.command == "rules":
            return _rules()
        if args.command == "baseline":
            return _baseline(args)
    except AnalyzerError as exc:
        print(f"dicom-analyzer: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("dicom-analyzer: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug: one line, and the details only when asked
        if os.environ.get("DICOM_ANALYZER_DEBUG"):
            raise
        print(
            f"dicom-analyzer: internal error: {type(exc).__name__}: {exc} "
            "(set DICOM_ANALYZER_DEBUG=1 for details)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    return EXIT_OK
