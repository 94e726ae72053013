"""``analyze --dask`` on real ``dask.distributed`` clusters of worker processes (a LocalCluster,
and a scheduler and two workers started with the ``dask`` command line): sample captures cut by
``editcap -c`` into many small files, so that run boundaries fall inside associations and PDUs,
and several sensor directories; every table equals a single-process run over the same files as
a multiset of rows, uids included. A worker killed in the middle of a task; a capture that fails
its task; a retried task that leaves no duplicate."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from analyzer.capture import open_inputs
from analyzer.config import Config
from analyzer.errors import AnalyzerError
from analyzer.logs.records import TABLES
from analyzer.run.pipeline import run_analysis
from analyzer.run.progress import Progress
from tests.helpers import CAPTURES, ROOT, TEST_SALT

distributed = pytest.importorskip("distributed")

from analyzer.cluster.plan import make_plan, sensor_inputs  # noqa: E402
from analyzer.cluster.run import run_cluster  # noqa: E402
from analyzer.cluster.task import PARTS, run_task  # noqa: E402

PY = sys.executable
CONFIG = dataclasses.replace(Config(), salt=TEST_SALT)
pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/editcap"), reason="needs editcap")


def rotate(capture: Path, out: Path, packets: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["editcap", "-c", str(packets), str(capture), str(out / "part.pcap")], check=True
    )
    assert len(list(out.iterdir())) > 2
    return out


def single(inputs: list[str], out: Path, config: Config = CONFIG) -> Path:
    readers, _ = open_inputs(inputs)
    out.mkdir(parents=True, exist_ok=True)
    run_analysis(config, readers, out, "parquet", Progress(None, enabled=False))
    return out


def rows(out: Path, name: str, sensor: str | None = None) -> list[str]:
    frame = pl.read_parquet(out / f"{name}.parquet")
    if sensor is not None:
        frame = frame.filter(pl.col("sensor") == sensor)
    return sorted(repr(r) for r in frame.rows())


def same_tables(a: Path, b: Path, names: tuple[str, ...] = tuple(TABLES)) -> None:
    for name in names:
        assert rows(a, name) == rows(b, name), name


def on_cluster(address: str, sensors: dict[str | None, list[str]], out: Path, **kw: Any) -> Any:
    plan = make_plan(sensors, int(kw.pop("task_bytes", 3000)))
    out.mkdir(parents=True, exist_ok=True)
    return run_cluster(
        CONFIG, plan, out, "parquet", address, Progress(None, enabled=False), quiet=True, **kw
    )


@pytest.fixture(scope="module")
def local() -> Iterator[str]:
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


@pytest.mark.parametrize(
    "capture", ["dicom_lab.pcap", "orthanc_qr.pcap", "lost_segment.pcap", "ipv4_fragments.pcap",
                "malformed.pcap", "dicomweb.pcap", "midstream.pcap"],
)  # fmt: skip
def test_local_cluster_equals_one_process(local: str, capture: str, tmp_path: Path) -> None:
    files = rotate(CAPTURES / capture, tmp_path / "in", 9)
    ref = single([str(files)], tmp_path / "one")
    result = on_cluster(local, {None: [str(files)]}, tmp_path / "dask", shards=2)
    assert result.tasks >= 6 and not result.failed
    same_tables(ref, tmp_path / "dask")
    if capture == "dicom_lab.pcap":  # C-STOREs cut mid-association and mid-PDU
        assert result.fragments > 0
    assert not (tmp_path / "dask" / PARTS).exists()


def test_overlapping_rotated_files_and_big_associations(local: str, tmp_path: Path) -> None:
    """The benchmark generator's traffic: 2.4 MB C-STOREs of several clients at once, files
    whose time ranges overlap by microseconds at every cut."""
    big = tmp_path / "big.pcap"
    subprocess.run(
        [PY, str(ROOT / "benchmarks" / "make_capture.py"), str(big), "--size-mb", "12"],
        check=True,
        capture_output=True,
    )
    files = rotate(big, tmp_path / "in", 700)
    ref = single([str(files)], tmp_path / "one")
    result = on_cluster(local, {None: [str(files)]}, tmp_path / "dask", task_bytes=2_000_000)
    assert result.fragments > 0
    same_tables(ref, tmp_path / "dask")


def test_sensors_are_separate_captures_with_a_sensor_column(local: str, tmp_path: Path) -> None:
    ct = rotate(CAPTURES / "dicom_lab.pcap", tmp_path / "ct", 12)
    pacs = rotate(CAPTURES / "orthanc_qr.pcap", tmp_path / "pacs", 12)
    mirror = rotate(CAPTURES / "dicom_lab.pcap", tmp_path / "mirror", 30)  # the same traffic
    sensors = sensor_inputs([str(ct), str(pacs), str(mirror)], [], per_dir=True)
    assert list(sensors) == ["ct", "pacs", "mirror"]
    out = tmp_path / "dask"
    result = on_cluster(local, sensors, out, shards=2)
    assert set(result.per_sensor) == {"ct", "pacs", "mirror"}
    per_flow = ("conn", "dicom_assoc", "dicom_context", "dimse", "dicom_object", "phi", "weird")
    for name, path in sensors.items():
        assert name is not None
        ref = single(path, tmp_path / f"one-{name}", dataclasses.replace(CONFIG, sensor=name))
        for table in per_flow:
            assert rows(out, table, name) == rows(ref, table), (name, table)
    conn = pl.read_parquet(out / "conn.parquet")
    assert conn["sensor"].null_count() == 0
    ct_uids = set(conn.filter(pl.col("sensor") == "ct")["uid"])
    assert not ct_uids & set(conn.filter(pl.col("sensor") == "mirror")["uid"])
    findings = pl.read_parquet(out / "finding.parquet")
    assert findings.height and findings["sensor"].null_count() == 0
    for uid, sensor in (
        findings.filter(pl.col("uid").is_in(list(ct_uids))).select("uid", "sensor").rows()
    ):
        assert "ct" in sensor.split(","), uid
    asset = pl.read_parquet(out / "asset.parquet")
    for ip, sensor in asset.select("ip", "sensor").rows():
        seen = conn.filter((pl.col("orig_h") == ip) | (pl.col("resp_h") == ip))["sensor"]
        assert sensor == ",".join(sorted(set(seen))), ip
    assert any("," in s for s in asset["sensor"])
    alerts = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    assert alerts and all(a["sensor"] for a in alerts)


def test_a_capture_that_fails_fails_its_task_and_names_the_file(local: str, tmp_path: Path) -> None:
    files = rotate(CAPTURES / "dicom_lab.pcap", tmp_path / "in", 20)
    plan = make_plan({None: [str(files)]}, 3000)
    victim = sorted(files.iterdir())[1]
    victim.write_bytes(b"this is no capture any more")  # changed after planning
    out = tmp_path / "dask"
    out.mkdir()
    with pytest.raises(AnalyzerError) as err:
        run_cluster(CONFIG, plan, out, "parquet", local, Progress(None, enabled=False), True, 1)
    message = str(err.value)
    assert str(victim) in message and "the others completed" in message
    assert err.value.exit_code == 3 and "\n" not in message
    assert not (out / "conn.parquet").exists()


def test_a_retried_task_leaves_one_result(tmp_path: Path) -> None:
    files = rotate(CAPTURES / "dicom_lab.pcap", tmp_path / "in", 20)
    plan = make_plan({None: [str(files)]}, 10**9)
    plan.split(1)
    (task,) = plan.tasks
    out = tmp_path / "out"
    (out / PARTS).mkdir(parents=True)
    (out / PARTS / f".{task.key}.killed").mkdir()  # an attempt that died half-way
    first = run_task(task, CONFIG, str(out))
    second = run_task(task, CONFIG, str(out))  # the first result never reached the client
    assert first["flows"] == second["flows"]
    finished = [p.name for p in (out / PARTS).iterdir() if not p.name.startswith(".")]
    assert finished == [task.key]
    assert len(list((out / PARTS / ".attempts").iterdir())) == 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dask_cli(tmp_path: Path) -> Iterator[str]:
    """A scheduler and two workers, each started with the ``dask`` command line."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(PY).with_name("dask"))
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=subprocess.DEVNULL,
            stderr=(logs / "scheduler.log").open("wb"),
        )
    ]
    try:
        with distributed.Client(address, timeout="30s") as client:
            for k in range(2):
                procs.append(
                    subprocess.Popen(
                        [
                            dask,
                            "worker",
                            address,
                            "--nthreads",
                            "1",
                            "--nworkers",
                            "1",
                            "--no-dashboard",
                            "--name",
                            f"w{k}",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=(logs / f"worker{k}.log").open("wb"),
                    )  # fmt: skip
                )
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "analyzer", *args], capture_output=True, text=True, cwd=ROOT, timeout=600
    )


def test_scheduler_and_workers_from_the_command_line(dask_cli: str, tmp_path: Path) -> None:
    files = rotate(CAPTURES / "orthanc_qr.pcap", tmp_path / "in", 9)
    cfg = tmp_path / "site.toml"
    cfg.write_text(f'[privacy]\nsalt = "{TEST_SALT.decode()}"\n')
    ref = single([str(files)], tmp_path / "one")
    r = cli("analyze", str(files), "-o", str(tmp_path / "dask"), "--config", str(cfg),
            "--dask", dask_cli, "--task-mb", "0.005")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "on 2 worker(s), 0 retried" in r.stderr and "sensor -:" in r.stderr
    same_tables(ref, tmp_path / "dask")


def test_a_killed_worker_is_retried_and_the_result_is_clean(dask_cli: str, tmp_path: Path) -> None:
    big = tmp_path / "big.pcap"
    subprocess.run(
        [PY, str(ROOT / "benchmarks" / "make_capture.py"), str(big), "--size-mb", "40"],
        check=True,
        capture_output=True,
    )
    files = rotate(big, tmp_path / "in", 3000)
    cfg = tmp_path / "site.toml"
    cfg.write_text(f'[privacy]\nsalt = "{TEST_SALT.decode()}"\n')
    ref = single([str(files)], tmp_path / "one")
    with distributed.Client(dask_cli) as client:
        for attempt in range(3):
            out = tmp_path / f"dask{attempt}"
            killed: list[int] = []

            def kill_a_busy_worker(killed: list[int] = killed) -> None:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    busy = [w for w, keys in client.processing().items() if keys]
                    if busy:
                        pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                        time.sleep(0.2)  # in the middle of the task
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                        return
                    time.sleep(0.02)

            killer = threading.Thread(target=kill_a_busy_worker)
            killer.start()
            r = cli("analyze", str(files), "-o", str(out), "--config", str(cfg),
                    "--dask", dask_cli, "--task-mb", "6")  # fmt: skip
            killer.join()
            assert r.returncode == 0, r.stderr
            assert killed
            if " 0 retried" not in r.stderr:
                break  # the killed worker was running a task: it ran again elsewhere
            client.wait_for_workers(2, timeout=60)
        else:
            pytest.fail("no kill landed inside a task in three runs")
    same_tables(ref, out)


def test_without_the_extra_the_option_is_one_line(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['distributed'] = None; from analyzer.cli import main; "
        f"sys.exit(main(['analyze', {str(CAPTURES / 'dicom_lab.pcap')!r}, '-o', "
        f"{str(tmp_path / 'o')!r}, '--dask', 'local:2']))"
    )
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "dicom-analyzer: error: --dask needs Dask distributed: pip install 'dicom-analyzer[cluster]'"
    )


def test_sensor_needs_dask_and_stdin_cannot_be_split(tmp_path: Path) -> None:
    r = cli("analyze", "--sensor", f"a={CAPTURES / 'dicom_lab.pcap'}", "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and "need --dask" in r.stderr and r.stderr.count("\n") == 1
    r = cli("analyze", "-", "-o", str(tmp_path / "o"), "--dask", "local:1")
    assert r.returncode == 2 and "cannot be split" in r.stderr and r.stderr.count("\n") == 1


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An S3-compatible object store on loopback (moto's server) with a bucket ``lab``."""
    s3fs = pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    port = free_port()
    proc = subprocess.Popen(
        [PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline and proc.poll() is None, "moto did not start"
            time.sleep(0.1)
        for key, value in {
            "AWS_ACCESS_KEY_ID": "lab",
            "AWS_SECRET_ACCESS_KEY": "lab-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        }.items():
            monkeypatch.setenv(key, value)
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir("lab")
        yield fs
    finally:
        proc.terminate()
        proc.wait(10)


def test_output_to_an_object_store(s3: Any, tmp_path: Path) -> None:
    files = rotate(CAPTURES / "dicom_lab.pcap", tmp_path / "in", 9)
    cfg = tmp_path / "site.toml"
    cfg.write_text(f'[privacy]\nsalt = "{TEST_SALT.decode()}"\n')
    ref = single([str(files)], tmp_path / "one")
    r = cli("analyze", str(files), "-o", "s3://lab/run1", "--config", str(cfg),
            "--dask", "local:2", "--task-mb", "0.005")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "s3://lab/run1/conn.parquet" in r.stderr
    names = sorted(p.rsplit("/", 1)[1] for p in s3.ls("lab/run1"))
    assert names == sorted([*(f"{t}.parquet" for t in TABLES), "alerts.jsonl"])  # no .parts
    got = tmp_path / "got"
    got.mkdir()
    for name in TABLES:
        s3.get_file(f"lab/run1/{name}.parquet", str(got / f"{name}.parquet"))
    same_tables(ref, got)
