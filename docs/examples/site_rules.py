"""An example site rule: a C-MOVE whose destination AE title is not on the site's list.

    [rules]
    modules = ["site_rules"]             # this file, on the Python path as site_rules.py
    [rules.move_to_unlisted_ae]
    allowed = ["ARCHIVE", "WORKSTATION1"]

C-MOVE asks the SCP to push a study to the AE title it names; a title outside the ones the
site knows is where exfiltration by C-MOVE goes (``unknown_move_destination`` only sees the
SCP's refusal, this sees the request, answered or not).
"""

from __future__ import annotations

from analyzer.dicom.consts import CommandField
from analyzer.dicom.messages import Message
from analyzer.findings.model import FlowRule, Severity
from analyzer.findings.rules.common import assoc_finding
from analyzer.logs.views import AssocView


class MoveToUnlistedAe(FlowRule):
    id = "move_to_unlisted_ae"
    title = "C-MOVE to an AE title not on the site's list"
    description = "A C-MOVE-RQ whose Move Destination is not in the rule's `allowed` option."
    severity = Severity.HIGH
    options = {"allowed": [], "dedup_window": 3600.0}

    def on_message(self, assoc: AssocView, message: Message) -> None:
        c = message.command
        if c.command_field != CommandField.C_MOVE_RQ or not c.move_destination:
            return
        if c.move_destination in self.opt["allowed"]:
            return
        self.ctx.emit(
            assoc_finding(
                self.id,
                assoc,
                self.severity,
                self.title,
                f"study moved to {c.move_destination!r}, which the site does not list",
                {"move_destination": c.move_destination, "message_id": c.message_id},
                ts=message.ts,
            ),
            dedup=(assoc.orig_h, c.move_destination),
        )


RULES = [MoveToUnlistedAe]
