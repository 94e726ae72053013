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


def read_summaries(outdirs: Sequence[Path]) -> Iterator[SummaryRecord]:
    """Every summary record of ``outdirs``, in ``(emit_ts, uid, seq)`` order."""
    frames: list[pl.DataFrame] = []
    records: dict[str, list[SummaryRecord]] = {}
    for name, rec in SUMMARY_RECORDS.items():
        parts = [
            pl.read_parquet(d / SUMMARY_DIR / f"{name}.parquet")
            for d in outdirs
            if (d / SUMMARY_DIR / f"{name}.parquet").exists()
        ]
        if not parts:
            continue
        frame = pl.concat(parts)
        records[name] = [rec(**row) for row in frame.iter_rows(named=True)]
        frames.append(
            frame.select("emit_ts", "uid", "seq").with_columns(
                pl.lit(name).alias("table"), pl.int_range(pl.len()).alias("row")
            )
        )
    if not frames:
        return
    order = pl.concat(frames).sort("emit_ts", "uid", "seq", maintain_order=True)
    for table, row in order.select("table", "row").iter_rows():
        yield records[table][row]


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
