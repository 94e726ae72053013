#!/usr/bin/env python3
"""The highest rate ``live`` takes without losing a packet, replayed with tcpreplay.

    sudo python benchmarks/live_replay.py CAPTURE [--rates 100,200,400,600,800] [--workers 1,2]

Two network namespaces of its own joined by a veth (MTU 1500, offloads off): tcpreplay sends
CAPTURE out of one end at each ``--mbps`` rate; ``live`` runs in the other namespace on the
other end (which has no route anywhere: replayed packets cannot leave the machine). After
each run it reads live's ``stats`` table: packets seen, dumpcap's dropped count, the kernel's
rx_dropped and rx_missed increases. A rate passes when all drop counters are 0 and live saw
every packet tcpreplay sent. Needs root, tcpreplay and dumpcap.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

SEND_NS, RECV_NS = "dcmrsend", "dcmrrecv"
SEND_IF, RECV_IF = "dcmr1", "dcmr0"
PY = sys.executable


def sh(*cmd: str, check: bool = True) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: {done.stderr.strip()}")
    return done.stdout + done.stderr


def lab_down() -> None:
    for ns in (SEND_NS, RECV_NS):
        sh("ip", "netns", "del", ns, check=False)


def lab_up() -> None:
    lab_down()
    for ns in (SEND_NS, RECV_NS):
        sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", SEND_IF, "mtu", "1500", "type", "veth", "peer", "name", RECV_IF)
    sh("ip", "link", "set", SEND_IF, "netns", SEND_NS)
    sh("ip", "link", "set", RECV_IF, "netns", RECV_NS)
    for ns, dev in ((SEND_NS, SEND_IF), (RECV_NS, RECV_IF)):
        sh("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up")
        sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off",
           "gro", "off", check=False)  # fmt: skip


def one_rate(capture: Path, mbps: int, workers: int, out: Path) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    live = subprocess.Popen(
        ["ip", "netns", "exec", RECV_NS, PY, "-m", "analyzer", "live", "-i", RECV_IF, "-o",
         str(out), "--stats-interval", "1", "--workers", str(workers)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert live.stderr is not None
    deadline = time.monotonic() + 30
    while "live: capturing on" not in live.stderr.readline():
        if live.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("live did not start")
    time.sleep(1.0)
    sent = sh("ip", "netns", "exec", SEND_NS, "tcpreplay", "-i", SEND_IF, f"--mbps={mbps}",
              str(capture))  # fmt: skip
    time.sleep(3.0)  # let live drain its queue
    live.send_signal(signal.SIGTERM)
    live.communicate(timeout=120)
    stats = pl.read_parquet(out / "stats" / "part-*.parquet")
    match = re.search(r"Actual: (\d+) packets.*?Rated: [\d.]+ Bps, ([\d.]+) Mbps", sent, re.S)
    packets = int(match.group(1)) if match else -1
    actual = float(match.group(2)) if match else float("nan")
    return {
        "mbps": mbps,
        "actual_mbps": actual,
        "sent": packets,
        "seen": int(stats["packets_total"].max() or 0),
        "dumpcap_dropped": int(stats["dumpcap_dropped"].max() or 0),
        "kernel_dropped": int(stats["kernel_rx_dropped"].sum() + stats["kernel_rx_missed"].sum()),
        "max_queued": int(stats["queued"].max() or 0),
        "max_lag": float(stats["lag"].max() or 0.0),
        "rss_mb": float(stats["rss_mb"].max() or 0.0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("capture", type=Path)
    ap.add_argument("--rates", default="100,200,300,400,500,600,800")
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args()
    lab_up()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for workers in (int(w) for w in args.workers.split(",")):
                for mbps in (int(r) for r in args.rates.split(",")):
                    r = one_rate(args.capture, mbps, workers, Path(tmp) / "out")
                    r["workers"] = workers
                    r["ok"] = (
                        r["dumpcap_dropped"] == 0
                        and r["kernel_dropped"] == 0
                        and r["seen"] >= r["sent"]
                    )
                    rows.append(r)
                    print(r, file=sys.stderr, flush=True)
    finally:
        lab_down()
    print(
        "| workers | target Mbps | tcpreplay Mbps | sent | seen by live | dumpcap dropped | kernel dropped | max queue | max lag s | RSS MB | zero loss |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['workers']} | {r['mbps']} | {r['actual_mbps']:.0f} | {r['sent']:,} | {r['seen']:,} | "
            f"{r['dumpcap_dropped']:,} | {r['kernel_dropped']:,} | {r['max_queued']:,} | {r['max_lag']:.2f} | "
            f"{r['rss_mb']:.0f} | {'yes' if r['ok'] else 'no'} |"
        )
    for w in sorted({r["workers"] for r in rows}):
        best = [r["mbps"] for r in rows if r["workers"] == w and r["ok"]]
        print(f"--workers {w}: highest zero-loss rate {max(best) if best else 0} Mbps")


if __name__ == "__main__":
    main()
