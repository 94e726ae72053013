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
    done = subprocess.run(full, check=False, text=True, errors="replace", capture_output=True)
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


def storescp(
    store: Path,
    port: int,
    *options: str,
    title: str = "STORESCP",
    ns: str | None = NS,
    host: str = SRV_IP,
) -> contextlib.AbstractContextManager[None]:
    """DCMTK's storescp as a lab server, storing into ``store``."""
    argv = [f"{DCMTK}/storescp", *options, "-aet", title, "-od", str(store), str(port)]
    return server(*argv, ns=ns, host=host, port=port)


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


def storescu(
    host: str, port: str, *files: str, called: str = "STORESCP", options: tuple[str, ...] = ()
) -> None:
    """DCMTK's storescu as the lab's modality MODALITY_CT1."""
    dcmtk("storescu", *options, "-aet", "MODALITY_CT1", "-aec", called, host, port, *files)


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
    storescu(host, "11112", *(str(p) for p in sorted(data.glob("small_*.dcm"))))
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
            stack.enter_context(storescp(store_dir, 11112, ns=ns, host=host))
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
            storescu("127.0.0.1", "11112", str(data / "small_0.dcm"))


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
        storescu("127.0.0.1", "11112", str(data / "small_2.dcm"))


def scenario_snaplen(data: Path, store: Path) -> None:
    with (
        lab_servers(NS, SRV_IP, store),
        capture(HERE / "snaplen_200.pcap", "-i", HOST_IF, "-s", "200"),
    ):
        storescu(SRV_IP, "11112", str(data / "small_0.dcm"))


def scenario_rotated(data: Path, store: Path) -> None:
    """A 2.4 MB C-STORE recorded into 1 MB rotated files (one of them gzip-compressed)."""
    outdir = HERE / "rotated"
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir()
    with (
        lab_servers(NS, SRV_IP, store),
        capture(outdir / "span.pcap", "-i", HOST_IF, "-C", "1", "-Z", "root"),
    ):
        storescu(SRV_IP, "11112", str(data / "large_0.dcm"))
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
            storescp(store, 11112, ns=F_NS, host=FRAG_SRV_IP),
            capture(HERE / "ipv4_fragments.pcap", "-i", "dcmfrag2", ns=R_NS),
        ):
            storescu(FRAG_SRV_IP, "11112", str(data / "small_0.dcm"))
    finally:
        sh("sysctl", "-qw", f"net.ipv4.ip_no_pmtu_disc={old}")


def _study_uid(path: Path) -> str:
    from pydicom import dcmread

    return str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def scenario_transfer_syntaxes(data: Path, store: Path) -> None:
    """C-STORE in Explicit VR Big Endian (pynetdicom SCP), Deflated Explicit VR LE and JPEG Lossless."""
    jpeg = data / "small_2_jpeg.dcm"
    dcmtk("dcmcjpeg", str(data / "small_2.dcm"), str(jpeg))
    with capture(HERE / "transfer_syntaxes.pcap", "-i", HOST_IF, "port", "11112"):
        # an acceptor that takes big endian only, so storescu must convert and send it
        with server(
            PY,
            str(LAB / "peers.py"),
            "be-scp",
            "11112",
            "BIGENDIAN",
            ns=NS,
            host=SRV_IP,
            port=11112,
            cwd=LAB,
        ):
            storescu(
                SRV_IP,
                "11112",
                str(data / "small_0.dcm"),
                called="BIGENDIAN",
                options=("-R", "-xb"),
            )
        with storescp(store, 11112, "+xd"):
            storescu(SRV_IP, "11112", str(data / "small_1.dcm"), options=("-R", "-xd"))
        with storescp(store, 11112, "+xa"):
            storescu(SRV_IP, "11112", str(jpeg), options=("-R", "-xs"))


ORTHANC_CONFIG = """{
  "Name": "dcmlab", "StorageDirectory": "%(dir)s/db", "IndexDirectory": "%(dir)s/db",
  "DicomServerEnabled": true, "DicomAet": "ORTHANC", "DicomPort": 4242, "DicomCheckCalledAet": false,
  "HttpServerEnabled": true, "HttpPort": 8042, "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
  "Plugins": [], "DicomAlwaysAllowEcho": true, "DicomAlwaysAllowStore": true,
  "DicomAlwaysAllowFind": true, "DicomAlwaysAllowGet": true, "DicomAlwaysAllowMove": true,
  "DicomModalities": {"archive2": ["ARCHIVE2", "%(host)s", 11113], "qrscu": ["QRSCU", "%(host)s", 11114]}
}
"""


def scenario_orthanc(data: Path, store: Path) -> None:
    """Orthanc as the PACS: C-STORE in, study-root C-FIND PatientName=*, C-MOVE to a third AE
    (ARCHIVE2 on the host) with its sub-association, a C-MOVE to an unknown AE, and C-GET."""
    odir = store / "orthanc"
    odir.mkdir()
    cfg = odir / "orthanc.json"
    cfg.write_text(ORTHANC_CONFIG % {"dir": odir, "host": HOST_IP})
    study = _study_uid(data / "small_0.dcm")
    archive = store / "archive2"
    archive.mkdir()
    with (
        server("Orthanc", str(cfg), ns=NS, host=SRV_IP, port=4242),
        storescp(archive, 11113, title="ARCHIVE2", ns=None, host=HOST_IP),
        capture(HERE / "orthanc_qr.pcap", "-i", HOST_IF, "port", "4242 or port 11113"),
    ):
        storescu(
            SRV_IP, "4242", *(str(p) for p in sorted(data.glob("small_?.dcm"))), called="ORTHANC"
        )
        dcmtk(
            "findscu",
            "-S",
            "-aet",
            "QRSCU",
            "-aec",
            "ORTHANC",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            "PatientName=*",
            "-k",
            "PatientID",
            "-k",
            "StudyInstanceUID",
            SRV_IP,
            "4242",
        )
        dcmtk(
            "movescu",
            "-S",
            "-aet",
            "QRSCU",
            "-aec",
            "ORTHANC",
            "-aem",
            "ARCHIVE2",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={study}",
            SRV_IP,
            "4242",
        )
        sh(
            f"{DCMTK}/movescu",
            "-S",
            "-aet",
            "QRSCU",
            "-aec",
            "ORTHANC",
            "-aem",
            "NOWHERE",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={study}",
            SRV_IP,
            "4242",
            check=False,
        )
        dcmtk(
            "getscu",
            "-S",
            "-aet",
            "QRSCU",
            "-aec",
            "ORTHANC",
            "-od",
            str(store),
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={study}",
            SRV_IP,
            "4242",
        )


def scenario_worklist(data: Path, store: Path) -> None:
    """Modality worklist C-FIND (DCMTK wlmscpfs) with a Latin-1 patient name."""
    wl = store / "worklists" / "WLMSCP"
    wl.mkdir(parents=True)
    dcmtk("dump2dcm", "-g", str(LAB / "worklist.dump"), str(wl / "entry1.wl"))
    (wl / "lockfile").write_text("")
    with (
        server(
            f"{DCMTK}/wlmscpfs",
            "-dfp",
            str(store / "worklists"),
            "2005",
            ns=NS,
            host=SRV_IP,
            port=2005,
        ),
        capture(HERE / "worklist.pcap", "-i", HOST_IF, "port", "2005"),
    ):
        dcmtk(
            "findscu",
            "-W",
            "-aet",
            "CT_SCANNER1",
            "-aec",
            "WLMSCP",
            "-k",
            "(0040,0100)[0].Modality=CT",
            "-k",
            "SpecificCharacterSet",
            "-k",
            "PatientName",
            "-k",
            "PatientID",
            "-k",
            "PatientBirthDate",
            "-k",
            "AccessionNumber",
            SRV_IP,
            "2005",
        )


def scenario_user_identity(data: Path, store: Path) -> None:
    """User identity types 1 to 5 (pynetdicom), a wrong passcode rejected."""
    with (
        server(
            PY,
            str(LAB / "peers.py"),
            "auth-scp",
            "11115",
            "AUTHSCP",
            ns=NS,
            host=SRV_IP,
            port=11115,
            cwd=LAB,
        ),
        capture(HERE / "user_identity.pcap", "-i", HOST_IF, "port", "11115"),
    ):
        for args in (
            ("1", "radiology"),
            ("2", "radiology", "lab-pass"),
            ("2", "radiology", "wrong-guess"),
            ("3", "KRB5-SERVICE-TICKET"),
            ("4", "<saml:Assertion>synthetic</saml:Assertion>"),
            ("5", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJsYWIifQ.c2lnbmF0dXJl"),
        ):
            peer("identity", SRV_IP, "11115", "AUTHSCP", *args)


def scenario_reject_abort(data: Path, store: Path) -> None:
    """Called-AE reject (pynetdicom), a refusing storescp, and an A-ABORT."""
    with (
        server(
            PY,
            str(LAB / "peers.py"),
            "strict-scp",
            "11116",
            "STRICTSCP",
            ns=NS,
            host=SRV_IP,
            port=11116,
            cwd=LAB,
        ),
        server(f"{DCMTK}/storescp", "--refuse", "11117", ns=NS, host=SRV_IP, port=11117),
        capture(HERE / "reject_abort.pcap", "-i", HOST_IF, "port", "11116 or port 11117"),
    ):
        sh(
            f"{DCMTK}/echoscu",
            "-aet",
            "WORKSTATION1",
            "-aec",
            "GUESSED_AE",
            SRV_IP,
            "11116",
            check=False,
        )
        sh(
            f"{DCMTK}/echoscu",
            "-aet",
            "WORKSTATION1",
            "-aec",
            "ANY-SCP",
            SRV_IP,
            "11117",
            check=False,
        )
        peer("abort", SRV_IP, "11116", "STRICTSCP")


def scenario_odd_ports_and_pdus(data: Path, store: Path) -> None:
    """DICOM on port 8104; a 256-byte maximum PDU so a dataset spans dozens of PDUs."""
    with (
        storescp(store, 8104),
        capture(HERE / "nonstandard_port.pcap", "-i", HOST_IF, "port", "8104"),
    ):
        dcmtk("echoscu", "-aet", "WORKSTATION1", "-aec", "STORESCP", SRV_IP, "8104")
        storescu(SRV_IP, "8104", str(data / "small_0.dcm"), options=("-R",))
    with (
        server(
            PY,
            str(LAB / "peers.py"),
            "strict-scp",
            "11118",
            "TINYPDU",
            "256",
            ns=NS,
            host=SRV_IP,
            port=11118,
            cwd=LAB,
        ),
        capture(HERE / "tiny_pdu.pcap", "-i", HOST_IF, "port", "11118"),
    ):
        storescu(SRV_IP, "11118", str(data / "small_1.dcm"), called="TINYPDU", options=("-R",))


def scenario_tls(data: Path, store: Path) -> None:
    """DICOM over TLS on 2762 (DCMTK, self-signed lab certificate), then cleartext on 2762."""
    key, cert = store / "key.pem", store / "cert.pem"
    sh(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(cert),
        "-subj",
        "/CN=dcmlab",
        "-days",
        "2",
    )
    with capture(HERE / "tls_2762.pcap", "-i", HOST_IF, "port", "2762"):
        with server(
            f"{DCMTK}/storescp",
            "+tls",
            str(key),
            str(cert),
            "-ic",
            "-aet",
            "STORESCP",
            "-od",
            str(store),
            "2762",
            ns=NS,
            host=SRV_IP,
            port=2762,
        ):
            storescu(SRV_IP, "2762", str(data / "small_0.dcm"), options=("-R", "+tla", "-ic"))
        with storescp(store, 2762):
            storescu(SRV_IP, "2762", str(data / "small_0.dcm"), options=("-R",))


def scenario_charsets(data: Path, store: Path) -> None:
    """C-STORE of a Japanese (ISO 2022 IR 87) and a Latin-1 (ISO_IR 100) patient name."""
    with (
        lab_servers(NS, SRV_IP, store),
        capture(HERE / "charsets.pcap", "-i", HOST_IF, "port", "4242"),
    ):
        peer("store", SRV_IP, "4242", "PYSCP", str(data / "japanese.dcm"), str(data / "latin1.dcm"))


def scenario_scan(data: Path, store: Path) -> None:
    """nmap dicom-ping and dicom-brute against four SCPs and one closed DICOM port."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(storescp(store, 104))
        stack.enter_context(storescp(store, 11112))
        stack.enter_context(
            server(
                PY,
                str(LAB / "peers.py"),
                "strict-scp",
                "4242",
                "STRICTSCP",
                ns=NS,
                host=SRV_IP,
                port=4242,
                cwd=LAB,
            )
        )
        stack.enter_context(capture(HERE / "nmap_scan.pcap", "-i", HOST_IF, "tcp"))
        sh(
            "nmap",
            "-n",
            "-Pn",
            "-sT",
            "-p",
            "104,2761,2762,4242,11112",
            "--script",
            "dicom-ping,dicom-brute",
            "--script-args",
            f"passdb={LAB / 'aets.txt'}",
            SRV_IP,
        )


def scenario_harvest(data: Path, store: Path) -> None:
    """Data harvesting against a pynetdicom Q/R SCP: prefix enumeration, moves to unknown AEs,
    a refused caller, and SOP class sweeping with storescu's 128 contexts."""
    with (
        server(
            PY,
            str(LAB / "peers.py"),
            "qr-scp",
            "4242",
            "QRSCP",
            HOST_IP,
            "11113",
            ns=NS,
            host=SRV_IP,
            port=4242,
            cwd=LAB,
        ),
        server(
            PY,
            str(LAB / "peers.py"),
            "auth-scp",
            "11115",
            "ECHOONLY",
            ns=NS,
            host=SRV_IP,
            port=11115,
            cwd=LAB,
        ),
        capture(HERE / "harvest.pcap", "-i", HOST_IF, "port", "4242 or port 11115"),
    ):
        peer("find-prefixes", SRV_IP, "4242", "QRSCP", "A*", "B*", "C*", "D*", "E*", "F*")
        for _ in range(2):
            sh(
                f"{DCMTK}/movescu",
                "-P",
                "-aet",
                "QRSCU",
                "-aec",
                "QRSCP",
                "-aem",
                "NOWHERE",
                "-k",
                "QueryRetrieveLevel=PATIENT",
                "-k",
                "PatientID=PAT-0001",
                SRV_IP,
                "4242",
                check=False,
            )
        sh(
            f"{DCMTK}/findscu",
            "-P",
            "-aet",
            "INTRUDER",
            "-aec",
            "QRSCP",
            "-k",
            "QueryRetrieveLevel=PATIENT",
            "-k",
            "PatientName=DOE*",
            SRV_IP,
            "4242",
            check=False,
        )
        sh(
            f"{DCMTK}/storescu",
            "-aet",
            "SWEEPER",
            "-aec",
            "ECHOONLY",
            SRV_IP,
            "11115",
            str(data / "small_0.dcm"),
            check=False,
        )


def scenario_malformed(data: Path, store: Path) -> None:
    """Hostile PDUs and a deflate bomb sent to a real storescp, HTTP on port 104, connection churn."""
    with (
        storescp(store, 11112, "+xd"),
        storescp(store, 104),
        server(
            PY,
            str(LAB / "peers.py"),
            "strict-scp",
            "4242",
            "STORESCP",
            ns=NS,
            host=SRV_IP,
            port=4242,
            cwd=LAB,
        ),
        capture(HERE / "malformed.pcap", "-i", HOST_IF, "port", "11112 or port 104 or port 4242"),
    ):
        sh(PY, str(LAB / "peers.py"), "malformed", SRV_IP, "11112", check=False)
        sh(
            PY, str(LAB / "peers.py"), "malformed", SRV_IP, "4242", check=False
        )  # pynetdicom answers too
        sh(PY, str(LAB / "peers.py"), "deflate-bomb", SRV_IP, "11112", "STORESCP", check=False)
        with contextlib.suppress(OSError), socket.create_connection((SRV_IP, 104), 2) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: pacs\r\n\r\n")
            s.recv(1024)
        sh(PY, str(LAB / "peers.py"), "churn", SRV_IP, "11112", "30")


def scenario_malformed_pdus(data: Path, store: Path) -> None:
    """Five malformed connections from a raw socket to a real storescp (each must be a finding)."""
    with (
        storescp(store, 11112),
        capture(HERE / "malformed_pdus.pcap", "-i", HOST_IF, "port", "11112"),
    ):
        sh(PY, str(LAB / "peers.py"), "malformed-pdus", SRV_IP, "11112", check=False)


def scenario_path_traversal(data: Path, store: Path) -> None:
    """A store whose Patient ID climbs directories and whose Study ID carries a shell command
    (SCPs have built file names from both), sent by pynetdicom to the pynetdicom SCP."""
    import pydicom

    ds = pydicom.dcmread(data / "small_1.dcm")
    ds.PatientID = "../../../../tmp/pwned"
    ds.StudyID = "1;id"
    crafted = store / "traversal.dcm"
    ds.save_as(crafted)
    with (
        lab_servers(NS, SRV_IP, store, dcmtk_scp=False),
        capture(HERE / "path_traversal.pcap", "-i", HOST_IF, "port", "4242"),
    ):
        peer("store", SRV_IP, "4242", "PYSCP", str(crafted))


DICOMWEB_CONFIG = """{
  "Name": "dcmlab-web-%(port)s", "StorageDirectory": "%(dir)s/db", "IndexDirectory": "%(dir)s/db",
  "DicomServerEnabled": false, "HttpServerEnabled": true, "HttpPort": %(port)s,
  "RemoteAccessAllowed": true, "AuthenticationEnabled": %(auth)s,
  "RegisteredUsers": {"radiology": "synthetic-pass-1"}, "HttpCompressionEnabled": true,
  "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/", "EnableWado": true, "WadoRoot": "/wado"}
}
"""


def scenario_dicomweb(data: Path, store: Path) -> None:
    """Orthanc 1.10 with its DICOMweb plugin, with and without Basic auth: dicomweb-client and
    curl (QIDO, WADO-RS, WADO-URI, STOW with a PE/DICOM polyglot, gzip, 401s, a bearer token)."""
    configs = []
    for port, auth in ((8042, "true"), (8043, "false")):
        odir = store / f"orthanc_web_{port}"
        odir.mkdir()
        cfg = odir / "orthanc.json"
        cfg.write_text(DICOMWEB_CONFIG % {"dir": odir, "port": port, "auth": auth})
        configs.append(cfg)
    work = store / "dicomweb_work"
    work.mkdir()
    with (
        server("Orthanc", str(configs[0]), ns=NS, host=SRV_IP, port=8042),
        server("Orthanc", str(configs[1]), ns=NS, host=SRV_IP, port=8043),
        capture(HERE / "dicomweb.pcap", "-i", HOST_IF, "port", "8042 or port 8043"),
    ):
        sh(PY, str(LAB / "dicomweb_clients.py"), SRV_IP, str(data), str(work))


SCENARIOS = {
    "lab": scenario_lab,
    "loopback": scenario_loopback,
    "two_interfaces": scenario_two_interfaces,
    "snaplen": scenario_snaplen,
    "rotated": scenario_rotated,
    "fragments": scenario_fragments,
    "transfer_syntaxes": scenario_transfer_syntaxes,
    "orthanc": scenario_orthanc,
    "worklist": scenario_worklist,
    "user_identity": scenario_user_identity,
    "reject_abort": scenario_reject_abort,
    "odd_ports_and_pdus": scenario_odd_ports_and_pdus,
    "tls": scenario_tls,
    "charsets": scenario_charsets,
    "scan": scenario_scan,
    "harvest": scenario_harvest,
    "malformed": scenario_malformed,
    "path_traversal": scenario_path_traversal,
    "dicomweb": scenario_dicomweb,
    "malformed_pdus": scenario_malformed_pdus,
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
