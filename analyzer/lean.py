"""Libraries an analysis process goes without.

pydicom imports numpy (pixel data), Pillow (colour profiles) and requests (its test-data
download) when they are installed, though it works without them; none of them serves the
analysis. Leaving them out saves about 0.3 s of start-up and 12 MB in every analysis process
(measured with ``python -X importtime``). Plots and the report bring them back
(``bring_back``). Worker processes are started with ``start_lean``, so that they leave them
out from their very first import (``analyzer/__init__.py`` reads ``ENV``), before the target's
module pulls pydicom in.
"""

from __future__ import annotations

import os
import sys
from typing import Protocol

LEFT_OUT = ("numpy", "PIL", "requests")
ENV = "DICOM_ANALYZER_LEAN"


def leave_out() -> None:
    """Later imports of ``LEFT_OUT`` fail (pydicom then does without); a library this process
    already imported stays."""
    for name in LEFT_OUT:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]


def bring_back() -> None:
    for name in LEFT_OUT:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]


class _Startable(Protocol):
    def start(self) -> None: ...


def start_lean(proc: _Startable) -> None:
    """Start a (spawned) process that leaves ``LEFT_OUT`` out from its first import."""
    old = os.environ.get(ENV)
    os.environ[ENV] = "1"
    try:
        proc.start()
    finally:
        if old is None:
            del os.environ[ENV]
        else:
            os.environ[ENV] = old
