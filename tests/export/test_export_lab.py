"""``export`` against real peers: DCMTK and pynetdicom store to DCMTK ``storescp`` in bit-preserving
mode (``+B``: it writes each dataset exactly as it came off the wire) on loopback while tcpdump
records; every object exported from the capture must be a valid file (pydicom, DCMTK's
``dcmftest``) whose dataset bytes equal storescp's copy, byte for byte, and whose pixel data
equals the file the SCU sent.

Syntaxes: implicit and explicit VR little endian, explicit big endian, deflated, JPEG lossless,
RLE; a 2.4 MB object in one association at a 16 kB and at a 4 kB maximum PDU (hundreds of
PDUs, PDVs split across TCP segments)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pydicom
import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(
    shutil.which("storescp") is None or shutil.which("tcpdump") is None,
    reason="needs DCMTK and tcpdump (./scripts/test.sh installs them)",
)
DCMTK = Path("/usr/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def dataset_bytes(path: Path) -> bytes:
    """A Part 10 file's dataset: what follows its file meta group."""
    raw = path.read_bytes()
    assert raw[128:132] == b"DICM"
    group_length = int.from_bytes(raw[140:144], "little")
    return raw[144 + group_length :]


PYNETDICOM_STORE = """
import sys
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, MRImageStorage
ae = AE(ae_title="PYSCU")
ae.add_requested_context(CTImageStorage)
ae.add_requested_context(MRImageStorage)
assoc = ae.associate("127.0.0.1", int(sys.argv[1]), ae_title="STORESCP")
assert assoc.is_established
status = assoc.send_c_store(dcmread(sys.argv[2]))
assoc.release()
sys.exit(0 if status and status.Status == 0 else 1)
"""


BIG_ENDIAN_SCP = """
import sys
from pathlib import Path
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, MRImageStorage
out = Path(sys.argv[2])

def on_store(event):
    # the dataset exactly as it came off the wire
    (out / (event.request.AffectedSOPInstanceUID + ".raw")).write_bytes(event.request.DataSet.getvalue())
    return 0x0000

ae = AE(ae_title="STORESCP")
ae.maximum_pdu_size = 4096
for uid in (CTImageStorage, MRImageStorage):
    ae.add_supported_context(uid, ["1.2.840.10008.1.2.2"])
ae.start_server(("127.0.0.1", int(sys.argv[1])), evt_handlers=[(evt.EVT_C_STORE, on_store)])
"""


@dataclass
class Lab:
    capture: Path
    images: Path
    stores: dict[int, Path]
    """server port -> the directory storescp wrote its bit-preserved copies into."""
    out: Path


def _complete(capture: Path) -> bool:
    """No segment missing from the capture itself (Wireshark's judgement, not ours): loopback
    frames are up to 64 kB and a busy machine's capture can still miss one."""
    if shutil.which("tshark") is None:
        return True
    lost = subprocess.run(
        ["tshark", "-n", "-r", str(capture), "-Y", "tcp.analysis.lost_segment"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return not lost.strip()


def _record(tmp: Path, images: Path) -> tuple[Path, dict[int, Path]]:
    """Store the lab's objects with real peers on loopback while tcpdump records."""
    tmp.mkdir()
    # three storescp (any syntax; deflate preferred) and a pynetdicom SCP that takes big
    # endian only, with a 4 kB maximum PDU (DCMTK's acceptors no longer choose big endian)
    servers = {"any": ("+xa",), "deflate": ("+xd",)}
    ports = {name: free_port() for name in (*servers, "big")}
    stores: dict[int, Path] = {}
    procs: list[subprocess.Popen[bytes]] = []
    capture = tmp / "lab.pcap"
    bpf = " or ".join(f"port {p}" for p in ports.values())
    dump_err = tmp / "tcpdump.err"
    dump = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-B", "131072", "--immediate-mode", "-U", "-s0", "-w"]
        + [str(capture), bpf],
        stderr=dump_err.open("wb"),
    )
    try:
        deadline = time.monotonic() + 20
        while "listening on" not in dump_err.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        for name, options in servers.items():
            store = tmp / f"store_{name}"
            store.mkdir()
            stores[ports[name]] = store
            procs.append(
                subprocess.Popen(
                    [DCMTK / "storescp", "-aet", "STORESCP", "+B", *options, "-od", store]
                    + [str(ports[name])],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            wait_listening(ports[name])
        stores[ports["big"]] = tmp / "store_big"
        stores[ports["big"]].mkdir()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", BIG_ENDIAN_SCP, str(ports["big"]), tmp / "store_big"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_listening(ports["big"])

        def storescu(port: str, image: str, *options: str) -> None:
            subprocess.run(
                [DCMTK / "storescu", "-aet", "MODALITY", "-aec", "STORESCP", "-R", *options]
                + ["127.0.0.1", port, str(images / image)],
                check=True,
                capture_output=True,
            )

        any_, big, deflate = (str(ports[n]) for n in ("any", "big", "deflate"))
        storescu(any_, "small_0.dcm", "-xi")
        storescu(any_, "jpeg.dcm", "-xs")
        storescu(any_, "rle.dcm", "-xr")
        storescu(any_, "large_0.dcm", "-xe")
        storescu(big, "small_2.dcm", "-xb")
        storescu(big, "large_0.dcm", "-xb")
        storescu(deflate, "small_0.dcm", "-xd")
        subprocess.run(
            [sys.executable, "-c", PYNETDICOM_STORE, any_, str(images / "latin1.dcm")],
            check=True,
            capture_output=True,
        )
        time.sleep(0.5)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        dump.terminate()
        dump.wait(10)
    # loopback frames are up to 64 kB: a lost one would be a gap (and a partial object)
    assert "\n0 packets dropped by kernel" in dump_err.read_text(), dump_err.read_text()
    return capture, stores


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("export_lab")
    images = tmp / "images"
    subprocess.run(
        [sys.executable, str(ROOT / "captures" / "lab" / "synthetic.py"), str(images)],
        check=True,
        capture_output=True,
    )
    subprocess.run([DCMTK / "dcmcjpeg", images / "small_2.dcm", images / "jpeg.dcm"], check=True)
    subprocess.run([DCMTK / "dcmcrle", images / "small_1.dcm", images / "rle.dcm"], check=True)
    for attempt in range(3):
        capture, stores = _record(tmp / f"attempt{attempt}", images)
        if _complete(capture):
            break
    else:
        raise AssertionError("loopback capture lost segments three times")
    out = tmp / "out"
    subprocess.run(
        [sys.executable, "-m", "analyzer", "export", str(capture), "-o", str(out), "-q"],
        check=True,
        capture_output=True,
    )
    yield Lab(capture, images, stores, out)


def manifest(lab: Lab) -> pl.DataFrame:
    exported = pl.read_parquet(lab.out / "exported.parquet")
    conn = pl.read_parquet(lab.out / "conn.parquet").select("uid", "resp_p")
    return exported.join(conn, on="uid")


EXPECTED_SYNTAXES = {
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2.2",  # explicit VR big endian
    "1.2.840.10008.1.2.1.99",  # deflated
    "1.2.840.10008.1.2.4.70",  # JPEG lossless
    "1.2.840.10008.1.2.5",  # RLE
}


def test_every_store_is_exported_complete_in_every_syntax(lab: Lab) -> None:
    m = manifest(lab)
    assert m.height == 8  # the eight C-STOREs sent
    assert m["complete"].all(), m.filter(~pl.col("complete")).to_dicts()
    assert set(m["transfer_syntax"]) == EXPECTED_SYNTAXES
    dimse = pl.read_parquet(lab.out / "dimse.parquet").filter(pl.col("command") == "C-STORE-RQ")
    assert sorted(m["sop_instance_uid"]) == sorted(dimse["affected_sop_instance_uid"])


def test_dataset_bytes_equal_the_peers_own_copy(lab: Lab) -> None:
    for row in manifest(lab).iter_rows(named=True):
        path = lab.out / row["path"]
        ours = dataset_bytes(path)
        assert len(ours) == row["dataset_bytes"]
        (theirs,) = lab.stores[row["resp_p"]].glob(f"*{row['sop_instance_uid']}*")
        raw = theirs.read_bytes() if theirs.suffix == ".raw" else dataset_bytes(theirs)
        assert ours == raw, row["transfer_syntax"]
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == row["transfer_syntax"]
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.file_meta.SourceApplicationEntityTitle in ("MODALITY", "PYSCU")


def test_pixel_data_equals_the_file_sent(lab: Lab) -> None:
    pytest.importorskip("numpy")
    sources = {}
    for f in lab.images.glob("*.dcm"):
        ds = pydicom.dcmread(f)
        sources.setdefault(ds.SOPInstanceUID, []).append(ds)
    for row in manifest(lab).iter_rows(named=True):
        ours = pydicom.dcmread(lab.out / row["path"])
        candidates = sources[ours.SOPInstanceUID]
        if ours.file_meta.TransferSyntaxUID.is_compressed:
            # sent as it was: the encapsulated fragments are the file's, byte for byte
            assert any(ours.PixelData == src.PixelData for src in candidates)
        else:
            import numpy as np

            assert any(np.array_equal(ours.pixel_array, src.pixel_array) for src in candidates)


def test_dcmftest_accepts_every_file(lab: Lab) -> None:
    paths = [lab.out / p for p in manifest(lab)["path"]]
    result = subprocess.run(
        [DCMTK / "dcmftest", *map(str, paths)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout
    assert result.stdout.count("yes:") == len(paths)


def test_the_large_object_crossed_many_pdus_and_segments(lab: Lab) -> None:
    """The 2.4 MB object at a 4 kB maximum PDU: hundreds of PDUs, PDVs cut by segment edges."""
    m = manifest(lab).filter(pl.col("dataset_bytes") > 2_000_000)
    assert m.height == 2
    assoc = pl.read_parquet(lab.out / "dicom_assoc.parquet").join(m.select("uid"), on="uid")
    assert sorted(assoc["max_pdu_resp"]) == [4096, 16384]
