"""What rules see: read-only views of associations and flows, and the run's context."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from analyzer.config import Config, TrustTest
from analyzer.dicom.items import Abort, Associate, Reject, UserIdentity
from analyzer.dicom.states import State
from analyzer.phi import Hasher
from analyzer.tcp.table import ip_text

if TYPE_CHECKING:
    from analyzer.dicom_sink import DicomSink
    from analyzer.findings.model import Finding
    from analyzer.tcp.flow import Flow


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
    keys: dict[str, str] = field(default_factory=dict)
    pending: int = 0
    final_status: int | None = None
    patients: set[str] = field(default_factory=set)
    move_destination: str | None = None
    completed: int = 0


class AssocView:
    """One association as rules see it. The engine fills the query bookkeeping."""

    __slots__ = ("_sink", "queries", "phi_counts", "patients", "store_bytes", "abort_direction")

    def __init__(self, sink: DicomSink) -> None:
        self._sink = sink
        self.queries: dict[tuple[int, int], QueryState] = {}
        self.phi_counts: dict[str, int] = {}
        self.patients: set[str] = set()
        self.store_bytes = 0
        self.abort_direction: int | None = None

    @property
    def flow(self) -> Flow:
        return self._sink.flow

    @property
    def uid(self) -> str:
        return self._sink.flow.uid

    @property
    def ts(self) -> float:
        return self._sink.flow.ts

    @property
    def orig_h(self) -> str:
        return ip_text(self._sink.flow.orig_h)

    @property
    def resp_h(self) -> str:
        return ip_text(self._sink.flow.resp_h)

    @property
    def orig_p(self) -> int:
        return self._sink.flow.orig_p

    @property
    def resp_p(self) -> int:
        return self._sink.flow.resp_p

    @property
    def request(self) -> Associate | None:
        return self._sink.parser.request

    @property
    def accept(self) -> Associate | None:
        return self._sink.parser.accept

    @property
    def reject(self) -> Reject | None:
        return self._sink.reject.reject if self._sink.reject else None

    @property
    def abort(self) -> Abort | None:
        return self._sink.abort.abort if self._sink.abort else None

    @property
    def state(self) -> State:
        return self._sink.parser.state

    @property
    def n_dimse(self) -> int:
        return self._sink.parser.n_dimse

    @property
    def pdata_pdus(self) -> int:
        return self._sink.parser.pdu_counts.get(4, 0)

    @property
    def midstream(self) -> bool:
        return self._sink.parser.midstream

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

    def contexts(self) -> list[Any]:
        return list(self._sink.parser.contexts.values())

    def wireshark_filter(self) -> str:
        return flow_filter(self.orig_h, self.orig_p, self.resp_h, self.resp_p)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsInfo:
    record_version: int | None = None
    client_max_version: int | None = None
    negotiated_version: int | None = None
    sni: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowView:
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

    def wireshark_filter(self) -> str:
        return flow_filter(self.orig_h, self.orig_p, self.resp_h, self.resp_p)


class RuleContext:
    """The run as rules see it: configuration, hashing, trust, and the way out."""

    def __init__(
        self, config: Config, hasher: Hasher, emit: Callable[[Finding, object | None], None]
    ) -> None:
        self.config = config
        self.hasher = hasher
        self._emit = emit
        self.trusted = TrustTest(config.trusted_networks)
        """``trusted(host)``: is ``host`` inside the configured trusted networks?"""

    def emit(self, finding: Finding, dedup: object | None = None) -> None:
        """Report ``finding``; with ``dedup``, once per key per rule's dedup window."""
        self._emit(finding, dedup)

    def release(self) -> None:
        self.trusted.clear()
