#!/usr/bin/env python3
"""Record a realistic hospital capture in the lab: CT and MR series, worklist, echoes.

    python benchmarks/ct_lab.py OUT.pcap --size-mb 1000 [--slices 20] [--concurrent 3]

Needs root (network namespace, veth, tcpdump). A namespace ``dcmbench`` holds two
pynetdicom SCPs (PACS on 11112 taking 16 kB PDUs, archive on 104 taking any size: four
associations in five go to the PACS); the host side of the veth (MTU 1500,
offloads off) carries six client addresses, one per modality. Client processes run
concurrently, picked in turn from: CT and MR series of 512x512x16-bit slices with full
headers (benchmarks/ct_objects.py) in Explicit VR Little Endian, every seventh series
deflated, every thirteenth in Explicit VR Big Endian, Modality Worklist C-FINDs answered
with patient data, and C-ECHOs. tcpdump -U -s0 records the veth until the file reaches
the size. Traffic stays between the host and its own namespace.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import ct_objects  # noqa: E402

NS, HOST_IF, NS_IF = "dcmbench", "dcmb0", "dcmb1"
HOST_IP, SRV_IP = "10.239.0.1", "10.239.0.2"
CLIENTS = [f"10.239.0.{n}" for n in range(11, 17)]
PY = sys.executable
PEERS = str(HERE / "ct_peers.py")
SCPS = ((11112, "PACS", 16382), (104, "ARCHIVE", 0))
"""Port, AE title, largest PDU accepted: the PACS takes the common 16 kB PDUs (pynetdicom's
default; DCMTK and Orthanc use 16384), the archive no limit (an object in one PDU)."""


def sh(*cmd: str, check: bool = True) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: {done.stderr.strip()}")


def lab_down() -> None:
    sh("ip", "netns", "del", NS, check=False)
    sh("ip", "link", "del", HOST_IF, check=False)


def lab_up() -> None:
    lab_down()
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "add", HOST_IF, "mtu", "1500", "type", "veth", "peer", "name", NS_IF)
    sh("ip", "link", "set", NS_IF, "netns", NS)
    for ip in [HOST_IP, *CLIENTS]:
        sh("ip", "addr", "add", f"{ip}/24", "dev", HOST_IF)
    sh("ip", "link", "set", HOST_IF, "up")
    sh("ip", "netns", "exec", NS, "ip", "addr", "add", f"{SRV_IP}/24", "dev", NS_IF)
    sh("ip", "netns", "exec", NS, "ip", "link", "set", NS_IF, "mtu", "1500", "up")
    sh("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up")
    for ns, dev in ((None, HOST_IF), (NS, NS_IF)):
        pre = ["ip", "netns", "exec", ns] if ns else []
        sh(
            *pre,
            "ethtool",
            "-K",
            dev,
            "tso",
            "off",
            "gso",
            "off",
            "gro",
            "off",
            "tx",
            "off",
            check=False,
        )


def wait_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((SRV_IP, port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"no SCP on {SRV_IP}:{port}")


def objects(data: Path, slices: int) -> dict[str, list[list[str]]]:
    """Series files by kind, built once and kept in ``data``."""
    from pydicom.uid import ExplicitVRLittleEndian as LE

    out: dict[str, list[list[str]]] = {"plain": [], "deflate": [], "bigendian": []}
    plan = [("CT", p, s, LE) for p, s in ((0, 1), (1, 2), (2, 3), (3, 4))]
    plan += [("MR", p, s, LE) for p, s in ((4, 5), (5, 6))]
    plan += [("CT", 1, 7, ct_objects.SYNTAXES["deflate"])]
    plan += [("MR", 2, 8, ct_objects.SYNTAXES["bigendian"])]
    for modality, patient, series, syntax in plan:
        kind = next(k for k, v in ct_objects.SYNTAXES.items() if v == syntax)
        stamp = data / f"series_{modality}_{patient}_{series}_{kind}_{slices}"
        if not stamp.exists():
            ct_objects.write_series(data / "series", modality, patient, series, slices, syntax)
            stamp.write_text("")
        files = sorted(
            str(p) for p in (data / "series").glob(f"{modality}_{patient}_{series}_{kind}_*.dcm")
        )
        files = files[:slices]
        out["plain" if kind == "explicit" else kind].append(files)
    return out


def jobs(series: dict[str, list[list[str]]]) -> itertools.cycle[tuple[str, list[str]]]:
    """The order clients come in: mostly stores, now and then worklist, echo, deflate, BE."""
    plain = series["plain"]
    plan: list[tuple[str, list[str]]] = []
    for n in range(26):
        plan.append(("store", plain[n % len(plain)]))
        if n % 3 == 0:
            plan.append(("worklist", []))
        if n % 4 == 1:
            plan.append(("echo", []))
        if n % 7 == 6:
            plan.append(("store", series["deflate"][0]))
        if n == 12:
            plan.append(("store", series["bigendian"][0]))
    return itertools.cycle(plan)


def record(out: Path, size_mb: float, slices: int, concurrent: int, data: Path) -> None:
    series = objects(data, slices)
    lab_up()
    scps = [
        subprocess.Popen(
            ["ip", "netns", "exec", NS, PY, PEERS, "scp", str(port), title, str(max_pdu)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port, title, max_pdu in SCPS
    ]
    dump = None
    try:
        wait_port(11112)
        wait_port(104)
        out.parent.mkdir(parents=True, exist_ok=True)
        dump = subprocess.Popen(
            ["tcpdump", "-U", "-s0", "-n", "-i", HOST_IF, "-w", str(out), "tcp"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert dump.stderr is not None
        while "listening on" not in dump.stderr.readline():
            if dump.poll() is not None:
                raise SystemExit("tcpdump failed")
        target = int(size_mb * 1e6)
        running: list[subprocess.Popen[bytes]] = []
        order = jobs(series)
        titles = itertools.cycle(["LABCT01", "LABCT02", "LABMR01", "LABCT03", "LABMR02", "LABCT04"])
        n = 0
        while (out.stat().st_size if out.exists() else 0) < target:
            running = [p for p in running if p.poll() is None]
            if len(running) >= concurrent:
                time.sleep(0.05)
                continue
            kind, files = next(order)
            bind = CLIENTS[n % len(CLIENTS)]
            port, called = (104, "ARCHIVE") if n % 5 == 4 else (11112, "PACS")
            running.append(
                subprocess.Popen(
                    [PY, PEERS, kind, bind, SRV_IP, str(port), next(titles), called, *files],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            n += 1
        for p in running:
            p.wait(120)
        time.sleep(1.0)
        print(f"{out}: {out.stat().st_size / 1e6:.0f} MB, {n} associations", file=sys.stderr)
    finally:
        if dump is not None:
            dump.terminate()
            dump.wait(10)
        for p in scps:
            p.terminate()
            p.wait(10)
        lab_down()
    os.chmod(out, 0o644)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("out", type=Path)
    ap.add_argument("--size-mb", type=float, default=1000.0)
    ap.add_argument("--slices", type=int, default=20)
    ap.add_argument("--concurrent", type=int, default=3)
    ap.add_argument("--data", type=Path, default=HERE / "data" / "ct_objects")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("ct_lab.py needs root (namespace, veth, tcpdump)")
    record(args.out, args.size_mb, args.slices, args.concurrent, args.data)


if __name__ == "__main__":
    main()
