"""One self-contained HTML report from an output directory.

Everything is inline: CSS in a <style>, plots as PNG data: URLs, no script. A
Content-Security-Policy meta tag forbids the page from loading anything from anywhere, so even
a browser that found a URL in it would not fetch it. The page is a Jinja2 template with
autoescaping on: every value from the tables is escaped by the engine, none by hand.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import polars as pl
from matplotlib.figure import Figure

from analyzer import __version__
from analyzer.config import Config
from analyzer.errors import OutputError
from analyzer.report import plots
from analyzer.report.headline import Summary, summarize, trust_test
from analyzer.report.load import Tables, load_tables

MAX_FINDINGS = 500
MAX_ASSETS = 500
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

SEVERITY_LABELS = frozenset(plots.SEVERITIES)
_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("analyzer.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)
"""Autoescaping everywhere: no value from the tables reaches the page unescaped."""


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _cell(value: Any) -> str:
    """A table value as text (the template escapes it)."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:,.3f}"
    return str(value)


def _severity(label: str | None) -> str:
    """A severity that can name a CSS class: one of ours, never a table's free text."""
    return label if label in SEVERITY_LABELS else "info"


def _summary(s: Summary, tables: Tables) -> dict[str, Any]:
    share = s.cleartext_share
    sev = ", ".join(f"{s.findings[k]} {k}" for k in plots.SEVERITIES if k in s.findings) or "none"
    cards = [
        (f"{s.hosts:,}", "DICOM hosts"),
        (f"{len(s.untrusted_hosts):,}", "outside trusted networks"),
        (f"{s.ae_titles:,}", "AE titles"),
        (f"{s.associations:,}", "associations"),
        (f"{s.dimse:,}", "DIMSE messages"),
        (f"{s.objects:,}", "datasets on the wire"),
        ("-" if share is None else f"{share:.0%}", "DICOM connections in cleartext"),
        (f"{s.phi_values:,}", "PHI values in cleartext"),
        (f"{s.phi_patients:,}", "distinct patients exposed"),
        (f"{sum(s.findings.values()):,}", "findings"),
    ]
    http, web = tables["http"], tables["dicomweb"]
    if http.height:
        cards.insert(5, (f"{web.height:,}", "DICOMweb transactions"))
    results = ", ".join(f"{n} {k}" for k, n in s.by_result.items()) or "none"
    lines = [
        f"{s.flows:,} TCP connections from {_when(s.first_ts)} to {_when(s.last_ts)}; "
        f"{s.dicom_flows:,} carried DICOM in cleartext and {s.tls_on_dicom_ports:,} used TLS "
        "on a DICOM port.",
        f"Associations: {results}. Findings by severity: {sev}. Anomalies: {s.anomalies:,}.",
    ]
    if s.phi_values:
        lines.append(
            f"PHI crossed the wire in cleartext: {s.phi_values:,} values of "
            f"{s.phi_attributes} attributes, {s.phi_patients:,} distinct patients, in "
            f"{s.phi_flows:,} connections, between hosts {', '.join(s.phi_hosts[:20])}"
            f"{' …' if len(s.phi_hosts) > 20 else ''}."
        )
    if http.height:
        services = ", ".join(
            f"{n} {k}" for k, n in sorted(web.group_by("service").len().iter_rows())
        )
        creds = http.filter(pl.col("auth_scheme").is_not_null()).height
        polyglots = int(web["executable_preambles"].sum() or 0) if web.height else 0
        lines.append(
            f"HTTP: {http.height:,} exchanges, {web.height:,} of them DICOMweb"
            f"{f' ({services})' if services else ''}; {creds:,} carried credentials in clear"
            + (f"; {polyglots} DICOM file(s) with an executable preamble." if polyglots else ".")
        )
    if s.untrusted_hosts:
        lines.append(
            "Hosts outside the trusted networks: "
            f"{', '.join(s.untrusted_hosts[:20])}{' …' if len(s.untrusted_hosts) > 20 else ''}."
        )
    stats = tables["stats"]
    if stats.height:  # a live run: say how complete the capture was
        h = (
            stats.select(
                packets=pl.col("packets_total").max(),
                dropped=pl.col("dumpcap_dropped").max(),
                kernel=(pl.col("kernel_rx_dropped") + pl.col("kernel_rx_missed")).sum(),
                restarts=pl.col("dumpcap_restarts").max(),
                gap=pl.col("gap_seconds").sum(),
                lag=pl.col("lag").max(),
            )
            .fill_null(0)
            .row(0, named=True)
        )
        lines.append(
            f"Live capture: {h['packets']:,} packets, dumpcap dropped {h['dropped']:,}, the "
            f"kernel {h['kernel']:,}; {h['restarts']} dumpcap restart(s), {h['gap']:.1f} s "
            f"without capture; largest lag {h['lag']:.2f} s."
        )
    return {"cards": cards, "lines": lines, "has_dicom": tables.has_dicom}


def _findings(finding: pl.DataFrame) -> dict[str, Any]:
    """The findings by rule, and every finding (most severe first, capped)."""
    if finding.height == 0:
        return {"by_rule": [], "findings": [], "more_findings": 0}
    order = {s: i for i, s in enumerate(plots.SEVERITIES)}
    frame = finding.with_columns(
        _rank=pl.col("severity").replace_strict(order, default=len(order), return_dtype=pl.Int32)
    ).sort(["_rank", "ts"])
    by_rule = [
        {"rule": rule, "severity": _severity(sev), "title": title, "n": f"{n:,}"}
        for rule, sev, _, title, n in frame.group_by("rule", "severity", "_rank", "title")
        .agg(n=pl.len())
        .sort(["_rank", "n"], descending=[False, True])
        .iter_rows()
    ]
    rows = []
    for r in frame.head(MAX_FINDINGS).iter_rows(named=True):
        try:
            evidence = json.dumps(json.loads(r["evidence"] or "{}"), indent=1, ensure_ascii=False)
        except ValueError:
            evidence = r["evidence"] or ""
        rows.append(
            {
                "when": _when(r["ts"]),
                "severity": _severity(r["severity"]),
                "evidence": evidence,
                "carve_command": _cell(r.get("carve_command")),
                **{k: _cell(r[k]) for k in (
                    "rule", "title", "detail", "orig_h", "resp_h", "calling_ae", "called_ae",
                    "wireshark_filter",
                )},
            }
        )  # fmt: skip
    more = max(finding.height - MAX_FINDINGS, 0)
    return {"by_rule": by_rule, "findings": rows, "more_findings": f"{more:,}" if more else 0}


ASSET_COLUMNS = [
    "ip", "port", "role", "ae_titles", "implementation_version_names", "manufacturers",
    "models", "modalities", "software_versions", "n_associations", "first_seen", "last_seen",
]  # fmt: skip


def _assets(asset: pl.DataFrame, trusted: Callable[[str], bool]) -> dict[str, Any]:
    frame = asset.sort(["n_associations", "ip"], descending=[True, False], nulls_last=True)
    rows = []
    for r in frame.head(MAX_ASSETS).iter_rows(named=True):
        cells = [
            _when(r[c]) if c in ("first_seen", "last_seen") else _cell(r[c]) for c in ASSET_COLUMNS
        ]
        rows.append({"cells": cells, "trusted": trusted(r["ip"])})
    more = max(asset.height - MAX_ASSETS, 0)
    return {
        "assets": rows,
        "asset_columns": [c.replace("_", " ") for c in ASSET_COLUMNS],
        "more_assets": f"{more:,}" if more else 0,
    }


def _anomalies(weird: pl.DataFrame) -> list[tuple[str, str, str]]:
    if weird.height == 0:
        return []
    counts = weird.group_by("source", "name").len().sort("len", descending=True)
    return [(_cell(s), _cell(n), f"{c:,}") for s, n, c in counts.iter_rows()]


def _plots(tables: Tables, trusted: Callable[[str], bool]) -> list[tuple[str, Figure]]:
    t = tables
    return [
        ("Who talks to whom. Red: a host outside the trusted networks.",
         plots.talk_graph(t["dicom_assoc"], t["conn"], trusted)),
        ("Findings by rule and severity, and over time.", plots.findings_overview(t["finding"])),
        ("PHI values seen in cleartext, by attribute and by connection (counts only, never values).",
         plots.phi_exposure(t["phi"], t["dicom_assoc"])),
        ("Bytes and datasets between AE titles.",
         plots.traffic_matrix(t["dicom_assoc"], t["conn"], t["dicom_object"], by="ae")),
        ("Bytes and datasets between hosts.",
         plots.traffic_matrix(t["dicom_assoc"], t["conn"], t["dicom_object"], by="host")),
        ("Associations over time per AE pair, coloured by result.",
         plots.association_timeline(t["dicom_assoc"], t["conn"])),
        ("DIMSE command mix and response status categories.", plots.dimse_mix(t["dimse"])),
        ("DICOMweb transactions by service and answer; HTTP exchanges by the credentials they "
         "carried in clear.", plots.dicomweb_activity(t["http"], t["dicomweb"])),
    ]  # fmt: skip


def render_report(tables: Tables, config: Config, source: str = "") -> str:
    """The whole report as one HTML string (the ``report.html.j2`` template, autoescaped)."""
    trusted = trust_test(config.trusted_networks)
    summary = summarize(tables, trusted, config.dicom_ports)
    return _ENV.get_template("report.html.j2").render(
        csp=markupsafe.Markup(CSP),  # our constant: its quotes stay quotes
        source=source,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        figures=[(caption, _png(fig)) for caption, fig in _plots(tables, trusted)],
        anomalies=_anomalies(tables["weird"]),
        **_summary(summary, tables),
        **_findings(tables["finding"]),
        **_assets(tables["asset"], trusted),
    )


def write_report(outdir: str | Path, target: str | Path, config: Config) -> Path:
    """Render the report of ``outdir`` into ``target`` (mode 0600, replaced atomically)."""
    tables = load_tables(outdir)
    html = render_report(tables, config, source=str(outdir))
    path = Path(target)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write report: {exc.strerror}") from None
    return path
