"""``[[suppress]]``: accepted findings are written with the entry's name, never alerted, counted
per entry; expired entries are reported and not applied; a bad entry is a one-line error."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from analyzer.config import load_config
from analyzer.errors import ConfigError
from analyzer.findings.suppress import parse
from tests.helpers import CAPTURES

LAB = """
[[suppress]]
rules = ["cleartext_association", "no_user_identity"]
hosts = ["10.231.0.0/24"]
reason = "lab network, accepted"

[[suppress]]
rule = "wildcard_query"
ae_titles = ["WORKSTATION1"]
expires = 2020-01-01
reason = "an old exception"

[[suppress]]
rule = "cleartext_phi"
hosts = ["192.0.2.0/24"]
reason = "matches nothing here"
"""


def test_matching() -> None:
    (e,) = parse(
        [{"rules": ["a"], "hosts": ["10.0.0.0/8"], "ae_titles": ["CT1"], "reason": "r"}], "t"
    )
    assert e.matches("a", ("10.1.2.3", None), ("CT1", None))
    assert not e.matches("b", ("10.1.2.3", None), ("CT1", None))
    assert not e.matches("a", ("192.0.2.1", "192.0.2.2"), ("CT1", None))
    assert not e.matches("a", ("10.1.2.3", None), ("MR1", None))
    (anything,) = parse([{"reason": "every finding of the run"}], "t")
    assert anything.matches("x", (None, None), (None, None))
    (dated,) = parse([{"reason": "r", "expires": dt.date(2027, 6, 30)}], "t")
    assert not dated.expired(dt.date(2027, 6, 30)) and dated.expired(dt.date(2027, 7, 1))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"rules": ["a"]}, "needs a reason"),
        ({"reason": " "}, "needs a reason"),
        ({"reason": "r", "hosts": ["not-an-ip"]}, "suppress[1].hosts"),
        ({"reason": "r", "owner": "me"}, "unknown setting 'suppress[1].owner'"),
        ({"reason": "r", "expires": "soon"}, "must be a date"),
        ({"reason": "r", "rules": "a"}, "must be a list of strings"),
    ],
)
def test_bad_entries_are_one_line_errors(entry: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse([entry], "site.toml")


def test_config_file(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(LAB)
    config = load_config(str(path))
    assert [e.name for e in config.suppressions] == ["suppress[1]", "suppress[2]", "suppress[3]"]


def test_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(LAB)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "analyzer", "analyze", str(CAPTURES / "dicom_lab.pcap")]
        + ["-o", str(out), "--config", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    finding = pl.read_parquet(out / "finding.parquet")
    quiet = finding.filter(pl.col("suppressed").is_not_null())
    assert set(quiet["rule"]) == {"cleartext_association", "no_user_identity"}
    assert set(quiet["suppressed"]) == {"suppress[1]"}
    assert finding.filter(pl.col("rule") == "wildcard_query")["suppressed"].to_list() == [None]
    alerted = {json.loads(line)["rule"] for line in (out / "alerts.jsonl").read_text().splitlines()}
    assert not alerted & {"cleartext_association", "no_user_identity"}
    assert "wildcard_query" in alerted  # its entry expired: not applied
    n = int(quiet["count"].sum())
    assert (
        f"suppress[1]: {n} finding occurrence(s) suppressed (lab network, accepted)" in done.stderr
    )
    assert "suppress[3]: 0 finding occurrence(s) suppressed" in done.stderr
    assert "warning: suppress[2] expired on 2020-01-01 and is not applied" in done.stderr
