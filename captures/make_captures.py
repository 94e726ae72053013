#!/usr/bin/env python3
"""Regenerate the sample captures with real DICOM peers on a lab network.

Run as root on Linux:  python3 captures/make_captures.py [SCENARIO ...]

The lab is a network namespace ``dcmlab`` joined to the host by a veth pair
(MTU 1500; TSO, GSO and GRO off so frames look like a span port sees them).
Servers (DCMTK storescp, pynetdicom SCP) run inside the namespace, clients outside,
tcpdump/dumpcap record. Traffic only ever goes to the namespace or to loopback.
Patient data is synthetic (captures/lab/synthetic.py).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAB = HERE / "lab"
NS = "dcmlab"
HOST_IF, NS_IF = "dcmlab0", "dcmlab1"
HOST_IP, SRV_IP = "10.231.0.1", "10.231.0.2"
HOST_IP6, SRV_IP6 = "fd00:dc::1", "fd00:dc::2"
# Fragmentation lab: client -> router namespace -> server namespace, the last hop MTU 700
R_NS, F_NS = "dcmlab-r", "dcmlab-f"
FRAG_CLIENT_IP, FRAG_ROUTER_IP1, FRAG_ROUTER_IP2, FRAG_SRV_IP = (
    "10.232.0.1",
    "10.232.0.2",
    "10.233.0.1",
    "10.233.0.2",
)
PY = sys.executable
DCMTK = "/usr/bin"  # DCMTK's tools (pynetdicom installs same-named scripts on PATH)


def sh(*cmd: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    done = subprocess.run(full, check=False, text=True, capture_output=True)
    if check and done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(full)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}"
        )
    return done


def quiet(*cmd: str, ns: str | None = None) -> None:
    sh(*cmd, ns=ns, check=False)


def offloads_off(dev: str, ns: str | None = None) -> None:
    sh("ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", ns=ns, check=False)


def lab_down() -> None:
    for ns in (NS, R_NS, F_NS):
        quiet("ip", "netns", "del", ns)
    for dev in (HOST_IF, "dcmfrag0"):
        quiet("ip", "link", "del", dev)


def lab_up() -> None:
    lab_down()
    sh("ip", "netns", "add", NS)
    sh(
        "ip",
        "link",
        "add",
        HOST_IF,
        "mtu",
        "1500",
        "type",
        "veth",
        "peer",
        "name",
        NS_IF,
        "mtu",
        "1500",
    )
    sh("ip", "link", "set", NS_IF, "netns", NS)
    sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", HOST_IF)
    sh("ip", "-6", "addr", "add", f"{HOST_IP6}/64", "dev", HOST_IF, "nodad")
    sh("ip", "link", "set", HOST_IF, "up")
    sh("ip", "addr", "add", f"{SRV_IP}/24", "dev", NS_IF, ns=NS)
    sh("ip", "-6", "addr", "add", f"{SRV_IP6}/64", "dev", NS_IF, "nodad", ns=NS)
    sh("ip", "link", "set", NS_IF, "up", ns=NS)
    sh("ip", "link", "set", "lo", "up", ns=NS)
    offloads_off(HOST_IF)
    offloads_off(NS_IF, ns=NS)


def frag_lab_up() -> None:
    """client (host) -- router ns -- server ns, a 700-byte route MTU on the last hop."""
    sh("ip", "netns", "add", R_NS)
    sh("ip", "netns", "add", F_NS)
    sh("ip", "link", "add", "dcmfrag0", "type", "veth", "peer", "name", "dcmfrag1")
    sh("ip", "link", "set", "dcmfrag1", "netns", R_NS)
    sh("ip", "link", "add", "dcmfrag2", "type", "veth", "peer", "name", "dcmfrag3")
    sh("ip", "link", "set", "dcmfrag2", "netns", R_NS)
    sh("ip", "link", "set", "dcmfrag3", "netns", F_NS)
    sh("ip", "addr", "add", f"{FRAG_CLIENT_IP}/24", "dev", "dcmfrag0")
    sh("ip", "link", "set", "dcmfrag0", "up")
    sh("ip", "route", "add", "10.233.0.0/24", "via", FRAG_ROUTER_IP1)
    sh("ip", "addr", "add", f"{FRAG_ROUTER_IP1}/24", "dev", "dcmfrag1", ns=R_NS)
    sh("ip", "addr", "add", f"{FRAG_ROUTER_IP2}/24", "dev", "dcmfrag2", ns=R_NS)
    for dev in ("dcmfrag1", "dcmfrag2", "lo"):
        sh("ip", "link", "set", dev, "up", ns=R_NS)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=R_NS)
    # the small hop is a route MTU, so full-size replies from the server still arrive
    sh("ip", "route", "add", f"{FRAG_SRV_IP}/32", "dev", "dcmfrag2", "mtu", "lock", "700", ns=R_NS)
    sh("ip", "addr", "add", f"{FRAG_SRV_IP}/24", "dev", "dcmfrag3", ns=F_NS)
    sh("ip", "link", "set", "dcmfrag3", "up", ns=F_NS)
    sh("ip", "link", "set", "lo", "up", ns=F_NS)
    sh("ip", "route", "add", "default", "via", FRAG_ROUTER_IP2, ns=F_NS)
    for dev, ns in (("dcmfrag0", None), ("dcmfrag1", R_NS), ("dcmfrag2", R_NS), ("dcmfrag3", F_NS)):
        offloads_off(dev, ns)


def wait_port(host: str, port: int, ns: str | None = None, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    probe = f"import socket; socket.create_connection(({host!r}, {port}), 1).close()"
    while time.monotonic() < deadline:
        if sh(PY, "-c", probe, ns=ns, check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {host}:{port}")


@contextlib.contextmanager
def server(
    *cmd: str, ns: str | None, host: str, port: int, cwd: Path | None = None
) -> Iterator[None]:
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    proc = subprocess.Popen(full, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(host, port, ns=None if ns is None else ns)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def capture(out: Path, *args: str, ns: str | None = None, tool: str = "tcpdump") -> Iterator[None]:
    """Record with tcpdump (``-U -s0``) or dumpcap until the block ends."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if tool == "tcpdump":
        cmd = ["tcpdump", "-U", "-s0", "-n", *args, "-w", str(out)]
    else:
        cmd = ["dumpcap", "-q", *args, "-w", str(out)]
    full = ["ip", "netns", "exec", ns, *cmd] if ns else cmd
    proc = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 10
    line = ""
    while time.monotonic() < deadline:  # both tools say so once the capture is live
        line = proc.stderr.readline()
        if "listening on" in line or "Capturing on" in line or proc.poll() is not None:
            break
    if proc.poll() is not None:
        raise RuntimeError(f"{cmd[0]} failed: {line}{proc.stderr.read()}")
    time.sleep(0.5)
    try:
        yield
    finally:
        time.sleep(1.0)
        proc.terminate()
        proc.wait(10)
        os.chmod(out, 0o644) if out.exists() else None


def dcmtk(tool: str, *args: str) -> None:
    sh(f"{DCMTK}/{tool}", *args)


# -- exchanges -------------------------------------------------------------------------


def peer(*args: str) -> None:
    sh(PY, str(LAB / "peers.py"), *args)


def side_traffic(host: str) -> None:
    """Non-DICOM traffic beside it: an HTTP request and a refused connection."""
    bracket = f"[{host}]" if ":" in host else host
    with contextlib.suppress(OSError):
        urllib.request.urlopen(f"http://{bracket}:8080/", timeout=5).read()
    with contextlib.suppress(OSError):
        socket.create_connection((host, 5555), 2).close()


def basic_exchange(host: str, data: Path) -> None:
    """C-ECHO, C-STORE (DCMTK and pynetdicom), C-FIND PatientName=*, HTTP, a refused port."""
    dcmtk("echoscu", "-aet", "WORKSTATION1", "-aec", "STORESCP", host, "11112")
    dcmtk(
        "storescu",
        "-aet",
        "MODALITY_CT1",
        "-aec",
        "STORESCP",
        host,
        "11112",
        *(str(p) for p in sorted(data.glob("small_*.dcm"))),
    )
    peer("store", host, "4242", "PYSCP", str(data / "small_1.dcm"))
    dcmtk(
        "findscu",
        "-P",
        "-aet",
        "WORKSTATION1",
        "-aec",
        "PYSCP",
        "-k",
        "QueryRetrieveLevel=PATIENT",
        "-k",
        "PatientName=*",
        "-k",
        "PatientID",
        "-k",
        "PatientBirthDate",
        host,
        "4242",
    )
    side_traffic(host)


def ipv6_exchange(host: str, data: Path) -> None:
    """DCMTK 3.6.7 speaks IPv4 only: pynetdicom on both ends."""
    peer("echo", host, "4242", "PYSCP")
    peer("store", host, "4242", "PYSCP", str(data / "small_2.dcm"))
    peer("find", host, "4242", "PYSCP")
    side_traffic(host)


@contextlib.contextmanager
def lab_servers(
    ns: str | None, host: str, store_dir: Path, *, dcmtk_scp: bool = True
) -> Iterator[None]:
    """storescp on 11112, a pynetdicom SCP on 4242 and an HTTP server on 8080 at ``host``."""
    with contextlib.ExitStack() as stack:
        if dcmtk_scp:
            stack.enter_context(
                server(
                    f"{DCMTK}/storescp",
                    "-aet",
                    "STORESCP",
                    "-od",
                    str(store_dir),
                    "11112",
                    ns=ns,
                    host=host,
                    port=11112,
                )
            )
        stack.enter_context(
            server(
                PY,
                str(LAB / "peers.py"),
                "scp",
                "4242",
                "PYSCP",
                ns=ns,
                host=host,
                port=4242,
                cwd=LAB,
            )
        )
        stack.enter_context(
            server(
                PY,
                "-m",
                "http.server",
                "8080",
                "--bind",
                host,
                ns=ns,
                host=host,
                port=8080,
                cwd=store_dir,
            )
        )
        yield


# -- scenarios -------------------------------------------------------------------------


def scenario_lab(data: Path, store: Path) -> None:
    """Ethernet across the veth (the README sample) and the same over IPv6."""
    with lab_servers(NS, SRV_IP, store), capture(HERE / "dicom_lab.pcap", "-i", HOST_IF):
        basic_exchange(SRV_IP, data)
    with (
        lab_servers(NS, SRV_IP6, store, dcmtk_scp=False),
        capture(HERE / "ipv6_lab.pcap", "-i", HOST_IF, "ip6"),
    ):
        ipv6_exchange(SRV_IP6, data)


def scenario_loopback(data: Path, store: Path) -> None:
    """tcpdump -i any gives Linux cooked headers: SLL2 by default, SLL on request; lo in ns."""
    with lab_servers(None, "127.0.0.1", store):
        with capture(HERE / "any_sll2.pcap", "-i", "any", "port", "11112 or port 4242"):
            basic_exchange("127.0.0.1", data)
        with capture(HERE / "any_sll.pcap", "-i", "any", "-y", "LINUX_SLL", "port", "11112"):
            dcmtk("echoscu", "-aet", "WORKSTATION1", "-aec", "STORESCP", "127.0.0.1", "11112")
        with capture(
            HERE / "loopback_nano.pcap", "-i", "lo", "--time-stamp-precision=nano", "port", "11112"
        ):
            dcmtk(
                "storescu",
                "-aet",
                "MODALITY_CT1",
                "-aec",
                "STORESCP",
                "127.0.0.1",
                "11112",
                str(data / "small_0.dcm"),
            )


def scenario_two_interfaces(data: Path, store: Path) -> None:
    """One pcapng, two interfaces with two link types: the veth (Ethernet) and any (SLL)."""
    out = HERE / "two_interfaces.pcapng"
    with (
        lab_servers(NS, SRV_IP, store),
        lab_servers(None, "127.0.0.1", store),
        capture(
            out,
            "-i",
            HOST_IF,
            "-f",
            "tcp",
            "-i",
            "any",
            "-f",
            "host 127.0.0.1 and tcp",
            tool="dumpcap",
        ),
    ):
        dcmtk("echoscu", "-aet", "WORKSTATION1", "-aec", "STORESCP", SRV_IP, "11112")
        dcmtk(
            "storescu",
            "-aet",
            "MODALITY_CT1",
            "-aec",
            "STORESCP",
            "127.0.0.1",
            "11112",
            str(data / "small_2.dcm"),
        )


def scenario_snaplen(data: Path, store: Path) -> None:
    with (
        lab_servers(NS, SRV_IP, store),
        capture(HERE / "snaplen_200.pcap", "-i", HOST_IF, "-s", "200"),
    ):
        dcmtk(
            "storescu",
            "-aet",
            "MODALITY_CT1",
            "-aec",
            "STORESCP",
            SRV_IP,
            "11112",
            str(data / "small_0.dcm"),
        )


def scenario_rotated(data: Path, store: Path) -> None:
    """A 2.4 MB C-STORE recorded into 1 MB rotated files (one of them gzip-compressed)."""
    outdir = HERE / "rotated"
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir()
    with (
        lab_servers(NS, SRV_IP, store),
        capture(outdir / "span.pcap", "-i", HOST_IF, "-C", "1", "-Z", "root"),
    ):
        dcmtk(
            "storescu",
            "-aet",
            "MODALITY_CT1",
            "-aec",
            "STORESCP",
            SRV_IP,
            "11112",
            str(data / "large_0.dcm"),
        )
    second = outdir / "span.pcap1"
    if second.exists():
        with open(second, "rb") as src, gzip.open(str(second) + ".gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        second.unlink()
    for p in outdir.iterdir():
        p.chmod(0o644)


def scenario_fragments(data: Path, store: Path) -> None:
    """DF off at the client and a 700-byte hop: the router fragments every full segment."""
    frag_lab_up()
    old = sh("sysctl", "-n", "net.ipv4.ip_no_pmtu_disc").stdout.strip()
    sh("sysctl", "-qw", "net.ipv4.ip_no_pmtu_disc=1")
    sh("ip", "route", "flush", "cache")
    try:
        with (
            server(
                f"{DCMTK}/storescp",
                "-aet",
                "STORESCP",
                "-od",
                str(store),
                "11112",
                ns=F_NS,
                host=FRAG_SRV_IP,
                port=11112,
            ),
            capture(HERE / "ipv4_fragments.pcap", "-i", "dcmfrag2", ns=R_NS),
        ):
            dcmtk(
                "storescu",
                "-aet",
                "MODALITY_CT1",
                "-aec",
                "STORESCP",
                FRAG_SRV_IP,
                "11112",
                str(data / "small_0.dcm"),
            )
    finally:
        sh("sysctl", "-qw", f"net.ipv4.ip_no_pmtu_disc={old}")


SCENARIOS = {
    "lab": scenario_lab,
    "loopback": scenario_loopback,
    "two_interfaces": scenario_two_interfaces,
    "snaplen": scenario_snaplen,
    "rotated": scenario_rotated,
    "fragments": scenario_fragments,
}


def main(argv: list[str]) -> int:
    if os.geteuid() != 0:
        print("make_captures.py: needs root (network namespaces, packet capture)", file=sys.stderr)
        return 2
    names = argv or list(SCENARIOS)
    work = Path(tempfile.mkdtemp(prefix="dcmlab-"))
    data, store = work / "data", work / "store"
    store.mkdir(parents=True)
    sh(PY, str(LAB / "synthetic.py"), str(data))
    try:
        lab_up()
        for name in names:
            print(f"scenario {name}", flush=True)
            SCENARIOS[name](data, store)
    finally:
        lab_down()
        shutil.rmtree(work, ignore_errors=True)
    sh(PY, str(HERE / "derive_captures.py"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
