"""One record type per output table (Zeek's ``Conn::Info`` habit).

Each table is a ``NamedTuple``: rows keep tuple speed, are built by keyword in one place (the
module that writes that log), and the table's polars schema is derived from the annotations.
A new column is one line here plus its value where the record is built.

Annotations map to polars types: ``str`` String, ``float`` Float64, ``bool`` Boolean, ``int``
Int64, ``I32`` Int32, ``list[str]`` List(String); ``| None`` only says the column may be null.
``ts`` is always epoch seconds.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, NamedTuple, Union, get_args, get_origin, get_type_hints

import polars as pl

Schema = dict[str, pl.DataType]
I32 = Annotated[int, pl.Int32()]
"""An integer column stored as Int32 (ports, codes, counts that fit)."""

_PLAIN: dict[Any, pl.DataType] = {
    str: pl.String(),
    float: pl.Float64(),
    bool: pl.Boolean(),
    int: pl.Int64(),
}


def _dtype(hint: Any) -> pl.DataType:
    if get_origin(hint) in (Union, types.UnionType):
        (inner,) = [a for a in get_args(hint) if a is not type(None)]
        return _dtype(inner)
    for meta in getattr(hint, "__metadata__", ()):
        if isinstance(meta, pl.DataType):
            return meta
    if get_origin(hint) is list:
        return pl.List(_dtype(get_args(hint)[0]))
    return _PLAIN[hint]


def schema_of(record: type[tuple[Any, ...]]) -> Schema:
    """The polars schema of a record type, columns in field order."""
    hints = get_type_hints(record, include_extras=True)  # in field order
    return {name: _dtype(hint) for name, hint in hints.items()}


class Conn(NamedTuple):
    """One TCP flow; fields as in Zeek's conn.log."""

    uid: str
    ts: float
    orig_h: str
    orig_p: I32
    resp_h: str
    resp_p: I32
    proto: str
    service: str | None
    duration: float
    orig_bytes: int
    resp_bytes: int
    conn_state: str
    missed_bytes: int
    history: str
    orig_pkts: int
    orig_ip_bytes: int
    resp_pkts: int
    resp_ip_bytes: int
    vlan: I32 | None
    end_reason: str | None
    sensor: str | None = None
    """The sensor that captured it (``--sensor``; null in a single-capture run)."""


class DicomAssoc(NamedTuple):
    """One DICOM association (one per DICOM flow)."""

    uid: str
    ts: float
    orig_h: str
    orig_p: I32
    resp_h: str
    resp_p: I32
    calling_ae: str | None
    called_ae: str | None
    result: str
    reject_result: str | None
    reject_source: str | None
    reject_reason: str | None
    abort_source: str | None
    abort_reason: str | None
    user_identity_type: I32 | None
    user_identity_response_requested: bool | None
    user_identity_server_response: bool | None
    passcode_present: bool
    application_context: str | None
    implementation_class_uid: str | None
    implementation_version_name: str | None
    resp_implementation_class_uid: str | None
    resp_implementation_version_name: str | None
    max_pdu_orig: int | None
    max_pdu_resp: int | None
    n_contexts_proposed: I32 | None
    n_contexts_accepted: I32 | None
    end_state: str
    midstream: bool
    n_dimse: int
    async_invoked_orig: I32 | None
    """Asynchronous operations window (0x53) the requester proposed: operations invoked."""
    async_performed_orig: I32 | None
    async_invoked_resp: I32 | None
    """The window the acceptor answered with."""
    async_performed_resp: I32 | None
    sensor: str | None = None
    """The sensor that captured it (``--sensor``; null in a single-capture run)."""


class DicomContext(NamedTuple):
    """One presentation context of an association."""

    uid: str
    context_id: I32
    abstract_syntax_uid: str | None
    proposed_transfer_syntaxes: list[str]
    result: str | None
    result_code: I32 | None
    transfer_syntax_uid: str | None
    scu_role_proposed: I32 | None
    """SCP/SCU role selection (0x54) for this abstract syntax in the RQ: 1 = the requester
    may take the role, 0 = not; null when the item is absent."""
    scp_role_proposed: I32 | None
    scu_role_accepted: I32 | None
    """The same in the AC: what was agreed."""
    scp_role_accepted: I32 | None
    extended_negotiation_proposed: str | None
    """SOP class extended negotiation (0x56) information, hex."""
    extended_negotiation_accepted: str | None
    service_class_uid: str | None
    """SOP class common extended negotiation (0x57): the service class."""
    related_general_sop_classes: list[str]
    sensor: str | None = None
    """The sensor that captured it (``--sensor``; null in a single-capture run)."""


class Dimse(NamedTuple):
    """One DIMSE message; a response carries its request's ts and the round trip."""

    uid: str
    ts: float
    direction: str
    context_id: I32
    command: str
    command_field: I32 | None
    message_id: I32 | None
    message_id_responded: I32 | None
    affected_sop_class_uid: str | None
    affected_sop_instance_uid: str | None
    requested_sop_class_uid: str | None
    requested_sop_instance_uid: str | None
    priority: I32 | None
    move_destination: str | None
    move_originator_ae: str | None
    move_originator_message_id: I32 | None
    status: I32 | None
    status_label: str | None
    status_category: str | None
    error_comment: str | None
    dataset_bytes: int
    n_remaining: I32 | None
    n_completed: I32 | None
    n_failed: I32 | None
    n_warning: I32 | None
    truncated: bool
    request_ts: float | None
    rtt: float | None
    sensor: str | None = None
    """The sensor that captured it (``--sensor``; null in a single-capture run)."""


class DicomObject(NamedTuple):
    """One dataset on the wire (no value of it: keywords and a keyed patient hash)."""

    uid: str
    ts: float
    message_id: I32 | None
    direction: str
    command: str
    role: str
    sop_class_uid: str | None
    sop_instance_uid: str | None
    transfer_syntax_uid: str | None
    dataset_bytes: int
    n_elements: I32
    truncated: bool
    phi_keywords: list[str]
    patient_key: str | None
    sensor: str | None = None
    """The sensor that captured it (``--sensor``; null in a single-capture run)."""


class Phi(NamedTuple):
    """One identifying attribute value on the wire (redacted unless --capture-phi)."""

    uid: str
    ts: float
    message_id: I32 | None
    direction: str
    tag: str
    keyword: str
    vr: str | None
    value: str
    value_hash: str
    value_length: int
    depth: I32
    patient_key: str | None
    tier: str
    """``direct`` (names and reaches a person), ``quasi`` (identifies with more), ``uid``."""
    sensor: str | None = None
    """The sensor that captured it (``--sensor``; null in a single-capture run)."""


class FindingRow(NamedTuple):
    """One security finding."""

    uid: str | None
    ts: float
    rule: str
    severity: str
    title: str
    detail: str
    orig_h: str | None
    resp_h: str | None
    calling_ae: str | None
    called_ae: str | None
    evidence: str
    wireshark_filter: str | None
    count: int  # type: ignore[assignment]  # the column SOCs expect; tuple.count is unused
    """Occurrences folded into this row within the rule's ``dedup_window`` (1: just this)."""
    first_ts: float
    last_ts: float
    uids: list[str]
    """The flows of those occurrences (at most 20; ``uids_omitted`` counts the rest)."""
    uids_omitted: int
    references: list[str]
    """What the rule rests on: PS3 sections, CVE ids, ATT&CK techniques."""
    tshark_command: str | None
    """The exact tshark command for the finding's frames (CAPTURE: the capture file)."""
    carve_command: str | None
    """The command that writes every frame of the finding's flows to one pcapng."""
    suppressed: str | None
    """The ``[[suppress]]`` entry that matched (``suppress[N]``): written, never alerted."""
    sensor: str | None = None
    """The sensor that captured it (``--sensor``; null in a single-capture run)."""


class Asset(NamedTuple):
    """One DICOM endpoint (address, port for SCPs, role)."""

    ip: str
    port: I32 | None
    role: str
    ae_titles: list[str]
    implementation_class_uids: list[str]
    implementation_version_names: list[str]
    max_pdu: int | None
    manufacturers: list[str]
    models: list[str]
    stations: list[str]
    device_serial_numbers: list[str]
    software_versions: list[str]
    modalities: list[str]
    sop_classes: list[str]
    transfer_syntaxes: list[str]
    n_associations: int
    first_seen: float
    last_seen: float
    sensor: str | None = None
    """The sensor that captured it (``--sensor``; null in a single-capture run)."""


class Weird(NamedTuple):
    """One anomaly; ``uid`` is null for capture, link and IP level ones."""

    uid: str | None
    ts: float
    name: str
    detail: str
    source: str
    sensor: str | None = None
    """The sensor that captured it (``--sensor``; null in a single-capture run)."""


class Http(NamedTuple):
    """One HTTP request/response exchange (Zeek's http.log habit). Query values, passwords and
    tokens are never written: query parameter names only, the username as a keyed hash."""

    uid: str
    ts: float
    trans_depth: I32
    """The exchange's number in its connection, from 1."""
    method: str | None
    host: str | None
    uri: str | None
    """The path, without the query."""
    query_keys: list[str]
    version: str | None
    status: I32 | None
    reason: str | None
    request_body_bytes: int
    response_body_bytes: int
    request_content_type: str | None
    response_content_type: str | None
    user_agent: str | None
    auth_scheme: str | None
    username_hash: str | None
    dicomweb: str | None
    """The DICOMweb service (QIDO-RS, WADO-RS, WADO-URI, STOW-RS, UPS-RS, other) or null."""
    complete: bool
    sensor: str | None = None
    """The sensor that captured it (``--sensor``; null in a single-capture run)."""


class DicomWeb(NamedTuple):
    """One DICOMweb transaction (PS3.18); ``uid`` + ``trans_depth`` join ``http``."""

    uid: str
    ts: float
    trans_depth: I32
    service: str
    level: str | None
    study_instance_uid: str | None
    series_instance_uid: str | None
    sop_instance_uid: str | None
    resource: str | None
    query_attributes: list[str]
    n_results: int | None
    n_instances: int
    instance_bytes: int
    sop_classes: list[str]
    transfer_syntaxes: list[str]
    status: I32 | None
    executable_preambles: I32
    sensor: str | None = None
    """The sensor that captured it (``--sensor``; null in a single-capture run)."""


class Exported(NamedTuple):
    """One object written by ``export`` (its manifest); ``uid`` + ``message_id`` join ``dimse``.
    ``reason`` says why an object is partial; ``missing`` where its bytes are missing, as
    ``<dataset offset>+<stream bytes lost>`` (gaps are never filled)."""

    uid: str
    ts: float
    message_id: I32 | None
    direction: str
    sop_class_uid: str | None
    sop_instance_uid: str | None
    transfer_syntax: str | None
    source_ae: str | None
    patient_key: str | None
    path: str | None
    file_bytes: int
    dataset_bytes: int
    sha256: str | None
    complete: bool
    reason: str | None
    missing: list[str]
    deidentified: bool
    sensor: str | None = None
    """The sensor that captured it (``--sensor``; null in a single-capture run)."""


class Stats(NamedTuple):
    """One live stats interval. ``packets``/``wire_bytes``/``lag`` (the largest delay between a
    packet's capture and its decoding) cover the interval; ``dumpcap_*`` are cumulative and
    count the runs that have ended (dumpcap reports drops when it stops); ``kernel_*`` are the
    interval's increase of the interfaces' own counters; ``gap_seconds`` is time without
    capture (restarts)."""

    ts: float
    interval: float
    packets: int
    wire_bytes: int
    packets_total: int
    queued: int
    lag: float
    open_flows: int
    dicom_flows: int
    associations: int
    findings: int
    dumpcap_runs: int
    dumpcap_restarts: int
    dumpcap_received: int
    dumpcap_dropped: int
    kernel_rx_dropped: int
    kernel_rx_missed: int
    gap_seconds: float
    rss_mb: float


RECORDS: dict[str, type[tuple[Any, ...]]] = {
    "conn": Conn,
    "dicom_assoc": DicomAssoc,
    "dicom_context": DicomContext,
    "dimse": Dimse,
    "dicom_object": DicomObject,
    "phi": Phi,
    "finding": FindingRow,
    "asset": Asset,
    "weird": Weird,
    "http": Http,
    "dicomweb": DicomWeb,
}
"""The tables of every run, in output order."""

TABLES: dict[str, Schema] = {name: schema_of(rec) for name, rec in RECORDS.items()}
STATS: Schema = schema_of(Stats)
LIVE_TABLES: dict[str, Schema] = {"stats": STATS}
EXPORT_TABLES: dict[str, Schema] = {"exported": schema_of(Exported)}
"""Tables only ``export`` writes (beside every table of ``analyze``)."""
"""Tables only ``live`` writes (as part files)."""
