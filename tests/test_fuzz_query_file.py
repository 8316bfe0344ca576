"""Hypothesis over the -f query file loader: any bytes give a Dataset or a
QueryFileError (one line naming the file), never another exception.

(The keyword-path parser is fuzzed in test_keys.py.)
"""

from __future__ import annotations

import os
import tempfile
from io import BytesIO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from findtui.engine.keys import QueryFileError, load_query_file

FUZZ = settings(max_examples=1000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def _valid(with_meta: bool, implicit: bool) -> bytes:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = "MÜLLER^*"
    ds.StudyDate = "20200101-20201231"
    ds.ModalitiesInStudy = ["CT", "MR"]
    item = Dataset()
    item.PatientID = "X1"
    item.IssuerOfPatientID = ""
    ds.OtherPatientIDsSequence = [item, Dataset()]
    buf = BytesIO()
    if with_meta:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.1"
        ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
        dcmwrite(buf, ds, enforce_file_format=True)
    else:
        dcmwrite(buf, ds, implicit_vr=implicit, little_endian=True)
    return buf.getvalue()


VALID = [_valid(m, i) for m in (True, False) for i in (True, False)]


def _mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for kind, pos, blob in ops:
        pos %= len(buf) + 1
        if kind == "flip" and pos < len(buf):
            buf[pos] ^= blob[0] if blob else 0xFF
        elif kind == "cut":
            del buf[pos:]
        elif kind == "insert":
            buf[pos:pos] = blob
        elif kind == "delete":
            del buf[pos:pos + len(blob) + 1]
        if not buf:
            break
    return bytes(buf)


OPS = st.lists(st.tuples(st.sampled_from(["flip", "flip", "cut", "insert", "delete"]),
                         st.integers(0, 4096), st.binary(min_size=1, max_size=8)),
               min_size=1, max_size=6)

ANY_BYTES = st.one_of(
    st.binary(max_size=600),
    st.binary(max_size=400).map(lambda b: b"\0" * 128 + b"DICM" + b),
    st.tuples(st.sampled_from(VALID), OPS).map(lambda t: _mutate(*t)),
)


def _load(data: bytes):
    fd, path = tempfile.mkstemp(suffix=".dcm")
    try:
        os.write(fd, data)
        os.close(fd)
        return path, load_query_file(path)
    finally:
        os.unlink(path)


@pytest.mark.parametrize("data", VALID)
def test_the_seeds_load(data):
    _, ds = _load(data)
    assert ds.QueryRetrieveLevel == "STUDY" and len(ds.OtherPatientIDsSequence) == 2


@FUZZ
@given(ANY_BYTES)
def test_any_bytes_give_a_dataset_or_a_query_file_error(data):
    path = None
    try:
        path, ds = _load(data)
    except QueryFileError as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message
        return
    assert isinstance(ds, Dataset) and len(ds) > 0
    assert all(elem.tag.group != 0x0002 for elem in ds)  # no file meta in the query
