"""``export`` on the committed captures: every C-STORE of every capture becomes a valid file
(C-MOVE sub-operations and C-GET included: Orthanc's in ``orthanc_qr.pcap``), a lost segment
gives a ``.partial.dcm`` and a weird row, filters select exactly, ``--deidentify`` leaves no
PHI value in any file, and nothing is readable by others."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import polars as pl
import pydicom
import pytest

from tests.helpers import CAPTURES, SAMPLE_FILES

ROTATED = CAPTURES / "rotated"
BOMB = "1.2.826.0.1.3680043.8.498.999"


def export(out: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "analyzer", "export", *map(str, args), "-o", str(out), "-q"],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "all"
    result = export(out, *SAMPLE_FILES, ROTATED)
    assert result.returncode == 0, result.stderr
    return out


def dataset_length(path: Path) -> int:
    raw = path.read_bytes()
    return len(raw) - 144 - int.from_bytes(raw[140:144], "little")


def test_every_c_store_is_a_valid_file(everything: Path) -> None:
    m = pl.read_parquet(everything / "exported.parquet").filter(
        pl.col("uid").is_in(pl.read_parquet(everything / "dicom_assoc.parquet")["uid"].to_list())
    )
    dimse = pl.read_parquet(everything / "dimse.parquet").filter(pl.col("command") == "C-STORE-RQ")
    assert m.height == dimse.height > 20
    assert sorted(zip(m["uid"], m["message_id"], strict=True)) == sorted(
        zip(dimse["uid"], dimse["message_id"], strict=True)
    )
    for row in m.filter(pl.col("complete")).iter_rows(named=True):
        path = everything / row["path"]
        assert path.name.endswith(".dcm") and ".partial" not in path.name
        ds = pydicom.dcmread(path)
        assert ds.file_meta.MediaStorageSOPInstanceUID == row["sop_instance_uid"]
        assert ds.file_meta.TransferSyntaxUID == row["transfer_syntax"]
        assert (
            dataset_length(path)
            == row["dataset_bytes"]
            == path.stat().st_size - (row["file_bytes"] - row["dataset_bytes"])
        )
        if row["sop_instance_uid"] != BOMB:  # malformed.pcap's deflate bomb: no pixels
            assert ds.SOPInstanceUID == row["sop_instance_uid"]
            assert len(ds.PixelData) > 0


def test_dcmftest_accepts_every_complete_file(everything: Path) -> None:
    if shutil.which("dcmftest") is None:
        pytest.skip("needs DCMTK (./scripts/test.sh installs it)")
    m = pl.read_parquet(everything / "exported.parquet").filter(pl.col("complete"))
    paths = [str(everything / p) for p in m["path"]]
    result = subprocess.run(["dcmftest", *paths], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.count("yes:") == len(paths), result.stdout


def test_move_and_get_sub_operations_are_exported(everything: Path) -> None:
    """Orthanc's C-MOVE sub-association (Orthanc as requester) and its C-GET stores (Orthanc as
    acceptor, the resp direction): the same pixel data that reached Orthanc by C-STORE."""
    m = pl.read_parquet(everything / "exported.parquet").filter(pl.col("source_ae") == "ORTHANC")
    assert sorted(m["direction"]) == ["orig", "resp"]
    stored = pl.read_parquet(everything / "exported.parquet").filter(
        pl.col("source_ae") != "ORTHANC"
    )
    for row in m.iter_rows(named=True):
        ours = pydicom.dcmread(everything / row["path"])
        originals = [
            pydicom.dcmread(everything / p)
            for p in stored.filter(pl.col("sop_instance_uid") == row["sop_instance_uid"])["path"]
        ]
        assert originals and any(o.PixelData == ours.PixelData for o in originals)


def test_lost_segment_gives_a_partial_file_and_a_weird_row(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert export(out, CAPTURES / "lost_segment.pcap").returncode == 0
    m = pl.read_parquet(out / "exported.parquet")
    partial = m.filter(~pl.col("complete"))
    assert partial.height == 1
    row = partial.row(0, named=True)
    assert row["path"].endswith(".partial.dcm") and row["missing"] == ["8518+244"]
    assert (out / row["path"]).stat().st_size == row["file_bytes"]
    # the bytes before the gap are there; the gap is not zero-filled
    assert dataset_length(out / row["path"]) == row["dataset_bytes"] == 8518
    weird = pl.read_parquet(out / "weird.parquet").filter(pl.col("name") == "export_object_partial")
    assert weird["uid"].to_list() == [row["uid"]]
    assert "8518+244" in weird["detail"][0]
    # --complete-only: the damaged object is not written, and still listed
    only = tmp_path / "only"
    assert export(only, CAPTURES / "lost_segment.pcap", "--complete-only").returncode == 0
    m2 = pl.read_parquet(only / "exported.parquet")
    assert m2.filter(~pl.col("complete"))["path"].to_list() == [None]
    assert not list((only / "objects").glob("*.partial.dcm"))
    assert len(list((only / "objects").iterdir())) == 3


def test_filters_select_exactly(everything: Path, tmp_path: Path) -> None:
    m = pl.read_parquet(everything / "exported.parquet")
    lab = CAPTURES / "dicom_lab.pcap"
    sample = m.join(pl.read_parquet(everything / "conn.parquet").select("uid"), on="uid").filter(
        pl.col("source_ae") == "MODALITY_CT1"
    )
    uid = sample["uid"][0]
    cases = {
        "uid": (["--uid", uid], lambda f: f["uid"] == uid),
        "instance": (
            ["--sop-instance", sample["sop_instance_uid"][0]],
            lambda f: f["sop_instance_uid"] == sample["sop_instance_uid"][0],
        ),
        "class": (
            ["--sop-class", "1.2.840.10008.5.1.4.1.1.4"],
            lambda f: f["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.4",
        ),
    }
    full = tmp_path / "full"
    assert export(full, lab).returncode == 0
    whole = pl.read_parquet(full / "exported.parquet")
    for name, (args, keep) in cases.items():
        out = tmp_path / name
        assert export(out, lab, *args).returncode == 0
        got = pl.read_parquet(out / "exported.parquet")
        expected = [r for r in whole.iter_rows(named=True) if keep(r)]
        assert 0 < got.height == len(expected) < whole.height, name
        assert len(list((out / "objects").iterdir())) == got.height


def test_patient_key_filter_with_a_configured_salt(tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text('[privacy]\nsalt = "a site salt of ours"\n')
    lab = CAPTURES / "dicom_lab.pcap"
    full = tmp_path / "full"
    assert export(full, lab, "--config", config).returncode == 0
    whole = pl.read_parquet(full / "exported.parquet")
    phi = pl.read_parquet(full / "phi.parquet")
    key = whole["patient_key"][0]
    assert key in set(phi["patient_key"])  # the same key as the phi table's
    out = tmp_path / "one"
    assert export(out, lab, "--config", config, "--patient-key", key).returncode == 0
    got = pl.read_parquet(out / "exported.parquet")
    assert got.height == whole.filter(pl.col("patient_key") == key).height < whole.height
    assert set(got["patient_key"]) == {key}


def test_files_are_private_and_the_user_is_told(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "analyzer",
            "export",
            str(CAPTURES / "dicom_lab.pcap"),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stderr.count("patient data included") == 1
    assert stat.S_IMODE((out / "objects").stat().st_mode) == 0o700
    for f in (out / "objects").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert not list((out / "objects").glob(".*"))  # no temporary file left behind


def test_a_bad_input_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    result = export(tmp_path / "out", bad)
    assert result.returncode == 3
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_deidentify_leaves_no_phi_value_in_any_file(tmp_path: Path) -> None:
    inputs = [*SAMPLE_FILES, ROTATED]
    reference = tmp_path / "ref"
    subprocess.run(
        [sys.executable, "-m", "analyzer", "analyze", *map(str, inputs), "-o", str(reference)]
        + ["-q", "--capture-phi", "--workers", "1"],
        check=True,
        capture_output=True,
    )
    values = {
        v
        for v in pl.read_parquet(reference / "phi.parquet")["value"].to_list()
        if v and len(v) >= 3
    }
    assert "DOE^JANE" in values and len(values) > 20
    out = tmp_path / "out"
    # a fixed salt: the keyed 2.25 pseudonyms are then the same on every run (a random one
    # gives 39 fresh digits per UID, which now and then hold a short numeric value by chance)
    cfg = tmp_path / "salt.toml"
    cfg.write_text('[privacy]\nsalt = "deidentify-test-salt"\n')
    result = export(out, *inputs, "--deidentify", "--config", str(cfg))
    assert result.returncode == 0 and "patient data included" not in result.stderr
    m = pl.read_parquet(out / "exported.parquet")
    assert m["deidentified"].all()
    written = m.filter(pl.col("path").is_not_null())
    assert written.height >= m.height - 1  # only the deflate bomb's head is over the cap
    for row in written.iter_rows(named=True):
        raw = (out / row["path"]).read_bytes()
        for v in values:
            for codec in ("utf-8", "latin-1", "iso2022_jp"):
                with contextlib.suppress(UnicodeEncodeError):
                    assert v.encode(codec) not in raw, (row["path"], v)
        ds = pydicom.dcmread(out / row["path"])
        assert (
            ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID != row["sop_instance_uid"]
        )
        assert ds.PatientID == row["patient_key"]
        assert len(ds.PixelData) > 0
    bomb = m.filter(pl.col("path").is_null())
    assert bomb["reason"].to_list() == ["more than 64 MiB before Pixel Data"]


def test_standard_input_works_like_a_file(tmp_path: Path) -> None:
    lab = CAPTURES / "dicom_lab.pcap"
    piped = tmp_path / "piped"
    result = subprocess.run(
        [sys.executable, "-m", "analyzer", "export", "-", "-o", str(piped), "-q"],
        input=lab.read_bytes(),
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    named = tmp_path / "named"
    assert export(named, lab).returncode == 0
    a = pl.read_parquet(piped / "exported.parquet").sort("uid", "message_id")
    b = pl.read_parquet(named / "exported.parquet").sort("uid", "message_id")
    assert a.drop("patient_key").equals(b.drop("patient_key")) and a.height == 4


def test_workers_export_the_same_objects(everything: Path, tmp_path: Path) -> None:
    """Two processes, each writing its own flows' objects: the same manifest and the same
    files, byte for byte, as one process (``everything``)."""
    out = tmp_path / "two"
    result = export(out, *SAMPLE_FILES, ROTATED, "--workers", "2")
    assert result.returncode == 0, result.stderr
    key = ["uid", "message_id", "ts", "direction", "sop_instance_uid", "path"]
    one = pl.read_parquet(everything / "exported.parquet").drop("patient_key").sort(key)
    two = pl.read_parquet(out / "exported.parquet").drop("patient_key").sort(key)
    assert one.equals(two)
    for path in one["path"].drop_nulls():
        assert (out / path).read_bytes() == (everything / path).read_bytes()
    assert sorted(p.name for p in (out / "objects").iterdir()) == sorted(
        p.name for p in (everything / "objects").iterdir()
    )


def test_dicomweb_objects_are_exported_as_they_came(everything: Path, tmp_path: Path) -> None:
    """STOW-RS parts and WADO answers of ``dicomweb.pcap``: files as they crossed the wire, the
    PE/DICOM polyglot kept with its preamble, marked, and read-only."""
    web = pl.read_parquet(everything / "exported.parquet").filter(
        pl.col("uid").is_in(pl.read_parquet(everything / "http.parquet")["uid"].to_list())
    )
    assert web.height == 6 and web["complete"].all()
    assert sorted(web["direction"]) == ["orig"] * 4 + ["resp"] * 2  # 4 stored, 2 retrieved
    (poly,) = [p for p in web["path"] if p.endswith(".EXECUTABLE.dcm")]
    raw = (everything / poly).read_bytes()
    assert raw[:2] == b"MZ" and raw[128:132] == b"DICM"
    assert stat.S_IMODE((everything / poly).stat().st_mode) == 0o400
    for row in web.iter_rows(named=True):
        path = everything / row["path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row["sha256"]
        assert pydicom.dcmread(path).SOPInstanceUID == row["sop_instance_uid"]
    out = tmp_path / "deid"
    assert export(out, CAPTURES / "dicomweb.pcap", "--deidentify").returncode == 0
    files = list((out / "objects").iterdir())
    assert len(files) == 6 and not [f for f in files if "EXECUTABLE" in f.name]
    for f in files:
        raw = f.read_bytes()
        assert raw[:128] == bytes(128) and b"DOE^JANE" not in raw
