#!/usr/bin/env python3
"""Memory of ``export`` while it writes one very large object: it must stay flat.

    sudo python benchmarks/export_memory.py [--sizes-mb 50,200,500]

For each size a multi-frame CT object of that many megabytes of pixel data (16-bit, 512x512
frames, a full synthetic header) is stored by a pynetdicom SCU to DCMTK ``storescp`` on
loopback while tcpdump records; then ``analyze``, ``export`` and ``export --deidentify`` run on
the capture under ``measure.py`` (peak RSS of the process tree). The exported file's dataset
is compared with storescp's bit-preserved copy. Captures go to ``benchmarks/data/`` (never
committed) and are reused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
PY = sys.executable

STORE = """
import sys
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import EnhancedCTImageStorage
ae = AE(ae_title="BIGSCU")
ae.add_requested_context(EnhancedCTImageStorage)
ae.maximum_pdu_size = 0
assoc = ae.associate("127.0.0.1", int(sys.argv[1]), ae_title="STORESCP")
status = assoc.send_c_store(dcmread(sys.argv[2]))
assoc.release()
sys.exit(0 if status and status.Status == 0 else 1)
"""


def make_object(path: Path, size_mb: int) -> None:
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    frames = max(1, size_mb * (1 << 20) // (512 * 512 * 2))
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    ds.SOPInstanceUID = generate_uid(
        prefix="1.2.826.0.1.3680043.8.498.", entropy_srcs=[str(size_mb)]
    )
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "BIG^OBJECT", "PAT-BIG", "19700101"
    ds.StudyInstanceUID = generate_uid(prefix="1.2.826.0.1.3680043.8.498.")
    ds.Modality, ds.Rows, ds.Columns, ds.NumberOfFrames = "CT", 512, 512, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (
        np.random.default_rng(size_mb)
        .integers(0, 4096, frames * 512 * 512, dtype=np.uint16)
        .tobytes()
    )
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def record(capture: Path, size_mb: int, work: Path) -> Path:
    """The capture and storescp's bit-preserved copy of the object."""
    obj = work / "big.dcm"
    make_object(obj, size_mb)
    store = work / "store"
    store.mkdir()
    port = free_port()
    scp = subprocess.Popen(
        ["/usr/bin/storescp", "-aet", "STORESCP", "+B", "+xa", "-od", str(store), str(port)]
    )
    err = work / "tcpdump.err"
    dump = subprocess.Popen(
        [
            "tcpdump",
            "-i",
            "lo",
            "-B",
            "262144",
            "--immediate-mode",
            "-U",
            "-s0",
            "-w",
            str(capture),
            f"port {port}",
        ],
        stderr=err.open("wb"),
    )
    try:
        while "listening on" not in err.read_text():
            time.sleep(0.05)
        time.sleep(0.5)
        subprocess.run([PY, "-c", STORE, str(port), str(obj)], check=True)
        time.sleep(0.5)
    finally:
        dump.terminate()
        dump.wait()
        scp.terminate()
        scp.wait()
    if "\n0 packets dropped by kernel" not in err.read_text():
        raise SystemExit(f"tcpdump dropped packets: {err.read_text()}")
    (copy,) = store.iterdir()
    return copy


def dataset_digest(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(144)
        f.seek(144 + int.from_bytes(head[140:144], "little"))
        h = hashlib.sha256()
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def measure(cmd: list[str]) -> dict[str, float]:
    out = subprocess.run(
        [PY, str(HERE / "measure.py"), *cmd], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(out.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"failed: {result.get('stderr')}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes-mb", default="50,200,500")
    args = ap.parse_args()
    DATA.mkdir(exist_ok=True)
    print(
        "| pixel data | capture | command (one process) | seconds | peak RSS | dataset equal to storescp's |"
    )
    print("|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes_mb.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            capture = DATA / f"export_{size}mb.pcap"
            capture.unlink(missing_ok=True)
            copy = record(capture, size, work)
            theirs = dataset_digest(copy)
            mb = capture.stat().st_size / 1e6
            runs = {
                "analyze": ["analyze", str(capture), "-o", str(work / "a"), "-q", "--workers", "1"],
                "export": ["export", str(capture), "-o", str(work / "e"), "-q", "--workers", "1"],
                "export --deidentify": [
                    "export",
                    str(capture),
                    "-o",
                    str(work / "d"),
                    "-q",
                    "--deidentify",
                ],
            }
            for name, cmd in runs.items():
                r = measure([PY, "-m", "analyzer", *cmd])
                same = "-"
                if name == "export":
                    (ours,) = (work / "e" / "objects").iterdir()
                    same = "yes" if dataset_digest(ours) == theirs else f"NO ({ours.name})"
                print(
                    f"| {size} MB | {mb:,.0f} MB | `{name}` | {r['seconds']:.1f} | "
                    f"{r['peak_rss_mb']:.0f} MB | {same} |",
                    flush=True,
                )
            shutil.rmtree(work / "e", ignore_errors=True)


if __name__ == "__main__":
    main()
