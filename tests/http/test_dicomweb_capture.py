"""``dicomweb.pcap`` (Orthanc's DICOMweb plugin, dicomweb-client and curl, scenario
``dicomweb``): the exchanges agree with Wireshark's HTTP dissector, the DICOMweb transactions
and findings are the ones the scenario made, and no secret reaches an output file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import polars as pl
import pytest

from tests.helpers import CAPTURES, analyze

CAPTURE = CAPTURES / "dicomweb.pcap"
PASSWORD, TOKEN = "synthetic-pass-1", "synthetic-bearer-token-0123456789"


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("dicomweb")
    analyze(CAPTURE, d)
    return d


def table(out: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(out / f"{name}.parquet")


@pytest.mark.tshark
def test_requests_and_answers_agree_with_wireshark(out: Path) -> None:
    fields = subprocess.run(
        ["tshark", "-n", "-r", str(CAPTURE), "-Y", "http.request", "-T", "fields"]
        + ["-e", "http.request.method", "-e", "http.request.uri"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    codes = subprocess.run(
        ["tshark", "-n", "-r", str(CAPTURE), "-Y", "http.response", "-T", "fields"]
        + ["-e", "http.response.code"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    http = table(out, "http").sort("ts", "trans_depth")
    theirs = sorted(tuple(line.split("\t")) for line in fields)
    ours = sorted(
        (m, u + ("?" + "&".join(q) if len(q) else ""))
        for m, u, q in zip(
            http["method"].to_list(),
            http["uri"].to_list(),
            http["query_keys"].to_list(),
            strict=True,
        )
    )
    assert len(ours) == len(theirs) == 26
    assert [m for m, _ in ours] == [m for m, _ in theirs]
    assert sorted(u.split("?")[0] for _, u in theirs) == sorted(u.split("?")[0] for _, u in ours)
    assert sorted(int(c) for c in codes) == sorted(http["status"].drop_nulls())


def test_dicomweb_transactions(out: Path) -> None:
    dw = table(out, "dicomweb")
    services = set(dw["service"])
    assert {"QIDO-RS", "WADO-RS", "WADO-URI", "STOW-RS"} <= services
    stow = dw.filter(pl.col("service") == "STOW-RS")
    assert stow["n_instances"].sum() == 4 and stow["executable_preambles"].sum() == 1
    qido = dw.filter(pl.col("service") == "QIDO-RS")
    assert set(qido["level"]) == {"study", "series", "instance"}
    assert "PatientName" in qido["query_attributes"].explode().to_list()
    wado = dw.filter(pl.col("service").is_in(["WADO-RS", "WADO-URI"]))
    assert wado["n_instances"].sum() == 2
    http = table(out, "http")
    assert set(http["auth_scheme"].drop_nulls()) == {"basic", "bearer"}
    assert http.filter(pl.col("status") == 401).height == 4
    assert http.filter(pl.col("dicomweb").is_null()).height == 2  # /system, the explorer page


def test_findings(out: Path) -> None:
    f = table(out, "finding")
    rules = set(f["rule"])
    assert {
        "executable_preamble",
        "cleartext_credentials",
        "cleartext_token",
        "unauthenticated_query",
        "wildcard_query",
        "cleartext_phi",
        "identity_rejected",
        "prefix_enumeration",
    } <= rules
    (poly,) = f.filter(pl.col("rule") == "executable_preamble").iter_rows(named=True)
    assert poly["severity"] == "critical" and "PE executable" in poly["detail"]
    assert "CVE-2019-11687" in " ".join(poly["references"])
    creds = f.filter(pl.col("rule") == "cleartext_credentials")
    assert creds["count"].sum() == 17  # every request that carried the Basic header
    refused = f.filter(pl.col("rule") == "identity_rejected")
    assert refused["count"].sum() == 4  # four wrong passwords, the third one escalates
    assert set(refused["title"]) == {"HTTP request refused (401/403)", "Credential guessing"}


def test_no_secret_in_any_output(out: Path) -> None:
    for path in out.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            assert PASSWORD.encode() not in raw and TOKEN.encode() not in raw, path
            assert b"DOE^JANE" not in raw and b"ROE^RICHARD" not in raw, path
