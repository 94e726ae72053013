"""Plots of the output tables: one function per plot, polars frames in, a Figure out.

Every function uses matplotlib's object-oriented API (no pyplot state, safe in threads and
servers), copes with empty frames (the figure says "no data"), and keeps the ``top`` busiest
labels, folding the rest into one "other (n)" row, so that a network of 300 AEs stays as
readable as one of three. Labels are addresses, AE titles, attribute keywords, rule ids and
command names: never attribute values, so no plot carries PHI.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

SEVERITIES = ("critical", "high", "medium", "low", "info")
SEVERITY_COLORS = {
    "critical": "#7f0000",
    "high": "#d7301f",
    "medium": "#fc8d59",
    "low": "#fdcc8a",
    "info": "#bdbdbd",
}
RESULT_COLORS = {
    "accepted": "#2b8cbe",
    "rejected": "#d7301f",
    "aborted": "#fc8d59",
    "unknown": "#969696",
}
STATUS_COLORS = {
    "success": "#1a9850",
    "pending": "#91bfdb",
    "warning": "#fee090",
    "failure": "#d73027",
    "cancel": "#969696",
    "unknown": "#d9d9d9",
}
TRUSTED_COLOR = "#2b8cbe"
UNTRUSTED_COLOR = "#d7301f"
OTHER_COLOR = "#bdbdbd"
MAX_LABEL = 32


def _short(text: str, width: int = MAX_LABEL) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig


def _no_data(title: str, message: str = "no data") -> Figure:
    fig = _figure(6, 1.6)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.4, message, ha="center", va="center", color="#636363", transform=ax.transAxes)
    return fig


def _rows_height(n: int, per_row: float = 0.3, base: float = 1.6) -> float:
    return base + per_row * max(n, 1)


def top_other(frame: pl.DataFrame, key: str, weight: str, top: int) -> pl.DataFrame:
    """Sum ``weight`` per ``key``; keep the ``top`` heaviest keys and fold the rest into one
    ``other (n)`` row. Returned heaviest first, the ``other`` row last."""
    sums = (
        frame.group_by(key).agg(pl.col(weight).sum()).sort([weight, key], descending=[True, False])
    )
    if sums.height <= top:
        return sums
    head, tail = sums.head(top), sums.slice(top)
    other = pl.DataFrame(
        {key: [f"other ({tail.height})"], weight: [tail[weight].sum()]},
        schema={key: pl.String(), weight: sums.schema[weight]},
    )
    return pl.concat([head.with_columns(pl.col(key).cast(pl.String())), other])


def fold_top(
    frame: pl.DataFrame, key: str, weight: str, top: int
) -> tuple[pl.DataFrame, list[str], str]:
    """``frame`` with every ``key`` outside the ``top`` heaviest renamed to one ``other (n)``
    label; also the labels, heaviest first, and the other label ("" when nothing was folded)."""
    order = top_other(frame, key, weight, top)[key].to_list()
    other = order[-1] if frame[key].n_unique() > top else ""
    folded = frame.with_columns(
        pl.when(pl.col(key).is_in(order)).then(pl.col(key)).otherwise(pl.lit(other)).alias(key)
    )
    return folded, order, other


def _epoch_to_datetime(col: str) -> pl.Expr:
    return pl.from_epoch((pl.col(col) * 1e6).cast(pl.Int64), time_unit="us")


def _time_axis(ax: Axes) -> None:
    locator = AutoDateLocator(maxticks=8)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def _human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _ae_pair_labels(assoc: pl.DataFrame) -> pl.Expr:
    calling = pl.coalesce(pl.col("calling_ae"), pl.col("orig_h"))
    called = pl.coalesce(pl.col("called_ae"), pl.col("resp_h"))
    return pl.concat_str([calling, pl.lit(" → "), called])


def association_timeline(
    assoc: pl.DataFrame, conn: pl.DataFrame | None = None, top: int = 25
) -> Figure:
    """One row per AE pair (calling → called), one bar per association from its first to its
    last packet, coloured by result."""
    title = "Associations over time, per AE pair"
    if assoc.height == 0:
        return _no_data(title, "no DICOM associations")
    frame = assoc.select("uid", "ts", "result", pair=_ae_pair_labels(assoc))
    if conn is not None and conn.height:
        frame = frame.join(conn.select("uid", "duration"), on="uid", how="left")
    else:
        frame = frame.with_columns(duration=pl.lit(None, dtype=pl.Float64()))
    frame, order, _ = fold_top(frame.with_columns(n=pl.lit(1)), "pair", "n", top)
    frame = frame.with_columns(
        start=_epoch_to_datetime("ts"),
        end=_epoch_to_datetime("ts") + pl.duration(seconds=pl.col("duration").fill_null(0.0)),
    )
    fig = _figure(11, _rows_height(len(order)))
    ax = fig.add_subplot()
    ypos = {pair: i for i, pair in enumerate(order)}
    for result, color in RESULT_COLORS.items():
        part = frame.filter(pl.col("result").fill_null("unknown") == result)
        if part.height == 0:
            continue
        ys = [ypos[p] for p in part["pair"]]
        ax.hlines(ys, part["start"].to_numpy(), part["end"].to_numpy(), colors=color, lw=6)
        ax.scatter(part["start"].to_numpy(), ys, marker="|", s=120, color=color, label=result)
    ax.set_yticks(range(len(order)), [_short(p, 40) for p in order])
    ax.invert_yaxis()
    ax.set_ylim(len(order) - 0.5, -0.5)
    _time_axis(ax)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="result", frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return fig


def _pair_values(
    assoc: pl.DataFrame, conn: pl.DataFrame, objects: pl.DataFrame, by: str
) -> pl.DataFrame:
    src, dst = ("calling_ae", "called_ae") if by == "ae" else ("orig_h", "resp_h")
    base = assoc.select(
        "uid",
        src=pl.coalesce(pl.col(src), pl.col("orig_h")),
        dst=pl.coalesce(pl.col(dst), pl.col("resp_h")),
    )
    sizes = conn.select(
        "uid", nbytes=pl.col("orig_bytes").fill_null(0) + pl.col("resp_bytes").fill_null(0)
    )
    counts = objects.filter(pl.col("role") == "dataset").group_by("uid").agg(nobj=pl.len())
    return (
        base.join(sizes, on="uid", how="left")
        .join(counts, on="uid", how="left")
        .with_columns(pl.col("nbytes").fill_null(0), pl.col("nobj").fill_null(0).cast(pl.Int64))
    )


def _heatmap(
    ax: Axes, frame: pl.DataFrame, value: str, top: int, title: str, fmt: Callable[[float], str]
) -> None:
    folded, rows, _ = fold_top(frame, "src", value, top)
    folded, cols, _ = fold_top(folded, "dst", value, top)
    sums = folded.group_by("src", "dst").agg(pl.col(value).sum())
    grid = np.zeros((len(rows), len(cols)))
    ri = {r: i for i, r in enumerate(rows)}
    ci = {c: i for i, c in enumerate(cols)}
    for s, d, v in sums.iter_rows():
        grid[ri[s], ci[d]] += v
    shown = np.ma.masked_less_equal(grid, 0)
    if shown.count():
        image = ax.imshow(
            shown,
            cmap="viridis",
            aspect="auto",
            norm=LogNorm(vmin=max(grid[grid > 0].min(), 1), vmax=max(grid.max(), 1)),
        )
        ax.figure.colorbar(image, ax=ax, shrink=0.8)
    else:
        ax.imshow(np.zeros_like(grid), cmap="Greys", aspect="auto", vmin=0, vmax=1)
    ax.set_xticks(range(len(cols)), [_short(c, 24) for c in cols], rotation=90)
    ax.set_yticks(range(len(rows)), [_short(r, 24) for r in rows])
    ax.set_xlabel("called (server)")
    ax.set_ylabel("calling (client)")
    ax.set_title(title)
    if len(rows) <= 12 and len(cols) <= 12:
        for (i, j), v in np.ndenumerate(grid):
            if v > 0:
                ax.text(j, i, fmt(v), ha="center", va="center", fontsize=7, color="white")


def traffic_matrix(
    assoc: pl.DataFrame,
    conn: pl.DataFrame,
    objects: pl.DataFrame,
    by: str = "ae",
    top: int = 15,
) -> Figure:
    """Heatmaps of the bytes and of the objects (datasets stored or retrieved) that went from
    each calling AE (or client host, ``by="host"``) to each called one."""
    if by not in ("ae", "host"):
        raise ValueError("by must be 'ae' or 'host'")
    what = "AE titles" if by == "ae" else "hosts"
    if assoc.height == 0:
        return _no_data(f"Traffic between {what}", "no DICOM associations")
    frame = _pair_values(assoc, conn, objects, by)
    n = min(top, max(frame["src"].n_unique(), frame["dst"].n_unique())) + 1
    side = 3.2 + 0.32 * n
    fig = _figure(2 * side + 2.5, side + 1.0)
    left, right = fig.subplots(1, 2)
    _heatmap(left, frame, "nbytes", top, f"Bytes between {what}", _human_bytes)
    _heatmap(right, frame, "nobj", top, f"Objects between {what}", lambda v: f"{v:.0f}")
    return fig


def talk_graph(
    assoc: pl.DataFrame,
    conn: pl.DataFrame | None,
    trusted: Callable[[str], bool],
    top: int = 20,
) -> Figure:
    """Who talks to whom: clients on the left, servers (host:port) on the right, one edge per
    pair weighted by associations; hosts outside the trusted networks in red."""
    title = "Who talks DICOM to whom"
    if assoc.height == 0:
        return _no_data(title, "no DICOM associations")
    frame = assoc.select(
        "uid",
        "calling_ae",
        "called_ae",
        client=pl.col("orig_h"),
        server=pl.concat_str([pl.col("resp_h"), pl.lit(":"), pl.col("resp_p").cast(pl.String())]),
        server_h=pl.col("resp_h"),
        n=pl.lit(1),
    )
    folded, clients, other_c = fold_top(frame, "client", "n", top)
    folded, servers, other_s = fold_top(folded, "server", "n", top)
    edges = folded.group_by("client", "server").agg(pl.col("n").sum()).sort("n")
    ae_of_client = folded.group_by("client").agg(pl.col("calling_ae").drop_nulls().unique().sort())
    ae_of_server = folded.group_by("server").agg(pl.col("called_ae").drop_nulls().unique().sort())
    host_of_server = dict(frame.select("server", "server_h").unique().iter_rows())

    def aes(table: pl.DataFrame, key: str, col: str) -> dict[str, list[str]]:
        return {k: v for k, v in table.select(key, col).iter_rows()}

    client_aes = aes(ae_of_client, "client", "calling_ae")
    server_aes = aes(ae_of_server, "server", "called_ae")

    def label(name: str, titles: list[str]) -> str:
        if not titles:
            return name
        shown = ", ".join(titles[:2]) + (f" +{len(titles) - 2}" if len(titles) > 2 else "")
        return f"{name}\n{_short(shown, 36)}"

    def color(host: str | None) -> str:
        if host is None:
            return OTHER_COLOR
        return TRUSTED_COLOR if trusted(host) else UNTRUSTED_COLOR

    n = max(len(clients), len(servers))
    fig = _figure(11, 1.8 + 0.5 * n)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_xlim(-1.6, 2.6)
    ax.set_ylim(n - 0.4, -0.8)

    def spread(names: list[str]) -> dict[str, float]:
        step = n / max(len(names), 1)
        return {name: (i + 0.5) * step - 0.5 for i, name in enumerate(names)}

    yc, ys = spread(clients), spread(servers)
    peak = max(int(edges["n"].max() or 1), 1)  # type: ignore[arg-type]
    for client, server, count in edges.iter_rows():
        bad = any(
            h is not None and not trusted(h)
            for h in (None if client == other_c else client, host_of_server.get(server))
        )
        width = 0.8 + 4.0 * math.log1p(count) / math.log1p(peak)
        ax.plot(
            [0, 1],
            [yc[client], ys[server]],
            color=UNTRUSTED_COLOR if bad else "#6baed6",
            lw=width,
            alpha=0.6,
            solid_capstyle="round",
        )
    for name in clients:
        host = None if name == other_c else name
        ax.scatter([0], [yc[name]], s=160, color=color(host), zorder=3, edgecolors="white")
        ax.text(
            -0.06,
            yc[name],
            label(name, client_aes.get(name, [])),
            ha="right",
            va="center",
            fontsize=8,
        )
    for name in servers:
        host = None if name == other_s else host_of_server.get(name)
        ax.scatter(
            [1], [ys[name]], s=160, color=color(host), zorder=3, edgecolors="white", marker="s"
        )
        ax.text(
            1.06,
            ys[name],
            label(name, server_aes.get(name, [])),
            ha="left",
            va="center",
            fontsize=8,
        )
    ax.text(0, -0.7, "clients (calling)", ha="center", fontsize=9, weight="bold")
    ax.text(1, -0.7, "servers (called)", ha="center", fontsize=9, weight="bold")
    ax.set_title(title)
    ax.legend(
        handles=[
            Patch(color=TRUSTED_COLOR, label="trusted network"),
            Patch(color=UNTRUSTED_COLOR, label="outside trusted networks"),
            Patch(color=OTHER_COLOR, label="other (folded)"),
            Line2D([], [], color="#6baed6", lw=3, label="associations (width)"),
        ],
        loc="lower right",
        frameon=False,
        fontsize=8,
    )
    return fig


def _barh(
    ax: Axes, labels: list[str], values: list[float], color: str, title: str, xlabel: str
) -> None:
    ys = range(len(labels))
    ax.barh(ys, values, color=color)
    ax.set_yticks(ys, [_short(label, 40) for label in labels])
    ax.invert_yaxis()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    peak = max(values) if values else 0
    for y, v in zip(ys, values, strict=True):
        ax.text(v + peak * 0.01, y, f"{v:,.0f}", va="center", fontsize=7)
    ax.set_xlim(0, peak * 1.15 + 1)


def phi_exposure(phi: pl.DataFrame, assoc: pl.DataFrame, top: int = 20) -> Figure:
    """Cleartext PHI values seen, by attribute keyword and by flow (AE pair and hosts)."""
    title = "PHI in cleartext"
    if phi.height == 0:
        return _no_data(title, "no PHI seen in cleartext")
    by_attr = top_other(phi.with_columns(n=pl.lit(1)), "keyword", "n", top)
    flows = phi.group_by("uid").agg(n=pl.len())
    named = flows.join(
        assoc.select(
            "uid",
            flow=pl.concat_str(
                [
                    _ae_pair_labels(assoc),
                    pl.lit(" ("),
                    pl.col("orig_h"),
                    pl.lit(" → "),
                    pl.col("resp_h"),
                    pl.lit(":"),
                    pl.col("resp_p").cast(pl.String()),
                    pl.lit(")"),
                ]
            ),
        ),
        on="uid",
        how="left",
    ).with_columns(flow=pl.coalesce(pl.col("flow"), pl.col("uid")))
    by_flow = top_other(named, "flow", "n", top)
    fig = _figure(11, _rows_height(by_attr.height + by_flow.height, 0.28, 2.4))
    a1, a2 = fig.subplots(2, 1, height_ratios=[max(by_attr.height, 1), max(by_flow.height, 1)])
    _barh(
        a1,
        by_attr["keyword"].to_list(),
        by_attr["n"].to_list(),
        "#d7301f",
        "PHI values by attribute",
        "values seen",
    )
    _barh(
        a2,
        by_flow["flow"].to_list(),
        by_flow["n"].to_list(),
        "#fc8d59",
        "PHI values by flow",
        "values seen",
    )
    return fig


def findings_overview(finding: pl.DataFrame, top: int = 20, bins: int = 24) -> Figure:
    """Findings by rule (stacked by severity) and over time."""
    title = "Findings"
    if finding.height == 0:
        return _no_data(title, "no findings")
    frame = finding.with_columns(n=pl.lit(1), severity=pl.col("severity").fill_null("info"))
    frame, rules, _ = fold_top(frame, "rule", "n", top)
    fig = _figure(11, _rows_height(len(rules), 0.3, 4.6))
    a1, a2 = fig.subplots(2, 1, height_ratios=[max(len(rules), 3), 4])
    left = np.zeros(len(rules))
    counts = frame.group_by("rule", "severity").agg(pl.col("n").sum())
    for sev in SEVERITIES:
        part = dict(counts.filter(pl.col("severity") == sev).select("rule", "n").iter_rows())
        vals = np.array([part.get(r, 0) for r in rules], dtype=float)
        if vals.any():
            a1.barh(range(len(rules)), vals, left=left, color=SEVERITY_COLORS[sev], label=sev)
        left += vals
    a1.set_yticks(range(len(rules)), rules)
    a1.invert_yaxis()
    a1.set_title("Findings by rule and severity")
    a1.set_xlabel("findings")
    a1.legend(loc="lower right", frameon=False, fontsize=8)
    days = frame["ts"].to_numpy() / 86400.0  # matplotlib date numbers: days since 1970
    lo, hi = float(days.min()), float(days.max())
    edges = np.linspace(lo, max(hi, lo + 1 / 86400), bins + 1)
    stacks, labels, colors = [], [], []
    for sev in SEVERITIES:
        chosen = frame.filter(pl.col("severity") == sev)
        if chosen.height:
            stacks.append(chosen["ts"].to_numpy() / 86400.0)
            labels.append(sev)
            colors.append(SEVERITY_COLORS[sev])
    a2.hist(stacks, bins=edges, stacked=True, color=colors, label=labels)
    _time_axis(a2)
    a2.set_title("Findings over time")
    a2.set_ylabel("findings")
    a2.legend(loc="upper right", frameon=False, fontsize=8)
    return fig


def _stacked_barh(
    ax: Axes, frame: pl.DataFrame, key: str, category: str, keys: list[str], colors: dict[str, str]
) -> None:
    """One horizontal bar per ``key`` (in ``keys`` order, top down), stacked by ``category``
    in ``colors`` order; ``frame`` has a count column ``n``."""
    counts = frame.group_by(key, category).agg(pl.col("n").sum())
    left = np.zeros(len(keys))
    for cat, color in colors.items():
        part = dict(counts.filter(pl.col(category) == cat).select(key, "n").iter_rows())
        vals = np.array([part.get(k, 0) for k in keys], dtype=float)
        if vals.any():
            ax.barh(range(len(keys)), vals, left=left, color=color, label=cat)
        left += vals
    ax.set_yticks(range(len(keys)), keys)
    ax.invert_yaxis()


ANSWER_COLORS = {"2xx": "#31a354", "4xx": "#fd8d3c", "5xx": "#de2d26", "no answer": "#969696"}


def dimse_mix(dimse: pl.DataFrame, top: int = 15) -> Figure:
    """DIMSE messages by command, and the status categories of the responses."""
    title = "DIMSE messages"
    if dimse.height == 0:
        return _no_data(title, "no DIMSE messages")
    frame = dimse.with_columns(n=pl.lit(1), command=pl.col("command").fill_null("unknown"))
    commands = top_other(frame, "command", "n", top)
    rsp = frame.filter(pl.col("command").str.ends_with("-RSP")).with_columns(
        status_category=pl.col("status_category").fill_null("unknown")
    )
    rsp, rsp_cmds, _ = fold_top(rsp, "command", "n", top) if rsp.height else (rsp, [], "")
    fig = _figure(11, _rows_height(max(commands.height, len(rsp_cmds)), 0.3, 2.0))
    a1, a2 = fig.subplots(1, 2)
    _barh(
        a1,
        commands["command"].to_list(),
        commands["n"].to_list(),
        "#2b8cbe",
        "Messages by command",
        "messages",
    )
    if not rsp_cmds:
        a2.set_axis_off()
        a2.text(0.5, 0.5, "no responses", ha="center", va="center", transform=a2.transAxes)
        return fig
    _stacked_barh(a2, rsp, "command", "status_category", rsp_cmds, STATUS_COLORS)
    a2.set_title("Response status categories")
    a2.set_xlabel("responses")
    a2.legend(loc="lower right", frameon=False, fontsize=8)
    return fig


def dicomweb_activity(http: pl.DataFrame, dicomweb: pl.DataFrame, top: int = 15) -> Figure:
    """DICOMweb transactions by service and answer class, and HTTP exchanges by the
    credentials they carried (none, or which scheme, sent in clear)."""
    title = "DICOMweb and HTTP"
    if http.height == 0:
        return _no_data(title, "no HTTP traffic")
    fig = _figure(11, _rows_height(max(dicomweb["service"].n_unique(), 4), 0.35, 2.2))
    a1, a2 = fig.subplots(1, 2)
    if dicomweb.height:
        frame = dicomweb.with_columns(
            n=pl.lit(1),
            answer=pl.when(pl.col("status").is_null())
            .then(pl.lit("no answer"))
            .when(pl.col("status") < 300)
            .then(pl.lit("2xx"))
            .when(pl.col("status") < 500)
            .then(pl.lit("4xx"))
            .otherwise(pl.lit("5xx")),
        )
        services = top_other(frame, "service", "n", top)["service"].to_list()
        _stacked_barh(a1, frame, "service", "answer", services, ANSWER_COLORS)
        a1.legend(loc="lower right", frameon=False, fontsize=8)
        a1.set_xlabel("transactions")
    else:
        a1.set_axis_off()
        a1.text(
            0.5, 0.5, "0 DICOMweb transactions", ha="center", va="center", transform=a1.transAxes
        )
    a1.set_title("DICOMweb transactions by answer")
    auth = http.with_columns(n=pl.lit(1), scheme=pl.col("auth_scheme").fill_null("none"))
    schemes = top_other(auth, "scheme", "n", top)
    _barh(
        a2,
        [f"{s} (in clear)" if s != "none" else "no credentials" for s in schemes["scheme"]],
        schemes["n"].to_list(),
        "#756bb1",
        "HTTP exchanges by credentials sent",
        "exchanges",
    )
    return fig
