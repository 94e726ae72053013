"""A one-line progress display on stderr, only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


class Progress:
    def __init__(self, total_bytes: int | None, enabled: bool, stream: TextIO = sys.stderr) -> None:
        self.total = total_bytes
        self.enabled = enabled
        self.stream = stream
        self.start = time.monotonic()
        self.last = 0.0
        self.shown = False

    def update(self, done_bytes: int, packets: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.25:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-6)
        rate = packets / elapsed
        if self.total:
            frac = min(done_bytes / self.total, 1.0)
            bar = "#" * int(frac * 30)
            text = f"\r[{bar:<30}] {frac:6.1%} {_mb(done_bytes)} of {_mb(self.total)}  {rate:,.0f} pkt/s"
        else:
            text = f"\r{_mb(done_bytes)} read  {packets:,} packets  {rate:,.0f} pkt/s"
        self.stream.write(text)
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * 78 + "\r")
            self.stream.flush()
