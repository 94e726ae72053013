"""DICOMweb clients for the ``dicomweb`` lab scenario: dicomweb-client (Python) and curl against
two Orthanc servers with the DICOMweb plugin, one with Basic auth and one without.

    python dicomweb_clients.py HOST DATA_DIR WORK_DIR

Traffic, in order: STOW-RS of two instances with Basic auth (dicomweb-client) and of a PE/DICOM
polyglot (curl, a multipart body built here from a file whose preamble is a DOS/PE header);
QIDO-RS at study, series and instance level with ``PatientName=*``; WADO-RS instance,
metadata and frames; QIDO with ``00100010=*`` paged by ``limit``/``offset`` and a gzip-encoded
answer (curl --compressed); WADO-URI; four wrong passwords (401); on the server without
auth: STOW, QIDO with an empty ``PatientID=`` and a bearer token, searches by prefix
(``A*`` to ``E*``), and
ordinary non-DICOM requests. Patient data is synthetic.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from pathlib import Path

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass

USER, PASSWORD = "radiology", "synthetic-pass-1"
TOKEN = "synthetic-bearer-token-0123456789"


def polyglot(source: Path, out: Path) -> pydicom.Dataset:
    """A valid Part 10 file whose 128-byte preamble is a DOS/PE header (CVE-2019-11687)."""
    ds = pydicom.dcmread(source)
    pre = bytearray(128)
    pre[0:2] = b"MZ"
    pre[0x3C:0x40] = (0x80).to_bytes(4, "little")  # e_lfanew: the PE header would follow
    stub = b"This program cannot be run in DOS mode.\r\r\n$"
    pre[0x4E : 0x4E + len(stub)] = stub
    ds.preamble = bytes(pre)
    uid = pydicom.uid.generate_uid(prefix="1.2.826.0.1.3680043.8.498.", entropy_srcs=["polyglot"])
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.save_as(out, enforce_file_format=True)
    assert out.read_bytes()[:2] == b"MZ" and out.read_bytes()[128:132] == b"DICM"
    return ds


def multipart(files: list[Path], out: Path) -> str:
    boundary = uuid.uuid4().hex
    body = b""
    for f in files:
        body += (
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + f.read_bytes()
            + b"\r\n"
        )
    out.write_bytes(body + f"--{boundary}--\r\n".encode())
    return f'multipart/related; type="application/dicom"; boundary={boundary}'


def curl(*args: str, check: bool = True) -> bytes:
    return subprocess.run(
        ["curl", "-s", "-S", "--max-time", "20", "-o", "/dev/null", *args],
        capture_output=True,
        check=check,
    ).stdout


def main(host: str, data: Path, work: Path) -> None:
    base = f"http://{host}:8042/dicom-web"
    open_base = f"http://{host}:8043/dicom-web"
    files = sorted(data.glob("small_?.dcm"))
    client = DICOMwebClient(url=base, session=create_session_from_user_pass(USER, PASSWORD))
    client.store_instances([pydicom.dcmread(f) for f in files[:2]])
    poly = polyglot(files[2], work / "polyglot.dcm")
    ctype = multipart([work / "polyglot.dcm"], work / "stow.bin")
    curl(
        "-u", f"{USER}:{PASSWORD}", "-X", "POST", "-H", f"Content-Type: {ctype}",
        "-H", "Accept: application/dicom+json", "--data-binary", f"@{work / 'stow.bin'}",
        f"{base}/studies",
    )  # fmt: skip
    studies = client.search_for_studies(search_filters={"PatientName": "*"})
    first = pydicom.dcmread(files[0])
    study, series, sop = first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID
    client.search_for_series(study_instance_uid=study)
    client.search_for_instances(study_instance_uid=study, series_instance_uid=series)
    client.retrieve_instance(study, series, sop)
    client.retrieve_instance_metadata(study, series, sop)
    # the plugin answers 400 to the media types dicomweb-client asks frames in
    with contextlib.suppress(requests.HTTPError):
        client.retrieve_instance_frames(study, series, sop, frame_numbers=[1])
    curl(
        *("-u", f"{USER}:{PASSWORD}"),
        f"{base}/studies/{study}/series/{series}/instances/{sop}/frames/1",
    )
    auth = ("-u", f"{USER}:{PASSWORD}")
    curl(*auth, "--compressed", f"{base}/studies?00100010=*&limit=1&offset=0&includefield=all")
    curl(*auth, "--compressed", f"{base}/studies?00100010=*&limit=1&offset=1&includefield=all")
    curl(*auth, "--compressed", f"{base}/studies?00100010=*&limit=1&offset=2&includefield=all")
    curl(
        *auth,
        f"http://{host}:8042/wado?requestType=WADO&studyUID={study}&seriesUID={series}"
        f"&objectUID={sop}&contentType=application/dicom",
    )
    for guess in ("admin", "password", "orthanc", "radiology1"):
        curl("-u", f"{USER}:{guess}", f"{base}/studies?PatientName=*")
    # the server without authentication
    ctype = multipart(files[:1], work / "stow_open.bin")
    curl(
        "-X", "POST", "-H", f"Content-Type: {ctype}", "--data-binary",
        f"@{work / 'stow_open.bin'}", f"{open_base}/studies",
    )  # fmt: skip
    curl("-H", f"Authorization: Bearer {TOKEN}", f"{open_base}/studies?PatientID=&includefield=all")
    for prefix in "ABCDE":  # enumeration by prefixes, without credentials
        curl(f"{open_base}/studies?PatientName={prefix}*")
    curl(f"http://{host}:8043/system")
    curl(f"http://{host}:8043/app/explorer.html")
    print(f"{len(studies)} studies; polyglot {poly.SOPInstanceUID}")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
