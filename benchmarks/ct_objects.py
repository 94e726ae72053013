"""Synthetic CT and MR slices with the headers a modality writes (invented patients only).

    python benchmarks/ct_objects.py OUTDIR [--slices 20]

Each object carries the patient, general study, patient study, general series, frame of
reference, general equipment, general image, image plane, image pixel, CT or MR image, VOI LUT,
SOP common and contrast modules, a request attributes sequence, a procedure code sequence, a
referenced image sequence and a private block: 180-230 elements in all, then 512x512 16-bit
pixel data (0.5 MB). Files are written in Explicit VR Little Endian unless a syntax is given.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's example root: synthetic objects only
PATIENTS = [
    ("DOE^JANE", "PAT-1001", "19700101", "F", "072Y"),
    ("ROE^RICHARD", "PAT-1002", "19651231", "M", "061Y"),
    ("MUSTERMANN^ERIKA", "PAT-1003", "19801115", "F", "046Y"),
    ("NAKAMURA^KENJI", "PAT-1004", "19590704", "M", "067Y"),
    ("SILVA^ANA", "PAT-1005", "19921020", "F", "034Y"),
    ("OKAFOR^CHIDI", "PAT-1006", "19781203", "M", "048Y"),
]
MODALITIES = {
    "CT": (CTImageStorage, "SOMATOM Synthetic 128", "LabCT Medical"),
    "MR": (MRImageStorage, "Magnetom Synthetic 3T", "LabMR Systems"),
}

# Attributes a modality writes that carry no per-slice meaning here: keyword -> value.
COMMON: dict[str, object] = {
    "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
    "InstanceCreationDate": "20260115",
    "InstanceCreationTime": "101512.123456",
    "InstanceCreatorUID": UID_ROOT + "1.1",
    "TimezoneOffsetFromUTC": "+0100",
    "StudyDate": "20260115",
    "SeriesDate": "20260115",
    "AcquisitionDate": "20260115",
    "ContentDate": "20260115",
    "StudyTime": "101500",
    "SeriesTime": "101505",
    "AcquisitionTime": "101510.250000",
    "ContentTime": "101512.125000",
    "ConversionType": "",
    "InstitutionName": "Synthetic General Hospital",
    "InstitutionAddress": "1 Example Road, Nowhere",
    "ReferringPhysicianName": "WHO^DOCTOR",
    "ReferringPhysicianAddress": "2 Example Road, Nowhere",
    "ReferringPhysicianTelephoneNumbers": "+00 000 0000",
    "StationName": "LABSTATION01",
    "StudyDescription": "Synthetic thorax abdomen pelvis",
    "ProcedureCodeSequence": None,
    "SeriesDescription": "Thorax 1.0 Br40",
    "InstitutionalDepartmentName": "Radiology",
    "PhysiciansOfRecord": "HOUSE^GREGORY",
    "PerformingPhysicianName": "GREY^MEREDITH",
    "NameOfPhysiciansReadingStudy": "WATSON^JOHN",
    "OperatorsName": "TECH^TINA",
    "AdmittingDiagnosesDescription": "Synthetic follow-up",
    "ManufacturerModelName": "",
    "ReferencedImageSequence": None,
    "DerivationDescription": "",
    "PatientAddress": "3 Example Road, Nowhere",
    "PatientTelephoneNumbers": "+00 111 1111",
    "EthnicGroup": "",
    "Occupation": "Engineer",
    "AdditionalPatientHistory": "None (synthetic)",
    "PatientComments": "Synthetic patient for benchmarks",
    "PatientSize": "1.72",
    "PatientWeight": "70",
    "MedicalAlerts": "None",
    "Allergies": "None known",
    "SmokingStatus": "NO",
    "PregnancyStatus": 4,
    "BodyPartExamined": "CHEST",
    "ScanOptions": "HELICAL MODE",
    "SliceThickness": "1.0",
    "KVP": "120",
    "DataCollectionDiameter": "500",
    "DeviceSerialNumber": "SN-000123",
    "SoftwareVersions": "syngo CT VB20A",
    "ProtocolName": "TAP_routine",
    "ReconstructionDiameter": "380",
    "DistanceSourceToDetector": "1085.6",
    "DistanceSourceToPatient": "595",
    "GantryDetectorTilt": "0",
    "TableHeight": "155",
    "RotationDirection": "CW",
    "ExposureTime": "500",
    "XRayTubeCurrent": "210",
    "Exposure": "105",
    "FilterType": "FLAT",
    "GeneratorPower": "25",
    "FocalSpots": "1.2",
    "DateOfLastCalibration": "20260101",
    "TimeOfLastCalibration": "070000",
    "ConvolutionKernel": "Br40d",
    "PatientPosition": "HFS",
    "RevolutionTime": "0.5",
    "SingleCollimationWidth": "0.6",
    "TotalCollimationWidth": "38.4",
    "TableSpeed": "46",
    "TableFeedPerRotation": "23",
    "SpiralPitchFactor": "0.6",
    "CTDIvol": "7.5",
    "ContrastBolusAgent": "Iomeprol 350",
    "ContrastBolusRoute": "IV",
    "ContrastBolusVolume": "80",
    "ContrastBolusStartTime": "101400",
    "ContrastBolusTotalDose": "28",
    "ContrastFlowRate": "3",
    "ContrastFlowDuration": "27",
    "StudyID": "1",
    "AcquisitionNumber": "2",
    "PatientOrientation": ["L", "P"],
    "ImageOrientationPatient": ["1", "0", "0", "0", "1", "0"],
    "PositionReferenceIndicator": "SN",
    "SamplesPerPixel": 1,
    "PhotometricInterpretation": "MONOCHROME2",
    "Rows": 512,
    "Columns": 512,
    "PixelSpacing": ["0.7421875", "0.7421875"],
    "BitsAllocated": 16,
    "BitsStored": 12,
    "HighBit": 11,
    "PixelRepresentation": 0,
    "SmallestImagePixelValue": 0,
    "LargestImagePixelValue": 4095,
    "WindowCenter": ["40", "400"],
    "WindowWidth": ["400", "1500"],
    "RescaleIntercept": "-1024",
    "RescaleSlope": "1",
    "RescaleType": "HU",
    "WindowCenterWidthExplanation": ["WINDOW1", "WINDOW2"],
    "LossyImageCompression": "00",
    "RequestingPhysician": "HOUSE^GREGORY",
    "RequestingService": "Oncology",
    "RequestedProcedureDescription": "CT thorax abdomen pelvis",
    "RequestAttributesSequence": None,
    "PerformedProcedureStepStartDate": "20260115",
    "PerformedProcedureStepStartTime": "101500",
    "PerformedProcedureStepID": "PPS-1",
    "PerformedProcedureStepDescription": "CT TAP",
    "CommentsOnThePerformedProcedureStep": "",
    "FilmConsumptionSequence": None,
    "IrradiationEventUID": UID_ROOT + "9.9",
    "EstimatedDoseSaving": "32.5",
    "ImageComments": "Synthetic slice",
    "IssuerOfPatientID": "SYNTH",
    "OtherPatientIDs": "ALT-0000",
    "PatientBirthName": "",
    "PatientMotherBirthName": "",
    "MilitaryRank": "",
    "CountryOfResidence": "Nowhere",
    "RegionOfResidence": "",
    "PatientReligiousPreference": "",
    "LastMenstrualDate": "",
    "PatientState": "",
    "SpecialNeeds": "",
    "ResponsibleOrganization": "",
    "SpecificCharacterSet": "ISO_IR 100",
    "CodingSchemeIdentificationSequence": None,
    "ImageLaterality": "U",
    "ReferringPhysicianIdentificationSequence": None,
    "ScheduledProcedureStepID": "SPS-1",
    "TransferTubeNumber": "",
    "CalciumScoringMassFactorPatient": "0.75",
    "AcquisitionContextSequence": [],
    "AnatomicRegionSequence": None,
    "FrameOfReferenceUID": "",
    "PresentationLUTShape": "IDENTITY",
    "DetectorElementSize": ["0.6", "0.6"],
    "ExposureModulationType": "XYZ_EC",
    "CTDIPhantomTypeCodeSequence": None,
    "DataCollectionCenterPatient": ["0", "-155", "-300"],
    "ReconstructionTargetCenterPatient": ["0", "-155", "-300"],
    "DeviceUID": UID_ROOT + "7.7",
    "BurnedInAnnotation": "NO",
    "RecognizableVisualFeatures": "NO",
    "QualityControlImage": "NO",
    "LongitudinalTemporalInformationModified": "UNMODIFIED",
    "ContentQualification": "PRODUCT",
    "PixelPaddingValue": 0,
    "ReasonForStudy": "Synthetic staging",
    "ReasonForTheRequestedProcedure": "Synthetic staging",
    "RequestedProcedureID": "RP-1",
    "RequestedProcedurePriority": "ROUTINE",
    "FillerOrderNumberImagingServiceRequest": "FILL-1",
    "PlacerOrderNumberImagingServiceRequest": "PLAC-1",
    "AdmissionID": "ADM-1",
    "CurrentPatientLocation": "Ward 7",
    "PatientInstitutionResidence": "",
    "VisitComments": "",
    "PerformedStationAETitle": "LABCT01",
    "PerformedStationName": "LABSTATION01",
    "PerformedLocation": "CT room 1",
    "ModalitiesInStudy": ["CT", "SR"],
    "NumberOfStudyRelatedSeries": 3,
    "NumberOfStudyRelatedInstances": 600,
}


def _typed(keyword: str, value: object) -> object:
    """Binary number VRs take numbers, not the strings written above."""
    vr = dictionary_VR(tag_for_keyword(keyword) or 0)
    if vr in ("FD", "FL") and isinstance(value, str) and value:
        return float(value)
    if vr in ("FD", "FL") and isinstance(value, list):
        return [float(v) for v in value]
    return value


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _sequences(ds: Dataset, study_uid: str, n: int) -> None:
    ds.ProcedureCodeSequence = Sequence([_code("ZZ1001", "99SYN", "CT TAP with contrast")])
    ds.AnatomicRegionSequence = Sequence([_code("T-D3000", "SRT", "Chest")])
    ds.CTDIPhantomTypeCodeSequence = Sequence([_code("113691", "DCM", "IEC Body Dosimetry")])
    ref = Dataset()
    ref.ReferencedSOPClassUID = CTImageStorage
    ref.ReferencedSOPInstanceUID = generate_uid(prefix=UID_ROOT, entropy_srcs=[study_uid, "ref"])
    ds.ReferencedImageSequence = Sequence([ref])
    req = Dataset()
    req.RequestedProcedureID = "RP-1"
    req.ScheduledProcedureStepID = "SPS-1"
    req.ScheduledProcedureStepDescription = "CT TAP"
    req.AccessionNumber = ds.AccessionNumber
    req.ScheduledProtocolCodeSequence = Sequence([_code("P1", "99SYN", "Routine TAP")])
    ds.RequestAttributesSequence = Sequence([req])
    film = Dataset()
    film.NumberOfFilms = 0
    ds.FilmConsumptionSequence = Sequence([film])
    scheme = Dataset()
    scheme.CodingSchemeDesignator = "99SYN"
    scheme.CodingSchemeName = "Synthetic codes"
    ds.CodingSchemeIdentificationSequence = Sequence([scheme])
    who = Dataset()
    who.InstitutionName = "Synthetic General Hospital"
    who.PersonIdentificationCodeSequence = Sequence([_code("D42", "99SYN", "Dr Who")])
    ds.ReferringPhysicianIdentificationSequence = Sequence([who])


def _private(ds: Dataset, n: int) -> None:
    block = ds.private_block(0x0019, "LAB SYNTHETIC CT 1.0", create=True)
    for offset in range(0x10, 0x30):
        block.add_new(offset, "DS" if offset % 3 else "LO", f"{offset * 1.5:.2f}")
    block2 = ds.private_block(0x0029, "LAB SYNTHETIC HEADER", create=True)
    block2.add_new(0x08, "CS", "SYNTH HEADER")
    block2.add_new(0x10, "OB", hashlib.sha256(str(n).encode()).digest() * 64)  # 2 kB blob
    block2.add_new(0x18, "CS", "SYNTH SERIES")


def slice_dataset(modality: str, patient_index: int, series: int, n: int) -> Dataset:
    """Slice ``n`` of a series for one synthetic patient, pixel data included."""
    name, pid, birth, sex, age = PATIENTS[patient_index % len(PATIENTS)]
    sop_class, model, manufacturer = MODALITIES[modality]
    study = generate_uid(prefix=UID_ROOT, entropy_srcs=[pid, "study", str(series // 3)])
    ds = Dataset()
    for keyword, value in COMMON.items():
        if value is not None:
            setattr(ds, keyword, _typed(keyword, value))
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid(
        prefix=UID_ROOT, entropy_srcs=[pid, modality, str(series), str(n)]
    )
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = generate_uid(prefix=UID_ROOT, entropy_srcs=[study, str(series)])
    ds.FrameOfReferenceUID = generate_uid(prefix=UID_ROOT, entropy_srcs=[study, "for"])
    ds.PatientName = name
    ds.PatientID = pid
    ds.PatientBirthDate = birth
    ds.PatientSex = sex
    ds.PatientAge = age
    ds.AccessionNumber = f"ACC{pid[-4:]}{series:03d}"
    ds.Modality = modality
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = model
    ds.SeriesNumber = series
    ds.InstanceNumber = n
    ds.SliceLocation = f"{-300 + n * 1.0:.1f}"
    ds.ImagePositionPatient = ["-190", "-345", f"{-300 + n * 1.0:.1f}"]
    if modality == "MR":
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.MagneticFieldStrength = "3"
        ds.EchoTime = "12"
        ds.RepetitionTime = "500"
        ds.ImagingFrequency = "123.2"
        ds.ImagedNucleus = "1H"
    _sequences(ds, study, n)
    _private(ds, n)
    rng = np.random.default_rng(hash((patient_index, series, n)) & 0xFFFFFFFF)
    ds.PixelData = rng.integers(0, 4096, 512 * 512, dtype=np.uint16).tobytes()
    for elem in ds:  # every keyword above must be a real attribute
        dictionary_VR(elem.tag) if not elem.tag.is_private else None
    return ds


def write_series(
    out: Path, modality: str, patient_index: int, series: int, slices: int, syntax: str
) -> list[Path]:
    """Write one series as Part 10 files in ``syntax``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(1, slices + 1):
        ds = slice_dataset(modality, patient_index, series, n)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = syntax
        ds.file_meta = meta
        tag = next((k for k, v in SYNTAXES.items() if v == syntax), "other")
        path = out / f"{modality}_{patient_index}_{series}_{tag}_{n:03d}.dcm"
        if syntax == ExplicitVRBigEndian:
            ds.save_as(path, implicit_vr=False, little_endian=False, enforce_file_format=True)
        else:
            ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


SYNTAXES = {
    "explicit": ExplicitVRLittleEndian,
    "deflate": DeflatedExplicitVRLittleEndian,
    "bigendian": ExplicitVRBigEndian,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--slices", type=int, default=20)
    args = ap.parse_args()
    for i, modality in enumerate(("CT", "MR")):
        write_series(args.outdir, modality, i, 1, args.slices, ExplicitVRLittleEndian)


if __name__ == "__main__":
    main()
