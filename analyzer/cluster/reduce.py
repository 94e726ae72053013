"""The reduce step: every task's parts as one result, in the usual layout.

1. Fragments of followed flows are dropped (``run/fragments.py``): flows that crossed a run
   boundary were followed to their end by the task of the run they
   began in; the later runs' tasks saw their tail as a flow of its own (begun mid-stream). A
   flow of task ``j`` is such a fragment when an earlier task ``i`` of the same sensor and shard
   followed a flow with the same two endpoints whose last packet is not before the fragment's
   first: every row and summary record of the fragment's uid is dropped from ``j``'s parts.
2. The per-flow tables are concatenated and the cross-flow stage runs once over all summary
   records (``run/merge.py``), sensors together: the ``finding`` and ``asset`` rows
   then get the sensors of the flows and hosts they concern.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import polars as pl

from analyzer.cluster.task import META
from analyzer.config import Config
from analyzer.run.fragments import Fragments, drop_fragments, fragments, string_set
from analyzer.run.merge import merge_parts as _merge
from analyzer.run.pipeline import RunSummary


def _joined(values: pl.Series) -> str | None:
    names = sorted({v for v in values.to_list() if v})
    return ",".join(names) or None


def attribution(dirs: list[Path]) -> Any:
    """``attribute(name, frame)`` for ``_merge``: a finding's sensors are those of its flows
    (``uid`` and ``uids``), an endpoint's those of the flows it took part in (comma-joined
    when several sensors saw it)."""
    conns = [d / "conn.parquet" for d in dirs if (d / "conn.parquet").exists()]
    of_finding: dict[tuple[str | None, str], str | None] = {}

    def attribute(name: str, frame: pl.DataFrame) -> pl.DataFrame:
        if frame.height == 0 or not conns:
            return frame
        scan = pl.scan_parquet(conns).select("uid", "orig_h", "resp_h", "sensor")
        if name == "finding":
            wanted = set(frame["uid"].drop_nulls().to_list())
            for uids in frame["uids"].to_list():
                wanted.update(uids or [])
            of = dict(
                scan.filter(pl.col("uid").is_in(string_set(wanted)))
                .select("uid", "sensor")
                .collect()
                .iter_rows()
            )
            sensors = [
                _joined(pl.Series([of.get(u) for u in [uid, *(uids or [])]], dtype=pl.String))
                for uid, uids in zip(frame["uid"].to_list(), frame["uids"].to_list(), strict=True)
            ]
            for uid, rule, sensor in zip(frame["uid"], frame["rule"], sensors, strict=True):
                of_finding[(uid, rule)] = sensor
        elif name == "asset":
            ips = list(set(frame["ip"].to_list()))
            seen = (
                pl.concat(
                    [
                        scan.select(pl.col("orig_h").alias("ip"), "sensor"),
                        scan.select(pl.col("resp_h").alias("ip"), "sensor"),
                    ]
                )
                .filter(pl.col("ip").is_in(string_set(ips)))
                .unique()
                .collect()
            )
            by_ip: dict[str, set[str]] = defaultdict(set)
            for ip, sensor in seen.iter_rows():
                if sensor:
                    by_ip[ip].add(sensor)
            sensors = [",".join(sorted(by_ip.get(ip, ()))) or None for ip in frame["ip"].to_list()]
        else:
            return frame
        return frame.with_columns(pl.Series("sensor", sensors, dtype=pl.String))

    attribute.of_finding = of_finding  # type: ignore[attr-defined]
    return attribute


def attribute_alerts(path: Path, of_finding: dict[tuple[str | None, str], str | None]) -> None:
    """Give each alert of ``alerts.jsonl`` its finding's sensor (native rows and ECS)."""
    if not path.exists() or not of_finding:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    with open(path, encoding="utf-8") as src, open(tmp, "w", encoding="utf-8") as out:
        for line in src:
            doc = json.loads(line)
            if "dicom_analyzer" in doc:
                ours = doc["dicom_analyzer"]
                sensor = of_finding.get((ours.get("uid"), doc.get("rule", {}).get("id")))
                if sensor:
                    ours["sensor"] = sensor
                    doc.setdefault("observer", {})["name"] = sensor
            else:
                sensor = of_finding.get((doc.get("uid"), doc.get("rule")))
                doc["sensor"] = sensor
            out.write(json.dumps(doc, sort_keys=True, default=str) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def reduce(
    config: Config, task_dirs: dict[str, Path], outdir: Path, fmt: str, sensors: bool
) -> tuple[RunSummary, int, list[dict[str, Any]]]:
    """Merge the finished tasks' parts into ``outdir``; return the summary, the number of
    fragments dropped and the tasks' metas."""
    metas = {key: json.loads((d / META).read_text()) for key, d in task_dirs.items()}
    groups: dict[tuple[str | None, int], list[str]] = defaultdict(list)
    for key, meta in metas.items():
        groups[(meta["sensor"], meta["shard"])].append(key)
    drops: dict[Path, Fragments] = {}
    for keys in groups.values():
        keys.sort(key=lambda k: metas[k]["run"])
        drops.update(fragments([task_dirs[k] for k in keys], [metas[k] for k in keys]))
    dropped = drop_fragments(drops)
    by_dir = {d: key for key, d in task_dirs.items()}
    for d, f in drops.items():  # the fragments come off their task's flow count
        metas[by_dir[d]]["flows"] -= len(f.uids)
    dirs = [task_dirs[k] for k in sorted(task_dirs)]
    attribute = attribution(dirs) if sensors else None
    summary = _merge(config, dirs, outdir, fmt, attribute=attribute)
    if attribute is not None:
        attribute_alerts(outdir / "alerts.jsonl", attribute.of_finding)
    return summary, dropped, list(metas.values())
