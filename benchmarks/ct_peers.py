"""pynetdicom peers of the CT benchmark lab (run by ct_lab.py, one process each).

python ct_peers.py scp PORT AE_TITLE
python ct_peers.py store BIND_IP HOST PORT CALLING CALLED FILE...
python ct_peers.py worklist BIND_IP HOST PORT CALLING CALLED
python ct_peers.py echo BIND_IP HOST PORT CALLING CALLED
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import ModalityWorklistInformationFind, Verification

SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
]
WORKLIST = [
    ("DOE^JANE", "PAT-1001", "19700101", "F"),
    ("ROE^RICHARD", "PAT-1002", "19651231", "M"),
    ("MUSTERMANN^ERIKA", "PAT-1003", "19801115", "F"),
    ("NAKAMURA^KENJI", "PAT-1004", "19590704", "M"),
    ("SILVA^ANA", "PAT-1005", "19921020", "F"),
]


def _worklist(event: Any) -> Iterator[tuple[int, Dataset | None]]:
    for n, (name, pid, birth, sex) in enumerate(WORKLIST):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName = name
        ds.PatientID = pid
        ds.PatientBirthDate = birth
        ds.PatientSex = sex
        ds.AccessionNumber = f"ACC{n:04d}"
        ds.RequestedProcedureID = f"RP-{n}"
        step = Dataset()
        step.Modality = "CT"
        step.ScheduledStationAETitle = "LABCT01"
        step.ScheduledProcedureStepStartDate = "20260115"
        step.ScheduledProcedureStepDescription = "CT thorax abdomen pelvis"
        ds.ScheduledProcedureStepSequence = [step]
        yield 0xFF00, ds


def _store(event: Any) -> int:
    return 0x0000


def scp(port: int, title: str, max_pdu: int) -> None:
    ae = AE(ae_title=title)
    # what the SCP accepts decides the SCU's PDV size: 16382 is pynetdicom's default (DCMTK
    # and Orthanc default to 16384); 0 is no limit (a whole object in one PDV)
    ae.maximum_pdu_size = max_pdu
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, SYNTAXES)
    ae.add_supported_context(Verification)
    ae.add_supported_context(ModalityWorklistInformationFind)
    ae.start_server(
        ("0.0.0.0", port),
        evt_handlers=[(evt.EVT_C_FIND, _worklist), (evt.EVT_C_STORE, _store)],
    )


def _associate(bind: str, host: str, port: int, calling: str, called: str, ae: AE) -> Any:
    assoc = ae.associate(host, port, ae_title=called, bind_address=(bind, 0))
    if not assoc.is_established:
        raise SystemExit("association failed")
    return assoc


def store(bind: str, host: str, port: int, calling: str, called: str, files: list[str]) -> None:
    ae = AE(ae_title=calling)
    for f in files[:1]:
        meta = dcmread(f, stop_before_pixels=True)
        ae.add_requested_context(meta.SOPClassUID, meta.file_meta.TransferSyntaxUID)
    assoc = _associate(bind, host, port, calling, called, ae)
    for f in files:
        status = assoc.send_c_store(f)  # a path: sent as encoded, never re-encoded
        if status.Status != 0:
            raise SystemExit(f"C-STORE failed: {status.Status:#06x}")
    assoc.release()


def worklist(bind: str, host: str, port: int, calling: str, called: str) -> None:
    ae = AE(ae_title=calling)
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = _associate(bind, host, port, calling, called, ae)
    query = Dataset()
    query.PatientName = "*"
    query.PatientID = ""
    query.PatientBirthDate = ""
    query.PatientSex = ""
    query.AccessionNumber = ""
    step = Dataset()
    step.Modality = "CT"
    step.ScheduledStationAETitle = calling
    step.ScheduledProcedureStepStartDate = ""
    query.ScheduledProcedureStepSequence = [step]
    for _status, _ds in assoc.send_c_find(query, ModalityWorklistInformationFind):
        pass
    assoc.release()


def echo(bind: str, host: str, port: int, calling: str, called: str) -> None:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    assoc = _associate(bind, host, port, calling, called, ae)
    assoc.send_c_echo()
    assoc.release()


def main(argv: list[str]) -> None:
    cmd, args = argv[0], argv[1:]
    if cmd == "scp":
        scp(int(args[0]), args[1], int(args[2]) if len(args) > 2 else 16382)
    elif cmd == "store":
        store(args[0], args[1], int(args[2]), args[3], args[4], args[5:])
    elif cmd == "worklist":
        worklist(args[0], args[1], int(args[2]), args[3], args[4])
    elif cmd == "echo":
        echo(args[0], args[1], int(args[2]), args[3], args[4])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
