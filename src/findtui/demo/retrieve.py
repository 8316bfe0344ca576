"""C-GET and C-MOVE for the demo SCP: its synthetic images as real instances.

An identifier's unique keys (PatientID, StudyInstanceUID, SeriesInstanceUID,
SOPInstanceUID; one value or a list) select images of DemoData; each becomes a
dataset with the patient, study, series and image attributes the C-FIND shows, and
a small 16-bit gradient as pixel data (Rows x Columns of the image).
"""

from __future__ import annotations

from collections.abc import Iterator

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

from findtui.demo.scp import (
    I_CLASS, I_COLS, I_DATE, I_NUM, I_ROWS, I_TIME, I_UID, P_BIRTH, P_CS, P_FIRST, P_ID,
    P_NAME, P_NSTUDIES, P_SEX, S_ACC, S_PAT, S_DATE, S_DESC, S_ID, S_REF, S_TIME, S_UID, SE_BODY,
    SE_DESC, SE_MOD, SE_NUM, SE_UID, DemoData, QueryError,
)

_LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")


def _wanted(ident: Dataset, keyword: str) -> set[str] | None:
    """The values a unique key asks for (None: any)."""
    value = ident.get(keyword)
    if value in (None, ""):
        return None
    values = [value] if isinstance(value, str) else list(value)
    wanted = {str(v).strip() for v in values if str(v).strip()}
    return wanted or None


def select(data: DemoData, ident: Dataset) -> list[tuple]:
    """The (patient, study, series, image) contexts an identifier retrieves; raises
    QueryError for an identifier without its level or the level's unique key."""
    level = str(ident.get("QueryRetrieveLevel", "") or "").strip().upper()
    if level not in _LEVELS:
        raise QueryError(0xA900, "QueryRetrieveLevel missing or not one of PATIENT, STUDY, "
                                 "SERIES, IMAGE", (0x00080052,))
    unique = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    rank = _LEVELS.index(level)
    if _wanted(ident, unique[rank]) is None:
        raise QueryError(0xA900, f"{unique[rank]} is required at the {level} level", ())
    pids, suids, seuids, iuids = (_wanted(ident, k) for k in unique)
    if suids is not None and pids is None:  # study root: straight to the studies
        studies = [data.study_by_uid[u] for u in suids if u in data.study_by_uid]
    else:
        patients = [data.patient_by_id[p] for p in (pids or ()) if p in data.patient_by_id] \
            if pids is not None else data.patients
        studies = [st for p in patients
                   for st in data.studies[p[P_FIRST]:p[P_FIRST] + p[P_NSTUDIES]]
                   if suids is None or st[S_UID] in suids]
    out = []
    for st in studies:
        patient = data.patients[st[S_PAT]]
        if pids is not None and patient[P_ID] not in pids:
            continue
        for se in data.series_of(st):
            if seuids is not None and se[SE_UID] not in seuids:
                continue
            for img in data.images_of(st, se):
                if iuids is None or img[I_UID] in iuids:
                    out.append((patient, st, se, img))
    return out


def instance(c: tuple) -> Dataset:
    """The dataset of one demo image (with file meta: the transfer syntax to send it in)."""
    p, st, se, img = c
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = img[I_CLASS]
    ds.file_meta.MediaStorageSOPInstanceUID = img[I_UID]
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    if p[P_CS]:
        ds.SpecificCharacterSet = p[P_CS]
    ds.SOPClassUID = img[I_CLASS]
    ds.SOPInstanceUID = img[I_UID]
    ds.StudyDate, ds.StudyTime = st[S_DATE], st[S_TIME]
    ds.ContentDate, ds.ContentTime = img[I_DATE], img[I_TIME]
    ds.AccessionNumber = st[S_ACC]
    ds.Modality = se[SE_MOD]
    ds.ReferringPhysicianName = st[S_REF]
    ds.StudyDescription = st[S_DESC]
    ds.SeriesDescription = se[SE_DESC]
    ds.PatientName, ds.PatientID = p[P_NAME], p[P_ID]
    ds.PatientBirthDate, ds.PatientSex = p[P_BIRTH], p[P_SEX]
    if se[SE_BODY]:
        ds.BodyPartExamined = se[SE_BODY]
    ds.StudyInstanceUID, ds.SeriesInstanceUID = st[S_UID], se[SE_UID]
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = st[S_ID], se[SE_NUM], img[I_NUM]
    rows, cols = img[I_ROWS], img[I_COLS]
    if rows and cols:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        row = bytes((x >> 1) & 0xFF if i % 2 == 0 else (x >> 9) & 0x0F
                    for x in range(cols) for i in (0, 1))
        ds.PixelData = row * rows
    return ds


def instances(data: DemoData, ident: Dataset) -> Iterator[Dataset]:
    for c in select(data, ident):
        yield instance(c)
