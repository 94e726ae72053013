"""The client side of ``analyze --dask``: a cluster, the tasks, progress, the reduce step.

``--dask tcp://host:8786`` uses a running scheduler (its workers must reach the inputs and the
output directory at the same paths: a shared file system); ``--dask local:N`` starts a local
cluster of N worker processes for the run. Worker deaths are the scheduler's business: a task
whose worker died is run again elsewhere (``distributed.scheduler.allowed-failures``, 3 by
default); an input error is a result, not a failure, so it is not retried.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer.cluster import remote
from analyzer.cluster.plan import Plan, Task
from analyzer.cluster.reduce import reduce
from analyzer.cluster.task import ATTEMPTS, PARTS, run_task
from analyzer.config import Config
from analyzer.errors import AnalyzerError, ConfigError, InputError
from analyzer.run.pipeline import RunSummary
from analyzer.run.progress import Progress

EXTRA = "cluster"


@dataclass(slots=True)
class ClusterSummary:
    run: RunSummary
    tasks: int = 0
    attempts: int = 0
    fragments: int = 0
    workers: int = 0
    dashboard: str | None = None
    per_sensor: dict[str, dict[str, int]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    @property
    def retries(self) -> int:
        return max(self.attempts - self.tasks, 0)


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError(
            f"--dask needs Dask distributed: pip install 'dicom-analyzer[{EXTRA}]'"
        ) from None
    return distributed


def connect(address: str) -> tuple[Any, Any]:
    """A client for ``address`` (``local:N`` starts a local cluster); returns (client, cluster)."""
    distributed = _distributed()
    if address.startswith("local:"):
        try:
            n = int(address.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise ConfigError(f"--dask {address}: expected local:N with N at least 1")
        # the dashboard needs bokeh; without it there is none to point to
        dashboard = "127.0.0.1:0" if _has_bokeh() else None
        cluster = distributed.LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=dashboard
        )
        return distributed.Client(cluster), cluster
    try:
        return distributed.Client(address, timeout="20s"), None
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"--dask {address}: cannot reach the scheduler: {exc}") from None


def run_cluster(
    config: Config,
    plan: Plan,
    outdir: str | Path,
    fmt: str,
    address: str,
    progress: Progress,
    quiet: bool = False,
    shards: int | None = None,
) -> ClusterSummary:
    """Run ``plan`` on the cluster at ``address`` into ``outdir`` (``shards``: flow shards per
    run of files; default: enough tasks for two per worker)."""
    distributed = _distributed()
    if config.salt is None:
        # one salt for the run, sent to the workers with the tasks (TLS keeps it private)
        config = dataclasses.replace(config, salt=secrets.token_bytes(32))
    target = str(outdir)
    url = remote.is_url(target)
    # with a URL the reduce works in a private local directory, uploaded at the end
    local = Path(tempfile.mkdtemp(prefix="dicom-analyzer-")) if url else Path(target)
    parts = local / PARTS
    if parts.exists():
        shutil.rmtree(parts)  # an interrupted earlier run's parts
    parts.mkdir(mode=0o700)
    if url:
        remote.remove(f"{target}/{PARTS}")
    started = time.monotonic()
    client, cluster = connect(address)
    out = ClusterSummary(RunSummary(), tasks=len(plan.tasks))
    try:
        client.wait_for_workers(1, timeout=120)
        info = client.scheduler_info()
        out.workers = len(info.get("workers", {}))
        plan.split(shards or plan.default_shards(max(out.workers, 1)))
        out.tasks = len(plan.tasks)
        if "dashboard" in info.get("services", {}) and (cluster is None or _has_bokeh()):
            out.dashboard = client.dashboard_link
            if not quiet:
                print(f"dask: dashboard {out.dashboard}", file=sys.stderr)
        futures = {
            client.submit(
                run_task,
                t,
                config,
                target,
                key=f"dicom-analyzer-{t.key}-{secrets.token_hex(4)}",
                pure=False,
            ): t
            for t in plan.tasks
        }
        done_bytes = 0
        metas: dict[str, dict[str, Any]] = {}
        errors: list[str] = []
        exit_code = InputError.exit_code
        packets = 0
        for fut in distributed.as_completed(list(futures)):
            task: Task = futures[fut]
            try:
                meta = fut.result()
            except Exception as exc:  # a bug in a task, or a task that failed too often
                errors.append(
                    f"task {task.key} ({', '.join(task.files[:2])}...): {type(exc).__name__}: {exc}"
                )
                exit_code = 1
                continue
            if "error" in meta:
                errors.append(meta["error"])
                exit_code = int(meta.get("exit_code", exit_code))
                out.failed.append(task.key)
            else:
                metas[task.key] = meta
                packets += int(meta["packets"])
            done_bytes += task.bytes
            progress.update(done_bytes, packets)
        progress.done()
        out.attempts = (
            remote.count(f"{target}/{PARTS}/{ATTEMPTS}")
            if url
            else len(list((parts / ATTEMPTS).glob("*")))
        )
        if errors:
            for e in errors[1:]:
                print(f"dicom-analyzer: error: {e}", file=sys.stderr)
            raise _TaskError(
                errors[0], exit_code, f"{len(errors)} of {len(plan.tasks)} task(s) failed"
            )
        task_dirs = {key: parts / key for key in metas}
        if url:  # exactly the attempts whose results arrived
            for key, meta in metas.items():
                remote.download(f"{target}/{PARTS}/{key}/{meta['attempt']}", task_dirs[key])
        sensors = any(t.sensor is not None for t in plan.tasks)
        summary, out.fragments, final = reduce(config, task_dirs, local, fmt, sensors)
        _totals(summary, out, final, plan)
        out.run = summary
        if url:
            shutil.rmtree(parts, ignore_errors=True)
            remote.upload(local, target)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
        shutil.rmtree(parts, ignore_errors=True)
        if url:
            remote.remove(f"{target}/{PARTS}")
            shutil.rmtree(local, ignore_errors=True)
    out.run.seconds = time.monotonic() - started
    return out


def _has_bokeh() -> bool:
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


class _TaskError(AnalyzerError):
    def __init__(self, first: str, exit_code: int, count: str) -> None:
        super().__init__(f"{first} ({count}; the others completed, no tables were written)")
        self.exit_code = exit_code


def _totals(
    summary: RunSummary, out: ClusterSummary, metas: list[dict[str, Any]], plan: Plan
) -> None:
    per: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for m in metas:
        name = m["sensor"] or "-"
        s = per[name]
        s["packets"] += m["packets"]
        s["wire_bytes"] += m["wire_bytes"]
        s["flows"] += m["flows"]
        s["tasks"] += 1
        summary.flows += m["flows"]
        summary.flows_evicted += m["flows_evicted"]
        summary.segments_bad_checksum += m["segments_bad_checksum"]
        summary.segments_offloaded += m["segments_offloaded"]
        summary.stats.packets += m["packets"]
        summary.stats.wire_bytes += m["wire_bytes"]
        summary.interrupted |= bool(m["interrupted"])
        for svc, n in m["services"].items():
            summary.services[svc] = summary.services.get(svc, 0) + n
    for sensor, files in plan.sensors.items():
        per[sensor or "-"]["files"] = len(files)
        per[sensor or "-"]["input_bytes"] = plan.sizes[sensor]
    summary.inputs = sum(len(f) for f in plan.sensors.values())
    out.per_sensor = {k: dict(v) for k, v in per.items()}
