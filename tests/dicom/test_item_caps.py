"""A-ASSOCIATE bodies full of junk items: anomalies are capped, items after them still count."""

from __future__ import annotations

import struct

from analyzer.dicom.items import MAX_ANOMALIES, decode_associate
from tests.dicom import fixtures as fx


def with_junk_before_user_information(rq: bytes, junk_items: int) -> bytes:
    """The RQ with ``junk_items`` unknown items (type 0x7F, 2 bytes each) before its user
    information item, the PDU length adjusted."""
    at = rq.index(b"\x50\x00", 74)  # the user information item
    junk = b"\x7f\x00\x00\x02\xab\xcd" * junk_items
    body = rq[6:at] + junk + rq[at:]
    return struct.pack(">BBI", 1, 0, len(body)) + body


def test_junk_items_are_capped_and_credentials_after_them_are_found() -> None:
    rq = with_junk_before_user_information(fx.A_ASSOCIATE_RQ_USER_ID_USER_PASS, 50_000)
    a = decode_associate(1, rq[6:])
    names = [name for name, _ in a.anomalies]
    assert names.count("dicom_item_unknown") == MAX_ANOMALIES
    assert names[-1] == "dicom_item_anomalies_suppressed"
    assert a.user_identity is not None and a.user_identity.secondary_length > 0


def test_a_run_of_zeros_is_one_step() -> None:
    rq = fx.A_ASSOCIATE_RQ_PLAIN
    at = rq.index(b"\x50\x00", 74)
    body = rq[6:at] + bytes(400_000) + rq[at:]
    a = decode_associate(1, body)
    assert [n for n, _ in a.anomalies] == ["dicom_item_unknown"]
    assert a.max_pdu_length == 16384 and a.implementation_version_name == "LAB_SCU_1"
