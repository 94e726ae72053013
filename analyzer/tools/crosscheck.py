"""``dicom-analyzer crosscheck CAPTURE``: our decoding next to Wireshark's DICOM dissector.

Wireshark runs through pyshark with ``-o dicom.tag_tree:TRUE`` and DICOM forced (decode-as)
on every port where we found DICOM. Per flow, both sides are reduced to the same facts:
PDU type counts, AE titles, presentation contexts (proposed abstract syntaxes, results) and
DIMSE commands (command field, message id, message id responded, status) per direction.
A flow Wireshark decodes no DICOM in is listed as unchecked, never as agreement.

HTTP flows are checked the same way against Wireshark's HTTP dissector (HTTP forced on the
ports where we found it): per flow, the requests (method, path, query parameter names) and
the response status codes, in order.
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import polars as pl

from analyzer.capture import open_inputs
from analyzer.config import Config
from analyzer.dicom.consts import PDU_NAMES
from analyzer.errors import InputError
from analyzer.logs.observer import DicomObserver
from analyzer.logs.views import AssocView
from analyzer.protocols.service import DICOM, HTTP
from analyzer.run.pipeline import run_analysis
from analyzer.run.progress import Progress

_ESCAPE = re.compile(r"\\x[0-9a-fA-F]{1,2}")
Endpoint = tuple[str, int]
FlowKey = frozenset[Endpoint]
Command = tuple[int | None, int | None, int | None, int | None]
"""(command field, message id, message id responded, status)"""


@dataclass
class FlowFacts:
    pdus: Counter[int] = field(default_factory=Counter)
    calling_ae: str | None = None
    called_ae: str | None = None
    proposed: set[tuple[int, str]] = field(default_factory=set)
    results: set[tuple[int, int]] = field(default_factory=set)
    commands: dict[Endpoint, list[Command]] = field(default_factory=dict)
    client: Endpoint | None = None
    damaged: bool = False
    """Bytes of the flow were not captured, or it ended inside a PDU: Wireshark decodes
    less there, so its facts need only be a subset of ours."""


@dataclass
class HttpFacts:
    requests: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)
    """(method, path, query parameter names) in wire order."""
    statuses: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Disagreement:
    flow: str
    what: str
    ours: str
    wireshark: str


# -- our side -------------------------------------------------------------------------


def our_facts(
    capture: str, config: Config
) -> tuple[dict[FlowKey, FlowFacts], set[int], dict[FlowKey, HttpFacts], set[int]]:
    pdu_counts: dict[str, Counter[int]] = {}

    class Recording(DicomObserver):
        def ended(self, a: AssocView, reason: str) -> None:
            pdu_counts[a.uid] = Counter(a.pdu_counts)

    readers, _ = open_inputs([capture])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        run_analysis(
            config,
            readers,
            out,
            "parquet",
            Progress(None, enabled=False),
            observers=[Recording()],
        )
        every = pl.read_parquet(out / "conn.parquet")
        conn = every.filter(pl.col("service") == DICOM)
        http_facts, http_ports = _our_http(every, pl.read_parquet(out / "http.parquet"))
        assoc = pl.read_parquet(out / "dicom_assoc.parquet")
        ctx = pl.read_parquet(out / "dicom_context.parquet")
        dimse = pl.read_parquet(out / "dimse.parquet")
        cut = set(
            pl.read_parquet(out / "weird.parquet")
            .filter(
                pl.col("name").is_in(
                    ["dicom_pdu_incomplete", "dicom_message_incomplete", "dicom_pdu_truncated"]
                )
            )["uid"]
            .to_list()
        )
    facts: dict[FlowKey, FlowFacts] = {}
    ports: set[int] = set()
    for row in conn.iter_rows(named=True):
        orig, resp = (row["orig_h"], row["orig_p"]), (row["resp_h"], row["resp_p"])
        f = facts[frozenset((orig, resp))] = FlowFacts(
            client=orig, damaged=row["missed_bytes"] > 0 or row["uid"] in cut
        )
        ports.add(row["resp_p"])
        f.pdus = pdu_counts.get(row["uid"], Counter())
        a = assoc.filter(pl.col("uid") == row["uid"])
        if a.height:
            f.calling_ae, f.called_ae = a["calling_ae"][0], a["called_ae"][0]
        for c in ctx.filter(pl.col("uid") == row["uid"]).iter_rows(named=True):
            if c["abstract_syntax_uid"] is not None:
                f.proposed.add((c["context_id"], c["abstract_syntax_uid"]))
            if c["result_code"] is not None:
                f.results.add((c["context_id"], c["result_code"]))
        # rows come out as messages complete; the wire order is their start time
        for m in (
            dimse.filter(pl.col("uid") == row["uid"])
            .sort("ts", maintain_order=True)
            .iter_rows(named=True)
        ):
            side = orig if m["direction"] == "orig" else resp
            f.commands.setdefault(side, []).append(
                (m["command_field"], m["message_id"], m["message_id_responded"], m["status"])
            )
    return facts, ports, http_facts, http_ports


def _our_http(conn: pl.DataFrame, http: pl.DataFrame) -> tuple[dict[FlowKey, HttpFacts], set[int]]:
    facts: dict[FlowKey, HttpFacts] = {}
    ports: set[int] = set()
    for row in conn.filter(pl.col("service") == HTTP).iter_rows(named=True):
        key = frozenset(((row["orig_h"], row["orig_p"]), (row["resp_h"], row["resp_p"])))
        f = facts[key] = HttpFacts()
        ports.add(row["resp_p"])
        for x in http.filter(pl.col("uid") == row["uid"]).sort("trans_depth").iter_rows(named=True):
            f.requests.append((x["method"], x["uri"], tuple(x["query_keys"])))
            if x["status"] is not None:
                f.statuses.append(x["status"])
    return facts, ports


# -- Wireshark's side -----------------------------------------------------------------


def _uid_shown(show: str) -> str:
    """The UID in Wireshark's display of it: 'CT Image Storage (1.2.840...)' or the bare value."""
    show = show.strip()
    if show.endswith(")") and " (" in show:
        return show[show.rindex(" (") + 2 : -1]
    return show


def _printable(text: str | None) -> str | None:
    """AE titles compared on printable characters: Wireshark escapes control bytes for display."""
    if text is None:
        return None
    text = _ESCAPE.sub("", text)  # Wireshark shows byte 0x01 as the four characters \x1
    return "".join(ch for ch in text if ch.isalnum() or ch in " _-.").strip()


def _fields(layer: Any, name: str) -> list[Any]:
    """All occurrences of a field in one dissected PDU (pyshark XML layer), in order."""
    f = layer.get_field(name)
    return list(f.all_fields) if f is not None else []


def _layer_facts(layer: Any, facts: FlowFacts, src: Endpoint) -> None:
    """Fold one PDU as Wireshark dissected it into ``facts``."""
    for t in _fields(layer, "pdu_type"):
        facts.pdus[int(t.show, 16)] += 1
    for f in _fields(layer, "assoc_ae_calling"):
        facts.calling_ae = f.show.strip()
    for f in _fields(layer, "assoc_ae_called"):
        facts.called_ae = f.show.strip()
    ids = [int(f.show, 0) for f in _fields(layer, "pctx_id")]
    abstracts = [_uid_shown(f.show) for f in _fields(layer, "pctx_abss_syntax")]
    results = [int(f.show, 0) for f in _fields(layer, "pctx_result")]
    if abstracts and len(abstracts) == len(ids):
        facts.proposed |= {(i, uid) for i, uid in zip(ids, abstracts, strict=True) if uid}
    if results and len(results) == len(ids):
        facts.results |= set(zip(ids, results, strict=True))
    # command elements are Implicit VR LE: a tag's value starts 8 bytes after the tag
    values = {int(v.pos): int(v.show) for v in _fields(layer, "tag_value_16u")}
    command: dict[int, int] = {}
    for tag in _fields(layer, "tag"):
        number = int(tag.show, 16)
        if number >> 16 != 0:
            continue
        if number == 0 and command:
            facts.commands.setdefault(src, []).append(_command(command))
            command = {}
        value = values.get(int(tag.pos) + 8)
        command[number] = value if value is not None else -1
    if command:
        facts.commands.setdefault(src, []).append(_command(command))


def _command(elements: dict[int, int]) -> Command:
    g = elements.get
    return (g(0x0100), g(0x0110), g(0x0120), g(0x0900))


def _until_tshark_stops(cap: Any) -> Any:
    """Packets until tshark ends; a damaged capture makes tshark exit non-zero after its
    last good packet, which is the end of Wireshark's view, not an error of ours."""
    from pyshark.capture.capture import TSharkCrashException

    try:
        yield from cap
    except TSharkCrashException:
        return


def wireshark_facts(capture: str, ports: set[int]) -> dict[FlowKey, FlowFacts]:
    import pyshark

    decode_as = {f"tcp.port=={p}": "dicom" for p in sorted(ports)}
    cap = pyshark.FileCapture(
        capture,
        decode_as=decode_as,
        display_filter="dicom",
        keep_packets=False,
        custom_parameters=["-o", "dicom.tag_tree:TRUE"],
    )
    facts: dict[FlowKey, FlowFacts] = {}
    try:
        for pkt in _until_tshark_stops(cap):
            ip = pkt.ipv6 if hasattr(pkt, "ipv6") else pkt.ip
            src: Endpoint = (str(ip.src), int(pkt.tcp.srcport))
            dst: Endpoint = (str(ip.dst), int(pkt.tcp.dstport))
            f = facts.setdefault(frozenset((src, dst)), FlowFacts())
            for layer in pkt.get_multiple_layers("dicom"):
                _layer_facts(layer, f, src)
    finally:
        _close(cap)
    return facts


def wireshark_http_facts(capture: str, ports: set[int]) -> dict[FlowKey, HttpFacts]:
    import pyshark

    cap = pyshark.FileCapture(
        capture,
        decode_as={f"tcp.port=={p}": "http" for p in sorted(ports)},
        display_filter="http",
        keep_packets=False,
    )
    facts: dict[FlowKey, HttpFacts] = {}
    try:
        for pkt in _until_tshark_stops(cap):
            ip = pkt.ipv6 if hasattr(pkt, "ipv6") else pkt.ip
            src: Endpoint = (str(ip.src), int(pkt.tcp.srcport))
            dst: Endpoint = (str(ip.dst), int(pkt.tcp.dstport))
            f = facts.setdefault(frozenset((src, dst)), HttpFacts())
            for layer in pkt.get_multiple_layers("http"):
                method = layer.get_field("request_method")
                if method is not None:
                    uri = urlsplit(str(layer.get_field("request_uri")))
                    keys = tuple(k for k, _ in parse_qsl(uri.query, keep_blank_values=True))
                    f.requests.append((str(method), unquote(uri.path), keys))
                code = layer.get_field("response_code")
                if code is not None:
                    f.statuses.append(int(code))
    finally:
        _close(cap)
    return facts


def compare_http(
    ours: dict[FlowKey, HttpFacts], theirs: dict[FlowKey, HttpFacts]
) -> tuple[list[Disagreement], list[str]]:
    out: list[Disagreement] = []
    unchecked: list[str] = []
    for key in sorted(ours, key=lambda k: sorted(k)):
        name = " <-> ".join(f"{h}:{p}" for h, p in sorted(key))
        o, w = ours[key], theirs.get(key)
        if w is None or not (w.requests or w.statuses):
            unchecked.append(name)
            continue
        if o.requests != w.requests:
            out.append(Disagreement(name, "HTTP requests", _fmt(o.requests), _fmt(w.requests)))
        if o.statuses != w.statuses:
            out.append(Disagreement(name, "HTTP status codes", _fmt(o.statuses), _fmt(w.statuses)))
    return out, unchecked


def _close(cap: Any) -> None:
    from pyshark.capture.capture import TSharkCrashException

    try:
        cap.close()
    except TSharkCrashException:
        # tshark's non-zero exit on a cut-off file; pyshark keeps the process listed and
        # would raise again from __del__ unless the list is emptied
        cap._running_processes.clear()


# -- comparison -----------------------------------------------------------------------


def _subsequence(part: list[Command], whole: list[Command]) -> bool:
    it = iter(whole)
    return all(any(c == w for w in it) for c in part)


def compare(
    ours: dict[FlowKey, FlowFacts], theirs: dict[FlowKey, FlowFacts]
) -> tuple[list[Disagreement], list[str]]:
    """Every fact Wireshark decoded must be ours too; on undamaged flows, exactly ours."""
    out: list[Disagreement] = []
    unchecked: list[str] = []
    for key in sorted(set(ours) | set(theirs), key=lambda k: sorted(k)):
        name = " <-> ".join(f"{h}:{p}" for h, p in sorted(key))
        o, w = ours.get(key), theirs.get(key)
        if w is None or not w.pdus:
            unchecked.append(name)
            continue
        if o is None:
            out.append(Disagreement(name, "flow", "not DICOM", f"{sum(w.pdus.values())} PDUs"))
            continue
        exact = not o.damaged
        for ptype in sorted(set(o.pdus) | set(w.pdus)):
            if o.pdus[ptype] != w.pdus[ptype] and (exact or o.pdus[ptype] < w.pdus[ptype]):
                out.append(
                    Disagreement(
                        name,
                        f"{PDU_NAMES.get(ptype, ptype)} count",
                        str(o.pdus[ptype]),
                        str(w.pdus[ptype]),
                    )
                )
        for what, a, b in (
            ("calling AE", o.calling_ae, w.calling_ae),
            ("called AE", o.called_ae, w.called_ae),
        ):
            if b is not None and _printable(a) != _printable(b):
                out.append(Disagreement(name, what, str(a), str(b)))
        for what, mine, wire in (
            ("proposed contexts", o.proposed, w.proposed),
            ("context results", o.results, w.results),
        ):
            if wire and (mine != wire if exact else not wire <= mine):
                out.append(Disagreement(name, what, _fmt(mine - wire), _fmt(wire - mine)))
        for side in sorted(set(o.commands) | set(w.commands)):
            a_cmds, b_cmds = o.commands.get(side, []), w.commands.get(side, [])
            if b_cmds and (a_cmds != b_cmds if exact else not _subsequence(b_cmds, a_cmds)):
                out.append(
                    Disagreement(
                        name, f"commands from {side[0]}:{side[1]}", _fmt(a_cmds), _fmt(b_cmds)
                    )
                )
    return out, unchecked


def _fmt(items: Any) -> str:
    return ", ".join(str(i) for i in sorted(items, key=str)) if items else "-"


def crosscheck(capture: str, config: Config) -> tuple[list[Disagreement], list[str], int]:
    path = Path(capture)
    if not path.exists():
        raise InputError(f"{capture}: no such file or directory")
    if not path.is_file():
        raise InputError(f"{capture}: crosscheck takes one capture file, not a directory")
    ours, ports, ours_http, http_ports = our_facts(capture, config)
    theirs = wireshark_facts(capture, ports) if ports else {}
    disagreements, unchecked = compare(ours, theirs)
    if ours_http:
        more, not_checked = compare_http(ours_http, wireshark_http_facts(capture, http_ports))
        disagreements += more
        unchecked += not_checked
    return disagreements, unchecked, len(ours) + len(ours_http)
