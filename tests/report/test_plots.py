"""Plot functions on the sample tables, on empty tables and on a 300-AE network: every figure
draws, keeps its labels apart and inside the canvas, folds the tail into "other", and never
shows an attribute value."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from analyzer.report import plots
from analyzer.report.headline import trust_test
from analyzer.report.load import Tables, load_tables
from tests.report.conftest import SAMPLE, analyze_to

TRUSTED = trust_test(__import__("analyzer.config", fromlist=["Config"]).Config().trusted_networks)

PLOTS: dict[str, Callable[[Tables], Figure]] = {
    "timeline": lambda t: plots.association_timeline(t["dicom_assoc"], t["conn"]),
    "matrix_ae": lambda t: plots.traffic_matrix(t["dicom_assoc"], t["conn"], t["dicom_object"]),
    "matrix_host": lambda t: plots.traffic_matrix(
        t["dicom_assoc"], t["conn"], t["dicom_object"], by="host"
    ),
    "graph": lambda t: plots.talk_graph(t["dicom_assoc"], t["conn"], TRUSTED),
    "phi": lambda t: plots.phi_exposure(t["phi"], t["dicom_assoc"]),
    "findings": lambda t: plots.findings_overview(t["finding"]),
    "dimse": lambda t: plots.dimse_mix(t["dimse"]),
    "dicomweb": lambda t: plots.dicomweb_activity(t["http"], t["dicomweb"]),
}


def draw(fig: Figure) -> FigureCanvasAgg:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas


def _in_view(ticks: list[Text], lo_hi: tuple[float, float], axis: int) -> list[Text]:
    lo, hi = sorted(lo_hi)
    return [t for t in ticks if lo - 1e-9 <= t.get_position()[axis] <= hi + 1e-9]


def texts(fig: Figure) -> list[Text]:
    """Every text that is drawn: titles, axis labels, tick labels within the view, free texts,
    legends. (Tick labels beyond the axis limits exist but are not drawn.)"""
    found: list[Text] = list(fig.texts)
    for ax in fig.axes:
        found += [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        if ax.axison:
            found += _in_view(ax.get_xticklabels(), ax.get_xlim(), 0)
            found += _in_view(ax.get_yticklabels(), ax.get_ylim(), 1)
        legend = ax.get_legend()
        if legend is not None:
            found += [legend.get_title(), *legend.get_texts()]
    return [t for t in found if t.get_visible() and t.get_text().strip()]


def label_groups(fig: Figure) -> list[list[Text]]:
    """Texts that must not overlap each other: each axis's tick labels, its free texts."""
    groups = []
    for ax in fig.axes:
        groups.append([t for t in _in_view(ax.get_yticklabels(), ax.get_ylim(), 1) if t.get_text()])
        groups.append([t for t in _in_view(ax.get_xticklabels(), ax.get_xlim(), 0) if t.get_text()])
        groups.append([t for t in ax.texts if t.get_text()])
    return groups


def overlaps(fig: Figure, canvas: FigureCanvasAgg) -> list[tuple[str, str]]:
    renderer = canvas.get_renderer()
    bad = []
    for group in label_groups(fig):
        boxes = [(t.get_text(), t.get_window_extent(renderer).shrunk(0.98, 0.9)) for t in group]
        for i, (a, ba) in enumerate(boxes):
            for b, bb in boxes[i + 1 :]:
                if ba.overlaps(bb):
                    bad.append((a, b))
    return bad


def outside(fig: Figure, canvas: FigureCanvasAgg) -> list[str]:
    renderer = canvas.get_renderer()
    width, height = canvas.get_width_height()
    out = []
    for t in texts(fig):
        box = t.get_window_extent(renderer)
        if box.x0 < -2 or box.y0 < -2 or box.x1 > width + 2 or box.y1 > height + 2:
            out.append(t.get_text())
    return out


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_plot_on_sample(name: str, sample_tables: Tables) -> None:
    fig = PLOTS[name](sample_tables)
    canvas = draw(fig)
    assert not overlaps(fig, canvas)
    assert not outside(fig, canvas)
    shown = " ".join(t.get_text() for t in texts(fig))
    assert "no data" not in shown and "no DICOM" not in shown and "no PHI" not in shown


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_plot_on_empty_tables(name: str, empty_tables: Tables) -> None:
    fig = PLOTS[name](empty_tables)
    draw(fig)
    assert any(t.get_text().startswith("no ") for t in texts(fig))


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_plot_on_300_aes_is_readable(name: str, big_tables: Tables) -> None:
    fig = PLOTS[name](big_tables)
    canvas = draw(fig)
    assert not overlaps(fig, canvas), "labels overlap"
    assert not outside(fig, canvas), "labels cut off"
    width, height = canvas.get_width_height()
    assert height < 2500 and width < 2500, "a figure that grows with the network"
    shown = [t.get_text() for t in texts(fig)]
    # the DICOMweb plot's categories are few by nature (six services, a few auth schemes)
    assert any(s.startswith("other (") or "\nother (" in s for s in shown) or name in (
        "dimse",
        "dicomweb",
    )
    for ax in fig.axes:
        assert len(ax.get_yticklabels()) <= 26


def test_timeline_rows_are_ae_pairs_by_busyness(sample_tables: Tables) -> None:
    fig = plots.association_timeline(sample_tables["dicom_assoc"], sample_tables["conn"])
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assoc = sample_tables["dicom_assoc"]
    expected = {f"{a} → {b}" for a, b in assoc.select("calling_ae", "called_ae").iter_rows()}
    assert set(labels) == expected


def test_matrix_counts_match_the_tables(sample_tables: Tables) -> None:
    fig = plots.traffic_matrix(
        sample_tables["dicom_assoc"], sample_tables["conn"], sample_tables["dicom_object"]
    )
    objects_ax = fig.axes[1] if fig.axes[1].get_title().startswith("Objects") else fig.axes[2]
    shown = sum(float(t.get_text()) for t in objects_ax.texts)
    datasets = sample_tables["dicom_object"].filter(pl.col("role") == "dataset").height
    assert shown == datasets > 0


def test_top_other_folds_the_tail() -> None:
    frame = pl.DataFrame({"k": [f"a{i}" for i in range(10)], "n": list(range(10))})
    folded = plots.top_other(frame, "k", "n", 3)
    assert folded["k"].to_list() == ["a9", "a8", "a7", "other (7)"]
    assert folded["n"].sum() == sum(range(10))


def test_graph_marks_untrusted_hosts(big_tables: Tables) -> None:
    fig = plots.talk_graph(big_tables["dicom_assoc"], big_tables["conn"], TRUSTED)
    colors = {
        tuple(round(c, 3) for c in coll.get_facecolor()[0][:3]) for coll in fig.axes[0].collections
    }
    red = tuple(round(int(plots.UNTRUSTED_COLOR[i : i + 2], 16) / 255, 3) for i in (1, 3, 5))
    blue = tuple(round(int(plots.TRUSTED_COLOR[i : i + 2], 16) / 255, 3) for i in (1, 3, 5))
    assert red in colors and blue in colors  # 203.0.113.x servers are outside RFC 1918


def test_no_phi_in_any_label_even_when_values_are_captured(tmp_path: Path) -> None:
    out = analyze_to(SAMPLE, tmp_path / "phi", capture_phi=True)
    tables = load_tables(out)
    values = {v for v in tables["phi"]["value"].drop_nulls().to_list() if len(v) >= 4}
    assert values, "capture_phi run should keep values"
    for name, make in PLOTS.items():
        fig = make(tables)
        draw(fig)
        for t in texts(fig):
            for v in values:
                assert v not in t.get_text(), f"{name} shows a PHI value"
