from __future__ import annotations

import shutil

import pytest


def pytest_sessionstart(session: pytest.Session) -> None:
    missing = [tool for tool in ("tshark", "mergecap") if shutil.which(tool) is None]
    if missing:
        raise pytest.UsageError(
            f"missing {', '.join(missing)}: run ./scripts/test.sh, which installs them"
        )
