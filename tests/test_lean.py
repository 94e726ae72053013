"""Worker processes go without numpy, Pillow and requests from their first import
(``analyzer/lean.py``): pydicom would import them, for pixel data and test files only."""

from __future__ import annotations

import multiprocessing
import sys
from typing import TYPE_CHECKING

from analyzer.lean import ENV, LEFT_OUT, bring_back, leave_out, start_lean

if TYPE_CHECKING:
    from multiprocessing.queues import Queue


def _report(out: Queue[dict[str, str]]) -> None:
    import analyzer.run.pipeline  # noqa: F401 - pulls pydicom in, which tries them all

    out.put({name: repr(sys.modules.get(name, "absent")) for name in (*LEFT_OUT, "pydicom")})


def test_a_lean_worker_never_imports_them() -> None:
    ctx = multiprocessing.get_context("spawn")
    out: Queue[dict[str, str]] = ctx.Queue()
    proc = ctx.Process(target=_report, args=(out,))
    start_lean(proc)
    got = out.get(timeout=120)
    proc.join(30)
    assert proc.exitcode == 0
    assert "module 'pydicom'" in got.pop("pydicom")
    assert all(v in ("None", "'absent'") for v in got.values()), got
    import os

    assert ENV not in os.environ  # only the child had it


def test_leave_out_and_bring_back() -> None:
    saved = {name: sys.modules.get(name) for name in LEFT_OUT}
    try:
        for name in LEFT_OUT:
            sys.modules.pop(name, None)
        leave_out()
        assert all(sys.modules[name] is None for name in LEFT_OUT)
        bring_back()
        assert not any(name in sys.modules for name in LEFT_OUT)
    finally:
        for name, module in saved.items():
            if module is not None:
                sys.modules[name] = module
            else:
                sys.modules.pop(name, None)
