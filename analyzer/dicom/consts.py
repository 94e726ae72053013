"""Wire codes of PS3.8 and PS3.7 with their labels. Unknown codes label as "unknown"."""

from __future__ import annotations

from enum import IntEnum


class PduType(IntEnum):
    """PS3.8 Table 9-11 and following."""

    A_ASSOCIATE_RQ = 0x01
    A_ASSOCIATE_AC = 0x02
    A_ASSOCIATE_RJ = 0x03
    P_DATA_TF = 0x04
    A_RELEASE_RQ = 0x05
    A_RELEASE_RP = 0x06
    A_ABORT = 0x07


class ItemType(IntEnum):
    """Items of A-ASSOCIATE-RQ/AC (PS3.8 9.3.2, 9.3.3) and user-information sub-items (PS3.7 D.3.3)."""

    APPLICATION_CONTEXT = 0x10
    PRESENTATION_CONTEXT_RQ = 0x20
    PRESENTATION_CONTEXT_AC = 0x21
    ABSTRACT_SYNTAX = 0x30
    TRANSFER_SYNTAX = 0x40
    USER_INFORMATION = 0x50
    MAXIMUM_LENGTH = 0x51
    IMPLEMENTATION_CLASS_UID = 0x52
    ASYNCHRONOUS_OPERATIONS_WINDOW = 0x53
    ROLE_SELECTION = 0x54
    IMPLEMENTATION_VERSION_NAME = 0x55
    SOP_CLASS_EXTENDED_NEGOTIATION = 0x56
    SOP_CLASS_COMMON_EXTENDED_NEGOTIATION = 0x57
    USER_IDENTITY_RQ = 0x58
    USER_IDENTITY_AC = 0x59


PDU_NAMES = {t.value: t.name.replace("_", "-", 1).replace("_", "-") for t in PduType}

# A-ASSOCIATE-RJ (PS3.8 Table 9-21)
REJECT_RESULT = {1: "rejected-permanent", 2: "rejected-transient"}
REJECT_SOURCE = {
    1: "service-user",
    2: "service-provider-acse",
    3: "service-provider-presentation",
}
REJECT_REASON = {
    (1, 1): "no-reason-given",
    (1, 2): "application-context-name-not-supported",
    (1, 3): "calling-ae-title-not-recognized",
    (1, 7): "called-ae-title-not-recognized",
    (2, 1): "no-reason-given",
    (2, 2): "protocol-version-not-supported",
    (3, 1): "temporary-congestion",
    (3, 2): "local-limit-exceeded",
}

# A-ABORT (PS3.8 Table 9-26)
ABORT_SOURCE = {0: "service-user", 1: "reserved", 2: "service-provider"}
ABORT_REASON = {
    0: "reason-not-specified",
    1: "unrecognized-pdu",
    2: "unexpected-pdu",
    3: "reserved",
    4: "unrecognized-pdu-parameter",
    5: "unexpected-pdu-parameter",
    6: "invalid-pdu-parameter-value",
}


class ContextResult(IntEnum):
    """Presentation context result (PS3.8 Table 9-18)."""

    ACCEPTANCE = 0
    USER_REJECTION = 1
    NO_REASON = 2
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
    TRANSFER_SYNTAXES_NOT_SUPPORTED = 4


CONTEXT_RESULT = {
    0: "acceptance",
    1: "user-rejection",
    2: "no-reason",
    3: "abstract-syntax-not-supported",
    4: "transfer-syntaxes-not-supported",
}

USER_IDENTITY_TYPE = {1: "username", 2: "username-passcode", 3: "kerberos", 4: "saml", 5: "jwt"}


class CommandField(IntEnum):
    """DIMSE Command Field (0000,0100), PS3.7 Annex E. A response is its request | 0x8000."""

    C_STORE_RQ = 0x0001
    C_STORE_RSP = 0x8001
    C_GET_RQ = 0x0010
    C_GET_RSP = 0x8010
    C_FIND_RQ = 0x0020
    C_FIND_RSP = 0x8020
    C_MOVE_RQ = 0x0021
    C_MOVE_RSP = 0x8021
    C_ECHO_RQ = 0x0030
    C_ECHO_RSP = 0x8030
    N_EVENT_REPORT_RQ = 0x0100
    N_EVENT_REPORT_RSP = 0x8100
    N_GET_RQ = 0x0110
    N_GET_RSP = 0x8110
    N_SET_RQ = 0x0120
    N_SET_RSP = 0x8120
    N_ACTION_RQ = 0x0130
    N_ACTION_RSP = 0x8130
    N_CREATE_RQ = 0x0140
    N_CREATE_RSP = 0x8140
    N_DELETE_RQ = 0x0150
    N_DELETE_RSP = 0x8150
    C_CANCEL_RQ = 0x0FFF


RESPONSE_BIT = 0x8000
"""Set in the command field of every response."""

COMMAND_FIELD = {c.value: c.name.replace("_", "-") for c in CommandField}
"""Command field -> its PS3.7 name (``C-STORE-RQ``)."""

QUERY_RETRIEVE = frozenset({CommandField.C_FIND_RQ, CommandField.C_MOVE_RQ, CommandField.C_GET_RQ})
"""Requests whose dataset is an identifier (query keys) and that get pending responses."""

IDENTIFIER_COMMANDS = QUERY_RETRIEVE | {
    CommandField.C_FIND_RSP,
    CommandField.C_MOVE_RSP,
    CommandField.C_GET_RSP,
}
"""Commands whose dataset is an identifier rather than a stored object."""


def is_response(command_field: int) -> bool:
    return bool(command_field & RESPONSE_BIT)


def request_of(command_field: int) -> int:
    """The request command field that a response answers."""
    return command_field & ~RESPONSE_BIT


class Status(IntEnum):
    """The status codes the analysis reasons about (PS3.7 Annex C, PS3.4 service annexes)."""

    SUCCESS = 0x0000
    NOT_AUTHORIZED = 0x0124
    MOVE_DESTINATION_UNKNOWN = 0xA801
    CANCEL = 0xFE00
    PENDING = 0xFF00
    PENDING_WARNING = 0xFF01


PENDING_STATUSES = frozenset({Status.PENDING, Status.PENDING_WARNING})
"""Statuses after which more responses to the same request follow."""


def is_pending(status: int | None) -> bool:
    return status in PENDING_STATUSES


NO_DATASET = 0x0101
"""(0000,0800) Command Data Set Type value meaning no dataset follows."""

# Status codes (PS3.7 Annex C and the service annexes of PS3.4)
STATUS_LABEL = {
    0x0000: "success",
    0x0001: "warning: requested optional attributes not supported",
    0x0105: "failure: no such attribute",
    0x0106: "failure: invalid attribute value",
    0x0107: "warning: attribute list error",
    0x0110: "failure: processing failure",
    0x0111: "failure: duplicate SOP instance",
    0x0112: "failure: no such SOP instance",
    0x0113: "failure: no such event type",
    0x0114: "failure: no such argument",
    0x0115: "failure: invalid argument value",
    0x0116: "warning: attribute value out of range",
    0x0117: "failure: invalid object instance",
    0x0118: "failure: no such SOP class",
    0x0119: "failure: class-instance conflict",
    0x0120: "failure: missing attribute",
    0x0121: "failure: missing attribute value",
    0x0122: "failure: SOP class not supported",
    0x0123: "failure: no such action type",
    0x0124: "failure: not authorized",
    0x0210: "failure: duplicate invocation",
    0x0211: "failure: unrecognized operation",
    0x0212: "failure: mistyped argument",
    0x0213: "failure: resource limitation",
    0xA700: "failure: out of resources",
    0xA701: "failure: out of resources, unable to calculate number of matches",
    0xA702: "failure: out of resources, unable to perform sub-operations",
    0xA801: "failure: move destination unknown",
    0xA900: "failure: identifier does not match SOP class",
    0xB000: "warning: sub-operations complete, one or more failures",
    0xB006: "warning: elements discarded",
    0xB007: "warning: data set does not match SOP class",
    0xC000: "failure: unable to process",
    0xFE00: "cancel",
    0xFF00: "pending",
    0xFF01: "pending: optional keys not supported",
}


def status_category(status: int) -> str:
    """success, pending, cancel, warning or failure (PS3.7 C.1-C.5)."""
    if status == Status.SUCCESS:
        return "success"
    if status in PENDING_STATUSES:
        return "pending"
    if status == Status.CANCEL:
        return "cancel"
    if status in (0x0001, 0x0107, 0x0116) or 0xB000 <= status <= 0xBFFF:
        return "warning"
    return "failure"


def status_label(status: int) -> str:
    if status in STATUS_LABEL:
        return STATUS_LABEL[status]
    category = status_category(status)
    if 0xA000 <= status <= 0xAFFF:
        return "failure: refused or out of resources"
    if 0xC000 <= status <= 0xCFFF:
        return "failure: unable to process"
    return f"{category}: unknown"


def label(table: dict[int, str], code: int | None) -> str | None:
    if code is None:
        return None
    return table.get(code, "unknown")
