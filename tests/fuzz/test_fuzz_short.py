"""A short coverage-guided run of every fuzz target (the long run: ``python -m tests.fuzz.run
all --runs 1000000``; figures in the README)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.run import run_target

RUNS = {"dicom": 3000, "http": 3000, "capture": 20000, "pipeline": 600}


@pytest.mark.parametrize("target", sorted(RUNS))
def test_fuzz_target_short_run(target: str, tmp_path: Path) -> None:
    r = run_target(target, RUNS[target], 0, tmp_path)
    log = (tmp_path / f"{target}.log").read_text()
    assert r["crashes"] == 0 and r["exit"] == 0, log[-3000:]
    assert r["executions"] == RUNS[target], log[-3000:]
    seeds = len(list((tmp_path / f"corpus-{target}").glob("seed-*")))
    assert int(str(r["corpus"])) > seeds // 2  # the run kept inputs that reach new code
