"""Run configuration: limits and hints, loaded from an optional TOML file.

Every bound the analyzer enforces lives here so that hitting one is a visible,
configurable decision (an anomaly row plus a defined fallback), never a crash.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer.errors import ConfigError

DEFAULT_DICOM_PORTS = frozenset({104, 11112, 4242, 2761, 2762})


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Memory and time bounds of the network layer."""

    max_flows: int = 32_768
    """Open TCP flows kept at once; the least recently active one is evicted beyond this."""
    max_ooo_bytes: int = 1 << 20
    """Out-of-order bytes buffered per direction before the hole is declared a gap."""
    max_ooo_segments: int = 512
    """Out-of-order segments buffered per direction (many tiny segments cost memory too)."""
    max_seq_jump: int = 64 << 20
    """A segment further than this ahead of the stream is treated as bogus and dropped."""
    overlap_check_bytes: int = 64 << 10
    """Recently delivered bytes kept per payload-carrying direction to compare retransmissions."""
    idle_timeout: float = 300.0
    """Seconds of capture time without a packet after which an established flow is closed."""
    attempt_timeout: float = 60.0
    """Seconds after which a flow that never carried data or finished its handshake is closed."""
    close_linger: float = 5.0
    """Seconds a flow is kept after FIN/RST so its last ACKs still count."""
    max_fragment_datagrams: int = 1024
    """IP datagrams under reassembly at once."""
    max_fragment_bytes: int = 8 << 20
    """Bytes held by IP fragment reassembly at once."""
    fragment_timeout: float = 30.0
    """Seconds after which an incomplete fragmented datagram is dropped."""
    max_weird_per_flow: int = 20
    """Rows one anomaly name may write for one flow; the rest are counted in a summary row."""
    max_weird_global: int = 1000
    """Rows one flow-less anomaly name may write in a run; the rest are counted."""
    sniff_bytes: int = 16
    """Leading bytes per direction held back to recognise the application protocol."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Everything a run needs besides its inputs."""

    limits: Limits = field(default_factory=Limits)
    dicom_ports: frozenset[int] = DEFAULT_DICOM_PORTS
    """Ports that hint at DICOM (content decides; ports only orient mid-stream flows)."""
    strict: bool = False
    """Re-raise internal errors instead of recording them (tests use this)."""


def _build(cls: type[Any], table: dict[str, Any], where: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in names:
            raise ConfigError(f"{where}: unknown setting '{key}'")
        default = getattr(cls(), key)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{where}.{key}: expected true or false")
        if isinstance(default, int | float) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{where}.{key}: expected a number")
            if value < 0:
                raise ConfigError(f"{where}.{key}: must not be negative")
            value = type(default)(value)
        kwargs[key] = value
    return cls(**kwargs)


def load_config(path: str | Path | None) -> Config:
    """Read a TOML config file; ``None`` gives the defaults."""
    if path is None:
        return Config()
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    limits_table = raw.pop("limits", {})
    dicom_table = raw.pop("dicom", {})
    for section in raw:
        raise ConfigError(f"{path}: unknown section [{section}]")
    if not isinstance(limits_table, dict) or not isinstance(dicom_table, dict):
        raise ConfigError(f"{path}: [limits] and [dicom] must be tables")
    limits = _build(Limits, limits_table, "limits")
    ports = DEFAULT_DICOM_PORTS
    if "ports" in dicom_table:
        value = dicom_table.pop("ports")
        if not isinstance(value, list) or not all(
            isinstance(p, int) and 0 < p < 65536 for p in value
        ):
            raise ConfigError(f"{path}: dicom.ports must be a list of port numbers")
        ports = frozenset(value) | DEFAULT_DICOM_PORTS
    if dicom_table:
        raise ConfigError(f"{path}: unknown setting 'dicom.{next(iter(dicom_table))}'")
    return Config(limits=limits, dicom_ports=ports)
