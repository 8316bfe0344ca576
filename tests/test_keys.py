"""Tests for findtui.engine.keys: findscu -k keyword pathing, -f query files, the inverse."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import config, dcmread
from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import PersonName

from findtui.engine import keys
from findtui.engine.keys import (
    MAX_ITEM_INDEX,
    KeyPathError,
    ParsedKey,
    PathPart,
    QueryFileError,
    apply_key,
    build_identifier,
    column_paths,
    dataset_to_keys,
    load_query_file,
    parse_key,
    suggest_keyword,
    value_at,
)

OPIDS = "OtherPatientIDsSequence"
SPS = "ScheduledProcedureStepSequence"


def ident(*k: str) -> Dataset:
    return build_identifier(list(k))


def problem(key: str) -> KeyPathError:
    with pytest.raises(KeyPathError) as info:
        build_identifier([key])
    return info.value


# ---------------------------------------------------------------------------
# element forms


@pytest.mark.parametrize(
    "key",
    ["PatientName=DOE^J", "(0010,0010)=DOE^J", "0010,0010=DOE^J", "(0010,0010)=DOE^J"],
)
def test_keyword_and_tag_forms_are_equivalent(key):
    ds = ident(key)
    assert list(ds.keys()) == [Tag(0x00100010)]
    assert ds.PatientName == "DOE^J"
    assert ds["PatientName"].VR == "PN"


def test_tag_hex_is_case_insensitive():
    a = ident("(0008,103e)=X", "0020,000d=1.2.3")
    b = ident("(0008,103E)=X", "0020,000D=1.2.3")
    assert a == b
    assert a.SeriesDescription == "X" and a.StudyInstanceUID == "1.2.3"


def test_parse_key_structure():
    parsed = parse_key(f"{OPIDS}[2].PatientID=ABC")
    assert isinstance(parsed, ParsedKey)
    assert parsed.text == f"{OPIDS}[2].PatientID=ABC"
    assert parsed.value == "ABC"
    assert [(p.tag, p.keyword, p.index) for p in parsed.path] == [
        (Tag(0x00101002), OPIDS, 2),
        (Tag(0x00100020), "PatientID", None),
    ]
    assert all(isinstance(p, PathPart) for p in parsed.path)
    assert parse_key("PatientName").value is None
    assert parse_key("PatientName=").value == ""
    assert parse_key("PatientName=A=B").value == "A=B"  # only the first '=' splits
    assert parse_key("(0009,1001)LO=x").path[0].keyword == ""
    assert parse_key("(6000,0010)=1").path[0].keyword == ""  # repeater: no unique keyword


def test_whitespace_around_path_is_ignored_but_value_kept():
    ds = ident(f" {OPIDS}[0] . PatientID = A ")
    assert ds[OPIDS][0].PatientID == " A "


@pytest.mark.parametrize("key", ["PatientName", "PatientName="])
def test_no_value_is_universal_matching(key):
    ds = ident(key)
    assert "PatientName" in ds
    assert ds["PatientName"].value == empty_value_for_VR("PN")
    assert ds["PatientName"].is_empty


@pytest.mark.parametrize(
    ("key", "vr"),
    [("Rows", "US"), ("StudyDate=", "DA"), ("SliceThickness", "DS"), ("SeriesNumber=", "IS"),
     ("RedPaletteColorLookupTableData", "OW"), ("FrameIncrementPointer", "AT"), ("EventTimeOffset", "FD")],
)
def test_empty_value_is_pydicoms_empty_value_for_the_vr(key, vr):
    ds = ident(key)
    (elem,) = list(ds)
    assert elem.VR == vr
    assert elem.value == empty_value_for_VR(vr)
    assert elem.is_empty


def test_later_keys_override_earlier_ones():
    ds = ident("PatientName=A", "PatientID=1", "PatientName=B", "PatientID=")
    assert ds.PatientName == "B"
    assert ds.PatientID == ""


def test_backslash_separates_values():
    ds = ident("ModalitiesInStudy=CT\\MR\\US", "PixelSpacing=0.5\\0.25")
    assert isinstance(ds.ModalitiesInStudy, MultiValue)
    assert list(ds.ModalitiesInStudy) == ["CT", "MR", "US"]
    assert [float(x) for x in ds.PixelSpacing] == [0.5, 0.25]


def test_backslash_is_literal_in_single_valued_text_vrs():
    ds = ident("AdditionalPatientHistory=a\\b")  # LT may contain backslashes
    assert ds.AdditionalPatientHistory == "a\\b"


# ---------------------------------------------------------------------------
# sequences


def test_empty_sequence():
    ds = ident(f"{OPIDS}=")
    assert ds[OPIDS].VR == "SQ" and len(ds[OPIDS].value) == 0
    assert ident(OPIDS) == ds


def test_one_empty_item():
    ds = ident(f"{OPIDS}[0]=")
    assert len(ds[OPIDS].value) == 1 and len(ds[OPIDS][0]) == 0


def test_index_n_makes_n_plus_one_empty_items():
    ds = ident(f"{OPIDS}[2]=")
    assert len(ds[OPIDS].value) == 3
    assert all(len(item) == 0 for item in ds[OPIDS].value)


def test_off_by_one_of_the_reference_is_fixed():
    # pynetdicom's findscu raises IndexError here; we extend with an empty item 1
    ds = build_identifier([f"{OPIDS}[0].PatientID=1", f"{OPIDS}[2].PatientID=3"])
    items = ds[OPIDS].value
    assert len(items) == 3
    assert items[0].PatientID == "1"
    assert len(items[1]) == 0
    assert items[2].PatientID == "3"


def test_keys_add_to_existing_items():
    ds = ident(f"{SPS}[0].Modality=CT", f"{SPS}[0].ScheduledStationAETitle=AE1", f"{SPS}[1].Modality=MR")
    items = ds[SPS].value
    assert len(items) == 2
    assert items[0].Modality == "CT" and items[0].ScheduledStationAETitle == "AE1"
    assert items[1].Modality == "MR"
    # Seq[N]= only ensures the item exists, it keeps what is there
    apply_key(ds, f"{SPS}[0]=")
    assert ds[SPS][0].Modality == "CT" and len(ds[SPS].value) == 2


def test_seq_equals_resets_like_findscu():
    ds = ident(f"{SPS}[0].Modality=CT", f"{SPS}=")
    assert len(ds[SPS].value) == 0


def test_nested_sequences_to_any_depth():
    ds = ident(
        "ReferencedStudySequence[0].ReferencedSeriesSequence[1].ReferencedInstanceSequence[0]"
        ".ReferencedSOPInstanceUID=1.2.3"
    )
    series = ds.ReferencedStudySequence[0].ReferencedSeriesSequence
    assert len(series) == 2 and len(series[0]) == 0
    assert series[1].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == "1.2.3"


def test_private_sequence_with_explicit_vr():
    ds = ident("(0009,0010)=ACME", "(0009,1010)SQ[0].(0009,1011)US=5")
    assert ds[0x00091010].VR == "SQ"
    assert ds[0x00091010].value[0][0x00091011].value == 5


# ---------------------------------------------------------------------------
# values by VR


def test_integer_vrs_become_int():
    ds = ident("Rows=512", "TagAngleSecondAxis=-5", "SimpleFrameList=1\\2\\4294967295",
               "ReferencePixelX0=-7", "FileOffsetInContainer=18446744073709551615")
    assert ds.Rows == 512 and type(ds.Rows) is int
    assert ds.TagAngleSecondAxis == -5
    assert list(ds.SimpleFrameList) == [1, 2, 4294967295]
    assert ds.ReferencePixelX0 == -7
    assert ds.FileOffsetInContainer == 2**64 - 1


def test_is_is_an_int_and_keeps_its_text():
    ds = ident("SeriesNumber=007")
    assert isinstance(ds.SeriesNumber, int) and ds.SeriesNumber == 7
    assert str(ds.SeriesNumber) == "007"


def test_ds_keeps_the_string_form():
    ds = ident("SliceThickness=1.50")
    assert isinstance(ds.SliceThickness, float) and ds.SliceThickness == 1.5
    assert str(ds.SliceThickness) == "1.50"


def test_float_vrs_become_float():
    ds = ident("RecommendedDisplayFrameRateInFloat=2.5", "EventTimeOffset=-1e-3")
    assert ds.RecommendedDisplayFrameRateInFloat == 2.5
    assert type(ds.EventTimeOffset) is float and ds.EventTimeOffset == -0.001


@pytest.mark.parametrize("text", ["(0018,1063)", "0018,1063", "00181063", "FrameTime", "(0018,1063)"])
def test_at_takes_a_tag(text):
    ds = ident(f"FrameIncrementPointer={text}")
    assert ds.FrameIncrementPointer == Tag(0x00181063)


def test_at_multiple_values():
    ds = ident("FrameIncrementPointer=FrameTime\\(0018,1065)")
    assert list(ds.FrameIncrementPointer) == [Tag(0x00181063), Tag(0x00181065)]


def test_binary_vrs_take_hex():
    ds = ident("RedPaletteColorLookupTableData=0aFF", "(0009,1001)OB=00ff10", "(0009,1002)UN=ab")
    assert ds.RedPaletteColorLookupTableData == b"\x0a\xff"
    assert ds[0x00091001].value == b"\x00\xff\x10"
    assert ds[0x00091002].value == b"\xab"


def test_text_vrs_stay_str():
    ds = ident("PatientID=ABC 123", "StudyInstanceUID=1.2.840.10008.1", "PatientAge=045Y",
               "StudyDescription=x\u00e9y", "RetrieveURL=http://x/y?a=b")
    assert ds.PatientID == "ABC 123" and ds.StudyInstanceUID == "1.2.840.10008.1"
    assert ds.PatientAge == "045Y" and ds.StudyDescription == "x\u00e9y"
    assert ds.RetrieveURL == "http://x/y?a=b"
    assert type(ds.PatientID) is str and isinstance(ident("PatientName=A^B").PatientName, PersonName)


@pytest.mark.parametrize(
    "key",
    ["Modality=C*", "Modality=?T", "PatientName=DOE*", "StudyDate=20240101-20241231", "StudyDate=-20241231",
     "StudyDate=20240101-", "StudyTime=080000-1200", "AcquisitionDateTime=20240101120000.5+0100",
     "QueryRetrieveLevel=STUDY", "ScheduledStationAETitle=MY AE", "PatientName=Yamada^Tarou=\u5c71\u7530^\u592a\u90ce"],
)
def test_query_values_that_fit(key):
    ds = ident(key)
    assert str(list(ds)[0].value) == key.split("=", 1)[1]


def test_ambiguous_dictionary_vr_uses_the_first_unless_given():
    assert ident("SmallestImagePixelValue=3")["SmallestImagePixelValue"].VR == "US"
    ds = ident("(0028,0106)SS=-5")
    assert ds["SmallestImagePixelValue"].VR == "SS" and ds.SmallestImagePixelValue == -5
    assert ident("PixelData=00ff")["PixelData"].VR == "OB"


def test_private_creator_is_lo_without_explicit_vr():
    ds = ident("(0009,0010)=ACME", "(0009,1001)LO=x", "(0009,1002)us=7")
    assert ds[0x00090010].VR == "LO" and ds[0x00090010].value == "ACME"
    assert ds[0x00091001].VR == "LO" and ds[0x00091001].value == "x"
    assert ds[0x00091002].VR == "US" and ds[0x00091002].value == 7


def test_repeating_group_by_tag():
    ds = ident("(6000,0010)=512")
    assert ds[0x60000010].VR == "US" and ds[0x60000010].value == 512


# ---------------------------------------------------------------------------
# errors


BAD_VALUES = [
    ("Rows=abc", "Rows (VR US)"),
    ("Rows=70000", "0 to 65535"),
    ("Rows=-1", "0 to 65535"),
    ("Rows=1.5", "Rows (VR US)"),
    ("Rows=1_000", "Rows (VR US)"),
    ("Rows=1\\x", "Rows (VR US)"),
    ("TagAngleSecondAxis=40000", "-32768 to 32767"),
    ("PatientAge=toolong12", "PatientAge (VR AS)"),
    ("StudyDate=2020-01-01", "StudyDate (VR DA)"),
    ("StudyDate=*", "StudyDate (VR DA)"),
    ("StudyTime=25", "StudyTime (VR TM)"),
    ("SliceThickness=abc", "SliceThickness (VR DS)"),
    ("SliceThickness=1.00000000000000001", "SliceThickness (VR DS)"),
    ("SeriesNumber=1.5", "SeriesNumber (VR IS)"),
    ("SeriesNumber=\u0663", "SeriesNumber (VR IS)"),  # an Arabic-Indic digit
    ("StudyDate=\u0662\u0660\u0662\u0664\u0660\u0661\u0660\u0661", "StudyDate (VR DA)"),
    ("SliceThickness=\u0661.5", "SliceThickness (VR DS)"),
    ("SeriesNumber=99999999999", "SeriesNumber (VR IS)"),
    ("RecommendedDisplayFrameRateInFloat=fast", "(VR FL)"),
    ("RecommendedDisplayFrameRateInFloat=1e39", "(VR FL)"),
    ("EventTimeOffset=1e999", "(VR FD)"),
    ("EventTimeOffset=nan", "(VR FD)"),
    ("FrameIncrementPointer=Bogus", "(VR AT)"),
    ("FrameIncrementPointer=(0018,1063", "(VR AT)"),
    ("RedPaletteColorLookupTableData=0a", "multiple of 2 bytes"),
    ("RedPaletteColorLookupTableData=zz", "(VR OW)"),
    ("Modality=ct", "Modality (VR CS)"),
    ("Modality=ABCDEFGHIJKLMNOPQ", "Modality (VR CS)"),
    ("StudyInstanceUID=1.02.3", "StudyInstanceUID (VR UI)"),
    ("StudyInstanceUID=1.2.*", "StudyInstanceUID (VR UI)"),
    ("AccessionNumber=" + "A" * 17, "at most 16 characters"),
    ("PatientID=" + "A" * 65, "at most 64 characters"),
    ("PatientName=A=B=C=D", "PatientName (VR PN)"),
    ("ScheduledStationAETitle=" + "A" * 17, "(VR AE)"),
    (f"{SPS}[0].Modality=mr", "Modality (VR CS)"),
]


@pytest.mark.parametrize(("key", "fragment"), BAD_VALUES)
def test_value_that_does_not_fit_the_vr(key, fragment):
    exc = problem(key)
    assert exc.problem.startswith("value ")
    assert "does not fit" in exc.problem and fragment in exc.problem


BAD_KEYS = [
    ("PatinetName=X", "unknown keyword 'PatinetName' (did you mean PatientName?)"),
    ("patientname=x", "unknown keyword 'patientname' (did you mean PatientName?)"),
    ("Xyzzyplugh=1", "unknown keyword 'Xyzzyplugh'"),
    ("(0010,00ZZ)=x", "malformed tag '(0010,00ZZ)'"),
    ("(10,10)=x", "malformed tag '(10,10)'"),
    ("0010,0010)=x", "malformed tag"),
    ("(0010,0010=x", "malformed tag"),
    ("(00100,0010)=x", "malformed tag"),
    ("Patient-Name=x", "neither a keyword"),
    (f"{OPIDS}[-1]=", "item index '-1'"),
    (f"{OPIDS}[x]=", "item index 'x'"),
    (f"{OPIDS}[]=", "item index ''"),
    (f"{OPIDS}[=", "malformed item index"),
    (f"{OPIDS}]=", "malformed item index"),
    (f"{OPIDS}[0][1]=", "malformed item index"),
    (f"{OPIDS}[0]x.PatientID=", "malformed item index"),
    (f"{OPIDS}[{MAX_ITEM_INDEX + 1}]=", f"larger than {MAX_ITEM_INDEX}"),
    ("[0]=", "no name before '['"),
    ("PatientName[0]=x", "PatientName is not a sequence (VR PN), so it takes no item index [0]"),
    ("PatientName.PatientID=", "PatientName is not a sequence (VR PN), so the path cannot continue"),
    (f"{OPIDS}.PatientID=1", f"missing item index after sequence {OPIDS}: write {OPIDS}[0].PatientID"),
    (f"{OPIDS}=abc", f"{OPIDS} is a sequence and takes no value"),
    (f"{OPIDS}[0]=abc", f"{OPIDS} is a sequence and takes no value"),
    ("=x", "empty key"),
    ("", "empty key"),
    ("   =", "empty key"),
    (f"{OPIDS}[0]..PatientID=", "empty path component"),
    (".PatientID=", "empty path component"),
    ("PatientID.=", "empty path component"),
    ("(0009,1001)=x", "private tag (0009,1001) needs a VR: "),
    ("(0009,1001)", "private tag (0009,1001) needs a VR: "),
    ("(0010,9999)=x", "tag (0010,9999) is not in the DICOM dictionary and needs a VR"),
    ("(0009,1001)XX=x", "unknown VR 'XX'"),
    ("OverlayRows=512", "OverlayRows is a repeating-group element: give it as a tag, e.g. (6000,0010)"),
    ("TransferSyntaxUID=1.2", "file meta element"),
    ("(0000,0100)=1", "command element"),
    ("(FFFE,E000)=", "delimiter"),
]


@pytest.mark.parametrize(("key", "fragment"), BAD_KEYS)
def test_bad_keys_are_clear_one_line_errors(key, fragment):
    exc = problem(key)
    assert isinstance(exc, ValueError)
    assert exc.key == key
    assert fragment in exc.problem
    assert str(exc) == f"bad key {key!r}: {exc.problem}"
    assert "\n" not in str(exc)
    # parse_key alone reports the same problem (the TUI key editor uses it)
    with pytest.raises(KeyPathError) as again:
        parse_key(key)
    assert again.value.problem == exc.problem


@pytest.mark.parametrize(("key", "fragment"), BAD_VALUES)
def test_parse_key_validates_values_too(key, fragment):
    with pytest.raises(KeyPathError, match="does not fit"):
        parse_key(key)


def test_error_message_exact_format():
    exc = problem("PatinetName=X")
    assert str(exc) == "bad key 'PatinetName=X': unknown keyword 'PatinetName' (did you mean PatientName?)"
    assert exc.problem == "unknown keyword 'PatinetName' (did you mean PatientName?)"


def test_long_and_multiline_keys_stay_one_short_line():
    exc = problem("PatientName=" + "x\n" * 5000 + "=")  # PN: too many '=' groups
    assert "\n" not in str(exc) and len(str(exc)) < 500
    assert exc.key.startswith("PatientName=x\n")


@pytest.mark.parametrize(
    "key", [f"{OPIDS}\n[0]=P", f"{OPIDS}\n.PatientID=1", "Patient\nName=x", "(0009,1001)\n=x", "Rows=\n"]
)
def test_control_characters_never_leak_into_the_message(key):
    exc = problem(key)
    assert "\n" not in str(exc)


def test_error_leaves_earlier_keys_applied_and_stops():
    ds = Dataset()
    apply_key(ds, "PatientName=A")
    with pytest.raises(KeyPathError):
        apply_key(ds, "Rows=abc")
    assert list(ds.keys()) == [Tag(0x00100010)]


# ---------------------------------------------------------------------------
# suggestion


@pytest.mark.parametrize(
    ("name", "expected"),
    [("PatinetName", "PatientName"), ("patientname", "PatientName"), ("StudyInstanceUid", "StudyInstanceUID"),
     ("Modallity", "Modality"), ("PatientName", "PatientName"), ("xyzzy", None), ("", None)],
)
def test_suggest_keyword(name, expected):
    assert suggest_keyword(name) == expected


# ---------------------------------------------------------------------------
# apply_key / build_identifier API


def test_apply_key_mutates_and_returns_the_dataset():
    ds = Dataset()
    assert apply_key(ds, "PatientID=1") is ds
    assert apply_key(ds, parse_key("PatientName=A")) is ds
    assert ds.PatientID == "1" and ds.PatientName == "A"


def test_apply_key_accepts_a_hand_built_parsed_key():
    parsed = ParsedKey(
        text="handmade",
        path=(PathPart(Tag(0x00400100), SPS, 1), PathPart(Tag(0x00080060), "Modality", None)),
        value="CT",
    )
    ds = apply_key(Dataset(), parsed)
    assert len(ds[SPS].value) == 2 and ds[SPS][1].Modality == "CT"
    bad = ParsedKey("private", (PathPart(Tag(0x00091001), "", None),), "x")
    with pytest.raises(KeyPathError, match="needs a VR"):
        apply_key(Dataset(), bad)


def test_build_identifier_without_keys_is_empty():
    assert build_identifier([]) == Dataset()


# ---------------------------------------------------------------------------
# query files


def _write_query(path: Path, *, with_meta: bool = True) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = "DOE^J"
    ds.StudyDescription = "x" * 40
    item = Dataset()
    item.Modality = "CT"
    ds.ScheduledProcedureStepSequence = [item]
    if with_meta:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.1"
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.save_as(path, implicit_vr=True, little_endian=True)
    return ds


@pytest.mark.parametrize("with_meta", [True, False])
def test_load_query_file(tmp_path, with_meta):
    path = tmp_path / "q.dcm"
    _write_query(path, with_meta=with_meta)
    ds = load_query_file(path)
    assert type(ds) is Dataset
    assert not hasattr(ds, "file_meta") or not ds.file_meta
    assert all(elem.tag.group != 0x0002 for elem in ds)
    assert dataset_to_keys(ds) == [
        "QueryRetrieveLevel=STUDY",
        "StudyDescription=" + "x" * 40,
        "PatientName=DOE^J",
        f"{SPS}[0].Modality=CT",
    ]
    assert load_query_file(str(path)) == ds


def test_group_0002_in_the_dataset_body_is_stripped_too(tmp_path):
    def element(group: int, elem: int, value: bytes) -> bytes:
        value += b" " * (len(value) % 2)
        return struct.pack("<HHI", group, elem, len(value)) + value

    path = tmp_path / "raw.dcm"  # implicit VR, no preamble, a stray (0002,0010) after the first element
    path.write_bytes(element(0x0008, 0x0052, b"STUDY") + element(0x0002, 0x0010, b"1.2.840.10008.1.2")
                     + element(0x0010, 0x0010, b"DOE"))
    assert Tag(0x00020010) in dcmread(path, force=True)  # pydicom keeps it in the body
    ds = load_query_file(path)
    assert list(ds.keys()) == [Tag(0x00080052), Tag(0x00100010)]


def test_build_identifier_applies_file_first_then_keys(tmp_path):
    path = tmp_path / "q.dcm"
    _write_query(path)
    ds = build_identifier(["PatientName=SMITH*", f"{SPS}[1].Modality=MR", "PatientID"], file=str(path))
    assert ds.QueryRetrieveLevel == "STUDY"
    assert ds.PatientName == "SMITH*"
    assert [i.Modality for i in ds[SPS]] == ["CT", "MR"]
    assert ds.PatientID == ""
    assert "TransferSyntaxUID" not in ds


def _file_error(path) -> QueryFileError:
    with pytest.raises(QueryFileError) as info:
        load_query_file(path)
    exc = info.value
    assert isinstance(exc, ValueError)
    assert exc.path == str(path)
    assert str(path) in str(exc) and exc.problem in str(exc)
    assert "\n" not in str(exc)
    return exc


def test_missing_file(tmp_path):
    exc = _file_error(tmp_path / "nope.dcm")
    assert "no such file" in exc.problem and "-f" in exc.problem
    with pytest.raises(QueryFileError):
        build_identifier(["PatientName"], file=str(tmp_path / "nope.dcm"))


def test_directory(tmp_path):
    exc = _file_error(tmp_path)
    assert "directory" in exc.problem


def test_permission_denied(tmp_path, monkeypatch):
    path = tmp_path / "q.dcm"
    _write_query(path)

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(keys, "open", deny, raising=False)
    exc = _file_error(path)
    assert "permission denied" in exc.problem


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read anything")
def test_permission_denied_for_real(tmp_path):
    path = tmp_path / "q.dcm"
    _write_query(path)
    path.chmod(0)
    assert "permission denied" in _file_error(path).problem


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, this is a text file and not DICOM at all\n", bytes(range(256)) * 8, b"\x00" * 300],
    ids=["empty", "text", "binary", "zeros"],
)
def test_not_dicom(tmp_path, content):
    path = tmp_path / "q.dcm"
    path.write_bytes(content)
    exc = _file_error(path)
    assert "-f" in exc.problem


@pytest.mark.parametrize("with_meta", [True, False])
@pytest.mark.parametrize("where", ["in the sequence item", "in a value", "in a header"])
def test_truncated_file(tmp_path, with_meta, where):
    path = tmp_path / "q.dcm"
    _write_query(path, with_meta=with_meta)
    data = path.read_bytes()
    x40 = data.index(b"x" * 40)
    end = {"in the sequence item": len(data) - 1, "in a value": x40 + 20, "in a header": x40 + 40 + 3}[where]
    path.write_bytes(data[:end])
    exc = _file_error(path)
    assert "corrupt" in exc.problem


def test_truncated_inside_an_element_header(tmp_path):
    path = tmp_path / "q.dcm"
    _write_query(path, with_meta=False)
    good = path.read_bytes()
    path.write_bytes(good + b"\x10\x00\x20")  # 3 bytes of a header
    assert "middle of an element header" in _file_error(path).problem


# ---------------------------------------------------------------------------
# inverse: keys, columns, values


def test_dataset_to_keys_example():
    ds = ident(
        "QueryRetrieveLevel=STUDY", "PatientName", f"{OPIDS}[0].PatientID=1", f"{OPIDS}[2].PatientID=3",
        f"{SPS}[0]=", "ReferencedStudySequence=", "ModalitiesInStudy=CT\\MR", "(0009,0010)=ACME",
        "(0009,1001)US=5", "(0028,0106)SS=-5", "FrameIncrementPointer=FrameTime", "RedPaletteColorLookupTableData=0aff",
    )
    assert dataset_to_keys(ds) == [
        "QueryRetrieveLevel=STUDY",
        "ModalitiesInStudy=CT\\MR",
        "ReferencedStudySequence=",
        "(0009,0010)=ACME",
        "(0009,1001)US=5",
        "PatientName=",
        f"{OPIDS}[0].PatientID=1",
        f"{OPIDS}[1]=",
        f"{OPIDS}[2].PatientID=3",
        "FrameIncrementPointer=(0018,1063)",
        "(0028,0106)SS=-5",
        "RedPaletteColorLookupTableData=0aff",
        f"{SPS}[0]=",
    ]
    assert build_identifier(dataset_to_keys(ds)) == ds


def test_column_paths():
    ds = ident(
        "QueryRetrieveLevel=STUDY", "PatientName", f"{SPS}[0].Modality", f"{SPS}[0].ScheduledStationAETitle",
        f"{OPIDS}[1]=", "ReferencedStudySequence", "(0009,0010)=ACME", "(0009,1001)LO", "(6000,0010)",
    )
    assert column_paths(ds) == [
        "QueryRetrieveLevel",
        "ReferencedStudySequence",
        "(0009,0010)",
        "(0009,1001)",
        "PatientName",
        f"{OPIDS}[0]",
        f"{OPIDS}[1]",
        f"{SPS}[0].Modality",
        f"{SPS}[0].ScheduledStationAETitle",
        "(6000,0010)",
    ]


def _response() -> Dataset:
    ds = ident(
        "QueryRetrieveLevel=STUDY", "PatientName=DOE^JOHN", "ModalitiesInStudy=CT\\MR", "Rows=512",
        "SliceThickness=1.50", "RedPaletteColorLookupTableData=0aff", "FrameIncrementPointer=FrameTime",
        f"{SPS}[0].Modality=CT", f"{SPS}[0].ScheduledStationAETitle=AE1", f"{SPS}[1].Modality=MR",
        f"{OPIDS}[0].PatientID=X", "ReferencedStudySequence=", "(0009,0010)=ACME", "(0009,1001)LO=secret",
        "EventTimeOffset=0.25",
    )
    return ds


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("QueryRetrieveLevel", "STUDY"),
        ("PatientName", "DOE^JOHN"),
        ("ModalitiesInStudy", "CT\\MR"),
        ("Rows", "512"),
        ("SliceThickness", "1.50"),
        ("EventTimeOffset", "0.25"),
        ("RedPaletteColorLookupTableData", "0aff"),
        ("FrameIncrementPointer", "(0018,1063)"),
        (f"{SPS}[0].Modality", "CT"),
        (f"{SPS}[1].Modality", "MR"),
        (f"{SPS}[1].ScheduledStationAETitle", ""),
        (f"{SPS}[5].Modality", ""),
        (SPS, "<2 items>"),
        (OPIDS, "<1 item>"),
        ("ReferencedStudySequence", "<0 items>"),
        (f"{OPIDS}[0]", "PatientID=X"),
        (f"{SPS}[0]", "Modality=CT, ScheduledStationAETitle=AE1"),
        ("(0009,1001)", "secret"),
        ("(0009,0010)", "ACME"),
        ("PatientID", ""),
        ("ReferencedSeriesSequence[0].SeriesInstanceUID", ""),
        ("PatientName[0]", ""),
    ],
)
def test_value_at(path, expected):
    assert value_at(_response(), path) == expected


def test_value_at_on_a_decoded_network_style_dataset():
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset
    from pydicom.filewriter import write_dataset

    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, _response())
    raw = read_dataset(DicomBytesIO(fp.getvalue()), True, True)
    assert value_at(raw, "PatientName") == "DOE^JOHN"
    assert value_at(raw, f"{SPS}[1].Modality") == "MR"
    assert value_at(raw, "ModalitiesInStudy") == "CT\\MR"


def test_value_at_caches_parsed_paths():
    keys.column_steps.cache_clear()
    ds = _response()
    for _ in range(50):
        value_at(ds, f"{SPS}[0].Modality")
    info = keys.column_steps.cache_info()
    assert info.misses == 1 and info.hits == 49


def test_value_at_bad_path():
    with pytest.raises(KeyPathError):
        value_at(Dataset(), "Nonsense=")
    with pytest.raises(KeyPathError):
        value_at(Dataset(), f"{SPS}.Modality")


def test_module_is_headless():
    code = "import sys, findtui.engine.keys; sys.exit(any(m in sys.modules for m in ('textual', 'rich')))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ---------------------------------------------------------------------------
# hypothesis: round trip and fuzz

_ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="\\")
_TEXT = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\\\x7f")


def _text(n: int, alphabet=_TEXT):
    return st.text(alphabet, max_size=n)


def _multi(strategy, size: int = 3):
    return st.lists(strategy, min_size=1, max_size=size)


_UID = st.lists(st.integers(0, 99999), min_size=2, max_size=8).map(lambda p: ".".join(map(str, p)))
_TAGS = st.sampled_from([Tag(0x00100010), Tag(0x00181063), Tag(0x00091001), Tag(0x7FE00010)])

# (tag, VR, strategy of a python value)
_ELEMENTS = [
    (0x00100010, "PN", _multi(st.text(st.sampled_from("ABCXYZ^ -'*?="), max_size=12).filter(lambda s: s.count("=") < 3))),
    (0x00100020, "LO", _text(64)),
    (0x00080050, "SH", _text(16, _ASCII)),
    (0x00080061, "CS", _multi(st.text(st.sampled_from("ABCZ019 _*?"), max_size=16))),
    (0x00080052, "CS", st.sampled_from(["PATIENT", "STUDY", "SERIES", "IMAGE"])),
    (0x00080020, "DA", st.dates().map(lambda d: f"{d.year:04d}{d.month:02d}{d.day:02d}")),
    (0x00080030, "TM", st.times().map(lambda t: t.strftime("%H%M%S"))),
    (0x0020000D, "UI", _multi(_UID)),
    (0x00101010, "AS", st.from_regex(r"\A[0-9]{3}[DWMY]\Z")),
    (0x00280010, "US", st.integers(0, 0xFFFF)),
    (0x00189219, "SS", st.integers(-0x8000, 0x7FFF)),
    (0x00289153, "UL", _multi(st.integers(0, 0xFFFFFFFF))),
    (0x00186020, "SL", st.integers(-(2**31), 2**31 - 1)),
    (0x00220212, "UV", st.integers(0, 2**64 - 1)),
    (0x00720082, "SV", _multi(st.integers(-(2**63), 2**63 - 1))),
    (0x00200011, "IS", st.integers(-(2**31), 2**31 - 1).map(str)),
    (0x00280030, "DS", _multi(st.floats(-1e6, 1e6).map(lambda f: f"{f:.6g}"), 2)),
    (0x00089459, "FL", _multi(st.floats(width=32, allow_nan=False, allow_infinity=False))),
    (0x00189517, "FD", st.floats(allow_nan=False, allow_infinity=False)),
    (0x00280009, "AT", _multi(_TAGS)),
    (0x00281201, "OW", st.binary(min_size=2, max_size=16).filter(lambda b: len(b) % 2 == 0)),
    (0x001021B0, "LT", _text(40) | st.text(st.sampled_from("a\\b \n"), max_size=10)),
    (0x00081190, "UR", st.sampled_from(["http://x/y?a=b", "urn:oid:1.2.3"])),
    (0x00090010, "LO", st.sampled_from(["ACME", "ACME 1.0"])),
    (0x00091001, "LO", _text(20)),
    (0x00091002, "UN", st.binary(min_size=1, max_size=8)),
    (0x00091003, "UT", _text(20) | st.just("a\\b")),
    (0x00280106, "SS", st.integers(-0x8000, 0x7FFF)),  # dictionary says "US or SS"
    (0x00280107, "US", st.integers(0, 0xFFFF)),
]
_SEQUENCES = [0x00101002, 0x00400100, 0x00081110, 0x00091010]


def _element(tag: int, vr: str, value) -> DataElement:
    if value in ("", b"") or value == [""]:
        value = empty_value_for_VR(vr)
    return DataElement(tag, vr, value, validation_mode=config.IGNORE)


@st.composite
def identifiers(draw, depth: int = 0) -> Dataset:
    ds = Dataset()
    for _ in range(draw(st.integers(0, 5 if depth == 0 else 3))):
        if depth < 3 and draw(st.integers(0, 3)) == 0:
            tag = draw(st.sampled_from(_SEQUENCES))
            items = draw(st.lists(identifiers(depth + 1), max_size=3))
            ds[tag] = DataElement(tag, "SQ", items)
        else:
            tag, vr, values = draw(st.sampled_from(_ELEMENTS))
            value = draw(values | st.just(""))
            ds[tag] = _element(tag, vr, value)
    return ds


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(identifiers())
def test_round_trip_dataset_to_keys(ds):
    key_list = dataset_to_keys(ds)
    rebuilt = build_identifier(key_list)
    assert rebuilt == ds, (key_list, str(rebuilt), str(ds))
    assert len(column_paths(rebuilt)) == len(key_list)
    for path in column_paths(rebuilt):
        assert isinstance(value_at(rebuilt, path), str)


_FRAGMENTS = [
    "PatientName", OPIDS, SPS, "Modality", "Rows", "PatientAge", "StudyDate", "OverlayRows",
    "FrameIncrementPointer", "RedPaletteColorLookupTableData", "AdditionalPatientHistory", "PatinetName",
    "(0009,1001)", "(0009,0010)", "0010,0010", "(0010,00ZZ)", "(10,10)", "(6000,0010)", "(FFFE,E000)",
    "LO", "SQ", "US", "XX", "un", "[", "]", "[0]", "[2]", "[-1]", "[x]", f"[{MAX_ITEM_INDEX}]", "[1000]",
    "[99999999999999999999]", ".", "..", "=", "=", "\\", "(", ")", ",", "abc", "1", "-5", "1.5e3", "0aff",
    "*", "?", " ", "\n", "\x00", "\u00e9", "9" * 30, "FrameTime", "STUDY",
]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | st.lists(st.sampled_from(_FRAGMENTS), max_size=10).map("".join))
def test_fuzz_parse_key_only_raises_key_path_error(text):
    try:
        parsed = parse_key(text)
    except KeyPathError as exc:
        assert exc.key == text
        assert "\n" not in str(exc)
        return
    assert parsed.text == text and parsed.path


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_FRAGMENTS), max_size=8).map("".join), max_size=5))
def test_fuzz_build_identifier_only_raises_key_path_error_and_round_trips(key_list):
    try:
        ds = build_identifier(key_list)
    except KeyPathError as exc:
        assert exc.key in key_list
        assert "\n" not in str(exc)
        return
    # whatever was built can be written back as keys and rebuilt
    assert build_identifier(dataset_to_keys(ds)) == ds
    for path in column_paths(ds):
        value_at(ds, path)
