"""Flows followed across a cut (``run/carry.py``): a later part's copy of them is dropped.

Flows that crossed a cut between two parts of a capture (a run of files of a cluster task, a
span of a file) were followed to their end by the part they began in; the later parts saw
their tail as a flow of its own (begun mid-stream). A flow of part ``j`` is such a fragment
when an earlier part ``i`` followed a flow with the same two endpoints that ended (``until``:
the latest time stamp read when it ended, ``Carry.until``; else its last packet's) not before
the fragment's first packet: every row and summary record of the fragment's uid is dropped
from ``j``'s tables. The time a flow ended, rather than its last packet's, keeps the test
right when time stamps step back (a packet the follower took may be stamped before the
flow's last one).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from analyzer.findings.replay import SUMMARY_DIR


def string_set(values: Iterable[str]) -> pl.Expr:
    """A set of strings for ``is_in``."""
    return pl.lit(pl.Series(sorted(values), dtype=pl.String)).implode()


def _ends(frame: pl.LazyFrame) -> pl.LazyFrame:
    e1 = pl.concat_str([pl.col("orig_h"), pl.lit(":"), pl.col("orig_p").cast(pl.String)])
    e2 = pl.concat_str([pl.col("resp_h"), pl.lit(":"), pl.col("resp_p").cast(pl.String)])
    return frame.with_columns(
        pl.when(e1 < e2).then(e1).otherwise(e2).alias("end_a"),
        pl.when(e1 < e2).then(e2).otherwise(e1).alias("end_b"),
    )


CHECKSUM_ROWS = ("ip_checksum_bad", "tcp_checksum_bad")
"""Flow-less rows of a segment with a wrong checksum (``tcp/table.py``): when no flow exists yet
(a fragment cannot begin with an unusable segment) they name the endpoints in the detail."""


@dataclass(slots=True)
class Fragments:
    """What to drop from one task directory: flow uids, and flow-less checksum rows of the
    followed flows' segments (in one whole run those were rows of the flow, kept by the task
    that followed it)."""

    uids: set[str] = field(default_factory=set)
    carried: list[pl.DataFrame] = field(default_factory=list)


def fragments(dirs: list[Path], metas: list[dict[str, Any]]) -> dict[Path, Fragments]:
    """Per task directory, the fragments to drop. ``dirs``/``metas``: the tasks of one sensor
    and shard, in run order."""
    drops: dict[Path, Fragments] = defaultdict(Fragments)
    for i, (d, meta) in enumerate(zip(dirs, metas, strict=True)):
        followed = meta.get("followed") or []
        if not followed or i + 1 == len(dirs):
            continue
        until = meta.get("followed_until") or {}
        ended = pl.LazyFrame(
            {"uid": list(until), "until": [float(t) for t in until.values()]},
            schema={"uid": pl.String, "until": pl.Float64},
        )
        carried = (
            _ends(
                pl.scan_parquet(d / "conn.parquet").filter(
                    pl.col("uid").is_in(string_set(followed))
                )
            )
            .join(ended, on="uid", how="left")
            .select(
                "end_a",
                "end_b",
                pl.max_horizontal(pl.col("ts") + pl.col("duration"), pl.col("until")).alias("last"),
            )
            .collect()
        )
        if carried.height == 0:
            continue
        for later in dirs[i + 1 :]:
            hits = (
                _ends(pl.scan_parquet(later / "conn.parquet"))
                .join(carried.lazy(), on=["end_a", "end_b"])
                .filter(pl.col("ts") <= pl.col("last"))
                .select("uid")
                .collect()
            )
            drops[later].uids.update(hits["uid"].to_list())
            drops[later].carried.append(carried)
    return drops


def without_fragments(uids: set[str]) -> pl.Expr:
    """The rows of a table that belong to none of ``uids`` (flow-less rows stay)."""
    return pl.col("uid").is_null() | ~pl.col("uid").is_in(string_set(uids))


def _drop(path: Path, uids: set[str]) -> None:
    frame = pl.scan_parquet(path)
    if "uid" not in frame.collect_schema().names():
        return
    keep = without_fragments(uids)
    tmp = path.with_name(f".{path.name}.tmp")
    frame.filter(keep).sink_parquet(tmp, row_group_size=4096, engine="streaming")
    os.replace(tmp, path)


def _drop_checksum_rows(path: Path, carried: list[pl.DataFrame]) -> None:
    rows = pl.read_parquet(path)
    ends = rows.with_row_index("_row").filter(
        pl.col("uid").is_null() & pl.col("name").is_in(CHECKSUM_ROWS)
    )
    if ends.height == 0:
        return
    ends = ends.with_columns(
        pl.col("detail").str.extract(r"^(\S+) > \S+ seq ", 1).alias("e1"),
        pl.col("detail").str.extract(r"^\S+ > (\S+) seq ", 1).alias("e2"),
    ).with_columns(
        pl.when(pl.col("e1") < pl.col("e2"))
        .then(pl.col("e1"))
        .otherwise(pl.col("e2"))
        .alias("end_a"),
        pl.when(pl.col("e1") < pl.col("e2"))
        .then(pl.col("e2"))
        .otherwise(pl.col("e1"))
        .alias("end_b"),
    )
    gone = (
        ends.join(pl.concat(carried), on=["end_a", "end_b"])
        .filter(pl.col("ts") <= pl.col("last"))
        .select("_row")
        .unique()
    )
    if gone.height == 0:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    rows.with_row_index("_row").join(gone, on="_row", how="anti").drop("_row").write_parquet(tmp)
    os.replace(tmp, path)


def drop_fragments(drops: dict[Path, Fragments], tables: bool = True) -> int:
    """Rewrite each directory's tables without its fragments: the summary records always,
    the per-flow tables unless ``tables`` is false (the merge then filters them as it
    reads them: ``without_fragments``), and the checksum rows of carried flows."""
    for d, f in drops.items():
        if f.uids:
            per_flow = [*d.glob("*.parquet")] if tables else []
            for path in [*per_flow, *(d / SUMMARY_DIR).glob("*.parquet")]:
                _drop(path, f.uids)
        if f.carried and (d / "weird.parquet").exists():
            _drop_checksum_rows(d / "weird.parquet", f.carried)
    return sum(len(f.uids) for f in drops.values())


__all__ = [
    "CHECKSUM_ROWS",
    "Fragments",
    "drop_fragments",
    "fragments",
    "string_set",
    "without_fragments",
]
