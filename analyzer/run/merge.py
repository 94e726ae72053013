"""What the ways of running on several processes share: the merge of their part tables with
the cross-flow stage run once, and the worker processes' Ctrl-C handling."""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import polars as pl

from analyzer.config import Config
from analyzer.findings.replay import replay
from analyzer.logs.records import EXPORT_TABLES, TABLES, Weird
from analyzer.logs.weird import source_of
from analyzer.output.writer import TableWriter
from analyzer.run.fragments import without_fragments
from analyzer.run.pipeline import RunSummary, table_writers

PER_FLOW_TABLES = (
    "conn",
    "dicom_assoc",
    "dicom_context",
    "dimse",
    "dicom_object",
    "phi",
    "weird",
    "http",
    "dicomweb",
)


def merge_parts(
    config: Config,
    dirs: list[Path],
    outdir: Path,
    fmt: str,
    exported: bool = False,
    attribute: Callable[[str, pl.DataFrame], pl.DataFrame] | None = None,
    fragments: dict[Path, set[str]] | None = None,
) -> RunSummary:
    """The workers' per-flow tables as one, then the cross-flow stage over their summaries.
    ``attribute(name, frame)`` may complete the ``finding`` and ``asset`` rows (the cluster's
    sensor column) before they are written. ``fragments``: per directory, flows whose rows are
    left out of its per-flow tables as they are read (spans: ``drop_fragments`` then rewrites
    only the summary records)."""
    writers = table_writers(outdir, fmt)
    if exported:
        writers["exported"] = TableWriter("exported", EXPORT_TABLES["exported"], outdir, fmt)
    summary = RunSummary()
    internal: list[Weird] = []

    def report(uid: str | None, ts: float, name: str, detail: str) -> None:
        internal.append(Weird(uid=uid, ts=ts, name=name, detail=detail, source=source_of(name)))

    held = Path(tempfile.mkdtemp(prefix=".held-", dir=outdir)) if attribute else None
    cross = (
        {n: TableWriter(n, TABLES[n], held, "parquet") for n in ("finding", "asset")}
        if held is not None
        else writers
    )
    summary.findings = replay(
        config,
        dirs,
        cross["finding"],
        report,
        alerts=outdir / "alerts.jsonl",
        asset_table=cross["asset"],
    )
    if held is not None and attribute is not None:
        for name, w in cross.items():
            w.close()
            writers[name].add_frame(attribute(name, pl.read_parquet(w.path)))
        shutil.rmtree(held, ignore_errors=True)
    for name in (*PER_FLOW_TABLES, "exported") if exported else PER_FLOW_TABLES:
        # streamed, worker by worker: rows come grouped by worker, never all in memory
        for d in dirs:
            if (d / f"{name}.parquet").exists():
                uids = fragments.get(d) if fragments else None
                keep = without_fragments(uids) if uids and "uid" in TABLES[name] else None
                writers[name].add_parquet(d / f"{name}.parquet", keep)
        if name == "weird" and internal:
            writers[name].add_frame(pl.DataFrame(internal, schema=TABLES[name], orient="row"))
    for name, writer in writers.items():
        summary.rows[name] = writer.close()
    summary.weird = summary.rows.get("weird", 0)
    return summary


def interrupt_once(signum: int, frame: FrameType | None) -> None:
    """The first SIGINT stops the worker's reading (its tables are then written); a second
    one (the terminal's and the parent's, or an impatient user) must not break the writing."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


__all__ = ["PER_FLOW_TABLES", "interrupt_once", "merge_parts"]
