"""Column contracts of the output tables. ``ts`` is always epoch seconds (Zeek style)."""

from __future__ import annotations

import polars as pl

Schema = dict[str, pl.DataType]

CONN: Schema = {
    "uid": pl.String(),
    "ts": pl.Float64(),
    "orig_h": pl.String(),
    "orig_p": pl.Int32(),
    "resp_h": pl.String(),
    "resp_p": pl.Int32(),
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

TABLES: dict[str, Schema] = {"conn": CONN, "weird": WEIRD}
