"""The ``phi`` log: one record per identifying attribute value that crossed the wire."""

from __future__ import annotations

from analyzer.dicom.messages import Message
from analyzer.logs.observer import DicomObserver, MessageInfo
from analyzer.logs.records import Phi
from analyzer.logs.sinks import RowSink
from analyzer.logs.views import AssocView
from analyzer.privacy import PhiPolicy, tier
from analyzer.tcp.events import Direction

MEMO_SIZE = 4096
"""Values remembered with their redaction and hash: a series repeats the same patient, study
and institution values in every slice."""


ROW_ORDER = (
    "uid", "ts", "message_id", "direction", "tag", "keyword", "vr", "value", "value_hash",
    "value_length", "depth", "patient_key", "tier", "sensor",
)  # fmt: skip
"""The order ``PhiLog.message`` builds rows in, positionally."""
if Phi._fields != ROW_ORDER:  # pragma: no cover - a changed record must change the builder
    raise RuntimeError("records.Phi changed: update PhiLog.message")


class PhiLog(DicomObserver):
    __slots__ = ("sink", "policy", "memo", "tags")

    def __init__(self, sink: RowSink[Phi], policy: PhiPolicy) -> None:
        self.sink = sink
        self.policy = policy
        self.memo: dict[str, tuple[str, str]] = {}
        self.tags: dict[int, tuple[str, str, str]] = {}

    def message(self, a: AssocView, m: Message, info: MessageInfo) -> None:
        phi = info.phi
        if phi is None or not phi.elements:
            return
        c = m.command
        message_id = c.message_id if c.message_id is not None else c.message_id_responded
        direction = Direction(m.direction).label
        hasher, shown = self.policy.hasher, self.policy.shown
        memo, tags, add = self.memo, self.tags, self.sink.add
        uid, ts, patient_key = a.uid, m.ts, phi.patient_key
        new = tuple.__new__
        for e in phi.elements:
            value = e.value or ""
            seen = memo.get(value)
            if seen is None:
                if len(memo) >= MEMO_SIZE:
                    memo.clear()
                seen = memo[value] = (shown(value), hasher(value))
            names = tags.get(e.tag)
            if names is None:
                names = tags[e.tag] = (
                    f"({e.tag >> 16:04X},{e.tag & 0xFFFF:04X})",
                    e.keyword or f"{e.tag:08X}",
                    tier(e.keyword, e.vr),
                )
            # in ``ROW_ORDER``, without the named tuple's Python-level __new__: seventy rows
            # per CT slice
            add(
                new(
                    Phi,
                    (
                        uid, ts, message_id, direction, names[0], names[1], e.vr, seen[0],
                        seen[1], e.length, e.depth, patient_key, names[2], None,
                    ),
                )
            )  # fmt: skip
