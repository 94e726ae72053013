"""Alerts in the Elastic Common Schema (``--alerts-format ecs``): one ECS document per alert.

ECS fields carry what ECS has a field for (time, kind, category, severity, rule, endpoints,
protocol, related IPs, ATT&CK technique); the rest of the finding (flow uids, AE titles,
evidence, filters, the carve command) is kept under ``dicom_analyzer.*``, the custom namespace
ECS asks non-ECS fields to live in. ``tests/findings/test_ecs.py`` checks every field name,
type and allowed value against ECS's own field definitions (``ecs_flat.yml``).
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

from analyzer.findings.references import ATTACK, RULE_REFERENCES, SOURCES

ECS_VERSION = "9.5.0"
SEVERITY = {"info": 1, "low": 21, "medium": 47, "high": 73, "critical": 99}
"""``event.severity`` (a number in ECS): the 1-99 scale of Elastic's detection rules."""


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def to_ecs(alert: dict[str, Any]) -> dict[str, Any]:
    """One alert (a ``finding`` row as a dict, evidence decoded) as an ECS document."""
    from analyzer.findings.catalog import RULES

    rule = alert["rule"]
    cls = RULES.get(rule)
    evidence = alert.get("evidence")
    if isinstance(evidence, str):
        with contextlib.suppress(ValueError):
            evidence = json.loads(evidence)
    http = isinstance(evidence, dict) and "method" in evidence
    techniques = [k for k in RULE_REFERENCES.get(rule, ()) if k in ATTACK]
    hosts = [h for h in (alert.get("orig_h"), alert.get("resp_h")) if h]
    doc: dict[str, Any] = {
        "@timestamp": _iso(alert["ts"]),
        "ecs": {"version": ECS_VERSION},
        "message": f"{alert['title']}: {alert['detail']}",
        "event": {
            "kind": "alert",
            "category": ["network", "intrusion_detection"],
            "type": ["info"],
            "severity": SEVERITY.get(alert["severity"], 1),
            "module": "dicom_analyzer",
            "dataset": "dicom_analyzer.finding",
            "start": _iso(alert.get("first_ts")),
            "end": _iso(alert.get("last_ts")),
            "reason": alert["detail"],
        },
        "rule": {
            "id": rule,
            "name": alert["title"],
            "ruleset": "dicom-analyzer",
            **({"description": cls.description} if cls is not None else {}),
            **({"reference": SOURCES[techniques[0]]} if techniques else {}),
        },
        "observer": {"product": "dicom-analyzer", "type": "ids"},
        "network": {"protocol": "http" if http else "dicom", "transport": "tcp"},
        "dicom_analyzer": {
            k: alert.get(k)
            for k in (
                "uid",
                "uids",
                "uids_omitted",
                "count",
                "severity",
                "calling_ae",
                "called_ae",
                "wireshark_filter",
                "tshark_command",
                "carve_command",
                "references",
                "sensor",
            )
            if alert.get(k) is not None
        },  # fmt: skip
    }
    doc["dicom_analyzer"]["evidence"] = evidence
    if alert.get("sensor"):
        doc["observer"]["name"] = alert["sensor"]
    if alert.get("orig_h"):
        doc["source"] = {"ip": alert["orig_h"]}
    if alert.get("resp_h"):
        doc["destination"] = {"ip": alert["resp_h"]}
    if hosts:
        doc["related"] = {"ip": sorted(set(hosts))}
    if techniques:
        doc["threat"] = {
            "framework": "MITRE ATT&CK",
            "technique": {
                "id": techniques,
                "name": [ATTACK[t].split(f"{t} ", 1)[1] for t in techniques],
                "reference": [SOURCES[t] for t in techniques],
            },
        }
    for k in ("start", "end"):
        if doc["event"][k] is None:
            del doc["event"][k]
    return doc
