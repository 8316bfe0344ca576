"""engine/elements.py reads identifiers without a Dataset: on random and hostile
identifiers it must give what pydicom's Dataset gives — every element's text and VM,
the DICOM JSON dict, pynetdicom's pretty lines — or None (the caller then takes the
Dataset way). A difference here is a difference in CSV, JSON, the -v log or the TUI."""

from __future__ import annotations

import io
import struct
import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.dsutils import decode, pretty_dataset

from findtui.engine.elements import json_dict, pretty_lines, read_elements
from findtui.engine.keys import value_text

# (tag, dictionary VR) of keys a C-FIND identifier carries, and a few odd ones
TAGS = [
    (0x00080005, "CS"), (0x00080020, "DA"), (0x00080030, "TM"), (0x0008002A, "DT"),
    (0x00080050, "SH"), (0x00080052, "CS"), (0x00080054, "AE"), (0x00080061, "CS"),
    (0x00081030, "LO"), (0x00081190, "UR"), (0x00100010, "PN"), (0x00100020, "LO"),
    (0x00101010, "AS"), (0x00104000, "LT"), (0x0020000D, "UI"), (0x00201208, "IS"),
    (0x00081160, "IS"), (0x00101030, "DS"), (0x00181030, "LO"), (0x00321060, "LO"),
    (0x00400007, "LO"), (0x00080081, "ST"), (0x00189367, "UC"), (0x00420010, "ST"),
    (0x00280010, "US"), (0x00200032, "DS"), (0x00091010, "LO"), (0x00110010, "LO"),
    (0x00990001, "UT"), (0x00080070, "LO"),
]
VRS = ["AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC",
       "UI", "UR", "UT", "US", "UL", "OB", "UN", "SQ"]
CHARSETS = [b"", b"ISO_IR 100", b"ISO_IR 192", b"ISO 2022 IR 87", b"\\ISO 2022 IR 87",
            b"GB18030", b"ISO_IR 6\\ISO_IR 100", b"NONSENSE", b"ISO_IR 144 "]

_text = st.lists(st.sampled_from(
    [b"A", b"z", b"9", b" ", b"\x00", b"\\", b"=", b"^", b".", b"-", b"+", b"\xe9", b"\xc3\xa9",
     b"\x1b$B", b"\x1b(B", b"F$", b"\x1b", b"\n", b"\xff", b"1", b"e", b"20190826"]),
    max_size=12).map(b"".join)
_value = st.one_of(_text, st.binary(max_size=20))


def _explicit(tag: int, vr: str, value: bytes) -> bytes:
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode()
    if vr in ("OB", "OW", "UN", "SQ", "UC", "UR", "UT"):
        return head + b"\0\0" + struct.pack("<I", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def _implicit(tag: int, vr: str, value: bytes) -> bytes:
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


_element = st.tuples(st.sampled_from(TAGS), st.one_of(st.none(), st.sampled_from(VRS)), _value)


def _check(raw: bytes, ts) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = read_elements(raw, ts)
        try:
            ds = decode(io.BytesIO(raw), ts.is_implicit_VR, True, False)
            ref = list(ds)
        except Exception:  # noqa: BLE001 - pydicom cannot read it: nor may the fast way
            assert fast is None
            return False
        if fast is None:
            return False
        assert sorted(e.tag for e in fast) == [int(e.tag) for e in ref]
        by_tag = {e.tag: e for e in fast}
        for r in ref:
            f = by_tag[int(r.tag)]
            assert f.VR == r.VR
            assert f.VM == r.VM, (r, f.items)
            assert value_text(f.VR, f.value) == value_text(r.VR, r.value), r
        try:
            expected = ds.to_json_dict()
        except Exception as exc:  # noqa: BLE001 - then the fast way fails as well
            try:
                json_dict(fast)
            except Exception as fast_exc:  # noqa: BLE001
                assert type(fast_exc) is type(exc)
            else:
                raise AssertionError(f"pydicom failed ({exc}), the fast way did not")
        else:
            got = json_dict(fast)
            assert got == expected
            assert list(got) == list(expected)  # the same order
        assert pretty_lines(fast) == pretty_dataset(ds)
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(elements=st.lists(_element, min_size=1, max_size=8), charset=st.sampled_from(CHARSETS),
       implicit=st.booleans())
def test_fast_elements_read_as_pydicom_does(elements, charset, implicit):
    parts = []
    if charset:
        parts.append((0x00080005, "CS", charset + b" " * (len(charset) & 1)))
    for (tag, vr), explicit_vr, value in elements:
        parts.append((tag, explicit_vr or vr, value))
    build = _implicit if implicit else _explicit
    raw = b"".join(build(*p) for p in parts)
    _check(raw, ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian)


def test_common_identifiers_take_the_fast_way():
    """The identifiers real PACS send read without a Dataset (or the speed is lost)."""
    for build, ts in ((_explicit, ExplicitVRLittleEndian), (_implicit, ImplicitVRLittleEndian)):
        raw = b"".join(build(*p) for p in [
            (0x00080005, "CS", b"ISO_IR 192"), (0x00080020, "DA", b"20190826"),
            (0x00080050, "SH", b"ACC123"), (0x00080052, "CS", b"STUDY "),
            (0x00080061, "CS", b"CT\\MR "), (0x00081030, "LO", b"Thorax \xc3\xa9 "),
            (0x00100010, "PN", b"M\xc3\xbcller^Hans"), (0x00100020, "LO", b"PID1"),
            (0x0020000D, "UI", b"1.2.3.4\0"), (0x00201208, "IS", b"12"),
        ])
        assert _check(raw, ts)
        fast = read_elements(raw, ts)
        texts = {e.tag: e.texts() for e in fast}
        assert texts[0x00080061] == ["CT", "MR"]
        assert texts[0x00081030] == ["Thorax é"]
        assert texts[0x00201208] is None  # IS: pydicom's converter


def test_unusual_identifiers_take_the_dataset_way():
    seq = _explicit(0x00400275, "SQ", b"")
    assert read_elements(seq, ExplicitVRLittleEndian) is None
    un = _explicit(0x00100010, "UN", b"Doe^John")
    assert read_elements(un, ExplicitVRLittleEndian) is None
    private = _implicit(0x00091010, "LO", b"x ")
    assert read_elements(private, ImplicitVRLittleEndian) is None
    truncated = _explicit(0x00100010, "PN", b"Doe^John")[:-3] + _explicit(0x0020000D, "UI", b"1")
    _check(truncated, ExplicitVRLittleEndian)  # whatever pydicom makes of it, or None
    # explicit bytes under an implicit transfer syntax: pydicom detects it; so do we
    swapped = _explicit(0x00100010, "PN", b"Doe^John")
    assert read_elements(swapped, ImplicitVRLittleEndian) is None
