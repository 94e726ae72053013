"""Column contracts of the output tables. ``ts`` is always epoch seconds (Zeek style)."""

from __future__ import annotations

import polars as pl

Schema = dict[str, pl.DataType]

FLOW_ID: Schema = {
    "uid": pl.String(),
    "ts": pl.Float64(),
    "orig_h": pl.String(),
    "orig_p": pl.Int32(),
    "resp_h": pl.String(),
    "resp_p": pl.Int32(),
}
"""The columns that start every per-flow table: the flow uid, its first packet, its endpoints."""

CONN: Schema = {
    **FLOW_ID,
    "proto": pl.String(),
    "service": pl.String(),
    "duration": pl.Float64(),
    "orig_bytes": pl.Int64(),
    "resp_bytes": pl.Int64(),
    "conn_state": pl.String(),
    "missed_bytes": pl.Int64(),
    "history": pl.String(),
    "orig_pkts": pl.Int64(),
    "orig_ip_bytes": pl.Int64(),
    "resp_pkts": pl.Int64(),
    "resp_ip_bytes": pl.Int64(),
    "vlan": pl.Int32(),
    "end_reason": pl.String(),
}

WEIRD: Schema = {
    "uid": pl.String(),
    "ts": pl.Float64(),
    "name": pl.String(),
    "detail": pl.String(),
    "source": pl.String(),
}

DICOM_ASSOC: Schema = {
    **FLOW_ID,
    "calling_ae": pl.String(),
    "called_ae": pl.String(),
    "result": pl.String(),
    "reject_result": pl.String(),
    "reject_source": pl.String(),
    "reject_reason": pl.String(),
    "abort_source": pl.String(),
    "abort_reason": pl.String(),
    "user_identity_type": pl.Int32(),
    "user_identity_response_requested": pl.Boolean(),
    "user_identity_server_response": pl.Boolean(),
    "passcode_present": pl.Boolean(),
    "application_context": pl.String(),
    "implementation_class_uid": pl.String(),
    "implementation_version_name": pl.String(),
    "resp_implementation_class_uid": pl.String(),
    "resp_implementation_version_name": pl.String(),
    "max_pdu_orig": pl.Int64(),
    "max_pdu_resp": pl.Int64(),
    "n_contexts_proposed": pl.Int32(),
    "n_contexts_accepted": pl.Int32(),
    "end_state": pl.String(),
    "midstream": pl.Boolean(),
    "n_dimse": pl.Int64(),
}

DICOM_CONTEXT: Schema = {
    "uid": pl.String(),
    "context_id": pl.Int32(),
    "abstract_syntax_uid": pl.String(),
    "proposed_transfer_syntaxes": pl.List(pl.String()),
    "result": pl.String(),
    "result_code": pl.Int32(),
    "transfer_syntax_uid": pl.String(),
}

DIMSE: Schema = {
    "uid": pl.String(),
    "ts": pl.Float64(),
    "direction": pl.String(),
    "context_id": pl.Int32(),
    "command": pl.String(),
    "command_field": pl.Int32(),
    "message_id": pl.Int32(),
    "message_id_responded": pl.Int32(),
    "affected_sop_class_uid": pl.String(),
    "affected_sop_instance_uid": pl.String(),
    "requested_sop_class_uid": pl.String(),
    "requested_sop_instance_uid": pl.String(),
    "priority": pl.Int32(),
    "move_destination": pl.String(),
    "move_originator_ae": pl.String(),
    "move_originator_message_id": pl.Int32(),
    "status": pl.Int32(),
    "status_label": pl.String(),
    "status_category": pl.String(),
    "error_comment": pl.String(),
    "dataset_bytes": pl.Int64(),
    "n_remaining": pl.Int32(),
    "n_completed": pl.Int32(),
    "n_failed": pl.Int32(),
    "n_warning": pl.Int32(),
    "truncated": pl.Boolean(),
    "request_ts": pl.Float64(),
    "rtt": pl.Float64(),
}

DICOM_OBJECT: Schema = {
    "uid": pl.String(),
    "ts": pl.Float64(),
    "message_id": pl.Int32(),
    "direction": pl.String(),
    "command": pl.String(),
    "role": pl.String(),
    "sop_class_uid": pl.String(),
    "sop_instance_uid": pl.String(),
    "transfer_syntax_uid": pl.String(),
    "dataset_bytes": pl.Int64(),
    "n_elements": pl.Int32(),
    "truncated": pl.Boolean(),
    "phi_keywords": pl.List(pl.String()),
    "patient_key": pl.String(),
}

PHI: Schema = {
    "uid": pl.String(),
    "ts": pl.Float64(),
    "message_id": pl.Int32(),
    "direction": pl.String(),
    "tag": pl.String(),
    "keyword": pl.String(),
    "vr": pl.String(),
    "value": pl.String(),
    "value_hash": pl.String(),
    "value_length": pl.Int64(),
    "depth": pl.Int32(),
    "patient_key": pl.String(),
}

FINDING: Schema = {
    "uid": pl.String(),
    "ts": pl.Float64(),
    "rule": pl.String(),
    "severity": pl.String(),
    "title": pl.String(),
    "detail": pl.String(),
    "orig_h": pl.String(),
    "resp_h": pl.String(),
    "calling_ae": pl.String(),
    "called_ae": pl.String(),
    "evidence": pl.String(),
    "wireshark_filter": pl.String(),
}

ASSET: Schema = {
    "ip": pl.String(),
    "port": pl.Int32(),
    "role": pl.String(),
    "ae_titles": pl.List(pl.String()),
    "implementation_class_uids": pl.List(pl.String()),
    "implementation_version_names": pl.List(pl.String()),
    "max_pdu": pl.Int64(),
    "manufacturers": pl.List(pl.String()),
    "models": pl.List(pl.String()),
    "stations": pl.List(pl.String()),
    "device_serial_numbers": pl.List(pl.String()),
    "software_versions": pl.List(pl.String()),
    "modalities": pl.List(pl.String()),
    "sop_classes": pl.List(pl.String()),
    "transfer_syntaxes": pl.List(pl.String()),
    "n_associations": pl.Int64(),
    "first_seen": pl.Float64(),
    "last_seen": pl.Float64(),
}

TABLES: dict[str, Schema] = {
    "conn": CONN,
    "dicom_assoc": DICOM_ASSOC,
    "dicom_context": DICOM_CONTEXT,
    "dimse": DIMSE,
    "dicom_object": DICOM_OBJECT,
    "phi": PHI,
    "finding": FINDING,
    "asset": ASSET,
    "weird": WEIRD,
}

STATS: Schema = {
    "ts": pl.Float64(),
    "interval": pl.Float64(),
    "packets": pl.Int64(),
    "wire_bytes": pl.Int64(),
    "packets_total": pl.Int64(),
    "queued": pl.Int64(),
    "lag": pl.Float64(),
    "open_flows": pl.Int64(),
    "dicom_flows": pl.Int64(),
    "associations": pl.Int64(),
    "findings": pl.Int64(),
    "dumpcap_runs": pl.Int64(),
    "dumpcap_restarts": pl.Int64(),
    "dumpcap_received": pl.Int64(),
    "dumpcap_dropped": pl.Int64(),
    "kernel_rx_dropped": pl.Int64(),
    "kernel_rx_missed": pl.Int64(),
    "gap_seconds": pl.Float64(),
    "rss_mb": pl.Float64(),
}
"""One row per stats interval. ``packets``/``wire_bytes``/``lag`` (the largest delay between a
packet's capture and its decoding) cover the interval; ``dumpcap_*`` are cumulative and count
the runs that have ended (dumpcap reports drops when it stops); ``kernel_*`` are the interval's
increase of the interfaces' own counters; ``gap_seconds`` is time without capture (restarts)."""

LIVE_TABLES: dict[str, Schema] = {"stats": STATS}
"""Tables only ``live`` writes (as part files)."""
