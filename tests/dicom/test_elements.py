"""Differential test of the element walk (``analyzer/dicom/elements.py``) against pydicom's
full decode (``tests/dicom/reference_decode.py``, the decoder before the walk): the same
elements (tag, keyword, VR, value, length, depth), the same stop and truncation verdicts, on
every dataset of every sample capture and on generated datasets in every transfer syntax."""

from __future__ import annotations

import io
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

import analyzer.dicom.association as association
from analyzer.dicom.dataset import summarize
from analyzer.dicom.elements import walk
from tests.dicom import reference_decode as reference
from tests.helpers import CAPTURES, analyze

SAMPLES = sorted(p for p in CAPTURES.glob("*.pcap*") if p.is_file()) + [CAPTURES / "rotated"]
HEAD = 1 << 16


PIXEL_REPRESENTATION = 0x00280103


def fields(elements: Any) -> list[tuple[object, ...]]:
    return [(e.tag, e.keyword, e.vr, e.value, e.length, e.depth) for e in elements]


def oracle_fields(elements: Any) -> list[tuple[object, ...]]:
    """pydicom converts Pixel Representation while it reads (for ambiguous VRs) and then no
    longer knows its encoded length, which the reference reported as 0; it is 2."""
    return [
        (e.tag, e.keyword, e.vr, e.value, 2 if e.tag == PIXEL_REPRESENTATION else e.length, e.depth)
        for e in elements
    ]


def assert_same(head: bytes, syntax: str | None, complete: bool) -> None:
    new = summarize(head, syntax, complete=complete, max_head=HEAD)
    old = reference.summarize(head, syntax, complete=complete, max_head=HEAD)
    if any(name == "dicom_dataset_undecodable" for name, _ in old.anomalies):
        # pydicom gave up on the whole dataset; the walk must still agree on what came before
        assert len(new.elements) >= len(old.elements)
        assert fields(new.elements[: len(old.elements)]) == oracle_fields(old.elements)
        return
    assert fields(new.elements) == oracle_fields(old.elements)
    assert new.partial == old.partial
    assert [a[0] for a in new.anomalies] == [a[0] for a in old.anomalies]
    assert (new.sop_class_uid, new.sop_instance_uid) == (old.sop_class_uid, old.sop_instance_uid)


def _heads(capture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    seen: list[tuple[Any, ...]] = []
    real = association.summarize

    def spy(head: bytes, syntax: str | None, **kw: Any) -> Any:
        seen.append((head, syntax, kw["complete"], kw["keep"]))
        return real(head, syntax, **kw)

    monkeypatch.setattr(association, "summarize", spy)
    analyze(capture, tmp_path)
    return seen


@pytest.mark.parametrize("capture", SAMPLES, ids=lambda p: p.name)
def test_walk_equals_full_decode_on_sample_captures(
    capture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for head, syntax, complete, keep in _heads(capture, tmp_path, monkeypatch):
        assert_same(head, syntax, complete)
        # what the analyzer keeps is what pydicom's full decode gives for those tags
        kept = summarize(head, syntax, complete=complete, max_head=HEAD, keep=keep)
        full = summarize(head, syntax, complete=complete, max_head=HEAD)
        assert [(e.tag, e.vr, e.length, e.depth) for e in kept.elements] == [
            (e.tag, e.vr, e.length, e.depth) for e in full.elements
        ]
        for k, f in zip(kept.elements, full.elements, strict=True):
            if keep is None or k.tag in keep or k.vr == "UI":
                assert k.value == f.value


def test_sample_captures_hold_datasets_of_every_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comparison above is not vacuous: nested sequences, several syntaxes, charsets."""
    syntaxes: set[str | None] = set()
    depths: set[int] = set()
    for capture in ("transfer_syntaxes.pcap", "charsets.pcap", "worklist.pcap", "bigendian.pcap"):
        for head, syntax, complete, _ in _heads(
            CAPTURES / capture, tmp_path / capture, monkeypatch
        ):
            syntaxes.add(syntax)
            depths |= {
                e.depth for e in summarize(head, syntax, complete=complete, max_head=HEAD).elements
            }
    assert {
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        DeflatedExplicitVRLittleEndian,
    } <= syntaxes
    assert ExplicitVRBigEndian in syntaxes and {0, 1} <= depths


# -- generated datasets -------------------------------------------------------------------

TEXT = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ^-", min_size=0, max_size=24)
LEAVES: list[tuple[str, Any]] = [
    ("PatientName", TEXT.map(lambda s: s.strip())),
    ("PatientID", TEXT.map(lambda s: s.strip())),
    ("PatientBirthDate", st.sampled_from(["", "19700101", "20001231"])),
    ("AccessionNumber", TEXT.map(lambda s: s.strip()[:16])),
    ("StudyDescription", TEXT),
    ("Modality", st.sampled_from(["CT", "MR", "US", ""])),
    ("SOPInstanceUID", st.sampled_from(["1.2.3.4", "1.2.826.0.1.3680043.8.498.1", ""])),
    ("InstanceNumber", st.integers(0, 99999)),
    ("Rows", st.integers(0, 4096)),
    ("PixelRepresentation", st.integers(0, 1)),
    ("SmallestImagePixelValue", st.integers(0, 1000)),
    ("SliceThickness", st.sampled_from(["1.0", "0.625", "5"])),
    ("ImageOrientationPatient", st.just(["1", "0", "0", "0", "1", "0"])),
    ("RevolutionTime", st.floats(0, 10, allow_nan=False)),
    ("WindowCenter", st.sampled_from([["40", "400"], "50"])),
    ("OperatorsName", st.sampled_from(["", "TECH^TINA", ["A^B", "C^D"]])),
    (
        "ImageComments",
        st.text(alphabet="abc xyz\\", max_size=40).map(lambda s: s.replace("\\", "")),
    ),
    ("RetrieveAETitle", st.sampled_from(["PACS", " PACS ", "A\\ B", ""])),
    ("InstitutionName", st.text(alphabet="Müllerçé ab", max_size=20)),
    ("StudyComments", st.text(alphabet="Zürich ok", max_size=30)),
    ("PatientComments", st.text(alphabet="Ørsted é", max_size=30)),
]
CODE_KEYS = ("CodeValue", "CodingSchemeDesignator", "CodeMeaning")


@st.composite
def datasets(draw: st.DrawFn, depth: int = 0) -> Dataset:
    ds = Dataset()
    for keyword, values in draw(
        st.lists(st.sampled_from(LEAVES), max_size=10, unique_by=lambda x: x[0])
    ):
        setattr(ds, keyword, draw(values))
    if "SmallestImagePixelValue" in ds and "PixelRepresentation" not in ds:
        ds.PixelRepresentation = draw(st.integers(0, 1))  # the writer needs it for US or SS
    if depth == 0:
        charset = draw(st.sampled_from([None, "ISO_IR 100", "ISO_IR 192"]))
        if charset is not None:
            ds.SpecificCharacterSet = charset
        elif any(k in ds for k in ("InstitutionName", "StudyComments", "PatientComments")):
            ds.SpecificCharacterSet = "ISO_IR 100"  # non-ASCII needs a declared charset
    if depth < 3 and draw(st.booleans()):
        items = [draw(datasets(depth + 1)) for _ in range(draw(st.integers(0, 3)))]
        for item in items:
            for key in CODE_KEYS:
                if draw(st.booleans()):
                    setattr(item, key, draw(TEXT.map(lambda s: s.strip()[:16])))
            item.is_undefined_length_sequence_item = draw(st.booleans())
        ds.ProcedureCodeSequence = Sequence(items)
        ds["ProcedureCodeSequence"].is_undefined_length = draw(st.booleans())
    if draw(st.booleans()):
        block = ds.private_block(0x0019, "LAB PRIVATE", create=True)
        block.add_new(0x10, "LO", draw(TEXT))
    return ds


SYNTAX = st.sampled_from(
    [
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
    ]
)


def encode(ds: Dataset, syntax: str) -> bytes:
    fp = io.BytesIO()
    implicit = syntax == ImplicitVRLittleEndian
    little = syntax != ExplicitVRBigEndian
    from pydicom.filebase import DicomFileLike

    out = DicomFileLike(fp)
    out.is_little_endian, out.is_implicit_VR = little, implicit
    write_dataset(out, ds)
    data = fp.getvalue()
    if syntax == DeflatedExplicitVRLittleEndian:
        c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        data = c.compress(data) + c.flush()
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ds=datasets(), syntax=SYNTAX, pixels=st.booleans())
def test_walk_equals_full_decode_on_generated_datasets(
    ds: Dataset, syntax: str, pixels: bool
) -> None:
    if pixels:
        ds.BitsAllocated = 16
        ds.PixelData = b"\x00\x01" * 64
    assert_same(encode(ds, syntax), syntax, True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ds=datasets(),
    syntax=st.sampled_from([ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian]),
    cut=st.integers(0, 10_000),
)
def test_truncated_walk_keeps_what_came_before(ds: Dataset, syntax: str, cut: int) -> None:
    data = encode(ds, syntax)
    cut = cut % (len(data) + 1)
    whole = walk(
        data, implicit=syntax == ImplicitVRLittleEndian, little=syntax != ExplicitVRBigEndian
    )
    part = summarize(data[:cut], syntax, complete=cut == len(data), max_head=HEAD)
    got, full = fields(part.elements), fields(whole.elements)
    # every element before the cut is decoded exactly; the last one may have lost its value's end
    assert got[:-1] == full[: max(len(got) - 1, 0)]
    if got:
        assert got[-1][:3] == full[len(got) - 1][:3]
    if cut < len(data):
        assert part.partial and [a[0] for a in part.anomalies] == ["dicom_dataset_truncated"]
    if cut == len(data):
        assert_same(data, syntax, True)


def test_walk_survives_hostile_nesting() -> None:
    """Ten thousand nested undefined-length sequences: an anomaly, no recursion error."""
    item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    seq = b"\x08\x00\x15\x11" + b"SQ\x00\x00\xff\xff\xff\xff"  # (0008,1115) SQ, undefined
    data = (seq + item) * 10_000
    w = walk(data, implicit=False, little=True)
    assert "dicom_dataset_too_deep" in {a[0] for a in w.anomalies}
    assert max(e.depth for e in w.elements) == 8


def test_walk_converts_only_the_kept_values() -> None:
    ds = Dataset()
    ds.PatientName = "DOE^JANE"
    ds.StudyDescription = "THORAX"
    ds.SOPInstanceUID = "1.2.3"
    data = encode(ds, ExplicitVRLittleEndian)
    w = walk(data, implicit=False, little=True, keep=frozenset({0x00100010}))
    values = {e.keyword: e.value for e in w.elements}
    assert values == {
        "PatientName": "DOE^JANE",
        "StudyDescription": None,
        "SOPInstanceUID": "1.2.3",
    }


def test_head_cut_inside_an_undefined_length_sequence_keeps_what_came_before() -> None:
    """The 64 KiB head of a large SR or multi-frame object ends inside a sequence: pydicom's
    Dataset gave 0 elements (and no anomaly); the walk keeps the patient data before the cut."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "PAT-0001"
    items = []
    for n in range(400):
        item = Dataset()
        item.CodeValue = f"C{n:04d}"
        item.CodeMeaning = "a long meaning " * 4
        item.is_undefined_length_sequence_item = True
        items.append(item)
    ds.ContentSequence = Sequence(items)
    ds["ContentSequence"].is_undefined_length = True
    data = encode(ds, ExplicitVRLittleEndian)
    head = data[: len(data) // 2]  # inside the sequence
    old = reference.summarize(head, ExplicitVRLittleEndian, complete=False, max_head=HEAD)
    new = summarize(head, ExplicitVRLittleEndian, complete=False, max_head=HEAD)
    assert len(old.elements) == 0  # what the old decoder made of it
    values = {e.keyword: e.value for e in new.elements if e.depth == 0}
    assert values["PatientName"] == "DOE^JANE" and values["PatientID"] == "PAT-0001"
    assert sum(e.keyword == "CodeValue" for e in new.elements) > 100
    assert new.partial and [a[0] for a in new.anomalies] == ["dicom_dataset_truncated"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ds=datasets(),
    syntax=st.sampled_from([ExplicitVRLittleEndian, ExplicitVRBigEndian]),
    keep=st.sampled_from([None, frozenset(), frozenset({0x00100010, 0x00081030, 0x00080080})]),
    cut=st.integers(0, 10_000),
)
def test_the_walk_reads_the_same_with_its_header_table_cold_or_warm(
    ds: Dataset, syntax: str, keep: frozenset[int] | None, cut: int
) -> None:
    """``_short_elements`` remembers explicit-VR element headers across walks: a walk with
    every header already known (warm) gives what a walk with none known (cold) gives, whole
    or cut, for every ``keep``."""
    from analyzer.dicom import elements

    data = encode(ds, syntax)
    data = data[: cut % (len(data) + 1)]
    little = syntax != ExplicitVRBigEndian
    elements._SHORT.clear()
    cold = walk(data, implicit=False, little=little, keep=keep)
    warm = walk(data, implicit=False, little=little, keep=keep)
    assert warm == cold


def test_the_header_table_holds_what_a_walk_met() -> None:
    """The first walk of a dataset fills ``_short_elements`` with its common elements (and
    not with what the walk treats apart: the character set, the pixel representation,
    private elements, sequences)."""
    from analyzer.dicom import elements

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPInstanceUID = "1.2.3.4"
    ds.StudyDate = "20260101"
    ds.PatientName = "DOE^JANE"
    ds.PixelRepresentation = 0
    ds.ProcedureCodeSequence = Sequence([Dataset()])
    ds.ProcedureCodeSequence[0].CodeValue = "CT123"
    ds.private_block(0x0019, "LAB PRIVATE", create=True).add_new(0x10, "LO", "x")
    data = encode(ds, ExplicitVRLittleEndian)
    elements._SHORT.clear()
    keep = frozenset({0x00100010})
    walk(data, implicit=False, little=True, keep=keep)
    table = elements._SHORT[(True, keep)]
    kinds = {hit[0]: hit[3] for hit in table.values()}
    assert kinds == {
        0x00080018: elements.KEEP_ASCII,  # every UID is read
        0x00080020: elements.KEEP_NONE,  # a date nobody keeps
        0x00080100: elements.KEEP_NONE,  # in the sequence's item
        0x00100010: elements.KEEP_VALUE,  # kept, in the dataset's character set
    }
