"""Every hostile capture class, scaled down: no exit 1 (the run is strict), no lost table, the
ordinary association among the attack identical to a clean run of it alone. Peak memory at
full scale is ``benchmarks/hostile.py``'s to prove, not a test's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl
import pytest

from analyzer.config import Config, Limits
from tests import hostile
from tests.helpers import analyze

SCALE = {
    "assoc_flood": 0.02,
    "control_pdu_flood": 0.02,
    "ooo_flood": 0.02,
    "inventory_poison": 0.02,
    "query_key_flood": 0.02,
    "syn_flood": 0.02,
    "history_flood": 0.01,
    "tiny_fragments": 1.0,
    "release_recursion": 1.0,
    "garbage_on_dicom_ports": 0.05,
    "malformed_pdus": 0.02,
    "overlapping_copies": 0.02,
    "hostile_http": 0.02,
}
TABLES = ("conn", "dicom_assoc", "dicom_context", "dimse", "dicom_object", "phi")
TIGHT = dataclasses.replace(Config(), limits=dataclasses.replace(Limits(), memory_budget=1))
"""The smallest budget: open flows get the floor (4 MB), so the scaled floods must shed."""


def ordinary_rows(outdir: Path, uid: str) -> dict[str, list[dict[str, object]]]:
    rows = {}
    for table in TABLES:
        frame = pl.read_parquet(outdir / f"{table}.parquet").filter(pl.col("uid") == uid)
        rows[table] = frame.to_dicts()
    return rows


def ordinary_uid(outdir: Path) -> str:
    conn = pl.read_parquet(outdir / "conn.parquet")
    mine = conn.filter(
        (pl.col("orig_p") == hostile.ORDINARY_PORT) & (pl.col("orig_h") == hostile.ORDINARY_IP)
    )
    assert mine.height == 1
    return str(mine["uid"][0])


@pytest.mark.parametrize("name", sorted(hostile.ATTACKS))
def test_ordinary_association_survives(name: str, tmp_path: Path) -> None:
    scale = SCALE[name]
    attacked = hostile.build(name, tmp_path / f"{name}.pcap", scale)
    alone = hostile.build_ordinary(tmp_path / "alone.pcap", hostile.middle_ts(name, scale))
    config = TIGHT if name in ("assoc_flood", "control_pdu_flood", "ooo_flood") else None
    analyze(alone, tmp_path / "alone", config)
    result = analyze(attacked, tmp_path / "attacked", config)
    uid = ordinary_uid(tmp_path / "attacked")
    assert uid == ordinary_uid(tmp_path / "alone")
    assert ordinary_rows(tmp_path / "attacked", uid) == ordinary_rows(tmp_path / "alone", uid)
    weird = result.weird
    assert "analyzer_internal_error" not in weird["name"].to_list()
    if config is TIGHT:  # the budget was reached, and the flows that hold the most went first
        shed = weird.filter(pl.col("name") == "memory_budget_shed")
        assert shed.height > 0 and uid not in shed["uid"].to_list()


def test_attack_specific_bounds(tmp_path: Path) -> None:
    """History stays short, uids stay distinct under a one-timestamp SYN flood, a 1 MiB RQ
    that never ends costs a few anomalies and is still recorded with its AE titles, the
    fragmented RQ is reassembled."""
    out = {}
    for name in ("history_flood", "syn_flood", "control_pdu_flood", "tiny_fragments"):
        path = hostile.build(name, tmp_path / f"{name}.pcap", SCALE[name])
        out[name] = analyze(path, tmp_path / name)
    history = out["history_flood"].conn["history"].str.len_chars().max()
    assert isinstance(history, int) and history < 64
    syn = out["syn_flood"].conn
    assert syn["uid"].n_unique() == syn.height > 5000
    weird = out["control_pdu_flood"].weird
    per_flow = weird.filter(pl.col("name") == "dicom_item_unknown").group_by("uid").len()
    assert per_flow["len"].max() <= 16  # type: ignore[operator]
    flood = pl.read_parquet(tmp_path / "control_pdu_flood" / "dicom_assoc.parquet")
    assert (flood["calling_ae"] == "FLOOD").sum() == out["control_pdu_flood"].conn.height - 1
    assoc = pl.read_parquet(tmp_path / "tiny_fragments" / "dicom_assoc.parquet")
    assert "FLOOD" in assoc["calling_ae"].to_list()


def test_overlapping_copies_keep_the_first(tmp_path: Path) -> None:
    """A forged second copy, as overlapping fragments or a disagreeing retransmission, never
    replaces the calling AE title of the first copy; each disagreement is a weird row."""
    path = hostile.build("overlapping_copies", tmp_path / "o.pcap", SCALE["overlapping_copies"])
    result = analyze(path, tmp_path / "out")
    assoc = pl.read_parquet(tmp_path / "out" / "dicom_assoc.parquet")
    assert "FORGED" not in assoc["calling_ae"].to_list()
    names = result.weird["name"].to_list()
    flows = result.conn.height - 1
    assert (
        names.count("ip_fragment_overlap_mismatch") + names.count("tcp_retransmission_inconsistent")
        == flows
    )


def test_finished_associations_are_freed_without_the_cycle_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parser and its framers must not form a reference cycle: freed only by the cyclic
    collector, the buffers of shed flows piled up (703 MB for a flood bounded at 330)."""
    import gc

    from analyzer.dicom.association import AssociationParser
    from analyzer.run import pipeline
    from tests.helpers import SAMPLE

    gc.collect()
    gc.disable()
    monkeypatch.setattr(pipeline.gc, "collect", lambda *a: 0)  # the end of a run collects
    try:
        analyze(SAMPLE, tmp_path / "out")
        alive = sum(1 for o in gc.get_objects() if isinstance(o, AssociationParser))
    finally:
        gc.enable()
    assert alive == 0


def test_hostile_http_is_recorded_and_bounded(tmp_path: Path) -> None:
    """Each hostile HTTP conversation is a weird row of its own kind; none is an internal
    error, and the answer after the bogus request is still decoded."""
    path = hostile.build("hostile_http", tmp_path / "h.pcap", SCALE["hostile_http"])
    result = analyze(path, tmp_path / "out")
    names = set(result.weird["name"])
    assert {
        "http_headers_too_large",
        "http_protocol_error",
        "http_decompression_bomb",
        "http_multipart_unterminated",
    } <= names
    assert "analyzer_internal_error" not in names
    http = pl.read_parquet(tmp_path / "out" / "http.parquet")
    endless = http.filter(pl.col("method") == "POST").filter(pl.col("request_body_bytes") > 100_000)
    assert endless.height > 0  # streamed and counted, never held
    assert http.filter(pl.col("dicomweb") == "QIDO-RS").height >= 3
