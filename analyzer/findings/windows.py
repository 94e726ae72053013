"""Sliding windows per key, the memory of cross-flow rules."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

MAX_KEYS = 50_000
K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class Windows(Generic[K, T]):
    """Per-key sliding windows of (ts, item), bounded in keys and items.

    A window is a plain list (about 100 bytes for one event, where a deque costs 600): most
    keys are hosts seen once or twice."""

    def __init__(self, seconds: float, max_items: int = 4096, max_keys: int = MAX_KEYS) -> None:
        self.seconds = seconds
        self.max_keys = max_keys
        self.max_items = max_items
        self.data: OrderedDict[K, list[tuple[float, T]]] = OrderedDict()

    def add(self, key: K, ts: float, item: T) -> list[tuple[float, T]]:
        q = self.data.get(key)
        if q is None:
            q = self.data[key] = []
            while len(self.data) > self.max_keys:
                self._forget(self.data.popitem(last=False)[0])
        else:
            self.data.move_to_end(key)
        q.append((ts, item))
        self._added(key, item)
        horizon = ts - self.seconds
        stale = 0
        for t, _ in q:
            if t >= horizon:
                break
            stale += 1
        cut = stale + max(len(q) - stale - self.max_items, 0)
        if cut:
            self._dropped(key, q[:cut])
            del q[:cut]
        # the least recently touched key is first: drop it once its whole window has passed
        oldest_key = next(iter(self.data))
        oldest = self.data[oldest_key]
        if oldest_key != key and (not oldest or oldest[-1][0] < horizon):
            del self.data[oldest_key]
            self._forget(oldest_key)
        return q

    def _added(self, key: K, item: T) -> None:
        """An item entered ``key``'s window."""

    def _dropped(self, key: K, items: list[tuple[float, T]]) -> None:
        """``items`` left ``key``'s window (too old, or past ``max_items``)."""

    def _forget(self, key: K) -> None:
        """``key`` and its whole window are gone."""


class SummingWindows(Windows[K, int]):
    """Windows of (ts, amount) that keep each key's running total, so that "how much within
    the window?" after every event costs O(1) instead of a sum over the window."""

    def __init__(self, seconds: float, max_items: int = 4096, max_keys: int = MAX_KEYS) -> None:
        super().__init__(seconds, max_items, max_keys)
        self.sums: dict[K, int] = {}

    def total(self, key: K) -> int:
        return self.sums.get(key, 0)

    def _added(self, key: K, item: int) -> None:
        self.sums[key] = self.sums.get(key, 0) + item

    def _dropped(self, key: K, items: list[tuple[float, int]]) -> None:
        self.sums[key] -= sum(n for _, n in items)

    def _forget(self, key: K) -> None:
        self.sums.pop(key, None)
