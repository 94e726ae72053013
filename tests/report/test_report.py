"""The HTML report: built from each output format, self-contained, correct summary figures,
honest on captures without DICOM, and really rendered by headless Chromium."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import markupsafe
import numpy as np
import polars as pl
import pytest
from matplotlib.image import imread

from analyzer.config import Config
from analyzer.report.html import render_report, write_report
from analyzer.report.load import load_tables
from tests.report.conftest import CAPTURES, analyze_to

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Resources(HTMLParser):
    """Collects every attribute that could make a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "poster", "data", "background"):
                self.urls.append((tag, name, value or ""))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Resources:
    p = Resources()
    p.feed(html)
    return p


def assert_self_contained(html: str) -> None:
    res = parse(html)
    assert res.urls, "the report has images"
    for tag, attr, url in res.urls:
        assert url.startswith(("data:", "#")), f"<{tag} {attr}={url[:60]}> would be fetched"
    assert not res.tags & {"script", "link", "iframe", "object", "embed", "base"}
    style = "".join(re.findall(r"<style>(.*?)</style>", html, re.S))
    assert "url(" not in style and "@import" not in style
    assert "Content-Security-Policy" in html and "default-src 'none'" in html


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_report_from_every_format(fmt: str, sample_out: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    write_report(sample_out[fmt], target, Config())
    html = target.read_text(encoding="utf-8")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert_self_contained(html)
    tables = load_tables(sample_out[fmt])
    text = " ".join(parse(html).text)
    assoc = tables["dicom_assoc"]
    assert f"{assoc.height} accepted" in text
    assert (
        f"{tables['phi'].height} values of {tables['phi']['keyword'].n_unique()} attributes" in text
    )
    for rule in tables["finding"]["rule"].unique():
        assert rule in text
    for ae in assoc["calling_ae"].unique():  # asset inventory and findings name the AEs
        assert ae in text
    assert html.count("<img ") == 8
    for filt in tables["finding"]["wireshark_filter"].unique():
        assert str(markupsafe.escape(filt)) in html  # as the template engine escapes it
    for command in tables["finding"]["carve_command"].drop_nulls().unique():
        assert str(markupsafe.escape(command)) in html  # next to the filter


def test_formats_load_the_same_tables(sample_out: dict[str, Path]) -> None:
    base = load_tables(sample_out["parquet"])
    for fmt in ("csv", "jsonl"):
        other = load_tables(sample_out[fmt])
        assert other.fmt == fmt
        for name in ("dicom_assoc", "finding", "asset", "phi", "dimse"):
            a, b = base[name], other[name]
            assert a.schema == b.schema, (fmt, name)
            assert a.height == b.height, (fmt, name)
        assert base["asset"]["ae_titles"].to_list() == other["asset"]["ae_titles"].to_list()


def no_dicom_capture(tmp_path: Path) -> Path:
    """The TLS connection of the real TLS capture, without its cleartext DICOM neighbour."""
    import dpkt

    src = CAPTURES / "tls_2762.pcap"
    out = tmp_path / "tls_only.pcap"
    tables = load_tables(analyze_to(src, tmp_path / "probe"))
    port = tables["conn"].filter(pl.col("service") == "ssl")["orig_p"].item()
    with src.open("rb") as fin, out.open("wb") as fout:
        reader = dpkt.pcap.Reader(fin)
        writer = dpkt.pcap.Writer(fout, linktype=reader.datalink(), snaplen=65535)
        for ts, buf in reader:
            ip = dpkt.ethernet.Ethernet(buf).data
            tcp = getattr(ip, "data", None)
            if isinstance(tcp, dpkt.tcp.TCP) and port in (tcp.sport, tcp.dport):
                writer.writepkt(buf, ts)
    return out


def test_report_without_dicom_says_so(tmp_path: Path) -> None:
    out = analyze_to(no_dicom_capture(tmp_path), tmp_path / "out")
    tables = load_tables(out)
    assert tables["conn"].height == 1 and not tables.has_dicom
    html = render_report(tables, Config(), "tls only")
    assert_self_contained(html)
    text = " ".join(parse(html).text)
    assert "No DICOM traffic was found" in text
    assert "0% DICOM connections in cleartext" in text  # the one connection is TLS on 2762
    assert "no DICOM associations" not in text  # that is inside the pictures, not text


def test_report_cli_and_analyze_report(sample_out: dict[str, Path], tmp_path: Path) -> None:
    py = [sys.executable, "-m", "analyzer"]
    target = tmp_path / "r.html"
    done = subprocess.run(
        [*py, "report", str(sample_out["csv"]), "-o", str(target)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert target.stat().st_size > 10_000
    out = tmp_path / "out"
    done = subprocess.run(
        [*py, "analyze", str(CAPTURES / "dicom_lab.pcap"), "-o", str(out), "-q", "--report"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE((out / "report.html").stat().st_mode) == 0o600
    assert_self_contained((out / "report.html").read_text(encoding="utf-8"))


def test_report_on_a_directory_without_tables(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "empty", tmp_path / "missing"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "analyzer",
                "report",
                str(target),
                "-o",
                str(tmp_path / "r.html"),
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 3
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_report_has_no_phi_values(tmp_path: Path) -> None:
    out = analyze_to(CAPTURES / "dicom_lab.pcap", tmp_path / "phi", capture_phi=True)
    values = {v for v in load_tables(out)["phi"]["value"].drop_nulls().to_list() if len(v) >= 4}
    assert values
    html = render_report(load_tables(out), Config(), "phi")
    leaked = [v for v in values if v in html]
    assert not leaked


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/test.sh installs it)")
def test_report_renders_in_headless_chromium(sample_out: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    write_report(sample_out["parquet"], target, Config())
    shot = tmp_path / "shot.png"
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]  # fmt: skip
    url = target.as_uri()
    subprocess.run(
        [CHROMIUM, *flags, "--window-size=1400,2400", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "DICOM traffic report" in dom and "Findings by rule" in dom
    image = imread(shot)[..., :3]
    assert image.shape[:2] == (2400, 1400)
    # Not blank: many colours, and most of the page is not the background.
    colours = np.unique((image * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 200
    background = np.all(np.abs(image - image[-1, -1]) < 0.02, axis=-1)
    assert background.mean() < 0.9
    # The header band is drawn in its dark blue, and the plots (images) were decoded.
    header = image[10:40, 200:1200]
    assert np.allclose(header.mean(axis=(0, 1)), [0x08 / 255, 0x30 / 255, 0x6B / 255], atol=0.08)
    reds = np.all(np.abs(image - [0xD7 / 255, 0x30 / 255, 0x1F / 255]) < 0.05, axis=-1)
    assert reds.sum() > 500, "the severity badges and plot bars are drawn"


def test_report_shows_dicomweb(tmp_path: Path) -> None:
    out = tmp_path / "web"
    analyze_to(CAPTURES / "dicomweb.pcap", out)
    target = tmp_path / "report.html"
    write_report(out, target, Config())
    text = " ".join(parse(target.read_text(encoding="utf-8")).text)
    assert "DICOMweb transactions" in text
    assert (
        "26 exchanges, 24 of them DICOMweb" in text
        and "1 DICOM file(s) with an executable preamble" in text
    )
    assert "executable_preamble" in text
