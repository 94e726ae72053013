#!/usr/bin/env python3
"""Speed and memory of ``analyze`` next to tshark and a bare dpkt loop, on one file.

    python benchmarks/run.py [--size-mb 400] [--keep]

Builds the capture with make_capture.py (in benchmarks/data/, never committed), then
runs each tool in its own process, pinned to one core, and reports packets/s, MB/s
and peak RSS. ``analyze`` also runs on a quarter- and a half-size capture: its peak
RSS must not grow with the capture (flat memory), which the last lines check.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
PY = sys.executable


def measure(cmd: list[str], cwd: Path | None = None) -> dict[str, float]:
    """Wall time and peak RSS of ``cmd``; ``cwd``: where ``python -m analyzer`` finds its code."""
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    out = subprocess.run(
        [PY, str(HERE / "measure.py"), *pin, *cmd],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    )
    result = json.loads(out.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"{cmd[0]} failed: {result['stderr']}")
    return result


def packets_in(path: Path) -> int:
    out = subprocess.run(
        [PY, str(HERE / "dpkt_loop.py"), str(path)], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mb", type=float, default=400.0)
    ap.add_argument("--keep", action="store_true", help="keep the generated captures")
    ap.add_argument(
        "--clients",
        type=int,
        default=0,
        help="distinct client addresses (0: a new one per association, the stress case)",
    )
    ap.add_argument(
        "--baseline",
        metavar="REV",
        help="also run analyze as of this git revision (checked out in a temporary worktree) "
        "on the same capture, for a before/after comparison in one run",
    )
    args = ap.parse_args()
    DATA.mkdir(exist_ok=True)
    sizes = [args.size_mb / 4, args.size_mb / 2, args.size_mb]
    paths = [DATA / f"cstore_{mb:.0f}mb_c{args.clients}.pcap" for mb in sizes]
    for path, size in zip(paths, sizes, strict=True):
        if not path.exists():
            subprocess.run(
                [
                    PY,
                    str(HERE / "make_capture.py"),
                    str(path),
                    "--size-mb",
                    str(size),
                    "--clients",
                    str(args.clients),
                ],
                check=True,
            )
    big = paths[-1]
    n_packets = packets_in(big)
    mb = big.stat().st_size / 1e6
    analyzer = shutil.which("dicom-analyzer") or "dicom-analyzer"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            "dicom-analyzer analyze (full DICOM decoding)": [
                analyzer,
                "analyze",
                str(big),
                "-o",
                f"{tmp}/a",
                "-q",
            ],
            "tshark -Y dicom (DICOM forced on 11112)": [
                "tshark",
                "-n",
                "-q",
                "-Y",
                "dicom",
                "-d",
                "tcp.port==11112,dicom",
                "-r",
                str(big),
            ],
            "bare dpkt loop (Ethernet/IP/TCP objects)": [PY, str(HERE / "dpkt_loop.py"), str(big)],
        }
        cwds: dict[str, Path] = {}
        if args.baseline:
            tree = Path(tmp) / "baseline"
            subprocess.run(
                [
                    "git",
                    "-C",
                    str(HERE.parent),
                    "worktree",
                    "add",
                    "--detach",
                    str(tree),
                    args.baseline,
                ],
                check=True,
                capture_output=True,
            )
            name = f"dicom-analyzer analyze at {args.baseline} (baseline)"
            runs[name] = [PY, "-m", "analyzer", "analyze", str(big), "-o", f"{tmp}/b", "-q"]
            cwds[name] = tree  # python -m puts the working directory first on sys.path
        try:
            for name, cmd in runs.items():
                r = measure(cmd, cwds.get(name))
                rows.append(
                    (
                        name,
                        r["seconds"],
                        n_packets / r["seconds"],
                        mb / r["seconds"],
                        r["peak_rss_mb"],
                    )
                )
        finally:
            if args.baseline:
                subprocess.run(
                    ["git", "-C", str(HERE.parent), "worktree", "remove", "--force", str(tree)],
                    check=False,
                    capture_output=True,
                )
        peaks = [
            measure([analyzer, "analyze", str(p), "-o", f"{tmp}/s{i}", "-q"])["peak_rss_mb"]
            for i, p in enumerate(paths[:-1])
        ] + [rows[0][4]]
    print(f"\ncapture: {big.name}, {mb:,.0f} MB, {n_packets:,} packets, one core (taskset -c 0)\n")
    print(f"{'tool':<48}{'seconds':>9}{'packets/s':>12}{'MB/s':>9}{'peak RSS MB':>13}")
    for name, sec, pps, mbs, rss in rows:
        print(f"{name:<48}{sec:>9.1f}{pps:>12,.0f}{mbs:>9.1f}{rss:>13.0f}")
    print(
        "\nanalyze peak RSS by capture size: "
        + ", ".join(
            f"{p.stat().st_size / 1e6:,.0f} MB -> {peak:.0f} MB"
            for p, peak in zip(paths, peaks, strict=True)
        )
    )
    growth = peaks[-1] - peaks[-2]
    print(
        f"doubling the capture added {growth:+.0f} MB: memory is {'flat' if growth < 10 else 'GROWING'}"
        " (the first step is the table writer's one-time cost once it starts writing part files)"
    )
    print(f"analyze is {rows[1][1] / rows[0][1]:.1f}x tshark's speed on this capture")
    if args.baseline:
        print(f"analyze now takes {rows[0][1] / rows[3][1]:.2f}x the time of {args.baseline}")
    if not args.keep:
        for p in paths:
            p.unlink()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
