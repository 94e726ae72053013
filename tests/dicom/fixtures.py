"""Wire fixtures, encoded by pynetdicom (our test-time oracle) and named for their scenario.

Each constant's comment says what it decodes to. Malformed twins are made from the
well-formed bytes by changing the one field that makes them wrong.
"""

from __future__ import annotations

import struct
import warnings
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import dimse_messages
from pynetdicom.dimse_primitives import C_ECHO, C_FIND, C_MOVE, C_STORE
from pynetdicom.pdu import (
    A_ABORT_RQ,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    A_ASSOCIATE_RQ,
    A_RELEASE_RP,
    A_RELEASE_RQ,
    P_DATA_TF,
)
from pynetdicom.pdu_primitives import (
    A_ABORT,
    A_ASSOCIATE,
    A_P_ABORT,
    A_RELEASE,
    AsynchronousOperationsWindowNegotiation,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityNegotiation,
)
from pynetdicom.presentation import PresentationContext

warnings.simplefilter("ignore")

VERIFICATION = "1.2.840.10008.1.1"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PATIENT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
IMPL_UID = "1.2.826.0.1.3680043.9.3811.2.1"


def _contexts(rq: bool) -> list[PresentationContext]:
    out = []
    for cid, abstract, ts in (
        (1, VERIFICATION, [ImplicitVRLittleEndian]),
        (3, CT_STORAGE, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]),
        (5, PATIENT_FIND, [ImplicitVRLittleEndian]),
    ):
        cx = PresentationContext()
        cx.context_id = cid
        cx.abstract_syntax = abstract
        cx.transfer_syntax = ts if rq else ts[:1]
        if not rq:
            cx.result = 0 if cid != 5 else 3
        out.append(cx)
    return out


def _associate(
    rq: bool,
    *,
    identity: tuple[int, bytes, bytes, bool] | None = None,
    extras: bool = False,
    server_response: bytes | None = None,
    ct_roles: tuple[bool, bool] | None = None,
) -> bytes:
    """``ct_roles``: a role selection item (SCU, SCP) for CT Image Storage."""
    p = A_ASSOCIATE()
    p.application_context_name = "1.2.840.10008.3.1.1.1"
    p.calling_ae_title = "MODALITY_CT1"
    p.called_ae_title = "PACS_MAIN"
    p.presentation_context_definition_list = _contexts(True)
    if not rq:
        p.presentation_context_definition_results_list = _contexts(False)
        p.result = 0
    ml = MaximumLengthNotification()
    ml.maximum_length_received = 16384 if rq else 32768
    ic = ImplementationClassUIDNotification()
    ic.implementation_class_uid = IMPL_UID
    iv = ImplementationVersionNameNotification()
    iv.implementation_version_name = "LAB_SCU_1" if rq else "LAB_SCP_1"
    info: list[object] = [ml, ic, iv]
    if identity is not None and rq:
        ui = UserIdentityNegotiation()
        (
            ui.user_identity_type,
            ui.primary_field,
            ui.secondary_field,
            ui.positive_response_requested,
        ) = (identity[0], identity[1], identity[2], identity[3])
        info.append(ui)
    if server_response is not None and not rq:
        ui = UserIdentityNegotiation()
        ui.server_response = server_response
        info.append(ui)
    if ct_roles is not None:
        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid, role.scu_role, role.scp_role = CT_STORAGE, *ct_roles
        info.append(role)
    if extras:
        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid, role.scu_role, role.scp_role = CT_STORAGE, True, True
        win = AsynchronousOperationsWindowNegotiation()
        win.maximum_number_operations_invoked, win.maximum_number_operations_performed = 5, 3
        ext = SOPClassExtendedNegotiation()
        ext.sop_class_uid, ext.service_class_application_information = PATIENT_FIND, b"\x01\x01\x00"
        com = SOPClassCommonExtendedNegotiation()
        com.sop_class_uid, com.service_class_uid = CT_STORAGE, "1.2.840.10008.4.2"
        com.related_general_sop_class_identification = ["1.2.840.10008.5.1.4.1.1.2.1"]
        info += [role, win, ext, com]
    p.user_information = info
    pdu = A_ASSOCIATE_RQ() if rq else A_ASSOCIATE_AC()
    pdu.from_primitive(p)
    return bytes(pdu.encode())


# RQ MODALITY_CT1 -> PACS_MAIN, contexts 1 (Verification), 3 (CT, Explicit/Implicit LE), 5 (Patient FIND);
# max PDU 16384, implementation class 1.2.826.0.1.3680043.9.3811.2.1, version LAB_SCU_1
A_ASSOCIATE_RQ_PLAIN = _associate(True)
# the same AC: max PDU 32768, version LAB_SCP_1; contexts 1 and 3 accepted, 5 abstract-syntax-not-supported
A_ASSOCIATE_AC_PLAIN = _associate(False)
# C-GET style: the requester asks for the Storage SCP role only on CT, and the AC grants it
A_ASSOCIATE_RQ_CT_SCP_ROLE = _associate(True, ct_roles=(False, True))
A_ASSOCIATE_AC_CT_SCP_ROLE = _associate(False, ct_roles=(False, True))
# the same AC refusing both roles (pynetdicom will not encode that: patched on the wire bytes)
A_ASSOCIATE_AC_CT_ROLE_REFUSED = A_ASSOCIATE_AC_CT_SCP_ROLE.replace(
    CT_STORAGE.encode() + b"\x00\x01", CT_STORAGE.encode() + b"\x00\x00"
)
assert A_ASSOCIATE_AC_CT_ROLE_REFUSED != A_ASSOCIATE_AC_CT_SCP_ROLE
# RQ + User Identity type 2: username "radiology", passcode "s3cret-pass", positive response requested
A_ASSOCIATE_RQ_USER_ID_USER_PASS = _associate(
    True, identity=(2, b"radiology", b"s3cret-pass", True)
)
# RQ + User Identity type 1: username "radiology" only, no response requested
A_ASSOCIATE_RQ_USER_ID_USER = _associate(True, identity=(1, b"radiology", b"", False))
# RQ + User Identity type 5 (JWT)
A_ASSOCIATE_RQ_USER_ID_JWT = _associate(
    True, identity=(5, b"eyJhbGciOiJIUzI1NiJ9.e30.sig", b"", True)
)
# AC + 0x59 server response "welcome"
A_ASSOCIATE_AC_SERVER_RESPONSE = _associate(False, server_response=b"welcome")
# RQ + role selection (CT SCU+SCP), async window 5/3, extended (FIND: 01 01 00), common extended
A_ASSOCIATE_RQ_ALL_SUB_ITEMS = _associate(True, extras=True)


def _reject(result: int, source: int, reason: int) -> bytes:
    p = A_ASSOCIATE()
    p.result, p.result_source, p.diagnostic = result, source, reason
    pdu = A_ASSOCIATE_RJ()
    pdu.from_primitive(p)
    return bytes(pdu.encode())


# RJ rejected-permanent, service-user, called-AE-title-not-recognized
A_ASSOCIATE_RJ_CALLED_AE = _reject(1, 1, 7)
A_RELEASE_RQ_PDU = bytes(A_RELEASE_RQ().encode())
_rp = A_RELEASE_RP()
_rel = A_RELEASE()
_rel.result = "affirmative"
_rp.from_primitive(_rel)
A_RELEASE_RP_PDU = bytes(_rp.encode())


def _abort(provider: bool, reason: int = 0) -> bytes:
    pdu = A_ABORT_RQ()
    if provider:
        prim = A_P_ABORT()
        prim.provider_reason = reason
    else:
        prim = A_ABORT()
        prim.abort_source = 0
    pdu.from_primitive(prim)
    return bytes(pdu.encode())


# A-ABORT source service-provider, reason invalid-pdu-parameter-value
A_ABORT_PROVIDER_INVALID = _abort(True, 6)
# A-ABORT source service-user
A_ABORT_USER = _abort(False)


def _pdata(msg: object, context_id: int, max_pdu: int) -> bytes:
    out = b""
    for prim in msg.encode_msg(context_id, max_pdu):  # type: ignore[attr-defined]
        pdu = P_DATA_TF()
        pdu.from_primitive(prim)
        out += bytes(pdu.encode())
    return out


def encode_dataset(ds: Dataset, implicit: bool = True) -> bytes:
    b = DicomBytesIO()
    b.is_little_endian = True
    b.is_implicit_VR = implicit
    write_dataset(b, ds)
    return b.getvalue()


def c_echo_rq(message_id: int = 1) -> bytes:
    prim = C_ECHO()
    prim.MessageID = message_id
    prim.AffectedSOPClassUID = VERIFICATION
    msg = dimse_messages.C_ECHO_RQ()
    msg.primitive_to_message(prim)
    return _pdata(msg, 1, 16384)


def c_echo_rsp(message_id: int = 1, status: int = 0) -> bytes:
    prim = C_ECHO()
    prim.MessageIDBeingRespondedTo = message_id
    prim.AffectedSOPClassUID = VERIFICATION
    prim.Status = status
    msg = dimse_messages.C_ECHO_RSP()
    msg.primitive_to_message(prim)
    return _pdata(msg, 1, 16384)


def patient(name: str = "DOE^JANE", pid: str = "PAT-0001") -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT_STORAGE
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.PatientName = name
    ds.PatientID = pid
    ds.Modality = "CT"
    ds.Rows = 8
    ds.Columns = 8
    ds.BitsAllocated = 16
    ds.PixelData = bytes(128)
    return ds


def c_store_rq(max_pdu: int = 16384, message_id: int = 7, ds: Dataset | None = None) -> bytes:
    """C-STORE-RQ on context 3 (Explicit VR LE accepted) with a small CT dataset."""
    ds = ds or patient()
    prim = C_STORE()
    prim.MessageID = message_id
    prim.AffectedSOPClassUID = CT_STORAGE
    prim.AffectedSOPInstanceUID = ds.SOPInstanceUID
    prim.Priority = 2
    prim.DataSet = BytesIO(encode_dataset(ds, implicit=False))
    msg = dimse_messages.C_STORE_RQ()
    msg.primitive_to_message(prim)
    return _pdata(msg, 3, max_pdu)


def c_find_rq(message_id: int = 2, name: str = "*") -> bytes:
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientName = name
    query.PatientID = ""
    prim = C_FIND()
    prim.MessageID = message_id
    prim.AffectedSOPClassUID = PATIENT_FIND
    prim.Priority = 0
    prim.Identifier = BytesIO(encode_dataset(query, implicit=True))
    msg = dimse_messages.C_FIND_RQ()
    msg.primitive_to_message(prim)
    return _pdata(msg, 5, 16384)


def c_move_rsp(message_id: int, status: int, remaining: int, completed: int) -> bytes:
    prim = C_MOVE()
    prim.MessageIDBeingRespondedTo = message_id
    prim.AffectedSOPClassUID = PATIENT_MOVE
    prim.Status = status
    prim.NumberOfRemainingSuboperations = remaining
    prim.NumberOfCompletedSuboperations = completed
    prim.NumberOfFailedSuboperations = 0
    prim.NumberOfWarningSuboperations = 0
    msg = dimse_messages.C_MOVE_RSP()
    msg.primitive_to_message(prim)
    return _pdata(msg, 1, 16384)


# -- malformed twins ------------------------------------------------------------------


def with_byte(b: bytes, offset: int, value: int) -> bytes:
    return b[:offset] + bytes([value]) + b[offset + 1 :]


# PDU type 0x09 does not exist
PDU_UNKNOWN_TYPE = with_byte(A_RELEASE_RQ_PDU, 0, 0x09)
# the RQ's first presentation context item claims 0x0400 bytes: it overruns the PDU
_first_ctx = A_ASSOCIATE_RQ_PLAIN.index(b"\x20\x00", 74)
A_ASSOCIATE_RQ_ITEM_OVERRUN = (
    A_ASSOCIATE_RQ_PLAIN[: _first_ctx + 2] + b"\x04\x00" + A_ASSOCIATE_RQ_PLAIN[_first_ctx + 4 :]
)
# C-ECHO-RQ P-DATA whose PDV length is larger than its PDU
_echo = c_echo_rq()
P_DATA_PDV_OVERRUN = _echo[:6] + struct.pack(">I", 0x7FFF) + _echo[10:]
# PDV on even presentation context id 2, reserved control bits set
P_DATA_EVEN_CONTEXT = with_byte(_echo, 10, 2)
P_DATA_RESERVED_BITS = with_byte(_echo, 11, _echo[11] | 0x40)
# A-RELEASE-RQ claiming a 4 GB body
A_RELEASE_RQ_HUGE = A_RELEASE_RQ_PDU[:2] + b"\xff\xff\xff\xf0" + A_RELEASE_RQ_PDU[6:]


# -- one fixture per remaining DIMSE message (command sets only, plus a dataset where the
#    message carries one). Keyword arguments are the primitive's attributes.
MPPS = "1.2.840.10008.3.1.2.3.3"
STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
INSTANCE = "1.2.826.0.1.3680043.8.498.77"
_SMALL = Dataset()
_SMALL.PatientID = "PAT-0001"

DIMSE_CASES: dict[str, tuple[str, int, dict[str, object]]] = {
    # name: (pynetdicom message class, command field, primitive attributes)
    "C-GET-RQ": (
        "C_GET_RQ",
        0x0010,
        {
            "MessageID": 3,
            "AffectedSOPClassUID": "1.2.840.10008.5.1.4.1.2.1.3",
            "Priority": 0,
            "Identifier": _SMALL,
        },
    ),
    "C-GET-RSP": (
        "C_GET_RSP",
        0x8010,
        {
            "MessageIDBeingRespondedTo": 3,
            "Status": 0xFF00,
            "AffectedSOPClassUID": "1.2.840.10008.5.1.4.1.2.1.3",
            "NumberOfRemainingSuboperations": 2,
            "NumberOfCompletedSuboperations": 1,
            "NumberOfFailedSuboperations": 0,
            "NumberOfWarningSuboperations": 0,
        },
    ),
    "C-MOVE-RQ": (
        "C_MOVE_RQ",
        0x0021,
        {
            "MessageID": 4,
            "AffectedSOPClassUID": PATIENT_MOVE,
            "Priority": 0,
            "MoveDestination": "ARCHIVE2",
            "Identifier": _SMALL,
        },
    ),
    "C-STORE-RSP": (
        "C_STORE_RSP",
        0x8001,
        {
            "MessageIDBeingRespondedTo": 7,
            "Status": 0xA700,
            "AffectedSOPClassUID": CT_STORAGE,
            "AffectedSOPInstanceUID": INSTANCE,
        },
    ),
    "C-FIND-RSP": (
        "C_FIND_RSP",
        0x8020,
        {
            "MessageIDBeingRespondedTo": 2,
            "Status": 0xFF00,
            "AffectedSOPClassUID": PATIENT_FIND,
            "Identifier": _SMALL,
        },
    ),
    "C-CANCEL-RQ": ("C_CANCEL_RQ", 0x0FFF, {"MessageIDBeingRespondedTo": 2}),
    "N-EVENT-REPORT-RQ": (
        "N_EVENT_REPORT_RQ",
        0x0100,
        {
            "MessageID": 5,
            "AffectedSOPClassUID": STORAGE_COMMITMENT,
            "AffectedSOPInstanceUID": INSTANCE,
            "EventTypeID": 1,
        },
    ),
    "N-EVENT-REPORT-RSP": (
        "N_EVENT_REPORT_RSP",
        0x8100,
        {
            "MessageIDBeingRespondedTo": 5,
            "Status": 0,
            "AffectedSOPClassUID": STORAGE_COMMITMENT,
            "AffectedSOPInstanceUID": INSTANCE,
            "EventTypeID": 1,
        },
    ),
    "N-GET-RQ": (
        "N_GET_RQ",
        0x0110,
        {"MessageID": 6, "RequestedSOPClassUID": MPPS, "RequestedSOPInstanceUID": INSTANCE},
    ),
    "N-GET-RSP": (
        "N_GET_RSP",
        0x8110,
        {
            "MessageIDBeingRespondedTo": 6,
            "Status": 0x0112,
            "AffectedSOPClassUID": MPPS,
            "AffectedSOPInstanceUID": INSTANCE,
        },
    ),
    "N-SET-RQ": (
        "N_SET_RQ",
        0x0120,
        {
            "MessageID": 8,
            "RequestedSOPClassUID": MPPS,
            "RequestedSOPInstanceUID": INSTANCE,
            "ModificationList": _SMALL,
        },
    ),
    "N-SET-RSP": (
        "N_SET_RSP",
        0x8120,
        {
            "MessageIDBeingRespondedTo": 8,
            "Status": 0,
            "AffectedSOPClassUID": MPPS,
            "AffectedSOPInstanceUID": INSTANCE,
        },
    ),
    "N-ACTION-RQ": (
        "N_ACTION_RQ",
        0x0130,
        {
            "MessageID": 9,
            "RequestedSOPClassUID": STORAGE_COMMITMENT,
            "RequestedSOPInstanceUID": INSTANCE,
            "ActionTypeID": 1,
            "ActionInformation": _SMALL,
        },
    ),
    "N-ACTION-RSP": (
        "N_ACTION_RSP",
        0x8130,
        {
            "MessageIDBeingRespondedTo": 9,
            "Status": 0x0124,
            "AffectedSOPClassUID": STORAGE_COMMITMENT,
            "AffectedSOPInstanceUID": INSTANCE,
            "ActionTypeID": 1,
        },
    ),
    "N-CREATE-RQ": (
        "N_CREATE_RQ",
        0x0140,
        {
            "MessageID": 10,
            "AffectedSOPClassUID": MPPS,
            "AffectedSOPInstanceUID": INSTANCE,
            "AttributeList": _SMALL,
        },
    ),
    "N-CREATE-RSP": (
        "N_CREATE_RSP",
        0x8140,
        {
            "MessageIDBeingRespondedTo": 10,
            "Status": 0,
            "AffectedSOPClassUID": MPPS,
            "AffectedSOPInstanceUID": INSTANCE,
        },
    ),
    "N-DELETE-RQ": (
        "N_DELETE_RQ",
        0x0150,
        {"MessageID": 11, "RequestedSOPClassUID": MPPS, "RequestedSOPInstanceUID": INSTANCE},
    ),
    "N-DELETE-RSP": (
        "N_DELETE_RSP",
        0x8150,
        {
            "MessageIDBeingRespondedTo": 11,
            "Status": 0,
            "AffectedSOPClassUID": MPPS,
            "AffectedSOPInstanceUID": INSTANCE,
        },
    ),
}
_DATASET_ATTRS = {
    "Identifier",
    "ModificationList",
    "ActionInformation",
    "AttributeList",
    "EventInformation",
}


def dimse_message(name: str) -> bytes:
    """P-DATA-TF bytes of one DIMSE message from DIMSE_CASES, on presentation context 1."""
    from pynetdicom import dimse_primitives

    cls_name, _, attrs = DIMSE_CASES[name]
    prim = getattr(dimse_primitives, cls_name.rsplit("_", 1)[0])()
    for key, value in attrs.items():
        if key in _DATASET_ATTRS:
            value = BytesIO(encode_dataset(value, implicit=True))  # type: ignore[arg-type]
        setattr(prim, key, value)
    msg = getattr(dimse_messages, cls_name)()
    msg.primitive_to_message(prim)
    return _pdata(msg, 1, 16384)
