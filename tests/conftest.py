from __future__ import annotations

import shutil

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite tests/golden from the current output instead of comparing",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [tool for tool in ("tshark", "mergecap") if shutil.which(tool) is None]
    if missing:
        raise pytest.UsageError(
            f"missing {', '.join(missing)}: run ./scripts/test.sh, which installs them"
        )
