"""The command line as a user meets it: exit codes, one-line errors, files 0600."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.helpers import CAPTURES, SAMPLE


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "analyzer", *args], capture_output=True, text=True)


def test_analyze_sample_writes_private_parquet_tables(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run("analyze", str(SAMPLE), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "6 TCP flows" in done.stderr and "conn.parquet: 6 rows" in done.stderr
    files = sorted(p.name for p in out.iterdir())
    tables = [
        "asset",
        "conn",
        "dicom_assoc",
        "dicom_context",
        "dicom_object",
        "dimse",
        "finding",
        "phi",
        "weird",
        "http",
        "dicomweb",
    ]
    assert files == sorted(["alerts.jsonl", *(f"{t}.parquet" for t in tables)])
    for p in out.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o700


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_other_formats_hold_the_same_rows(tmp_path: Path, fmt: str) -> None:
    assert run("analyze", str(SAMPLE), "-o", str(tmp_path / "pq"), "-q").returncode == 0
    assert (
        run("analyze", str(SAMPLE), "-o", str(tmp_path / fmt), "--format", fmt, "-q").returncode
        == 0
    )
    path = tmp_path / fmt / f"conn.{fmt}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    if fmt == "csv":
        got = pl.read_csv(path)
    else:
        got = pl.DataFrame([json.loads(line) for line in path.read_text().splitlines()])
    want = pl.read_parquet(tmp_path / "pq" / "conn.parquet")
    assert got["uid"].to_list() == want["uid"].to_list()
    assert got["orig_bytes"].to_list() == want["orig_bytes"].to_list()


def test_not_a_capture_is_one_line_and_exit_3(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.pcap"
    bogus.write_text("this is not a capture\n")
    done = run("analyze", str(bogus), "-o", str(tmp_path / "out"))
    assert done.returncode == 3
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert str(bogus) in done.stderr and "not a pcap or pcapng capture" in done.stderr


def test_missing_file_is_exit_3(tmp_path: Path) -> None:
    done = run("analyze", str(tmp_path / "nope.pcap"), "-o", str(tmp_path / "out"))
    assert done.returncode == 3 and "no such file" in done.stderr and "Traceback" not in done.stderr


def test_truncated_capture_warns_and_exits_0(tmp_path: Path) -> None:
    done = run("analyze", str(CAPTURES / "truncated_tail.pcap"), "-o", str(tmp_path / "out"))
    assert done.returncode == 0
    assert "warning: damaged input" in done.stderr and "capture_truncated" in done.stderr


def test_snaplen_cut_warns_and_exits_0(tmp_path: Path) -> None:
    done = run("analyze", str(CAPTURES / "snaplen_200.pcap"), "-o", str(tmp_path / "out"))
    assert done.returncode == 0 and "capture_snaplen_truncated" in done.stderr


def test_bad_config_is_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[limits]\nmax_flowz = 3\n")
    done = run("analyze", str(SAMPLE), "-o", str(tmp_path / "out"), "--config", str(cfg))
    assert done.returncode == 2 and "unknown setting 'max_flowz'" in done.stderr


def test_config_limits_apply(tmp_path: Path) -> None:
    cfg = tmp_path / "small.toml"
    cfg.write_text("[limits]\nmax_flows = 1\n")
    # a C-MOVE's sub-association runs beside its association: one of two open flows must go
    # (flows that already ended with FIN are finished early, not evicted)
    capture = CAPTURES / "orthanc_qr.pcap"
    done = run("analyze", str(capture), "-o", str(tmp_path / "out"), "--config", str(cfg), "-q")
    assert done.returncode == 0
    weird = pl.read_parquet(tmp_path / "out" / "weird.parquet")
    assert "tcp_flow_table_full" in weird["name"].to_list()


def test_unwritable_output_is_exit_4(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = run("analyze", str(SAMPLE), "-o", str(blocker / "out"))
    assert done.returncode == 4 and "Traceback" not in done.stderr


def test_usage_error_is_exit_2() -> None:
    assert run("analyze").returncode == 2
    assert run("--version").stdout.startswith("dicom-analyzer ")


def test_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    import os
    import pty

    big = tmp_path / "big.pcap"
    raw = SAMPLE.read_bytes()
    big.write_bytes(raw + raw[24:] * 300)  # ~20 MB, enough packets for progress updates
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "analyzer", "analyze", str(big), "-o", str(tmp_path / "o")],
        stderr=secondary,
        stdout=subprocess.DEVNULL,
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait() == 0
    shown = b"".join(chunks).decode(errors="replace")
    assert "pkt/s" in shown and "%" in shown and "MB of" in shown
    piped = run("analyze", str(big), "-o", str(tmp_path / "p"))
    assert "%" not in piped.stderr


def test_rules_command_lists_every_rule() -> None:
    from analyzer.findings.catalog import RULES

    done = run("rules")
    assert done.returncode == 0
    listed = {
        line.split()[0] for line in done.stdout.splitlines() if line and not line.startswith(" ")
    }
    assert listed == set(RULES) and len(RULES) == 37
    assert done.stdout.count("references: ") == len(RULES)
    assert "ATT&CK T1110 Brute Force" in done.stdout


def test_findings_config_sections(tmp_path: Path) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text(
        '[networks]\ntrusted = ["127.0.0.0/8"]\n'
        '[ae_titles]\nknown = { MODALITY_CT1 = ["10.9.9.9"] }\n'
        '[rules]\ndisabled = ["no_user_identity"]\n[rules.large_result_set]\nmax_results = 50\n'
        '[privacy]\nsalt = "a site secret"\n'
    )
    out = tmp_path / "out"
    assert run("analyze", str(SAMPLE), "-o", str(out), "-q", "--config", str(cfg)).returncode == 0
    f = pl.read_parquet(out / "finding.parquet")
    rules = set(f["rule"])
    assert "no_user_identity" not in rules and "large_result_set" not in rules
    assert "high" in f.filter(pl.col("rule") == "inventory_change")["severity"].to_list()
    assert "high" in f.filter(pl.col("rule") == "cleartext_association")["severity"].to_list()
    again = tmp_path / "again"
    run("analyze", str(SAMPLE), "-o", str(again), "-q", "--config", str(cfg))
    keys = pl.read_parquet(out / "phi.parquet")["patient_key"].to_list()
    assert (
        keys == pl.read_parquet(again / "phi.parquet")["patient_key"].to_list()
    )  # same salt, same keys
    run("analyze", str(SAMPLE), "-o", str(tmp_path / "nosalt"), "-q")
    assert pl.read_parquet(tmp_path / "nosalt" / "phi.parquet")["patient_key"].to_list() != keys


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[rules]\ndisabled = ["no_such_rule"]\n', "unknown rule 'no_such_rule'"),
        ("[rules.wildcard_query]\nthreshold = 3\n", "has no option 'threshold'"),
        ('[networks]\ntrusted = ["not-a-network"]\n', "networks.trusted"),
        ('[privacy]\nsalt = "short"\n', "at least 8 characters"),
    ],
)
def test_bad_findings_config_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    done = run("analyze", str(SAMPLE), "-o", str(tmp_path / "out"), "--config", str(cfg))
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("part_bytes", "fewest", "most"),
    [(1, 124, 124), (3000, 2, 123), (2 << 20, 0, 0)],
    ids=["chunk", "several", "none"],
)
def test_table_writer_compacts_parts_in_order(
    tmp_path: Path, part_bytes: int, fewest: int, most: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of 10 rows, each its own part file, several chunks to a part, or no part at all
    (the table fits in ``PART_BYTES``): every row once, in order, one file left."""
    from analyzer.logs.records import TABLES, Weird
    from analyzer.output import writer as writer_module
    from analyzer.output.writer import TableWriter

    monkeypatch.setattr(writer_module, "PART_BYTES", part_bytes)
    writer = TableWriter("weird", TABLES["weird"], tmp_path, "parquet", chunk_rows=10)
    for i in range(1234):
        writer.add(Weird(uid=f"C{i}", ts=float(i), name="name", detail="detail", source="tcp"))
    assert writer.close() == 1234
    assert pl.read_parquet(tmp_path / "weird.parquet")["ts"].to_list() == [
        float(i) for i in range(1234)
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["weird.parquet"]
    assert fewest <= len(writer._parts) <= most


def test_table_writer_keeps_rows_in_order_around_a_whole_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows held in memory, then a worker's whole table (``add_parquet``), then more rows:
    the held rows go to a part before the table does, so the order is kept."""
    from analyzer.logs.records import TABLES, Weird
    from analyzer.output import writer as writer_module
    from analyzer.output.writer import TableWriter

    monkeypatch.setattr(writer_module, "PART_BYTES", 3000)

    def rows(lo: int, hi: int) -> list[Weird]:
        return [
            Weird(uid=f"C{i}", ts=float(i), name="n", detail="d", source="tcp")
            for i in range(lo, hi)
        ]

    other = TableWriter("weird", TABLES["weird"], tmp_path / "other", "parquet")
    (tmp_path / "other").mkdir()
    for row in rows(100, 150):
        other.add(row)
    other.close()
    out = tmp_path / "out"
    out.mkdir()
    writer = TableWriter("weird", TABLES["weird"], out, "parquet", chunk_rows=10)
    for row in rows(0, 100):
        writer.add(row)
    writer.add_parquet(tmp_path / "other" / "weird.parquet")
    for row in rows(150, 175):
        writer.add(row)
    assert writer.close() == 175
    assert pl.read_parquet(out / "weird.parquet")["ts"].to_list() == [float(i) for i in range(175)]


def test_cli_analysis_without_numpy_decodes_the_same(tmp_path: Path) -> None:
    """The CLI keeps numpy out of the analysis process (memory); pydicom must decode every
    transfer syntax and character set exactly as it does with numpy loaded (in-process run)."""
    import polars as pl

    from tests.helpers import analyze

    for name in ("transfer_syntaxes.pcap", "charsets.pcap"):
        capture = Path(__file__).resolve().parents[1] / "captures" / name
        out_cli, out_lib = tmp_path / f"cli_{name}", tmp_path / f"lib_{name}"
        probe = (
            "import sys; from analyzer.cli import main; rc = main(sys.argv[1:]); "
            "print('numpy' in sys.modules and sys.modules['numpy'] is not None); sys.exit(rc)"
        )
        done = subprocess.run(
            [sys.executable, "-c", probe, "analyze", str(capture), "-o", str(out_cli), "-q"],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "False", "numpy was imported by the analysis"
        analyze(capture, out_lib)
        for table, skip in (("dicom_object", {"patient_key"}), ("phi", {"value_hash", "patient_key"}),
                            ("dimse", set()), ("asset", set())):  # fmt: skip
            a = pl.read_parquet(out_cli / f"{table}.parquet")
            b = pl.read_parquet(out_lib / f"{table}.parquet")
            cols = [c for c in a.columns if c not in skip]
            assert a.select(cols).equals(b.select(cols)), (name, table)


@pytest.mark.parametrize(
    ("flags", "dropped"), [([], False), (["--checksums", "verify"], True), (["-C"], False)]
)
def test_checksum_options(tmp_path: Path, flags: list[str], dropped: bool) -> None:
    """The lab capture was taken on the sending hosts: ``verify`` refuses its offloaded
    segments, ``auto`` (the default) and ``-C`` keep them."""
    out = tmp_path / "out"
    r = run("analyze", str(SAMPLE), "-o", str(out), "-q", "--workers", "1", *flags)
    assert r.returncode == 0, r.stderr
    names = pl.read_parquet(out / "weird.parquet")["name"].to_list()
    assert ("tcp_checksum_bad" in names) == dropped
    dicom = pl.read_parquet(out / "dicom_assoc.parquet").height
    assert (dicom == 0) == dropped
