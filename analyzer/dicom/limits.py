"""Bounds of the DICOM decoder (set from the ``[dicom]`` section of the config)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class DicomLimits:
    max_control_pdu: int = 1 << 20
    """Bytes of an A-ASSOCIATE-RQ/AC buffered to decode it (a longer one is an anomaly)."""
    max_command: int = 1 << 16
    """Bytes of a command set buffered."""
    max_dataset_head: int = 1 << 16
    """Leading bytes of each dataset kept and decoded; the rest is counted."""
    max_pending: int = 64
    """Messages in progress per direction (asynchronous operations interleave them)."""


__all__ = ["DicomLimits"]
