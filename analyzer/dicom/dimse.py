"""DIMSE command sets (PS3.7 9.3 and 10.3): group 0000, always Implicit VR Little Endian.

Element: group(2) element(2) length(4) value, all little endian. Only the elements
below are kept; the rest are skipped by length. Overruns are anomalies, not errors.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from analyzer.dicom.consts import NO_DATASET
from analyzer.dicom.items import text

_ELEMENT = struct.Struct("<HHI")

# (0000,eeee) -> field name, value kind: u = US, s = UI/AE/LO string
_KNOWN: dict[int, tuple[str, str]] = {
    0x0002: ("affected_sop_class_uid", "s"),
    0x0003: ("requested_sop_class_uid", "s"),
    0x0100: ("command_field", "u"),
    0x0110: ("message_id", "u"),
    0x0120: ("message_id_responded", "u"),
    0x0600: ("move_destination", "s"),
    0x0700: ("priority", "u"),
    0x0800: ("dataset_type", "u"),
    0x0900: ("status", "u"),
    0x0902: ("error_comment", "s"),
    0x0903: ("error_id", "u"),
    0x1000: ("affected_sop_instance_uid", "s"),
    0x1001: ("requested_sop_instance_uid", "s"),
    0x1002: ("event_type_id", "u"),
    0x1008: ("action_type_id", "u"),
    0x1020: ("n_remaining", "u"),
    0x1021: ("n_completed", "u"),
    0x1022: ("n_failed", "u"),
    0x1023: ("n_warning", "u"),
    0x1030: ("move_originator_ae", "s"),
    0x1031: ("move_originator_message_id", "u"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    command_field: int | None = None
    message_id: int | None = None
    message_id_responded: int | None = None
    affected_sop_class_uid: str | None = None
    requested_sop_class_uid: str | None = None
    affected_sop_instance_uid: str | None = None
    requested_sop_instance_uid: str | None = None
    move_destination: str | None = None
    priority: int | None = None
    dataset_type: int | None = None
    status: int | None = None
    error_comment: str | None = None
    error_id: int | None = None
    event_type_id: int | None = None
    action_type_id: int | None = None
    n_remaining: int | None = None
    n_completed: int | None = None
    n_failed: int | None = None
    n_warning: int | None = None
    move_originator_ae: str | None = None
    move_originator_message_id: int | None = None
    anomalies: tuple[tuple[str, str], ...] = ()

    @property
    def has_dataset(self) -> bool:
        return self.dataset_type is not None and self.dataset_type != NO_DATASET

    @property
    def sop_class_uid(self) -> str | None:
        return self.affected_sop_class_uid or self.requested_sop_class_uid

    @property
    def sop_instance_uid(self) -> str | None:
        return self.affected_sop_instance_uid or self.requested_sop_instance_uid


def decode_command(raw: bytes) -> Command:
    values: dict[str, object] = {}
    anomalies: list[tuple[str, str]] = []
    pos, n = 0, len(raw)
    while pos < n:
        if n - pos < 8:
            anomalies.append(
                ("dicom_command_truncated", f"{n - pos} stray bytes after the last element")
            )
            break
        group, elem, length = _ELEMENT.unpack_from(raw, pos)
        pos += 8
        if group != 0:
            anomalies.append(
                ("dicom_command_bad_group", f"({group:04X},{elem:04X}) in a command set")
            )
            break
        if length > n - pos:
            anomalies.append(
                (
                    "dicom_command_truncated",
                    f"(0000,{elem:04X}) of {length} bytes overruns the command",
                )
            )
            break
        known = _KNOWN.get(elem)
        if known is not None:
            name, kind = known
            value = raw[pos : pos + length]
            if kind == "u":
                if length >= 2:
                    values[name] = value[0] | (value[1] << 8)
                if length != 2:  # every US element of a command set has VM 1
                    anomalies.append(
                        (
                            "dicom_command_value_length",
                            f"(0000,{elem:04X}) US of {length} bytes; the first value is kept",
                        )
                    )
            else:
                values[name] = text(value)
        pos += length
    if "command_field" not in values and not anomalies:
        # an empty or field-less command set: not a message anyone can act on (a flood of
        # two-byte PDVs flagged command+last makes one of these per PDV)
        anomalies.append(
            ("dicom_command_without_field", f"command set of {n} bytes without (0000,0100)")
        )
    return Command(anomalies=tuple(anomalies), **values)  # type: ignore[arg-type]
