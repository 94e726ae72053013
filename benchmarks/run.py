#!/usr/bin/env python3
"""Speed and memory of ``analyze`` next to tshark and two pure-Python floors, in one run.

    sudo python benchmarks/run.py [--workload ct] [--sizes-mb 250,1000,4000] [--keep]
    python benchmarks/run.py --workload template --sizes-mb 100,200,400 [--clients N]
    python benchmarks/run.py ... --baseline REV

Workloads (captures built in benchmarks/data/, never committed, reused when present):

- ``ct`` (default): real traffic recorded in a namespace lab by ``ct_lab.py`` (root needed):
  CT and MR series with full headers, deflate and big endian, worklist queries, echoes.
- ``template``: copies of the lab's small C-STORE association from ever-new client addresses
  (``make_capture.py``), the many-endpoints case.

For every size each tool runs in its own process: ``analyze --workers 1``, tshark, the struct
floor and the dpkt loop pinned to one core (``taskset -c 0``); ``analyze`` with its default
workers on every core. The tools take turns ``--repeat`` times (default 2) and each one's
fastest run is reported (on a shared machine the load changes between runs; taking turns
exposes every tool to it alike). Reported: wall time, packets/s, MB/s, the peak RSS of the
largest process and of the sum over the process tree (the highest of the runs), and tshark's
time over each tool's time. The analyzer's package is byte-compiled first, as ``pip install``
does (with ``PYTHONDONTWRITEBYTECODE`` set, every run would compile it again).

``--live-rates`` (default ``400,600,800,1000``; empty to skip) then runs ``live_replay.py`` on
the second capture (the first when there is one): the highest replay rate ``live`` takes with
zero drops, with one worker and with the default workers, in the same run (root, tcpreplay).

The programs it runs (tshark, tcpdump and dumpcap, tcpreplay, taskset, ip, ethtool) are
installed with apt-get first when missing (as root; otherwise it says which are missing).
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


def measure(cmd: list[str], pin: bool, cwd: Path | None = None) -> dict[str, float]:
    """Wall time and peak RSS of ``cmd``; ``cwd``: where ``python -m analyzer`` finds its code."""
    taskset = ["taskset", "-c", "0"] if pin and shutil.which("taskset") else []
    out = subprocess.run(
        [PY, str(HERE / "measure.py"), *taskset, *cmd],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    )
    result: dict[str, float] = json.loads(out.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"{cmd[0]} failed: {result['stderr']}")
    return result


def packets_in(path: Path) -> int:
    out = subprocess.run(
        [PY, str(HERE / "struct_loop.py"), str(path)], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def build(workload: str, path: Path, size_mb: float, clients: int) -> None:
    if path.exists():
        return
    if workload == "ct":
        if os.geteuid() != 0:
            raise SystemExit("the ct workload is recorded in a namespace lab: run as root")
        cmd = [PY, str(HERE / "ct_lab.py"), str(path), "--size-mb", str(size_mb)]
    else:
        cmd = [PY, str(HERE / "make_capture.py"), str(path), "--size-mb", str(size_mb)]
        cmd += ["--clients", str(clients)]
    subprocess.run(cmd, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--workload", choices=("ct", "template"), default="ct")
    ap.add_argument("--sizes-mb", default="250,1000,4000", help="comma-separated sizes")
    ap.add_argument("--keep", action="store_true", help="keep the generated captures")
    ap.add_argument(
        "--clients",
        type=int,
        default=0,
        help="template workload: distinct client addresses (0: a new one per association)",
    )
    ap.add_argument(
        "--baseline",
        metavar="REV",
        help="also run analyze --workers 1 as of this git revision (checked out in a temporary "
        "worktree) on the largest capture, for a before/after comparison in one run",
    )
    ap.add_argument("--repeat", type=int, default=2, help="runs of each tool, taking turns")
    ap.add_argument(
        "--live-rates",
        default="400,600,800,1000",
        help="Mbps rates for the live replay (empty: no live replay)",
    )
    args = ap.parse_args()
    ensure_tools(bool(args.live_rates))
    DATA.mkdir(exist_ok=True)
    sizes = [float(s) for s in args.sizes_mb.split(",")]
    suffix = "" if args.workload == "ct" else f"_c{args.clients}"
    paths = [DATA / f"{args.workload}_{mb:.0f}mb{suffix}.pcap" for mb in sizes]
    for path, size in zip(paths, sizes, strict=True):
        build(args.workload, path, size, args.clients)
    beside = Path(PY).parent / "dicom-analyzer"  # the venv's entry point, as a user runs it
    analyzer = (
        str(beside) if beside.exists() else shutil.which("dicom-analyzer") or "dicom-analyzer"
    )
    tree = None
    report: list[str] = []
    compile_package(HERE.parent / "analyzer")
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline:
            tree = Path(tmp) / "baseline"
            subprocess.run(
                ["git", "-C", str(HERE.parent), "worktree", "add", "--detach", str(tree),
                 args.baseline],
                check=True,
                capture_output=True,
            )  # fmt: skip
            compile_package(tree / "analyzer")
        try:
            for path in paths:
                report += run_size(path, analyzer, Path(tmp), tree, args.baseline, args.repeat)
            if args.live_rates:
                report += live(paths[1] if len(paths) > 1 else paths[0], args.live_rates)
        finally:
            if tree is not None:
                subprocess.run(
                    ["git", "-C", str(HERE.parent), "worktree", "remove", "--force", str(tree)],
                    check=False,
                    capture_output=True,
                )
    print("\n".join(report))
    if not args.keep:
        for p in paths:
            p.unlink()


TOOLS = {
    "tshark": "tshark",
    "dumpcap": "wireshark-common",
    "tcpdump": "tcpdump",
    "taskset": "util-linux",
    "ip": "iproute2",
    "ethtool": "ethtool",
}
"""Programs the benchmark runs, and the Debian package of each."""


def ensure_tools(live: bool) -> None:
    """Install the missing programs of ``TOOLS`` (and tcpreplay for ``live``) with apt-get."""
    tools = {**TOOLS, "tcpreplay": "tcpreplay"} if live else TOOLS
    missing = sorted({pkg for cmd, pkg in tools.items() if shutil.which(cmd) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(
            f"missing programs; install them first: apt-get install {' '.join(missing)}"
        )
    print(f"installing {' '.join(missing)} ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=env,
        capture_output=True,
    )


def compile_package(package: Path) -> None:
    subprocess.run([PY, "-m", "compileall", "-q", str(package)], check=True, capture_output=True)


def live(capture: Path, rates: str) -> list[str]:
    """The live zero-drop table of ``live_replay.py`` on ``capture``."""
    done = subprocess.run(
        [PY, str(HERE / "live_replay.py"), str(capture), "--rates", rates, "--workers", "1,2"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return [f"\nlive replay failed: {done.stderr.strip()[-500:]}"]
    return [f"\nlive on {capture.name} (tcpreplay into a namespace):\n", done.stdout.strip()]


def run_size(
    big: Path,
    analyzer: str,
    tmp: Path,
    tree: Path | None,
    baseline: str | None,
    repeat: int = 2,
) -> list[str]:
    n_packets = packets_in(big)
    mb = big.stat().st_size / 1e6
    out = str(tmp / "out")
    runs: dict[str, tuple[list[str], bool, Path | None]] = {
        "analyze --workers 1": ([analyzer, "analyze", str(big), "-o", out, "-q", "--workers", "1"], True, None),
        "analyze (default workers, every core)": ([analyzer, "analyze", str(big), "-o", out, "-q"], False, None),
        "tshark -n -q -Y dicom": (
            ["tshark", "-n", "-q", "-Y", "dicom", "-d", "tcp.port==11112,dicom", "-r", str(big)],
            True,
            None,
        ),
        "struct floor (records, headers, flow dict)": ([PY, str(HERE / "struct_loop.py"), str(big)], True, None),
        "dpkt loop (Ethernet/IP/TCP objects)": ([PY, str(HERE / "dpkt_loop.py"), str(big)], True, None),
    }  # fmt: skip
    if tree is not None and baseline:
        runs[f"analyze --workers 1 at {baseline}"] = (
            [PY, "-m", "analyzer", "analyze", str(big), "-o", f"{out}b", "-q"],
            True,
            tree,
        )
    results: dict[str, dict[str, float]] = {}
    for _ in range(max(1, repeat)):  # taking turns; each tool's fastest run, highest RSS
        for name, (cmd, pin, cwd) in runs.items():
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(f"{out}b", ignore_errors=True)
            r = measure(cmd, pin, cwd)
            best = results.get(name)
            if best is None:
                results[name] = r
            else:
                best["seconds"] = min(best["seconds"], r["seconds"])
                best["peak_rss_mb"] = max(best["peak_rss_mb"], r["peak_rss_mb"])
                best["peak_rss_sum_mb"] = max(best["peak_rss_sum_mb"], r["peak_rss_sum_mb"])
    tshark = results["tshark -n -q -Y dicom"]["seconds"]
    lines = [
        f"\n{big.name}: {mb:,.0f} MB, {n_packets:,} packets\n",
        "| tool | seconds | packets/s | MB/s | peak RSS (largest process) | peak RSS (sum) | speed vs tshark |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        s = r["seconds"]
        lines.append(
            f"| {name} | {s:.1f} | {n_packets / s:,.0f} | {mb / s:,.1f} | "
            f"{r['peak_rss_mb']:,.0f} MB | {r['peak_rss_sum_mb']:,.0f} MB | {tshark / s:.2f}x |"
        )
    return lines


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
