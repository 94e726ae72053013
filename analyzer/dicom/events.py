"""Events of the upper-layer framer. Frozen, slotted, keyword-only; never subclassed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlPdu:
    """A whole non-P-DATA PDU (associate, release, abort): small, so kept whole."""

    ts: float
    pdu_type: int
    body: bytes
    """Everything after the 6-byte PDU header."""
    truncated: bool = False
    """Bytes of the body were lost: this is the part before the loss."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PdvChunk:
    """Part of one PDV's value, in order. ``first``/``end`` mark the PDV's own edges."""

    ts: float
    context_id: int
    is_command: bool
    is_last: bool
    """The message control header's last-fragment bit."""
    data: bytes
    first: bool
    end: bool
    pdu_start: bool = False
    """This is the first PDV of its P-DATA-TF PDU."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FramingAnomaly:
    ts: float
    name: str
    detail: str
    pdu_type: int | None = None
    """A PDU of this type began (its header was sound) but nothing of it could be handed on:
    it still counts as a PDU of the association, as Wireshark counts it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Resynchronized:
    """The framer found a plausible PDU header again after ``skipped`` unusable bytes."""

    ts: float
    skipped: int


FramerEvent = ControlPdu | PdvChunk | FramingAnomaly | Resynchronized
