"""The ``phi`` log: one record per identifying attribute value that crossed the wire."""

from __future__ import annotations

from analyzer.dicom.messages import Message
from analyzer.logs.observer import DicomObserver, MessageInfo
from analyzer.logs.records import Phi
from analyzer.logs.sinks import RowSink
from analyzer.logs.views import AssocView
from analyzer.privacy import PhiPolicy
from analyzer.tcp.events import Direction


class PhiLog(DicomObserver):
    __slots__ = ("sink", "policy")

    def __init__(self, sink: RowSink[Phi], policy: PhiPolicy) -> None:
        self.sink = sink
        self.policy = policy

    def message(self, a: AssocView, m: Message, info: MessageInfo) -> None:
        phi = info.phi
        if phi is None or not phi.elements:
            return
        c = m.command
        message_id = c.message_id if c.message_id is not None else c.message_id_responded
        direction = Direction(m.direction).label
        hasher, shown = self.policy.hasher, self.policy.shown
        for e in phi.elements:
            value = e.value or ""
            self.sink.add(
                Phi(
                    uid=a.uid,
                    ts=m.ts,
                    message_id=message_id,
                    direction=direction,
                    tag=f"({e.tag >> 16:04X},{e.tag & 0xFFFF:04X})",
                    keyword=e.keyword or f"{e.tag:08X}",
                    vr=e.vr,
                    value=shown(value),
                    value_hash=hasher(value),
                    value_length=e.length,
                    depth=e.depth,
                    patient_key=phi.patient_key,
                )
            )
