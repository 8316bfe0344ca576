"""findscu-style *keyword pathing*: turn ``-k`` strings into a C-FIND identifier.

The same parser serves the batch CLI (``-k``/``-f``) and the TUI's key editor, so
every problem is reported as a :class:`KeyPathError` (or :class:`QueryFileError`)
with a single-line, human message. This module never imports textual or rich.

Key syntax
==========

``PATH[=VALUE]`` where ``PATH`` is one or more components joined by ``.``::

    PatientName=CITIZEN^Jan          keyword (case-sensitive, as in the DICOM dictionary)
    (0010,0010)=CITIZEN^Jan          tag, hex digits in either case
    0010,0010=CITIZEN^Jan            tag without the parentheses
    PatientName                      no '=': universal matching / return key
    PatientName=                     empty value: the same
    ModalitiesInStudy=CT\\MR          '\\' separates multiple values (VM > 1)
    (0009,1001)LO=x                  explicit VR, needed for private and unknown tags
    (0009,0010)=ACME                 private creator elements are LO implicitly

Sequences (components before the last must be ``Seq[N]``; nesting to any depth)::

    OtherPatientIDsSequence=                     sequence with zero items
    OtherPatientIDsSequence[0]=                  ensure one (empty) item
    OtherPatientIDsSequence[2]=                  ensure three items
    OtherPatientIDsSequence[1].PatientID=X       ensure two items, set PatientID in item 1
    A[0].B[1].C=x                                nested

Keys apply in order; later keys add to or override earlier ones. A path into item
``N`` of a sequence that has fewer items appends empty items up to ``N`` (unlike the
pynetdicom reference, ``Seq[0].X=1`` followed by ``Seq[2].X=3`` gives three items).
As in findscu, ``Seq=`` on an existing sequence resets it to zero items, while
``Seq[N]=`` only makes sure that items 0..N exist. Item indexes are limited to
:data:`MAX_ITEM_INDEX`.

Values are converted by VR and validated (pydicom's validators where it has them):
IS/SL/SS/UL/US/SV/UV are whole numbers (IS keeps its text, as pydicom's ``IS``),
DS keeps its text (pydicom's ``DSfloat``), FL/FD become ``float``, AT takes a tag
(``(0010,0020)``, ``0010,0020``, ``00100020`` or a keyword), OB/OD/OF/OL/OV/OW/UN
take hex (``0aff...``), the text VRs stay ``str`` but must fit the VR: CS allows the
C-FIND wildcards ``*`` and ``?``; DA/TM/DT allow range matching (``A-B``, ``-B``,
``A-``). Dictionary VRs with alternatives (``US or SS``, ``OB or OW``) use the first;
give the tag with an explicit VR for another, e.g. ``(0028,0106)SS=-5``.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom import dcmread
from pydicom import config as _config
from pydicom.datadict import (
    RepeatersDictionary,
    dictionary_has_tag,
    dictionary_VR,
    keyword_dict,
    keyword_for_tag,
    repeater_has_keyword,
    tag_for_keyword,
)
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian
from pydicom.valuerep import ALLOW_BACKSLASH, DEFAULT_CHARSET_VR, VALIDATORS
from pydicom.valuerep import VR as _VR

__all__ = [
    "MAX_ITEM_INDEX",
    "KeyPathError",
    "ParsedKey",
    "PathPart",
    "QueryFileError",
    "apply_key",
    "build_identifier",
    "column_paths",
    "dataset_to_keys",
    "load_query_file",
    "parse_key",
    "suggest_keyword",
    "value_at",
]

#: The largest sequence item index a key may use (``Seq[999]`` makes 1000 items).
MAX_ITEM_INDEX = 999


# ---------------------------------------------------------------------------
# errors


def _q(text: str, limit: int = 60) -> str:
    """``repr`` of user text, shortened: always one line, never huge."""
    if len(text) > limit:
        return repr(text[:limit]) + "..."
    return repr(text)


class KeyPathError(ValueError):
    """A ``-k`` key that cannot be parsed or applied.

    ``key`` is the original key text, ``problem`` a one-line description.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.key = key
        self.problem = problem

    def __str__(self) -> str:
        return f"bad key {_q(self.key, 120)}: {self.problem}"


class QueryFileError(ValueError):
    """A ``-f`` query file that cannot be used (missing, unreadable, not DICOM, corrupt)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem)
        self.path = path
        self.problem = problem

    def __str__(self) -> str:
        return f"bad query file {self.path!r}: {self.problem}"


class _Problem(Exception):
    """Internal: a problem message, turned into KeyPathError by the caller."""


# ---------------------------------------------------------------------------
# data model


@dataclass(frozen=True)
class PathPart:
    """One component of a key path.

    ``keyword`` is ``''`` for tags without a (unique) keyword: private, unknown and
    repeating-group tags. ``index`` is the item index for ``Seq[N]``, else ``None``.
    ``vr`` is the resolved VR (dictionary or explicit); ``''`` means "look it up".
    """

    tag: BaseTag
    keyword: str
    index: int | None
    vr: str = ""

    @property
    def name(self) -> str:
        """The keyword, or ``(gggg,eeee)``."""
        return self.keyword or _tag_text(self.tag)

    @property
    def text(self) -> str:
        """This component written as a key path component (``Name``, ``Name[N]``)."""
        name = self.name
        if not self.keyword and self.vr and self.vr != _default_vr(Tag(self.tag)):
            name += self.vr
        return name if self.index is None else f"{name}[{self.index}]"


@dataclass(frozen=True)
class ParsedKey:
    """A parsed key: the original text, its path and its raw value (``None`` when no '=')."""

    text: str
    path: tuple[PathPart, ...]
    value: str | None


# ---------------------------------------------------------------------------
# dictionary helpers

_VALID_VRS = frozenset(v.value for v in _VR if " " not in v.value)
_BYTES_VRS = {"OB": 1, "OD": 8, "OF": 4, "OL": 4, "OV": 8, "OW": 2, "UN": 1}
_INT_RANGES = {
    "US": (0, 0xFFFF),
    "SS": (-0x8000, 0x7FFF),
    "UL": (0, 0xFFFFFFFF),
    "SL": (-0x80000000, 0x7FFFFFFF),
    "UV": (0, 0xFFFFFFFFFFFFFFFF),
    "SV": (-0x8000000000000000, 0x7FFFFFFFFFFFFFFF),
}
_IS_RANGE = (-0x80000000, 0x7FFFFFFF)
_ASCII_VRS = frozenset(str(vr) for vr in DEFAULT_CHARSET_VR)
_TEXT_LIMITS = {"LO": 64, "SH": 16, "ST": 1024, "LT": 10240}
_HINTS = {
    "AE": "at most 16 printable ASCII characters",
    "AS": "an age: 3 digits then D, W, M or Y, e.g. 045Y",
    "CS": "at most 16 characters from A-Z, 0-9, space and _ (wildcards * and ? allowed)",
    "DA": "a date YYYYMMDD or a range like 20240101-20241231, -20241231 or 20240101-",
    "DT": "a date-time YYYYMMDD[HHMMSS[.FFFFFF]][+ZZXX] or a range of them",
    "TM": "a time HH[MM[SS[.FFFFFF]]] or a range like 080000-120000",
    "DS": "a decimal number of at most 16 characters, e.g. 1.5 or -2e3",
    "IS": "a whole number of at most 12 characters, from -2147483648 to 2147483647",
    "UI": "a UID: numbers without leading zeros joined by dots, at most 64 characters",
    "UR": "a URI without spaces",
    "PN": "a person name: at most 3 '='-separated groups of at most 64 characters",
    "FL": "a decimal number such as 1.5 or -2e3 that fits a 32-bit float",
    "FD": "a decimal number such as 1.5 or -2e3",
    "AT": "a tag such as (0010,0020), 0010,0020, 00100020 or a keyword",
}
_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_CS_RE = re.compile(r"[A-Z0-9 _*?]*\Z")
_HEX_RE = re.compile(r"(?:[0-9A-Fa-f]{2})*\Z")
_DIGITS_RE = re.compile(r"[0-9]+\Z")
_KEYWORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*\Z")
_TAG_RE = re.compile(
    r"(?:\((?P<g1>[0-9A-Fa-f]{4}),(?P<e1>[0-9A-Fa-f]{4})\)"
    r"|(?P<g2>[0-9A-Fa-f]{4}),(?P<e2>[0-9A-Fa-f]{4}))"
    r"(?P<vr>[A-Za-z]{2})?\Z"
)
_AT_VALUE_RE = re.compile(
    r"\(?(?P<g>[0-9A-Fa-f]{4}),?(?P<e>[0-9A-Fa-f]{4})\)?\Z"
)


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _unique_keyword(tag: BaseTag) -> str:
    """The keyword that names exactly this tag ('' for private/unknown/repeaters)."""
    kw = keyword_for_tag(tag)
    if kw and keyword_dict.get(kw) == tag:
        return kw
    return ""


def _default_vr(tag: BaseTag) -> str | None:
    """The VR a key gets without an explicit one, or None when it needs one."""
    if tag.is_private_creator:
        return "LO"
    if tag.is_private:
        return None
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return None
    if vr == "NONE":
        return None
    return vr.split(" or ")[0]


@functools.cache
def _lower_keywords() -> dict[str, str]:
    return {kw.lower(): kw for kw in keyword_dict if kw}


@functools.lru_cache(maxsize=1024)
def suggest_keyword(name: str) -> str | None:
    """The dictionary keyword closest to ``name`` (case-insensitive), or ``None``."""
    if not name:
        return None
    lower = _lower_keywords()
    key = name.lower()
    if key in lower:
        return lower[key]
    match = difflib.get_close_matches(key, lower.keys(), n=1, cutoff=0.75)
    return lower[match[0]] if match else None


def _repeater_example(keyword: str) -> str:
    for mask, entry in RepeatersDictionary.items():
        if entry[4] == keyword:
            return _tag_text(int(mask.replace("x", "0"), 16))
    return "(gggg,eeee)"  # pragma: no cover - every repeater keyword has a mask


# ---------------------------------------------------------------------------
# parsing


def _split_index(comp: str) -> tuple[str, int | None, str | None]:
    """Split ``Name[N]`` into (name, N, N's text); no brackets gives (comp, None, None)."""
    if "[" not in comp and "]" not in comp:
        return comp, None, None
    start = comp.find("[")
    if start < 0 or comp.count("[") != 1 or comp.count("]") != 1 or not comp.endswith("]"):
        raise _Problem(
            f"malformed item index in {_q(comp)}: write it as Name[N] with N = 0, 1, 2, ..."
        )
    name, text = comp[:start].strip(), comp[start + 1 : -1]
    if not _DIGITS_RE.match(text):
        raise _Problem(
            f"item index {_q(text)} in {_q(comp)} is not a whole number 0, 1, 2, ..."
        )
    if len(text) > 6 or int(text) > MAX_ITEM_INDEX:
        raise _Problem(f"item index {text} in {_q(comp)} is larger than {MAX_ITEM_INDEX}")
    return name, int(text), text


def _parse_name(name: str) -> tuple[BaseTag, str, str | None]:
    """Parse a keyword or tag (with optional VR): (tag, keyword, explicit VR)."""
    if not name:
        raise _Problem("a path component has an item index but no name before '['")
    if _KEYWORD_RE.match(name):
        tag = tag_for_keyword(name)
        if tag is not None:
            return Tag(tag), name, None
        if repeater_has_keyword(name):
            raise _Problem(
                f"{name} is a repeating-group element: give it as a tag, "
                f"e.g. {_repeater_example(name)}"
            )
        hint = suggest_keyword(name)
        extra = f" (did you mean {hint}?)" if hint else ""
        raise _Problem(f"unknown keyword {_q(name)}{extra}")
    m = _TAG_RE.match(name)
    if m is None:
        if "(" in name or ")" in name or "," in name or name[0].isdigit():
            raise _Problem(
                f"malformed tag {_q(name)}: expected (gggg,eeee) with 4 hex digits "
                "in each half, e.g. (0010,0010)"
            )
        raise _Problem(
            f"{_q(name)} is neither a keyword (like PatientName) nor a tag "
            "(like (0010,0010))"
        )
    group = int(m["g1"] or m["g2"], 16)
    elem = int(m["e1"] or m["e2"], 16)
    tag = Tag(group, elem)
    vr = m["vr"]
    if vr is not None:
        vr = vr.upper()
        if vr not in _VALID_VRS:
            raise _Problem(
                f"unknown VR {_q(vr)} after {_tag_text(tag)}: use one of "
                f"{', '.join(sorted(_VALID_VRS))}"
            )
    return tag, _unique_keyword(tag), vr


def _check_group(tag: BaseTag) -> None:
    if tag.group == 0xFFFE:
        raise _Problem(f"{_tag_text(tag)} is an item/sequence delimiter, not a data element")
    if tag.group == 0x0000:
        raise _Problem(
            f"{_tag_text(tag)} is a command element (group 0000); it cannot be part "
            "of a query identifier"
        )
    if tag.group == 0x0002:
        raise _Problem(
            f"{_tag_text(tag)} is a file meta element (group 0002); it cannot be part "
            "of a query identifier"
        )


def _parse_part(comp: str) -> PathPart:
    name, index, _ = _split_index(comp)
    tag, keyword, vr = _parse_name(name)
    _check_group(tag)
    if vr is None:
        vr = _default_vr(tag)
        if vr is None:
            what = (
                f"private tag {_tag_text(tag)}"
                if tag.is_private
                else f"tag {_tag_text(tag)} is not in the DICOM dictionary and"
            )
            raise _Problem(
                f"{what} needs a VR: give it after the tag, e.g. {_tag_text(tag)}LO=value"
            )
    return PathPart(tag=tag, keyword=keyword, index=index, vr=vr)


def parse_key(text: str) -> ParsedKey:
    """Parse one ``-k`` key (see the module docstring) and validate its value.

    Raises :class:`KeyPathError` for anything wrong; never applies it to a dataset.
    """
    if not isinstance(text, str):
        raise TypeError(f"a key must be a str, not {type(text).__name__}")
    try:
        return _parse_key(text)
    except _Problem as exc:
        raise KeyPathError(text, str(exc)) from None


def _parse_key(text: str) -> ParsedKey:
    path_text, sep, raw_value = text.partition("=")
    value = raw_value if sep else None
    path_text = path_text.strip()
    if not path_text:
        raise _Problem(
            "empty key: expected Keyword=value, (gggg,eeee)=value or Seq[0].Keyword=value"
        )
    comps = [c.strip() for c in path_text.split(".")]
    if any(not c for c in comps):
        raise _Problem(
            f"empty path component in {_q(path_text)}: components are joined by "
            "single dots, e.g. Seq[0].Keyword"
        )
    parts = tuple(_parse_part(c) for c in comps)
    for i, part in enumerate(parts[:-1]):
        rest = ".".join(comps[i + 1 :])
        if part.vr != "SQ":
            raise _Problem(
                f"{part.name} is not a sequence (VR {part.vr}), so the path cannot "
                f"continue into {_q(rest)}"
            )
        if part.index is None:
            raise _Problem(
                f"missing item index after sequence {part.name}: write "
                f"{part.name}[0].{'.'.join(p.text for p in parts[i + 1 :])}"
            )
    last = parts[-1]
    if last.vr == "SQ":
        if value:
            raise _Problem(
                f"{last.name} is a sequence and takes no value (got {_q(value, 30)}): "
                f"use '{last.text}=' for a return key or "
                f"'{last.name}[0].Keyword=value' to match inside an item"
            )
    else:
        if last.index is not None:
            raise _Problem(
                f"{last.name} is not a sequence (VR {last.vr}), so it takes no item "
                f"index [{last.index}]"
            )
        if value:
            _convert_value(last, value)
    return ParsedKey(text=text, path=parts, value=value)


# ---------------------------------------------------------------------------
# values


def _bad(part: PathPart, vr: str, value: str, hint: str) -> _Problem:
    return _Problem(
        f"value {_q(value, 40)} does not fit {part.name} (VR {vr}): expected {hint}"
    )


def _validator_ok(vr: str, value: Any) -> bool:
    validator = VALIDATORS.get(vr)
    return validator is None or validator(vr, value)[0]


def _convert_one(part: PathPart, vr: str, v: str) -> Any:
    if vr in _ASCII_VRS and not v.isascii():  # pydicom's regexes take any Unicode digit
        raise _bad(part, vr, v, _HINTS.get(vr, "ASCII text"))
    if vr in _INT_RANGES:
        lo, hi = _INT_RANGES[vr]
        hint = f"a whole number from {lo} to {hi}"
        if not _INT_RE.match(v) or len(v) > 24:
            raise _bad(part, vr, v, hint)
        n = int(v)
        if not _validator_ok(vr, n):
            raise _bad(part, vr, v, hint)
        return n
    if vr in ("FL", "FD"):
        if not _FLOAT_RE.match(v):
            raise _bad(part, vr, v, _HINTS[vr])
        f = float(v)
        if not math.isfinite(f):
            raise _bad(part, vr, v, _HINTS[vr])
        if vr == "FL":
            try:
                struct.pack("<f", f)
            except OverflowError:
                raise _bad(part, vr, v, _HINTS[vr]) from None
        return f
    if vr == "IS":
        if not v or not _validator_ok(vr, v) or not (_IS_RANGE[0] <= int(v) <= _IS_RANGE[1]):
            raise _bad(part, vr, v, _HINTS[vr])
        return v
    if vr == "DS":
        if not v or not _validator_ok(vr, v):
            raise _bad(part, vr, v, _HINTS[vr])
        return v
    if vr == "AT":
        return _parse_at(part, v)
    if vr == "CS":
        if len(v) > 16 or not _CS_RE.match(v):
            raise _bad(part, vr, v, _HINTS[vr])
        return v
    if vr in _TEXT_LIMITS:
        if not _validator_ok(vr, v):
            raise _bad(part, vr, v, f"text of at most {_TEXT_LIMITS[vr]} characters")
        return v
    if vr in _HINTS:  # AE AS DA DT TM UI UR PN
        if not _validator_ok(vr, v):
            raise _bad(part, vr, v, _HINTS[vr])
        return v
    return v  # UC, UT: any text


def _parse_at(part: PathPart, v: str) -> BaseTag:
    m = _AT_VALUE_RE.match(v)
    if m is not None and v.startswith("(") == v.endswith(")"):
        return Tag(int(m["g"], 16), int(m["e"], 16))
    if _KEYWORD_RE.match(v):
        tag = tag_for_keyword(v)
        if tag is not None:
            return Tag(tag)
    raise _bad(part, "AT", v, _HINTS["AT"])


def _convert_value(part: PathPart, value: str) -> Any:
    """Convert a non-empty value string for ``part`` (raises _Problem)."""
    vr = part.vr
    if vr in _BYTES_VRS:
        unit = _BYTES_VRS[vr]
        if not _HEX_RE.match(value) or (len(value) // 2) % unit:
            size = "" if unit == 1 else f", a multiple of {unit} bytes"
            raise _bad(part, vr, value, f"hex bytes such as 0aff{size}")
        return bytes.fromhex(value)
    if vr in ALLOW_BACKSLASH:  # LT, ST, UT: a backslash is just a character
        return _convert_one(part, vr, value)
    items = [_convert_one(part, vr, v) for v in value.split("\\")]
    return items[0] if len(items) == 1 else items


# ---------------------------------------------------------------------------
# applying


def _resolved(part: PathPart) -> PathPart:
    """A part with its VR filled in (for PathParts built by hand with vr='')."""
    if part.vr:
        return part
    vr = _default_vr(Tag(part.tag))
    if vr is None:
        raise _Problem(f"{part.name} needs a VR: write it as {_tag_text(part.tag)}LO=value")
    return PathPart(Tag(part.tag), part.keyword, part.index, vr)


def _sequence(ds: Dataset, part: PathPart, items: int) -> list[Dataset]:
    """The sequence at ``part`` in ``ds`` (created if absent) with at least ``items`` items."""
    elem = ds.get(part.tag)
    if elem is None or elem.VR != "SQ":
        ds[part.tag] = DataElement(part.tag, "SQ", [])
        elem = ds[part.tag]
    seq = elem.value
    while len(seq) < items:
        seq.append(Dataset())
    return seq


def apply_key(ds: Dataset, key: ParsedKey | str) -> Dataset:
    """Apply one key to ``ds`` (mutating it) and return ``ds``."""
    parsed = parse_key(key) if isinstance(key, str) else key
    try:
        _apply(ds, parsed)
    except _Problem as exc:
        raise KeyPathError(parsed.text, str(exc)) from None
    return ds


def _apply(ds: Dataset, parsed: ParsedKey) -> None:
    if not parsed.path:
        raise _Problem("empty key")
    path = [_resolved(p) for p in parsed.path]
    target = ds
    for part in path[:-1]:
        if part.vr != "SQ" or part.index is None:
            raise _Problem(f"{part.name} must be a sequence item like {part.name}[0]")
        target = _sequence(target, part, part.index + 1)[part.index]
    last = path[-1]
    if last.vr == "SQ":
        if parsed.value:
            raise _Problem(f"{last.name} is a sequence and takes no value")
        if last.index is None:
            target[last.tag] = DataElement(last.tag, "SQ", [])  # Seq= : zero items
        else:
            _sequence(target, last, last.index + 1)
        return
    if last.index is not None:
        raise _Problem(f"{last.name} is not a sequence, so it takes no item index")
    if parsed.value:
        value = _convert_value(last, parsed.value)
    else:
        value = empty_value_for_VR(last.vr)
    try:
        elem = DataElement(last.tag, last.vr, value, validation_mode=_config.IGNORE)
    except (ValueError, TypeError, OverflowError) as exc:  # pragma: no cover - defensive
        raise _Problem(f"pydicom rejected the value: {' '.join(str(exc).split())}") from None
    target[last.tag] = elem


def build_identifier(keys: Sequence[str], file: str | os.PathLike[str] | None = None) -> Dataset:
    """The C-FIND identifier: the query file (if any) first, then each key in order."""
    ds = load_query_file(file) if file is not None else Dataset()
    for key in keys:
        apply_key(ds, key)
    return ds


# ---------------------------------------------------------------------------
# query files


def _truncated(ds: Dataset) -> str | None:
    """Describe the first element whose value is shorter than its stated length."""
    for tag in list(ds.keys()):
        raw = ds.get_item(tag)
        if (
            isinstance(raw, RawDataElement)
            and raw.value is not None
            and raw.length != 0xFFFFFFFF
            and len(raw.value) != raw.length
        ):
            return f"element {_tag_text(tag)} is cut short ({len(raw.value)} of {raw.length} bytes)"
        elem = ds[tag]
        if elem.VR == "SQ":
            for item in elem.value:
                found = _truncated(item)
                if found:
                    return found
    return None


def _cut_header(ds: Dataset, size: int) -> str | None:
    """Detect a file that ends inside an element header (pydicom silently drops it)."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        return None  # offsets refer to the inflated stream
    end = 0
    for tag in ds.keys():
        raw = ds.get_item(tag)
        if not isinstance(raw, RawDataElement) or raw.length == 0xFFFFFFFF:
            if raw.tag == max(ds.keys()):
                return None  # last element has an undefined length: cannot tell
            continue
        end = max(end, raw.value_tell + raw.length)
    if 0 < size - end < 12:
        return f"it ends in the middle of an element header ({size - end} stray bytes at the end)"
    return None


def _plausible(ds: Dataset) -> str | None:
    """For files without the DICM header: a reason the data does not look like DICOM."""
    for tag in ds.keys():
        tag = Tag(tag)
        if tag.group == 0x0000:
            return f"element {_tag_text(tag)} is a DIMSE command element, not part of a dataset"
        if tag.is_private:
            if tag.is_private_creator:
                continue
            creator = Tag(tag.group, tag.element >> 8)
            if creator not in ds:
                return f"element {_tag_text(tag)} is private but has no private creator"
        elif not dictionary_has_tag(tag) and _default_vr(tag) is None:
            return f"element {_tag_text(tag)} is not a DICOM data element"
    return None


def load_query_file(path: str | os.PathLike[str]) -> Dataset:
    """Read a DICOM file (``-f``) as a query identifier, without its file meta.

    Any problem raises :class:`QueryFileError` naming the file, the problem and
    what to do about it.
    """
    name = os.fspath(path)
    fix = "give -f a DICOM file holding the query (e.g. made with dump2dcm or pydicom)"
    try:
        with open(name, "rb") as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read = dcmread(fp, force=True)
            problem = _cut_header(read, os.fstat(fp.fileno()).st_size) if len(read) else None
            problem = problem or _truncated(read)
            if problem is None and read.preamble is None:
                problem = _plausible(read)
            if problem is None:
                for elem in read.iterall():  # decode everything now, not later
                    _ = elem.value
    except FileNotFoundError:
        raise QueryFileError(name, "no such file; check the path given to -f") from None
    except IsADirectoryError:
        raise QueryFileError(name, f"it is a directory, not a file; {fix}") from None
    except PermissionError:
        raise QueryFileError(
            name, "permission denied; check the file's permissions or run as a user who can read it"
        ) from None
    except OSError as exc:
        raise QueryFileError(name, f"cannot read it ({exc.strerror or exc}); {fix}") from None
    except Exception as exc:
        detail = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise QueryFileError(
            name, f"it is not DICOM or it is corrupt ({detail}); {fix}"
        ) from None
    if problem is not None:
        raise QueryFileError(name, f"it is not DICOM or it is corrupt ({problem}); {fix}")
    ds = Dataset()
    for elem in read:
        if elem.tag.group != 0x0002:
            ds.add(elem)
    if len(ds) == 0:
        raise QueryFileError(name, f"it holds no data elements, so there is nothing to query; {fix}")
    return ds


# ---------------------------------------------------------------------------
# inverse: dataset -> keys / columns / cell values


def _key_name(elem: DataElement) -> str:
    """The path component naming ``elem`` in a key: keyword, or tag with VR when needed."""
    tag = elem.tag
    default = _default_vr(tag)
    vr = str(elem.VR)
    if " or " in vr:
        vr = vr.split(" or ")[0]
    keyword = _unique_keyword(tag)
    if keyword and vr == default:
        return keyword
    return _tag_text(tag) + ("" if vr == default else vr)


def _one_text(vr: str, v: Any) -> str:
    if v is None:
        return ""
    if vr == "AT":
        return _tag_text(int(v))
    if vr in ("FL", "FD"):
        return repr(float(v))
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    return str(v)


def _value_text(elem: DataElement) -> str:
    return value_text(str(elem.VR), elem.value)


def value_text(vr: str, v: Any) -> str:
    """A value as the table, CSV and keys show it: multi-values joined with '\\'."""
    if v is None:
        return ""
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, (MultiValue, list, tuple)):
        return "\\".join(_one_text(vr, x) for x in v)
    return _one_text(vr, v)


def dataset_to_keys(ds: Dataset) -> list[str]:
    """Keys that rebuild ``ds`` with :func:`build_identifier` (the inverse of it).

    Sequences give ``Seq[i].Keyword=...``, an empty sequence ``Seq=`` and an empty
    item ``Seq[i]=``; tags without a keyword (or with a VR other than the default)
    are written ``(gggg,eeee)VR``.
    """
    out: list[str] = []
    _emit_keys(ds, "", out)
    return out


def _emit_keys(ds: Dataset, prefix: str, out: list[str]) -> None:
    for elem in ds:
        name = prefix + _key_name(elem)
        if elem.VR == "SQ":
            if not elem.value:
                out.append(f"{name}=")
            for i, item in enumerate(elem.value):
                if len(item) == 0:
                    out.append(f"{name}[{i}]=")
                else:
                    _emit_keys(item, f"{name}[{i}].", out)
        else:
            out.append(f"{name}={_value_text(elem)}")


def column_paths(ds: Dataset) -> list[str]:
    """Leaf paths of the identifier in dataset order (the result table's columns).

    An empty sequence is the leaf ``Seq``, an empty item ``Seq[i]``; tags without
    a keyword appear as ``(gggg,eeee)``.
    """
    out: list[str] = []
    _emit_columns(ds, "", out)
    return out


def _emit_columns(ds: Dataset, prefix: str, out: list[str]) -> None:
    for elem in ds:
        name = prefix + (_unique_keyword(elem.tag) or _tag_text(elem.tag))
        if elem.VR == "SQ" and elem.value:
            for i, item in enumerate(elem.value):
                if len(item) == 0:
                    out.append(f"{name}[{i}]")
                else:
                    _emit_columns(item, f"{name}[{i}].", out)
        else:
            out.append(name)


@functools.lru_cache(maxsize=4096)
def column_steps(path: str) -> tuple[tuple[BaseTag, int | None], ...]:
    comps = [c.strip() for c in path.split(".")]
    steps = []
    try:
        for i, comp in enumerate(comps):
            if not comp:
                raise _Problem("empty path component")
            name, index, _ = _split_index(comp)
            tag, _kw, _vr = _parse_name(name)
            if index is None and i < len(comps) - 1:
                raise _Problem(f"missing item index after {name}")
            steps.append((tag, index))
    except _Problem as exc:
        raise KeyPathError(path, str(exc)) from None
    return tuple(steps)


def _display(elem: DataElement) -> str:
    if elem.VR == "SQ":
        n = len(elem.value or ())
        return f"<{n} item{'' if n == 1 else 's'}>"
    return _value_text(elem)


def _item_summary(item: Dataset) -> str:
    return ", ".join(
        f"{_unique_keyword(e.tag) or _tag_text(e.tag)}={_display(e)}" for e in item
    )


def value_at(ds: Dataset, path: str) -> str:
    """The display string at a :func:`column_paths` path in a response dataset.

    ``''`` when absent; multiple values joined with ``\\``; PN as its string; bytes
    as hex; a sequence as ``<N items>``; an item path (``Seq[0]``) as a
    ``Keyword=value, ...`` summary of the item. Parsed paths are cached.
    """
    steps = column_steps(path)
    current = ds
    last = len(steps) - 1
    try:
        for i, (tag, index) in enumerate(steps):
            elem = current.get(tag)
            if elem is None:
                return ""
            if index is None:
                return _display(elem) if i == last else ""
            seq = elem.value
            if elem.VR != "SQ" or index >= len(seq):
                return ""
            current = seq[index]
            if i == last:
                return _item_summary(current)
    except Exception:  # a response element pydicom cannot decode
        return "<unreadable>"
    return ""  # pragma: no cover - loop always returns
