"""DICOM tables from real captures: what crossed the wire, and nothing invented."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tests.helpers import CAPTURES, SAMPLE, analyze


def tables(path: Path, out: Path) -> dict[str, pl.DataFrame]:
    analyze(path, out)
    return {
        t: pl.read_parquet(out / f"{t}.parquet")
        for t in ("dicom_assoc", "dicom_context", "dimse", "dicom_object", "weird", "conn")
    }


def test_sample_capture(tmp_path: Path) -> None:
    t = tables(SAMPLE, tmp_path)
    assoc = t["dicom_assoc"].sort("ts")
    assert assoc.select("calling_ae", "called_ae", "result", "end_state").rows() == [
        ("WORKSTATION1", "STORESCP", "accepted", "released"),
        ("MODALITY_CT1", "STORESCP", "accepted", "released"),
        ("PYNETDICOM_SCU", "PYSCP", "accepted", "released"),
        ("WORKSTATION1", "PYSCP", "accepted", "released"),
    ]
    assert assoc["implementation_version_name"].to_list() == ["OFFIS_DCMTK_367"] * 2 + [
        "PYNETDICOM_304",
        "OFFIS_DCMTK_367",
    ]
    assert assoc["user_identity_type"].null_count() == 4 and not assoc["passcode_present"].any()
    assert assoc["n_dimse"].to_list() == [2, 6, 2, 14]
    # every assoc row is a DICOM conn row, joined by uid
    dicom_conn = t["conn"].filter(pl.col("service") == "dicom")
    assert sorted(assoc["uid"]) == sorted(dicom_conn["uid"])
    dimse = t["dimse"]
    counts = dict(dimse.group_by("command").len().rows())
    assert counts == {
        "C-ECHO-RQ": 1,
        "C-ECHO-RSP": 1,
        "C-STORE-RQ": 4,
        "C-STORE-RSP": 4,
        "C-FIND-RQ": 1,
        "C-FIND-RSP": 13,
    }
    find = dimse.filter(pl.col("command") == "C-FIND-RSP")
    assert find["status_category"].to_list() == ["pending"] * 12 + ["success"]
    # responses pair with their requests by message id, inside each association
    rq = dimse.filter(pl.col("command").str.ends_with("-RQ")).select(
        "uid", pl.col("message_id").alias("m")
    )
    rsp = dimse.filter(pl.col("command").str.ends_with("-RSP")).select(
        "uid", pl.col("message_id_responded").alias("m")
    )
    assert rsp.join(rq, on=["uid", "m"], how="anti").height == 0
    objects = t["dicom_object"]
    assert objects.height == 4 + 1 + 12  # 4 stored images, 1 query identifier, 12 matches
    stored = objects.filter(pl.col("command") == "C-STORE-RQ")
    assert stored["role"].unique().to_list() == ["dataset"]
    assert stored["sop_class_uid"].str.starts_with("1.2.840.10008.5.1.4.1.1.").all()
    assert not objects["truncated"].any()
    assert t["weird"].height == 0
    ctx = t["dicom_context"]
    assert ctx.filter(pl.col("result") == "acceptance").height == 131
    assert ctx["proposed_transfer_syntaxes"].list.len().min() >= 1


def test_storescu_datasets_match_the_files_sent(tmp_path: Path) -> None:
    """The dataset byte counts equal the files' datasets: nothing lost, nothing invented."""
    objects = tables(SAMPLE, tmp_path)["dicom_object"].filter(pl.col("command") == "C-STORE-RQ")
    # synthetic images are 64x64x2 bytes of pixels plus a header of a few hundred bytes
    assert objects["dataset_bytes"].is_between(8192, 9216).all()


def test_lost_segment_truncates_one_message_and_keeps_the_rest(tmp_path: Path) -> None:
    t = tables(CAPTURES / "lost_segment.pcap", tmp_path)
    weird = t["weird"]["name"].to_list()
    assert "tcp_content_gap" in weird and "dicom_stream_gap" in weird
    dimse = t["dimse"]
    assert dimse.filter(pl.col("command") == "C-STORE-RSP").height == 4  # every answer still seen
    truncated = dimse.filter(pl.col("truncated"))
    assert truncated.height >= 1 and truncated["command"].to_list()[0] == "C-STORE-RQ"


def test_snaplen_cut_capture_keeps_what_the_cut_pdus_still_say(tmp_path: Path) -> None:
    """Every frame cut to 200 bytes: the AE titles survive in the first bytes of the RQ."""
    t = tables(CAPTURES / "snaplen_200.pcap", tmp_path)
    assoc = t["dicom_assoc"]
    assert assoc.select("calling_ae", "called_ae", "result").rows() == [
        ("MODALITY_CT1", "STORESCP", "accepted")
    ]
    names = set(t["weird"]["name"])
    assert {"capture_snaplen_truncated", "dicom_pdu_truncated", "dicom_message_incomplete"} <= names
    assert t["dimse"].height == 0  # no command set survived the cut: none is invented


def test_truncated_capture_ends_open(tmp_path: Path) -> None:
    t = tables(CAPTURES / "truncated_tail.pcap", tmp_path)
    assert "timeout" in t["dicom_assoc"]["end_state"].to_list()


def test_ipv6_vlan_and_cooked_captures_decode_the_same(tmp_path: Path) -> None:
    base = tables(SAMPLE, tmp_path / "base")["dimse"].drop("uid", "ts")
    for name in ("vlan_8021q.pcap", "qinq.pcap", "bsd_null.pcap", "bigendian.pcap"):
        assert tables(CAPTURES / name, tmp_path / name)["dimse"].drop("uid", "ts").equals(base), (
            name
        )
    v6 = tables(CAPTURES / "ipv6_lab.pcap", tmp_path / "v6")
    assert set(v6["dimse"]["command"]) == {
        "C-ECHO-RQ",
        "C-ECHO-RSP",
        "C-STORE-RQ",
        "C-STORE-RSP",
        "C-FIND-RQ",
        "C-FIND-RSP",
    }


def test_fragmented_and_rotated_captures(tmp_path: Path) -> None:
    frag = tables(CAPTURES / "ipv4_fragments.pcap", tmp_path / "f")
    assert (
        frag["dimse"]["command"].to_list() == ["C-STORE-RQ", "C-STORE-RSP"]
        and frag["weird"].height == 0
    )
    rot = tables(CAPTURES / "rotated", tmp_path / "r")
    (obj,) = rot["dicom_object"].rows(named=True)
    assert obj["dataset_bytes"] > 2_400_000 and not obj["truncated"]


def test_every_response_is_paired_with_its_request(tmp_path: Path) -> None:
    for name in ("dicom_lab.pcap", "orthanc_qr.pcap", "user_identity.pcap"):
        t = tables(CAPTURES / name, tmp_path / name)
        rsp = t["dimse"].filter(pl.col("command").str.ends_with("-RSP"))
        assert rsp["rtt"].null_count() == 0 and (rsp["rtt"] >= 0).all(), name
        assert not {"dicom_request_unanswered", "dicom_response_without_request"} & set(
            t["weird"]["name"]
        )


def test_unanswered_request_and_stray_response(tmp_path: Path) -> None:
    """A flow cut after a C-STORE-RQ leaves it unanswered; hand-made traffic shows a stray response."""
    from tests.dicom import fixtures as fx
    from tests.helpers import ACK, PSH, SYN, dicom_driver

    drv, rows, _ = dicom_driver()
    drv.seg(1.0, SYN, 100)
    drv.seg(1.0, SYN | ACK, 900, 101, from_client=False)
    client = fx.A_ASSOCIATE_RQ_PLAIN + fx.c_store_rq(message_id=7)
    server = fx.A_ASSOCIATE_AC_PLAIN + fx.c_echo_rsp(message_id=42)
    drv.seg(1.1, ACK | PSH, 101, 901, client)
    drv.seg(1.2, ACK | PSH, 901, 101 + len(client), server, from_client=False)
    drv.finish()
    names = drv.weird_names()
    assert {"dicom_request_unanswered", "dicom_response_without_request"} <= names
    (store,) = [r for r in rows["dimse"] if r.command == "C-STORE-RQ"]
    assert store.message_id == 7  # the request that went unanswered is in the table all the same


def test_negotiation_items_are_written() -> None:
    """Role selection, the asynchronous operations window, SOP class extended and common
    extended negotiation (pynetdicom-encoded) reach dicom_context and dicom_assoc."""
    from tests.dicom import fixtures as fx
    from tests.helpers import ACK, PSH, SYN, dicom_driver

    drv, rows, _ = dicom_driver()
    rq, ac = fx.A_ASSOCIATE_RQ_ALL_SUB_ITEMS, fx.A_ASSOCIATE_AC_PLAIN
    drv.seg(1.0, SYN, 100)
    drv.seg(1.0, SYN | ACK, 900, 101, from_client=False)
    drv.seg(1.1, ACK | PSH, 101, 901, rq)
    drv.seg(1.2, ACK | PSH, 901, 101 + len(rq), ac, from_client=False)
    drv.finish()
    contexts = {c.abstract_syntax_uid: c for c in rows["dicom_context"]}
    ct = contexts[fx.CT_STORAGE]
    assert (ct.scu_role_proposed, ct.scp_role_proposed) == (1, 1)
    assert ct.scu_role_accepted is None  # the AC answered no role selection
    assert ct.service_class_uid == "1.2.840.10008.4.2"
    assert ct.related_general_sop_classes == ["1.2.840.10008.5.1.4.1.1.2.1"]
    assert contexts[fx.PATIENT_FIND].extended_negotiation_proposed == "010100"
    assert contexts[fx.VERIFICATION].scu_role_proposed is None
    (assoc,) = rows["dicom_assoc"]
    assert (assoc.async_invoked_orig, assoc.async_performed_orig) == (5, 3)
    assert assoc.async_invoked_resp is None


def test_orthanc_get_negotiates_the_scp_role(tmp_path: Path) -> None:
    """Orthanc's C-GET: the SCU proposes the SCP role for the storage classes it receives."""
    analyze(CAPTURES / "orthanc_qr.pcap", tmp_path)
    ctx = pl.read_parquet(tmp_path / "dicom_context.parquet")
    roles = ctx.filter(pl.col("scp_role_proposed") == 1)
    assert roles.height > 0 and roles["scp_role_accepted"].is_not_null().all()
