"""pynetdicom peers for the lab: a Verification/Storage/Find SCP and a storage SCU.

python peers.py scp PORT AE_TITLE      serve until killed (C-ECHO, C-STORE, C-FIND)
python peers.py store HOST PORT AE FILE...
python peers.py echo HOST PORT AE
python peers.py find HOST PORT AE       PatientName=* at PATIENT level
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)
from synthetic import PATIENTS


def _find(event: Any) -> Iterator[tuple[int, Dataset | None]]:
    query = event.identifier
    for name, pid, birth, sex in PATIENTS * 4:
        ds = Dataset()
        ds.QueryRetrieveLevel = query.get("QueryRetrieveLevel", "PATIENT")
        ds.PatientName = name
        ds.PatientID = pid
        ds.PatientBirthDate = birth
        ds.PatientSex = sex
        yield 0xFF00, ds


def _store(event: Any) -> int:
    return 0x0000


def scp(port: int, title: str) -> None:
    ae = AE(ae_title=title)
    ae.supported_contexts = AllStoragePresentationContexts
    for cx in (
        Verification,
        PatientRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelFind,
    ):
        ae.add_supported_context(cx)
    ae.start_server(("::", port), evt_handlers=[(evt.EVT_C_FIND, _find), (evt.EVT_C_STORE, _store)])


def store(host: str, port: int, called: str, files: list[str]) -> None:
    ae = AE(ae_title="PYNETDICOM_SCU")
    datasets = [dcmread(f) for f in files]
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate(host, port, ae_title=called)
    if not assoc.is_established:
        raise SystemExit("association failed")
    for ds in datasets:
        status = assoc.send_c_store(ds)
        if status.Status != 0:
            raise SystemExit(f"C-STORE failed: {status.Status:#06x}")
    assoc.release()


def _associate(host: str, port: int, called: str, *contexts: str) -> Any:
    ae = AE(ae_title="PYNETDICOM_SCU")
    for cx in contexts:
        ae.add_requested_context(cx)
    assoc = ae.associate(host, port, ae_title=called)
    if not assoc.is_established:
        raise SystemExit("association failed")
    return assoc


def echo(host: str, port: int, called: str) -> None:
    assoc = _associate(host, port, called, Verification)
    assoc.send_c_echo()
    assoc.release()


def find(host: str, port: int, called: str) -> None:
    assoc = _associate(host, port, called, PatientRootQueryRetrieveInformationModelFind)
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientName = "*"
    query.PatientID = ""
    for _status, _identifier in assoc.send_c_find(
        query, PatientRootQueryRetrieveInformationModelFind
    ):
        pass
    assoc.release()


def _user_id(event: Any) -> tuple[bool, bytes | None]:
    if event.user_id_type == 2:
        ok = event.secondary_field == b"lab-pass"
        return ok, (b"welcome" if ok else None)
    return True, (b"token-ok" if event.user_id_type in (3, 4, 5) else None)


def auth_scp(port: int, title: str) -> None:
    ae = AE(ae_title=title)
    ae.add_supported_context(Verification)
    ae.start_server(("::", port), evt_handlers=[(evt.EVT_USER_ID, _user_id)])


def identity(host: str, port: int, called: str, kind: int, primary: str, secondary: str = "") -> None:
    from pynetdicom.pdu_primitives import UserIdentityNegotiation

    ui = UserIdentityNegotiation()
    ui.user_identity_type = kind
    ui.positive_response_requested = kind != 1
    ui.primary_field = primary.encode()
    if kind == 2:
        ui.secondary_field = secondary.encode()
    ae = AE(ae_title="PYNETDICOM_SCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate(host, port, ae_title=called, ext_neg=[ui])
    if assoc.is_established:
        assoc.send_c_echo()
        assoc.release()


def strict_scp(port: int, title: str, max_pdu: int = 16382) -> None:
    ae = AE(ae_title=title)
    ae.require_called_aet = True
    ae.maximum_pdu_size = max_pdu
    ae.supported_contexts = AllStoragePresentationContexts
    ae.add_supported_context(Verification)
    ae.start_server(("::", port), evt_handlers=[(evt.EVT_C_STORE, _store)])


def be_scp(port: int, title: str) -> None:
    from pydicom.uid import ExplicitVRBigEndian
    from pynetdicom.sop_class import CTImageStorage, MRImageStorage

    ae = AE(ae_title=title)
    for cx in (CTImageStorage, MRImageStorage):
        ae.add_supported_context(cx, ExplicitVRBigEndian)
    ae.start_server(("::", port), evt_handlers=[(evt.EVT_C_STORE, _store)])


def abort(host: str, port: int, called: str) -> None:
    assoc = _associate(host, port, called, Verification)
    assoc.abort()


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "scp":
        scp(int(sys.argv[2]), sys.argv[3])
    elif cmd == "store":
        store(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:])
    elif cmd == "echo":
        echo(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif cmd == "find":
        find(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif cmd == "auth-scp":
        auth_scp(int(sys.argv[2]), sys.argv[3])
    elif cmd == "identity":
        identity(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), *sys.argv[6:8])
    elif cmd == "strict-scp":
        strict_scp(int(sys.argv[2]), sys.argv[3], *(int(a) for a in sys.argv[4:5]))
    elif cmd == "be-scp":
        be_scp(int(sys.argv[2]), sys.argv[3])
    elif cmd == "abort":
        abort(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        raise SystemExit(__doc__)
