"""The ``weird`` table: every anomaly, with per-flow and global rate limits.

Rows past a limit are not dropped silently: a summary row says how many of that
anomaly were suppressed for the flow (or for the run).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from analyzer.config import Limits
from analyzer.logs.records import Weird


class Flow(Protocol):
    """What the weird log needs of a flow: its uid and its per-name counts."""

    uid: str
    weird_counts: dict[str, int] | None


def source_of(name: str) -> str:
    """The layer an anomaly comes from: the prefix of its ``<layer>_<what>`` name."""
    return name.split("_", 1)[0]


class WeirdLog:
    def __init__(self, limits: Limits, write: Callable[[Weird], None]) -> None:
        self.limits = limits
        self.write = write
        self.global_counts: dict[str, int] = {}
        self.global_last_ts: dict[str, float] = {}
        self.total = 0

    def flow(self, flow: Flow, ts: float, name: str, detail: str) -> None:
        self.total += 1
        counts = flow.weird_counts
        if counts is None:
            counts = flow.weird_counts = {}
        n = counts.get(name, 0) + 1
        counts[name] = n
        if n <= self.limits.max_weird_per_flow:
            self.write(Weird(uid=flow.uid, ts=ts, name=name, detail=detail, source=source_of(name)))

    def flow_done(self, flow: Flow, ts: float) -> None:
        if not flow.weird_counts:
            return
        limit = self.limits.max_weird_per_flow
        for name, n in flow.weird_counts.items():
            if n > limit:
                self.write(
                    Weird(
                        uid=flow.uid,
                        ts=ts,
                        name=name,
                        detail=f"{n - limit} more of these suppressed",
                        source=source_of(name),
                    )
                )

    def row(self, uid: str | None, ts: float, name: str, detail: str) -> None:
        """An anomaly found outside the packet path (a rule's internal error)."""
        if uid is None:
            self.capture(ts, name, detail)
        else:
            self.total += 1
            self.write(Weird(uid=uid, ts=ts, name=name, detail=detail, source=source_of(name)))

    def capture(self, ts: float, name: str, detail: str) -> None:
        """An anomaly that belongs to no flow (capture file, link or IP layer)."""
        self.total += 1
        n = self.global_counts.get(name, 0) + 1
        self.global_counts[name] = n
        self.global_last_ts[name] = ts
        if n <= self.limits.max_weird_global:
            self.write(Weird(uid=None, ts=ts, name=name, detail=detail, source=source_of(name)))

    def finish(self) -> None:
        limit = self.limits.max_weird_global
        for name, n in self.global_counts.items():
            if n > limit:
                detail = f"{n - limit} more of these suppressed"
                self.write(
                    Weird(
                        uid=None,
                        ts=self.global_last_ts[name],
                        name=name,
                        detail=detail,
                        source=source_of(name),
                    )
                )
