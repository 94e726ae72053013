"""Flows that cross the end of a task's files (``analyze --dask``).

A task owns the flows that begin in its own run of files. When those files end, the flows still
open are followed into the later files of the same capture: there only their packets are
analysed (every other packet just moves the clock, so they time out as in one whole run), no
new flow is opened and no capture-level anomaly is reported (the later files' own task reports
them), until every followed flow has ended. The later task sees the same packets as a flow that
began mid-stream; the reduce step drops that fragment (``cluster/reduce.py``), so each flow
comes out once, whole, as a single process gives it.
"""

from __future__ import annotations

from typing import Any

from analyzer.logs.records import Weird
from analyzer.net.decode import TcpHandler
from analyzer.tcp.flow import Flow
from analyzer.tcp.table import FlowTable


class Carry:
    __slots__ = ("table", "active", "flows", "uids")

    def __init__(self) -> None:
        self.table: FlowTable | None = None
        self.active = False
        self.flows: dict[int, Flow] = {}
        self.uids: list[str] = []
        """The flows open when the task's own files ended."""

    def handler(self, table: FlowTable, on_tcp: TcpHandler) -> TcpHandler:
        """``on_tcp`` that, once following, passes only segments of the followed flows."""
        self.table = table
        flows, tick, followed = table.flows, table.tick, self.flows

        def on_tcp_followed(
            ts: float, src: bytes, sport: int, dst: bytes, dport: int, *rest: Any
        ) -> None:
            if self.active:
                f = flows.get((src, sport, dst, dport))
                if f is None or id(f) not in followed:
                    tick(ts)
                    return
            on_tcp(ts, src, sport, dst, dport, *rest)

        return on_tcp_followed

    def gate(self, add: Any) -> Any:
        """A weird sink that drops flow-less rows while following."""

        def add_unless_following(row: Weird) -> None:
            if row.uid is not None or not self.active:
                add(row)

        return add_unless_following

    def begin(self) -> None:
        """The task's own files have ended: follow the flows open now."""
        self.active = True
        assert self.table is not None
        for f in self.table.flows.values():
            if id(f) not in self.flows:
                self.flows[id(f)] = f
                self.uids.append(f.uid)

    def following(self) -> bool:
        """Is any followed flow still open?"""
        assert self.table is not None
        live = self.table.flows
        for i, f in list(self.flows.items()):
            if live.get(f.keys[0]) is not f:
                del self.flows[i]
        return bool(self.flows)
