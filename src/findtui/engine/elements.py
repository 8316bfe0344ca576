"""A response identifier's top-level elements, read without building a Dataset.

Every output shows the identifier's values as text, DICOM JSON or log lines;
building a pydicom Dataset for each response (~25 us an element) was most of their
time. Here pydicom's own element reader walks the raw bytes; the plain text VRs are
decoded the way pydicom's converters decode them (``tests/test_elements.py`` compares
the two on random and hostile input), every other element goes through pydicom's
converter (``convert_raw_data_element``); anything unusual (a sequence, a UN or
ambiguous VR, a tag whose VR must be guessed, deflate, bytes that do not read) gives
None, and the caller takes the Dataset way, which says precisely what is wrong.
"""

from __future__ import annotations

import functools
from io import BytesIO
from typing import Any

from pydicom import config
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import dictionary_has_tag, dictionary_keyword, dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.filereader import data_element_generator
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import TEXT_VR_DELIMS, validate_value
from pydicom.values import converters
from pynetdicom.dsutils import pretty_element

_LATIN1 = "latin_1"  # pydicom's default_encoding ("iso8859") for the VRs without a charset
# VRs read here as pydicom's converters read them: (strip each item, rstrip the whole)
_PLAIN = {"AE": "strip", "AS": "multi", "CS": "multi", "DA": "multi", "DT": "multi",
          "TM": "multi", "UI": "multi", "UR": "single"}
_MULTI_TEXT = frozenset({"LO", "SH", "UC"})
_SINGLE_TEXT = frozenset({"LT", "ST", "UT"})
_DATETIME = frozenset({"DA", "DT", "TM"})
_DEFAULT_ENCODINGS = ("iso8859",)
_TAG_CHARSET = 0x00080005


class Element:
    """One top-level element: its tag, VR and value as pydicom would give it."""

    __slots__ = ("tag", "VR", "items", "_element", "_json", "_pretty")

    def __init__(self, tag: int, vr: str, items: list[str] | None,
                 element: DataElement | None = None) -> None:
        self.tag = tag
        self.VR = vr
        # the text items of a plain text element (pydicom's value is items[0], or a
        # MultiValue of them); None for the others, converted by pydicom
        self.items = items
        self._element = element
        self._json: dict[str, Any] | None = None  # made once (elements are cached)
        self._pretty: str | None = None

    @property
    def value(self) -> Any:
        items = self.items
        if items is None:
            return self._element.value
        return items[0] if len(items) == 1 else list(items)

    @property
    def VM(self) -> int:
        items = self.items
        if items is None:
            return self._element.VM
        return (1 if items[0] else 0) if len(items) == 1 else len(items)

    def element(self) -> DataElement | None:
        """pydicom's DataElement, for the elements read by pydicom's converter."""
        return self._element

    def json(self) -> dict[str, Any]:
        """The element in the DICOM JSON model, as pydicom's ``to_json_dict`` makes it."""
        if self._json is None:
            texts = self.texts()
            if texts is None:
                self._json = self._element.to_json_dict(None, 1024)
            elif texts:
                self._json = {"vr": self.VR, "Value": list(texts)}
            else:
                self._json = {"vr": self.VR}
        return self._json

    def pretty(self) -> str:
        """The element as pynetdicom's ``pretty_element`` shows it (findscu's -v log)."""
        if self._pretty is None:
            items = self.items
            if items is None:
                self._pretty = pretty_element(self._element)
            else:
                if len(items) == 1:
                    value = f"[{items[0]}]" if items[0] else "(no value available)"
                    vm = 1 if items[0] else 0
                else:
                    value, vm = "[" + "\\".join(items) + "]", len(items)
                tag = self.tag
                self._pretty = (f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {self.VR} "
                                f"{value: <40} # {vm} {_keyword(tag)}")
        return self._pretty

    def texts(self) -> list[str] | None:
        """The items as text when this is a plain text element, else None."""
        items = self.items
        if items is None:
            return None
        return [] if len(items) == 1 and not items[0] else items


def _plain_items(vr: str, value: bytes) -> list[str]:
    how = _PLAIN[vr]
    text = value.decode(_LATIN1)
    if how == "strip":  # AE: leading and trailing spaces are not significant
        return [s.strip() for s in text.split("\\")]
    if how == "single":  # UR
        return [text.rstrip()]
    if vr == "UI":  # each item becomes a pydicom UID: validated, then stripped
        mode = config.settings.reading_validation_mode
        items = text.rstrip("\0 ").split("\\")
        for item in items:
            validate_value("UI", item, mode)
        return [item.strip() for item in items]
    return text.rstrip(" \x00").split("\\")


def _text_items(vr: str, value: bytes, encodings: list[str]) -> list[str]:
    text = decode_bytes(value, encodings, TEXT_VR_DELIMS)
    mode = config.settings.reading_validation_mode
    if vr in _SINGLE_TEXT:
        validate_value(vr, text, mode)
        return [text.rstrip("\0 ")]
    items = text.split("\\")
    for item in items:
        validate_value(vr, item, mode)
    return [item.rstrip("\0 ") for item in items]


def read_elements(raw: bytes, transfer_syntax: UID) -> list[Element] | None:
    """The identifier's top-level elements in the order pydicom's Dataset keeps them
    (first position, last value of a repeated tag), or None: take the Dataset way."""
    if transfer_syntax.is_deflated or config.data_element_callback:
        return None
    implicit = transfer_syntax.is_implicit_VR
    little = transfer_syntax.is_little_endian
    if implicit and raw[4:6].isalpha() and raw[4:6].decode("latin_1") in converters:
        return None  # explicit data in an implicit syntax: pydicom guesses; let it
    try:
        raws: dict[int, RawDataElement] = {}
        for elem in data_element_generator(BytesIO(raw), implicit, little, defer_size=None):
            raws[int(elem.tag)] = elem
        charset = raws.get(_TAG_CHARSET)
        encodings = _DEFAULT_ENCODINGS
        if charset is not None:  # as pydicom's read_dataset reads it
            encodings = _encodings(charset.VR, charset.value, little)
        datetimes = config.datetime_conversion
        out: list[Element] = []
        for tag, elem in raws.items():
            vr = elem.VR
            if vr is None:  # implicit: the dictionary's VR, if it has one and only one
                if tag & 0x10000 or (tag & 0xFFFF) == 0:
                    return None  # private or group length: pydicom's own rules
                vr = _dictionary_vr(tag)
                if vr is None:
                    return None
            if vr not in converters or vr in ("SQ", "UN") or " or " in vr:
                return None
            if elem.length > _CACHED_LENGTH:
                out.append(_element(elem, vr, encodings, datetimes))
                continue
            key = (tag, elem.VR, elem.value, little, vr, encodings, datetimes)
            element = _CACHE.get(key)
            if element is None:
                element = _element(elem, vr, encodings, datetimes)
                if len(_CACHE) >= _CACHE_SIZE:
                    _CACHE.clear()
                _CACHE[key] = element
            out.append(element)
        return out
    except Exception:  # noqa: BLE001 - the Dataset way says precisely what is wrong
        return None


# The same element bytes come back in response after response (the level, the character
# set, a modality, a description, a patient's name...): each is converted once. Values
# are read-only once made; Python's warnings filter shows a warning about a value once
# anyway.
_CACHED_LENGTH = 256
_CACHE_SIZE = 8192
_CACHE: dict[tuple, Element] = {}


def _element(elem: RawDataElement, vr: str, encodings: tuple[str, ...],
             datetimes: bool) -> Element:
    tag = int(elem.tag)
    value = elem.value or b""
    items: list[str] | None = None
    if vr in _PLAIN and not (datetimes and vr in _DATETIME):
        items = _plain_items(vr, value) if value else [""]
    elif vr in _MULTI_TEXT or vr in _SINGLE_TEXT:
        items = _text_items(vr, value, list(encodings)) if value else [""]
    if items is None:  # pydicom converts it (and raises now if it cannot)
        return Element(tag, vr, None, convert_raw_data_element(elem, encoding=list(encodings)))
    return Element(tag, vr, items)


@functools.lru_cache(maxsize=256)
def _encodings(vr: str | None, value: bytes, little: bool) -> tuple[str, ...]:
    charset = RawDataElement(BaseTag(_TAG_CHARSET), vr, len(value), value, 0, vr is None, little)
    return tuple(convert_encodings(convert_raw_data_element(charset).value))


def pretty_lines(elements: list[Element]) -> list[str]:
    """pynetdicom's ``pretty_dataset`` lines (findscu's -v log) for these elements."""
    return [e.pretty() for e in sorted(elements, key=_by_tag)]


def _by_tag(e: Element) -> int:
    return e.tag


def json_dict(elements: list[Element]) -> dict[str, Any]:
    """pydicom's ``Dataset.to_json_dict()`` (the DICOM JSON model) for these elements.
    (Its values are shared with other calls: serialise it, do not change it.)"""
    return {f"{e.tag:08X}": e.json() for e in elements}


@functools.lru_cache(maxsize=4096)
def _dictionary_vr(tag: int) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


@functools.lru_cache(maxsize=4096)
def _keyword(tag: int) -> str:
    """DataElement.keyword: the dictionary's keyword, '' for private and unknown tags."""
    return dictionary_keyword(tag) if dictionary_has_tag(tag) else ""

