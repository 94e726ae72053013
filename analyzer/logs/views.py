"""Read-only views of one association and one finished flow, as observers and rules see them.

An ``AssocView`` is built from the flow, the association parser and the association's
``AssocOutcome`` (what the DICOM flow driver accumulated from the parser's events); it owns
nothing and exposes properties only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from analyzer.dicom.association import AssociationParser, ContextState
from analyzer.dicom.consts import PduType
from analyzer.dicom.items import Abort, Associate, Reject, UserIdentity
from analyzer.dicom.states import State
from analyzer.protocols.tls import TlsInfo
from analyzer.tcp.events import Direction
from analyzer.tcp.flow import Flow
from analyzer.tcp.table import ip_text


def flow_filter(a: str, pa: int, b: str, pb: int) -> str:
    """A Wireshark display filter for one TCP connection."""
    ip = "ipv6.addr" if ":" in a else "ip.addr"
    return f"{ip}=={a} && {ip}=={b} && tcp.port=={pa} && tcp.port=={pb}"


@dataclass(slots=True)
class QueryState:
    """One C-FIND/C-MOVE/C-GET request and what came back."""

    command: int
    message_id: int
    sop_class_uid: str | None
    ts: float
    pending: int = 0
    final_status: int | None = None
    patients: set[str] = field(default_factory=set)
    move_destination: str | None = None
    completed: int = 0


@dataclass(slots=True)
class AssocOutcome:
    """What one association's events added up to (kept by the DICOM flow driver)."""

    reject: Reject | None = None
    abort: Abort | None = None
    abort_direction: Direction | None = None
    queries: dict[tuple[Direction, int], QueryState] = field(default_factory=dict)
    phi_counts: dict[str, int] = field(default_factory=dict)
    patients: set[str] = field(default_factory=set)
    store_bytes: int = 0
    close_reason: str | None = None
    """How the flow ended (fin, rst, timeout, evicted, end_of_capture), once it has."""


class AssocView:
    """One association: the flow's endpoints, the parser's negotiation, the outcome so far."""

    __slots__ = ("_flow", "_parser", "_outcome")

    def __init__(self, flow: Flow, parser: AssociationParser, outcome: AssocOutcome) -> None:
        self._flow = flow
        self._parser = parser
        self._outcome = outcome

    @property
    def uid(self) -> str:
        return self._flow.uid

    @property
    def ts(self) -> float:
        return self._flow.ts

    @property
    def orig_h(self) -> str:
        return ip_text(self._flow.orig_h)

    @property
    def resp_h(self) -> str:
        return ip_text(self._flow.resp_h)

    @property
    def orig_p(self) -> int:
        return self._flow.orig_p

    @property
    def resp_p(self) -> int:
        return self._flow.resp_p

    @property
    def flow_midstream(self) -> bool:
        return self._flow.midstream

    @property
    def request(self) -> Associate | None:
        return self._parser.request

    @property
    def accept(self) -> Associate | None:
        return self._parser.accept

    @property
    def reject(self) -> Reject | None:
        return self._outcome.reject

    @property
    def abort(self) -> Abort | None:
        return self._outcome.abort

    @property
    def abort_direction(self) -> Direction | None:
        return self._outcome.abort_direction

    @property
    def state(self) -> State:
        return self._parser.state

    @property
    def n_dimse(self) -> int:
        return self._parser.n_dimse

    @property
    def pdata_pdus(self) -> int:
        return self._parser.pdu_counts.get(PduType.P_DATA_TF, 0)

    @property
    def pdu_counts(self) -> Mapping[int, int]:
        """PDUs seen by type."""
        return self._parser.pdu_counts

    @property
    def close_reason(self) -> str | None:
        """How the TCP flow ended (``CloseReason``); None while it is open."""
        return self._outcome.close_reason

    @property
    def midstream(self) -> bool:
        return self._parser.midstream

    @property
    def calling_ae(self) -> str | None:
        a = self.request or self.accept
        return a.calling_ae if a else None

    @property
    def called_ae(self) -> str | None:
        a = self.request or self.accept
        return a.called_ae if a else None

    @property
    def identity(self) -> UserIdentity | None:
        return self.request.user_identity if self.request else None

    @property
    def queries(self) -> Mapping[tuple[Direction, int], QueryState]:
        return self._outcome.queries

    @property
    def phi_counts(self) -> Mapping[str, int]:
        return self._outcome.phi_counts

    @property
    def n_patients(self) -> int:
        """Distinct patients (keyed hashes) whose PHI crossed in this association."""
        return len(self._outcome.patients)

    @property
    def store_bytes(self) -> int:
        return self._outcome.store_bytes

    def contexts(self) -> list[ContextState]:
        return list(self._parser.contexts.values())

    def wireshark_filter(self) -> str:
        return flow_filter(self.orig_h, self.orig_p, self.resp_h, self.resp_p)


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowView:
    """A finished TCP flow (DICOM or not)."""

    uid: str
    ts: float
    last_ts: float
    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int
    service: str | None
    conn_state: str
    history: str
    orig_bytes: int
    resp_bytes: int
    had_association: bool
    tls: TlsInfo | None
    protocol_guess: str | None = None

    def wireshark_filter(self) -> str:
        return flow_filter(self.orig_h, self.orig_p, self.resp_h, self.resp_p)
