"""Soak test of ``dicom-analyzer live``: is its memory flat while real DICOM traffic flows?

Runs (as root) a pynetdicom SCP on loopback, ``live -i lo`` on its port, and pynetdicom
clients that associate from ever-new source addresses in 127.0.0.0/8 (C-ECHO, a wildcard
C-FIND, a C-STORE), so that every association adds a new endpoint: the worst case for
per-endpoint state. It then reads live's own ``stats`` table and reports RSS over time.

    sudo .venv/bin/python benchmarks/live_soak.py --minutes 20 [--clients 3]

The figures in the README come from this script.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "captures" / "lab" / "peers.py"
SYNTHETIC = ROOT / "captures" / "lab" / "synthetic.py"

CLIENT = r"""
import sys, itertools
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, debug_logger
from pynetdicom.sop_class import Verification, PatientRootQueryRetrieveInformationModelFind

port, worker, image = int(sys.argv[1]), int(sys.argv[2]), dcmread(sys.argv[3])
ae = AE(ae_title=f"SOAK{worker:02d}")
ae.add_requested_context(Verification)
ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
ae.add_requested_context(image.SOPClassUID, image.file_meta.TransferSyntaxUID)
query = Dataset()
query.QueryRetrieveLevel = "PATIENT"
query.PatientName = "*"
for i in itertools.count():
    n = i * 8 + worker
    addr = f"127.{1 + (n >> 16) % 250}.{(n >> 8) & 255}.{(n & 255) or 1}"
    assoc = ae.associate("127.0.0.1", port, ae_title="PYSCP", bind_address=(addr, 0))
    if not assoc.is_established:
        continue
    assoc.send_c_echo()
    if i % 4 == 0:
        for _ in assoc.send_c_find(query, PatientRootQueryRetrieveInformationModelFind):
            pass
    if i % 2 == 0:
        assoc.send_c_store(image)
    assoc.release()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=3, help="client processes (default 3)")
    ap.add_argument("--keep", metavar="DIR", help="keep live's output here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("live_soak: needs root (dumpcap on loopback)")
    work = Path(args.keep or tempfile.mkdtemp(prefix="dicom-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, str(SYNTHETIC), str(work / "images")], check=True, capture_output=True
    )
    port = free_port()
    py = sys.executable
    scp = subprocess.Popen([py, str(PEERS), "scp", str(port), "PYSCP"], stderr=subprocess.DEVNULL)
    time.sleep(2)
    out = work / "live"
    live = subprocess.Popen(
        [py, "-m", "analyzer", "live", "-i", "lo", "-f", f"tcp port {port}", "-o", str(out),
         "--stats-interval", "10", "--rotate-minutes", "1", "-q"],
        cwd=ROOT,
    )  # fmt: skip
    time.sleep(3)
    image = str(work / "images" / "small_0.dcm")
    clients = [
        subprocess.Popen([py, "-c", CLIENT, str(port), str(w), image], stderr=subprocess.DEVNULL)
        for w in range(args.clients)
    ]
    deadline = time.monotonic() + args.minutes * 60
    try:
        while time.monotonic() < deadline:
            time.sleep(5)
    finally:
        for c in clients:
            c.terminate()
        for c in clients:
            c.wait()
        live.send_signal(signal.SIGTERM)
        live.wait()
        scp.terminate()
        scp.wait()
    stats = pl.read_parquet(sorted((out / "stats").glob("part-*.parquet"))).sort("ts")
    assoc = pl.read_parquet(sorted((out / "dicom_assoc").glob("part-*.parquet")))
    t = (stats["ts"] - stats["ts"][0]).to_numpy() / 60.0
    rss = stats["rss_mb"].to_numpy()
    warm = t >= min(2.0, t[-1] / 2)  # after two minutes: imports, first tables, caches
    slope = float(np.polyfit(t[warm], rss[warm], 1)[0]) * 60 if warm.sum() > 2 else float("nan")
    endpoints = assoc["orig_h"].n_unique()
    print(
        f"soak: {args.minutes:.0f} min, {assoc.height:,} associations from {endpoints:,} client addresses,"
    )
    print(
        f"      {int(stats['packets_total'].max()):,} packets, max lag {stats['lag'].max():.2f} s, dumpcap drops {int(stats['dumpcap_dropped'].max())}"
    )
    print(
        f"      RSS MB: after warm-up {rss[warm][0]:.0f}, max {rss.max():.0f}, last {rss[-1]:.0f}; trend {slope:+.1f} MB/hour"
    )
    for minute in range(0, int(t[-1]) + 1, max(1, int(t[-1]) // 10)):
        i = int(np.searchsorted(t, minute))
        if i < len(rss):
            print(
                f"      t={t[i]:5.1f} min  rss {rss[i]:6.1f} MB  open flows {int(stats['open_flows'][i])}"
            )
    print(f"output kept in {work}" if args.keep else "")


if __name__ == "__main__":
    main()
