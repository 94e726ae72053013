"""Query and retrieve: wildcard harvesting, prefix enumeration, big answers, third-party moves."""

from __future__ import annotations

import re

from analyzer.dicom.messages import Message
from analyzer.findings.context import AssocView
from analyzer.findings.model import Rule, Severity, register
from analyzer.findings.rules.common import Windows, assoc_finding

FIND_MODELS = {
    "1.2.840.10008.5.1.4.1.2.1.1": "patient-root",
    "1.2.840.10008.5.1.4.1.2.2.1": "study-root",
    "1.2.840.10008.5.1.4.31": "worklist",
}
NOT_NARROWING = {"QueryRetrieveLevel", "SpecificCharacterSet", "PatientName", "PatientID"}
PREFIX = re.compile(r"^[^*?]{1,2}\*$")
PENDING = (0xFF00, 0xFF01)


def _is_wild(value: str | None) -> bool:
    return value is None or value.strip() in ("", "*")


def _narrows(value: str | None) -> bool:
    return bool(value) and value.strip("*?% ") != ""  # type: ignore[union-attr]


@register
class WildcardQuery(Rule):
    id = "wildcard_query"
    title = "Wildcard patient query"
    description = (
        "C-FIND (patient root, study root, worklist) whose PatientName or PatientID is * or empty and "
        "no other key narrows the match. Higher at PATIENT or STUDY level."
    )
    severity = Severity.MEDIUM
    options = {"dedup_window": 300.0}

    def on_message(self, a: AssocView, m: Message) -> None:
        c, ds = m.command, m.dataset
        if c.command_field != 0x0020 or ds is None:
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


@register
class PrefixEnumeration(Rule):
    id = "prefix_enumeration"
    title = "Patient list enumerated by prefixes"
    description = "A run of C-FINDs from one source with short prefixes (A*, B*, ...) in PatientName or PatientID."
    severity = Severity.HIGH
    options = {"window": 600.0, "min_prefixes": 4, "dedup_window": 3600.0}

    def setup(self) -> None:
        self.prefixes = Windows(self.opt["window"])

    def on_message(self, a: AssocView, m: Message) -> None:
        if m.command.command_field != 0x0020 or m.dataset is None:
            return
        for key in ("PatientName", "PatientID"):
            value = m.dataset.get(key)
            if value and PREFIX.match(value.strip()):
                q = self.prefixes.add(a.orig_h, m.ts, (key, value.strip().upper()))
                distinct = {p for _, p in q}
                if len(distinct) >= self.opt["min_prefixes"]:
                    self.ctx.emit(
                        assoc_finding(
                            self.id,
                            a,
                            self.severity,
                            self.title,
                            f"{len(distinct)} prefix queries from {a.orig_h}",
                            {"prefix_queries": len(distinct), "attribute": key},
                            ts=m.ts,
                        ),
                        dedup=a.orig_h,
                    )


@register
class LargeResultSet(Rule):
    id = "large_result_set"
    title = "Large query result"
    description = "More than M pending responses to one C-FIND; the number of distinct patients is reported (hashed)."
    severity = Severity.MEDIUM
    options = {"max_results": 10}

    def on_association_end(self, a: AssocView) -> None:
        for q in a.queries.values():
            if q.command == 0x0020 and q.pending > self.opt["max_results"]:
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


@register
class ThirdPartyMove(Rule):
    id = "third_party_move"
    title = "C-MOVE to a third party"
    description = (
        "C-MOVE whose Move Destination differs from the requester's calling AE; correlated with the "
        "sub-association that carries Move Originator AE/Message ID; higher when the destination host "
        "is outside the trusted networks or not where that AE title is known to live."
    )
    severity = Severity.MEDIUM
    options = {"max_pending": 4096}

    def setup(self) -> None:
        self.moves: dict[tuple[str, int], tuple[AssocView, str, float]] = {}
        self.delivered: dict[tuple[str, int], tuple[str, int, str, int]] = {}

    def on_message(self, a: AssocView, m: Message) -> None:
        c = m.command
        if c.command_field == 0x0021 and c.move_destination and c.move_destination != a.calling_ae:
            if len(self.moves) < self.opt["max_pending"]:
                self.moves[(a.calling_ae or "", c.message_id or 0)] = (a, c.move_destination, m.ts)
        elif c.command_field == 0x0001 and c.move_originator_ae:
            key = (c.move_originator_ae, c.move_originator_message_id or 0)
            if key in self.moves and key not in self.delivered:
                self.delivered[key] = (a.resp_h, a.resp_p, a.uid, 0)
        elif c.command_field == 0x8021 and c.status not in (0xFF00, 0xFF01):
            key = (a.calling_ae or "", c.message_id_responded or 0)
            if key in self.moves:
                self._report(key, c.n_completed)

    def _report(self, key: tuple[str, int], completed: int | None) -> None:
        a, dest, ts = self.moves.pop(key)
        hit = self.delivered.pop(key, None)
        evidence: dict[str, object] = {
            "move_destination": dest,
            "requester_ae": key[0],
            "message_id": key[1],
            "completed": completed,
        }
        sev = self.severity
        detail = f"{key[0]} asked {a.called_ae} to send data to {dest}"
        if hit is not None:
            host, port, sub_uid, _ = hit
            evidence.update(
                {"destination_host": host, "destination_port": port, "sub_association_uid": sub_uid}
            )
            known = self.ctx.config.known_ae_titles.get(dest)
            if not self.ctx.trusted(host) or (known is not None and host not in known):
                sev = Severity.HIGH
                detail += f" at {host}:{port}, " + (
                    "outside the trusted networks"
                    if not self.ctx.trusted(host)
                    else "not where that AE title is known to live"
                )
            else:
                detail += f" at {host}:{port}"
        self.ctx.emit(
            assoc_finding(
                self.id,
                a,
                sev,
                self.title,
                detail,
                evidence,
                ts=ts,
                dicom_filter=f'dicom.tag.value.str contains "{dest}"',
            )
        )

    def finish(self) -> None:
        for key in list(self.moves):
            self._report(key, None)


@register
class UnknownMoveDestination(Rule):
    id = "unknown_move_destination"
    title = "Repeated C-MOVE to unknown destinations"
    description = "Repeated C-MOVE responses 0xA801 (move destination unknown): someone is guessing AE titles."
    severity = Severity.MEDIUM
    options = {"window": 300.0, "min_count": 2, "dedup_window": 3600.0}

    def setup(self) -> None:
        self.seen = Windows(self.opt["window"])

    def on_message(self, a: AssocView, m: Message) -> None:
        if m.command.command_field == 0x8021 and m.command.status == 0xA801:
            q = self.seen.add(a.orig_h, m.ts, a.uid)
            if len(q) >= self.opt["min_count"]:
                self.ctx.emit(
                    assoc_finding(
                        self.id,
                        a,
                        self.severity,
                        self.title,
                        f"{len(q)} moves to unknown destinations from {a.orig_h}",
                        {"count": len(q)},
                        ts=m.ts,
                    ),
                    dedup=a.orig_h,
                )


@register
class BulkRetrieve(Rule):
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
        self.bytes_to = Windows(self.opt["window"], max_items=100_000)

    def on_message(self, a: AssocView, m: Message) -> None:
        c = m.command
        if (
            c.command_field in (0x8021, 0x8010)
            and c.status not in PENDING
            and (c.n_completed or 0) >= self.opt["max_suboperations"]
        ):
            self.ctx.emit(
                assoc_finding(
                    self.id,
                    a,
                    self.severity,
                    self.title,
                    f"{c.n_completed} objects retrieved in one request",
                    {"completed": c.n_completed, "message_id": c.message_id_responded},
                    ts=m.ts,
                )
            )
        elif c.command_field == 0x0001 and m.dataset_bytes:
            q = self.bytes_to.add(a.resp_h, m.ts, m.dataset_bytes)
            total = sum(n for _, n in q)
            if total >= self.opt["max_bytes"]:
                self.ctx.emit(
                    assoc_finding(
                        self.id,
                        a,
                        self.severity,
                        self.title,
                        f"{total / 1e6:,.0f} MB stored to {a.resp_h} within the window",
                        {"bytes": total, "destination": a.resp_h},
                        ts=m.ts,
                    ),
                    dedup=a.resp_h,
                )
