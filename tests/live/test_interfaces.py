"""``live`` on two interfaces at once (loopback and a veth into a namespace this test makes),
and idle flows expiring on the wall clock while no packet arrives."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from analyzer.report.load import load_tables
from tests.live.test_live import PY, echo, needs_capture, start_live, wait_for

NS, HOST_IF, NS_IF = "dcmlive", "dcmlive0", "dcmlive1"
HOST_IP, SRV_IP = "10.234.0.1", "10.234.0.2"
SRV_PORT = 11112

IDLE_CLIENT = """
import sys, time
from pynetdicom import AE
ae = AE(ae_title="IDLER")
ae.add_requested_context("1.2.840.10008.1.1")
assoc = ae.associate(sys.argv[1], int(sys.argv[2]), ae_title="STORESCP")
assert assoc.is_established
print("up", flush=True)
time.sleep(float(sys.argv[3]))
assoc.release()
"""


def ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


@pytest.fixture
def veth_lab(tmp_path: Path) -> Iterator[None]:
    """A namespace behind a veth pair (MTU 1500, offloads off) with DCMTK storescp inside."""
    ip("netns", "del", NS, check=False)
    ip("link", "del", HOST_IF, check=False)
    ip("netns", "add", NS)
    ip("link", "add", HOST_IF, "mtu", "1500", "type", "veth", "peer", "name", NS_IF)
    ip("link", "set", NS_IF, "netns", NS)
    ip("addr", "add", f"{HOST_IP}/24", "dev", HOST_IF)
    ip("link", "set", HOST_IF, "up")
    ip("netns", "exec", NS, "ip", "addr", "add", f"{SRV_IP}/24", "dev", NS_IF)
    ip("netns", "exec", NS, "ip", "link", "set", NS_IF, "up")
    ip("netns", "exec", NS, "ip", "link", "set", "lo", "up")
    for ns, dev in ((None, HOST_IF), (NS, NS_IF)):
        pre = ["ip", "netns", "exec", ns] if ns else []
        subprocess.run(
            [*pre, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off"],
            capture_output=True,
        )
    store = tmp_path / "ns_store"
    store.mkdir()
    scp = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            NS,
            "/usr/bin/storescp",
            "-aet",
            "STORESCP",
            "-od",
            str(store),
            str(SRV_PORT),
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for("storescp in the namespace", lambda: subprocess.run(
            ["/usr/bin/echoscu", "-aec", "STORESCP", SRV_IP, str(SRV_PORT)], capture_output=True
        ).returncode == 0)  # fmt: skip
        yield
    finally:
        scp.terminate()
        scp.wait(10)
        ip("netns", "del", NS, check=False)
        ip("link", "del", HOST_IF, check=False)


@needs_capture
def test_two_interfaces_and_idle_expiry(
    tmp_path: Path, peers: dict[str, object], veth_lab: None
) -> None:
    b = int(peers["b"])  # type: ignore[call-overload]
    conf = tmp_path / "live.toml"
    conf.write_text("[limits]\nidle_timeout = 3.0\n")
    out = tmp_path / "live"
    live, _, stderr = start_live(
        out, f"tcp port {b} or tcp port {SRV_PORT}",
        "--config", str(conf), "--stats-interval", "1", "--rotate-minutes", "0.03",
        interfaces=("lo", HOST_IF),
    )  # fmt: skip
    idle = None
    try:
        echo(b)  # on lo
        subprocess.run(
            ["/usr/bin/echoscu", "-aet", "MONITOR", "-aec", "STORESCP", SRV_IP, str(SRV_PORT)],
            check=True,
        )  # across the veth
        idle = subprocess.Popen(
            [PY, "-c", IDLE_CLIENT, SRV_IP, str(SRV_PORT), "30"], stdout=subprocess.PIPE, text=True
        )
        assert idle.stdout is not None and idle.stdout.readline().strip() == "up"

        def idle_row() -> bool:
            parts = list((out / "dicom_assoc").glob("part-*.parquet"))
            if not parts:
                return False
            frame = pl.read_parquet(parts)
            return bool(frame.filter(pl.col("calling_ae") == "IDLER").height)

        # No packet crosses the idle association; the wall clock still closes it.
        wait_for("the idle association to expire", idle_row, 20)
        assert idle.poll() is None, "the association is still open on the wire"
    finally:
        if idle is not None:
            idle.kill()
            idle.wait()
        live.send_signal(signal.SIGTERM)
        assert live.wait(60) == 0, stderr.read_text()
    tables = load_tables(out)
    assoc = tables["dicom_assoc"]
    idler = assoc.filter(pl.col("calling_ae") == "IDLER")
    assert idler["end_state"].to_list()[0] == "timeout"
    conn = tables["conn"]
    assert "timeout" in conn.filter(pl.col("uid") == idler["uid"][0])["end_reason"].to_list()
    hosts = set(assoc["resp_h"])
    assert {"127.0.0.1", SRV_IP} <= hosts, "both interfaces were captured"
