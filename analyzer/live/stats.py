"""The ``stats`` table of live mode, and the counters it samples."""

from __future__ import annotations

import os
from pathlib import Path

from analyzer.logs.records import STATS

__all__ = ["STATS", "KernelCounters", "rss_mb"]


SYSFS = Path("/sys/class/net")


class KernelCounters:
    """rx_dropped and rx_missed_errors of the captured interfaces, as increases since the last
    call (interfaces without counters, such as ``any``, count nothing)."""

    def __init__(self, interfaces: list[str]) -> None:
        self.interfaces = [i for i in interfaces if (SYSFS / i / "statistics").is_dir()]
        self.last = self._read()

    def _read(self) -> tuple[int, int]:
        dropped = missed = 0
        for iface in self.interfaces:
            base = SYSFS / iface / "statistics"
            try:
                dropped += int((base / "rx_dropped").read_text())
                missed += int((base / "rx_missed_errors").read_text())
            except (OSError, ValueError):
                continue
        return dropped, missed

    def deltas(self) -> tuple[int, int]:
        now = self._read()
        d = (max(now[0] - self.last[0], 0), max(now[1] - self.last[1], 0))
        self.last = now
        return d


def rss_mb() -> float:
    """Resident set size of this process in MB (0 where /proc is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
