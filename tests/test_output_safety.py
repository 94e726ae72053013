"""One escaping policy for wire strings: control characters and non-ASCII bytes as ``\\xNN``
in every table; CSV cells that a spreadsheet would run as formulas get a leading quote, which
reading the tables back removes, so every value is recovered exactly."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from analyzer.dicom.items import text, wire_text
from analyzer.logs.records import TABLES, Weird
from analyzer.output.writer import TableWriter, csv_safe
from analyzer.report.load import load_table


def test_wire_text_escapes_control_characters() -> None:
    assert text(b"AE\x1b[31mX\r\n  ") == "AE\\x1b[31mX\\x0d\\x0a"
    assert wire_text(b"host\x00\x00") == "host" and wire_text(b"a\x07b") == "a\\x07b"
    assert all(c.isprintable() for c in text(bytes(range(1, 256))))


def test_csv_cells_are_formula_safe_and_read_back_exactly(tmp_path: Path) -> None:
    values = [
        '=HYPERLINK("http://x")',
        "+1",
        "-cmd",
        "@SUM(A1)",
        "'=already",
        "\tTAB",
        "PACS",
        "x=1",
    ]
    schema = TABLES["weird"]
    w = TableWriter("weird", schema, tmp_path, "csv")
    for v in values:
        w.add(Weird("C1", 1.0, v, v, "dicom"))
    w.close()
    raw = (tmp_path / "weird.csv").read_text()
    for line in raw.splitlines()[1:]:
        cells = line.split(",")
        assert not cells[2].startswith(("=", "+", "-", "@", "\t")), line
    back = load_table(tmp_path, "weird")
    assert back["name"].to_list() == values and back["detail"].to_list() == values


def test_csv_safe_leaves_numbers_and_plain_text() -> None:
    frame = pl.DataFrame({"n": [-1, 2], "s": ["-1", "ok"]})
    out = csv_safe(frame)
    assert out["n"].to_list() == [-1, 2] and out["s"].to_list() == ["'-1", "ok"]
