"""Every input a fuzz run once crashed on, replayed through its target (named TARGET-what.bin)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

CASES = sorted((Path(__file__).parent / "regressions").glob("*.bin"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_crash_input_no_longer_crashes(path: Path) -> None:
    TARGETS[path.stem.split("-")[0]](path.read_bytes())


def test_there_are_regression_inputs() -> None:
    assert CASES  # the crashes of the first long runs (a Specific Character Set with a NUL)
