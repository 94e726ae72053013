"""Sliding windows per key, the memory of cross-flow rules."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

MAX_KEYS = 50_000


class Windows:
    """Per-key sliding windows of (ts, item), bounded in keys and items.

    A window is a plain list (about 100 bytes for one event, where a deque costs 600): most
    keys are hosts seen once or twice."""

    def __init__(self, seconds: float, max_items: int = 4096, max_keys: int = MAX_KEYS) -> None:
        self.seconds = seconds
        self.max_keys = max_keys
        self.max_items = max_items
        self.data: OrderedDict[Any, list[tuple[float, Any]]] = OrderedDict()

    def add(self, key: Any, ts: float, item: Any) -> list[tuple[float, Any]]:
        q = self.data.get(key)
        if q is None:
            q = self.data[key] = []
            while len(self.data) > self.max_keys:
                self.data.popitem(last=False)
        else:
            self.data.move_to_end(key)
        q.append((ts, item))
        horizon = ts - self.seconds
        stale = 0
        for t, _ in q:
            if t >= horizon:
                break
            stale += 1
        excess = len(q) - stale - self.max_items
        if stale or excess > 0:
            del q[: stale + max(excess, 0)]
        # the least recently touched key is first: drop it once its whole window has passed
        oldest_key = next(iter(self.data))
        oldest = self.data[oldest_key]
        if oldest_key != key and (not oldest or oldest[-1][0] < horizon):
            del self.data[oldest_key]
        return q
