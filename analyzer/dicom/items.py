"""A-ASSOCIATE-RQ/AC, A-ASSOCIATE-RJ and A-ABORT bodies decoded into frozen records.

An observer must record what it sees, so nothing here raises on odd values: an item
that overruns its parent, an unknown item type or a short field becomes an anomaly
on the record, and decoding goes on with what is left.

A-ASSOCIATE-RQ/AC body (PS3.8 Tables 9-11, 9-17), after the 6-byte PDU header:

    Offset  Length  Description
    0       2       Protocol version (bit 0 set: version 1)
    2       2       Reserved
    4       16      Called AE title (AC: reserved, echoes the RQ)
    20      16      Calling AE title
    36      32      Reserved
    68      -       Items: type(1) reserved(1) length(2, big endian) value
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from analyzer.dicom.consts import ItemType

FIXED_PART = 68
NONZERO = re.compile(b"[^\x00]")
MAX_ANOMALIES = 16
"""Anomalies kept per decoded PDU; one more row says how many were not."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PresentationContext:
    context_id: int
    abstract_syntax: str | None = None
    """RQ only."""
    transfer_syntaxes: tuple[str, ...] = ()
    """RQ: proposed; AC: the one accepted (if any)."""
    result: int | None = None
    """AC only: PS3.8 Table 9-18."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UserIdentity:
    """User Identity sub-item 0x58 (PS3.7 D.3.3.7.1). The secondary field (a passcode)
    is never kept: only its length."""

    identity_type: int
    response_requested: bool
    primary: bytes
    secondary_length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleSelection:
    sop_class_uid: str
    scu_role: int
    scp_role: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtendedNegotiation:
    sop_class_uid: str
    info: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CommonExtendedNegotiation:
    sop_class_uid: str
    service_class_uid: str
    related_general_sop_classes: tuple[str, ...]


@dataclass(slots=True, kw_only=True)
class _Collect:
    application_context: str | None = None
    contexts: list[PresentationContext] = field(default_factory=list)
    max_pdu_length: int | None = None
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    async_window: tuple[int, int] | None = None
    roles: list[RoleSelection] = field(default_factory=list)
    extended: list[ExtendedNegotiation] = field(default_factory=list)
    common_extended: list[CommonExtendedNegotiation] = field(default_factory=list)
    user_identity: UserIdentity | None = None
    server_response_length: int | None = None
    anomalies: list[tuple[str, str]] = field(default_factory=list)
    more: int = 0

    def note(self, anomaly: tuple[str, str]) -> None:
        """Keep the first ``MAX_ANOMALIES`` of a PDU; count the rest (a megabyte of zeros is a
        quarter of a million empty items)."""
        if len(self.anomalies) < MAX_ANOMALIES:
            self.anomalies.append(anomaly)
        else:
            self.more += 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Associate:
    """An A-ASSOCIATE-RQ or -AC."""

    pdu_type: int
    protocol_version: int
    called_ae: str
    calling_ae: str
    called_ae_raw: bytes
    calling_ae_raw: bytes
    application_context: str | None
    contexts: tuple[PresentationContext, ...]
    max_pdu_length: int | None
    implementation_class_uid: str | None
    implementation_version_name: str | None
    async_window: tuple[int, int] | None
    roles: tuple[RoleSelection, ...]
    extended: tuple[ExtendedNegotiation, ...]
    common_extended: tuple[CommonExtendedNegotiation, ...]
    user_identity: UserIdentity | None
    server_response_length: int | None
    """AC only: length of the 0x59 server response, None when the item is absent."""
    anomalies: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    """A-ASSOCIATE-RJ body: reserved(1) result(1) source(1) reason(1)."""

    result: int
    source: int
    reason: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Abort:
    """A-ABORT body: reserved(1) reserved(1) source(1) reason(1)."""

    source: int
    reason: int


CONTROL_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def wire_text(raw: bytes) -> str:
    """Bytes from the wire as safe ASCII text, the one escaping policy of every output: a byte
    outside printable ASCII (non-ASCII, control characters: ESC, CR, LF, NUL) becomes ``\\xNN``.
    Trailing NUL padding is dropped first. Nothing is lost: the escapes say which bytes came."""
    return raw.rstrip(b"\x00").decode("ascii", "backslashreplace").translate(CONTROL_ESCAPES)


def text(raw: bytes) -> str:
    """A UID or AE title: ASCII, padded with spaces or NULs. A byte that is not ASCII is kept
    as its escape (``\\xe2``), so the value stays ASCII and says what was on the wire. Interned:
    the same few hundred SOP class and transfer syntax UIDs recur in every association and
    every table row."""
    value = wire_text(raw).strip(" ")
    return sys.intern(value) if len(value) <= 64 else value


def _u16(b: bytes, i: int) -> int:
    return (b[i] << 8) | b[i + 1]


def _items(
    body: bytes, start: int, end: int, out: _Collect, where: str
) -> Iterator[tuple[int, bytes]]:
    """Split [start, end) into (type, value) items, noting overruns. Every item is decoded,
    however many odd ones come before it (credentials after a run of junk items are still
    credentials); only the anomalies are capped."""
    pos = start
    while pos < end:
        if end - pos < 4:
            out.note(("dicom_item_truncated", f"{end - pos} stray bytes in {where}"))
            return
        itype, length = body[pos], _u16(body, pos + 2)
        if itype == 0 and length == 0 and body[pos + 1] == 0:
            # a run of zeros is a run of empty items of no type: one step, one anomaly
            nonzero = NONZERO.search(body, pos, end)
            run = (nonzero.start() if nonzero else end) - pos
            pos += run - run % 4
            yield 0, b""
            continue
        if pos + 4 + length > end:
            out.note(
                ("dicom_item_overrun", f"item {itype:#04x} of {length} bytes overruns {where}")
            )
            yield itype, body[pos + 4 : end]
            return
        yield itype, body[pos + 4 : pos + 4 + length]
        pos += 4 + length


def _context_rq(v: bytes, out: _Collect) -> None:
    """0x20: context-id(1) reserved(3) then 0x30 abstract syntax and 0x40 transfer syntaxes."""
    if len(v) < 4:
        out.note(("dicom_item_truncated", "presentation context item"))
        return
    abstract: str | None = None
    transfers: list[str] = []
    for itype, value in _items(v, 4, len(v), out, "presentation context"):
        if itype == ItemType.ABSTRACT_SYNTAX:
            abstract = text(value)
        elif itype == ItemType.TRANSFER_SYNTAX:
            transfers.append(text(value))
        else:
            out.note(("dicom_item_unknown", f"sub-item {itype:#04x} in presentation context"))
    out.contexts.append(
        PresentationContext(
            context_id=v[0], abstract_syntax=abstract, transfer_syntaxes=tuple(transfers)
        )
    )


def _context_ac(v: bytes, out: _Collect) -> None:
    """0x21: context-id(1) reserved(1) result(1) reserved(1) then one 0x40 transfer syntax."""
    if len(v) < 4:
        out.note(("dicom_item_truncated", "presentation context item"))
        return
    transfers = [
        text(value)
        for itype, value in _items(v, 4, len(v), out, "presentation context")
        if itype == ItemType.TRANSFER_SYNTAX and value
    ]  # a rejected context may carry an empty transfer syntax sub-item: no syntax, not ""
    out.contexts.append(
        PresentationContext(context_id=v[0], result=v[2], transfer_syntaxes=tuple(transfers))
    )


def _user_information(v: bytes, out: _Collect) -> None:
    for itype, value in _items(v, 0, len(v), out, "user information"):
        decoder = SUB_ITEMS.get(itype)
        if decoder is None:
            out.note(("dicom_item_unknown", f"user information sub-item {itype:#04x}"))
        else:
            decoder(value, out)


def _max_length(v: bytes, out: _Collect) -> None:
    if len(v) >= 4:
        out.max_pdu_length = int.from_bytes(v[:4], "big")
    else:
        out.note(("dicom_item_truncated", "maximum length sub-item"))


def _impl_class(v: bytes, out: _Collect) -> None:
    out.implementation_class_uid = text(v)


def _impl_version(v: bytes, out: _Collect) -> None:
    out.implementation_version_name = text(v)


def _async(v: bytes, out: _Collect) -> None:
    if len(v) >= 4:
        out.async_window = (_u16(v, 0), _u16(v, 2))


def _role(v: bytes, out: _Collect) -> None:
    """0x54: uid-length(2) uid scu-role(1) scp-role(1)."""
    if len(v) < 2 or len(v) < 2 + _u16(v, 0) + 2:
        out.note(("dicom_item_truncated", "role selection sub-item"))
        return
    n = _u16(v, 0)
    out.roles.append(
        RoleSelection(sop_class_uid=text(v[2 : 2 + n]), scu_role=v[2 + n], scp_role=v[3 + n])
    )


def _extended(v: bytes, out: _Collect) -> None:
    """0x56: uid-length(2) uid service-class-application-information."""
    if len(v) < 2 or len(v) < 2 + _u16(v, 0):
        out.note(("dicom_item_truncated", "extended negotiation sub-item"))
        return
    n = _u16(v, 0)
    out.extended.append(
        ExtendedNegotiation(sop_class_uid=text(v[2 : 2 + n]), info=bytes(v[2 + n :]))
    )


def _common_extended(v: bytes, out: _Collect) -> None:
    """0x57: uid-length(2) uid service-uid-length(2) uid related-length(2) (length(2) uid)*."""
    try:
        n = _u16(v, 0)
        sop = text(v[2 : 2 + n])
        p = 2 + n
        m = _u16(v, p)
        service = text(v[p + 2 : p + 2 + m])
        p += 2 + m
        total = _u16(v, p)
        p += 2
        related: list[str] = []
        end = min(len(v), p + total)
        while p + 2 <= end:
            k = _u16(v, p)
            related.append(text(v[p + 2 : p + 2 + k]))
            p += 2 + k
    except IndexError:
        out.note(("dicom_item_truncated", "common extended negotiation sub-item"))
        return
    out.common_extended.append(
        CommonExtendedNegotiation(
            sop_class_uid=sop, service_class_uid=service, related_general_sop_classes=tuple(related)
        )
    )


def _user_identity_rq(v: bytes, out: _Collect) -> None:
    """0x58: type(1) response-requested(1) primary-length(2) primary secondary-length(2) secondary."""
    if len(v) < 4:
        out.note(("dicom_item_truncated", "user identity sub-item"))
        return
    n = _u16(v, 2)
    primary = bytes(v[4 : 4 + n])
    secondary = _u16(v, 4 + n) if len(v) >= 6 + n else 0
    if len(v) < 4 + n or len(v) < 6 + n:
        out.note(("dicom_item_truncated", "user identity field lengths overrun the item"))
    out.user_identity = UserIdentity(
        identity_type=v[0],
        response_requested=v[1] == 1,
        primary=primary,
        secondary_length=secondary,
    )


def _user_identity_ac(v: bytes, out: _Collect) -> None:
    """0x59: server-response-length(2) server-response."""
    out.server_response_length = _u16(v, 0) if len(v) >= 2 else 0


SUB_ITEMS: dict[int, Callable[[bytes, _Collect], None]] = {
    ItemType.MAXIMUM_LENGTH: _max_length,
    ItemType.IMPLEMENTATION_CLASS_UID: _impl_class,
    ItemType.ASYNCHRONOUS_OPERATIONS_WINDOW: _async,
    ItemType.ROLE_SELECTION: _role,
    ItemType.IMPLEMENTATION_VERSION_NAME: _impl_version,
    ItemType.SOP_CLASS_EXTENDED_NEGOTIATION: _extended,
    ItemType.SOP_CLASS_COMMON_EXTENDED_NEGOTIATION: _common_extended,
    ItemType.USER_IDENTITY_RQ: _user_identity_rq,
    ItemType.USER_IDENTITY_AC: _user_identity_ac,
}


def _application_context(v: bytes, out: _Collect) -> None:
    out.application_context = text(v)


ITEMS: dict[int, Callable[[bytes, _Collect], None]] = {
    ItemType.APPLICATION_CONTEXT: _application_context,
    ItemType.PRESENTATION_CONTEXT_RQ: _context_rq,
    ItemType.PRESENTATION_CONTEXT_AC: _context_ac,
    ItemType.USER_INFORMATION: _user_information,
}


def decode_associate(pdu_type: int, body: bytes) -> Associate:
    out = _Collect()
    if len(body) < FIXED_PART:
        out.note(("dicom_pdu_truncated", f"associate PDU body of {len(body)} bytes"))
        body = body + bytes(FIXED_PART - len(body))
    version = _u16(body, 0)
    if not version & 1:
        out.note(("dicom_protocol_version", f"protocol version {version:#06x}"))
    wrong_context = (
        ItemType.PRESENTATION_CONTEXT_AC if pdu_type == 1 else ItemType.PRESENTATION_CONTEXT_RQ
    )
    for itype, value in _items(body, FIXED_PART, len(body), out, "associate PDU"):
        decoder = ITEMS.get(itype)
        if decoder is None or itype == wrong_context:
            out.note(("dicom_item_unknown", f"item {itype:#04x} in PDU type {pdu_type}"))
            continue
        decoder(value, out)
    if out.more:
        out.anomalies.append(("dicom_item_anomalies_suppressed", f"{out.more} more in this PDU"))
    called_raw, calling_raw = bytes(body[4:20]), bytes(body[20:36])
    return Associate(
        pdu_type=pdu_type,
        protocol_version=version,
        called_ae=text(called_raw),
        calling_ae=text(calling_raw),
        called_ae_raw=called_raw,
        calling_ae_raw=calling_raw,
        application_context=out.application_context,
        contexts=tuple(out.contexts),
        max_pdu_length=out.max_pdu_length,
        implementation_class_uid=out.implementation_class_uid,
        implementation_version_name=out.implementation_version_name,
        async_window=out.async_window,
        roles=tuple(out.roles),
        extended=tuple(out.extended),
        common_extended=tuple(out.common_extended),
        user_identity=out.user_identity,
        server_response_length=out.server_response_length,
        anomalies=tuple(out.anomalies),
    )


def decode_reject(body: bytes) -> Reject:
    b = bytes(body[:4]).ljust(4, b"\x00")
    return Reject(result=b[1], source=b[2], reason=b[3])


def decode_abort(body: bytes) -> Abort:
    b = bytes(body[:4]).ljust(4, b"\x00")
    return Abort(source=b[2], reason=b[3])
