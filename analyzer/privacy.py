"""Patient data: which attributes identify a patient, and how values are kept private.

The attribute set is PS3.15 Annex E Table E.1-1 as shipped by the dicom-anonymizer package
(its 2026c database), not a hand-typed list. UIDs (the table's "U" action only) are protocol
identifiers our other tables keep; they count as PHI only when asked (``include_uids``).

Values leave the analyzer redacted (``D***^J***``) and as keyed hashes (HMAC-SHA-256 under a
secret salt) unless the user opts in with --capture-phi.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from functools import cache

from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector

from analyzer.dicom.dataset import DatasetSummary, Element

DATABASE = "dicomfields_2026c"


@cache
def phi_tags(include_uids: bool = False) -> frozenset[int]:
    """Tags of Table E.1-1 as (group << 16 | element)."""
    db = dicom_anonymization_database_selector(DATABASE)
    tags = _pairs(db["ALL_TAGS"])
    if not include_uids:
        tags -= _pairs(db["U_TAGS"])
    return frozenset(tags)


def _pairs(entries: list[object]) -> set[int]:
    """Plain (group, element) entries; the database also holds masks for repeating groups."""
    out = set()
    for t in entries:
        if isinstance(t, tuple) and len(t) == 2 and all(isinstance(x, int) for x in t):
            out.add((t[0] << 16) | t[1])
    return out


SHORT = 3
"""Words shorter than this are masked whole: the first letter of ``M`` is the value itself."""

DIRECT_KEYWORDS = frozenset(
    {
        "PatientName",
        "PatientID",
        "OtherPatientIDs",
        "OtherPatientNames",
        "OtherPatientIDsSequence",
        "PatientBirthName",
        "PatientMotherBirthName",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "PatientTelecomInformation",
        "MedicalRecordLocator",
        "PersonName",
        "PersonAddress",
        "PersonTelephoneNumbers",
        "PersonTelecomInformation",
    }
)
"""The Table E.1-1 attributes that name or reach a person by themselves (the ``direct`` tier);
the others identify only together with more (``quasi``: dates, ages, descriptions, AE titles
carried as values), and UIDs are their own tier."""


def tier(keyword: str, vr: str | None) -> str:
    if vr == "UI":
        return "uid"
    return "direct" if keyword in DIRECT_KEYWORDS else "quasi"


def matching_key_only(value: str | None) -> bool:
    """A query key with no value of its own: empty, or only the wildcards ``*`` and ``?``."""
    return value is None or value.strip(" *?\\") == ""


def redact(value: str) -> str:
    """Keep the first character of each longer name component or word: ``DOE^JANE`` ->
    ``D***^J***``; short words are masked whole (``M`` -> ``***``)."""
    out = []
    for part in value.replace("=", "^").split("^"):
        words = [
            (w[:1] + "***" if len(w) >= SHORT else "***") if w else "" for w in part.split(" ")
        ]
        out.append(" ".join(words))
    return "^".join(out)


class Hasher:
    """Keyed hashes of values. Without a configured salt, a random one lives only in memory,
    so hashes link rows within a run but cannot be reversed by trying common names."""

    def __init__(self, salt: bytes | None) -> None:
        self.key = salt if salt is not None else secrets.token_bytes(32)

    def __call__(self, value: str) -> str:
        return hmac.new(self.key, value.encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:20]

    def patient_key(
        self, patient_id: str | None, name: str | None, birth_date: str | None
    ) -> str | None:
        if patient_id:
            return "P" + self(f"id|{patient_id.strip()}")[:16]
        if name:
            return "P" + self(f"name|{name.strip().upper()}|{(birth_date or '').strip()}")[:16]
        return None


@dataclass(frozen=True, slots=True)
class PhiSummary:
    """The identifying content of one dataset: what the logs and rules need of it."""

    keywords: list[str]
    """Keywords (or hex tags) of PHI attributes that hold a value, sorted."""
    patient_key: str | None
    elements: tuple[Element, ...]
    """The PHI elements that hold a value, in wire order."""


PATIENT_NAME, PATIENT_ID, PATIENT_BIRTH_DATE = 0x00100010, 0x00100020, 0x00100030
PATIENT_TAGS = frozenset({PATIENT_NAME, PATIENT_ID, PATIENT_BIRTH_DATE})
"""What ``patient_key`` is made of."""


class PhiPolicy:
    """Which attributes count as PHI this run, and the run's keyed hashes."""

    def __init__(self, hasher: Hasher, include_uids: bool, capture_phi: bool) -> None:
        self.hasher = hasher
        self.tags = phi_tags(include_uids)
        if not self.tags >= PATIENT_TAGS:  # pragma: no cover - Table E.1-1 holds them
            raise RuntimeError("the PHI attributes lack the patient's identifiers")
        self.capture_phi = capture_phi

    def patient_key(self, ds: DatasetSummary) -> str | None:
        """From direct identifiers only; a wildcard query key names no patient."""

        def real(keyword: str) -> str | None:
            value = ds.get(keyword)
            return None if matching_key_only(value) else value

        return self.hasher.patient_key(
            real("PatientID"), real("PatientName"), real("PatientBirthDate")
        )

    def summarize(self, ds: DatasetSummary) -> PhiSummary:
        """One pass over the elements: the PHI ones with a value, and among them (top level)
        the identifiers ``patient_key`` reads, which are PHI themselves."""
        tags = self.tags
        found = []
        ident: dict[int, str] = {}
        for e in ds.elements:
            if e.tag in tags:
                value = e.value
                if value and not matching_key_only(value):
                    found.append(e)
                    if e.depth == 0 and e.tag in PATIENT_TAGS:
                        ident[e.tag] = value
        keywords = sorted({e.keyword or f"{e.tag:08X}" for e in found})
        key = self.hasher.patient_key(
            ident.get(PATIENT_ID), ident.get(PATIENT_NAME), ident.get(PATIENT_BIRTH_DATE)
        )
        return PhiSummary(keywords, key, tuple(found))

    def shown(self, value: str) -> str:
        """A value as the phi table writes it: redacted unless --capture-phi."""
        return value if self.capture_phi else redact(value)
