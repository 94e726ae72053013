"""``export --deidentify``: PS3.15 Basic Application Level Confidentiality Profile, streamed.

The profile's actions come from the dicom-anonymizer package (Table E.1-1, the database the
``phi`` table uses), applied to every dataset and, recursively, to every sequence item. Two
actions are ours, so that pseudonyms are consistent across objects, runs and the other tables:
UIDs (action U) become ``2.25.<keyed hash of the UID>`` under the run's privacy salt, and
Patient ID and Patient's Name become the ``patient_key`` the ``phi`` table uses.

A dataset is streamed, never held whole: its head (everything before the top-level Pixel Data
group 7FE0) is buffered (up to ``MAX_HEAD``), de-identified with pydicom and written; the group
7FE0 elements that follow pass through as they arrive (items of encapsulated pixel data
included); elements after them (groups above 7FE0: digital signatures, padding, private
groups) are dropped, as the profile removes them. Pixel data itself is not cleaned (burned-in
annotations are outside the basic profile). Nothing of the original head reaches the output.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import struct
import warnings
import zlib
from collections.abc import Callable
from functools import cache
from typing import Any

from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from dicomanonymizer.simpledicomanonymizer import (
    anonymize_dataset,
    delete_or_empty_or_replace_UID,
    initialize_actions,
    replace_UID,
)
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.multival import MultiValue

from analyzer.dicom.dataset import syntax_flags
from analyzer.dicom.elements import walk
from analyzer.privacy import DATABASE, Hasher

MAX_HEAD = 64 << 20
"""Bytes of a dataset before its Pixel Data held for de-identification; an object with more
is not exported (``reason``)."""
FIRST_TRY = 16 << 10
INFLATE_CHUNK = 1 << 20
PIXEL_GROUP = 0x7FE0
ITEM = (0xFFFE, 0xE000)
SEQUENCE_END = (0xFFFE, 0xE0DD)
UNDEFINED = 0xFFFFFFFF
LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN"})
LONG_VRS |= {b"UR", b"UT", b"UV"}

Action = Callable[[Dataset, tuple[int, int]], None]


class DeidentifyError(Exception):
    """The dataset could not be de-identified; the object is not written."""


def pseudonym_uid(hasher: Hasher, uid: str) -> str:
    """A UID (PS3.5 B.2, UUID-derived form) that stands for ``uid`` under the run's salt."""
    digest = hmac.new(hasher.key, b"uid|" + uid.strip().encode(), hashlib.sha256).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


@cache
def _base_actions() -> dict[Any, Action]:
    actions: dict[Any, Action] = initialize_actions(DATABASE)
    return actions


class Deidentify:
    """The run's de-identification policy: the profile's actions with our pseudonyms."""

    def __init__(self, hasher: Hasher) -> None:
        self.hasher = hasher
        self.u_tags = frozenset(
            t for t in dicom_anonymization_database_selector(DATABASE)["U_TAGS"] if len(t) == 2
        )

    def uid(self, uid: str) -> str:
        return pseudonym_uid(self.hasher, uid)

    def _replace_uid(self, dataset: Dataset, tag: tuple[int, int]) -> None:
        element = dataset.get(tag)
        if element is None or element.value in (None, ""):
            return
        if isinstance(element.value, MultiValue):
            element.value = [self.uid(str(v)) for v in element.value]
        else:
            element.value = self.uid(str(element.value))

    def _actions(self) -> dict[Any, Action]:
        actions = dict(_base_actions())
        for tag, action in actions.items():
            if action is replace_UID:
                actions[tag] = self._replace_uid
            elif action is delete_or_empty_or_replace_UID:
                actions[tag] = self._uid_or_library(action)
        return actions

    def _uid_or_library(self, action: Action) -> Action:
        def apply(dataset: Dataset, tag: tuple[int, int]) -> None:
            element = dataset.get(tag)
            if element is not None and element.VR == "UI":
                self._replace_uid(dataset, tag)
            else:
                action(dataset, tag)

        return apply

    def dataset(self, ds: Dataset) -> None:
        """De-identify ``ds`` in place, sequence items included."""
        key = self.hasher.patient_key(
            _text(ds.get("PatientID")),
            _text(ds.get("PatientName")),
            _text(ds.get("PatientBirthDate")),
        )
        actions = self._actions()
        self._apply(ds, actions, 0)
        pseudonym = key or "ANONYMOUS"
        for keyword in ("PatientID", "PatientName"):
            if keyword in ds:
                setattr(ds, keyword, pseudonym)

    def _apply(self, ds: Dataset, actions: dict[Any, Action], depth: int) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            anonymize_dataset(ds, base_rules_gen=lambda: actions, delete_private_tags=True)
        if depth > 16:
            return
        for element in list(ds):
            if element.VR == "SQ" and element.value:
                for item in element.value:
                    self._apply(item, actions, depth + 1)


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


class DatasetStream:
    """One dataset, de-identified as its bytes arrive: ``feed`` and ``finish`` return output
    bytes, in the transfer syntax they came in (deflated again when it is deflated)."""

    def __init__(self, policy: Deidentify, transfer_syntax: str) -> None:
        self.policy = policy
        self.implicit, self.little, deflated = syntax_flags(transfer_syntax)
        self.inflater = zlib.decompressobj(-zlib.MAX_WBITS) if deflated else None
        self.deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS) if deflated else None
        self.head = bytearray()
        self.next_try = FIRST_TRY
        self.marker = b"\x7f\xe0" if not self.little else b"\xe0\x7f"
        self.scan = 0
        self.in_head = True
        self.pending = bytearray()
        """Group 7FE0 bytes not yet judged (a partial element or item header)."""
        self.value_left = 0
        self.items = False
        """Inside an undefined-length 7FE0 element: item headers and values follow."""
        self.dropping = False
        self.dropped = 0
        e = "<" if self.little else ">"
        self.u16x2 = struct.Struct(e + "HH").unpack_from
        self.u32 = struct.Struct(e + "L").unpack_from
        self.u16 = struct.Struct(e + "H").unpack_from

    def feed(self, data: bytes) -> bytes:
        if self.inflater is None:
            return self._plain(data)
        out = bytearray()
        while data:  # inflated a piece at a time: a deflate bomb never sits in memory whole
            try:
                chunk = self.inflater.decompress(data, INFLATE_CHUNK)
            except zlib.error as exc:
                raise DeidentifyError(f"deflated dataset does not inflate: {exc}") from None
            out += self._out(self._plain(chunk))
            data = self.inflater.unconsumed_tail
        return bytes(out)

    def finish(self) -> bytes:
        out = b""
        if self.in_head:
            out = self._head_out(bytes(self.head))
            self.head = bytearray()
            self.in_head = False
        elif self.pending and not self.dropping:
            out = bytes(self.pending)  # a cut element header: kept as it came
            self.pending = bytearray()
        if self.deflater is not None:
            return self.deflater.compress(out) + self.deflater.flush()
        return out

    def _out(self, data: bytes) -> bytes:
        return self.deflater.compress(data) if self.deflater is not None else data

    # -- the head -------------------------------------------------------------------

    def _plain(self, data: bytes) -> bytes:
        if not self.in_head:
            return self._pixels(data)
        self.head += data
        if len(self.head) > MAX_HEAD:
            raise DeidentifyError(f"more than {MAX_HEAD >> 20} MiB before Pixel Data")
        found = self.head.find(self.marker, self.scan) >= 0
        self.scan = max(len(self.head) - 1, 0)
        if not found and len(self.head) < self.next_try:
            return b""
        self.next_try = max(self.next_try, len(self.head)) * 2
        w = walk(bytes(self.head), implicit=self.implicit, little=self.little, keep=frozenset())
        if not w.stopped:
            return b""
        head, rest = bytes(self.head[: w.stop_at]), bytes(self.head[w.stop_at :])
        self.head = bytearray()
        self.in_head = False
        return self._head_out(head) + self._pixels(rest)

    def _head_out(self, head: bytes) -> bytes:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = read_dataset(io.BytesIO(head), self.implicit, self.little)
                for element in list(ds):
                    if element.tag.element == 0:  # group lengths would be wrong now
                        del ds[element.tag]
                self.policy.dataset(ds)
                fp = DicomBytesIO()
                fp.is_implicit_VR = self.implicit
                fp.is_little_endian = self.little
                write_dataset(fp, ds)
        except Exception as exc:  # pydicom raises many kinds on damaged bytes
            raise DeidentifyError(f"dataset head not decodable: {type(exc).__name__}") from None
        return fp.getvalue()

    # -- group 7FE0 and what follows --------------------------------------------------

    def _pixels(self, data: bytes) -> bytes:
        """Pass group 7FE0 elements through; drop everything after them."""
        out = bytearray()
        pos, n = 0, len(data)
        while pos < n:
            if self.dropping:
                self.dropped += n - pos
                break
            if self.value_left:
                take = min(self.value_left, n - pos)
                out += data[pos : pos + take]
                self.value_left -= take
                pos += take
                continue
            need = 8 if self.items or self.implicit else 12
            take = min(need - len(self.pending), n - pos)
            self.pending += data[pos : pos + take]
            pos += take
            if len(self.pending) < 8:
                continue
            header = self.pending
            group, element = self.u16x2(header, 0)
            if self.items:
                length = self.u32(header, 4)[0]
                out += header[:8]
                rest = bytes(header[8:])
                self.pending = bytearray()
                if (group, element) == SEQUENCE_END:
                    self.items = False
                elif length != UNDEFINED:
                    self.value_left = length
                data, pos, n = rest + data[pos:], 0, len(rest) + n - pos
                continue
            if group != PIXEL_GROUP:
                self.dropping = True
                self.dropped += len(header)
                self.pending = bytearray()
                continue
            if self.implicit:
                length, size = self.u32(header, 4)[0], 8
            elif bytes(header[4:6]) in LONG_VRS:
                if len(header) < 12:
                    continue
                length, size = self.u32(header, 8)[0], 12
            else:
                length, size = self.u16(header, 6)[0], 8
            out += header[:size]
            rest = bytes(header[size:])
            self.pending = bytearray()
            if length == UNDEFINED:
                self.items = True
            else:
                self.value_left = length
            data, pos, n = rest + data[pos:], 0, len(rest) + n - pos
        return bytes(out)
