"""One self-contained HTML report from an output directory.

Everything is inline: CSS in a <style>, plots as PNG data: URLs, no script. A
Content-Security-Policy meta tag forbids the page from loading anything from anywhere, so even
a browser that found a URL in it would not fetch it. Every value from the tables is escaped.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
from collections.abc import Callable, Iterable
from html import escape
from pathlib import Path
from typing import Any

import polars as pl
from matplotlib.figure import Figure

from analyzer import __version__
from analyzer.config import Config
from analyzer.errors import OutputError
from analyzer.report import plots
from analyzer.report.load import Tables, load_tables
from analyzer.report.summary import Summary, summarize, trust_test

MAX_FINDINGS = 500
MAX_ASSETS = 500
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#08306b;color:#fff;padding:18px 32px}
header h1{margin:0 0 4px;font-size:26px}
header p{margin:0;opacity:.85}
main{padding:12px 32px 48px;max-width:1400px}
h2{border-bottom:2px solid #08306b;padding-bottom:4px;margin-top:32px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 16px;min-width:150px}
.card b{display:block;font-size:24px}
.card span{color:#555;font-size:13px}
.sev{display:inline-block;border-radius:3px;padding:1px 6px;font-size:12px;color:#fff}
.sev-critical{background:#7f0000}.sev-high{background:#d7301f}.sev-medium{background:#e6550d}
.sev-low{background:#b58b00}.sev-info{background:#777}
table{border-collapse:collapse;background:#fff;font-size:13px;width:100%}
th,td{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#eef2f7}
code{font-size:12px;background:#f1f1f1;padding:1px 3px;word-break:break-all}
pre{white-space:pre-wrap;font-size:12px;margin:4px 0}
figure{margin:16px 0;background:#fff;border:1px solid #ddd;padding:8px}
figure img{max-width:100%}
figcaption{color:#555;font-size:13px}
.note{background:#fff8e1;border-left:4px solid #e6a700;padding:8px 12px}
"""


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return escape(", ".join(str(v) for v in value))
    if isinstance(value, float):
        return escape(f"{value:,.3f}")
    return escape(str(value))


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _card(value: str, label: str) -> str:
    return f'<div class="card"><b>{escape(value)}</b><span>{escape(label)}</span></div>'


def _summary_html(s: Summary, tables: Tables) -> str:
    share = s.cleartext_share
    sev = ", ".join(f"{s.findings[k]} {k}" for k in plots.SEVERITIES if k in s.findings) or "none"
    cards = [
        _card(f"{s.hosts:,}", "DICOM hosts"),
        _card(f"{len(s.untrusted_hosts):,}", "outside trusted networks"),
        _card(f"{s.ae_titles:,}", "AE titles"),
        _card(f"{s.associations:,}", "associations"),
        _card(f"{s.dimse:,}", "DIMSE messages"),
        _card(f"{s.objects:,}", "datasets on the wire"),
        _card("-" if share is None else f"{share:.0%}", "DICOM connections in cleartext"),
        _card(f"{s.phi_values:,}", "PHI values in cleartext"),
        _card(f"{s.phi_patients:,}", "distinct patients exposed"),
        _card(f"{sum(s.findings.values()):,}", "findings"),
    ]
    lines = [
        f"<p>{s.flows:,} TCP connections from {_when(s.first_ts)} to {_when(s.last_ts)}; "
        f"{s.dicom_flows:,} carried DICOM in cleartext and {s.tls_on_dicom_ports:,} used TLS "
        "on a DICOM port.</p>",
        f"<p>Associations: {escape(', '.join(f'{n} {k}' for k, n in s.by_result.items()) or 'none')}. "
        f"Findings by severity: {escape(sev)}. Anomalies: {s.anomalies:,}.</p>",
    ]
    if s.phi_values:
        lines.append(
            f"<p>PHI crossed the wire in cleartext: {s.phi_values:,} values of "
            f"{s.phi_attributes} attributes, {s.phi_patients:,} distinct patients, in "
            f"{s.phi_flows:,} connections, between hosts {escape(', '.join(s.phi_hosts[:20]))}"
            f"{' …' if len(s.phi_hosts) > 20 else ''}.</p>"
        )
    if s.untrusted_hosts:
        lines.append(
            "<p>Hosts outside the trusted networks: "
            f"{escape(', '.join(s.untrusted_hosts[:20]))}{' …' if len(s.untrusted_hosts) > 20 else ''}.</p>"
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
            f"<p>Live capture: {h['packets']:,} packets, dumpcap dropped {h['dropped']:,}, the "
            f"kernel {h['kernel']:,}; {h['restarts']} dumpcap restart(s), {h['gap']:.1f} s "
            f"without capture; largest lag {h['lag']:.2f} s.</p>"
        )
    if not tables.has_dicom:
        lines.insert(
            0,
            '<p class="note">No DICOM traffic was found in these tables: nothing below is about '
            "DICOM. Check that the capture covers the PACS and its clients (any port is "
            "recognised by content).</p>",
        )
    return f'<div class="cards">{"".join(cards)}</div>' + "".join(lines)


def _findings_html(finding: pl.DataFrame) -> tuple[str, str]:
    """The findings by rule, and every finding (most severe first, capped)."""
    if finding.height == 0:
        return "<p>No findings.</p>", "<p>No findings.</p>"
    order = {s: i for i, s in enumerate(plots.SEVERITIES)}
    frame = finding.with_columns(
        _rank=pl.col("severity").replace_strict(order, default=len(order), return_dtype=pl.Int32)
    ).sort(["_rank", "ts"])
    by_rule = (
        frame.group_by("rule", "severity", "_rank", "title")
        .agg(n=pl.len())
        .sort(["_rank", "n"], descending=[False, True])
    )
    overview = _table(
        ["severity", "rule", "title", "count"],
        (
            [
                f'<span class="sev sev-{escape(sev)}">{escape(sev)}</span>',
                _cell(rule),
                _cell(title),
                f"{n:,}",
            ]
            for rule, sev, _, title, n in by_rule.iter_rows()
        ),
    )
    rows = []
    for r in frame.head(MAX_FINDINGS).iter_rows(named=True):
        try:
            evidence = json.dumps(json.loads(r["evidence"] or "{}"), indent=1, ensure_ascii=False)
        except ValueError:
            evidence = r["evidence"] or ""
        rows.append(
            [
                escape(_when(r["ts"])),
                f'<span class="sev sev-{escape(r["severity"] or "info")}">{_cell(r["severity"])}</span>',
                f"<b>{_cell(r['rule'])}</b><br>{_cell(r['title'])}",
                _cell(r["detail"]),
                f"{_cell(r['orig_h'])} → {_cell(r['resp_h'])}<br>{_cell(r['calling_ae'])} → {_cell(r['called_ae'])}",
                f"<details><summary>evidence</summary><pre>{escape(evidence)}</pre></details>",
                f"<code>{_cell(r['wireshark_filter'])}</code>",
            ]
        )
    more = (
        f"<p>… and {finding.height - MAX_FINDINGS:,} more in the finding table.</p>"
        if finding.height > MAX_FINDINGS
        else ""
    )
    details = _table(
        ["time", "severity", "rule", "detail", "hosts / AE titles", "evidence", "Wireshark filter"],
        rows,
    )
    return overview, details + more


def _assets_html(asset: pl.DataFrame, trusted: Callable[[str], bool]) -> str:
    if asset.height == 0:
        return "<p>No DICOM endpoints.</p>"
    cols = [
        "ip", "port", "role", "ae_titles", "implementation_version_names", "manufacturers",
        "models", "modalities", "software_versions", "n_associations", "first_seen", "last_seen",
    ]  # fmt: skip
    frame = asset.sort(["n_associations", "ip"], descending=[True, False], nulls_last=True)
    rows = []
    for r in frame.head(MAX_ASSETS).iter_rows(named=True):
        cells = []
        for c in cols:
            v = r[c]
            if c in ("first_seen", "last_seen"):
                cells.append(escape(_when(v)))
            elif c == "ip":
                flag = "" if trusted(v) else ' <span class="sev sev-high">untrusted</span>'
                cells.append(_cell(v) + flag)
            else:
                cells.append(_cell(v))
        rows.append(cells)
    more = (
        f"<p>… and {asset.height - MAX_ASSETS:,} more in the asset table.</p>"
        if asset.height > MAX_ASSETS
        else ""
    )
    return _table([c.replace("_", " ") for c in cols], rows) + more


def _anomalies_html(weird: pl.DataFrame) -> str:
    if weird.height == 0:
        return "<p>No anomalies.</p>"
    counts = weird.group_by("source", "name").len().sort("len", descending=True)
    return _table(
        ["source", "anomaly", "rows"],
        ([_cell(s), _cell(n), f"{c:,}"] for s, n, c in counts.iter_rows()),
    )


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
    ]  # fmt: skip


def render_report(tables: Tables, config: Config, source: str = "") -> str:
    """The whole report as one HTML string."""
    trusted = trust_test(config.trusted_networks)
    summary = summarize(tables, trusted, config.dicom_ports)
    figures = "".join(
        f'<figure><img alt="{escape(caption)}" src="{_png(fig)}"><figcaption>{escape(caption)}'
        "</figcaption></figure>"
        for caption, fig in _plots(tables, trusted)
    )
    by_rule, every = _findings_html(tables["finding"])
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>DICOM traffic report</title>"
        f"<style>{STYLE}</style></head><body>"
        "<header><h1>DICOM traffic report</h1>"
        f"<p>{escape(source)} · generated {generated} by dicom-analyzer {__version__}</p></header>"
        "<main>"
        f'<section id="summary"><h2>Summary</h2>{_summary_html(summary, tables)}</section>'
        f'<section id="findings"><h2>Findings by rule</h2>{by_rule}</section>'
        f'<section id="plots"><h2>Pictures</h2>{figures}</section>'
        f'<section id="finding-list"><h2>Every finding</h2>{every}</section>'
        f'<section id="assets"><h2>Asset inventory</h2>{_assets_html(tables["asset"], trusted)}</section>'
        f'<section id="anomalies"><h2>Anomalies</h2>{_anomalies_html(tables["weird"])}</section>'
        "</main></body></html>\n"
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
