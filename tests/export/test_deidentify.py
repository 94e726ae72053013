"""The streamed de-identification and the file meta, on hand-built datasets."""

from __future__ import annotations

import io
import random
import zlib

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from analyzer.export.deidentify import MAX_HEAD, DatasetStream, Deidentify, DeidentifyError
from analyzer.export.part10 import IMPLEMENTATION_CLASS_UID, file_meta
from analyzer.privacy import Hasher

IMPLICIT, EXPLICIT, BIG, DEFLATED = (
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
)
JPEG = "1.2.840.10008.1.2.4.70"


def encode(ds: Dataset, syntax: str) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR = syntax == IMPLICIT
    fp.is_little_endian = syntax != BIG
    write_dataset(fp, ds)
    raw = fp.getvalue()
    if syntax == DEFLATED:
        c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        raw = c.compress(raw) + c.flush()
    return raw


def patient(pixels: bytes | None = b"\x01\x02" * 64, encapsulated: bool = False) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.PatientName = "SECRET^PERSON"
    ds.PatientID = "SECRET-ID-77"
    ds.PatientBirthDate = "19010203"
    ds.AccessionNumber = "SECRETACC"
    item = Dataset()
    item.PatientName = "SECRET^NESTED"
    item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.3"
    ds.OtherPatientIDsSequence = Sequence([item])
    ds.add_new(0x00091010, "LO", "SECRET PRIVATE")
    ds.Rows = ds.Columns = 8
    if pixels is not None:
        ds.PixelData = encapsulate([pixels[:50], pixels[50:]]) if encapsulated else pixels
        ds["PixelData"].VR = "OB" if encapsulated else "OW"
        if encapsulated:
            ds["PixelData"].is_undefined_length = True
    return ds


def run(raw: bytes, syntax: str, cuts: list[int]) -> bytes:
    stream = DatasetStream(Deidentify(Hasher(b"k" * 32)), syntax)
    out, last = b"", 0
    for cut in [*cuts, len(raw)]:
        out += stream.feed(raw[last:cut])
        last = cut
    return out + stream.finish()


def decode(out: bytes, syntax: str) -> Dataset:
    if syntax == DEFLATED:
        out = zlib.decompress(out, -zlib.MAX_WBITS)
    return pydicom.filereader.read_dataset(io.BytesIO(out), syntax == IMPLICIT, syntax != BIG)


@pytest.mark.parametrize("syntax", [IMPLICIT, EXPLICIT, BIG, DEFLATED])
def test_phi_gone_pixels_kept_whatever_the_chunking(syntax: str) -> None:
    ds = patient()
    ds.add_new(0xFFFCFFFC, "OB", b"\0" * 6)  # trailing padding: dropped
    raw = encode(ds, syntax)
    whole = run(raw, syntax, [])
    rng = random.Random(7)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(raw)), rng.randint(1, min(40, len(raw) - 1))))
        assert decode(run(raw, syntax, cuts), syntax) == decode(whole, syntax)
    plain = zlib.decompress(whole, -zlib.MAX_WBITS) if syntax == DEFLATED else whole
    assert b"SECRET" not in plain
    back = decode(whole, syntax)
    assert back.PixelData == ds.PixelData
    assert back.SOPInstanceUID.startswith("2.25.") and back.SOPInstanceUID != ds.SOPInstanceUID
    assert (
        back.PatientID
        == back.PatientName
        == Hasher(b"k" * 32).patient_key("SECRET-ID-77", None, None)
    )
    assert 0xFFFCFFFC not in back


def test_encapsulated_fragments_pass_byte_for_byte() -> None:
    ds = patient(bytes(range(100)), encapsulated=True)
    raw = encode(ds, EXPLICIT)
    pixel_at = raw.index(b"\xe0\x7f\x10\x00")
    out = run(raw, EXPLICIT, list(range(pixel_at, len(raw), 3)))
    assert out.endswith(raw[pixel_at:])  # the whole Pixel Data element, items and delimiter


def test_pseudonyms_are_consistent_and_keyed() -> None:
    a, b = Deidentify(Hasher(b"k" * 32)), Deidentify(Hasher(b"other salt"))
    uid = "1.2.826.0.1.3680043.8.498.2"
    assert a.uid(uid) == a.uid(uid) != b.uid(uid)
    assert len(a.uid(uid)) <= 64


def test_no_pixel_data_the_whole_dataset_is_the_head() -> None:
    raw = encode(patient(pixels=None), EXPLICIT)
    out = run(raw, EXPLICIT, [5, 100])
    assert b"SECRET" not in out and decode(out, EXPLICIT).Rows == 8


def test_a_head_over_the_cap_is_refused() -> None:
    stream = DatasetStream(Deidentify(Hasher(b"k" * 32)), EXPLICIT)
    blob = Dataset()
    blob.add_new(0x00091010, "OB", b"\0" * 1024)
    raw = encode(blob, EXPLICIT)
    with pytest.raises(DeidentifyError):
        for _ in range(MAX_HEAD // len(raw) + 2):
            stream.feed(raw)


@pytest.mark.parametrize("syntax", [IMPLICIT, EXPLICIT, BIG, DEFLATED])
def test_garbage_is_an_error_or_output_never_a_crash(syntax: str) -> None:
    """Random damage to a real dataset: bytes out, or DeidentifyError; no other exception."""
    raw = bytearray(encode(patient(), syntax))
    rng = random.Random(11)
    for _ in range(200):
        bad = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        stream = DatasetStream(Deidentify(Hasher(b"k" * 32)), syntax)
        try:
            out = stream.feed(bytes(bad[: len(bad) // 2])) + stream.feed(
                bytes(bad[len(bad) // 2 :])
            )
            out += stream.finish()
        except DeidentifyError:
            continue
        assert isinstance(out, bytes)


def test_file_meta_reads_back_with_pydicom() -> None:
    head = file_meta(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        sop_instance_uid="1.2.3",  # odd length: padded with NUL
        transfer_syntax=JPEG,
        source_ae="CT1",
    )
    body = encode(patient(bytes(range(100)), encapsulated=True), EXPLICIT)
    ds = pydicom.dcmread(io.BytesIO(head + body))
    meta: FileMetaDataset = ds.file_meta
    assert head[:128] == bytes(128) and head[128:132] == b"DICM"
    assert meta.MediaStorageSOPInstanceUID == "1.2.3"
    assert meta.TransferSyntaxUID == JPEG
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.SourceApplicationEntityTitle == "CT1"
    assert meta.FileMetaInformationGroupLength == len(head) - 144
