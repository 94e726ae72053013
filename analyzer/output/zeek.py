"""Tables as Zeek logs: ``--format zeek`` (Zeek's tab-separated ASCII logs) and ``zeek-json``
(Zeek's JSON logs, one object per line).

ASCII layout, as Zeek's ASCII writer makes it::

    #separator \\x09
    #set_separator  ,
    #empty_field    (empty)
    #unset_field    -
    #path   conn
    #open   2026-12-02-20-50-00
    #fields ts      uid     id.orig_h       id.orig_p       ...
    #types  time    string  addr    port    ...
    <rows>
    #close  2026-12-02-20-50-01

Conventions kept: ``ts`` first and ``uid`` second, the flow's endpoints as ``id.orig_h``,
``id.orig_p``, ``id.resp_h``, ``id.resp_p``; ``-`` for a missing value, ``(empty)`` for an empty
string or list, lists joined by ``,``; a tab, newline or ``,`` inside a value written as
``\\x09``, ``\\x0a``, ``\\x2c``, and a backslash as ``\\x5c`` (so that a reader that decodes
Zeek's escapes gets our values exactly, our own ``\\xNN`` for wire bytes included). Times are epoch seconds with six decimals.
"""

from __future__ import annotations

import json
import time
from typing import Any

import polars as pl

from analyzer.logs.records import Schema

RENAMES = {
    "orig_h": "id.orig_h",
    "orig_p": "id.orig_p",
    "resp_h": "id.resp_h",
    "resp_p": "id.resp_p",
}
TIMES = frozenset({"ts", "first_ts", "last_ts", "first_seen", "last_seen", "request_ts"})
INTERVALS = frozenset({"duration", "rtt"})
ADDRS = frozenset({"orig_h", "resp_h", "ip"})
PORTS = frozenset({"orig_p", "resp_p", "port"})


def fields(schema: Schema) -> list[str]:
    """Our column names in Zeek's order: ``ts``, ``uid``, then as the table has them."""
    names = list(schema)
    head = [n for n in ("ts", "uid") if n in schema]
    return head + [n for n in names if n not in head]


def zeek_type(name: str, dtype: pl.DataType) -> str:
    if name in TIMES:
        return "time"
    if name in INTERVALS:
        return "interval"
    if name in ADDRS:
        return "addr"
    if name in PORTS:
        return "port"
    if isinstance(dtype, pl.List):
        return "vector[string]"
    if dtype == pl.Boolean:
        return "bool"
    if dtype in (pl.Float32, pl.Float64):
        return "double"
    if dtype.is_integer():
        return "int"
    return "string"


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.localtime(t))


def header(path_name: str, schema: Schema) -> str:
    names = fields(schema)
    return "".join(
        (
            "#separator \\x09\n",
            "#set_separator\t,\n",
            "#empty_field\t(empty)\n",
            "#unset_field\t-\n",
            f"#path\t{path_name}\n",
            f"#open\t{_stamp(time.time())}\n",
            "#fields\t" + "\t".join(RENAMES.get(n, n) for n in names) + "\n",
            "#types\t" + "\t".join(zeek_type(n, schema[n]) for n in names) + "\n",
        )
    )


def footer() -> str:
    return f"#close\t{_stamp(time.time())}\n"


def _text(value: str, in_set: bool = False) -> str:
    # a backslash first: our own \xNN escapes of wire bytes must read back as written
    value = value.replace("\\", "\\x5c")
    value = value.replace("\t", "\\x09").replace("\n", "\\x0a").replace("\r", "\\x0d")
    if in_set:
        value = value.replace(",", "\\x2c")
    return value or "(empty)"


def _cell(name: str, value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "time" or kind == "interval":
        return f"{value:.6f}"
    if kind == "bool":
        return "T" if value else "F"
    if kind == "vector[string]":
        return ",".join(_text(str(v), True) for v in value) if value else "(empty)"
    if kind == "double":
        return repr(float(value))
    return _text(str(value))


def rows(frame: pl.DataFrame, schema: Schema) -> str:
    names = fields(schema)
    kinds = [zeek_type(n, schema[n]) for n in names]
    out = []
    for row in frame.select(names).iter_rows():
        out.append("\t".join(_cell(n, v, k) for n, v, k in zip(names, row, kinds, strict=True)))
    return "".join(line + "\n" for line in out)


def json_rows(frame: pl.DataFrame, schema: Schema) -> str:
    """Zeek's JSON log: field names as in the ASCII log, unset fields left out."""
    names = fields(schema)
    out = []
    for row in frame.select(names).iter_rows():
        obj = {RENAMES.get(n, n): v for n, v in zip(names, row, strict=True) if v is not None}
        out.append(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
    return "".join(line + "\n" for line in out)
