from __future__ import annotations

import shutil
from pathlib import Path

import pytest

NEEDS_TSHARK = {"test_tshark_agreement.py", "test_crosscheck.py"}
"""Modules whose every test compares with Wireshark (tshark, mergecap, pyshark)."""
NEEDS_DUMPCAP = "live"
"""The folder whose tests capture live with dumpcap."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite tests/golden from the current output instead of comparing",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need Wireshark's tools are skipped, with the reason, where they are missing
    (./scripts/test.sh and CI install them, so there they run); the rest runs anyway."""
    missing = [tool for tool in ("tshark", "mergecap") if shutil.which(tool) is None]
    no_dumpcap = shutil.which("dumpcap") is None
    for item in items:
        path = Path(str(item.fspath))
        if missing and (path.name in NEEDS_TSHARK or item.get_closest_marker("tshark")):
            item.add_marker(
                pytest.mark.skip(
                    reason=f"needs {', '.join(missing)} (./scripts/test.sh installs it)"
                )
            )
        elif no_dumpcap and path.parent.name == NEEDS_DUMPCAP and path.name != "test_parts.py":
            item.add_marker(
                pytest.mark.skip(reason="needs dumpcap (./scripts/test.sh installs it)")
            )
