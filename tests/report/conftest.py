"""Output directories of the sample capture in every format, and a synthetic 300-AE network."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import polars as pl
import pytest

from analyzer.capture import open_inputs
from analyzer.config import Config
from analyzer.logs.records import TABLES, Schema
from analyzer.report.load import Tables, load_tables
from analyzer.run.pipeline import run_analysis
from analyzer.run.progress import Progress
from tests.helpers import TEST_SALT

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
SAMPLE = CAPTURES / "dicom_lab.pcap"


def analyze_to(capture: Path, outdir: Path, fmt: str = "parquet", **config: object) -> Path:
    cfg = dataclasses.replace(Config(), strict=True, salt=TEST_SALT, **config)  # type: ignore[arg-type]
    readers, _ = open_inputs([str(capture)])
    outdir.mkdir(parents=True, exist_ok=True)
    run_analysis(cfg, readers, outdir, fmt, Progress(None, enabled=False))
    return outdir


@pytest.fixture(scope="session")
def sample_out(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sample capture analyzed into Parquet, CSV and JSON lines."""
    base = tmp_path_factory.mktemp("sample")
    return {fmt: analyze_to(SAMPLE, base / fmt, fmt) for fmt in ("parquet", "csv", "jsonl")}


@pytest.fixture(scope="session")
def sample_tables(sample_out: dict[str, Path]) -> Tables:
    return load_tables(sample_out["parquet"])


def _frame(schema: Schema, rows: int, **cols: list[object]) -> pl.DataFrame:
    data = {n: cols.get(n, [None] * rows) for n in schema}
    return pl.DataFrame(data, schema=schema)


def synthetic_network(n_clients: int = 300, n_servers: int = 40, n_assoc: int = 3000) -> Tables:
    """A busy site: many AE titles on many hosts, every table filled (shape only, no PHI)."""
    rnd = random.Random(7)
    uids = [f"C{i:08d}" for i in range(n_assoc)]
    clients = [rnd.randrange(n_clients) for _ in uids]
    servers = [rnd.randrange(n_servers) for _ in uids]
    ts = [1.7e9 + i * 3.0 for i in range(n_assoc)]
    results = [rnd.choice(["accepted"] * 8 + ["rejected", "aborted"]) for _ in uids]
    assoc = _frame(
        TABLES["dicom_assoc"],
        n_assoc,
        uid=uids,
        ts=ts,
        orig_h=[f"10.{c // 250}.{c % 250}.9" for c in clients],
        orig_p=[40000 + i % 20000 for i in range(n_assoc)],
        resp_h=[f"172.16.{s}.1" if s % 7 else f"203.0.113.{s}" for s in servers],
        resp_p=[104 if s % 3 else 11112 for s in servers],
        calling_ae=[f"MODALITY_{c:03d}" for c in clients],
        called_ae=[f"PACS_ARCHIVE_{s:02d}" for s in servers],
        result=results,
    )
    conn = _frame(
        TABLES["conn"],
        n_assoc,
        uid=uids,
        ts=ts,
        orig_h=assoc["orig_h"].to_list(),
        resp_h=assoc["resp_h"].to_list(),
        service=["dicom"] * n_assoc,
        duration=[rnd.uniform(0.1, 40.0) for _ in uids],
        orig_bytes=[rnd.randrange(10**3, 10**8) for _ in uids],
        resp_bytes=[rnd.randrange(10**3, 10**5) for _ in uids],
    )
    commands = ["C-STORE-RQ", "C-STORE-RSP", "C-FIND-RQ", "C-FIND-RSP", "C-ECHO-RQ", "C-ECHO-RSP",
                "C-MOVE-RQ", "C-MOVE-RSP", "N-ACTION-RQ", "N-ACTION-RSP"]  # fmt: skip
    n_dimse = n_assoc * 4
    cmd = [rnd.choice(commands) for _ in range(n_dimse)]
    dimse = _frame(
        TABLES["dimse"],
        n_dimse,
        uid=[uids[i % n_assoc] for i in range(n_dimse)],
        ts=[ts[i % n_assoc] + 0.1 for i in range(n_dimse)],
        command=cmd,
        status_category=[
            rnd.choice(["success", "pending", "failure", "warning"]) if c.endswith("RSP") else None
            for c in cmd
        ],
    )
    objects = _frame(
        TABLES["dicom_object"],
        n_assoc,
        uid=uids,
        ts=ts,
        role=[rnd.choice(["dataset", "identifier"]) for _ in uids],
    )
    keywords = [f"Attribute{k:02d}Name" for k in range(60)]
    n_phi = n_assoc * 2
    phi = _frame(
        TABLES["phi"],
        n_phi,
        uid=[uids[i % n_assoc] for i in range(n_phi)],
        ts=[ts[i % n_assoc] for i in range(n_phi)],
        keyword=[rnd.choice(keywords) for _ in range(n_phi)],
        patient_key=[f"P{i % 997}" for i in range(n_phi)],
    )
    rules = [f"rule_number_{k:02d}" for k in range(35)]
    n_find = n_assoc
    finding = _frame(
        TABLES["finding"],
        n_find,
        uid=uids,
        ts=ts,
        rule=[rnd.choice(rules) for _ in range(n_find)],
        severity=[rnd.choice(["critical", "high", "medium", "low", "info"]) for _ in range(n_find)],
    )
    n_http = n_assoc
    services = ["QIDO-RS", "WADO-RS", "WADO-URI", "STOW-RS", "UPS-RS", "other"]
    http = _frame(
        TABLES["http"],
        n_http,
        uid=[f"H{i}" for i in range(n_http)],
        ts=ts[:n_http],
        trans_depth=[1] * n_http,
        auth_scheme=[rnd.choice([None, "basic", "bearer", "digest"]) for _ in range(n_http)],
        status=[rnd.choice([200, 204, 401, 404, 500]) for _ in range(n_http)],
    )
    web = _frame(
        TABLES["dicomweb"],
        n_http,
        uid=[f"H{i}" for i in range(n_http)],
        ts=ts[:n_http],
        trans_depth=[1] * n_http,
        service=[rnd.choice(services) for _ in range(n_http)],
        status=http["status"].to_list(),
        executable_preambles=[0] * n_http,
    )
    frames = {name: pl.DataFrame(schema=schema) for name, schema in TABLES.items()}
    frames.update(
        conn=conn, dicom_assoc=assoc, dimse=dimse, dicom_object=objects, phi=phi, finding=finding,
        http=http, dicomweb=web,
    )  # fmt: skip
    return Tables(frames, set(frames))


@pytest.fixture(scope="session")
def big_tables() -> Tables:
    return synthetic_network()


@pytest.fixture
def empty_tables() -> Tables:
    frames = {name: pl.DataFrame(schema=schema) for name, schema in TABLES.items()}
    return Tables(frames, set())
