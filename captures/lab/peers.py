"""pynetdicom peers for the lab: a Verification/Storage/Find SCP and a storage SCU.

python peers.py scp PORT AE_TITLE      serve until killed (C-ECHO, C-STORE, C-FIND)
python peers.py store HOST PORT AE FILE...
python peers.py echo HOST PORT AE
python peers.py find HOST PORT AE       PatientName=* at PATIENT level
"""

from __future__ import annotations

import contextlib
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


def identity(
    host: str, port: int, called: str, kind: int, primary: str, secondary: str = ""
) -> None:
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


def qr_scp(port: int, title: str, dest_host: str, dest_port: int) -> None:
    from pynetdicom.sop_class import (
        PatientRootQueryRetrieveInformationModelMove,
        StudyRootQueryRetrieveInformationModelMove,
    )

    def on_find(event: Any) -> Iterator[tuple[int, Dataset | None]]:
        if event.assoc.requestor.ae_title == "INTRUDER":
            yield 0x0124, None
            return
        yield from _find(event)

    def on_move(event: Any) -> Iterator[Any]:
        if event.move_destination != "ARCHIVE2":
            yield None, None  # pynetdicom answers 0xA801, move destination unknown
            return
        yield dest_host, dest_port
        yield 0
        return

    ae = AE(ae_title=title)
    for cx in (
        Verification,
        PatientRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelFind,
        PatientRootQueryRetrieveInformationModelMove,
        StudyRootQueryRetrieveInformationModelMove,
    ):
        ae.add_supported_context(cx)
    ae.start_server(
        ("::", port), evt_handlers=[(evt.EVT_C_FIND, on_find), (evt.EVT_C_MOVE, on_move)]
    )


def find_prefixes(host: str, port: int, called: str, prefixes: list[str]) -> None:
    assoc = _associate(host, port, called, PatientRootQueryRetrieveInformationModelFind)
    for prefix in prefixes:
        query = Dataset()
        query.QueryRetrieveLevel = "PATIENT"
        query.PatientName = prefix
        query.PatientID = ""
        for _status, _identifier in assoc.send_c_find(
            query, PatientRootQueryRetrieveInformationModelFind
        ):
            pass
    assoc.release()


def _raw_rq(
    calling: bytes, called: bytes, abstract: bytes, transfer: bytes = b"1.2.840.10008.1.2"
) -> bytes:
    """An A-ASSOCIATE-RQ built by hand, so that fields can be as hostile as we like."""
    import struct

    def item(t: int, value: bytes) -> bytes:
        return struct.pack(">BBH", t, 0, len(value)) + value

    ctx = item(0x20, bytes([1, 0, 0, 0]) + item(0x30, abstract) + item(0x40, transfer))
    user = item(
        0x50, item(0x51, struct.pack(">I", 16384)) + item(0x52, b"1.2.826.0.1.3680043.9.3811.66")
    )
    body = (
        b"\x00\x01\x00\x00"
        + called.ljust(16)[:16]
        + calling.ljust(16)[:16]
        + bytes(32)
        + item(0x10, b"1.2.840.10008.3.1.1.1")
        + ctx
        + user
    )
    return struct.pack(">BBI", 1, 0, len(body)) + body


def _send(host: str, port: int, *chunks: bytes) -> None:
    import socket

    with socket.create_connection((host, port), timeout=3) as s:
        for chunk in chunks:
            s.sendall(chunk)
            try:
                s.recv(65536)
            except OSError:
                return


def malformed(host: str, port: int) -> None:
    # 1: AE titles with a backslash and control bytes, an abstract syntax UID with path traversal
    _send(
        host,
        port,
        _raw_rq(b"EVIL\\AE\x01\x02", b"STORESCP", b"1.2.840.10008.5.1.4.1.1.2/../../etc/passwd"),
    )
    # 2: a PDU type that does not exist, right after a valid RQ
    _send(
        host,
        port,
        _raw_rq(b"WORKSTATION9", b"STORESCP", b"1.2.840.10008.1.1"),
        b"\x09\x00\x00\x00\x00\x04\x00\x00\x00\x00",
    )
    # 3: P-DATA on an even presentation context id after the association is accepted
    _send(
        host,
        port,
        _raw_rq(b"WORKSTATION9", b"STORESCP", b"1.2.840.10008.1.1"),
        b"\x04\x00\x00\x00\x00\x0a\x00\x00\x00\x06\x02\x03\x00\x00\x00\x00",
    )
    # 4: an AE title of spaces only
    _send(host, port, _raw_rq(b" " * 16, b"STORESCP", b"1.2.840.10008.1.1"))


def malformed_pdus(host: str, port: int) -> None:
    """Five connections a raw-socket attacker makes, each closed on the server."""
    import struct

    rq = _raw_rq(b"WORKSTATION9", b"STORESCP", b"1.2.840.10008.1.1")
    # 1: a P-DATA-TF whose length claims more than is sent, then the connection closes
    _send(host, port, rq, b"\x04\x00\x00\x00\x10\x00\x00\x00\x00\x06\x01\x03\x00\x00\x00\x00")
    # 2: a PDV longer than its PDU
    _send(host, port, rq, b"\x04\x00\x00\x00\x00\x0a\x00\x00\x01\x00\x01\x03\x00\x00\x00\x00")
    # 3: a connection that opens with PDU type 0x0A (undefined)
    _send(host, port, b"\x0a\x00\x00\x00\x00\x04\x00\x00\x00\x00")
    # 4: an A-ASSOCIATE-RQ carrying an item of undefined type 0x7F
    junk = struct.pack(">BBH", 0x7F, 0, 4) + b"JUNK"
    body = rq[6:] + junk
    _send(host, port, struct.pack(">BBI", 1, 0, len(body)) + body)
    # 5: an A-ASSOCIATE-RQ cut short: its length claims more bytes than come before the close
    _send(host, port, rq[:80])


def deflate_bomb(host: str, port: int, called: str) -> None:
    import zlib
    from io import BytesIO

    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    from pydicom.uid import DeflatedExplicitVRLittleEndian
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.sop_class import CTImageStorage

    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.999"
    ds.PatientID = "PAT-BOMB"
    raw = DicomBytesIO()
    raw.is_little_endian, raw.is_implicit_VR = True, False
    write_dataset(raw, ds)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = comp.compress(raw.getvalue() + b"\x00" * (64 << 20)) + comp.flush()
    ae = AE(ae_title="PYNETDICOM_SCU")
    ae.add_requested_context(CTImageStorage, DeflatedExplicitVRLittleEndian)
    assoc = ae.associate(host, port, ae_title=called)
    if not assoc.is_established:
        raise SystemExit("association failed")
    prim = C_STORE()
    prim.MessageID, prim.AffectedSOPClassUID, prim.AffectedSOPInstanceUID, prim.Priority = (
        1,
        CTImageStorage,
        ds.SOPInstanceUID,
        2,
    )
    prim.DataSet = BytesIO(payload)  # already deflated: pynetdicom sends the bytes as they are
    cx = assoc.accepted_contexts[0]
    assoc.dimse.send_msg(prim, cx.context_id)
    import time

    time.sleep(3)  # let pynetdicom's sender thread put the whole message on the wire first
    assoc.abort()


def churn(host: str, port: int, n: int) -> None:
    import socket

    for _ in range(n):
        with contextlib.suppress(OSError):
            socket.create_connection((host, port), timeout=1).close()


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
    elif cmd == "qr-scp":
        qr_scp(int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif cmd == "find-prefixes":
        find_prefixes(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5:])
    elif cmd == "malformed":
        malformed(sys.argv[2], int(sys.argv[3]))
    elif cmd == "malformed-pdus":
        malformed_pdus(sys.argv[2], int(sys.argv[3]))
    elif cmd == "deflate-bomb":
        deflate_bomb(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif cmd == "churn":
        churn(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "abort":
        abort(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        raise SystemExit(__doc__)
