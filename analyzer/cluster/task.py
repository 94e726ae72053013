"""One cluster task, run on a Dask worker.

The per-flow stage of one run of files and one flow shard writes into
``OUTDIR/.parts/.<key>.<attempt>/`` (private to this attempt), then a ``task.json`` with what the
reduce step needs, then the directory is renamed to ``OUTDIR/.parts/<key>``: a task killed
half-way leaves only an attempt directory that nothing reads (removed at the end), and a retry
replaces a finished copy instead of adding a second one. Every attempt also leaves a marker in
``.parts/.attempts/`` (the summary counts retries from them).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from analyzer.capture import Record, Skip, WeirdSink, merged_records, open_inputs
from analyzer.cluster import remote
from analyzer.cluster.plan import Task
from analyzer.config import Config
from analyzer.errors import AnalyzerError
from analyzer.run.pipeline import run_analysis
from analyzer.run.progress import Progress

PARTS = ".parts"
ATTEMPTS = ".attempts"
META = "task.json"


def _later(files: tuple[str, ...]) -> Any:
    """The later files' records, each file opened only when the one before is done."""

    def records(weird: WeirdSink, skip: Skip) -> Iterator[Record]:
        for name in files:
            if skip.frames is not None and skip.done():
                return  # every followed flow has ended
            readers, _ = open_inputs([name])
            yield from merged_records(readers, weird, skip)

    return records


def run_task(task: Task, config: Config, outdir: str) -> dict[str, Any]:
    """Run ``task``; return its meta (``error``: a one-line input error, not retried).
    ``outdir``: a shared directory, or an fsspec URL (``cluster/remote.py``)."""
    sys.modules.setdefault("numpy", cast(ModuleType, None))  # as the CLI: no pixel data
    os.umask(0o077)
    attempt = uuid.uuid4().hex[:12]
    if remote.is_url(outdir):
        remote.touch(f"{outdir}/{PARTS}/{ATTEMPTS}/{task.key}.{attempt}")
        work = Path(tempfile.mkdtemp(prefix=f"dicom-analyzer-{task.key}-"))
        try:
            meta = _run(task, config, work, attempt)
            if "error" not in meta:
                remote.upload(work, f"{outdir}/{PARTS}/{task.key}/{attempt}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return meta
    parts = Path(outdir) / PARTS
    (parts / ATTEMPTS).mkdir(mode=0o700, parents=True, exist_ok=True)
    (parts / ATTEMPTS / f"{task.key}.{attempt}").touch()
    work = parts / f".{task.key}.{attempt}"
    work.mkdir(mode=0o700)
    meta = _run(task, config, work, attempt)
    if "error" in meta:
        shutil.rmtree(work, ignore_errors=True)
        return meta
    final = parts / task.key
    if final.exists():  # an earlier attempt finished, but its result never reached the client
        shutil.rmtree(final)
    os.rename(work, final)
    return meta


def _run(task: Task, config: Config, work: Path, attempt: str) -> dict[str, Any]:
    """The per-flow stage of ``task`` into ``work``, with ``task.json``; the meta."""
    started = time.monotonic()
    cfg = config if config.sensor == task.sensor else _with_sensor(config, task.sensor)
    try:
        readers, _ = open_inputs(list(task.files))
        summary = run_analysis(
            cfg,
            readers,
            work,
            "parquet",
            Progress(None, enabled=False),
            shard=(task.shard, task.shards),
            follow=_later(task.later),
        )
    except AnalyzerError as exc:
        return {"key": task.key, "error": str(exc), "exit_code": exc.exit_code}
    own = summary.stats_own or summary.stats
    meta = {
        "key": task.key,
        "sensor": task.sensor,
        "run": task.run,
        "shard": task.shard,
        "files": list(task.files),
        "followed": summary.followed,
        "followed_until": summary.followed_until,
        "packets": own.packets if task.shard == 0 else 0,
        "wire_bytes": own.wire_bytes if task.shard == 0 else 0,
        "flows": summary.flows,
        "flows_evicted": summary.flows_evicted,
        "services": summary.services,
        "segments_bad_checksum": summary.segments_bad_checksum,
        "segments_offloaded": summary.segments_offloaded,
        "interrupted": summary.interrupted,
        "seconds": time.monotonic() - started,
        "worker": os.uname().nodename + f":{os.getpid()}",
        "attempt": attempt,
    }
    (work / META).write_text(json.dumps(meta))
    return meta


def _with_sensor(config: Config, sensor: str | None) -> Config:
    import dataclasses

    return dataclasses.replace(config, sensor=sensor)
