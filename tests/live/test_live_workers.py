"""``live --workers 2``: one reader, two worker processes, one alerts file, one stats table; the
tables equal those of ``analyze`` on tcpdump's capture of the same traffic; a killed worker is
recorded and replaced, and what it wrote stays."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

from analyzer.report.load import load_tables
from analyzer.run.pipeline import flow_shard, plain_frame_shard
from tests.live.test_live import (
    alerts,
    children,
    echo,
    find,
    needs_capture,
    peers,  # noqa: F401 - the fixture
    same_as_offline,
    settle,
    start_live,
    store,
    tcpdump,
    wait_for,
)


def workers_of(pid: int) -> list[int]:
    return [p for p, cmd in children(pid) if any("spawn_main" in c for c in cmd)]


def test_frame_shard_is_the_flow_shard() -> None:
    import dpkt

    for sport in range(40000, 40040):
        ip = dpkt.ip.IP(src=bytes([10, 0, 0, 1]), dst=bytes([10, 0, 0, 2]), p=6)
        ip.data = dpkt.tcp.TCP(sport=sport, dport=104)
        ip.len = len(bytes(ip))
        frame = bytes(dpkt.ethernet.Ethernet(src=b"\x00" * 6, dst=b"\x00" * 6, data=ip))
        want = flow_shard(bytes([10, 0, 0, 1]), sport, bytes([10, 0, 0, 2]), 104, 2)
        assert plain_frame_shard(1, frame, len(frame), 2) == want
    assert plain_frame_shard(113, b"\x00" * 60, 60, 2) is None  # not Ethernet: every worker
    assert plain_frame_shard(1, frame[:-4], len(frame), 2) is None  # cut by snaplen: decode it


@needs_capture
def test_live_workers_equal_analyze(tmp_path: Path, peers: dict[str, object]) -> None:  # noqa: F811
    a, b, images = int(peers["a"]), int(peers["b"]), Path(str(peers["images"]))  # type: ignore[call-overload]
    bpf = f"tcp port {a} or tcp port {b}"
    out = tmp_path / "live"
    ref = tcpdump(tmp_path / "ref.pcap", bpf)
    live, _stdout, stderr = start_live(
        out, bpf, "--workers", "2", "--stats-interval", "1", "--rotate-minutes", "0.05"
    )
    try:
        wait_for("two workers", lambda: len(workers_of(live.pid)) == 2, 20)
        find(a)
        store(b, images, "small_0.dcm", "small_1.dcm")
        echo(b)
        settle(stderr, b, 3)
        wait_for(
            "wildcard alert",
            lambda: any("wildcard_query" in x for x in alerts(out / "alerts.jsonl")),
            10,
        )
        wait_for(
            "parts of both workers",
            lambda: len({p.name[-10:] for p in (out / "conn").glob("part-*-w*.parquet")}) == 2,
            20,
        )
        # kill one worker: it is recorded and replaced, and the next traffic is still decoded
        victim = workers_of(live.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(
            "a new worker",
            lambda: len(workers_of(live.pid)) == 2 and victim not in workers_of(live.pid),
            20,
        )
        time.sleep(0.5)
        store(b, images, "small_2.dcm")
        echo(a)
        settle(stderr, b, 5)
    finally:
        live.send_signal(signal.SIGTERM)
        rc = live.wait(60)
        ref.send_signal(signal.SIGTERM)
        ref.wait(10)
    err = stderr.read_text()
    assert rc == 0, err
    assert "Traceback" not in err
    assert not list(children(live.pid))
    tables = load_tables(out)
    assert "analyzer_worker_died" in set(tables["weird"]["name"])
    assert len(list((out / "stats").glob("part-*.parquet"))) >= 2
    offline: Any = same_as_offline(tables, out, tmp_path, associations=5)
    stats = tables["stats"]
    assert stats["associations"].max() == 5 and stats["open_flows"].min() >= 0
    conn = pl.read_parquet(out / "conn" / "part-*.parquet")
    dicom = pl.col("service") == "dicom"
    assert conn.filter(dicom).height == offline["conn"].filter(dicom).height
    # the killed worker's rows not yet written (the knocks on the port) are what it lost
    assert conn.height <= offline["conn"].height


def test_live_workers_flag_is_checked(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "analyzer",
            "live",
            "-i",
            "lo",
            "-o",
            str(tmp_path / "o"),
            "--workers",
            "0",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "--workers" in done.stderr
