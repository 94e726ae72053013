"""A walk over encoded data elements: tag, VR, length and depth of each, values on demand.

The hot path of dataset decoding. Building a pydicom ``Dataset`` converts every value of
every element; here a struct-based walk reads each element header (PS3.5 7.1), descends
into sequence items (PS3.5 7.5), stops before Pixel Data, and hands only the values a
caller keeps to pydicom's own value conversion (character sets included). pydicom stays
the authority for the dictionary (keywords, the VR of implicit-VR tags, private creators).

Element header, explicit VR (PS3.5 Table 7.1-1 and 7.1-2):

    Offset  Length  Description
    0       2       group
    2       2       element
    4       2       VR, two upper-case letters
    6       2       value length (most VRs)
    6       2+4     reserved 0000, then a 4-byte length (OB OD OF OL OV OW SQ SV UC UN UR UT UV)

Implicit VR (PS3.5 Table 7.1-3) and every item and delimiter (FFFE,E000/E00D/E0DD):

    0       2       group
    2       2       element
    4       4       value length (FFFFFFFF: undefined, ends at a delimitation item)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

from pydicom._dicom_dict import DicomDictionary
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR, private_dictionary_VR
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from analyzer.dicom.items import wire_text

UNDEFINED = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQUENCE_END = 0xFFFEE0DD
PIXEL_GROUP = 0x7FE0
SPECIFIC_CHARACTER_SET = 0x00080005
PIXEL_REPRESENTATION = 0x00280103
MAX_DEPTH = 8
"""Deepest sequence level whose elements are reported (as pydicom's walk did)."""
MAX_NESTING = 32
"""Deeper nesting than this is not walked at all: an anomaly, never a recursion error."""
MAX_VALUE_CHARS = 256
BULK_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN", "SQ"})
LONG_LENGTH_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
KNOWN_VRS = LONG_LENGTH_VRS | frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT"}
    | {b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
)
US_OR_SS = frozenset({"US or SS", "US or SS or OW"})
VR_TEXT = {vr: vr.decode() for vr in KNOWN_VRS}
SHORT_VRS = frozenset(VR_TEXT[vr] for vr in KNOWN_VRS - LONG_LENGTH_VRS)
"""Known VRs with a 2-byte length (never a sequence, never bulk): what ``_short_elements``
holds."""


class Element(NamedTuple):
    """One decoded element. ``depth`` 0 is top level; deeper ones sit in sequences. A named
    tuple: a CT header makes 250 of them, and a frozen dataclass costs three times as much."""

    tag: int
    keyword: str
    vr: str
    value: str | None
    """Text of the value (bulk VRs, and values nobody asked for: None); cut to 256 characters."""
    length: int
    depth: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Walk:
    elements: tuple[Element, ...]
    stopped: bool
    """Pixel Data (group 7FE0) reached at the top level: the head before it is complete."""
    truncated: bool
    """The bytes ended inside an element, an item or a sequence."""
    anomalies: tuple[tuple[str, str], ...]
    stop_at: int = -1
    """Where the top-level element of group 7FE0 begins, when ``stopped``."""


_DICT: dict[int, tuple[str, str]] = {}
"""tag -> (keyword, dictionary VR) for public tags; filled on first use."""

ShortHit = tuple[int, str, str, int, int]
"""(tag, keyword, VR, what to do with the value, length): see ``_short_elements``."""
_SHORT: dict[tuple[bool, frozenset[int] | None], dict[bytes, ShortHit]] = {}
SHORT_MAX = 8192
"""Entries of one ``_short_elements`` table; past it the table starts over."""
KEEP_NONE, KEEP_ASCII, KEEP_VALUE = 0, 1, 2


def _short_elements(little: bool, keep: frozenset[int] | None) -> dict[bytes, ShortHit]:
    """The common element of explicit VR datasets, by its 8 header bytes (tag, VR, 2-byte
    length): a public, non-sequence element with a known VR and what the walk does with its
    value for this ``keep``. A series repeats the same headers slice after slice, so the walk
    reads most elements with one lookup. One table per byte order and ``keep``."""
    table = _SHORT.get((little, keep))
    if table is None:
        if len(_SHORT) >= 8:
            _SHORT.clear()
        table = _SHORT[(little, keep)] = {}
    elif len(table) >= SHORT_MAX:
        table.clear()  # bounded: hostile datasets with ever new tags or lengths
    return table


def _public(tag: int) -> tuple[str, str] | None:
    hit = _DICT.get(tag)
    if hit is None:
        entry = DicomDictionary.get(tag)
        if entry is not None:
            hit = _DICT[tag] = (entry[4], entry[0])
        else:
            try:  # repeater groups (overlays, curves): a VR, no keyword (as pydicom)
                hit = _DICT[tag] = ("", dictionary_VR(tag))
            except KeyError:
                return None
    return hit


def _text(value: object, vr: str) -> str | None:
    if vr in BULK_VRS:
        return None
    if value is None or value == "":
        return ""
    if isinstance(value, bytes):
        return None
    if isinstance(value, list | tuple | MultiValue):
        s = "\\".join(str(v) for v in value)
    else:
        s = str(value)
    return s[:MAX_VALUE_CHARS]


ASCII_VRS = frozenset({"AS", "CS", "DA", "DT", "TM", "UI"})
"""Values pydicom decodes as its default encoding and strips of trailing spaces and NULs."""
TEXT_VRS = frozenset({"SH", "LO", "UC"})
"""Values in the dataset's character set; each of several values stripped at its end."""
SINGLE_TEXT_VRS = frozenset({"ST", "LT", "UT"})
"""One value in the dataset's character set, stripped at its end."""


def _plain_text(vr: str, value: bytes, encodings: str | list[str]) -> str | None:
    """The text pydicom's conversion gives for the common cases, without building its objects:
    string VRs in one character set without ISO 2022 escapes. None: let pydicom convert.
    (``tests/dicom/test_elements.py`` holds this to pydicom's result.)"""
    if vr in ASCII_VRS:
        return value.decode(default_encoding).rstrip(" \x00")
    if vr == "AE":
        return "\\".join(v.strip() for v in value.decode(default_encoding).split("\\"))
    if isinstance(encodings, list):
        if len(encodings) != 1:
            return None
        codec = encodings[0]
    else:
        codec = encodings
    if b"\x1b" in value:
        return None
    try:
        if vr in TEXT_VRS:
            return "\\".join(v.rstrip("\x00 ") for v in value.decode(codec).split("\\"))
        if vr in SINGLE_TEXT_VRS:
            return value.decode(codec).rstrip("\x00 ")
        if vr == "PN":
            return value.rstrip(b"\x00 ").decode(codec)
    except (UnicodeError, LookupError):
        return None
    return None


class _Level:
    """State of one dataset being walked: its private creators, charset, pixel representation."""

    __slots__ = ("creators", "encodings", "pixel_rep", "parent", "seen")

    def __init__(self, encodings: str | list[str], parent: _Level | None) -> None:
        self.creators: dict[int, str] = {}
        self.seen: dict[int, int] = {}
        """tag -> its index in the output: a repeated tag replaces the first (a dataset
        holds each tag once, as pydicom's does)."""
        self.encodings = encodings
        self.pixel_rep: int | None = None
        self.parent = parent

    def inherited_pixel_rep(self) -> int:
        level: _Level | None = self
        while level is not None:
            if level.pixel_rep is not None:
                return level.pixel_rep
            level = level.parent
        return 0


class _Walker:
    def __init__(
        self,
        data: bytes,
        implicit: bool,
        little: bool,
        keep: frozenset[int] | None,
        max_elements: int,
    ) -> None:
        self.data = data
        self.implicit = implicit
        self.little = little
        self.keep = keep
        self.max_elements = max_elements
        e = "<" if little else ">"
        self.u16x2 = struct.Struct(e + "HH").unpack_from
        self.u32 = struct.Struct(e + "L").unpack_from
        self.u16 = struct.Struct(e + "H").unpack_from
        self.tag_len = struct.Struct(e + "HHL").unpack_from
        self.explicit_head = struct.Struct(e + "HH2sH").unpack_from
        self.short = None if implicit else _short_elements(little, keep)
        self.out: list[Element] = []
        self.anomalies: list[tuple[str, str]] = []
        self.truncated = False
        self.stopped = False
        self.stop_at = -1
        self.full = False

    # -- values -----------------------------------------------------------------

    def _vr(self, tag: int, wire_vr: str | None, length: int, level: _Level) -> str:
        """pydicom's VR for an element: the wire's, else the dictionary's (private creators
        looked up in this dataset), ambiguous ones resolved as pydicom resolves them."""
        if wire_vr is not None and wire_vr != "UN":
            return wire_vr
        group, elem = tag >> 16, tag & 0xFFFF
        if group & 1 and (wire_vr == "UN" or _public(tag) is None):  # private
            if 0x0010 <= elem <= 0x00FF:
                return "LO"
            creator = level.creators.get(tag & 0xFFFF0000 | elem >> 8)
            if creator and elem & 0xFF00:
                try:
                    return str(private_dictionary_VR(tag, creator))
                except KeyError:
                    pass
            return "UN"
        public = _public(tag)
        if public is None:
            return "UN" if wire_vr == "UN" or elem != 0 else "UL"
        vr = public[1]
        if wire_vr == "UN" and length >= 0xFFFF and length != UNDEFINED:
            return "UN"
        if " or " in vr:
            if vr in US_OR_SS:
                return "SS" if level.inherited_pixel_rep() == 1 else "US"
            if vr == "US or OW" or vr == "OB or OW":
                return "OW"
        return vr

    def _value(
        self, tag: int, vr: str, value: bytes, level: _Level, cut: bool = False
    ) -> str | None:
        """The value as text; ``cut``: the data ended inside it (a failed conversion is then
        part of the truncation already reported, not an anomaly of its own)."""
        enc = default_encoding if tag == SPECIFIC_CHARACTER_SET else level.encodings
        text = _plain_text(vr, value, enc)
        if text is not None:
            return text[:MAX_VALUE_CHARS]
        raw = RawDataElement(BaseTag(tag), vr, len(value), value, 0, self.implicit, self.little)
        try:
            elem = convert_raw_data_element(raw, encoding=enc, ds=None)
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on hostile values
            if cut:
                return None
            self._anomaly(
                "dicom_value_undecodable", f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {vr}: {exc}"[:200]
            )
            return None
        return _text(elem.value, str(elem.VR))

    def _anomaly(self, name: str, detail: str) -> None:
        if len(self.anomalies) < 8:
            self.anomalies.append((name, detail))

    # -- structure ----------------------------------------------------------------

    def dataset(self, pos: int, end: int, depth: int, level: _Level) -> int:
        """Walk elements in ``[pos, end)``; return the offset after the last one consumed
        (after an item delimiter when one ends the dataset). The common element (a known
        explicit VR or an implicit one, not a sequence, not a private creator) is decoded
        and recorded inline; everything else takes the methods below."""
        data, implicit = self.data, self.implicit
        n = len(data)
        end = min(end, n)
        keep = self.keep
        out = self.out
        seen = level.seen
        head, tag_len, u32 = self.explicit_head, self.tag_len, self.u32
        vr_text, known = VR_TEXT.get, _DICT.get
        new_tuple = tuple.__new__  # Element without its Python-level __new__
        listed = depth <= MAX_DEPTH
        short = self.short
        while pos < end:
            if pos + 8 > n:
                self.truncated = True
                return n
            wire_vr: str | None = None
            ckey: bytes | None = None
            value: str | None
            if short is not None:
                ckey = data[pos : pos + 8]
                hit = short.get(ckey)
                if hit is not None and pos + 8 + hit[4] <= n:
                    tag, keyword, vr, kind, length = hit
                    vpos = pos + 8
                    pos = vend = vpos + length
                    if self.full:
                        continue
                    if kind == KEEP_NONE:
                        value = None
                    elif kind == KEEP_ASCII:
                        value = (
                            data[vpos:vend]
                            .decode(default_encoding)
                            .rstrip(" \x00")[:MAX_VALUE_CHARS]
                        )
                    else:
                        value = self._value(tag, vr, data[vpos:vend], level)
                    if not listed:
                        continue
                    element = new_tuple(Element, (tag, keyword, vr, value, length, depth))
                    at = seen.get(tag)
                    if at is not None:
                        out[at] = element
                        continue
                    if len(out) >= self.max_elements:
                        self.full = True
                        continue
                    seen[tag] = len(out)
                    out.append(element)
                    continue
            if implicit:
                group, elem, length = tag_len(data, pos)
                tag = group << 16 | elem
                if tag == ITEM_END:
                    return pos + 8
                vpos = pos + 8
            else:
                group, elem, raw_vr, length = head(data, pos)
                tag = group << 16 | elem
                if tag == ITEM_END:
                    return pos + 8
                wire_vr = vr_text(raw_vr)
                if wire_vr is not None:
                    if raw_vr in LONG_LENGTH_VRS:
                        if pos + 12 > n:
                            self.truncated = True
                            return n
                        length = u32(data, pos + 8)[0]
                        vpos = pos + 12
                    else:
                        vpos = pos + 8
                elif not (b"AA" <= raw_vr <= b"ZZ"):  # implicit inside explicit: as pydicom
                    length = u32(data, pos + 4)[0]
                    vpos = pos + 8
                else:  # an unknown VR, read with a 2-byte length
                    wire_vr = raw_vr.decode("latin-1")
                    vpos = pos + 8
            if depth == 0 and group == PIXEL_GROUP:
                self.stopped = True
                self.stop_at = pos
                return pos
            if length == UNDEFINED:
                pos = self._undefined(tag, wire_vr, vpos, depth, level)
                continue
            vend = vpos + length
            if wire_vr is None or wire_vr == "UN":
                vr = self._vr(tag, wire_vr, length, level)
            else:
                vr = wire_vr
            if vr == "SQ":
                self._emit(tag, vr, None, length, depth, level)
                self._items(vpos, min(vend, end), depth + 1, level)
                if vend > n:
                    self.truncated = True
                pos = vend
                continue
            if vend > n:
                self.truncated = True
            if self.full:
                pos = vend
                continue
            value = None
            kind = KEEP_NONE
            if group & 1:
                if 0x10 <= elem <= 0xFF:
                    value = self._value(tag, vr, data[vpos:vend], level)
                    level.creators[tag] = value or ""
                elif vr not in BULK_VRS and (keep is None or tag in keep or vr == "UI"):
                    value = self._value(tag, vr, data[vpos:vend], level, vend > n)
                self._emit(tag, vr, value, length, depth, level)
                pos = vend
                continue
            if tag == SPECIFIC_CHARACTER_SET:
                value = self._value(tag, vr, data[vpos:vend], level)
                self._charset(level, value)
            elif tag == PIXEL_REPRESENTATION and length == 2 and vend <= n:
                level.pixel_rep = self.u16(data, vpos)[0]
                value = str(level.pixel_rep)
            elif vr in BULK_VRS:
                pass
            elif vr in ASCII_VRS and (keep is None or tag in keep or vr == "UI"):
                value = data[vpos:vend].decode(default_encoding).rstrip(" \x00")[:MAX_VALUE_CHARS]
                kind = KEEP_ASCII
            elif keep is None or tag in keep:
                value = self._value(tag, vr, data[vpos:vend], level, vend > n)
                kind = KEEP_VALUE
            pos = vend
            if not listed:
                continue
            public = known(tag) or _public(tag)
            keyword = public[0] if public is not None else ""
            if (
                ckey is not None
                and wire_vr in SHORT_VRS  # so the header was 8 bytes
                and group != PIXEL_GROUP
                and tag != SPECIFIC_CHARACTER_SET
                and tag != PIXEL_REPRESENTATION
            ):
                assert short is not None
                short[ckey] = (tag, keyword, vr, kind, length)
            element = new_tuple(Element, (tag, keyword, vr, value, length, depth))
            at = seen.get(tag)
            if at is not None:
                out[at] = element
                continue
            if len(out) >= self.max_elements:
                self.full = True
                continue
            seen[tag] = len(out)
            out.append(element)
        return pos

    def _charset(self, level: _Level, value: str | None) -> None:
        """Specific Character Set: the codecs of this dataset's (and its items') text."""
        try:
            level.encodings = convert_encodings(
                (value or "").split("\\") if value and "\\" in value else value or ""
            )
        except (ValueError, LookupError):  # pydicom warns of unknown names; a NUL
            # in one makes the codec lookup raise (found by the fuzzer)
            level.encodings = [default_encoding]
            self._anomaly(
                "dicom_charset_invalid",
                f"Specific Character Set {wire_text((value or '').encode('utf-8', 'replace'))[:80]}; "
                "decoded as the default repertoire",
            )

    def _emit(
        self, tag: int, vr: str, value: str | None, length: int, depth: int, level: _Level
    ) -> None:
        if self.full or depth > MAX_DEPTH:
            return
        public = _public(tag) if not tag >> 16 & 1 else None
        element = Element(tag, public[0] if public is not None else "", vr, value, length, depth)
        at = level.seen.get(tag)
        if at is not None and vr != "SQ":
            self.out[at] = element
            return
        if len(self.out) >= self.max_elements:
            self.full = True
            return
        level.seen[tag] = len(self.out)
        self.out.append(element)

    def _undefined(
        self, tag: int, wire_vr: str | None, vpos: int, depth: int, level: _Level
    ) -> int:
        """An element of undefined length: a sequence (walked) or a value up to FFFE,E0DD."""
        data = self.data
        if wire_vr == "UN":
            vr = "SQ"  # PS3.5 6.2.2: UN of undefined length is a sequence
        elif wire_vr is None:
            public = _public(tag) if not (tag >> 16) & 1 else None
            if public is not None:
                vr = self._vr(tag, None, UNDEFINED, level)
            else:  # look ahead: items make it a sequence
                nxt = self.u16x2(data, vpos) if vpos + 4 <= len(data) else (0, 0)
                vr = "SQ" if (nxt[0] << 16 | nxt[1]) == ITEM else "UN"
        else:
            vr = wire_vr
        if vr == "SQ":
            self._emit(tag, vr, None, 0, depth, level)
            return self._items(vpos, len(data), depth + 1, level)
        # a value up to the sequence delimiter
        stop = self._find_delimiter(vpos)
        if stop < 0:
            self.truncated = True
            self._emit(tag, vr, None, len(data) - vpos, depth, level)
            return len(data)
        length = stop - vpos
        value = None
        if vr not in BULK_VRS and (self.keep is None or tag in self.keep or vr == "UI"):
            value = self._value(tag, vr, data[vpos:stop], level)
        self._emit(tag, vr, value, length, depth, level)
        return stop + 8

    def _find_delimiter(self, pos: int) -> int:
        marker = b"\xfe\xff\xdd\xe0" if self.little else b"\xff\xfe\xe0\xdd"
        data = self.data
        while True:
            i = data.find(marker, pos)
            if i < 0 or i + 8 > len(data):
                return -1
            if self.u32(data, i + 4)[0] == 0:
                return i
            pos = i + 1

    def _items(self, pos: int, end: int, depth: int, parent: _Level) -> int:
        """The items of a sequence in ``[pos, end)`` (or up to FFFE,E0DD); return the
        offset after the sequence."""
        data = self.data
        n = len(data)
        if depth > MAX_NESTING:
            self._anomaly("dicom_dataset_too_deep", f"sequences nested deeper than {MAX_NESTING}")
            return end if end < n else n
        while pos < end:
            if pos + 8 > n:
                self.truncated = True
                return n
            group, elem, length = self.tag_len(data, pos)
            tag = group << 16 | elem
            pos += 8
            if tag == SEQUENCE_END:
                return pos
            if tag != ITEM:
                self._anomaly(
                    "dicom_sequence_malformed",
                    f"({group:04X},{elem:04X}) where a sequence item should begin",
                )
                return end
            level = _Level(parent.encodings, parent)
            if length == UNDEFINED:
                pos = self.dataset(pos, end, depth, level)
            else:
                self.dataset(pos, pos + length, depth, level)
                pos += length
        if pos > n:
            self.truncated = True
        return pos


def walk(
    data: bytes,
    *,
    implicit: bool,
    little: bool,
    keep: frozenset[int] | None = None,
    max_elements: int = 2000,
) -> Walk:
    """Walk a dataset's encoded elements. Values are converted (to text) for the tags in
    ``keep`` and for every UI element; ``keep=None`` converts every value."""
    w = _Walker(data, implicit, little, keep, max_elements)
    w.dataset(0, len(data), 0, _Level(default_encoding, None))
    return Walk(
        elements=tuple(w.out),
        stopped=w.stopped,
        truncated=w.truncated,
        anomalies=tuple(w.anomalies),
        stop_at=w.stop_at,
    )


__all__ = ["Element", "Walk", "walk"]
