"""A span run's processes start before the command line imports the analysis
(``run/launch.py``), and a launch the run never takes leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import analyzer.run.launch as launch
from analyzer.capture import open_inputs
from tests.helpers import TEST_SALT
from tests.run.test_fast_path import FAST, QUIET, busy_stores, run, tables, write

HEAVY = ("polars", "pydicom", "analyzer.run.pipeline", "analyzer.run.spans")

CLI_WITH_SPY = """
import json, sys
import analyzer.run.launch as launch

launch.MIN_SPAN = 0  # so that a small file is cut in spans
seen = []
real = launch.launch_spans

def spy(*args, **kw):
    seen.append([m for m in {heavy!r} if m in sys.modules])
    return real(*args, **kw)

launch.launch_spans = spy
from analyzer.cli import main

rc = main(["analyze", sys.argv[1], "-o", sys.argv[2], "-q", "--workers", "2", "--strict",
           "--config", sys.argv[3]])
print(json.dumps({{"rc": rc, "seen": seen}}))
"""


def test_the_command_line_starts_the_span_workers_before_its_own_imports(tmp_path: Path) -> None:
    capture = write(busy_stores(4, stores=2), tmp_path / "c.pcap")
    script = CLI_WITH_SPY.format(heavy=HEAVY)
    config = tmp_path / "salt.toml"  # the salt of FAST
    config.write_text(f'[privacy]\nsalt = "{TEST_SALT.decode()}"\n')
    out = subprocess.run(
        [sys.executable, "-c", script, str(capture), str(tmp_path / "two"), str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.splitlines()[-1])
    assert got == {"rc": 0, "seen": [[]]}, got  # launched once, nothing heavy imported yet
    run(capture, tmp_path / "one", FAST)
    assert tables(tmp_path / "two") == tables(tmp_path / "one")
    assert not list((tmp_path / "two").glob(".workers-*"))  # the scratch went


def test_a_launch_the_run_never_takes_leaves_nothing(tmp_path: Path) -> None:
    capture = write(busy_stores(2, stores=1), tmp_path / "c.pcap")
    readers, _ = open_inputs([str(capture)])
    out = tmp_path / "out"
    out.mkdir()
    started = launch.launch_spans(FAST, readers[0], out, "parquet", 3)
    assert len(started.procs) == 2 and started.scratch.is_dir()
    started.cancel()
    assert all(p.exitcode == 0 for p in started.procs), [p.exitcode for p in started.procs]
    assert started.merger.proc.exitcode == 0
    assert not started.scratch.exists() and not list(out.iterdir())
    started.cancel()  # twice: nothing more to do


def test_an_error_in_the_main_process_ends_the_whole_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The main process fails in its span: no more spans are taken, the workers and the merge
    process end, the scratch goes, and the error is raised."""
    import analyzer.run.spans as spans

    capture = write(busy_stores(4, stores=2), tmp_path / "c.pcap")
    readers, _ = open_inputs([str(capture)])
    out = tmp_path / "out"
    out.mkdir()
    started = launch.launch_spans(FAST, readers[0], out, "parquet", 2)

    def failing(*args: object, **kw: object) -> object:
        raise RuntimeError("a bug in the main process's span")

    monkeypatch.setattr(spans, "analyze_span", failing)  # this process only
    with pytest.raises(RuntimeError, match="a bug"):
        spans.run_spans(FAST, readers[0], out, "parquet", QUIET, 2, started)
    assert [p.exitcode for p in started.procs] == [0]
    assert started.merger.proc.exitcode == 0
    assert not started.scratch.exists()
