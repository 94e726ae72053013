"""From inputs to tasks.

Each sensor's files are one capture (never merged with another sensor's). They are ordered by
their first packet and cut, only between files, into runs of about ``task_bytes``; each run is
split again into ``shards`` by the symmetric flow hash. A task knows the files after its run
(``later``): flows still open when its files end are followed there (``run/carry.py``).
Rotated files of one sensor must not overlap in time (the reduce step warns when they do).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from analyzer.capture import CaptureReader, open_inputs
from analyzer.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Task:
    key: str
    """``s<sensor index>-r<run>-k<shard>``: the task's directory under ``.parts/``."""
    sensor: str | None
    run: int
    shard: int
    shards: int
    files: tuple[str, ...]
    later: tuple[str, ...]
    bytes: int


@dataclass(frozen=True, slots=True)
class Run:
    sensor: str | None
    sensor_index: int
    index: int
    files: tuple[str, ...]
    later: tuple[str, ...]
    bytes: int


@dataclass(slots=True)
class Plan:
    runs: list[Run]
    sensors: dict[str | None, list[str]]
    """Each sensor's files in capture order (None: the one unnamed capture)."""
    sizes: dict[str | None, int]
    warnings: list[str]
    tasks: list[Task] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())

    def split(self, shards: int) -> None:
        """The tasks: every run times ``shards`` flow shards."""
        self.tasks = [
            Task(
                key=f"s{r.sensor_index}-r{r.index}-k{k}",
                sensor=r.sensor,
                run=r.index,
                shard=k,
                shards=shards,
                files=r.files,
                later=r.later,
                bytes=r.bytes // shards,
            )
            for r in self.runs
            for k in range(shards)
        ]

    def default_shards(self, workers: int) -> int:
        """Enough tasks to keep ``workers`` busy (about two each), no more shards than workers."""
        runs = max(len(self.runs), 1)
        if runs >= 2 * workers:
            return 1
        return max(1, min(workers, -(-2 * workers // runs)))


def sensor_inputs(
    inputs: list[str], sensors: list[str], per_dir: bool
) -> dict[str | None, list[str]]:
    """``--sensor NAME=PATH`` (repeatable), or with ``per_dir`` each input directory as a
    sensor named after it; otherwise the inputs are one capture (sensor None)."""
    out: dict[str | None, list[str]] = {}
    for spec in sensors:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--sensor {spec}: expected NAME=PATH")
        out.setdefault(name, []).append(path)
    if per_dir:
        for item in inputs:
            p = Path(item)
            if not p.is_dir():
                raise ConfigError(f"{item}: --sensor-dirs takes one directory per sensor")
            name = p.resolve().name
            if name in out:
                raise ConfigError(f"{item}: a second sensor named {name}")
            out[name] = [item]
    elif inputs:
        if sensors:
            raise ConfigError("give the inputs either as --sensor NAME=PATH or as INPUT, not both")
        out[None] = list(inputs)
    if not out:
        raise ConfigError("no input")
    if "-" in (p for paths in out.values() for p in paths):
        raise ConfigError("-: standard input cannot be split into cluster tasks")
    return out


def _runs(readers: list[CaptureReader], task_bytes: int) -> list[list[CaptureReader]]:
    runs: list[list[CaptureReader]] = [[]]
    size = 0
    for r in readers:
        if runs[-1] and size >= task_bytes:
            runs.append([])
            size = 0
        runs[-1].append(r)
        size += r.size or 0
    return runs


def make_plan(sensors: dict[str | None, list[str]], task_bytes: int) -> Plan:
    runs: list[Run] = []
    files: dict[str | None, list[str]] = {}
    sizes: dict[str | None, int] = {}
    warnings: list[str] = []
    for s_index, (sensor, paths) in enumerate(sensors.items()):
        readers, w = open_inputs(paths)
        warnings += w
        readers = sorted(readers, key=lambda r: (r.first_ts is None, r.first_ts or 0.0, r.name))
        files[sensor] = [r.name for r in readers]
        sizes[sensor] = sum(r.size or 0 for r in readers)
        cut = _runs(readers, task_bytes)
        for i, run in enumerate(cut):
            runs.append(
                Run(
                    sensor=sensor,
                    sensor_index=s_index,
                    index=i,
                    files=tuple(r.name for r in run),
                    later=tuple(r.name for later_run in cut[i + 1 :] for r in later_run),
                    bytes=sum(r.size or 0 for r in run),
                )
            )
    return Plan(runs, files, sizes, warnings)
