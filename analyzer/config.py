"""Run configuration: limits and hints, loaded from an optional TOML file.

Every bound the analyzer enforces lives here so that hitting one is a visible,
configurable decision (an anomaly row plus a defined fallback), never a crash.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer.dicom.limits import DicomLimits
from analyzer.errors import ConfigError
from analyzer.findings import suppress
from analyzer.findings.suppress import Suppression
from analyzer.net.checksum import Checksums

DEFAULT_DICOM_PORTS = frozenset({104, 11112, 4242, 2761, 2762})
DEFAULT_TRUSTED = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "::1/128",
    "fc00::/7",
)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustTest:
    """Is an address inside the trusted networks? Answers are cached, in a small cache (one
    entry per host). An address that does not parse is not trusted."""

    __slots__ = ("networks", "cache")

    def __init__(self, networks: tuple[Network, ...]) -> None:
        self.networks = networks
        self.cache: dict[str, bool] = {}

    def __call__(self, host: str) -> bool:
        hit = self.cache.get(host)
        if hit is None:
            try:
                addr = ipaddress.ip_address(host)
            except ValueError:
                hit = False
            else:
                hit = any(addr in net for net in self.networks)
            if len(self.cache) >= 4096:
                self.cache.clear()
            self.cache[host] = hit
        return hit

    def clear(self) -> None:
        self.cache.clear()


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
    ack_grace_packets: int = 64
    """Packets of a flow for which bytes the peer acknowledged but the capture has not shown
    yet are waited for (a span port that merges both directions delivers an ACK, even the
    answer, before the segment it acknowledges); then the hole is a gap. 0: no grace."""
    ack_grace_seconds: float = 0.5
    """Capture time the same wait lasts at most."""
    ack_grace_bytes: int = 1 << 20
    """Bytes of the other direction held back meanwhile (it is delivered after the late
    segment, in the order the endpoints saw them) before the wait ends."""
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
    sniff_bytes: int = 10
    """Leading bytes of the originator a flow seen from its SYN is recognised on (at least 10:
    an A-ASSOCIATE-RQ header)."""
    midstream_hold: int = 16 << 10
    """Bytes per direction scanned for PDU headers in a flow picked up mid-stream."""
    max_sniff_total: int = 32 << 20
    """Bytes all undecided flows may hold together; past it they decide at once."""
    max_endpoints: int = 20_000
    """DICOM endpoints the asset inventory keeps."""
    max_values_per_column: int = 32
    """Values per list column of an asset row."""
    max_dedup_keys: int = 20_000
    """De-duplication keys of findings kept at once (the least recent is forgotten)."""
    max_window_keys: int = 50_000
    """Keys (hosts, host pairs) per sliding window of a cross-flow rule."""
    max_pending_requests: int = 1024
    """Requests awaiting their final response per association (oldest dropped beyond)."""
    max_queries: int = 4096
    """Queries and retrieves remembered per association."""
    bulk_fast_path: bool = True
    """Count in-order bulk segments nothing reads in one step (``FlowTable.counted``); false
    takes every packet through the whole decoder (the same tables, slower: for cross-checks)."""
    memory_budget: int = 512 << 20
    """Bytes the whole process may use for what traffic makes it hold; past the share of
    open flows, the largest flows are shed (``analyzer/memory.py``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Everything a run needs besides its inputs."""

    limits: Limits = field(default_factory=Limits)
    dicom: DicomLimits = field(default_factory=DicomLimits)
    """Bounds of the DICOM decoder (``[dicom]`` besides ``ports``)."""
    dicom_ports: frozenset[int] = DEFAULT_DICOM_PORTS
    """Ports that hint at DICOM (content decides; ports only orient mid-stream flows)."""
    strict: bool = False
    """Re-raise internal errors instead of recording them (tests use this)."""
    trusted_networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in DEFAULT_TRUSTED)
    known_ae_titles: dict[str, frozenset[str]] = field(default_factory=dict)
    """AE title -> the host addresses it belongs to (inventory_change spots the others)."""
    rules_disabled: frozenset[str] = frozenset()
    rule_modules: tuple[str, ...] = ()
    """Site rule modules (``[rules] modules``, ``findings/site.py``)."""
    rule_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    salt: bytes | None = None
    """Secret for value hashes and patient keys; None: a random one per run, never written."""
    capture_phi: bool = False
    """Write PHI values (in the phi table only). Off by default."""
    checksums: Checksums = Checksums.AUTO
    """IPv4 and TCP checksum verification (``[capture] checksums``, ``--checksums``)."""
    suppressions: tuple[Suppression, ...] = ()
    """``[[suppress]]`` entries (``findings/suppress.py``)."""
    alerts_format: str = "native"
    """``alerts.jsonl`` (and live's ``--alerts-stdout``): ``native`` rows or ``ecs``."""
    sensor: str | None = None
    """The sensor a capture comes from (``--sensor``): the ``sensor`` column and part of the
    flow uids (the same flow seen by two sensors is two flows). None: a single capture."""
    state_dir: Path | None = None
    """``[state] dir`` / ``--state``: the baseline kept across runs (``analyzer/state/``)."""


def _build(cls: type[Any], table: dict[str, Any], where: str) -> Any:
    """A frozen dataclass of numbers and flags from a TOML table: unknown keys, wrong types
    and negative numbers are errors naming the file and the key."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in names:
            raise ConfigError(f"{where}: unknown setting '{key}'")
        default = getattr(defaults, key)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{key}: expected true or false")
        elif isinstance(default, int | float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{where}.{key}: expected a number")
            if isinstance(default, int) and not float(value).is_integer():
                raise ConfigError(f"{where}.{key}: expected a whole number")
            if value < 0:
                raise ConfigError(f"{where}.{key}: must not be negative")
            value = type(default)(value)
        kwargs[key] = value
    return cls(**kwargs)


def _beside(config_file: Path, value: str) -> Path:
    """A path from the config file: relative ones are relative to the file's directory."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else config_file.parent / p


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
    networks = raw.pop("networks", {})
    ae_titles = raw.pop("ae_titles", {})
    rules = raw.pop("rules", {})
    privacy = raw.pop("privacy", {})
    capture = raw.pop("capture", {})
    state = raw.pop("state", {})
    suppressions = suppress.parse(raw.pop("suppress", []), str(path))
    for section in raw:
        raise ConfigError(f"{path}: unknown section [{section}]")
    for name, table in (
        ("limits", limits_table),
        ("dicom", dicom_table),
        ("networks", networks),
        ("ae_titles", ae_titles),
        ("rules", rules),
        ("privacy", privacy),
        ("capture", capture),
        ("state", state),
    ):
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
    limits = _build(Limits, limits_table, f"{path}: limits")
    if limits.sniff_bytes < 10:
        raise ConfigError(f"{path}: limits.sniff_bytes must be at least 10")
    ports = DEFAULT_DICOM_PORTS
    if "ports" in dicom_table:
        value = dicom_table.pop("ports")
        if not isinstance(value, list) or not all(
            isinstance(p, int) and 0 < p < 65536 for p in value
        ):
            raise ConfigError(f"{path}: dicom.ports must be a list of port numbers")
        ports = frozenset(value) | DEFAULT_DICOM_PORTS
    dicom = _build(DicomLimits, dicom_table, f"{path}: dicom")
    trusted = Config().trusted_networks
    if "trusted" in networks:
        try:
            trusted = tuple(
                ipaddress.ip_network(str(n), strict=False) for n in networks.pop("trusted")
            )
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: networks.trusted: {exc}") from None
    if networks:
        raise ConfigError(f"{path}: unknown setting 'networks.{next(iter(networks))}'")
    known: dict[str, frozenset[str]] = {}
    for title, hosts in ae_titles.pop("known", {}).items():
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise ConfigError(f"{path}: ae_titles.known.{title} must be a list of addresses")
        known[title.strip()] = frozenset(str(ipaddress.ip_address(h)) for h in hosts)
    if ae_titles:
        raise ConfigError(f"{path}: unknown setting 'ae_titles.{next(iter(ae_titles))}'")
    modules = rules.pop("modules", [])
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise ConfigError(f"{path}: rules.modules must be a list of module names")
    disabled = rules.pop("disabled", [])
    if not isinstance(disabled, list):
        raise ConfigError(f"{path}: rules.disabled must be a list of rule ids")
    options = {rid: dict(opts) for rid, opts in rules.items() if isinstance(opts, dict)}
    if len(options) != len(rules):
        raise ConfigError(
            f"{path}: [rules] holds 'disabled', 'modules' and one table of options per rule"
        )
    salt_text = privacy.pop("salt", None)
    capture_phi = privacy.pop("capture_phi", False)
    if privacy:
        raise ConfigError(f"{path}: unknown setting 'privacy.{next(iter(privacy))}'")
    if salt_text is not None and (not isinstance(salt_text, str) or len(salt_text) < 8):
        raise ConfigError(f"{path}: privacy.salt must be a string of at least 8 characters")
    checksums = capture.pop("checksums", Checksums.AUTO.value)
    if checksums not in {c.value for c in Checksums}:
        raise ConfigError(f"{path}: capture.checksums must be one of auto, verify, ignore")
    if capture:
        raise ConfigError(f"{path}: unknown setting 'capture.{next(iter(capture))}'")
    state_dir = state.pop("dir", None)
    if state_dir is not None and (not isinstance(state_dir, str) or not state_dir):
        raise ConfigError(f"{path}: state.dir must be a directory path")
    if state:
        raise ConfigError(f"{path}: unknown setting 'state.{next(iter(state))}'")
    return Config(
        limits=limits,
        dicom=dicom,
        dicom_ports=ports,
        trusted_networks=trusted,
        known_ae_titles=known,
        rules_disabled=frozenset(str(r) for r in disabled),
        rule_modules=tuple(modules),
        rule_options=options,
        salt=salt_text.encode() if salt_text else None,
        capture_phi=bool(capture_phi),
        checksums=Checksums(checksums),
        suppressions=suppressions,
        state_dir=_beside(Path(path), state_dir) if state_dir else None,
    )
