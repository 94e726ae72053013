"""``analyze --workers N``: the same tables and findings as one process, on every sample
capture (fragmented and mid-stream ones included), from files and from standard input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from analyzer.capture import open_inputs
from analyzer.config import Config
from analyzer.logs.records import TABLES
from analyzer.run.pipeline import run_analysis
from analyzer.run.progress import Progress
from analyzer.run.workers import run_parallel
from tests.helpers import CAPTURES, TEST_SALT

SAMPLES = sorted(p for p in CAPTURES.glob("*.pcap*") if p.is_file()) + [CAPTURES / "rotated"]
CONFIG = Config(strict=True, salt=TEST_SALT)
QUIET = Progress(None, enabled=False)


def rows(outdir: Path, table: str) -> list[str]:
    """The table's rows as a multiset (sorted reprs)."""
    return sorted(repr(r) for r in pl.read_parquet(outdir / f"{table}.parquet").rows())


def alerts(outdir: Path) -> list[str]:
    return sorted((outdir / "alerts.jsonl").read_text().splitlines())


def one_process(capture: Path, out: Path) -> None:
    readers, _ = open_inputs([str(capture)])
    out.mkdir(parents=True)
    run_analysis(CONFIG, readers, out, "parquet", QUIET)


@pytest.mark.parametrize("capture", SAMPLES, ids=lambda p: p.name)
def test_two_workers_equal_one(capture: Path, tmp_path: Path) -> None:
    one_process(capture, tmp_path / "one")
    readers, _ = open_inputs([str(capture)])
    (tmp_path / "two").mkdir()
    summary = run_parallel(CONFIG, [str(capture)], readers, tmp_path / "two", "parquet", QUIET, 2)
    for table in TABLES:
        assert rows(tmp_path / "two", table) == rows(tmp_path / "one", table), (
            f"{capture.name}: {table}"
        )
    assert alerts(tmp_path / "two") == alerts(tmp_path / "one")
    assert not list((tmp_path / "two").glob(".workers-*")), "scratch directory left behind"
    assert summary.stats.packets > 0 and not summary.interrupted


def test_workers_split_the_flows(tmp_path: Path) -> None:
    """Not one worker doing everything: each analyses part of the scan's flows."""
    from analyzer.run import workers as w

    seen: list[int] = []
    real = w._merge

    def spy(config: Config, dirs: list[Path], outdir: Path, fmt: str, exported: bool = False):  # type: ignore[no-untyped-def]
        seen.extend(pl.read_parquet(d / "conn.parquet").height for d in dirs)
        return real(config, dirs, outdir, fmt, exported)

    w._merge = spy  # type: ignore[assignment]
    try:
        capture = CAPTURES / "nmap_scan.pcap"
        readers, _ = open_inputs([str(capture)])
        (tmp_path / "out").mkdir()
        run_parallel(CONFIG, [str(capture)], readers, tmp_path / "out", "parquet", QUIET, 2)
    finally:
        w._merge = real  # type: ignore[assignment]
    assert len(seen) == 2 and min(seen) > 0


def cli(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "analyzer", *args], capture_output=True, text=True, **kw
    )


def test_workers_read_standard_input(tmp_path: Path) -> None:
    capture = CAPTURES / "dicom_lab.pcap"
    salt = tmp_path / "salt.toml"
    salt.write_text('[privacy]\nsalt = "a-test-salt-1234"\n')
    with capture.open("rb") as fh:
        piped = cli("analyze", "-", "-o", str(tmp_path / "stdin"), "--workers", "2", "-q",
                    "--config", str(salt), stdin=fh)  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    files = cli("analyze", str(capture), "-o", str(tmp_path / "file"), "--workers", "1", "-q",
                "--config", str(salt))  # fmt: skip
    assert files.returncode == 0, files.stderr
    for table in TABLES:
        assert rows(tmp_path / "stdin", table) == rows(tmp_path / "file", table), table
    assert oct((tmp_path / "stdin" / "phi.parquet").stat().st_mode & 0o777) == "0o600"


def test_workers_with_csv_and_several_files(tmp_path: Path) -> None:
    parts = sorted(p for p in (CAPTURES / "rotated").iterdir())
    done = cli("analyze", *map(str, parts), "-o", str(tmp_path / "csv"), "--workers", "2",
               "--format", "csv", "-q")  # fmt: skip
    assert done.returncode == 0, done.stderr
    one = cli("analyze", *map(str, parts), "-o", str(tmp_path / "one"), "--workers", "1",
              "--format", "csv", "-q")  # fmt: skip
    assert one.returncode == 0, one.stderr
    for table in ("conn", "dicom_assoc", "dimse", "finding"):
        a = pl.read_csv(tmp_path / "csv" / f"{table}.csv", infer_schema=False)
        b = pl.read_csv(tmp_path / "one" / f"{table}.csv", infer_schema=False)
        drop = [c for c in ("value_hash", "patient_key", "evidence") if c in a.columns]
        assert sorted(a.drop(drop).rows()) == sorted(b.drop(drop).rows()), table
        assert a.height > 0 or table == "finding"


def test_workers_flag_is_checked(tmp_path: Path) -> None:
    done = cli(
        "analyze", str(CAPTURES / "dicom_lab.pcap"), "-o", str(tmp_path / "o"), "--workers", "0"
    )
    assert done.returncode == 2 and "--workers" in done.stderr and "Traceback" not in done.stderr


def test_interrupted_workers_leave_tables(tmp_path: Path) -> None:
    """Ctrl-C: every worker stops and writes what it has; the merge still runs; exit 130."""
    capture = (CAPTURES / "dicom_lab.pcap").read_bytes()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "analyzer",
            "analyze",
            "-",
            "-o",
            str(tmp_path / "o"),
            "--workers",
            "2",
            "-q",
        ],  # fmt: skip
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(capture)  # the whole capture, then the pipe stays open: a live feed
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    while (
        time.monotonic() < deadline
        and len(list((tmp_path / "o").glob(".workers-*/w*/summary"))) < 2
    ):
        time.sleep(0.2)
    time.sleep(2.0)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err
    conn = pl.read_parquet(tmp_path / "o" / "conn.parquet")
    assert conn.height > 0  # flows decoded before the interrupt are kept
    assert pl.read_parquet(tmp_path / "o" / "dicom_assoc.parquet").height > 0
    assert json.loads((tmp_path / "o" / "alerts.jsonl").read_text().splitlines()[0])["rule"]


def test_a_worker_that_dies_fails_the_run(tmp_path: Path) -> None:
    """A worker killed by the system leaves no silent hole: the run fails with a clear line."""
    import analyzer.run.workers as w

    capture = CAPTURES / "dicom_lab.pcap"
    readers, _ = open_inputs([str(capture)])
    (tmp_path / "o").mkdir()
    real = w._worker
    try:
        w._worker = _die  # type: ignore[assignment]
        with pytest.raises(RuntimeError, match="worker 1: ended without a result"):
            run_parallel(CONFIG, [str(capture)], readers, tmp_path / "o", "parquet", QUIET, 2)
    finally:
        w._worker = real  # type: ignore[assignment]
    assert not list((tmp_path / "o").glob(".workers-*"))


def _die(*args: object) -> None:
    os._exit(9)
