"""The observer's association state machine: every rule in one table.

Key: (state, PDU type, direction 0=requester 1=acceptor) -> next state. A PDU missing
from the table is unexpected: an anomaly, and the state stays. A-ABORT from either
side always ends the association.
"""

from __future__ import annotations

from enum import IntEnum

from analyzer.dicom.consts import PduType as P


class State(IntEnum):
    IDLE = 0
    AWAITING_AC = 1
    ESTABLISHED = 2
    RELEASE_REQUESTED = 3
    RELEASED = 4
    REJECTED = 5
    ABORTED = 6


REQ, ACC = 0, 1  # direction: requester (TCP originator), acceptor
TRANSITIONS: dict[tuple[State, int, int], State] = {
    (State.IDLE, P.A_ASSOCIATE_RQ, REQ): State.AWAITING_AC,
    (State.AWAITING_AC, P.A_ASSOCIATE_AC, ACC): State.ESTABLISHED,
    (State.AWAITING_AC, P.A_ASSOCIATE_RJ, ACC): State.REJECTED,
    # the answer decoded before its request (the RQ lost, or its length claiming more bytes
    # than it has, so that it completes only later): the answer says what the acceptor did
    (State.IDLE, P.A_ASSOCIATE_AC, ACC): State.ESTABLISHED,
    (State.IDLE, P.A_ASSOCIATE_RJ, ACC): State.REJECTED,
    (State.ESTABLISHED, P.P_DATA_TF, REQ): State.ESTABLISHED,
    (State.ESTABLISHED, P.P_DATA_TF, ACC): State.ESTABLISHED,
    (State.ESTABLISHED, P.A_RELEASE_RQ, REQ): State.RELEASE_REQUESTED,
    (State.ESTABLISHED, P.A_RELEASE_RQ, ACC): State.RELEASE_REQUESTED,
    # the peer may still be sending data, or request release too (collision)
    (State.RELEASE_REQUESTED, P.P_DATA_TF, REQ): State.RELEASE_REQUESTED,
    (State.RELEASE_REQUESTED, P.P_DATA_TF, ACC): State.RELEASE_REQUESTED,
    (State.RELEASE_REQUESTED, P.A_RELEASE_RQ, REQ): State.RELEASE_REQUESTED,
    (State.RELEASE_REQUESTED, P.A_RELEASE_RQ, ACC): State.RELEASE_REQUESTED,
    (State.RELEASE_REQUESTED, P.A_RELEASE_RP, REQ): State.RELEASED,
    (State.RELEASE_REQUESTED, P.A_RELEASE_RP, ACC): State.RELEASED,
    # after a release collision, the second reply is still in order
    (State.RELEASED, P.A_RELEASE_RP, REQ): State.RELEASED,
    (State.RELEASED, P.A_RELEASE_RP, ACC): State.RELEASED,
}
ENDED = frozenset({State.RELEASED, State.REJECTED, State.ABORTED})


def next_state(state: State, pdu_type: int, direction: int) -> State | None:
    """The state after this PDU, or None when the PDU is unexpected here."""
    if pdu_type == P.A_ABORT:
        return State.ABORTED
    return TRANSITIONS.get((state, pdu_type, direction))
