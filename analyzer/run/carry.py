"""Flows that cross the end of a task's files (``analyze --dask``).

A task owns the flows that begin in its own run of files. Its own records and those of the
later files of the same capture are merged by time, as one whole run reads them; a record of
a later file is analysed only when it belongs to a flow the task already has (and does not
open a new connection on its 4-tuple): every other one just moves the clock, so flows time
out as in one whole run, and reports nothing (the later files' own task reports it). Once the
task's own files are done, reading stops as soon as its last flow has ended. The later task
sees those packets as a flow that began mid-stream; the reduce step drops that fragment
(``cluster/reduce.py``), so each flow comes out once, whole, as a single process gives it.
"""

from __future__ import annotations

from typing import Any

from analyzer.capture import Skip
from analyzer.logs.records import Weird
from analyzer.net.decode import TcpHandler
from analyzer.tcp.flow import Flow
from analyzer.tcp.table import FlowKey, FlowTable

SYN, ACK = 0x02, 0x10


class Carry:
    __slots__ = ("table", "later", "followed", "settled", "frames", "skip", "until")

    def __init__(self) -> None:
        self.table: FlowTable | None = None
        self.later = False
        """Is the record being analysed from a later file?"""
        self.followed: set[str] = set()
        """Flows that took packets from later files, or were open when the own files ended."""
        self.settled = False
        """The own files are done: every flow left is followed, and later records make no new
        one, so they may take the bulk fast path (before, a flow that takes later records and
        ends must be marked on the whole path, ``handler``)."""
        self.frames: set[bytes] = set()
        """Once settled: what a plain frame (``plain_frame``) of a flow still followed holds at
        offset 26, its addresses and ports (``frame_ends``), for either direction. A later
        record of a plain frame not in it is only a tick of the clock (``Pipeline.feed_owned``);
        a flow's leave when it ends (``ended``)."""
        self.until: dict[str, float] = {}
        """When each followed flow ended: the clock then (the latest time of a record read so
        far), which no record the flow took is later than, whatever the order of the capture's
        time stamps (``run/fragments.py``)."""
        self.skip: Skip | None = None
        """Given to the later files' reader (``skip``): set to ``frames`` once settled, so that
        a plain pcap file's reader skips those records itself."""

    def handler(self, table: FlowTable, on_tcp: TcpHandler) -> TcpHandler:
        """``on_tcp`` that passes a later file's segment only to a flow the task has."""
        self.table = table
        self.skip = Skip(table, lambda: not table.flows)
        flows, tick, followed = table.flows, table.tick, self.followed

        def on_tcp_owned(
            ts: float,
            src: bytes,
            sport: int,
            dst: bytes,
            dport: int,
            seq: int,
            ack: int,
            flags: int,
            *rest: Any,
        ) -> None:
            if self.later:
                f = flows.get((src, sport, dst, dport))
                if f is None or (
                    flags & SYN
                    and not flags & ACK
                    and table._is_new_connection(
                        f, 0 if (sport == f.orig_p and src == f.orig_h) else 1, seq
                    )
                ):
                    tick(ts)
                    return
                followed.add(f.uid)
            on_tcp(ts, src, sport, dst, dport, seq, ack, flags, *rest)

        return on_tcp_owned

    def gate(self, add: Any) -> Any:
        """A weird sink that drops flow-less rows of later files' records."""

        def add_unless_later(row: Weird) -> None:
            if row.uid is not None or not self.later:
                add(row)

        return add_unless_later

    def own_files_done(self) -> None:
        assert self.table is not None
        self.followed.update(f.uid for f in self.table.flows.values())
        self.frames = {frame_ends(k) for k in self.table.flows if len(k[0]) == 4}
        self.settled = True
        if self.skip is not None:
            self.skip.frames = self.frames

    def ended(self, flow: Flow) -> None:
        """``flow`` ended (it already left the table)."""
        if self.table is not None and (self.settled or flow.uid in self.followed):
            self.until[flow.uid] = self.table.now
        if self.settled and self.table is not None:
            flows = self.table.flows
            for k in flow.keys:
                if len(k[0]) == 4 and k not in flows:
                    self.frames.discard(frame_ends(k))


def frame_ends(key: FlowKey) -> bytes:
    """The bytes at offset 26 of a plain Ethernet/IPv4/TCP frame of the IPv4 flow direction
    ``key``: source and destination address, source and destination port (as lanes key them,
    ``FlowTable.lanes``)."""
    src, sport, dst, dport = key
    return src + dst + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
