"""What reassembly hands to consumers: ordered data, gaps and a final close."""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol


class Direction(IntEnum):
    """The two directions of a flow: the originator's bytes and the responder's."""

    ORIG = 0
    RESP = 1

    @property
    def label(self) -> str:
        """``orig`` or ``resp``, as the tables write it."""
        return "orig" if self is Direction.ORIG else "resp"

    @property
    def peer(self) -> Direction:
        return Direction.RESP if self is Direction.ORIG else Direction.ORIG


class CloseReason:
    FIN = "fin"
    RST = "rst"
    IDLE = "timeout"
    EVICTED = "evicted"
    END_OF_CAPTURE = "end_of_capture"
    PORT_REUSE = "port_reuse"


class StreamSink(Protocol):
    """Receives one flow's bytes in order.

    ``data`` and ``gap`` calls for one direction never overlap and never skip: a gap
    stands exactly for the bytes that were sent but not captured (never zero-filled).
    ``close`` comes once, after every buffered byte of both directions was handed over.
    """

    def data(self, direction: int, ts: float, data: bytes) -> None: ...

    def gap(self, direction: int, ts: float, length: int) -> None: ...

    def close(self, ts: float, reason: str) -> None: ...

    def skip(self, direction: int, n: int) -> None:
        """Count ``n`` in-order bytes, fewer than ``unread[direction]``, without their content
        (the flow table's fast path; called only while ``unread`` allows it)."""
        ...

    def cross(self, direction: int, data: bytes) -> bool:
        """Count an in-order segment of at least ``unread[direction]`` bytes when it only
        crosses into more of the same unread content (``AssociationParser.cross``); False,
        and nothing done, when it needs ``data``."""
        ...

    def footprint(self) -> int:
        """Bytes of state this consumer holds (``analyzer/memory.py``)."""
        ...

    unread: list[int]
    """Per direction: an in-order segment of fewer bytes than this would only be counted,
    its content read by nothing (the body of a dataset past the kept head). Its checksum is
    then not verified: a wrong one could not change anything decoded."""
