"""Authentication: user identity absent, weak, in clear, unconfirmed, rejected; DIMSE refusals."""

from __future__ import annotations

from analyzer.dicom.consts import COMMAND_FIELD, QUERY_RETRIEVE, USER_IDENTITY_TYPE, Status
from analyzer.dicom.messages import Message
from analyzer.findings.model import CrossFlowRule, FlowRule, Severity
from analyzer.findings.rules import dicomweb
from analyzer.findings.rules.common import assoc_finding
from analyzer.findings.summary import AssocSummary, DimseFact, FactKind
from analyzer.findings.windows import Windows
from analyzer.logs.http_flow import Exchange
from analyzer.logs.views import AssocView

QUERIES: dict[int, str] = {c: COMMAND_FIELD[c].removesuffix("-RQ") for c in QUERY_RETRIEVE}


class NoUserIdentity(FlowRule):
    id = "no_user_identity"
    title = "Association accepted without user identity"
    description = (
        "An accepted association whose A-ASSOCIATE-RQ carried no User Identity sub-item (0x58)."
    )
    severity = Severity.LOW
    options = {"dedup_window": 3600.0}

    def on_association_end(self, a: AssocView) -> None:
        if a.accept is not None and a.request is not None and a.identity is None:
            self.ctx.emit(
                assoc_finding(
                    self.id,
                    a,
                    self.severity,
                    self.title,
                    "the acceptor knew the caller only by its AE title",
                    {},
                ),
                dedup=(a.orig_h, a.resp_h, a.called_ae),
            )


class WeakUserIdentity(FlowRule):
    id = "weak_user_identity"
    title = "User identity is a username only"
    description = "User Identity type 1: a username with no proof."
    severity = Severity.MEDIUM
    options = {"dedup_window": 3600.0}

    def on_association_end(self, a: AssocView) -> None:
        ui = a.identity
        if ui is not None and ui.identity_type == 1:
            self.ctx.emit(
                assoc_finding(
                    self.id,
                    a,
                    self.severity,
                    self.title,
                    "type 1 (username)",
                    {"username_hash": self.ctx.hasher(ui.primary.decode("utf-8", "replace"))},
                ),
                dedup=(a.orig_h, a.resp_h, a.called_ae),
            )


class CleartextCredentials(FlowRule):
    id = "cleartext_credentials"
    title = "Username and passcode sent in clear"
    description = "User Identity type 2 on a cleartext association. The passcode is never stored, only its length."
    severity = Severity.HIGH
    options = {"dedup_window": 300.0}
    """Over HTTP: repeats from one client to one server fold into one row."""

    def on_http(self, ex: Exchange) -> None:
        dicomweb.basic_credentials(self, ex)

    def on_association_end(self, a: AssocView) -> None:
        ui = a.identity
        if ui is None or ui.identity_type != 2:
            return
        user = ui.primary.decode("utf-8", "replace")
        evidence: dict[str, object] = {
            "username_hash": self.ctx.hasher(user),
            "passcode_present": ui.secondary_length > 0,
            "passcode_length": ui.secondary_length,
        }
        self.ctx.emit(
            assoc_finding(
                self.id,
                a,
                self.severity,
                self.title,
                f"passcode of {ui.secondary_length} bytes readable by anyone on the path",
                evidence,
                dicom_filter="dicom.userinfo.user_identify.type == 2",
            )
        )


class CleartextToken(FlowRule):
    id = "cleartext_token"
    title = "Authentication token sent in clear"
    description = "User Identity type 3 (Kerberos), 4 (SAML) or 5 (JWT) on a cleartext association: replayable."
    severity = Severity.HIGH
    options = {"dedup_window": 300.0}
    """Over HTTP: repeats from one client to one server fold into one row."""

    def on_http(self, ex: Exchange) -> None:
        dicomweb.token(self, ex)

    def on_association_end(self, a: AssocView) -> None:
        ui = a.identity
        if ui is None or ui.identity_type not in (3, 4, 5):
            return
        kind = USER_IDENTITY_TYPE[ui.identity_type]
        self.ctx.emit(
            assoc_finding(
                self.id,
                a,
                self.severity,
                self.title,
                f"{kind} token of {len(ui.primary)} bytes",
                {
                    "token_type": kind,
                    "token_length": len(ui.primary),
                    "token_hash": self.ctx.hasher(ui.primary.decode("latin-1")),
                },
            )
        )


class IdentityNotConfirmed(FlowRule):
    id = "identity_not_confirmed"
    title = "User identity response requested but not given"
    description = (
        "The RQ asked for a positive response (0x58) and the A-ASSOCIATE-AC carries no 0x59."
    )
    severity = Severity.MEDIUM

    def on_association_end(self, a: AssocView) -> None:
        ui = a.identity
        if (
            ui is not None
            and ui.response_requested
            and a.accept is not None
            and a.accept.server_response_length is None
        ):
            self.ctx.emit(
                assoc_finding(
                    self.id,
                    a,
                    self.severity,
                    self.title,
                    f"type {ui.identity_type} identity accepted without confirmation",
                    {"identity_type": ui.identity_type},
                )
            )


class IdentityRejected(CrossFlowRule):
    id = "identity_rejected"
    title = "Association with user identity rejected"
    description = "An A-ASSOCIATE-RJ after an RQ that carried 0x58; repeated from one source it is credential guessing."
    severity = Severity.MEDIUM
    options = {"window": 300.0, "min_attempts": 3, "dedup_window": 300.0}

    def setup(self) -> None:
        self.seen: Windows[tuple[str, str], str] = self.windows(self.opt["window"])

    def on_fact(self, f: DimseFact) -> None:
        """HTTP 401/403 answers (DICOMweb): the same rule, the same escalation."""
        if f.kind != FactKind.HTTP_REJECTED:
            return
        q = self.seen.add((f.orig_h, f.resp_h), f.message_ts, f.uid)
        guessing = len(q) >= self.opt["min_attempts"]
        self.ctx.emit(
            assoc_finding(
                self.id,
                f,
                Severity.HIGH if guessing else self.severity,
                "Credential guessing" if guessing else "HTTP request refused (401/403)",
                f"HTTP {f.status} to {f.ae or 'no'} credentials"
                + (f"; {len(q)} refusals in {self.opt['window']:.0f} s" if guessing else ""),
                {"status": f.status, "auth_scheme": f.ae, "rejects_in_window": len(q)},
                ts=f.message_ts,
            ),
            dedup=(f.orig_h, f.resp_h, guessing),
        )

    def on_association(self, a: AssocSummary) -> None:
        if a.reject_source is None or a.identity_type is None:
            return
        q = self.seen.add((a.orig_h, a.resp_h), a.ts, a.uid)
        guessing = len(q) >= self.opt["min_attempts"]
        sev = Severity.HIGH if guessing else self.severity
        detail = f"reject {a.reject_result}/{a.reject_source}/{a.reject_reason}" + (
            f"; {len(q)} in {self.opt['window']:.0f} s" if guessing else ""
        )
        self.ctx.emit(
            assoc_finding(
                self.id,
                a,
                sev,
                "Credential guessing" if guessing else self.title,
                detail,
                {
                    "identity_type": a.identity_type,
                    "rejects_in_window": len(q),
                    "reject": [a.reject_result, a.reject_source, a.reject_reason],
                },
            )
        )


class NotAuthorized(FlowRule):
    id = "not_authorized"
    title = "DIMSE request refused as not authorized"
    description = "A DIMSE response with status 0x0124 (not authorized)."
    severity = Severity.MEDIUM
    options = {"dedup_window": 300.0}

    def on_message(self, a: AssocView, m: Message) -> None:
        if m.command.status == Status.NOT_AUTHORIZED:
            self.ctx.emit(
                assoc_finding(
                    self.id,
                    a,
                    self.severity,
                    self.title,
                    f"response to message {m.command.message_id_responded}",
                    {"command_field": m.command.command_field},
                    ts=m.ts,
                ),
                dedup=(a.uid,),
            )


class UnauthenticatedQuery(FlowRule):
    id = "unauthenticated_query"
    title = "Query or retrieve answered without authentication"
    description = (
        "C-FIND, C-MOVE or C-GET on an association with no user identity (or a username only) that got "
        "pending or success responses: data was handed to anyone who asked."
    )
    severity = Severity.HIGH
    options = {"dedup_window": 300.0}
    """Over HTTP: repeats from one client to one server fold into one row."""

    def on_http(self, ex: Exchange) -> None:
        dicomweb.answered_without_auth(self, ex)

    def on_association_end(self, a: AssocView) -> None:
        if a.identity is not None and a.identity.identity_type != 1:
            return
        answered = [
            q
            for q in a.queries.values()
            if q.command in QUERIES and (q.pending or q.final_status == 0)
        ]
        if not answered:
            return
        kinds = sorted({QUERIES[q.command] for q in answered})
        matches = sum(q.pending for q in answered)
        self.ctx.emit(
            assoc_finding(
                self.id,
                a,
                self.severity,
                self.title,
                f"{len(answered)} {'/'.join(kinds)} request(s) answered, {matches} pending responses",
                {
                    "requests": len(answered),
                    "kinds": kinds,
                    "pending_responses": matches,
                    "identity_type": a.identity.identity_type if a.identity else None,
                },
            )
        )
