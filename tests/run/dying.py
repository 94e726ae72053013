"""Worker targets that die, for ``test_spans.py``: in a module of their own, which a spawned
worker imports without the test modules' own imports (numpy is kept out of workers)."""

from __future__ import annotations

import os

from analyzer.run.launch import Board


def at_once(*args: object) -> None:
    """Killed before it takes a span."""
    os._exit(9)


def holding_a_span(k: int, config: object, reader: object, board: Board, *rest: object) -> None:
    """Killed once it holds a span."""
    board.wait_ready()
    board.take(k)
    os._exit(9)
