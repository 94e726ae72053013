"""Upper layer and DIMSE decoding on encoded fixtures, through the feed harness."""

from __future__ import annotations

from typing import Any

import pytest

from analyzer.dicom.association import AssociationParser
from analyzer.dicom.consts import PduType
from analyzer.dicom.messages import (
    Aborted,
    Anomaly,
    AssociateAccepted,
    AssociateRejected,
    AssociateRequested,
    Message,
    ReleaseReplied,
    ReleaseRequested,
)
from analyzer.dicom.states import State
from tests.dicom import fixtures as fx
from tests.dicom.harness import check_all_ways, run, whole


def of(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def anomalies(events: list[Any]) -> set[str]:
    return {e.name for e in events if isinstance(e, Anomaly)}


def test_echo_association_end_to_end() -> None:
    stream = [
        (0, fx.A_ASSOCIATE_RQ_PLAIN),
        (1, fx.A_ASSOCIATE_AC_PLAIN),
        (0, fx.c_echo_rq(1)),
        (1, fx.c_echo_rsp(1)),
        (0, fx.A_RELEASE_RQ_PDU),
        (1, fx.A_RELEASE_RP_PDU),
    ]
    events = check_all_ways(stream)
    (rq,) = of(events, AssociateRequested)
    a = rq.associate
    assert (a.calling_ae, a.called_ae) == ("MODALITY_CT1", "PACS_MAIN")
    assert a.application_context == "1.2.840.10008.3.1.1.1"
    assert [(c.context_id, c.abstract_syntax) for c in a.contexts] == [
        (1, fx.VERIFICATION),
        (3, fx.CT_STORAGE),
        (5, fx.PATIENT_FIND),
    ]
    assert a.contexts[1].transfer_syntaxes == ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
    assert (a.max_pdu_length, a.implementation_class_uid, a.implementation_version_name) == (
        16384,
        fx.IMPL_UID,
        "LAB_SCU_1",
    )
    (ac,) = of(events, AssociateAccepted)
    assert [(c.context_id, c.result) for c in ac.associate.contexts] == [(1, 0), (3, 0), (5, 3)]
    assert ac.associate.max_pdu_length == 32768
    msgs = of(events, Message)
    assert [
        (
            m.direction,
            m.command.command_field,
            m.command.message_id,
            m.command.message_id_responded,
            m.command.status,
        )
        for m in msgs
    ] == [(0, 0x0030, 1, None, None), (1, 0x8030, None, 1, 0)]
    assert of(events, ReleaseRequested) and of(events, ReleaseReplied)
    assert not anomalies(events)
    _, parser = run(stream, whole)
    assert parser.state == State.RELEASED and parser.n_dimse == 2


@pytest.mark.parametrize(
    ("fixture", "itype", "response", "primary", "secondary"),
    [
        (fx.A_ASSOCIATE_RQ_USER_ID_USER_PASS, 2, True, b"radiology", 11),
        (fx.A_ASSOCIATE_RQ_USER_ID_USER, 1, False, b"radiology", 0),
        (fx.A_ASSOCIATE_RQ_USER_ID_JWT, 5, True, b"eyJhbGciOiJIUzI1NiJ9.e30.sig", 0),
    ],
)
def test_user_identity(
    fixture: bytes, itype: int, response: bool, primary: bytes, secondary: int
) -> None:
    events = check_all_ways([(0, fixture), (1, fx.A_ASSOCIATE_AC_SERVER_RESPONSE)])
    ui = of(events, AssociateRequested)[0].associate.user_identity
    assert (ui.identity_type, ui.response_requested, ui.primary, ui.secondary_length) == (
        itype,
        response,
        primary,
        secondary,
    )
    assert b"s3cret" not in repr(events).encode()  # the passcode is never kept
    assert of(events, AssociateAccepted)[0].associate.server_response_length == len(b"welcome")


def test_every_user_information_sub_item() -> None:
    a = of(check_all_ways([(0, fx.A_ASSOCIATE_RQ_ALL_SUB_ITEMS)]), AssociateRequested)[0].associate
    assert [(r.sop_class_uid, r.scu_role, r.scp_role) for r in a.roles] == [(fx.CT_STORAGE, 1, 1)]
    assert a.async_window == (5, 3)
    assert [(e.sop_class_uid, e.info) for e in a.extended] == [(fx.PATIENT_FIND, b"\x01\x01\x00")]
    (c,) = a.common_extended
    assert (c.sop_class_uid, c.service_class_uid, c.related_general_sop_classes) == (
        fx.CT_STORAGE,
        "1.2.840.10008.4.2",
        ("1.2.840.10008.5.1.4.1.1.2.1",),
    )


def test_reject() -> None:
    events = check_all_ways([(0, fx.A_ASSOCIATE_RQ_PLAIN), (1, fx.A_ASSOCIATE_RJ_CALLED_AE)])
    (rj,) = of(events, AssociateRejected)
    assert (rj.reject.result, rj.reject.source, rj.reject.reason) == (1, 1, 7)


@pytest.mark.parametrize(
    ("fixture", "source", "reason"), [(fx.A_ABORT_PROVIDER_INVALID, 2, 6), (fx.A_ABORT_USER, 0, 0)]
)
def test_abort(fixture: bytes, source: int, reason: int) -> None:
    stream = [(0, fx.A_ASSOCIATE_RQ_PLAIN), (1, fx.A_ASSOCIATE_AC_PLAIN), (1, fixture)]
    (ab,) = of(check_all_ways(stream), Aborted)
    assert (ab.direction, ab.abort.source, ab.abort.reason) == (1, source, reason)


@pytest.mark.parametrize("max_pdu", [16384, 200, 64])
def test_c_store_dataset_across_many_pdus(max_pdu: int) -> None:
    store = fx.c_store_rq(max_pdu=max_pdu)
    stream = [(0, fx.A_ASSOCIATE_RQ_PLAIN), (1, fx.A_ASSOCIATE_AC_PLAIN), (0, store)]
    events = check_all_ways(stream)
    (m,) = of(events, Message)
    assert (
        m.command.command_field == 0x0001 and m.command.message_id == 7 and m.command.priority == 2
    )
    assert m.dataset is not None and m.dataset.get("PatientName") == "DOE^JANE"
    assert m.dataset.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert m.dataset.sop_instance_uid == "1.2.826.0.1.3680043.8.498.1" and not m.dataset.partial
    assert m.dataset_bytes == len(fx.encode_dataset(fx.patient(), implicit=False))
    assert not m.truncated and not anomalies(events)
    assert "PixelData" not in {e.keyword for e in m.dataset.elements}  # stopped before it


def test_c_find_identifier_and_move_counts() -> None:
    stream = [
        (0, fx.A_ASSOCIATE_RQ_PLAIN),
        (1, fx.A_ASSOCIATE_AC_PLAIN),
        (0, fx.c_find_rq(2)),
        (1, fx.c_move_rsp(2, 0xFF00, 3, 1)),
    ]
    find, move = of(check_all_ways(stream), Message)
    assert find.dataset is not None and find.dataset.get("PatientName") == "*"
    assert find.dataset.get("QueryRetrieveLevel") == "PATIENT"
    c = move.command
    assert (c.status, c.n_remaining, c.n_completed, c.n_failed, c.n_warning) == (0xFF00, 3, 1, 0, 0)


@pytest.mark.parametrize(
    ("stream", "name"),
    [
        ([(0, fx.PDU_UNKNOWN_TYPE)], "dicom_pdu_unknown_type"),
        ([(0, fx.A_ASSOCIATE_RQ_ITEM_OVERRUN)], "dicom_item_overrun"),
        (
            [
                (0, fx.A_ASSOCIATE_RQ_PLAIN),
                (1, fx.A_ASSOCIATE_AC_PLAIN),
                (0, fx.P_DATA_PDV_OVERRUN),
            ],
            "dicom_pdv_length_invalid",
        ),
        (
            [
                (0, fx.A_ASSOCIATE_RQ_PLAIN),
                (1, fx.A_ASSOCIATE_AC_PLAIN),
                (0, fx.P_DATA_EVEN_CONTEXT),
            ],
            "dicom_pdv_even_context_id",
        ),
        (
            [
                (0, fx.A_ASSOCIATE_RQ_PLAIN),
                (1, fx.A_ASSOCIATE_AC_PLAIN),
                (0, fx.P_DATA_RESERVED_BITS),
            ],
            "dicom_pdv_reserved_bits",
        ),
        ([(0, fx.A_RELEASE_RQ_HUGE)], "dicom_pdu_length_invalid"),
        ([(0, fx.c_echo_rq())], "dicom_unexpected_pdu"),
    ],
    ids=[
        "unknown-type",
        "item-overrun",
        "pdv-overrun",
        "even-context",
        "reserved-bits",
        "huge-pdu",
        "data-before-associate",
    ],
)
def test_malformed_twins_are_anomalies(stream: list[tuple[int, bytes]], name: str) -> None:
    assert name in anomalies(check_all_ways(stream))


def test_resynchronises_after_a_gap() -> None:
    parser = AssociationParser()
    parser.feed(0, fx.A_ASSOCIATE_RQ_PLAIN, 1.0)
    parser.feed(1, fx.A_ASSOCIATE_AC_PLAIN, 1.0)
    store = fx.c_store_rq(max_pdu=64)
    starts = [0]  # offsets of the PDU headers inside the C-STORE bytes
    while starts[-1] < len(store):
        starts.append(
            starts[-1] + 6 + int.from_bytes(store[starts[-1] + 2 : starts[-1] + 6], "big")
        )
    k = next(i for i, o in enumerate(starts[:-1]) if store[o + 11] & 1 == 0) + 1  # 2nd dataset PDU
    assert len(starts) > k + 3
    lost_from, resume = starts[k] + 10, starts[k + 1] + 17  # both inside a dataset PDU
    events = parser.feed(0, store[:lost_from], 1.0)
    events += parser.gap(0, 1.1, resume - lost_from)
    events += parser.feed(0, store[resume:], 1.2)
    events += parser.feed(0, fx.c_echo_rq(9), 1.3)
    events += parser.close(2.0)
    assert {"dicom_stream_gap", "dicom_resync"} <= anomalies(events)
    skipped = [e for e in events if isinstance(e, Anomaly) and e.name == "dicom_resync"]
    assert skipped[0].detail == f"skipped {starts[k + 2] - resume} bytes to the next PDU"
    msgs = of(events, Message)
    echo = [m for m in msgs if m.command.command_field == 0x0030]
    assert len(echo) == 1 and echo[0].command.message_id == 9 and not echo[0].truncated
    (store_msg,) = [m for m in msgs if m.command.command_field == 0x0001]
    assert store_msg.truncated and store_msg.command.message_id == 7


# Legal transitions for an observer of one association, written from PS3.8 Table 9-10.
LEGAL = {
    (State.IDLE, PduType.A_ASSOCIATE_RQ, 0): State.AWAITING_AC,
    (State.AWAITING_AC, PduType.A_ASSOCIATE_AC, 1): State.ESTABLISHED,
    (State.AWAITING_AC, PduType.A_ASSOCIATE_RJ, 1): State.REJECTED,
    **{(State.ESTABLISHED, PduType.P_DATA_TF, d): State.ESTABLISHED for d in (0, 1)},
    **{(State.ESTABLISHED, PduType.A_RELEASE_RQ, d): State.RELEASE_REQUESTED for d in (0, 1)},
    **{(State.RELEASE_REQUESTED, PduType.P_DATA_TF, d): State.RELEASE_REQUESTED for d in (0, 1)},
    **{(State.RELEASE_REQUESTED, PduType.A_RELEASE_RQ, d): State.RELEASE_REQUESTED for d in (0, 1)},
    **{(State.RELEASE_REQUESTED, PduType.A_RELEASE_RP, d): State.RELEASED for d in (0, 1)},
    **{(State.RELEASED, PduType.A_RELEASE_RP, d): State.RELEASED for d in (0, 1)},
    # not in Table 9-10, but an observer sees it: the answer decoded before its request
    (State.IDLE, PduType.A_ASSOCIATE_AC, 1): State.ESTABLISHED,
    (State.IDLE, PduType.A_ASSOCIATE_RJ, 1): State.REJECTED,
}
ANSWER_BEFORE_REQUEST = {
    (State.IDLE, PduType.A_ASSOCIATE_AC, 1),
    (State.IDLE, PduType.A_ASSOCIATE_RJ, 1),
}
PDU_BYTES = {
    PduType.A_ASSOCIATE_RQ: fx.A_ASSOCIATE_RQ_PLAIN,
    PduType.A_ASSOCIATE_AC: fx.A_ASSOCIATE_AC_PLAIN,
    PduType.A_ASSOCIATE_RJ: fx.A_ASSOCIATE_RJ_CALLED_AE,
    PduType.P_DATA_TF: fx.c_echo_rq(),
    PduType.A_RELEASE_RQ: fx.A_RELEASE_RQ_PDU,
    PduType.A_RELEASE_RP: fx.A_RELEASE_RP_PDU,
    PduType.A_ABORT: fx.A_ABORT_USER,
}


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("pdu", list(PduType))
@pytest.mark.parametrize("direction", [0, 1])
def test_state_machine_matrix(state: State, pdu: PduType, direction: int) -> None:
    parser = AssociationParser()
    parser.state = state
    parser.contexts = {
        1: __import__("analyzer.dicom.association", fromlist=["ContextState"]).ContextState(
            1, result=0
        )
    }
    events = parser.feed(direction, PDU_BYTES[pdu], 1.0)
    if pdu == PduType.A_ABORT:
        expected: State | None = State.ABORTED
    else:
        expected = LEGAL.get((state, pdu, direction))
    if expected is None:
        assert "dicom_unexpected_pdu" in anomalies(events)
        assert parser.state == state
    else:
        assert "dicom_unexpected_pdu" not in anomalies(events)
        assert parser.state == expected
    said = "dicom_answer_before_request" in anomalies(events)
    assert said == ((state, pdu, direction) in ANSWER_BEFORE_REQUEST)


@pytest.mark.parametrize("name", sorted(fx.DIMSE_CASES))
def test_every_dimse_message(name: str) -> None:
    _, field, attrs = fx.DIMSE_CASES[name]
    stream = [
        (0, fx.A_ASSOCIATE_RQ_PLAIN),
        (1, fx.A_ASSOCIATE_AC_PLAIN),
        (0, fx.dimse_message(name)),
    ]
    (m,) = of(check_all_ways(stream), Message)
    c = m.command
    assert c.command_field == field
    expected = {
        "MessageID": c.message_id,
        "MessageIDBeingRespondedTo": c.message_id_responded,
        "Status": c.status,
        "AffectedSOPClassUID": c.affected_sop_class_uid,
        "AffectedSOPInstanceUID": c.affected_sop_instance_uid,
        "RequestedSOPClassUID": c.requested_sop_class_uid,
        "RequestedSOPInstanceUID": c.requested_sop_instance_uid,
        "Priority": c.priority,
        "MoveDestination": c.move_destination,
        "EventTypeID": c.event_type_id,
        "ActionTypeID": c.action_type_id,
        "NumberOfRemainingSuboperations": c.n_remaining,
        "NumberOfCompletedSuboperations": c.n_completed,
        "NumberOfFailedSuboperations": c.n_failed,
        "NumberOfWarningSuboperations": c.n_warning,
    }
    for key, value in attrs.items():
        if key in expected:
            assert expected[key] == value, key
    has_dataset = any(k in fx._DATASET_ATTRS for k in attrs)
    assert (m.dataset is not None) == has_dataset
    if has_dataset:
        assert m.dataset is not None and m.dataset.get("PatientID") == "PAT-0001"


def test_resync_over_many_headers_is_not_recursive() -> None:
    """After a gap, 10,000 pairs of A-RELEASE-RQ headers each after a junk byte, in one data event
    (a jumbo segment or bytes held behind a hole): once a recursion per header, now a loop."""
    from analyzer.dicom.events import ControlPdu, Resynchronized
    from analyzer.dicom.framing import PduFramer

    release = bytes([PduType.A_RELEASE_RQ, 0, 0, 0, 0, 4, 0, 0, 0, 0])
    framer = PduFramer(max_control_pdu=1 << 20)
    framer.gap(0.0)
    # (a resync candidate must be confirmed by the header after it: pairs of headers)
    events = framer.feed(b"\xff\xff" + (b"\xff" + release + release) * 10_000, 1.0)
    pdus = [e for e in events if isinstance(e, ControlPdu)]
    # (the junk byte is read as a header and takes five bytes of the next PDU with it, so
    # about one PDU per pair survives; what matters is ten thousand resyncs in one call)
    assert len(pdus) > 9_000 and all(e.pdu_type == PduType.A_RELEASE_RQ for e in pdus)
    assert sum(isinstance(e, Resynchronized) for e in events) > 4_000


def test_non_ascii_uid_and_ae_title_are_kept_as_escapes() -> None:
    """Bytes that are not ASCII in a UID or an AE title: escaped (``\\xe2``), never read as
    Latin-1 and re-encoded as UTF-8 (which made ``1.2.840.10008.â\\x80\\x8b5...``)."""
    rq = bytearray(fx.A_ASSOCIATE_RQ_PLAIN)
    calling = rq.index(b"ECHOSCU") if b"ECHOSCU" in rq else 26
    rq[calling : calling + 2] = b"\xc3\xa9"  # 'é' in UTF-8 within the calling AE title
    uid = fx.VERIFICATION.encode()
    at = bytes(rq).index(uid)
    rq[at + 14 : at + 15] = b"\xe2"  # a zero-width-space lead byte inside the abstract syntax
    p = AssociationParser()
    p.feed(0, bytes(rq), 1.0)
    assert p.request is not None
    title = p.request.calling_ae
    assert "\\xc3\\xa9" in title and title.isascii()
    abstract = p.request.contexts[0].abstract_syntax
    assert abstract is not None and "\\xe2" in abstract and abstract.isascii()


def test_resync_does_not_land_on_a_command_pdv_that_looks_like_a_reject() -> None:
    """After a gap the scan meets ``03 00 00 00 00 04 ...``, a command PDV's message control
    header and first element, which reads as an A-ASSOCIATE-RJ header. An established
    association cannot take an RJ: no candidate, the outcome stays ``accepted``, and the next
    command is decoded."""
    from analyzer.dicom.messages import AssociateRejected, Message

    p = AssociationParser()
    p.feed(0, fx.A_ASSOCIATE_RQ_PLAIN, 1.0)
    p.feed(1, fx.A_ASSOCIATE_AC_PLAIN, 1.1)
    echo = fx.c_echo_rq(message_id=5)
    assert echo[11:17] == b"\x03\x00\x00\x00\x00\x04"  # the reject-shaped bytes
    p.gap(0, 1.2, 11)
    events = p.feed(0, echo[11:] + fx.c_echo_rq(message_id=6), 1.3)
    assert not any(isinstance(e, AssociateRejected) for e in events)
    assert p.state == State.ESTABLISHED and p.accept is not None
    ids = [e.command.message_id for e in events if isinstance(e, Message)]
    assert ids == [6]


def test_an_unexpected_reject_never_rewrites_an_accepted_association() -> None:
    from analyzer.dicom.messages import AssociateRejected

    p = AssociationParser()
    p.feed(0, fx.A_ASSOCIATE_RQ_PLAIN, 1.0)
    p.feed(1, fx.A_ASSOCIATE_AC_PLAIN, 1.1)
    events = p.feed(1, fx.A_ASSOCIATE_RJ_CALLED_AE, 1.2)  # framed normally, not by a resync
    assert not any(isinstance(e, AssociateRejected) for e in events)
    assert any(getattr(e, "name", "") == "dicom_unexpected_pdu" for e in events)
    assert p.accept is not None and p.state == State.ESTABLISHED


def test_truncated_request_is_decoded_with_what_arrived() -> None:
    """An A-ASSOCIATE-RQ whose length claims more bytes than arrive before the FIN (attack
    tools send such): its complete items are decoded, AE titles and the user identity
    (username and passcode in clear) included."""
    rq = fx.A_ASSOCIATE_RQ_USER_ID_USER_PASS
    claimed = bytes(rq[:2]) + (len(rq) - 6 + 500).to_bytes(4, "big") + bytes(rq[6:])
    p = AssociationParser()
    events = p.feed(0, claimed, 1.0)
    assert p.request is None  # still waiting for 500 more bytes
    events = p.close(2.0)
    assert p.request is not None and p.request.calling_ae and p.request.called_ae
    ui = p.request.user_identity
    assert ui is not None and ui.identity_type == 2 and ui.secondary_length > 0
    assert any(getattr(e, "name", "") == "dicom_pdu_truncated" for e in events)


def test_empty_command_set_is_an_anomaly() -> None:
    """A two-byte PDV flagged command+last carries no command set: an anomaly, not a silent
    ``unknown`` message."""
    from analyzer.dicom.dimse import decode_command

    assert [a[0] for a in decode_command(b"").anomalies] == ["dicom_command_without_field"]
    p = AssociationParser()
    p.feed(0, fx.A_ASSOCIATE_RQ_PLAIN, 1.0)
    p.feed(1, fx.A_ASSOCIATE_AC_PLAIN, 1.1)
    pdv = (2).to_bytes(4, "big") + bytes([1, 0x03])  # PDV: length 2, context 1, command+last
    pdata = bytes([4, 0]) + len(pdv).to_bytes(4, "big") + pdv
    events = p.feed(0, pdata, 1.2)
    assert any(getattr(e, "name", "") == "dicom_command_without_field" for e in events)


ROLE_CASES = [
    # (name, RQ, AC, sender, message, anomaly expected)
    ("c-get store, role granted", "RQ_CT_SCP_ROLE", "AC_CT_SCP_ROLE", 1, "store", False),
    ("c-get store, no role proposed", "RQ_PLAIN", "AC_PLAIN", 1, "store", True),
    ("c-get store, role refused", "RQ_CT_SCP_ROLE", "AC_CT_ROLE_REFUSED", 1, "store", True),
    ("plain store from the requester", "RQ_PLAIN", "AC_PLAIN", 0, "store", False),
    (
        "store from a requester that gave up SCU",
        "RQ_CT_SCP_ROLE",
        "AC_CT_SCP_ROLE",
        0,
        "store",
        True,
    ),
    ("event report from the acceptor (the SCP)", "RQ_PLAIN", "AC_PLAIN", 1, "event", False),
    ("event report from the requester (an SCU)", "RQ_PLAIN", "AC_PLAIN", 0, "event", True),
]


@pytest.mark.parametrize(("case", "rq", "ac", "sender", "message", "flagged"), ROLE_CASES)
def test_requests_follow_the_negotiated_roles(
    case: str, rq: str, ac: str, sender: int, message: str, flagged: bool
) -> None:
    """PS3.7 D.3.3.4: a C-STORE from the acceptor (C-GET) needs the requester's SCP role on
    that SOP class, granted in the AC; an N-EVENT-REPORT (Storage Commitment's answer) comes
    from whoever is the SCP."""
    msg = fx.c_store_rq() if message == "store" else fx.dimse_message("N-EVENT-REPORT-RQ")
    stream = [
        (0, getattr(fx, f"A_ASSOCIATE_{rq}")),
        (1, getattr(fx, f"A_ASSOCIATE_{ac}")),
        (sender, msg),
    ]
    events, parser = run(stream, whole, close=False)
    assert ("dicom_role_not_negotiated" in anomalies(events)) == flagged, case
    if message == "store" and rq == "RQ_CT_SCP_ROLE":
        granted = ac == "AC_CT_SCP_ROLE"
        assert parser.requester_roles(3) == (False, granted)
