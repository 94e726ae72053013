"""Query and retrieve: wildcard harvesting, prefix enumeration, big answers, third-party moves."""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.dicom.consts import CommandField, Status, is_pending
from analyzer.dicom.messages import Message
from analyzer.findings.model import CrossFlowRule, FlowRule, Severity
from analyzer.findings.rules import dicomweb
from analyzer.findings.rules.common import assoc_finding
from analyzer.findings.summary import DimseFact, FactKind
from analyzer.findings.windows import SummingWindows, Windows
from analyzer.logs.http_flow import Exchange
from analyzer.logs.views import AssocView, FlowView
from analyzer.privacy import DIRECT_KEYWORDS

FIND_MODELS = {
    "1.2.840.10008.5.1.4.1.2.1.1": "patient-root",
    "1.2.840.10008.5.1.4.1.2.2.1": "study-root",
    "1.2.840.10008.5.1.4.31": "worklist",
}
NOT_NARROWING = {"QueryRetrieveLevel", "SpecificCharacterSet", "PatientName", "PatientID"}


def _is_wild(value: str | None) -> bool:
    return value is None or value.strip() in ("", "*")


def _narrows(value: str | None) -> bool:
    return value is not None and value.strip("*?% ") != ""


class WildcardQuery(FlowRule):
    id = "wildcard_query"
    title = "Wildcard patient query"
    description = (
        "C-FIND (patient root, study root, worklist) whose PatientName or PatientID is * or empty and "
        "no other key narrows the match. Higher at PATIENT or STUDY level."
    )
    severity = Severity.MEDIUM
    options = {"dedup_window": 300.0}

    def on_http(self, ex: Exchange) -> None:
        dicomweb.wildcard(self, ex)

    def on_message(self, a: AssocView, m: Message) -> None:
        c, ds = m.command, m.dataset
        if c.command_field != CommandField.C_FIND_RQ or ds is None:
            return
        model = FIND_MODELS.get(c.affected_sop_class_uid or "")
        if model is None:
            return
        top = {e.keyword: e.value for e in ds.elements if e.depth == 0}
        if "PatientName" not in top and "PatientID" not in top:
            return
        if not (_is_wild(top.get("PatientName")) and _is_wild(top.get("PatientID"))):
            return
        narrowing = [
            e.keyword
            for e in ds.elements
            if (e.depth > 0 or e.keyword not in NOT_NARROWING)
            and e.vr != "SQ"
            and _narrows(e.value)
        ]
        if narrowing:
            return
        level = (
            top.get("QueryRetrieveLevel") or ("WORKLIST" if model == "worklist" else "")
        ).strip()
        sev = Severity.HIGH if level in ("PATIENT", "STUDY") else self.severity
        self.ctx.emit(
            assoc_finding(
                self.id,
                a,
                sev,
                self.title,
                f"{model} C-FIND at level {level or '-'} matches everyone",
                {"model": model, "level": level, "keys": sorted(k for k in top if k)},
                ts=m.ts,
                dicom_filter='dicom.tag.value.str contains "*"',
            ),
            dedup=(a.orig_h, a.resp_h, model, level),
        )


class PrefixEnumeration(CrossFlowRule):
    id = "prefix_enumeration"
    title = "Patient list enumerated by prefixes"
    description = "A run of C-FINDs from one source with short prefixes (A*, B*, ...) in PatientName or PatientID."
    severity = Severity.HIGH
    options = {"window": 600.0, "min_prefixes": 4, "dedup_window": 3600.0}

    def setup(self) -> None:
        self.prefixes: Windows[str, tuple[str | None, str | None]] = self.windows(
            self.opt["window"]
        )

    def on_fact(self, f: DimseFact) -> None:
        if f.kind != FactKind.FIND_PREFIX:
            return
        q = self.prefixes.add(f.orig_h, f.message_ts, (f.attribute, f.value_key))
        distinct = {p for _, p in q}
        if len(distinct) >= self.opt["min_prefixes"]:
            self.ctx.emit(
                assoc_finding(
                    self.id,
                    f,
                    self.severity,
                    self.title,
                    f"{len(distinct)} prefix queries from {f.orig_h}",
                    {"prefix_queries": len(distinct), "attribute": f.attribute},
                    ts=f.message_ts,
                ),
                dedup=f.orig_h,
            )


class LargeResultSet(FlowRule):
    id = "large_result_set"
    title = "Large query result"
    description = "More than M pending responses to one C-FIND; the number of distinct patients is reported (hashed)."
    severity = Severity.MEDIUM
    options = {"max_results": 10}

    def setup(self) -> None:
        self.paged: dict[str, int] = {}
        """QIDO results per HTTP flow that pages (``limit``/``offset``), until it ends."""

    def on_http(self, ex: Exchange) -> None:
        dicomweb.large_answer(self, ex, self.paged)

    def on_flow_end(self, flow: FlowView) -> None:
        self.paged.pop(flow.uid, None)

    def on_association_end(self, a: AssocView) -> None:
        for q in a.queries.values():
            if q.command == CommandField.C_FIND_RQ and q.pending > self.opt["max_results"]:
                self.ctx.emit(
                    assoc_finding(
                        self.id,
                        a,
                        self.severity,
                        self.title,
                        f"{q.pending} matches, {len(q.patients)} distinct patients",
                        {
                            "matches": q.pending,
                            "distinct_patients": len(q.patients),
                            "message_id": q.message_id,
                        },
                        ts=q.ts,
                    )
                )


class ThirdPartyMove(CrossFlowRule):
    id = "third_party_move"
    title = "C-MOVE to a third party"
    description = (
        "C-MOVE whose Move Destination differs from the requester's calling AE; correlated with the "
        "sub-association that carries Move Originator AE/Message ID; higher when the destination host "
        "is outside the trusted networks, not where that AE title is known to live, or (with a "
        "state directory) new to the baseline."
    )
    severity = Severity.MEDIUM
    options = {"max_pending": 4096}

    def setup(self) -> None:
        self.moves: dict[tuple[str, int], DimseFact] = {}
        self.delivered: dict[tuple[str, int], tuple[str, int, str]] = {}

    def on_fact(self, f: DimseFact) -> None:
        if f.kind == FactKind.MOVE_REQUEST and f.ae != f.calling_ae:
            if len(self.moves) < self.opt["max_pending"]:
                self.moves[(f.calling_ae or "", f.message_id or 0)] = f
        elif f.kind == FactKind.STORE and f.ae:
            key = (f.ae, f.ae_message_id or 0)
            if key in self.moves and key not in self.delivered:
                self.delivered[key] = (f.resp_h, f.resp_p, f.uid)
        elif f.kind == FactKind.RETRIEVE_RESPONSE and f.command_field == CommandField.C_MOVE_RSP:
            key = (f.calling_ae or "", f.message_id or 0)
            if key in self.moves:
                self._report(key, f.amount)

    def _report(self, key: tuple[str, int], completed: int | None) -> None:
        move = self.moves.pop(key)
        dest = move.ae or ""
        hit = self.delivered.pop(key, None)
        evidence: dict[str, object] = {
            "move_destination": dest,
            "requester_ae": key[0],
            "message_id": key[1],
            "completed": completed,
        }
        sev = self.severity
        detail = f"{key[0]} asked {move.called_ae} to send data to {dest}"
        if hit is not None:
            host, port, sub_uid = hit
            evidence.update(
                {"destination_host": host, "destination_port": port, "sub_association_uid": sub_uid}
            )
            known = self.ctx.config.known_ae_titles.get(dest)
            base = self.ctx.baseline
            why = (
                "outside the trusted networks"
                if not self.ctx.trusted(host)
                else "not where that AE title is known to live"
                if known is not None and host not in known
                else "a host the baseline had not seen before"
                if base.learned_before and base.new_since(host, move.message_ts)
                else ""
            )
            if why:
                sev = Severity.HIGH
                detail += f" at {host}:{port}, {why}"
            else:
                detail += f" at {host}:{port}"
        self.ctx.emit(
            assoc_finding(
                self.id,
                move,
                sev,
                self.title,
                detail,
                evidence,
                ts=move.message_ts,
                dicom_filter=f'dicom.tag.value.str contains "{dest}"',
            )
        )

    def finish(self) -> None:
        for key in list(self.moves):
            self._report(key, None)


class UnknownMoveDestination(CrossFlowRule):
    id = "unknown_move_destination"
    title = "Repeated C-MOVE to unknown destinations"
    description = "Repeated C-MOVE responses 0xA801 (move destination unknown): someone is guessing AE titles."
    severity = Severity.MEDIUM
    options = {"window": 300.0, "min_count": 2, "dedup_window": 3600.0}

    def setup(self) -> None:
        self.seen: Windows[str, str] = self.windows(self.opt["window"])

    def on_fact(self, f: DimseFact) -> None:
        if (
            f.kind == FactKind.RETRIEVE_RESPONSE
            and f.command_field == CommandField.C_MOVE_RSP
            and f.status == Status.MOVE_DESTINATION_UNKNOWN
        ):
            q = self.seen.add(f.orig_h, f.message_ts, f.uid)
            if len(q) >= self.opt["min_count"]:
                self.ctx.emit(
                    assoc_finding(
                        self.id,
                        f,
                        self.severity,
                        self.title,
                        f"{len(q)} moves to unknown destinations from {f.orig_h}",
                        {"count": len(q)},
                        ts=f.message_ts,
                    ),
                    dedup=f.orig_h,
                )


class BulkRetrieve(CrossFlowRule):
    id = "bulk_retrieve"
    title = "Bulk retrieve"
    description = (
        "C-MOVE/C-GET sub-operations, or C-STORE bytes to one destination, above a threshold."
    )
    severity = Severity.MEDIUM
    options = {
        "max_suboperations": 500,
        "max_bytes": 1 << 30,
        "window": 3600.0,
        "dedup_window": 3600.0,
    }

    def setup(self) -> None:
        self.bytes_to: SummingWindows[str] = SummingWindows(
            self.opt["window"], 100_000, self.ctx.config.limits.max_window_keys
        )

    def on_fact(self, f: DimseFact) -> None:
        if (
            f.kind == FactKind.RETRIEVE_RESPONSE
            and (f.amount or 0) >= self.opt["max_suboperations"]
        ):
            self.ctx.emit(
                assoc_finding(
                    self.id,
                    f,
                    self.severity,
                    self.title,
                    f"{f.amount} objects retrieved in one request",
                    {"completed": f.amount, "message_id": f.message_id},
                    ts=f.message_ts,
                )
            )
        elif f.kind == FactKind.STORE and f.amount:
            self.bytes_to.add(f.receiver, f.message_ts, f.amount)  # C-GET: the requester
            total = self.bytes_to.total(f.receiver)
            if total >= self.opt["max_bytes"]:
                self.ctx.emit(
                    assoc_finding(
                        self.id,
                        f,
                        self.severity,
                        self.title,
                        f"{total / 1e6:,.0f} MB stored to {f.receiver} within the window",
                        {"bytes": total, "destination": f.receiver},
                        ts=f.message_ts,
                    ),
                    dedup=f.receiver,
                )


WORKLIST = "1.2.840.10008.5.1.4.31"


@dataclass(slots=True)
class _Worklist:
    narrowing: list[str]
    answered: int = 0


class WorklistQuery(FlowRule):
    id = "worklist_query"
    title = "Modality worklist answered with patient data"
    description = (
        "A Modality Worklist C-FIND whose pending responses carry patient identifiers: the day's "
        "schedule of patients, names and IDs in cleartext. Says whether the query was narrowed "
        "(a key besides the patient's name or ID restricts it) or asked for everyone."
    )
    severity = Severity.MEDIUM
    options = {"dedup_window": 3600.0}

    def setup(self) -> None:
        self.queries: dict[str, dict[int, _Worklist]] = {}
        """Association uid -> message id -> the query (dropped when the association ends)."""

    def on_message(self, a: AssocView, m: Message) -> None:
        c, ds = m.command, m.dataset
        cf = c.command_field
        if cf == CommandField.C_FIND_RQ and c.affected_sop_class_uid == WORKLIST:
            narrowing = (
                sorted(
                    {
                        e.keyword
                        for e in ds.elements
                        if (e.depth > 0 or e.keyword not in NOT_NARROWING)
                        and e.vr != "SQ"
                        and _narrows(e.value)
                    }
                )
                if ds is not None
                else []
            )
            per = self.queries.setdefault(a.uid, {})
            if len(per) < 1024 and c.message_id is not None:
                per[c.message_id] = _Worklist(narrowing)
        elif cf == CommandField.C_FIND_RSP and ds is not None and is_pending(c.status):
            q = self.queries.get(a.uid, {}).get(c.message_id_responded or -1)
            if q is not None and any(e.value and e.keyword in DIRECT_KEYWORDS for e in ds.elements):
                q.answered += 1

    def on_association_end(self, a: AssocView) -> None:
        for message_id, q in self.queries.pop(a.uid, {}).items():
            answered, keys = q.answered, q.narrowing
            if not answered:
                continue
            how = f"narrowed by {', '.join(keys)}" if keys else "not narrowed"
            self.ctx.emit(
                assoc_finding(
                    self.id,
                    a,
                    self.severity,
                    self.title,
                    f"{answered} worklist entries with patient identifiers ({how})",
                    {"message_id": message_id, "entries": answered, "narrowing_keys": keys},
                ),
                dedup=(a.orig_h, a.resp_h),
            )
