"""``live`` end to end on loopback with real peers (pynetdicom, DCMTK) and a real dumpcap:
alerts while it runs, dumpcap killed and restarted, tables complete after SIGTERM and equal to
``analyze`` on tcpdump's capture of the same traffic, the ring buffer, the clear errors."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from analyzer.report.load import load_tables
from tests.report.conftest import analyze_to

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "captures" / "lab" / "peers.py"
SYNTHETIC = ROOT / "captures" / "lab" / "synthetic.py"
CAN_CAPTURE = os.geteuid() == 0 and os.path.exists("/usr/bin/dumpcap")
needs_capture = pytest.mark.skipif(not CAN_CAPTURE, reason="needs root and dumpcap")
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], object], timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def children(pid: int) -> Iterator[tuple[int, list[str]]]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            yield int(entry.name), [c.decode() for c in cmd if c]


def capture_dumpcap(pid: int) -> int | None:
    for child, cmd in children(pid):
        if cmd and cmd[0].endswith("dumpcap") and cmd[-2:] == ["-w", "-"]:
            return child
    return None


def ring_cmd(pid: int) -> list[str]:
    for _, cmd in children(pid):
        if cmd and cmd[0].endswith("dumpcap") and "-b" in cmd:
            return cmd
    return []


class SyslogServer:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.messages: list[str] = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            self.messages.append(data.decode("utf-8", "replace"))

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.sock.close()


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[dict[str, object]]:
    """A pynetdicom SCP (find + store) and DCMTK storescp on loopback, synthetic images."""
    images = tmp_path / "images"
    subprocess.run([PY, str(SYNTHETIC), str(images)], check=True, capture_output=True)
    a, b = free_port(), free_port()
    store_dir = tmp_path / "stored"
    store_dir.mkdir()
    procs = [
        subprocess.Popen([PY, str(PEERS), "scp", str(a), "PYSCP"], stderr=subprocess.DEVNULL),
        subprocess.Popen(
            ["/usr/bin/storescp", "-aet", "STORESCP", "-od", str(store_dir), str(b)],
            stderr=subprocess.DEVNULL,
        ),
    ]

    def listening(port: int) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for("the SCPs", lambda: listening(a) and listening(b))
    try:
        yield {"a": a, "b": b, "images": images}
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


def find(port: int) -> None:
    subprocess.run([PY, str(PEERS), "find", "127.0.0.1", str(port), "PYSCP"], check=True)


def store(port: int, images: Path, *names: str) -> None:
    files = [str(images / n) for n in names]
    subprocess.run(
        [
            "/usr/bin/storescu",
            "-aet",
            "MODALITY1",
            "-aec",
            "STORESCP",
            "127.0.0.1",
            str(port),
            *files,
        ],
        check=True,
    )


def echo(port: int) -> None:
    subprocess.run(
        ["/usr/bin/echoscu", "-aet", "MONITOR", "-aec", "STORESCP", "127.0.0.1", str(port)],
        check=True,
    )


def alerts(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def start_live(
    out: Path, bpf: str, *extra: str, interfaces: tuple[str, ...] = ("lo",)
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    stdout, stderr = out.parent / "live.out", out.parent / "live.err"
    ifaces = [arg for i in interfaces for arg in ("-i", i)]
    proc = subprocess.Popen(
        [PY, "-m", "analyzer", "live", *ifaces, "-f", bpf, "-o", str(out), *extra],
        stdout=stdout.open("wb"),
        stderr=stderr.open("wb"),
        cwd=ROOT,
    )
    try:
        wait_for(
            "live to run",
            lambda: "live: capturing on" in stderr.read_text() or proc.poll() is not None,
        )
        assert proc.poll() is None, stderr.read_text()
    except BaseException:
        proc.kill()  # never leave a capture running behind a failed test
        proc.wait()
        raise
    return proc, stdout, stderr


def tcpdump(path: Path, bpf: str) -> subprocess.Popen[bytes]:
    err = path.with_suffix(".err")
    proc = subprocess.Popen(
        # --immediate-mode: without it the kernel may still hold the last burst (TPACKET_V3
        # blocks) when SIGTERM arrives, and the reference would lack the last association.
        # -B: a 64 MiB kernel buffer; with the default 2 MiB a loaded CI box dropped a segment.
        [
            "tcpdump",
            "-i",
            "lo",
            "--immediate-mode",
            "-B",
            "65536",
            "-U",
            "-s0",
            "-w",
            str(path),
            bpf,
        ],  # fmt: skip
        stderr=err.open("wb"),
        stdout=subprocess.DEVNULL,
    )
    wait_for("tcpdump", lambda: "listening on" in err.read_text())
    return proc


def last_stats(stderr: Path) -> str:
    lines = [ln for ln in stderr.read_text().splitlines() if ln.startswith("live: ")]
    return lines[-1] if lines else ""


def settle(stderr: Path, port: int, associations: int) -> None:
    """Wait until live has written ``associations`` association rows. On a quiet link the
    kernel may hold the last packets of a burst (TPACKET_V3 blocks; dumpcap 4.0 has no
    immediate mode) until the next packet arrives, so knock on the port meanwhile."""

    def done() -> bool:
        if f" {associations:,} assoc," in last_stats(stderr):
            return True
        with socket.socket() as s:
            s.connect_ex(("127.0.0.1", port))
        return False

    wait_for(f"{associations} associations in live", done, 20)


def same_rows(a: pl.DataFrame, b: pl.DataFrame, cols: list[str]) -> None:
    """Equal rows in time order; ``ts`` within 1 ms: dumpcap and tcpdump are two captures, each
    socket stamps the packet itself (a few µs apart), dumpcap in ns and tcpdump in µs."""
    ra = a.sort("ts").select("ts", *cols).rows()
    rb = b.sort("ts").select("ts", *cols).rows()
    assert len(ra) == len(rb)
    for x, y in zip(ra, rb, strict=True):
        assert abs(x[0] - y[0]) < 1e-3 and x[1:] == y[1:], (x, y)


def keys(frame: pl.DataFrame, cols: list[str]) -> list[tuple[object, ...]]:
    return sorted(frame.select(cols).iter_rows(), key=repr)


def lost_flows(capture: Path) -> set[frozenset[int]]:
    """Port pairs of the flows in which Wireshark sees a segment the capture did not get."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(capture), "-Y", "tcp.analysis.lost_segment",
         "-T", "fields", "-e", "tcp.srcport", "-e", "tcp.dstport"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {frozenset(int(p) for p in ln.split()) for ln in out.splitlines() if ln.strip()}


def without_flows(tables: Any, flows: set[frozenset[int]]) -> dict[str, pl.DataFrame]:
    """``dicom_assoc``, ``dimse`` and ``finding`` without the rows of the flows ``flows``."""

    def lost(frame: pl.DataFrame) -> pl.Series:
        pairs = zip(frame["orig_p"].to_list(), frame["resp_p"].to_list(), strict=True)
        return pl.Series([frozenset(p) in flows for p in pairs], dtype=pl.Boolean)

    conn = tables["conn"]
    gone = set(conn.filter(lost(conn))["uid"].to_list())
    finding = tables["finding"]
    keep = [
        not (set(us or []) & gone) and uid not in gone
        for us, uid in zip(finding["uids"].to_list(), finding["uid"].to_list(), strict=True)
    ]
    assoc = tables["dicom_assoc"]
    return {
        "dicom_assoc": assoc.filter(~lost(assoc)),
        "dimse": tables["dimse"].filter(~pl.col("uid").is_in(list(gone))),
        "finding": finding.filter(pl.Series(keep, dtype=pl.Boolean)),
    }


def same_as_offline(tables: Any, out: Path, tmp_path: Path, associations: int) -> Any:
    """Live's tables hold the associations, DIMSE messages, findings and assets that analyze
    finds in tcpdump's capture of the same traffic (``tmp_path/ref.pcap``); return those."""
    offline = load_tables(analyze_to(tmp_path / "ref.pcap", tmp_path / "offline"))
    assert tables["dicom_assoc"].height == associations
    # The reference is a second capture and can itself miss a segment on a loaded box; then the
    # flow it lost is no oracle and is set aside on both sides (at most one, else the test fails).
    lossy = lost_flows(tmp_path / "ref.pcap")
    assert len(lossy) <= 1, f"the reference capture lost segments of {len(lossy)} flows"
    live_t, off_t = without_flows(tables, lossy), without_flows(offline, lossy)
    cols = ["orig_p", "resp_p", "calling_ae", "called_ae", "result", "end_state", "n_dimse"]
    assert keys(live_t["dicom_assoc"], cols) == keys(off_t["dicom_assoc"], cols)
    assert live_t["dicom_assoc"].height >= associations - 1
    same_rows(live_t["dimse"], off_t["dimse"], ["command", "message_id", "status"])
    fcols = ["rule", "severity", "orig_h", "resp_h", "calling_ae", "called_ae", "detail"]
    same_rows(live_t["finding"], off_t["finding"], fcols)
    if not lossy:
        assert tables["asset"].height == offline["asset"].height
    # one alert per finding at once; a folded finding adds one more with its final count
    first = [a for a in alerts(out / "alerts.jsonl") if '"count": 1,' in a]
    assert len(first) == tables["finding"].height
    return offline


@needs_capture
def test_live_end_to_end(tmp_path: Path, peers: dict[str, object]) -> None:
    a, b, images = int(peers["a"]), int(peers["b"]), Path(str(peers["images"]))  # type: ignore[call-overload]
    bpf = f"tcp port {a} or tcp port {b}"
    out, ring = tmp_path / "live", tmp_path / "ring"
    syslog = SyslogServer()
    ref = tcpdump(tmp_path / "ref.pcap", bpf)
    live, stdout, stderr = start_live(
        out, bpf,
        "--stats-interval", "1", "--rotate-minutes", "0.05", "--alerts-stdout",
        "--syslog", f"127.0.0.1:{syslog.port}",
        "--ring", str(ring), "--ring-files", "3", "--ring-mb", "1",
    )  # fmt: skip
    try:
        # Round 1: a wildcard query and a C-STORE; the alerts must come while live runs.
        find(a)
        store(b, images, "small_0.dcm", "small_1.dcm")
        wait_for(
            "wildcard alert",
            lambda: any("wildcard_query" in x for x in alerts(out / "alerts.jsonl")),
            10,
        )
        settle(stderr, b, 2)
        wait_for("alert on stdout", lambda: "wildcard_query" in stdout.read_text(), 5)
        wait_for("alert in syslog", lambda: any("wildcard_query" in m for m in syslog.messages), 5)
        assert any(
            m.startswith("<27>dicom-analyzer: [high] wildcard_query") for m in syslog.messages
        )
        # The ring follows the DICOM ports seen (both are outside the default port list).
        wait_for(
            "ring filter",
            lambda: (
                f"tcp port {a}" in " ".join(ring_cmd(live.pid))
                and f"tcp port {b}" in " ".join(ring_cmd(live.pid))
            ),
            15,
        )
        # A rotation makes round 1 durable while live runs (a crash now would not lose it).
        wait_for("round 1 on disk", lambda: list((out / "dicom_assoc").glob("part-*.parquet")), 10)
        assert pl.read_parquet(out / "dicom_assoc" / "part-*.parquet").height == 2
        # Kill dumpcap: live restarts it and records the gap.
        first = capture_dumpcap(live.pid)
        assert first is not None
        os.kill(first, signal.SIGKILL)
        second = wait_for(
            "a new dumpcap", lambda: (p := capture_dumpcap(live.pid)) not in (None, first) and p, 15
        )
        wait_for("restart recorded", lambda: "restarts 1" in stderr.read_text(), 10)
        time.sleep(1.0)
        # Round 2, after the restart: its findings arrive too.
        before = len(alerts(out / "alerts.jsonl"))
        find(a)
        store(b, images, "small_2.dcm")
        echo(b)
        settle(stderr, b, 5)
        wait_for("round 2 alerts", lambda: len(alerts(out / "alerts.jsonl")) > before, 10)
        assert capture_dumpcap(live.pid) == second
    finally:
        live.send_signal(signal.SIGTERM)
        rc = live.wait(60)
        ref.send_signal(signal.SIGTERM)
        ref.wait(10)
        syslog.close()
    assert rc == 0, stderr.read_text()
    assert "Traceback" not in stderr.read_text()
    assert not list(children(live.pid))

    tables = load_tables(out)
    assert tables.fmt == "parquet"
    assert len(list((out / "stats").glob("part-*.parquet"))) >= 2, "rotated while running"
    assert not list(out.rglob(".*.tmp"))
    weird = tables["weird"]
    assert set(weird["name"]) >= {"capture_process_died", "capture_restarted"}
    stats = tables["stats"]
    assert stats["dumpcap_restarts"].max() == 1 and stats["dumpcap_runs"].max() == 2
    assert stats["gap_seconds"].sum() > 0 and stats["packets_total"].max() > 0
    assert stats["dumpcap_received"].max() > 0  # dumpcap's own count, reported when it stopped

    # The same associations, DIMSE messages and findings as analyze on tcpdump's capture.
    same_as_offline(tables, out, tmp_path, associations=5)

    # The ring kept the raw DICOM packets of round 2 (after its filter took in both ports).
    kept = load_tables(analyze_to(ring, tmp_path / "ring_tables"))
    ring_assoc = set(kept["dicom_assoc"].select("orig_p", "resp_p").iter_rows())
    round2 = set(tables["dicom_assoc"].sort("ts").tail(3).select("orig_p", "resp_p").iter_rows())
    assert round2 <= ring_assoc

    # The report reads live's part files.
    done = subprocess.run(
        [PY, "-m", "analyzer", "report", str(out), "-o", str(tmp_path / "r.html")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Live capture:" in html and "1 dumpcap restart(s)" in html


@needs_capture
def test_sigint_flushes_everything(tmp_path: Path, peers: dict[str, object]) -> None:
    b = int(peers["b"])  # type: ignore[call-overload]
    out = tmp_path / "live"
    live, _, stderr = start_live(
        out, f"tcp port {b}", "--stats-interval", "600", "--rotate-minutes", "600"
    )
    echo(b)
    time.sleep(0.5)
    live.send_signal(signal.SIGINT)
    assert live.wait(60) == 0, stderr.read_text()
    tables = load_tables(out)
    assoc = tables["dicom_assoc"]
    assert assoc.height == 1 and assoc["calling_ae"].item() == "MONITOR"
    assert assoc["end_state"].item() == "released"
    assert tables["conn"].height == 1 and tables["stats"].height == 1
    assert "stopped (SIGINT)" in stderr.read_text()


def run_cli(
    *args: str, user: int | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    cmd = [PY, "-m", "analyzer", *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=60)


@pytest.mark.skipif(not os.path.exists("/usr/bin/dumpcap"), reason="needs dumpcap")
def test_unknown_interface_is_one_clear_line(tmp_path: Path) -> None:
    done = run_cli("live", "-i", "nosuchif0", "-o", str(tmp_path / "o"))
    assert done.returncode == 3
    assert done.stderr.startswith("dicom-analyzer: error: no such capture interface: nosuchif0")
    assert done.stderr.count("\n") == 1


@needs_capture
def test_bad_filter_is_one_clear_line(tmp_path: Path) -> None:
    done = run_cli("live", "-i", "lo", "-f", "tcp port", "-o", str(tmp_path / "o"))
    assert done.returncode == 3
    assert "Invalid capture filter" in done.stderr and done.stderr.count("\n") == 1


@needs_capture
def test_no_permission_is_one_clear_line(tmp_path: Path) -> None:
    caps = subprocess.run(["getcap", "/usr/bin/dumpcap"], capture_output=True, text=True)
    if "cap_net_raw" in caps.stdout or os.stat("/usr/bin/dumpcap").st_mode & 0o4000:
        pytest.skip("dumpcap may capture as any user here")
    with tempfile.TemporaryDirectory(dir="/tmp") as shared:  # pytest's tmp is private to root
        os.chmod(shared, 0o777)
        done = run_cli("live", "-i", "lo", "-o", f"{shared}/o", user=65534, cwd=Path("/"))
    assert done.returncode == 3, done.stderr
    assert "permission" in done.stderr.lower() and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


@needs_capture
@pytest.mark.skipif(shutil.which("setcap") is None, reason="needs setcap (libcap2-bin)")
def test_ordinary_user_captures_through_dumpcap(peers: dict[str, object]) -> None:
    """The analyzer runs as ``nobody``; only dumpcap holds capture capabilities (a copy with
    cap_net_raw,cap_net_admin, as the deployment notes set up)."""
    b = int(peers["b"])  # type: ignore[call-overload]
    with tempfile.TemporaryDirectory(dir="/tmp") as shared:
        os.chmod(shared, 0o755)
        dumpcap = Path(shared) / "dumpcap"
        shutil.copy2("/usr/bin/dumpcap", dumpcap)
        subprocess.run(["setcap", "cap_net_raw,cap_net_admin+eip", str(dumpcap)], check=True)
        out = Path(shared) / "out"
        out.mkdir(mode=0o777)
        out.chmod(0o777)
        err = Path(shared) / "err"
        env = {**os.environ, "PATH": f"{shared}:{os.environ.get('PATH', '')}"}
        proc = subprocess.Popen(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             PY, "-m", "analyzer", "live", "-i", "lo", "-f", f"tcp port {b}", "-o", str(out / "t")],
            stderr=err.open("wb"), cwd=ROOT, env=env,
        )  # fmt: skip
        try:
            wait_for(
                "live as nobody",
                lambda: "live: capturing on" in err.read_text() or proc.poll() is not None,
            )
            assert proc.poll() is None, err.read_text()
            echo(b)
            time.sleep(1.0)
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(60)
        assert rc == 0, err.read_text()
        assoc = load_tables(out / "t")["dicom_assoc"]
        assert assoc["calling_ae"].to_list() == ["MONITOR"]
        assert (out / "t" / "dicom_assoc").stat().st_uid == 65534
