"""Which DICOMweb (PS3.18) transaction a request is, from its method, path and query.

QIDO-RS   GET  {root}/studies | /studies/{s}/series | /series | /studies/{s}/series/{se}/instances
               | /studies/{s}/instances | /instances         (a collection: a search)
WADO-RS   GET  {root}/studies/{s}[/series/{se}[/instances/{i}]][/metadata | /rendered |
               /thumbnail | /frames/{n} | /bulkdata/... | /pixeldata]
STOW-RS   POST {root}/studies[/{s}]
WADO-URI  GET  {any path}?requestType=WADO&studyUID=..&seriesUID=..&objectUID=..
UPS-RS    {root}/workitems...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from urllib.parse import parse_qsl, unquote, urlsplit

from pydicom.datadict import keyword_for_tag, tag_for_keyword

QIDO, WADO_RS, WADO_URI, STOW, UPS, OTHER = (
    "QIDO-RS",
    "WADO-RS",
    "WADO-URI",
    "STOW-RS",
    "UPS-RS",
    "other",
)
CONTROL_PARAMS = frozenset(
    {"limit", "offset", "includefield", "fuzzymatching", "orderby", "accept", "charset"}
)
"""QIDO query parameters that are not attribute matches (PS3.18 8.3.4)."""
LEVELS = ("studies", "series", "instances")


@dataclass(frozen=True, slots=True)
class Target:
    """What the request line says."""

    path: str
    params: tuple[tuple[str, str], ...]
    """Query parameters as sent (values stay in memory, never in a table)."""
    service: str | None = None
    level: str | None = None
    study: str | None = None
    series: str | None = None
    instance: str | None = None
    resource: str | None = None
    """WADO-RS: metadata, rendered, thumbnail, frames, bulkdata, pixeldata."""
    attributes: tuple[str, ...] = field(default=())
    """Query attributes as keywords (a tag given as ``00100010`` becomes ``PatientName``)."""


@cache
def attribute_keyword(name: str) -> str | None:
    """``PatientName`` or ``00100010`` -> ``PatientName``; None for anything else."""
    base = name.split(".")[-1]
    if len(base) == 8 and all(c in "0123456789abcdefABCDEF" for c in base):
        return keyword_for_tag(int(base, 16)) or base.upper()
    return base if tag_for_keyword(base) is not None else None


def classify(method: str, target: str) -> Target:
    parts = urlsplit(target)
    path = unquote(parts.path)
    params = tuple(parse_qsl(parts.query, keep_blank_values=True))
    lower = {k.lower(): v for k, v in params}
    if lower.get("requesttype", "").upper() == "WADO":
        return Target(
            path,
            params,
            WADO_URI,
            "instance" if lower.get("objectuid") else "series",
            lower.get("studyuid"),
            lower.get("seriesuid"),
            lower.get("objectuid"),
        )
    segs = [s for s in path.split("/") if s]
    if "workitems" in segs:
        return Target(path, params, UPS, "workitem")
    idx = next((i for i, s in enumerate(segs) if s in LEVELS), None)
    if idx is None:
        return Target(path, params)
    rest = segs[idx:]
    uids: dict[str, str] = {}
    i, resource, collection = 0, None, None
    while i < len(rest):
        seg = rest[i]
        if seg in LEVELS:
            if i + 1 < len(rest) and rest[i + 1] not in LEVELS and _uid_like(rest[i + 1]):
                uids[seg] = rest[i + 1]
                i += 2
                continue
            collection = seg
            i += 1
            break
        resource = seg
        break
    study, series, instance = uids.get("studies"), uids.get("series"), uids.get("instances")
    attributes = tuple(
        k
        for k in (
            attribute_keyword(name) for name, _ in params if name.lower() not in CONTROL_PARAMS
        )
        if k is not None
    )
    if method == "POST" and collection in (None, "studies") and not series:
        return Target(path, params, STOW, "study", study)
    if collection is not None and method in ("GET", "HEAD"):
        level = {"studies": "study", "series": "series", "instances": "instance"}[collection]
        return Target(path, params, QIDO, level, study, series, None, None, attributes)
    if method in ("GET", "HEAD") and (study or series or instance):
        level = "instance" if instance else "series" if series else "study"
        if resource == "frames":
            level = "frames"
        return Target(path, params, WADO_RS, level, study, series, instance, resource)
    return Target(path, params, OTHER if uids or collection else None)


def _uid_like(seg: str) -> bool:
    return bool(seg) and seg[0].isdigit() and all(c.isdigit() or c == "." for c in seg)
