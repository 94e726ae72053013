"""Every rule's conditions, thresholds and escalations, on hand-built events and summary
records: at, below and above each threshold, no capture involved."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress

import pytest

from analyzer.config import Config
from analyzer.dicom.consts import CommandField as CF
from analyzer.dicom.consts import Status
from analyzer.dicom.items import Abort, PresentationContext, Reject
from analyzer.dicom.states import State
from analyzer.findings.catalog import CROSS_FLOW_RULES, FLOW_RULES, RULES
from analyzer.findings.rules import (
    auth,
    dicomweb,
    inventory_change,
    malformed,
    patient_data,
    query,
    scan,
    session,
    transport,
)
from analyzer.findings.sink import FindingSink
from analyzer.findings.summary import FactKind
from analyzer.http.bodies import BodyFacts, Part10
from analyzer.http.dicomweb import classify
from analyzer.http.parser import RequestHead
from analyzer.logs.http_flow import Exchange, parse_auth
from analyzer.logs.sinks import ListSink
from analyzer.logs.views import QueryState
from analyzer.protocols.tls import TlsInfo
from tests.findings.harness import (
    CLIENT,
    CT_STORAGE,
    FIND_STUDY_ROOT,
    OUTSIDE,
    SERVER,
    FakeAssoc,
    RuleHarness,
    anomaly,
    assoc_summary,
    associate,
    dataset,
    fact,
    flow_summary,
    flow_view,
    identity,
    message,
    rejected,
)


def test_every_rule_has_a_threshold_test_here() -> None:
    tested = {
        name.removeprefix("test_").split("__")[0] for name in globals() if name.startswith("test_")
    }
    assert set(RULES) <= tested, sorted(set(RULES) - tested)
    assert len(FLOW_RULES) + len(CROSS_FLOW_RULES) == len(RULES) == 37


# -- transport ---------------------------------------------------------------------------


def test_cleartext_association() -> None:
    h = RuleHarness(transport.CleartextAssociation)
    h.rule.on_association_end(FakeAssoc(request=None, accept=None))
    assert h.findings == []  # nothing readable crossed
    h.rule.on_association_end(FakeAssoc())
    h.rule.on_association_end(FakeAssoc(n_dimse=3))
    h.rule.on_association_end(FakeAssoc(n_dimse=3, resp_h=OUTSIDE))
    assert h.severities == ["low", "medium", "high"]
    assert h.findings[2].evidence["untrusted_hosts"] == [OUTSIDE]


def test_cleartext_on_tls_port() -> None:
    h = RuleHarness(transport.CleartextOnTlsPort)
    h.rule.on_association_end(FakeAssoc(resp_p=104))
    h.rule.on_association_end(FakeAssoc(resp_p=2762, request=None, accept=None))
    assert h.findings == []
    h.rule.on_association_end(FakeAssoc(resp_p=2762))
    assert h.severities == ["high"]
    h2 = RuleHarness(transport.CleartextOnTlsPort, tls_ports=[11113])
    h2.rule.on_association_end(FakeAssoc(resp_p=11113))
    assert len(h2.findings) == 1


def test_tls_on_dicom_port() -> None:
    h = RuleHarness(transport.TlsOnDicomPort)
    h.rule.on_flow_end(flow_view(service="ssl", resp_p=8443))  # not a DICOM port
    h.rule.on_flow_end(flow_view(service=None, resp_p=2762))
    assert h.findings == []
    h.rule.on_flow_end(
        flow_view(service="ssl", resp_p=2762, tls=TlsInfo(negotiated_version=0x0303))
    )
    h.rule.on_flow_end(
        flow_view(service="ssl", resp_p=2762, tls=TlsInfo(negotiated_version=0x0302))
    )
    h.rule.on_flow_end(flow_view(service="ssl", resp_p=2762, tls=None))
    assert h.severities == ["info", "medium", "info"]
    assert "below TLS 1.2" in h.findings[1].detail


# -- authentication ----------------------------------------------------------------------


def test_no_user_identity() -> None:
    h = RuleHarness(auth.NoUserIdentity)
    h.rule.on_association_end(FakeAssoc(accept=None))  # rejected or unanswered
    h.rule.on_association_end(FakeAssoc(request=associate(identity=identity(2, secondary=6))))
    assert h.findings == []
    h.rule.on_association_end(FakeAssoc())
    assert h.severities == ["low"] and h.emitted[0][1] == (CLIENT, SERVER, "PACS")


def test_weak_user_identity() -> None:
    h = RuleHarness(auth.WeakUserIdentity)
    h.rule.on_association_end(FakeAssoc(request=associate(identity=identity(2, secondary=4))))
    h.rule.on_association_end(FakeAssoc())
    assert h.findings == []
    h.rule.on_association_end(FakeAssoc(request=associate(identity=identity(1))))
    assert h.severities == ["medium"] and "jdoe" not in str(h.findings[0].evidence)


def test_cleartext_credentials() -> None:
    h = RuleHarness(auth.CleartextCredentials)
    h.rule.on_association_end(FakeAssoc(request=associate(identity=identity(1))))
    assert h.findings == []
    h.rule.on_association_end(FakeAssoc(request=associate(identity=identity(2, secondary=8))))
    (f,) = h.findings
    assert f.severity.label == "high" and f.evidence["passcode_length"] == 8
    assert "jdoe" not in str(f.evidence)


def test_cleartext_token() -> None:
    h = RuleHarness(auth.CleartextToken)
    for kind in (1, 2):
        h.rule.on_association_end(FakeAssoc(request=associate(identity=identity(kind))))
    assert h.findings == []
    for kind in (3, 4, 5):
        h.rule.on_association_end(FakeAssoc(request=associate(identity=identity(kind))))
    assert [f.evidence["token_type"] for f in h.findings] == ["kerberos", "saml", "jwt"]


def test_identity_not_confirmed() -> None:
    h = RuleHarness(auth.IdentityNotConfirmed)
    asked = associate(identity=identity(2, response=True, secondary=4))
    h.rule.on_association_end(FakeAssoc(request=associate(identity=identity(2, secondary=4))))
    h.rule.on_association_end(FakeAssoc(request=asked, accept=associate(server_response_length=0)))
    h.rule.on_association_end(FakeAssoc(request=asked, accept=None))
    assert h.findings == []
    h.rule.on_association_end(FakeAssoc(request=asked))
    assert h.severities == ["medium"]


def test_identity_rejected() -> None:
    h = RuleHarness(auth.IdentityRejected)  # min_attempts 3 in 300 s
    h.rule.on_association(rejected(1, identity_type=None))
    assert h.findings == []
    for i in range(3):
        h.rule.on_association(rejected(1, identity_type=2, ts=100.0 + i))
    assert h.severities == ["medium", "medium", "high"]  # below, below, at the threshold
    assert h.findings[2].title == "Credential guessing"
    h.rule.on_association(rejected(1, identity_type=2, ts=1000.0))  # the window has passed
    assert h.severities[-1] == "medium"


def test_not_authorized() -> None:
    h = RuleHarness(auth.NotAuthorized)
    a = FakeAssoc()
    h.rule.on_message(a, message(CF.C_FIND_RSP, status=Status.SUCCESS, message_id_responded=1))
    assert h.findings == []
    h.rule.on_message(a, message(CF.C_FIND_RSP, status=0x0124, message_id_responded=1))
    assert h.severities == ["medium"] and h.emitted[0][1] == (a.uid,)


def _answered(command: int, pending: int = 2, final: int | None = 0) -> QueryState:
    return QueryState(
        command=command,
        message_id=1,
        sop_class_uid=FIND_STUDY_ROOT,
        ts=101.0,
        pending=pending,
        final_status=final,
    )


def test_unauthenticated_query() -> None:
    h = RuleHarness(auth.UnauthenticatedQuery)
    h.rule.on_association_end(FakeAssoc(queries={}))
    h.rule.on_association_end(FakeAssoc(queries={(0, 1): _answered(CF.C_FIND_RQ, 0, 0xC000)}))
    password = associate(identity=identity(2, secondary=5))
    h.rule.on_association_end(
        FakeAssoc(request=password, queries={(0, 1): _answered(CF.C_FIND_RQ)})
    )
    assert h.findings == []  # nothing answered, or authenticated with a passcode
    h.rule.on_association_end(FakeAssoc(queries={(0, 1): _answered(CF.C_FIND_RQ)}))
    username = associate(identity=identity(1))
    h.rule.on_association_end(
        FakeAssoc(request=username, queries={(0, 1): _answered(CF.C_MOVE_RQ, 0, 0)})
    )
    assert h.severities == ["high", "high"]
    assert h.findings[0].evidence["pending_responses"] == 2
    assert h.findings[1].evidence["kinds"] == ["C-MOVE"]


# -- AE titles and scanning --------------------------------------------------------------


def test_ae_title_bruteforce() -> None:
    h = RuleHarness(scan.AeTitleBruteforce)  # 5 rejects, 3 distinct titles, 300 s
    for i, title in enumerate(["A", "B", "C", "D"]):
        h.rule.on_association(rejected(7, called_ae=title, ts=100.0 + i))
    assert h.findings == []  # 4 rejects: below
    h.rule.on_association(rejected(7, called_ae="A", ts=105.0))
    assert h.severities == ["high"]  # the fifth reject reaches it
    h.rule.on_association(assoc_summary(called_ae="PACS", ts=106.0))
    assert (
        h.severities == ["high", "critical"] and h.findings[1].evidence["guessed_title"] == "PACS"
    )


def test_ae_title_bruteforce__needs_distinct_titles() -> None:
    h = RuleHarness(scan.AeTitleBruteforce)
    for i in range(10):
        h.rule.on_association(rejected(7, called_ae="A" if i % 2 else "B", ts=100.0 + i))
    h.rule.on_association(rejected(1, called_ae="C", ts=111.0))  # reason 1 is not a guess
    assert h.findings == []
    h.rule.on_association(rejected(3, calling_ae="X", ts=112.0))  # calling title unknown
    assert h.severities == ["high"]


def test_promiscuous_scp() -> None:
    h = RuleHarness(scan.PromiscuousScp)  # min_titles 2
    h.rule.on_association(assoc_summary(called_ae="PACS"))
    h.rule.on_association(rejected(7, called_ae="OTHER"))
    assert h.findings == []
    h.rule.on_association(assoc_summary(called_ae="OTHER"))
    assert h.severities == ["medium"]
    h2 = RuleHarness(scan.PromiscuousScp)
    h2.rule.on_association(assoc_summary(called_ae="ANY-SCP"))
    assert len(h2.findings) == 1  # a placeholder title alone is enough
    h3 = RuleHarness(scan.PromiscuousScp)
    h3.rule.on_association(assoc_summary(called_ae="PACS"))
    h3.rule.on_association(assoc_summary(called_ae="NEW", accept_class_uid="9.9"))
    assert h3.findings == []  # another program on the port: not the same SCP


def test_association_probe() -> None:
    h = RuleHarness(scan.AssociationProbe)
    h.rule.on_association_end(FakeAssoc(pdata_pdus=2, state=State.ESTABLISHED))
    h.rule.on_association_end(FakeAssoc(state=State.RELEASED))
    h.rule.on_association_end(FakeAssoc(accept=None))  # unanswered
    assert h.findings == []
    rj = Reject(result=1, source=1, reason=7)
    h.rule.on_association_end(FakeAssoc(accept=None, reject=rj, state=State.REJECTED))
    h.rule.on_association_end(FakeAssoc(state=State.ESTABLISHED))
    verification = (
        PresentationContext(
            context_id=1,
            abstract_syntax="1.2.840.10008.1.1",
            transfer_syntaxes=("1.2.840.10008.1.2",),
        ),
    )

    def nmap(called: str) -> object:
        return associate(
            "ECHOSCU",
            called,
            contexts=verification,
            implementation_class_uid="1.2.276.0.7230010.3.0.3.6.2",
            version="OFFIS_DCMTK_362",
        )

    for called in ("ANY-SCP", "PACS", "ORTHANC"):  # dicom-brute tries titles: one tool, one row
        h.rule.on_association_end(
            FakeAssoc(request=nmap(called), accept=None, reject=rj, state=State.REJECTED)
        )
    assert h.severities == ["low", "medium", "medium", "medium", "medium"]
    assert [f.evidence["nmap"] for f in h.findings] == [False, False, True, True, True]
    nmap_keys = {d for f, d in h.emitted if f.evidence["nmap"]}
    assert len(nmap_keys) == 1  # folded together, apart from the other tool's probes
    assert len({d for _, d in h.emitted}) == 2
    # a login refused is identity_rejected's, not a probe
    login = associate(identity=identity(2, secondary=8))
    h.rule.on_association_end(FakeAssoc(request=login, accept=None, reject=rj))
    assert len(h.findings) == 5


def test_dicom_scan() -> None:
    h = RuleHarness(scan.DicomScan)  # 4 targets in 60 s
    for i in range(3):
        h.rule.on_association(assoc_summary(resp_h=f"10.0.1.{i}", ts=100.0 + i))
    h.rule.on_flow(flow_summary(resp_h="10.0.1.0", conn_state="S0", ts=103.0))  # a repeat target
    h.rule.on_flow(flow_summary(resp_h="10.0.1.9", conn_state="SF", ts=103.0))  # not a probe
    h.rule.on_flow(flow_summary(resp_h="10.0.1.9", resp_p=8080, conn_state="S0", ts=103.0))
    assert h.findings == []
    h.rule.on_flow(flow_summary(resp_h="10.0.1.9", conn_state="REJ", ts=104.0))
    assert h.severities == ["high"] and len(h.findings[0].evidence["targets"]) == 4
    h2 = RuleHarness(scan.DicomScan)
    for i in range(4):
        h2.rule.on_association(assoc_summary(resp_h=f"10.0.1.{i}", ts=100.0 + 30 * i))
    assert h2.findings == []  # spread over 90 s: never 4 within 60 s


def test_service_enumeration() -> None:
    def contexts(n: int, refused: int) -> tuple[PresentationContext, ...]:
        return tuple(
            PresentationContext(context_id=2 * i + 1, result=3 if i < refused else 0)
            for i in range(n)
        )

    h = RuleHarness(scan.ServiceEnumeration)  # 16 contexts, half refused
    h.rule.on_association_end(
        FakeAssoc(
            request=associate(contexts=contexts(15, 15)),
            accept=associate(contexts=contexts(15, 15)),
        )
    )
    h.rule.on_association_end(
        FakeAssoc(
            request=associate(contexts=contexts(16, 7)), accept=associate(contexts=contexts(16, 7))
        )
    )
    assert h.findings == []
    h.rule.on_association_end(
        FakeAssoc(
            request=associate(contexts=contexts(16, 8)), accept=associate(contexts=contexts(16, 8))
        )
    )
    assert h.severities == ["medium"] and h.findings[0].evidence == {
        "proposed": 16,
        "not_supported": 8,
    }


# -- query and retrieve ------------------------------------------------------------------


def _find(ds_values: dict[str, str], sop: str = FIND_STUDY_ROOT) -> object:
    return message(CF.C_FIND_RQ, message_id=1, affected_sop_class_uid=sop, ds=dataset(**ds_values))


def test_wildcard_query() -> None:
    h = RuleHarness(query.WildcardQuery)
    a = FakeAssoc()
    h.rule.on_message(a, _find({"QueryRetrieveLevel": "STUDY", "PatientName": "DOE*"}))
    h.rule.on_message(
        a, _find({"QueryRetrieveLevel": "STUDY", "PatientName": "*", "StudyDate": "20260101"})
    )
    h.rule.on_message(a, _find({"QueryRetrieveLevel": "STUDY", "StudyDate": ""}))  # no patient key
    h.rule.on_message(a, _find({"PatientName": "*"}, sop=CT_STORAGE))  # not a find model
    assert h.findings == []
    h.rule.on_message(
        a, _find({"QueryRetrieveLevel": "STUDY", "PatientName": "*", "StudyDate": ""})
    )
    h.rule.on_message(a, _find({"QueryRetrieveLevel": "SERIES", "PatientID": ""}))
    assert h.severities == ["high", "medium"]


def test_prefix_enumeration() -> None:
    h = RuleHarness(query.PrefixEnumeration)  # 4 distinct prefixes in 600 s
    for i, p in enumerate(["ka", "kb", "kc", "ka"]):
        h.rule.on_fact(
            fact(FactKind.FIND_PREFIX, attribute="PatientName", value_key=p, message_ts=100.0 + i)
        )
    assert h.findings == []  # 3 distinct
    h.rule.on_fact(
        fact(FactKind.FIND_PREFIX, attribute="PatientName", value_key="kd", message_ts=104.0)
    )
    assert h.severities == ["high"] and h.findings[0].evidence["prefix_queries"] == 4
    h.rule.on_fact(fact(FactKind.STORE, amount=10))
    assert len(h.findings) == 1


def test_large_result_set() -> None:
    h = RuleHarness(query.LargeResultSet)  # more than 10
    h.rule.on_association_end(FakeAssoc(queries={(0, 1): _answered(CF.C_FIND_RQ, 10)}))
    h.rule.on_association_end(FakeAssoc(queries={(0, 1): _answered(CF.C_MOVE_RQ, 50)}))
    assert h.findings == []
    q = _answered(CF.C_FIND_RQ, 11)
    q.patients.update({"P1", "P2"})
    h.rule.on_association_end(FakeAssoc(queries={(0, 1): q}))
    assert h.findings[0].evidence == {"matches": 11, "distinct_patients": 2, "message_id": 1}


def test_third_party_move() -> None:
    h = RuleHarness(query.ThirdPartyMove)
    move = dict(calling_ae="WORKSTATION", message_id=5)
    h.rule.on_fact(fact(FactKind.MOVE_REQUEST, ae="WORKSTATION", **move))  # to itself
    h.rule.on_fact(fact(FactKind.RETRIEVE_RESPONSE, command_field=CF.C_MOVE_RSP, **move))
    assert h.findings == []
    h.rule.on_fact(fact(FactKind.MOVE_REQUEST, ae="ARCHIVE", **move))
    h.rule.on_fact(
        fact(FactKind.STORE, ae="WORKSTATION", ae_message_id=5, resp_h=SERVER, resp_p=11112)
    )
    h.rule.on_fact(fact(FactKind.RETRIEVE_RESPONSE, command_field=CF.C_MOVE_RSP, amount=3, **move))
    (f,) = h.findings
    assert f.severity.label == "medium" and f.evidence["destination_host"] == SERVER
    h.rule.on_fact(fact(FactKind.MOVE_REQUEST, ae="EVIL", **move))
    h.rule.on_fact(
        fact(FactKind.STORE, ae="WORKSTATION", ae_message_id=5, resp_h=OUTSIDE, resp_p=104)
    )
    h.rule.on_fact(fact(FactKind.RETRIEVE_RESPONSE, command_field=CF.C_MOVE_RSP, **move))
    assert h.severities == ["medium", "high"] and "outside the trusted" in h.findings[1].detail
    h.rule.on_fact(fact(FactKind.MOVE_REQUEST, ae="LATER", calling_ae="WORKSTATION", message_id=9))
    h.rule.finish()  # never answered: still reported at the end
    assert h.findings[-1].evidence["move_destination"] == "LATER"


def test_third_party_move__known_title_elsewhere() -> None:
    cfg = Config(known_ae_titles={"ARCHIVE": frozenset({"10.0.0.50"})})
    h = RuleHarness(query.ThirdPartyMove, cfg)
    h.rule.on_fact(fact(FactKind.MOVE_REQUEST, ae="ARCHIVE", calling_ae="WS", message_id=1))
    h.rule.on_fact(fact(FactKind.STORE, ae="WS", ae_message_id=1, resp_h=SERVER))
    h.rule.on_fact(
        fact(FactKind.RETRIEVE_RESPONSE, command_field=CF.C_MOVE_RSP, calling_ae="WS", message_id=1)
    )
    assert h.severities == ["high"] and "not where" in h.findings[0].detail


def test_unknown_move_destination() -> None:
    h = RuleHarness(query.UnknownMoveDestination)  # 2 in 300 s
    a801 = dict(command_field=CF.C_MOVE_RSP, status=Status.MOVE_DESTINATION_UNKNOWN)
    h.rule.on_fact(fact(FactKind.RETRIEVE_RESPONSE, message_ts=100.0, **a801))
    h.rule.on_fact(fact(FactKind.RETRIEVE_RESPONSE, command_field=CF.C_MOVE_RSP, status=0xC000))
    h.rule.on_fact(fact(FactKind.RETRIEVE_RESPONSE, message_ts=500.0, **a801))  # window passed
    assert h.findings == []
    h.rule.on_fact(fact(FactKind.RETRIEVE_RESPONSE, message_ts=501.0, **a801))
    assert h.severities == ["medium"] and h.findings[0].evidence == {"count": 2}


def test_bulk_retrieve() -> None:
    h = RuleHarness(query.BulkRetrieve, max_bytes=1000)  # 500 sub-operations, 1000 bytes
    h.rule.on_fact(fact(FactKind.RETRIEVE_RESPONSE, command_field=CF.C_GET_RSP, amount=499))
    for i in range(9):
        h.rule.on_fact(fact(FactKind.STORE, amount=100, message_ts=100.0 + i))
    assert h.findings == []
    h.rule.on_fact(fact(FactKind.RETRIEVE_RESPONSE, command_field=CF.C_MOVE_RSP, amount=500))
    h.rule.on_fact(fact(FactKind.STORE, amount=100, message_ts=110.0))  # reaches 1000 bytes
    assert [f.detail.split()[0] for f in h.findings] == ["500", "0"]
    assert h.findings[1].evidence["bytes"] == 1000


def test_bulk_retrieve__c_get_stores_count_against_the_requester() -> None:
    """In a C-GET the acceptor sends the C-STOREs: the bytes go to the requester's host."""
    h = RuleHarness(query.BulkRetrieve, max_bytes=1000)
    for i in range(5):
        h.rule.on_fact(fact(FactKind.STORE, amount=100, message_ts=100.0 + i))
    for i in range(9):
        h.rule.on_fact(fact(FactKind.STORE, amount=100, message_ts=110.0 + i, from_acceptor=True))
    assert h.findings == []  # 500 bytes to the server, 900 to the client
    h.rule.on_fact(fact(FactKind.STORE, amount=100, message_ts=120.0, from_acceptor=True))
    assert [f.evidence["destination"] for f in h.findings] == [CLIENT]


# -- cleartext PHI -----------------------------------------------------------------------


def test_cleartext_phi() -> None:
    h = RuleHarness(patient_data.CleartextPhi)
    h.rule.on_association_end(FakeAssoc(phi_counts={}))
    assert h.findings == []
    h.rule.on_association_end(FakeAssoc(phi_counts={"PatientName": 2}, n_patients=1))
    h.rule.on_association_end(FakeAssoc(phi_counts={"PatientName": 1}, resp_h=OUTSIDE))
    assert h.severities == ["high", "critical"]
    assert h.findings[0].evidence["attributes"] == {"PatientName": 2}
    cfg = Config(trusted_networks=(ipaddress.ip_network("192.0.2.0/24"),))
    h2 = RuleHarness(patient_data.CleartextPhi, cfg)
    h2.rule.on_association_end(FakeAssoc(phi_counts={"PatientID": 1}))
    assert h2.severities == ["critical"]  # the lab's 10/8 is not trusted here


# -- malformed traffic -------------------------------------------------------------------


def test_malformed_uid() -> None:
    h = RuleHarness(malformed.MalformedUid)
    a = FakeAssoc()
    h.rule.on_message(a, message(CF.C_STORE_RQ, affected_sop_class_uid=CT_STORAGE))
    h.rule.on_message(a, message(CF.C_STORE_RQ, affected_sop_instance_uid="1." + "2" * 62))
    assert h.findings == []  # 64 bytes of digits and dots are fine
    h.rule.on_message(a, message(CF.C_STORE_RQ, affected_sop_instance_uid="1." + "2" * 63))
    h.rule.on_message(a, message(CF.C_STORE_RQ, affected_sop_instance_uid="1.2.3a"))
    h.rule.on_message(a, message(CF.C_STORE_RQ, affected_sop_instance_uid="../../etc/passwd"))
    assert h.severities == ["medium", "medium", "high"]
    h.rule.on_association_end(FakeAssoc(request=associate(implementation_class_uid="1.2;rm")))
    assert h.severities[-1] == "high"


def test_malformed_ae_title() -> None:
    h = RuleHarness(malformed.MalformedAeTitle)
    h.rule.on_association_end(FakeAssoc(request=associate(calling_raw=b"GOOD  TITLE     ")))
    assert h.findings == []
    h.rule.on_association_end(FakeAssoc(request=associate(calling_raw=b"BAD\\TITLE       ")))
    h.rule.on_association_end(FakeAssoc(request=associate(called_raw=b"X\x1b[2J           ")))
    h.rule.on_association_end(FakeAssoc(request=associate(called_raw=b" " * 16)))
    assert [f.evidence["role"] for f in h.findings] == ["calling", "called", "called"]
    assert "all spaces" in h.findings[2].detail


def test_pdu_framing_error() -> None:
    h = RuleHarness(malformed.PduFramingError)
    a = FakeAssoc()
    h.rule.on_anomaly(a, anomaly("dicom_stream_gap"))
    assert h.findings == []
    h.rule.on_anomaly(a, anomaly("dicom_pdu_unknown_type"))
    h.rule.on_anomaly(a, anomaly("dicom_pdv_even_context_id"))
    assert h.severities == ["medium", "medium"]
    assert [d for _, d in h.emitted] == [
        (a.uid, "dicom_pdu_unknown_type"),
        (a.uid, "dicom_pdv_even_context_id"),
    ]


def test_provider_abort() -> None:
    h = RuleHarness(malformed.ProviderAbort)
    h.rule.on_association_end(FakeAssoc(abort=Abort(source=0, reason=0)))  # the user aborted
    h.rule.on_association_end(FakeAssoc(abort=Abort(source=2, reason=3)))  # reserved reason
    assert h.findings == []
    h.rule.on_association_end(FakeAssoc(abort=Abort(source=2, reason=0)))
    for reason in (1, 2, 4, 5, 6):
        h.rule.on_association_end(FakeAssoc(abort=Abort(source=2, reason=reason)))
    assert h.severities == ["low"] + ["medium"] * 5


def test_connection_churn() -> None:
    h = RuleHarness(malformed.ConnectionChurn)  # 20 unreleased in 10 s
    released = assoc_summary(released=True)
    h.rule.on_association(released)
    h.rule.on_flow(flow_summary(uid=released.uid, had_association=True, ts=100.0))
    for i in range(19):
        h.rule.on_flow(flow_summary(ts=100.0 + i * 0.1))
    h.rule.on_flow(flow_summary(ts=100.0, resp_p=8080))  # not DICOM
    assert h.findings == []
    h.rule.on_association(rejected(1, source=3))  # congestion
    h.rule.on_flow(flow_summary(ts=102.0))
    assert h.severities == ["medium"]
    assert h.findings[0].evidence == {"connections": 20, "congestion_rejects": 1}


# -- inventory ---------------------------------------------------------------------------


def test_inventory_change() -> None:
    known = {"PACS": frozenset({SERVER}), "CT1": frozenset({"10.0.0.20"})}
    h = RuleHarness(inventory_change.InventoryChange, Config(known_ae_titles=known))
    h.rule.on_association(assoc_summary(calling_ae="CT1", orig_h="10.0.0.20"))
    assert h.findings == []
    h.rule.on_association(assoc_summary(calling_ae="CT1", orig_h="10.0.0.66"))
    kinds = [f.evidence["kind"] for f in h.findings]
    assert kinds == ["known AE title from a new address", "AE title from a second address"]
    h.rule.on_association(assoc_summary(calling_ae="NEWTITLE", orig_h="10.0.0.20"))
    assert h.findings[-1].evidence["kind"] == "new AE title on a known host"
    h.rule.on_association(
        assoc_summary(calling_ae="CT1", orig_h="10.0.0.20", request_version="LAB_2")
    )
    assert h.findings[-1].evidence["kind"] == "new implementation version"
    h.rule.on_fact(fact(FactKind.MOVE_REQUEST, ae="ARCHIVE"))
    n = len(h.findings)
    h.rule.on_fact(fact(FactKind.MOVE_REQUEST, ae="ARCHIVE"))
    assert len(h.findings) == n  # the first destination is the baseline
    h.rule.on_fact(fact(FactKind.MOVE_REQUEST, ae="ELSEWHERE"))
    assert h.findings[-1].evidence["kind"] == "new move destination"


# -- the cross-flow sink folds repeats ----------------------------------------------------


@pytest.mark.parametrize("gap, written", [(3599.0, 1), (3600.0, 2)])
def test_repeats_fold_within_the_dedup_window(gap: float, written: int) -> None:
    table = ListSink()
    sink = FindingSink(table, {"no_user_identity": 3600.0})
    h = RuleHarness(auth.NoUserIdentity)
    h.rule.on_association_end(FakeAssoc(ts=100.0))
    h.rule.on_association_end(FakeAssoc(ts=100.0 + gap))
    for f, dedup in h.emitted:
        sink.emit(f, dedup)
    sink.flush()
    assert len(table) == written
    rows = list(table)
    if written == 1:  # the repeat is counted, not lost
        (row,) = rows
        assert row.count == 2 and (row.first_ts, row.last_ts) == (100.0, 100.0 + gap)
    else:
        assert [r.count for r in rows] == [1, 1]


def test_folded_findings_name_every_flow_they_cover() -> None:
    """Five unauthenticated associations: one row, count 5, the five flow uids; past 20 flows
    the rest are counted; the first occurrence is alerted at once, the final count at the end."""
    table = ListSink()
    alerts: list[dict[str, object]] = []
    sink = FindingSink(table, {"no_user_identity": 3600.0})
    sink.listeners.append(alerts.append)
    h = RuleHarness(auth.NoUserIdentity)
    for i in range(25):
        h.rule.on_association_end(FakeAssoc(ts=100.0 + i, uid=f"C{i:02d}"))
    for f, dedup in h.emitted:
        sink.emit(f, dedup)
    assert len(table) == 0 and len(alerts) == 1  # the first at once; the row waits for the fold
    sink.expire(100.0 + 3600.0)  # the window has passed
    (row,) = list(table)
    assert row.count == 25 and row.uids == [f"C{i:02d}" for i in range(20)]
    assert row.uids_omitted == 5 and row.last_ts == 124.0
    assert len(alerts) == 2 and alerts[1]["count"] == 25


def test_a_repeat_is_folded_without_building_its_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """A repeat within its fold's window is only counted (its evidence never serialised), and
    the fold ends as when each repeat was a row."""
    import analyzer.findings.sink as sink_module

    serialised: list[object] = []
    real = sink_module.evidence_json

    def counting(evidence: object) -> str:
        serialised.append(evidence)
        return real(evidence)

    monkeypatch.setattr(sink_module, "evidence_json", counting)
    h = RuleHarness(auth.NoUserIdentity)
    for i in range(4):
        h.rule.on_association_end(FakeAssoc(ts=100.0 + i, uid=f"C{i}"))
    table = ListSink()
    sink = FindingSink(table, {"no_user_identity": 3600.0})
    for f, dedup in h.emitted:
        sink.emit(f, dedup)
    sink.flush()
    (row,) = list(table)
    assert len(serialised) == 1
    assert row.count == 4 and row.uids == ["C0", "C1", "C2", "C3"] and row.last_ts == 103.0


def test_config_options_reach_the_rule() -> None:
    cfg = dataclasses.replace(Config(), rule_options={"large_result_set": {"max_results": 1}})
    from analyzer.findings.engine import rule_options

    h = RuleHarness(query.LargeResultSet, **rule_options(cfg, query.LargeResultSet))  # type: ignore[arg-type]
    h.rule.on_association_end(FakeAssoc(queries={(0, 1): _answered(CF.C_FIND_RQ, 2)}))
    assert len(h.findings) == 1
    assert CLIENT in h.findings[0].wireshark_filter  # type: ignore[operator]


def test_bulk_retrieve__window_total_matches_a_recount() -> None:
    """The running totals equal a recount of what is in each window, as items age out."""
    from analyzer.findings.windows import SummingWindows

    w = SummingWindows(10.0, max_items=5, max_keys=3)
    for i in range(200):
        key = f"h{i % 4}"
        w.add(key, float(i) * 0.7, i + 1)
        for k, q in w.data.items():
            assert w.total(k) == sum(n for _, n in q), (i, k)
    assert set(w.sums) == set(w.data)


def test_ae_title_bruteforce__rejects_without_a_title() -> None:
    """A reject whose request carried no readable title (a truncated RQ) is still a guess;
    the sample of titles must not fail on it (it used to sort None with strings)."""
    h = RuleHarness(scan.AeTitleBruteforce)
    for i, title in enumerate(["A", None, "B", None, "C"]):
        h.rule.on_association(rejected(7, called_ae=title, ts=100.0 + i))
    assert h.severities == ["high"]
    assert h.findings[0].evidence["titles_sample"] == ["", "A", "B", "C"]


# -- session events, worklists, untrusted hosts, file-name attacks -------------------------


def test_nonstandard_port() -> None:
    h = RuleHarness(session.NonstandardPort)
    for port in (104, 11112, 2761, 2762):
        h.rule.on_association_end(FakeAssoc(resp_p=port))
    assert h.findings == []
    h.rule.on_association_end(FakeAssoc(resp_p=4242))  # Orthanc's default is not IANA's
    assert h.severities == ["info"] and h.findings[0].evidence == {"port": 4242}
    h2 = RuleHarness(session.NonstandardPort, standard_ports=[4242])
    h2.rule.on_association_end(FakeAssoc(resp_p=4242))
    assert h2.findings == []


def test_association_rejected() -> None:
    h = RuleHarness(session.AssociationRejected)
    h.rule.on_association_end(FakeAssoc())
    assert h.findings == []
    h.rule.on_association_end(FakeAssoc(reject=Reject(result=2, source=3, reason=1)))
    h.rule.on_association_end(FakeAssoc(reject=Reject(result=1, source=1, reason=7)))
    assert h.severities == ["info", "low"]
    assert h.findings[1].evidence == {
        "result": "rejected-permanent",
        "source": "service-user",
        "reason": "called-ae-title-not-recognized",
    }


def test_association_aborted() -> None:
    from analyzer.tcp.events import Direction

    h = RuleHarness(session.AssociationAborted)
    h.rule.on_association_end(FakeAssoc())
    assert h.findings == []
    h.rule.on_association_end(
        FakeAssoc(abort=Abort(source=0, reason=0), abort_direction=Direction.ORIG)
    )
    h.rule.on_association_end(
        FakeAssoc(abort=Abort(source=2, reason=2), abort_direction=Direction.RESP)
    )
    assert h.severities == ["info", "info"]
    assert [f.evidence["sent_by"] for f in h.findings] == ["orig", "resp"]
    assert h.findings[1].evidence["reason"] == "unexpected-pdu"


def test_non_dicom_on_dicom_port() -> None:
    h = RuleHarness(session.NonDicomOnDicomPort)
    h.rule.on_flow_end(flow_view(service="dicom"))
    h.rule.on_flow_end(flow_view(service=None, protocol_guess=None))  # not on a DICOM port
    assert h.findings == []
    h.rule.on_flow_end(flow_view(service=None, protocol_guess="http"))
    assert h.severities == ["low"] and "http on DICOM port 104" in h.findings[0].detail


def test_guess_protocol() -> None:
    from analyzer.protocols.service import guess_protocol, looks_like_pdu

    assert guess_protocol(b"GET / HTTP/1.1\r\n") == "http"
    assert guess_protocol(b"SSH-2.0-OpenSSH_9.2\r\n") == "ssh"
    assert guess_protocol(b"220 mail ESMTP") == "smtp/ftp"
    assert guess_protocol(b"hello there") == "text"
    assert guess_protocol(bytes([0x9F, 0x00, 0x13, 0x37])) == "binary"
    assert looks_like_pdu(bytes.fromhex("0a0000000004"))  # PDU type 0x0A: malformed DICOM
    assert not looks_like_pdu(b"GET / ")
    rdp = bytes.fromhex("0300001333e00000000000")  # an RDP connection request (TPKT)
    from analyzer.dicom.framing import HeaderRule

    assert not looks_like_pdu(rdp, HeaderRule(1 << 20)) and guess_protocol(rdp) == "rdp"
    release = bytes.fromhex("05000000000400000000")  # a release request first: still DICOM
    assert looks_like_pdu(release, HeaderRule(1 << 20))


def test_worklist_query() -> None:
    h = RuleHarness(query.WorklistQuery)
    a = FakeAssoc()
    wl = "1.2.840.10008.5.1.4.31"

    def rq(message_id: int, **keys: str) -> object:
        return message(
            CF.C_FIND_RQ, message_id=message_id, affected_sop_class_uid=wl, ds=dataset(**keys)
        )

    def rsp(message_id: int, status: int = 0xFF00, **keys: str) -> object:
        return message(
            CF.C_FIND_RSP,
            direction=1,
            message_id_responded=message_id,
            status=status,
            ds=dataset(**keys) if keys else None,
        )

    h.rule.on_message(a, rq(1, PatientName="*"))
    h.rule.on_message(a, rq(2, PatientName="*", Modality="CT"))
    h.rule.on_message(a, rq(3, PatientName="*"))
    h.rule.on_message(a, rsp(1, PatientName="DOE^JANE", PatientID="P1"))
    h.rule.on_message(a, rsp(1, PatientName="ROE^RICHARD", PatientID="P2"))
    h.rule.on_message(a, rsp(2, PatientID="P3"))
    h.rule.on_message(a, rsp(3, Modality="CT"))  # no identifier in the answer
    h.rule.on_message(a, rsp(1, status=0))
    assert h.findings == []  # reported when the association ends
    h.rule.on_association_end(a)
    assert [f.evidence["entries"] for f in h.findings] == [2, 1]
    assert [f.evidence["narrowing_keys"] for f in h.findings] == [[], ["Modality"]]
    assert "not narrowed" in h.findings[0].detail and h.rule.queries == {}


def test_phi_to_untrusted_host() -> None:
    h = RuleHarness(patient_data.PhiToUntrustedHost)
    h.rule.on_association_end(FakeAssoc(phi_counts={"PatientName": 1}))  # both trusted
    h.rule.on_association_end(FakeAssoc(resp_h=OUTSIDE))  # no PHI
    assert h.findings == []
    h.rule.on_association_end(FakeAssoc(phi_counts={"PatientName": 2}, resp_h=OUTSIDE))
    assert h.severities == ["critical"] and h.findings[0].evidence["untrusted_hosts"] == [OUTSIDE]


def test_path_traversal_value() -> None:
    h = RuleHarness(malformed.PathTraversalValue)
    a = FakeAssoc()
    ok = message(
        CF.C_STORE_RQ,
        affected_sop_instance_uid="1.2.3.4",
        ds=dataset(PatientID="MRN:1234", StudyID="S-1", AccessionNumber="A&B"[:1]),
    )
    h.rule.on_message(a, ok)
    assert h.findings == []
    h.rule.on_message(a, message(CF.C_STORE_RQ, affected_sop_instance_uid="1.2/../../etc"))
    h.rule.on_message(a, message(CF.C_STORE_RQ, direction=1, ds=dataset(PatientID="x;rm -rf /")))
    h.rule.on_message(a, message(CF.C_STORE_RQ, ds=dataset(StudyID="C:\\Windows")))
    assert h.severities == ["high"] * 3
    assert [
        (f.evidence["attribute"], f.evidence["danger"], f.evidence["sent_by"]) for f in h.findings
    ] == [
        ("AffectedSOPInstanceUID", "path traversal", "orig"),
        ("PatientID", "shell metacharacter", "resp"),
        ("StudyID", "absolute path", "orig"),
    ]
    assert all("rm -rf" not in f.detail + str(f.evidence) for f in h.findings)


def test_pdu_framing_error__cut_short_only_when_the_peer_closed() -> None:
    h = RuleHarness(malformed.PduFramingError)
    h.rule.on_anomaly(FakeAssoc(close_reason="end_of_capture"), anomaly("dicom_pdu_incomplete"))
    h.rule.on_anomaly(FakeAssoc(close_reason="timeout"), anomaly("dicom_pdu_truncated"))
    assert h.findings == []
    h.rule.on_anomaly(FakeAssoc(close_reason="fin"), anomaly("dicom_pdu_incomplete"))
    h.rule.on_anomaly(FakeAssoc(close_reason="rst"), anomaly("dicom_pdu_truncated"))
    h.rule.on_anomaly(FakeAssoc(), anomaly("dicom_item_unknown"))
    assert h.severities == ["medium"] * 3


# -- DICOMweb and HTTP (the same rules, ``on_http``) ----------------------------------------


def exchange(
    target: str = "/dicom-web/studies",
    method: str = "GET",
    status: int | None = 200,
    authorization: str | None = None,
    results: int | None = None,
    objects: tuple[str, ...] = (),
    sent_objects: tuple[str, ...] = (),
) -> Exchange:
    """An HTTP exchange as the flow driver hands it to the rules."""
    headers = (("host", "pacs"),) + ((("authorization", authorization),) if authorization else ())
    req = RequestHead(ts=5.0, method=method, target=target, version="1.1", headers=headers)

    def facts(preambles: tuple[str, ...], n: int | None) -> BodyFacts:
        f = BodyFacts(results=n)
        f.objects = [
            Part10(p, EXPLICIT, "1.2.840.10008.5.1.4.1.1.2", f"1.2.3.{i}", 100, None)
            for i, p in enumerate(preambles)
        ]
        return f

    return Exchange(
        uid="Chttp",
        ts=5.0,
        orig_h="10.0.0.5",
        orig_p=50000,
        resp_h="10.0.0.9",
        resp_p=8042,
        depth=1,
        request=req,
        target=classify(method, target),
        auth=parse_auth(headers),
        status=status,
        sent=facts(sent_objects, None),
        received=facts(objects, results),
    )


EXPLICIT = "1.2.840.10008.1.2.1"
BASIC = "Basic " + base64.b64encode(b"radiology:secret-pw").decode()


def test_executable_preamble() -> None:
    h = RuleHarness(dicomweb.ExecutablePreamble)
    h.rule.on_http(exchange(objects=("zeros", "other", "none")))
    assert h.findings == []
    h.rule.on_http(exchange(method="POST", sent_objects=("pe",), objects=()))
    h.rule.on_http(
        exchange(target="/dicom-web/studies/1.2/series/1.3/instances/1.4", objects=("elf",))
    )
    assert h.severities == ["critical", "critical"]
    assert [f.evidence["sender"] for f in h.findings] == ["10.0.0.5", "10.0.0.9"]
    assert "PE executable" in h.findings[0].detail and "ELF" in h.findings[1].detail


def test_cleartext_credentials__http() -> None:
    h = RuleHarness(auth.CleartextCredentials)
    h.rule.on_http(exchange())
    h.rule.on_http(exchange(authorization='Digest username="x", response="y"'))
    assert h.findings == []
    h.rule.on_http(exchange(authorization=BASIC))
    (f,) = h.findings
    assert f.evidence["password_length"] == 9 and "radiology" not in str(f.evidence)
    assert "secret-pw" not in str(f)


def test_cleartext_token__http() -> None:
    h = RuleHarness(auth.CleartextToken)
    h.rule.on_http(exchange(authorization=BASIC))
    assert h.findings == []
    h.rule.on_http(exchange(authorization="Bearer abc.def.ghi"))
    (f,) = h.findings
    assert f.evidence == {
        "method": "GET",
        "uri": "/dicom-web/studies",
        "auth_scheme": "bearer",
        "token_length": 11,
    }


def test_unauthenticated_query__http() -> None:
    h = RuleHarness(auth.UnauthenticatedQuery)
    h.rule.on_http(exchange(results=0))  # answered, nothing in it
    h.rule.on_http(exchange(results=3, authorization=BASIC))
    h.rule.on_http(exchange(results=3, status=401))
    h.rule.on_http(exchange(method="POST", results=3))  # STOW: not a query
    assert h.findings == []
    h.rule.on_http(exchange(results=3))
    h.rule.on_http(
        exchange(
            target="/wado?requestType=WADO&studyUID=1&seriesUID=2&objectUID=3", objects=("zeros",)
        )
    )
    assert [f.evidence["service"] for f in h.findings] == ["QIDO-RS", "WADO-URI"]


def test_wildcard_query__http() -> None:
    h = RuleHarness(query.WildcardQuery)
    for target in (
        "/dicom-web/studies?PatientName=DOE*",
        "/dicom-web/studies?PatientName=*&StudyDate=20200101",
        "/dicom-web/studies?limit=10",
        "/dicom-web/studies/1.2/series?PatientName=*",  # series search: no patient keys asked
    ):
        h.rule.on_http(exchange(target=target))
    assert len(h.findings) == 1  # the last one: PatientName=* matches everyone
    for target in (
        "/dicom-web/studies?00100010=*",
        "/dicom-web/studies?PatientID=&includefield=all",
    ):
        h.rule.on_http(exchange(target=target))
    assert len(h.findings) == 3


def test_large_result_set__http() -> None:
    h = RuleHarness(query.LargeResultSet)
    h.rule.on_http(exchange(results=10))
    assert h.findings == []
    h.rule.on_http(exchange(results=11))
    assert h.findings[0].evidence["matches"] == 11
    # pages of one connection: the total counts, once
    for offset in (0, 5, 10, 15):
        h.rule.on_http(exchange(target=f"/dicom-web/studies?limit=5&offset={offset}", results=5))
    assert [f.evidence.get("paged") for f in h.findings] == [None, True]
    assert h.findings[1].evidence["matches"] == 15


def test_cleartext_phi__http() -> None:
    h = RuleHarness(patient_data.CleartextPhi)
    h.rule.on_http(exchange(target="/dicom-web/studies?PatientName=*"))  # a wildcard is no value
    h.rule.on_http(exchange(target="/index.html?PatientName=DOE^JANE"))  # not DICOMweb
    assert h.findings == []
    h.rule.on_http(exchange(target="/dicom-web/studies?PatientName=DOE^JANE&PatientID=P1"))
    (f,) = h.findings
    assert f.evidence["attributes"] == {"PatientID": 1, "PatientName": 1}
    assert "DOE" not in str(f)


def test_identity_rejected__http() -> None:
    h = RuleHarness(auth.IdentityRejected)
    for i in range(3):
        h.rule.on_fact(
            fact(FactKind.HTTP_REJECTED, uid=f"C{i}", message_ts=float(i), status=401, ae="basic")
        )
    assert [f.title for f in h.findings] == [
        "HTTP request refused (401/403)",
        "HTTP request refused (401/403)",
        "Credential guessing",
    ]
    assert h.severities == ["medium", "medium", "high"]
