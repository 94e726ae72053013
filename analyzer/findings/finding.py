"""A finding and its severity."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class Severity(IntEnum):
    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()


SEVERITY_BY_LABEL = {s.label: s for s in Severity}


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    rule: str
    severity: Severity
    title: str
    detail: str
    ts: float
    uid: str | None = None
    orig_h: str | None = None
    resp_h: str | None = None
    calling_ae: str | None = None
    called_ae: str | None = None
    evidence: dict[str, object] = field(default_factory=dict)
    wireshark_filter: str | None = None
    """Works as printed in a default Wireshark."""
    tshark: str | None = None
    """The exact tshark command for the finding's frames (decode-as and preferences included;
    CAPTURE stands for the capture file)."""
