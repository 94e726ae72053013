#!/usr/bin/env python3
"""A pile of rotated capture files on Dask, next to the one-machine ``--workers`` runs.

    python benchmarks/dask_scaling.py [--size-mb 1000] [--files 24] [--task-mb 256]

The pile: the first SIZE MB of the realistic CT capture (``benchmarks/data/ct_1000mb.pcap``,
recorded by ``ct_lab.py``, built when missing) cut by ``editcap -c`` into FILES files, as a
sensor's rotation leaves them. Measured in one run, each with ``measure.py`` (wall time, the
largest process's peak RSS, the peak of the sum over the process tree):

    analyze --workers 1 | --workers 2 | --dask local:1 | --dask local:2

``--dask local:N`` starts its cluster inside the run, so its time includes the cluster's start
(about 2 s). Every run's tables are compared with the first run's (multisets of rows).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import DATA, PY, build, measure  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def packets(path: Path) -> int:
    out = subprocess.run(["capinfos", "-Mc", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def pile(source: Path, size_mb: float, files: int, into: Path) -> None:
    head = into / "head.pcap"
    total = packets(source)
    keep = max(1, int(total * min(1.0, size_mb * 1e6 / source.stat().st_size)))
    subprocess.run(["editcap", "-r", str(source), str(head), f"1-{keep}"], check=True)
    per = -(-keep // files)
    (into / "pile").mkdir()
    subprocess.run(
        ["editcap", "-c", str(per), str(head), str(into / "pile" / "ct.pcap")], check=True
    )
    head.unlink()


def same(a: Path, b: Path) -> bool:
    import polars as pl

    from analyzer.logs.records import TABLES

    for name in TABLES:
        x, y = pl.read_parquet(a / f"{name}.parquet"), pl.read_parquet(b / f"{name}.parquet")
        if sorted(map(repr, x.rows())) != sorted(map(repr, y.rows())):
            return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mb", type=float, default=1000.0)
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--task-mb", type=float, default=256.0)
    args = ap.parse_args()
    source = DATA / "ct_1000mb.pcap"
    build("ct", source, 1000, 0)
    work = Path(tempfile.mkdtemp(prefix="dask-bench-", dir=DATA))
    try:
        pile(source, args.size_mb, args.files, work)
        inputs = work / "pile"
        n_files = len(list(inputs.iterdir()))
        mb = sum(p.stat().st_size for p in inputs.iterdir()) / 1e6
        cfg = work / "salt.toml"
        cfg.write_text('[privacy]\nsalt = "benchmark-salt"\n')
        runs = [
            ("analyze --workers 1", ["--workers", "1"]),
            ("analyze --workers 2", ["--workers", "2"]),
            ("analyze --dask local:1", ["--dask", "local:1", "--task-mb", str(args.task_mb)]),
            ("analyze --dask local:2", ["--dask", "local:2", "--task-mb", str(args.task_mb)]),
        ]
        print(f"pile: {n_files} files, {mb:,.0f} MB of CT traffic; task size {args.task_mb:g} MB\n")
        print("| run | wall s | speed-up | largest process MB | sum over processes MB | tables |")
        print("|---|---:|---:|---:|---:|---|")
        base: float | None = None
        first: Path | None = None
        for label, extra in runs:
            out = work / label.split()[-1].replace(":", "")
            cmd = [PY, "-m", "analyzer", "analyze", str(inputs), "-o", str(out), "-q",
                   "--config", str(cfg), *extra]  # fmt: skip
            r = measure(cmd, pin=False, cwd=ROOT)
            base = base or r["seconds"]
            equal = "reference" if first is None else ("equal" if same(first, out) else "DIFFER")
            first = first or out
            print(
                f"| `{label}` | {r['seconds']:.1f} | {base / r['seconds']:.2f}x | "
                f"{r['peak_rss_mb']:.0f} | {r['peak_rss_sum_mb']:.0f} | {equal} |",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
