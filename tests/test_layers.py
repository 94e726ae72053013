"""The package's layers: no import cycle anywhere, and the DICOM parser imports nothing of
the rest (``scripts/import_graph.py`` prints the graph)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _graph_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "import_graph", ROOT / "scripts" / "import_graph.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = module
    spec.loader.exec_module(module)
    return module


def test_no_import_cycle() -> None:
    g = _graph_module()
    edges = g.graph()
    assert len(edges) > 60 and sum(map(len, edges.values())) > 200  # it sees the package
    assert g.cycles(edges) == []


def test_the_cycle_finder_finds_cycles() -> None:
    g = _graph_module()
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert g.cycles(edges) == [["a", "b", "c"]]


def test_dicom_parser_imports_only_itself() -> None:
    edges = _graph_module().graph()
    outside = {
        (a, b)
        for a, targets in edges.items()
        if a.startswith("analyzer.dicom")
        for b in targets
        if not b.startswith("analyzer.dicom")
    }
    assert outside == set()
