"""Importing this package registers every rule (one module per DETECTIONS.md section)."""

from analyzer.findings.rules import auth, inventory, malformed, phi, query, scan, transport

__all__ = ["auth", "inventory", "malformed", "phi", "query", "scan", "transport"]
