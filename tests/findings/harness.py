"""A harness that runs one rule on hand-built events or summary records: no capture, no
pipeline. Per-flow rules get a ``FakeAssoc`` (the surface of ``AssocView``) and hand-built
messages; cross-flow rules get summary records built by ``assoc_summary``/``fact``/``flow``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword

from analyzer.config import Config
from analyzer.dicom.dataset import DatasetSummary, Element
from analyzer.dicom.dimse import Command
from analyzer.dicom.items import Abort, Associate, PresentationContext, Reject, UserIdentity
from analyzer.dicom.messages import Anomaly, Message
from analyzer.dicom.states import State
from analyzer.findings.context import RuleContext
from analyzer.findings.model import CrossFlowRule, Finding, Rule
from analyzer.findings.summary import AssocSummary, DimseFact, FlowSummary
from analyzer.logs.views import FlowView, QueryState, flow_filter
from analyzer.privacy import Hasher
from analyzer.state.baseline import Baseline

CLIENT, SERVER, OUTSIDE = "10.0.0.5", "10.0.0.9", "203.0.113.7"
FIND_STUDY_ROOT = "1.2.840.10008.5.1.4.1.2.2.1"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


class RuleHarness:
    """One rule with its options (defaults merged with ``options``) and every finding it
    emits, with its de-duplication key (repeats are not folded here: the sink does that)."""

    def __init__(
        self,
        cls: type[Rule],
        config: Config | None = None,
        baseline: Baseline | None = None,
        **options: Any,
    ) -> None:
        """``baseline``: what earlier runs learned (a state directory's); as in the cross-flow
        stage, it learns from each summary record after the rule has seen it."""
        self.config = config or Config(salt=b"harness-salt")
        self.emitted: list[tuple[Finding, object | None]] = []
        ctx = RuleContext(self.config, Hasher(self.config.salt), self._emit, baseline)
        self.baseline = ctx.baseline
        self.rule: Any = cls(ctx, {**cls.options, **options})
        if isinstance(self.rule, CrossFlowRule):
            for hook, learn in (
                ("on_association", self.baseline.association),
                ("on_fact", self.baseline.fact),
            ):
                seen = getattr(self.rule, hook)

                def then_learn(r: Any, seen: Any = seen, learn: Any = learn) -> None:
                    seen(r)
                    learn(r)

                setattr(self.rule, hook, then_learn)

    def _emit(self, f: Finding, dedup: object | None) -> None:
        self.emitted.append((f, dedup))

    @property
    def findings(self) -> list[Finding]:
        return [f for f, _ in self.emitted]

    @property
    def severities(self) -> list[str]:
        return [f.severity.label for f in self.findings]


def associate(
    calling: str = "MODALITY",
    called: str = "PACS",
    *,
    contexts: tuple[PresentationContext, ...] = (),
    identity: UserIdentity | None = None,
    implementation_class_uid: str | None = "1.2.3.4",
    version: str | None = "LAB_1",
    server_response_length: int | None = None,
    application_context: str | None = "1.2.840.10008.3.1.1.1",
    calling_raw: bytes | None = None,
    called_raw: bytes | None = None,
) -> Associate:
    return Associate(
        pdu_type=1,
        protocol_version=1,
        called_ae=called,
        calling_ae=calling,
        called_ae_raw=called_raw if called_raw is not None else called.encode().ljust(16),
        calling_ae_raw=calling_raw if calling_raw is not None else calling.encode().ljust(16),
        application_context=application_context,
        contexts=contexts,
        max_pdu_length=16384,
        implementation_class_uid=implementation_class_uid,
        implementation_version_name=version,
        async_window=None,
        roles=(),
        extended=(),
        common_extended=(),
        user_identity=identity,
        server_response_length=server_response_length,
        anomalies=(),
    )


def identity(kind: int, *, response: bool = False, secondary: int = 0) -> UserIdentity:
    return UserIdentity(
        identity_type=kind, response_requested=response, primary=b"jdoe", secondary_length=secondary
    )


@dataclass
class FakeAssoc:
    """What a per-flow rule reads of an association, set by hand."""

    request: Associate | None = field(default_factory=associate)
    accept: Associate | None = field(default_factory=associate)
    reject: Reject | None = None
    abort: Abort | None = None
    state: State = State.RELEASED
    n_dimse: int = 0
    pdata_pdus: int = 0
    midstream: bool = False
    queries: dict[Any, QueryState] = field(default_factory=dict)
    phi_counts: dict[str, int] = field(default_factory=dict)
    n_patients: int = 0
    store_bytes: int = 0
    uid: str = "Ctest0000000000000"
    ts: float = 100.0
    orig_h: str = CLIENT
    orig_p: int = 50000
    resp_h: str = SERVER
    resp_p: int = 104
    abort_direction: Any = None
    close_reason: str | None = None

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
        return []

    def wireshark_filter(self) -> str:
        return flow_filter(self.orig_h, self.orig_p, self.resp_h, self.resp_p)


def dataset(**values: str) -> DatasetSummary:
    """A dataset of top-level elements by keyword (VR from pydicom's dictionary)."""
    elements = []
    for keyword, value in values.items():
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        elements.append(
            Element(
                tag=tag,
                keyword=keyword,
                vr=dictionary_VR(tag),
                value=value,
                length=len(value),
                depth=0,
            )
        )
    return DatasetSummary(
        transfer_syntax_uid="1.2.840.10008.1.2",
        sop_class_uid=None,
        sop_instance_uid=None,
        elements=tuple(elements),
        partial=False,
        anomalies=(),
    )


def message(
    command_field: int,
    *,
    ts: float = 101.0,
    direction: int = 0,
    ds: DatasetSummary | None = None,
    dataset_bytes: int = 0,
    **command: Any,
) -> Message:
    return Message(
        ts=ts,
        direction=direction,
        context_id=1,
        command=Command(command_field=command_field, **command),
        dataset=ds,
        dataset_bytes=dataset_bytes,
        truncated=False,
    )


def anomaly(name: str, ts: float = 101.0) -> Anomaly:
    return Anomaly(ts=ts, direction=0, name=name, detail="hand-built")


def flow_view(**kw: Any) -> FlowView:
    base: dict[str, Any] = dict(
        uid="Cflow000000000000",
        ts=100.0,
        last_ts=101.0,
        orig_h=CLIENT,
        orig_p=50000,
        resp_h=SERVER,
        resp_p=104,
        service=None,
        conn_state="SF",
        history="ShADadFf",
        orig_bytes=0,
        resp_bytes=0,
        had_association=False,
        tls=None,
    )
    base.update(kw)
    return FlowView(**base)


_n = [0]


def _uid() -> str:
    _n[0] += 1
    return f"C{_n[0]:017d}"


def assoc_summary(**kw: Any) -> AssocSummary:
    """An accepted, released association from CLIENT to SERVER:104 unless told otherwise."""
    base: dict[str, Any] = dict(
        emit_ts=kw.get("ts", 100.0),
        uid=_uid(),
        seq=0,
        ts=100.0,
        orig_h=CLIENT,
        orig_p=50000,
        resp_h=SERVER,
        resp_p=104,
        calling_ae="MODALITY",
        called_ae="PACS",
        has_request=True,
        accepted=True,
        reject_result=None,
        reject_source=None,
        reject_reason=None,
        abort_source=None,
        identity_type=None,
        released=True,
        request_version="LAB_1",
        accept_version="PACS_1",
        accept_class_uid="1.2.3.4",
    )
    base.update(kw)
    return AssocSummary(**base)


def rejected(reason: int, *, source: int = 1, **kw: Any) -> AssocSummary:
    return assoc_summary(
        accepted=False,
        released=False,
        reject_result=1,
        reject_source=source,
        reject_reason=reason,
        **kw,
    )


def fact(kind: str, **kw: Any) -> DimseFact:
    base: dict[str, Any] = dict(
        emit_ts=kw.get("message_ts", 101.0),
        uid=_uid(),
        seq=0,
        ts=100.0,
        orig_h=CLIENT,
        orig_p=50000,
        resp_h=SERVER,
        resp_p=104,
        calling_ae="WORKSTATION",
        called_ae="PACS",
        message_ts=101.0,
        kind=kind,
        command_field=None,
        message_id=1,
        status=None,
        amount=None,
        ae=None,
        ae_message_id=None,
        attribute=None,
        value_key=None,
        from_acceptor=False,
    )
    base.update(kw)
    return DimseFact(**base)


def flow_summary(**kw: Any) -> FlowSummary:
    base: dict[str, Any] = dict(
        emit_ts=kw.get("last_ts", 101.0),
        uid=_uid(),
        seq=0,
        ts=100.0,
        last_ts=101.0,
        orig_h=CLIENT,
        orig_p=50000,
        resp_h=SERVER,
        resp_p=104,
        service=None,
        conn_state="S0",
        had_association=False,
    )
    base.update(kw)
    return FlowSummary(**base)
