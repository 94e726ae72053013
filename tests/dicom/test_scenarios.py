"""What each lab scenario must show in the tables: real peers, real captures."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from analyzer.dicom.messages import Message
from tests.helpers import CAPTURES, analyze, dicom_events


def tables(name: str, out: Path) -> dict[str, pl.DataFrame]:
    analyze(CAPTURES / name, out)
    return {p.stem: pl.read_parquet(p) for p in out.glob("*.parquet")}


def test_transfer_syntaxes_big_endian_deflated_jpeg(tmp_path: Path) -> None:
    objects = tables("transfer_syntaxes.pcap", tmp_path)["dicom_object"]
    assert objects["transfer_syntax_uid"].to_list() == [
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.4.70",
    ]
    assert (objects["n_elements"] > 20).all() and not objects["truncated"].any()
    events = dicom_events(CAPTURES / "transfer_syntaxes.pcap", tmp_path / "e")
    names = [m.dataset.get("PatientName") for m in events if isinstance(m, Message) and m.dataset]
    assert names == ["DOE^JANE", "ROE^RICHARD", "MUSTERMANN^ERIKA"]  # decoded in all three syntaxes


def test_character_sets_decode_names(tmp_path: Path) -> None:
    events = dicom_events(CAPTURES / "charsets.pcap", tmp_path)
    names = [m.dataset.get("PatientName") for m in events if isinstance(m, Message) and m.dataset]
    assert names == ["Yamada^Tarou=山田^太郎=やまだ^たろう", "Müller^Jürgen"]


def test_worklist_query_and_answer(tmp_path: Path) -> None:
    t = tables("worklist.pcap", tmp_path)
    assert t["dimse"]["command"].to_list() == ["C-FIND-RQ", "C-FIND-RSP", "C-FIND-RSP"]
    assert t["dimse"]["status_category"].to_list()[1:] == ["pending", "success"]
    assert t["dimse"]["affected_sop_class_uid"][0] == "1.2.840.10008.5.1.4.31"
    events = dicom_events(CAPTURES / "worklist.pcap", tmp_path / "e")
    answers = [m for m in events if isinstance(m, Message) and m.direction == 1 and m.dataset]
    assert answers and answers[0].dataset.get("PatientName") == "Müller^Jürgen"
    steps = [e for e in answers[0].dataset.elements if e.depth == 1]
    assert [(e.keyword, e.value) for e in steps] == [
        ("Modality", "CT")
    ]  # the queried key, inside the sequence


def test_orthanc_move_to_a_third_ae_and_get(tmp_path: Path) -> None:
    t = tables("orthanc_qr.pcap", tmp_path)
    assoc, dimse = t["dicom_assoc"], t["dimse"]
    moves = dimse.filter(pl.col("command") == "C-MOVE-RQ")
    assert moves["move_destination"].to_list() == ["ARCHIVE2", "NOWHERE"]
    # the sub-association Orthanc opened to the destination carries the originator
    sub = assoc.filter(pl.col("called_ae") == "ARCHIVE2")
    assert sub.select("calling_ae", "resp_p").rows() == [("ORTHANC", 11113)]
    stores = dimse.filter((pl.col("uid") == sub["uid"][0]) & (pl.col("command") == "C-STORE-RQ"))
    assert stores["move_originator_ae"].to_list() == ["QRSCU"]
    assert stores["move_originator_message_id"].to_list() == [moves["message_id"][0]]
    finals = (
        dimse.filter(pl.col("command") == "C-MOVE-RSP").group_by("uid").agg(pl.col("status").last())
    )
    # Orthanc answers a move to an AE it does not know with 0xC000 (unable to process)
    assert sorted(finals["status"].to_list()) == [0x0000, 0xC000]
    get = dimse.filter(pl.col("command") == "C-GET-RSP")
    assert (
        get["status_category"].to_list()[-1] == "success" and get["n_completed"].to_list()[-1] == 1
    )
    find = dimse.filter(pl.col("command") == "C-FIND-RSP")
    assert (find["status_category"] == "pending").sum() == 3  # three studies stored, all matched


def test_user_identity_types_and_a_rejected_passcode(tmp_path: Path) -> None:
    assoc = tables("user_identity.pcap", tmp_path)["dicom_assoc"].sort("ts")
    assert assoc["user_identity_type"].to_list() == [1, 2, 2, 3, 4, 5]
    assert assoc["result"].to_list() == [
        "accepted",
        "accepted",
        "rejected",
        "accepted",
        "accepted",
        "accepted",
    ]
    assert assoc["passcode_present"].to_list() == [False, True, True, False, False, False]
    assert assoc["user_identity_response_requested"].to_list() == [
        False,
        True,
        True,
        True,
        True,
        True,
    ]
    assert assoc["user_identity_server_response"].to_list() == [
        False,
        False,
        None,
        True,
        True,
        True,
    ]
    rejected = assoc.filter(pl.col("result") == "rejected")
    # pynetdicom's answer to a bad passcode, as tshark also reads it: 2 / 2 / 1
    assert rejected.select("reject_result", "reject_source", "reject_reason").rows() == [
        ("rejected-transient", "service-provider-acse", "no-reason-given")
    ]


def test_passcodes_never_reach_any_output(tmp_path: Path) -> None:
    analyze(CAPTURES / "user_identity.pcap", tmp_path)
    for path in tmp_path.iterdir():
        raw = path.read_bytes()
        assert b"lab-pass" not in raw and b"wrong-guess" not in raw, path.name


def test_rejects_and_abort(tmp_path: Path) -> None:
    assoc = tables("reject_abort.pcap", tmp_path)["dicom_assoc"].sort("ts")
    assert assoc.select("called_ae", "result", "reject_reason", "end_state").rows() == [
        ("GUESSED_AE", "rejected", "called-ae-title-not-recognized", "closed"),
        ("ANY-SCP", "rejected", "no-reason-given", "closed"),
        ("STRICTSCP", "accepted", None, "aborted"),
    ]
    assert assoc["abort_source"].to_list() == [None, None, "service-user"]


def test_non_standard_port_tiny_pdu_and_tls(tmp_path: Path) -> None:
    conn = tables("nonstandard_port.pcap", tmp_path / "p")["conn"]
    assert conn["resp_p"].unique().to_list() == [8104] and (conn["service"] == "dicom").all()
    tiny = tables("tiny_pdu.pcap", tmp_path / "t")
    assert tiny["dicom_assoc"]["max_pdu_resp"].to_list() == [256]
    (obj,) = tiny["dicom_object"].rows(named=True)
    assert obj["dataset_bytes"] > 30 * 256 and not obj["truncated"]  # joined from dozens of PDUs
    tls = tables("tls_2762.pcap", tmp_path / "s")
    assert sorted(tls["conn"]["service"].to_list()) == ["dicom", "ssl"]
    assert tls["dicom_assoc"].height == 1  # only the cleartext one is readable


def test_capture_started_inside_an_association(tmp_path: Path) -> None:
    t = tables("midstream.pcap", tmp_path)
    (a,) = t["dicom_assoc"].rows(named=True)
    assert a["midstream"] and a["result"] == "unknown" and a["end_state"] == "released"
    assert t["dimse"]["command"].to_list() == ["C-STORE-RSP"]
    assert {"dicom_midstream_pickup", "dicom_midstream_partial_message"} <= set(t["weird"]["name"])
