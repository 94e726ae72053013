"""Site rules (``docs/site_rules.md``): the example rule under the unit-test harness, loaded
from ``[rules] modules`` and from the ``dicom_analyzer.rules`` entry-point group, with options
from the TOML file, one process or workers; a site rule that raises is an anomaly row."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from analyzer.dicom.consts import CommandField as CF
from tests.findings.harness import FakeAssoc, RuleHarness, message
from tests.helpers import CAPTURES, ROOT

EXAMPLES = ROOT / "docs" / "examples"
CONFIG = """
[rules]
modules = ["site_rules"]
[rules.move_to_unlisted_ae]
allowed = ["ARCHIVE2"]
"""


def test_example_rule_under_the_harness() -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import site_rules
    finally:
        sys.path.remove(str(EXAMPLES))
    h = RuleHarness(site_rules.MoveToUnlistedAe, allowed=["ARCHIVE2"])
    h.rule.on_message(FakeAssoc(), message(CF.C_MOVE_RQ, move_destination="ARCHIVE2"))
    h.rule.on_message(FakeAssoc(), message(CF.C_FIND_RQ))
    assert h.findings == []
    h.rule.on_message(FakeAssoc(), message(CF.C_MOVE_RQ, move_destination="NOWHERE"))
    (f,) = h.findings
    assert f.severity.label == "high" and f.evidence["move_destination"] == "NOWHERE"


def analyze(
    tmp_path: Path, config: str, *extra: str, path: list[Path]
) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "site.toml"
    cfg.write_text(config)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in path)}
    return subprocess.run(
        [sys.executable, "-m", "analyzer", "analyze", str(CAPTURES / "orthanc_qr.pcap")]
        + ["-o", str(tmp_path / "out"), "-q", "--config", str(cfg), *extra],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_loaded_from_the_config(tmp_path: Path, workers: str) -> None:
    done = analyze(tmp_path, CONFIG, "--workers", workers, path=[EXAMPLES])
    assert done.returncode == 0, done.stderr
    f = pl.read_parquet(tmp_path / "out" / "finding.parquet").filter(
        pl.col("rule") == "move_to_unlisted_ae"
    )
    assert f["detail"].to_list() == ["study moved to 'NOWHERE', which the site does not list"]


def test_loaded_from_an_entry_point(tmp_path: Path) -> None:
    dist = tmp_path / "plugins" / "hospital_rules-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hospital-rules\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[dicom_analyzer.rules]\nmoves = site_rules:MoveToUnlistedAe\n"
    )
    config = '[rules.move_to_unlisted_ae]\nallowed = ["ARCHIVE2"]\n'
    done = analyze(tmp_path, config, path=[tmp_path / "plugins", EXAMPLES])
    assert done.returncode == 0, done.stderr
    rules = set(pl.read_parquet(tmp_path / "out" / "finding.parquet")["rule"])
    assert "move_to_unlisted_ae" in rules


def test_a_site_rule_that_raises_is_an_anomaly(tmp_path: Path) -> None:
    broken = tmp_path / "mods"
    broken.mkdir()
    (broken / "broken_rules.py").write_text(
        "from analyzer.findings.model import FlowRule\n"
        "class Broken(FlowRule):\n"
        "    id = 'broken_site_rule'\n    title = 'b'\n    description = 'b'\n"
        "    def on_message(self, assoc, message):\n        raise KeyError('oops')\n"
    )
    done = analyze(tmp_path, '[rules]\nmodules = ["broken_rules"]\n', path=[broken])
    assert done.returncode == 0, done.stderr
    weird = pl.read_parquet(tmp_path / "out" / "weird.parquet")
    errors = weird.filter(pl.col("name") == "analyzer_internal_error")
    assert errors.height > 0 and "broken_site_rule.on_message: KeyError" in errors["detail"][0]
    assert pl.read_parquet(tmp_path / "out" / "dimse.parquet").height > 0  # the run went on


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('[rules]\nmodules = ["no_such_module_here"]\n', "cannot import no_such_module_here"),
        ('[rules]\nmodules = "site_rules"\n', "rules.modules must be a list"),
    ],
)
def test_bad_site_rules_are_one_line_errors(tmp_path: Path, config: str, message: str) -> None:
    done = analyze(tmp_path, config, path=[EXAMPLES])
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_site_rule_may_not_take_a_built_in_id(tmp_path: Path) -> None:
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "clash.py").write_text(
        "from analyzer.findings.model import FlowRule\n"
        "class Clash(FlowRule):\n    id = 'wildcard_query'\n    title = 'x'\n    description = 'x'\n"
    )
    done = analyze(tmp_path, '[rules]\nmodules = ["clash"]\n', path=[mods])
    assert done.returncode == 2 and "a built-in rule has that id" in done.stderr
