"""Synthetic DICOM objects for the lab: invented patients, never real data."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

PATIENTS = [
    ("DOE^JANE", "PAT-0001", "19700101", "F"),
    ("ROE^RICHARD", "PAT-0002", "19651231", "M"),
    ("MUSTERMANN^ERIKA", "PAT-0003", "19801115", "F"),
]
UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's example root: synthetic objects only


def make_image(
    path: Path, patient: tuple[str, str, str, str], size: int, modality: str, n: int
) -> None:
    name, pid, birth, sex = patient
    ds = Dataset()
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid(
        prefix=UID_ROOT, entropy_srcs=[pid, modality, str(n), str(size)]
    )
    ds.StudyInstanceUID = generate_uid(prefix=UID_ROOT, entropy_srcs=[pid, "study"])
    ds.SeriesInstanceUID = generate_uid(prefix=UID_ROOT, entropy_srcs=[pid, modality, "series"])
    ds.PatientName = name
    ds.PatientID = pid
    ds.PatientBirthDate = birth
    ds.PatientSex = sex
    ds.AccessionNumber = f"ACC{pid[-4:]}{n:02d}"
    ds.StudyDate = "20260115"
    ds.StudyTime = "101500"
    ds.Modality = modality
    ds.Manufacturer = "LabSynthetic"
    ds.InstitutionName = "Synthetic General Hospital"
    ds.ReferringPhysicianName = "WHO^DOCTOR"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = n
    ds.Rows = size
    ds.Columns = size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    rng = np.random.default_rng(n + size)
    ds.PixelData = rng.integers(0, 4096, size * size, dtype=np.uint16).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)


def make_charset_images(out: Path) -> None:
    """Two more synthetic patients whose names need their Specific Character Set."""
    for name, charset, pid, fname in (
        (
            "Yamada^Tarou=山田^太郎=やまだ^たろう",
            ["", "ISO 2022 IR 87"],
            "PAT-0005",
            "japanese.dcm",
        ),
        ("Müller^Jürgen", "ISO_IR 100", "PAT-0004", "latin1.dcm"),
    ):
        make_image(out / fname, (name, pid, "19750305", "M"), 32, "MR", 20 + len(fname))
        from pydicom import dcmread

        ds = dcmread(out / fname)
        ds.SpecificCharacterSet = charset
        ds.PatientName = name
        ds.save_as(out / fname, enforce_file_format=True)


def main(outdir: str) -> None:
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for i, patient in enumerate(PATIENTS):
        make_image(out / f"small_{i}.dcm", patient, 64, "CT" if i % 2 == 0 else "MR", i + 1)
    make_image(out / "large_0.dcm", PATIENTS[0], 1100, "CT", 9)
    make_charset_images(out)


if __name__ == "__main__":
    main(sys.argv[1])
