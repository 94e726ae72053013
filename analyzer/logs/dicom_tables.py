"""The DICOM logs: ``dimse``, ``dicom_object``, ``dicom_context`` and ``dicom_assoc`` records,
each built here and nowhere else."""

from __future__ import annotations

from analyzer.dicom.consts import (
    ABORT_REASON,
    ABORT_SOURCE,
    CONTEXT_RESULT,
    IDENTIFIER_COMMANDS,
    REJECT_REASON,
    REJECT_RESULT,
    REJECT_SOURCE,
    label,
    status_category,
    status_label,
)
from analyzer.dicom.messages import Message
from analyzer.dicom.states import State
from analyzer.logs.observer import DicomObserver, MessageInfo
from analyzer.logs.records import DicomAssoc, DicomContext, DicomObject, Dimse
from analyzer.logs.sinks import RowSink
from analyzer.logs.views import AssocView
from analyzer.tcp.events import CloseReason, Direction

OPEN_AT_END = frozenset({CloseReason.IDLE, CloseReason.EVICTED, CloseReason.END_OF_CAPTURE})


class DicomTables(DicomObserver):
    __slots__ = ("dimse", "objects", "contexts", "assocs")

    def __init__(
        self,
        dimse: RowSink[Dimse],
        objects: RowSink[DicomObject],
        contexts: RowSink[DicomContext],
        assocs: RowSink[DicomAssoc],
    ) -> None:
        self.dimse = dimse
        self.objects = objects
        self.contexts = contexts
        self.assocs = assocs

    def message(self, a: AssocView, m: Message, info: MessageInfo) -> None:
        c = m.command
        cf = c.command_field
        status = c.status
        direction = Direction(m.direction).label
        request_ts = info.request_ts
        self.dimse.add(
            Dimse(
                uid=a.uid,
                ts=m.ts,
                direction=direction,
                context_id=m.context_id,
                command=info.command,
                command_field=cf,
                message_id=c.message_id,
                message_id_responded=c.message_id_responded,
                affected_sop_class_uid=c.affected_sop_class_uid,
                affected_sop_instance_uid=c.affected_sop_instance_uid,
                requested_sop_class_uid=c.requested_sop_class_uid,
                requested_sop_instance_uid=c.requested_sop_instance_uid,
                priority=c.priority,
                move_destination=c.move_destination,
                move_originator_ae=c.move_originator_ae,
                move_originator_message_id=c.move_originator_message_id,
                status=status,
                status_label=status_label(status) if status is not None else None,
                status_category=status_category(status) if status is not None else None,
                error_comment=c.error_comment,
                dataset_bytes=m.dataset_bytes,
                n_remaining=c.n_remaining,
                n_completed=c.n_completed,
                n_failed=c.n_failed,
                n_warning=c.n_warning,
                truncated=m.truncated,
                request_ts=request_ts,
                rtt=(m.ts - request_ts) if request_ts is not None else None,
            )
        )
        ds, phi = m.dataset, info.phi
        if ds is None or phi is None:
            return
        self.objects.add(
            DicomObject(
                uid=a.uid,
                ts=m.ts,
                message_id=c.message_id if c.message_id is not None else c.message_id_responded,
                direction=direction,
                command=info.command,
                role="identifier" if cf in IDENTIFIER_COMMANDS else "dataset",
                sop_class_uid=ds.sop_class_uid or c.sop_class_uid,
                sop_instance_uid=ds.sop_instance_uid or c.sop_instance_uid,
                transfer_syntax_uid=ds.transfer_syntax_uid,
                dataset_bytes=m.dataset_bytes,
                n_elements=len(ds.elements),
                truncated=m.truncated or ds.partial,
                phi_keywords=phi.keywords,
                patient_key=phi.patient_key,
            )
        )

    def accepted(self, a: AssocView) -> None:
        self._context_rows(a)

    def _context_rows(self, a: AssocView) -> None:
        rq, ac = a.request, a.accept
        rq_roles = {r.sop_class_uid: r for r in rq.roles} if rq else {}
        ac_roles = {r.sop_class_uid: r for r in ac.roles} if ac else {}
        rq_ext = {e.sop_class_uid: e.info.hex() for e in rq.extended} if rq else {}
        ac_ext = {e.sop_class_uid: e.info.hex() for e in ac.extended} if ac else {}
        common = {c.sop_class_uid: c for c in rq.common_extended} if rq else {}
        for cs in a.contexts():
            abstract = cs.abstract_syntax or ""
            pr, acr, ce = rq_roles.get(abstract), ac_roles.get(abstract), common.get(abstract)
            self.contexts.add(
                DicomContext(
                    uid=a.uid,
                    context_id=cs.context_id,
                    abstract_syntax_uid=cs.abstract_syntax,
                    proposed_transfer_syntaxes=list(cs.proposed),
                    result=label(CONTEXT_RESULT, cs.result),
                    result_code=cs.result,
                    transfer_syntax_uid=cs.transfer_syntax,
                    scu_role_proposed=pr.scu_role if pr else None,
                    scp_role_proposed=pr.scp_role if pr else None,
                    scu_role_accepted=acr.scu_role if acr else None,
                    scp_role_accepted=acr.scp_role if acr else None,
                    extended_negotiation_proposed=rq_ext.get(abstract),
                    extended_negotiation_accepted=ac_ext.get(abstract),
                    service_class_uid=ce.service_class_uid if ce else None,
                    related_general_sop_classes=list(ce.related_general_sop_classes) if ce else [],
                )
            )

    def ended(self, a: AssocView, reason: str) -> None:
        rq, ac, rj, ab = a.request, a.accept, a.reject, a.abort
        if rq is None and ac is None and rj is None and ab is None and not a.n_dimse:
            return  # recognised as DICOM but nothing decodable crossed the wire
        if ac is None and rq is not None:
            self._context_rows(a)  # proposed contexts of a rejected or unanswered association
        state = a.state
        end_state = {State.RELEASED: "released", State.ABORTED: "aborted"}.get(state)
        if end_state is None:
            timed_out = reason in OPEN_AT_END and state != State.REJECTED
            end_state = "timeout" if timed_out else "closed"
        if ac is not None:
            result = "accepted"
        elif rj is not None:
            result = "rejected"
        elif ab is not None:
            result = "aborted"
        else:
            result = "unknown"
        ui = rq.user_identity if rq else None
        self.assocs.add(
            DicomAssoc(
                uid=a.uid,
                ts=a.ts,
                orig_h=a.orig_h,
                orig_p=a.orig_p,
                resp_h=a.resp_h,
                resp_p=a.resp_p,
                calling_ae=a.calling_ae,
                called_ae=a.called_ae,
                result=result,
                reject_result=label(REJECT_RESULT, rj.result) if rj else None,
                reject_source=label(REJECT_SOURCE, rj.source) if rj else None,
                reject_reason=REJECT_REASON.get((rj.source, rj.reason), "unknown") if rj else None,
                abort_source=label(ABORT_SOURCE, ab.source) if ab else None,
                abort_reason=label(ABORT_REASON, ab.reason) if ab else None,
                user_identity_type=ui.identity_type if ui else None,
                user_identity_response_requested=ui.response_requested if ui else None,
                user_identity_server_response=(
                    (ac.server_response_length is not None) if (ac and ui) else None
                ),
                passcode_present=(ui.identity_type == 2 and ui.secondary_length > 0)
                if ui
                else False,
                application_context=rq.application_context if rq else None,
                implementation_class_uid=rq.implementation_class_uid if rq else None,
                implementation_version_name=rq.implementation_version_name if rq else None,
                resp_implementation_class_uid=ac.implementation_class_uid if ac else None,
                resp_implementation_version_name=ac.implementation_version_name if ac else None,
                max_pdu_orig=rq.max_pdu_length if rq else None,
                max_pdu_resp=ac.max_pdu_length if ac else None,
                n_contexts_proposed=len(rq.contexts) if rq else None,
                n_contexts_accepted=(
                    sum(1 for c in ac.contexts if c.result == 0) if ac else (0 if rj else None)
                ),
                end_state=end_state,
                midstream=a.midstream or a.flow_midstream,
                n_dimse=a.n_dimse,
                async_invoked_orig=rq.async_window[0] if rq and rq.async_window else None,
                async_performed_orig=rq.async_window[1] if rq and rq.async_window else None,
                async_invoked_resp=ac.async_window[0] if ac and ac.async_window else None,
                async_performed_resp=ac.async_window[1] if ac and ac.async_window else None,
            )
        )
