"""What the ways of running on several processes share: the merge of their part tables with
the cross-flow stage run once, and the worker processes' Ctrl-C handling."""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
    """The workers' per-flow tables as one, and the cross-flow stage over their summaries.
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
    names = (*PER_FLOW_TABLES, "exported") if exported else PER_FLOW_TABLES

    def add_parts(name: str) -> None:
        # streamed, worker by worker: rows come grouped by worker, never all in memory
        for d in dirs:
            if (d / f"{name}.parquet").exists():
                uids = fragments.get(d) if fragments else None
                keep = without_fragments(uids) if uids and "uid" in TABLES[name] else None
                writers[name].add_parquet(d / f"{name}.parquet", keep)

    # after the replay: ``weird`` (the replay adds to it), and ``conn`` when ``attribute``
    # reads the parts' (adding a part moves its file)
    after = ("weird", "conn") if attribute is not None else ("weird",)

    def per_flow_tables() -> dict[str, int]:
        """The other per-flow tables, written while the replay runs: polars reads and writes
        them without the interpreter's lock, the replay is Python, so the two share the
        cores."""
        rows = {}
        for name in names:
            if name not in after:
                add_parts(name)
                rows[name] = writers[name].close()
        return rows

    with ThreadPoolExecutor(1) as pool:
        tables = pool.submit(per_flow_tables)
        try:
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
        finally:
            summary.rows.update(tables.result())  # its error, if any, once it is done
    for name in after:
        add_parts(name)
    if internal:
        writers["weird"].add_frame(pl.DataFrame(internal, schema=TABLES["weird"], orient="row"))
    for name, writer in writers.items():
        if name not in summary.rows:
            summary.rows[name] = writer.close()
    summary.weird = summary.rows.get("weird", 0)
    return summary


def interrupt_once(signum: int, frame: FrameType | None) -> None:
    """The first SIGINT stops the worker's reading (its tables are then written); a second
    one (the terminal's and the parent's, or an impatient user) must not break the writing."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


__all__ = ["PER_FLOW_TABLES", "interrupt_once", "merge_parts"]
