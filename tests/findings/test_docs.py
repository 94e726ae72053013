"""docs/detections.md is the project's own detection reference and says what the registry says."""

from __future__ import annotations

from analyzer.findings.catalog import RULES
from analyzer.findings.docs import BEGIN, END, render
from analyzer.findings.references import LABELS, RULE_REFERENCES, SOURCES
from tests.helpers import ROOT

DOC = ROOT / "docs" / "detections.md"


def test_rule_reference_is_generated_from_the_registry() -> None:
    text = DOC.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:end] + "\n" == render(), "run: python -m analyzer.findings.docs"


def test_every_rule_is_defined_in_the_prose_and_has_references() -> None:
    prose = DOC.read_text().split(BEGIN)[0]
    for rid in RULES:
        assert f"**{rid}**" in prose, rid
        assert RULE_REFERENCES.get(rid), rid
    assert set(RULE_REFERENCES) == set(RULES)
    for keys in RULE_REFERENCES.values():
        for key in keys:
            assert key in LABELS and SOURCES[key].startswith("https://"), key


def test_readme_points_to_the_reference_in_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/detections.md" in readme and "../shared" not in readme
