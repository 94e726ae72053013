"""The cross-flow stage after the fact: summary records read back from the ``summary/``
tables of one or more per-flow runs (for example one per shard of the flows), merged in
``(emit_ts, uid, seq)`` order, and run through the same cross-flow code as inline."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import polars as pl

from analyzer.config import Config
from analyzer.findings.engine import cross_flow_stage
from analyzer.findings.per_flow import ReportError
from analyzer.findings.summary import (
    SUMMARY_RECORDS,
    SUMMARY_TABLES,
    SummaryRecord,
)
from analyzer.logs.asset import Inventory
from analyzer.logs.records import Asset, FindingRow
from analyzer.logs.sinks import RowSink
from analyzer.output.writer import TableWriter
from analyzer.privacy import Hasher

SUMMARY_DIR = "summary"
TABLE_OF = {rec: name for name, rec in SUMMARY_RECORDS.items()}


class SummaryLog:
    """A summary feed that writes each record to its table under ``OUTDIR/summary/``."""

    def __init__(self, outdir: Path) -> None:
        folder = outdir / SUMMARY_DIR
        folder.mkdir(mode=0o700, exist_ok=True)
        self.writers = {
            name: TableWriter(name, schema, folder, "parquet")
            for name, schema in SUMMARY_TABLES.items()
        }

    def put(self, record: SummaryRecord) -> None:
        self.writers[TABLE_OF[type(record)]].add(record)

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


BATCH_ROWS = 8192


def _stream(path: Path, rec: type[SummaryRecord]) -> Iterator[SummaryRecord]:
    """The records of one summary table, read a batch at a time (in the order written, which
    is non-decreasing in ``emit_ts``); the columns in field order, each row a tuple (half the
    time of a dict per row)."""
    make = rec._make
    frame = pl.scan_parquet(path).select(rec._fields)
    for batch in frame.collect_batches(chunk_size=BATCH_ROWS):
        for row in batch.iter_rows():
            yield make(row)


def read_summaries(outdirs: Sequence[Path]) -> Iterator[SummaryRecord]:
    """Every summary record of ``outdirs``, in ``(emit_ts, uid, seq)`` order, streamed: every
    table of every run is read in step, one clock tick at a time (each table is in ``emit_ts``
    order; the records of one tick are sorted by ``(uid, seq)``), so memory holds one tick and
    one batch per table, never all the records."""
    streams: list[Iterator[SummaryRecord]] = [
        _stream(d / SUMMARY_DIR / f"{name}.parquet", rec)
        for d in outdirs
        for name, rec in SUMMARY_RECORDS.items()
        if (d / SUMMARY_DIR / f"{name}.parquet").exists()
    ]
    heads: list[SummaryRecord | None] = [next(it, None) for it in streams]
    while True:
        live = [h.emit_ts for h in heads if h is not None]
        if not live:
            return
        tick = min(live)
        group: list[SummaryRecord] = []
        for k, it in enumerate(streams):
            h = heads[k]
            while h is not None and h.emit_ts == tick:
                group.append(h)
                h = next(it, None)
            heads[k] = h
        group.sort(key=lambda r: (r.uid, r.seq))
        yield from group


def replay(
    config: Config,
    outdirs: Sequence[Path],
    finding_table: RowSink[FindingRow],
    report_error: ReportError,
    alerts: Path | None = None,
    asset_table: RowSink[Asset] | None = None,
) -> int:
    """Run the cross-flow stage over the summaries of ``outdirs``; return the findings.
    With ``asset_table``, the inventory is kept too and written there."""
    inventory = None
    if asset_table is not None:
        lim = config.limits
        inventory = Inventory(lim.max_endpoints, lim.max_values_per_column)
    stage = cross_flow_stage(
        config, Hasher(config.salt), finding_table, report_error, alerts, inventory=inventory
    )
    stage.run(read_summaries(outdirs))
    stage.finish()
    stage.sink.close()
    if inventory is not None and asset_table is not None:
        inventory.write(asset_table)
    return stage.sink.count
