"""The embedded demo SCP: a pynetdicom C-FIND SCP over deterministic synthetic data.

A new user (and the test-suite and benchmarks) can query it with no PACS::

    with DemoSCP(patients=50) as demo:      # picks a free port on 127.0.0.1
        ...query demo.address:demo.port, called AE demo.ae_title...

or from a shell: ``findtui demo-scp [--port N] [--patients N] [--studies N] [--seed N]
[--cap N --cap-style cancel|failure|success]``.

``cap=N`` plays a PACS that caps its answers, the three ways real ones do, for a query
matching more than N: ``cancel`` N pendings then Cancel 0xFE00 nobody asked for (Orthanc's
LimitFindResults), ``failure`` no pendings and 0xA700 "Too many matches, refine your query"
(dcm4chee refuses), ``success`` N pendings then Success. ``associations`` counts the
connections it accepted.

What it serves
--------------
C-FIND for Patient Root, Study Root, Patient/Study Only and Modality Worklist,
plus Verification (C-ECHO), in Implicit LE, Explicit LE, Deflated Explicit LE and
Explicit BE, on 127.0.0.1 only.

The data (all of it a pure function of ``seed``, ``patients`` and ``studies``):

* ``patients`` patients (default 50).  Every eighth one, starting with the third
  (indices 2, 10, 18, ...), has a non-ASCII name from :data:`SPECIAL_NAMES`,
  with the SpecificCharacterSet the name needs (ISO_IR 192 or ISO_IR 100);
  the others are ASCII with the default repertoire.
* studies: 1-4 per patient when ``studies`` is None, otherwise exactly
  ``studies`` spread over the patients (each gets one first, if there are
  enough).  Dates 2015-01-01..2026-06-30, times 07:00-19:59.
* series (1-8 per study, modality-dependent: PET studies carry a CT series,
  some studies an SR series) and images (1-40 per series) are derived from the
  study on demand, so a 100,000-study instance costs only its study table.
* Modality Worklist: 0-2 scheduled procedures per patient (about one per patient
  on average), each with one ScheduledProcedureStepSequence item (one in ten
  has two), scheduled 2026-03-02..2026-03-13.  Their number depends on
  ``patients`` and ``seed`` only.

Matching follows PS3.4 C.2.2.2: universal, single value, wildcard (``*``/``?``;
case-sensitive except PN, which is matched case-insensitively), range for
DA/TM/DT (``a-b``, ``-b``, ``a-``; partial values like ``2020`` cover the whole
period), list of UIDs, sequence matching on ScheduledProcedureStepSequence, and
ModalitiesInStudy (any of the study's modalities against any listed value).
Keys the SCP does not know are not used for matching and come back empty.
Combined date-time matching (StudyDate + StudyTime ranges) applies when the
client negotiated it.

Nothing here imports textual or rich, and ``DemoSCP`` changes none of
pynetdicom's global configuration: its associations have pynetdicom's standard
logging handlers unbound and their threads' records below WARNING dropped, so a
client in the same process keeps its own logging untouched.  (``main()``, which
owns its process, also turns off pynetdicom's identifier dumps.)
"""

from __future__ import annotations

import argparse
import bisect
import functools
import datetime as _dt
import hashlib
import itertools
import logging
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from pydicom import config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
)
from pynetdicom import AE, _config, evt
from pynetdicom._handlers import (
    standard_dimse_recv_handler,
    standard_dimse_sent_handler,
    standard_pdu_recv_handler,
    standard_pdu_sent_handler,
)
from pynetdicom.dsutils import encode
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification

from findtui.engine.models import TRANSFER_SYNTAX_NAMES, TRANSFER_SYNTAXES, QueryModel

__all__ = ["DemoSCP", "DemoData", "SPECIAL_NAMES", "main"]

DEFAULT_AE_TITLE = "FINDTUI-DEMO"
ISSUER_OF_PATIENT_ID = "FINDTUI"

# ---------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------

# (name, SpecificCharacterSet). Patients 2, 10, 18, ... get these in turn.
SPECIAL_NAMES: tuple[tuple[str, str], ...] = (
    ("Müller^Jürgen", "ISO_IR 192"),
    ("Søren^Åse", "ISO_IR 100"),
    ("山田^太郎", "ISO_IR 192"),
    ("Ménard^Zoé", "ISO_IR 100"),
    ("Ωμέγα^Άλφα", "ISO_IR 192"),
    ("Dvořák^Antonín", "ISO_IR 192"),
)
SPECIAL_EVERY = 8
SPECIAL_OFFSET = 2

_LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
    "Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson",
    "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson",
    "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker",
    "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
    "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell",
)
_FIRST_NAMES_M = (
    "James", "John", "Robert", "Michael", "William", "David", "Richard", "Joseph",
    "Thomas", "Charles", "Daniel", "Matthew", "Anthony", "Mark", "Paul", "Steven",
)
_FIRST_NAMES_F = (
    "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan",
    "Jessica", "Sarah", "Karen", "Lisa", "Nancy", "Betty", "Margaret", "Sandra", "Ashley",
)
_PHYSICIANS = (
    "House^Gregory", "Quinn^Michaela", "Grey^Meredith", "Carter^John", "Ross^Doug",
    "Yang^Cristina", "Shepherd^Derek", "Kildare^James", "Welby^Marcus", "Zhivago^Yuri",
    "Watson^John", "Foster^Elaine",
)

# modality: (weight, series range, images range, descriptions, body parts,
#            series descriptions, SOP Class UID, rows, columns, station AEs)
_MODALITY_INFO: dict[str, tuple] = {
    "CT": (22, (1, 4), (5, 40),
           ("CT CHEST W/O CONTRAST", "CT HEAD W/O CONTRAST", "CT ABDOMEN PELVIS W CONTRAST",
            "CT ANGIO CHEST", "CT SPINE LUMBAR"),
           ("CHEST", "HEAD", "ABDOMEN", "CHEST", "LSPINE"),
           ("Axial 5mm", "Axial 1mm", "Coronal MPR", "Sagittal MPR", "Scout"),
           "1.2.840.10008.5.1.4.1.1.2", 512, 512, ("CT01", "CT02")),
    "MR": (16, (2, 6), (5, 30),
           ("MR BRAIN W/WO CONTRAST", "MR KNEE LEFT", "MR LUMBAR SPINE", "MR SHOULDER RIGHT",
            "MR PROSTATE"),
           ("BRAIN", "KNEE", "LSPINE", "SHOULDER", "PROSTATE"),
           ("T1 SAG", "T2 AX", "FLAIR AX", "DWI", "T1 AX POST", "Localizer"),
           "1.2.840.10008.5.1.4.1.1.4", 256, 256, ("MR01", "MR02")),
    "US": (12, (1, 2), (1, 8),
           ("US ABDOMEN COMPLETE", "US THYROID", "US OB 2ND TRIMESTER", "US CAROTID DOPPLER"),
           ("ABDOMEN", "NECK", "PELVIS", "NECK"),
           ("Grayscale", "Doppler"),
           "1.2.840.10008.5.1.4.1.1.6.1", 480, 640, ("US01",)),
    "CR": (12, (1, 2), (1, 2),
           ("XR CHEST PA AND LATERAL", "XR HAND LEFT", "XR PELVIS AP", "XR KNEE RIGHT"),
           ("CHEST", "HAND", "PELVIS", "KNEE"),
           ("PA", "LAT"),
           "1.2.840.10008.5.1.4.1.1.1", 2048, 2048, ("CR01",)),
    "DX": (12, (1, 2), (1, 2),
           ("DX CHEST PORTABLE", "DX ANKLE RIGHT", "DX CERVICAL SPINE", "DX FOOT LEFT"),
           ("CHEST", "ANKLE", "CSPINE", "FOOT"),
           ("AP", "LAT", "OBL"),
           "1.2.840.10008.5.1.4.1.1.1.1", 2500, 2048, ("DX01", "DX02")),
    "MG": (8, (1, 4), (1, 1),
           ("MG SCREENING BILATERAL", "MG DIAGNOSTIC LEFT", "MG DIAGNOSTIC RIGHT"),
           ("BREAST", "BREAST", "BREAST"),
           ("R CC", "L CC", "R MLO", "L MLO"),
           "1.2.840.10008.5.1.4.1.1.1.2", 3328, 2560, ("MG01",)),
    "PT": (5, (1, 2), (5, 40),
           ("PET/CT WHOLE BODY FDG", "PET/CT SKULL TO THIGH", "PET BRAIN AMYLOID"),
           ("WHOLEBODY", "WHOLEBODY", "BRAIN"),
           ("PET AC", "PET NAC", "MIP"),
           "1.2.840.10008.5.1.4.1.1.128", 192, 192, ("PT01",)),
    "NM": (5, (1, 2), (1, 4),
           ("NM BONE SCAN WHOLE BODY", "NM THYROID SCAN", "NM MYOCARDIAL PERFUSION"),
           ("WHOLEBODY", "NECK", "HEART"),
           ("Anterior", "Posterior", "SPECT"),
           "1.2.840.10008.5.1.4.1.1.20", 128, 128, ("NM01",)),
    "XA": (8, (1, 3), (1, 10),
           ("XA CORONARY ANGIOGRAPHY", "XA CEREBRAL ANGIOGRAPHY", "XA PERIPHERAL ANGIO"),
           ("HEART", "HEAD", "LEG"),
           ("LAO 30", "RAO 30", "AP"),
           "1.2.840.10008.5.1.4.1.1.12.1", 1024, 1024, ("XA01",)),
}
_SR_INFO = ("Radiology Report", "1.2.840.10008.5.1.4.1.1.88.11")
_MODALITIES = tuple(_MODALITY_INFO)
# The storage classes of the demo's images, and the retrieve models it serves.
_DEMO_STORAGE = tuple(dict.fromkeys([*(info[6] for info in _MODALITY_INFO.values()),
                                     _SR_INFO[1]]))
_STORE_CONTEXTS = [build_context(uid, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
                   for uid in _DEMO_STORAGE]  # the C-MOVE sub-association's proposal
_RETRIEVE_SOP_CLASSES = (
    "1.2.840.10008.5.1.4.1.2.1.2", "1.2.840.10008.5.1.4.1.2.1.3",  # Patient Root MOVE, GET
    "1.2.840.10008.5.1.4.1.2.2.2", "1.2.840.10008.5.1.4.1.2.2.3",  # Study Root MOVE, GET
    "1.2.840.10008.5.1.4.1.2.3.2", "1.2.840.10008.5.1.4.1.2.3.3",  # Patient/Study Only
)
_MOD_CUMULATIVE: list[float] = []
_total = sum(info[0] for info in _MODALITY_INFO.values())
_acc = 0.0
for _info in _MODALITY_INFO.values():
    _acc += _info[0] / _total
    _MOD_CUMULATIVE.append(_acc)
_MOD_CUMULATIVE[-1] = 1.0
del _total, _acc, _info

_STUDY_FIRST_DAY = _dt.date(2015, 1, 1)
_STUDY_LAST_DAY = _dt.date(2026, 6, 30)
_BIRTH_FIRST_DAY = _dt.date(1930, 1, 1)
_BIRTH_LAST_DAY = _dt.date(2014, 12, 31)
_WL_FIRST_DAY = _dt.date(2026, 3, 2)
_WL_DAYS = 12

# Deterministic UIDs: 2.25.<UUID as integer>, the UUID a version-5 (SHA-1 name
# based) UUID of "<seed>/<kind>/<indices>" in this namespace.
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:findtui:demo-scp").bytes


def _uid(name: str) -> str:
    digest = bytearray(hashlib.sha1(_UID_NAMESPACE + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return f"2.25.{int.from_bytes(digest, 'big')}"


def _days(first: _dt.date, last: _dt.date) -> list[str]:
    n = (last - first).days + 1
    return [(first + _dt.timedelta(days=d)).strftime("%Y%m%d") for d in range(n)]


def _hms(secs: int) -> str:
    secs = min(secs, 86399)
    return f"{secs // 3600:02d}{secs // 60 % 60:02d}{secs % 60:02d}"


def _secs(tm: str) -> int:
    return int(tm[0:2]) * 3600 + int(tm[2:4]) * 60 + int(tm[4:6])


# Record layouts (plain tuples: compact, and fast to index).
# Patient: index, id, name, birth date, sex, charset, first study, n studies, n series, n images
P_IDX, P_ID, P_NAME, P_BIRTH, P_SEX, P_CS, P_FIRST, P_NSTUDIES, P_NSERIES, P_NIMAGES = range(10)
# Study: index, patient index, uid, date, time, accession, study id, referring,
#        description, modalities, series spec ((modality, n images), ...), n images
(S_IDX, S_PAT, S_UID, S_DATE, S_TIME, S_ACC, S_ID, S_REF, S_DESC, S_MODS, S_SPEC,
 S_NIMAGES) = range(12)
# Series: index in study, uid, modality, number, description, date, time, body part, n images
(SE_IDX, SE_UID, SE_MOD, SE_NUM, SE_DESC, SE_DATE, SE_TIME, SE_BODY, SE_NIMAGES) = range(9)
# Image: uid, SOP class, number, content date, content time, acquisition datetime, rows, cols
I_UID, I_CLASS, I_NUM, I_DATE, I_TIME, I_DT, I_ROWS, I_COLS = range(8)
# Worklist: index, patient index, accession, requested procedure id/description,
#           study uid, referring, SPS items
(W_IDX, W_PAT, W_ACC, W_RPID, W_RPDESC, W_UID, W_REF, W_SPS) = range(8)
# SPS item: modality, station AE, date, time, performing physician, description, id, status
(SP_MOD, SP_AET, SP_DATE, SP_TIME, SP_PHYS, SP_DESC, SP_ID, SP_STATUS) = range(8)


class DemoData:
    """The synthetic patients, studies and worklist; series and images on demand."""

    def __init__(self, *, patients: int = 50, studies: int | None = None, seed: int = 1):
        if patients < 1:
            raise ValueError("patients must be at least 1")
        if studies is not None and studies < 0:
            raise ValueError("studies must not be negative")
        self.seed = seed
        self.patients: list[tuple] = []
        self.studies: list[tuple] = []
        self.worklist: list[tuple] = []
        self._build(patients, studies)
        self.study_by_uid = {st[S_UID]: st for st in self.studies}
        self.patient_by_id = {p[P_ID]: p for p in self.patients}

    # -- building ---------------------------------------------------------

    def _build(self, n_patients: int, n_studies: int | None) -> None:
        seed = self.seed
        prng = random.Random(f"findtui-demo/{seed}/patients")
        srng = random.Random(f"findtui-demo/{seed}/studies")
        pr = prng.random
        births = _days(_BIRTH_FIRST_DAY, _BIRTH_LAST_DAY)

        pats = []
        for i in range(n_patients):
            sex = "F" if pr() < 0.5 else "M"
            if pr() < 0.02:
                sex = "O"
            first_pool = _FIRST_NAMES_F if sex == "F" else _FIRST_NAMES_M
            name = f"{_LAST_NAMES[int(pr() * len(_LAST_NAMES))]}^{first_pool[int(pr() * len(first_pool))]}"
            charset = ""
            if i % SPECIAL_EVERY == SPECIAL_OFFSET:
                name, charset = SPECIAL_NAMES[(i // SPECIAL_EVERY) % len(SPECIAL_NAMES)]
            birth = births[int(pr() * len(births))]
            pats.append([i, f"PAT{i + 1:05d}", name, birth, sex, charset])

        # studies per patient
        if n_studies is None:
            counts = [1 + int(pr() * 4) for _ in range(n_patients)]
        elif n_studies >= n_patients:
            counts = [1] * n_patients
            for _ in range(n_studies - n_patients):
                counts[int(pr() * n_patients)] += 1
        else:
            counts = [0] * n_patients
            for i in prng.sample(range(n_patients), n_studies):
                counts[i] = 1

        days = _days(_STUDY_FIRST_DAY, _STUDY_LAST_DAY)
        nd = len(days)
        r = srng.random
        cum = _MOD_CUMULATIVE
        mods = _MODALITIES
        info = _MODALITY_INFO
        phys = _PHYSICIANS
        nphys = len(phys)
        studies = self.studies
        idx = 0
        for p, k in zip(pats, counts):
            first = idx
            nseries = nimages = 0
            dates = sorted(int(r() * nd) for _ in range(k))
            for d in dates:
                m = mods[bisect.bisect_left(cum, r())]
                (_w, (smin, smax), (imin, imax), descs, _bp, _sd, _cls, _r, _c, _ae) = info[m]
                ns = smin + int(r() * (smax - smin + 1))
                spec = [(m, imin + int(r() * (imax - imin + 1))) for _ in range(ns)]
                if m == "PT":
                    ct = info["CT"][2]
                    spec.insert(1, ("CT", ct[0] + int(r() * (ct[1] - ct[0] + 1))))
                if r() < 0.12:
                    spec.append(("SR", 1))
                spec = tuple(spec)
                smods = tuple(sorted({s[0] for s in spec}))
                ni = sum(s[1] for s in spec)
                secs = 25200 + int(r() * 46800)
                studies.append((
                    idx, p[0], _uid(f"{seed}/study/{idx}"), days[d], _hms(secs),
                    f"ACC{idx + 1:07d}", str(idx + 1), phys[int(r() * nphys)],
                    descs[int(r() * len(descs))], smods, spec, ni,
                ))
                nseries += len(spec)
                nimages += ni
                idx += 1
            p.extend((first, k, nseries, nimages))
        self.patients = [tuple(p) for p in pats]

        # worklist: 0-2 scheduled procedures per patient
        wrng = random.Random(f"findtui-demo/{seed}/worklist")
        w = wrng.random
        wdays = [(_WL_FIRST_DAY + _dt.timedelta(days=d)).strftime("%Y%m%d") for d in range(_WL_DAYS)]
        j = 0
        for p in self.patients:
            for _ in range(int(w() * 3)):
                m = mods[bisect.bisect_left(cum, w())]
                m_info = info[m]
                descs, aets = m_info[3], m_info[9]
                desc = descs[int(w() * len(descs))]
                items = []
                for s in range(2 if w() < 0.1 else 1):
                    slot = 28 + int(w() * 44)  # 07:00 .. 17:45 in quarter hours
                    items.append((
                        m, aets[int(w() * len(aets))], wdays[int(w() * _WL_DAYS)],
                        f"{slot // 4:02d}{slot % 4 * 15:02d}00", phys[int(w() * nphys)],
                        desc if s == 0 else f"{desc} (FOLLOW-UP)",
                        f"SPS{j + 1:05d}" + ("" if s == 0 else f"-{s + 1}"), "SCHEDULED",
                    ))
                self.worklist.append((
                    j, p[P_IDX], f"WL{j + 1:07d}", f"RP{j + 1:05d}", desc,
                    _uid(f"{seed}/worklist/{j}"), phys[int(w() * nphys)], tuple(items),
                ))
                j += 1

    # -- derived records --------------------------------------------------

    def series_of(self, st: tuple) -> list[tuple]:
        out = []
        base = _secs(st[S_TIME])
        sidx = st[S_IDX]
        for k, (m, n) in enumerate(st[S_SPEC]):
            if m == "SR":
                desc, body = _SR_INFO[0], ""
            else:
                m_info = _MODALITY_INFO[m]
                sdescs, bodies = m_info[5], m_info[4]
                desc = sdescs[(sidx + k) % len(sdescs)]
                body = bodies[(sidx + k) % len(bodies)]
            out.append((k, _uid(f"{self.seed}/series/{sidx}/{k}"), m, k + 1, desc,
                        st[S_DATE], _hms(base + 300 * k), body, n))
        return out

    def images_of(self, st: tuple, se: tuple) -> list[tuple]:
        m = se[SE_MOD]
        if m == "SR":
            cls, rows, cols = _SR_INFO[1], None, None
        else:
            m_info = _MODALITY_INFO[m]
            cls, rows, cols = m_info[6], m_info[7], m_info[8]
        base = _secs(se[SE_TIME])
        date = se[SE_DATE]
        prefix = f"{self.seed}/image/{st[S_IDX]}/{se[SE_IDX]}/"
        out = []
        for n in range(se[SE_NIMAGES]):
            tm = _hms(base + n)
            out.append((_uid(prefix + str(n)), cls, n + 1, date, tm, date + tm, rows, cols))
        return out

    # -- counts -----------------------------------------------------------

    @property
    def n_series(self) -> int:
        return sum(p[P_NSERIES] for p in self.patients)

    @property
    def n_images(self) -> int:
        return sum(p[P_NIMAGES] for p in self.patients)

    def counts(self) -> dict[str, int]:
        return {
            "patients": len(self.patients),
            "studies": len(self.studies),
            "series": self.n_series,
            "images": self.n_images,
            "worklist": len(self.worklist),
        }


def _age(birth: str, when: str) -> str:
    years = int(when[:4]) - int(birth[:4]) - (when[4:8] < birth[4:8])
    return f"{max(years, 0):03d}Y"


# ---------------------------------------------------------------------------
# Attributes: keyword -> (level rank, getter, matchable)
# ---------------------------------------------------------------------------
# A Q/R getter takes ctx = (patient, study, series, image).

PATIENT, STUDY, SERIES, IMAGE = range(4)
_LEVEL_RANK = {"PATIENT": PATIENT, "STUDY": STUDY, "SERIES": SERIES, "IMAGE": IMAGE}
_UNIQUE_KEY = {PATIENT: "PatientID", STUDY: "StudyInstanceUID", SERIES: "SeriesInstanceUID",
               IMAGE: "SOPInstanceUID"}

_QR_ATTRS: dict[str, tuple[int, Callable[[tuple], object], bool]] = {
    "PatientName": (PATIENT, lambda c: c[0][P_NAME], True),
    "PatientID": (PATIENT, lambda c: c[0][P_ID], True),
    "IssuerOfPatientID": (PATIENT, lambda c: ISSUER_OF_PATIENT_ID, True),
    "PatientBirthDate": (PATIENT, lambda c: c[0][P_BIRTH], True),
    "PatientSex": (PATIENT, lambda c: c[0][P_SEX], True),
    "NumberOfPatientRelatedStudies": (PATIENT, lambda c: c[0][P_NSTUDIES], False),
    "NumberOfPatientRelatedSeries": (PATIENT, lambda c: c[0][P_NSERIES], False),
    "NumberOfPatientRelatedInstances": (PATIENT, lambda c: c[0][P_NIMAGES], False),
    "StudyInstanceUID": (STUDY, lambda c: c[1][S_UID], True),
    "StudyDate": (STUDY, lambda c: c[1][S_DATE], True),
    "StudyTime": (STUDY, lambda c: c[1][S_TIME], True),
    "AccessionNumber": (STUDY, lambda c: c[1][S_ACC], True),
    "StudyID": (STUDY, lambda c: c[1][S_ID], True),
    "ReferringPhysicianName": (STUDY, lambda c: c[1][S_REF], True),
    "StudyDescription": (STUDY, lambda c: c[1][S_DESC], True),
    "ModalitiesInStudy": (STUDY, lambda c: c[1][S_MODS], True),
    "PatientAge": (STUDY, lambda c: _age(c[0][P_BIRTH], c[1][S_DATE]), True),
    "NumberOfStudyRelatedSeries": (STUDY, lambda c: len(c[1][S_SPEC]), False),
    "NumberOfStudyRelatedInstances": (STUDY, lambda c: c[1][S_NIMAGES], False),
    "SeriesInstanceUID": (SERIES, lambda c: c[2][SE_UID], True),
    "Modality": (SERIES, lambda c: c[2][SE_MOD], True),
    "SeriesNumber": (SERIES, lambda c: c[2][SE_NUM], True),
    "SeriesDescription": (SERIES, lambda c: c[2][SE_DESC], True),
    "SeriesDate": (SERIES, lambda c: c[2][SE_DATE], True),
    "SeriesTime": (SERIES, lambda c: c[2][SE_TIME], True),
    "BodyPartExamined": (SERIES, lambda c: c[2][SE_BODY], True),
    "NumberOfSeriesRelatedInstances": (SERIES, lambda c: c[2][SE_NIMAGES], False),
    "SOPInstanceUID": (IMAGE, lambda c: c[3][I_UID], True),
    "SOPClassUID": (IMAGE, lambda c: c[3][I_CLASS], True),
    "InstanceNumber": (IMAGE, lambda c: c[3][I_NUM], True),
    "ContentDate": (IMAGE, lambda c: c[3][I_DATE], True),
    "ContentTime": (IMAGE, lambda c: c[3][I_TIME], True),
    "AcquisitionDateTime": (IMAGE, lambda c: c[3][I_DT], True),
    "Rows": (IMAGE, lambda c: c[3][I_ROWS], True),
    "Columns": (IMAGE, lambda c: c[3][I_COLS], True),
}

# Worklist getters take ctx = (patient, worklist item).
_WL_ATTRS: dict[str, Callable[[tuple], object]] = {
    "PatientName": lambda c: c[0][P_NAME],
    "PatientID": lambda c: c[0][P_ID],
    "IssuerOfPatientID": lambda c: ISSUER_OF_PATIENT_ID,
    "PatientBirthDate": lambda c: c[0][P_BIRTH],
    "PatientSex": lambda c: c[0][P_SEX],
    "AccessionNumber": lambda c: c[1][W_ACC],
    "RequestedProcedureID": lambda c: c[1][W_RPID],
    "RequestedProcedureDescription": lambda c: c[1][W_RPDESC],
    "StudyInstanceUID": lambda c: c[1][W_UID],
    "ReferringPhysicianName": lambda c: c[1][W_REF],
}
# SPS item getters take the item tuple.
_SPS_ATTRS: dict[str, Callable[[tuple], object]] = {
    "Modality": lambda s: s[SP_MOD],
    "ScheduledStationAETitle": lambda s: s[SP_AET],
    "ScheduledProcedureStepStartDate": lambda s: s[SP_DATE],
    "ScheduledProcedureStepStartTime": lambda s: s[SP_TIME],
    "ScheduledPerformingPhysicianName": lambda s: s[SP_PHYS],
    "ScheduledProcedureStepDescription": lambda s: s[SP_DESC],
    "ScheduledProcedureStepID": lambda s: s[SP_ID],
    "ScheduledProcedureStepStatus": lambda s: s[SP_STATUS],
}
_SPS_TAG = BaseTag(0x00400100)
_SPS_KEYWORDS = tuple(_SPS_ATTRS)

_TAG_SCS = BaseTag(0x00080005)
_TAG_QRLEVEL = BaseTag(0x00080052)
_TAG_RETRIEVE_AET = BaseTag(0x00080054)
_NO_VALIDATION = config.IGNORE
_MULTI_VALUED = {"ModalitiesInStudy"}

# ---------------------------------------------------------------------------
# Matching (PS3.4 C.2.2.2)
# ---------------------------------------------------------------------------

Matcher = Callable[[object], bool]


class QueryError(Exception):
    """A request the SCP refuses: carries the failure status and comment."""

    def __init__(self, status: int, comment: str, offending: Iterable[int] = ()):
        super().__init__(comment)
        self.status = status
        self.comment = comment[:64]
        self.offending = list(offending)

    def status_dataset(self) -> Dataset:
        ds = Dataset()
        ds.Status = self.status
        ds.ErrorComment = self.comment
        if self.offending:
            ds.OffendingElement = self.offending
        return ds


def _is_universal(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, (list, tuple, MultiValue)):
        return all(_is_universal(v) for v in value)
    s = str(value).strip()
    return s == "" or s == "*"


def _wildcard(pattern: str, icase: bool) -> Callable[[str], bool]:
    parts = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts), re.S | (re.I if icase else 0)).fullmatch


def _canon_da(v: str, pad: str) -> str:
    return v.replace(".", "").strip().ljust(8, pad)


def _canon_tm(v: str, pad: str) -> str:
    v = v.replace(":", "").strip()
    main, _, frac = v.partition(".")
    return main.ljust(6, pad) + frac.ljust(6, pad)


_DT_RE = re.compile(r"(\d{1,14})(?:\.(\d{0,6}))?(?:[+-]\d{4})?")


def _canon_dt(v: str, pad: str) -> str:
    m = _DT_RE.fullmatch(v.strip())
    if not m:
        return v.strip().ljust(20, pad)
    return m.group(1).ljust(14, pad) + (m.group(2) or "").ljust(6, pad)


_CANON = {"DA": _canon_da, "TM": _canon_tm, "DT": _canon_dt}
_DT_RANGE_RE = re.compile(
    r"(\d{1,14}(?:\.\d{0,6})?(?:[+-]\d{4})?)?-(\d{1,14}(?:\.\d{0,6})?(?:[+-]\d{4})?)?"
)


def _split_range(q: str, vr: str) -> tuple[str, str]:
    """(lower, upper) of a DA/TM/DT value; a single value is both bounds."""
    q = q.strip()
    if vr == "DT":
        m = _DT_RANGE_RE.fullmatch(q)
        if m:
            return m.group(1) or "", m.group(2) or ""
        return q, q
    if "-" in q:
        lo, _, hi = q.partition("-")
        return lo.strip(), hi.strip()
    return q, q


def _range_matcher(q: str, vr: str) -> Matcher:
    canon = _CANON[vr]
    lo, hi = _split_range(q, vr)
    lo_c = canon(lo, "0") if lo else None
    hi_c = canon(hi, "9") if hi else None

    def match(v: object) -> bool:
        if not v:
            return False
        c = canon(str(v), "0")
        return (lo_c is None or c >= lo_c) and (hi_c is None or c <= hi_c)

    return match


def _pn_norm(s: str) -> str:
    return s.strip().rstrip("^").casefold()


def _single_matcher(q: object, vr: str) -> Matcher:
    """A matcher for one (non-universal) query value against one record value."""
    if vr in _CANON:
        return _range_matcher(str(q), vr)
    if vr == "UI":
        uid = str(q).strip()
        return lambda v: v == uid
    if vr in ("US", "UL", "SS", "SL", "IS", "DS", "FL", "FD"):
        qs = str(q).strip()
        return lambda v: v is not None and str(v) == qs
    if vr == "PN":
        s = str(q).strip().rstrip("^")
        if "*" in s or "?" in s:
            wild = _wildcard(s, icase=True)
            return lambda v: v is not None and wild(str(v)) is not None
        norm = s.casefold()
        return lambda v: v is not None and _pn_norm(str(v)) == norm
    s = str(q) if vr in ("LT", "ST", "UT") else str(q).strip()
    if "*" in s or "?" in s:
        wild = _wildcard(s, icase=False)
        return lambda v: v is not None and wild(str(v)) is not None
    return lambda v: v is not None and str(v).strip() == s


def build_matcher(value: object, vr: str, multi_record: bool = False) -> Matcher | None:
    """Compile a query value; None for universal matching.

    A multi-valued query (list of UIDs, ``CT\\MR``) matches when any value does;
    a multi-valued record attribute (ModalitiesInStudy) when any of its values does.
    """
    if _is_universal(value):
        return None
    if vr == "UI" and isinstance(value, (list, tuple, MultiValue)):
        uids = frozenset(str(v).strip() for v in value if str(v).strip())
        one: Matcher = uids.__contains__
    elif isinstance(value, (list, tuple, MultiValue)):
        subs = [_single_matcher(v, vr) for v in value if not _is_universal(v)]
        if len(subs) != len(value):  # one of the values is universal
            return None
        one = subs[0] if len(subs) == 1 else (lambda v: any(m(v) for m in subs))
    else:
        one = _single_matcher(value, vr)
    if multi_record:
        return lambda vals: any(one(v) for v in vals)
    return one


def _combined_dt_matcher(date_q: str, time_q: str) -> Matcher:
    """Combined date-time range over (StudyDate, StudyTime) (PS3.4 C.2.2.2.5.1)."""
    dlo, dhi = _split_range(date_q, "DA")
    tlo, thi = _split_range(time_q, "TM")
    lo = _canon_da(dlo, "0") + _canon_tm(tlo, "0") if dlo else None
    hi = _canon_da(dhi, "9") + _canon_tm(thi, "9") if dhi else None

    def match(v: object) -> bool:
        date, tm = v  # type: ignore[misc]
        c = _canon_da(date, "0") + _canon_tm(tm, "0")
        return (lo is None or c >= lo) and (hi is None or c <= hi)

    return match


def _elem_vr(elem: DataElement) -> str:
    vr = elem.VR
    if vr in (None, "UN") or " or " in str(vr):
        try:
            vr = dictionary_VR(elem.tag)
        except KeyError:
            return "UN"
        if " or " in vr:
            vr = vr.split(" or ")[0]
    return str(vr)


def _empty_value(vr: str) -> object:
    return [] if vr == "SQ" else None


# ---------------------------------------------------------------------------
# Query plans
# ---------------------------------------------------------------------------

@dataclass
class _Entry:
    """One response key: its tag, VR and where its value comes from."""

    tag: int
    vr: str
    getter: Callable[[tuple], object] | None  # None: return empty
    const: object = None


class _Plan:
    """A compiled C-FIND: matchers per level, and how to build each response."""

    def __init__(self, data: DemoData, model: QueryModel, ident: Dataset,
                 ext: bytes | None, ae_title: str):
        self.data = data
        self.model = model
        relational = bool(ext and len(ext) >= 1 and ext[0]) and model is not QueryModel.WORKLIST
        dt_matching = bool(ext and len(ext) >= 2 and ext[1]) and model is not QueryModel.WORKLIST
        self.entries: list[_Entry] = []
        self.sps_entry: tuple[int, list[tuple[int, str, Callable | None]], list[Matcher]] | None = None
        if model is QueryModel.WORKLIST:
            self._plan_worklist(ident)
        else:
            self._plan_qr(ident, relational, dt_matching, ae_title)

    # -- Q/R --------------------------------------------------------------

    def _plan_qr(self, ident: Dataset, relational: bool, dt_matching: bool, ae_title: str) -> None:
        level_elem = ident.get(_TAG_QRLEVEL)
        level = str(level_elem.value or "").strip().upper() if level_elem is not None else ""
        if not level:
            raise QueryError(0xA900, "QueryRetrieveLevel (0008,0052) missing", [_TAG_QRLEVEL])
        if level not in self.model.levels:
            raise QueryError(
                0xA900, f"QueryRetrieveLevel {level[:16]} invalid for {self.model.label}",
                [_TAG_QRLEVEL],
            )
        rank = _LEVEL_RANK[level]
        self.rank = rank
        # Patient Root and Patient/Study Only are hierarchical: the unique key of
        # the level above must be given, with a single value or a list of UIDs.
        # Study Root takes its upper keys as optional (relational), as do the
        # others once relational queries were negotiated.
        hierarchical = self.model in (QueryModel.PATIENT, QueryModel.PSONLY)
        if hierarchical and not relational and rank > PATIENT:
            keyword = _UNIQUE_KEY[rank - 1]
            tag = tag_for_keyword(keyword)
            elem = ident.get(tag)
            value = elem.value if elem is not None else None
            if _is_universal(value) or any(ch in str(value) for ch in "*?"):
                raise QueryError(0xA900, f"{keyword} needed for a {level} query", [tag])

        self.matchers: list[list[tuple[Callable, Matcher]]] = [[], [], [], []]
        self.uids: frozenset[str] | None = None  # StudyInstanceUID list, for lookup
        values: dict[str, tuple[object, str]] = {}
        for elem in ident:
            tag = elem.tag
            if tag == _TAG_SCS or tag.element == 0:
                continue
            vr = _elem_vr(elem)
            if tag == _TAG_QRLEVEL:
                self.entries.append(_Entry(tag, "CS", None, level))
                continue
            if tag == _TAG_RETRIEVE_AET:
                self.entries.append(_Entry(tag, "AE", None, ae_title))
                continue
            keyword = elem.keyword
            attr = _QR_ATTRS.get(keyword)
            if attr is None or attr[0] > rank:
                self.entries.append(_Entry(tag, vr, None, _empty_value(vr)))
                continue
            attr_rank, getter, matchable = attr
            self.entries.append(_Entry(tag, vr, getter))
            if matchable and vr != "SQ":
                values[keyword] = (elem.value, vr)

        if dt_matching and "StudyDate" in values and "StudyTime" in values:
            dq, tq = values["StudyDate"][0], values["StudyTime"][0]
            if (not _is_universal(dq) and not _is_universal(tq)
                    and "-" in str(dq) and "-" in str(tq)):
                del values["StudyDate"], values["StudyTime"]
                self.matchers[STUDY].append(
                    (lambda c: (c[1][S_DATE], c[1][S_TIME]), _combined_dt_matcher(str(dq), str(tq)))
                )
        for keyword, (value, vr) in values.items():
            attr_rank, getter, _ = _QR_ATTRS[keyword]
            m = build_matcher(value, vr, keyword in _MULTI_VALUED)
            if m is None:
                continue
            if keyword == "StudyInstanceUID":
                self.uids = frozenset(
                    str(v).strip() for v in (value if isinstance(value, (list, MultiValue)) else [value])
                )
            self.matchers[attr_rank].append((getter, m))

    def _qr_results(self) -> Iterator[tuple]:
        data = self.data
        pm, stm, sem, im = self.matchers
        rank = self.rank
        pats = [p for p in data.patients if all(m(g((p,))) for g, m in pm)]
        if rank == PATIENT:
            for p in pats:
                yield (p, None, None, None)
            return
        if self.uids is not None:
            ok = {p[P_IDX] for p in pats}
            studies = sorted(
                (st for uid in self.uids if (st := data.study_by_uid.get(uid)) is not None
                 and st[S_PAT] in ok),
                key=lambda st: st[S_IDX],
            )
            pairs: Iterable[tuple[tuple, tuple]] = ((data.patients[st[S_PAT]], st) for st in studies)
        else:
            all_studies = data.studies
            pairs = ((p, st) for p in pats
                     for st in all_studies[p[P_FIRST]:p[P_FIRST] + p[P_NSTUDIES]])
        for p, st in pairs:
            c = (p, st, None, None)
            if stm and not all(m(g(c)) for g, m in stm):
                continue
            if rank == STUDY:
                yield c
                continue
            for se in data.series_of(st):
                c = (p, st, se, None)
                if sem and not all(m(g(c)) for g, m in sem):
                    continue
                if rank == SERIES:
                    yield c
                    continue
                for img in data.images_of(st, se):
                    c = (p, st, se, img)
                    if im and not all(m(g(c)) for g, m in im):
                        continue
                    yield c

    # -- worklist ---------------------------------------------------------

    def _plan_worklist(self, ident: Dataset) -> None:
        self.wl_matchers: list[tuple[Callable, Matcher]] = []
        for elem in ident:
            tag = elem.tag
            if tag == _TAG_SCS or tag.element == 0:
                continue
            vr = _elem_vr(elem)
            if tag == _SPS_TAG:
                self._plan_sps(elem)
                continue
            if tag == _TAG_QRLEVEL:
                self.entries.append(_Entry(tag, "CS", None, elem.value))
                continue
            getter = _WL_ATTRS.get(elem.keyword)
            if getter is None:
                self.entries.append(_Entry(tag, vr, None, _empty_value(vr)))
                continue
            self.entries.append(_Entry(tag, vr, getter))
            if vr != "SQ":
                m = build_matcher(elem.value, vr)
                if m is not None:
                    self.wl_matchers.append((getter, m))

    def _plan_sps(self, elem: DataElement) -> None:
        keys: list[tuple[int, str, Callable | None]] = []
        matchers: list[tuple[Callable, Matcher]] = []
        items = list(elem.value or [])
        if not items:
            # Zero items: universal; return the items whole.
            for keyword in _SPS_KEYWORDS:
                tag = BaseTag(tag_for_keyword(keyword))
                keys.append((tag, dictionary_VR(tag), _SPS_ATTRS[keyword]))
        else:
            for sub in items[0]:
                tag = sub.tag
                if tag.element == 0 or tag == _TAG_SCS:
                    continue
                vr = _elem_vr(sub)
                getter = _SPS_ATTRS.get(sub.keyword)
                keys.append((tag, vr, getter))
                if getter is not None and vr != "SQ":
                    m = build_matcher(sub.value, vr)
                    if m is not None:
                        matchers.append((getter, m))
        self.sps_entry = (_SPS_TAG, keys, matchers)  # type: ignore[assignment]

    def _wl_results(self) -> Iterator[tuple]:
        data = self.data
        wm = self.wl_matchers
        sps = self.sps_entry
        sps_m = sps[2] if sps else []
        for item in data.worklist:
            c = (data.patients[item[W_PAT]], item)
            if wm and not all(m(g(c)) for g, m in wm):
                continue
            steps = item[W_SPS]
            if sps_m:
                steps = tuple(s for s in steps if all(m(g(s)) for g, m in sps_m))
                if not steps:
                    continue
            yield (c[0], item, steps)

    # -- responses --------------------------------------------------------

    @property
    def cacheable(self) -> bool:
        """Rows that live as long as the data (patients, studies) can key a cache."""
        return self.model is not QueryModel.WORKLIST and self.rank <= STUDY

    def signature(self) -> tuple:
        """What makes two queries' responses for a row the same bytes."""
        return (self.model, self.rank, tuple((e.tag, e.vr, e.getter is None and repr(e.const))
                                             for e in self.entries))

    def encodable_results(self) -> Iterator[tuple[tuple, Callable[[], Dataset]]]:
        """(a key of the row, how to build its response) for each match."""
        if self.model is QueryModel.WORKLIST:
            for c in self._wl_results():
                yield (id(c[1]),), functools.partial(self._response, c[0][P_CS], c, c[2])
        else:
            for c in self._qr_results():
                yield ((id(c[0]), id(c[1])),
                       functools.partial(self._response, c[0][P_CS], c, None))

    def results(self) -> Iterator[Dataset]:
        if self.model is QueryModel.WORKLIST:
            for c in self._wl_results():
                yield self._response(c[0][P_CS], c, c[2])
        else:
            for c in self._qr_results():
                yield self._response(c[0][P_CS], c, None)

    def _response(self, charset: str, c: tuple, steps: tuple | None) -> Dataset:
        # Built straight into the element dict: this runs once per match, and
        # pydicom's per-assignment checks and value validation (our own data,
        # known good) would double its cost.
        elems: dict[BaseTag, DataElement] = {}
        if charset:
            elems[_TAG_SCS] = DataElement(_TAG_SCS, "CS", charset, validation_mode=_NO_VALIDATION)
        for e in self.entries:
            value = e.getter(c) if e.getter is not None else e.const
            if isinstance(value, tuple):
                value = list(value)
            elems[e.tag] = DataElement(e.tag, e.vr, value, validation_mode=_NO_VALIDATION)
        if self.sps_entry is not None and steps is not None:
            tag, keys, _ = self.sps_entry
            seq = []
            for s in steps:
                item: dict[BaseTag, DataElement] = {}
                for ktag, kvr, getter in keys:
                    value = getter(s) if getter is not None else _empty_value(kvr)
                    item[ktag] = DataElement(ktag, kvr, value, validation_mode=_NO_VALIDATION)
                seq.append(Dataset(item))
            elems[tag] = DataElement(tag, "SQ", seq)
        return Dataset(elems)


# ---------------------------------------------------------------------------
# The SCP
# ---------------------------------------------------------------------------

_STANDARD_LOG_HANDLERS = (
    (evt.EVT_DIMSE_RECV, standard_dimse_recv_handler),
    (evt.EVT_DIMSE_SENT, standard_dimse_sent_handler),
    (evt.EVT_PDU_RECV, standard_pdu_recv_handler),
    (evt.EVT_PDU_SENT, standard_pdu_sent_handler),
)
_FIND_SOP_CLASSES = frozenset(str(m.sop_class_uid) for m in QueryModel)


def _p_data(context_id: int, header: int, value: bytes) -> bytes:
    """One P-DATA-TF PDU holding one PDV (PS3.8 9.3.5); header: bit 0 command, bit 1 last."""
    return struct.pack(">BBIIBB", 0x04, 0, len(value) + 6, len(value) + 2, context_id,
                       header) + value


def _find_rsp_command(sop_class: str, message_id: int, status: int = 0xFF00) -> bytes:
    """A C-FIND-RSP command set with an identifier (implicit VR little endian, PS3.7 E)."""
    cmd = Dataset()
    cmd.AffectedSOPClassUID = sop_class
    cmd.CommandField = 0x8020
    cmd.MessageIDBeingRespondedTo = message_id
    cmd.CommandDataSetType = 0x0000
    cmd.Status = status
    body = encode(cmd, True, True)
    return struct.pack("<HHII", 0x0000, 0x0000, 4, len(body)) + body
_QUIET_ATTR = "_findtui_demo_quiet"


def _quiet_filter(record: logging.LogRecord) -> bool:
    """Drop pynetdicom's chatter (below WARNING) from the demo SCP's own threads."""
    return record.levelno >= logging.WARNING or not getattr(
        threading.current_thread(), _QUIET_ATTR, False)


def _install_quiet_filter() -> None:
    # A logger's filters see only the records logged on it, so every pynetdicom
    # module logger gets one. Records from any other thread (a client engine in
    # the same process) pass untouched.
    names = ["pynetdicom", *(n for n in list(logging.Logger.manager.loggerDict)
                             if n.startswith("pynetdicom."))]
    for name in names:
        logger = logging.getLogger(name)
        if _quiet_filter not in logger.filters:
            logger.addFilter(_quiet_filter)


def _resolve_transfer_syntaxes(values: Iterable[str] | None) -> list[UID]:
    if values is None:
        return list(TRANSFER_SYNTAXES)
    out = []
    for v in values:
        out.append(TRANSFER_SYNTAX_NAMES[v] if v in TRANSFER_SYNTAX_NAMES else UID(v))
    if not out:
        raise ValueError("transfer_syntaxes must not be empty")
    return out


# How a capped demo SCP (cap=N) answers a query matching more than N, the three ways real
# PACS do: "cancel" N pendings then Cancel 0xFE00 (Orthanc's LimitFindResults), "failure"
# no pendings and 0xA700 with CAP_FAILURE_COMMENT (dcm4chee refuses the query), "success"
# N pendings then Success.
CAP_STYLES = ("cancel", "failure", "success")
CAP_FAILURE_COMMENT = "Too many matches, refine your query"


class DemoSCP:
    """A C-FIND SCP on 127.0.0.1 over :class:`DemoData`; see the module docstring."""

    address = "127.0.0.1"

    def __init__(
        self,
        *,
        port: int = 0,
        patients: int = 50,
        studies: int | None = None,
        seed: int = 1,
        ae_title: str = DEFAULT_AE_TITLE,
        transfer_syntaxes: Sequence[str] | None = None,
        delay_per_response: float = 0.0,
        require_called_aet: bool = False,
        cap: int | None = None,
        cap_style: str = "cancel",
        move_destinations: dict[str, tuple[str, int]] | None = None,
        move_port: int | None = None,
    ):
        self.port = port
        self.ae_title = ae_title
        self.seed = seed
        self.delay_per_response = delay_per_response
        self.require_called_aet = require_called_aet
        if cap is not None and cap < 1:
            raise ValueError("cap must be at least 1")
        if cap_style not in CAP_STYLES:
            raise ValueError(f"cap_style must be one of {', '.join(CAP_STYLES)}")
        self.cap, self.cap_style = cap, cap_style
        # C-MOVE: where each destination AE listens; with move_port, any other AE title is
        # the requesting host at that port (a demo needs no registration).
        self.move_destinations = dict(move_destinations or {})
        self.move_port = move_port
        self.retrieve_requests = 0
        self.associations = 0  # connections accepted (a client reusing one association: 1)
        self.transfer_syntaxes = _resolve_transfer_syntaxes(transfer_syntaxes)
        self.data = DemoData(patients=patients, studies=studies, seed=seed)
        self.received_ext_neg: dict[str, bytes] = {}
        self.last_identifier: Dataset | None = None
        self.last_transfer_syntax: UID | None = None
        self.find_requests = 0
        self.retrieve_peer_pdus: list[int] = []  # the max PDU each retrieve's client receives
        self._ext_by_assoc: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._ae: AE | None = None
        # encoded identifiers per (query signature, transfer syntax), per row
        self._encoded: dict[tuple, dict[tuple, bytes]] = {}
        self._server = None

    # -- lifecycle --------------------------------------------------------

    def start(self) -> DemoSCP:
        if self._server is not None:
            return self
        _install_quiet_filter()
        ae = AE(ae_title=self.ae_title)
        ae.require_called_aet = self.require_called_aet
        ae.maximum_associations = 32
        for model in QueryModel:
            ae.add_supported_context(model.sop_class_uid, self.transfer_syntaxes)
        ae.add_supported_context(Verification, self.transfer_syntaxes)
        for uid in _RETRIEVE_SOP_CLASSES:
            ae.add_supported_context(uid, self.transfer_syntaxes)
        for uid in _DEMO_STORAGE:  # C-GET: we send these back as an SCU on their association
            ae.add_supported_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian],
                                     scu_role=False, scp_role=True)
        handlers = [
            (evt.EVT_CONN_OPEN, self._on_conn_open),
            (evt.EVT_SOP_EXTENDED, self._on_sop_extended),
            (evt.EVT_C_FIND, self._on_c_find),
            (evt.EVT_C_GET, self._on_c_get),
            (evt.EVT_C_MOVE, self._on_c_move),
        ]
        self._server = ae.start_server((self.address, self.port), block=False,
                                       evt_handlers=handlers)
        self.port = self._server.socket.getsockname()[1]
        self._ae = ae
        return self

    def stop(self) -> None:
        if self._ae is not None:
            self._ae.shutdown()
        self._ae = None
        self._server = None

    def __enter__(self) -> DemoSCP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    # -- event handlers ---------------------------------------------------

    def _on_conn_open(self, event: evt.Event) -> None:
        # Keep the SCP quiet without touching pynetdicom's global config (a client
        # in the same process logs as it always does): unbind the per-PDU and
        # per-DIMSE logging handlers from this association (they cost time even
        # when nothing is logged), and mark its threads for _quiet_filter. Runs
        # before the association's threads start.
        assoc = event.assoc
        self.associations += 1
        for event_type, handler in _STANDARD_LOG_HANDLERS:
            assoc.unbind(event_type, handler)
        setattr(assoc, _QUIET_ATTR, True)
        setattr(assoc.dul, _QUIET_ATTR, True)
        # pynetdicom writes each response as two small PDUs (command, then
        # identifier); with Nagle's algorithm the second waits for the peer's
        # delayed ACK, ~40 ms per exchange. Send them straight away.
        sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def _on_sop_extended(self, event: evt.Event) -> dict[str, bytes]:
        # Accept whatever was asked by echoing the same bytes back.
        reply = {}
        for uid, info in (event.app_info or {}).items():
            uid = str(uid)
            info = bytes(info or b"")
            if uid in _FIND_SOP_CLASSES:
                self.received_ext_neg[uid] = info
                reply[uid] = info
        self._ext_by_assoc[event.assoc] = dict(reply)
        return reply

    def _on_c_find(self, event: evt.Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        self.find_requests += 1
        self.last_transfer_syntax = UID(event.context.transfer_syntax)
        try:
            ident = event.identifier
        except Exception as exc:  # undecodable identifier
            yield QueryError(0xC000, f"Cannot decode identifier: {exc}"[:64]).status_dataset(), None
            return
        self.last_identifier = ident
        sop_class = str(event.context.abstract_syntax)
        model = QueryModel.from_sop_class(sop_class)
        ext = self._ext_by_assoc.get(event.assoc, {}).get(sop_class)
        try:
            plan = _Plan(self.data, model, ident, ext, self.ae_title)
        except QueryError as err:
            yield err.status_dataset(), None
            return
        except Exception as exc:
            yield QueryError(0xC000, f"Unable to process: {exc}").status_dataset(), None
            return
        limit, beyond = None, False
        if self.cap is not None:
            limit = self.cap
            beyond = sum(1 for _ in itertools.islice(plan.encodable_results(), limit + 1)) > limit
            if beyond and self.cap_style == "failure":  # dcm4chee: refuses, sends nothing
                yield QueryError(0xA700, CAP_FAILURE_COMMENT).status_dataset(), None
                return
        delay = self.delay_per_response
        ts = UID(event.context.transfer_syntax)
        if not delay and not ts.is_deflated:
            if (yield from self._send_pendings(event, plan, ts, limit)):
                return  # cancelled (0xFE00 sent) or the client went away
        else:
            for ds in itertools.islice(plan.results(), limit):
                if delay:
                    time.sleep(delay)
                if event.is_cancelled:
                    yield 0xFE00, None
                    return
                yield 0xFF00, ds
        if beyond and self.cap_style == "cancel":  # Orthanc's LimitFindResults: a Cancel
            yield 0xFE00, None

    def _retrieve_datasets(self, event: evt.Event):
        """(count, datasets) of a C-GET/C-MOVE identifier, or a QueryError."""
        self.retrieve_requests += 1
        self.retrieve_peer_pdus.append(event.assoc.requestor.maximum_length)
        try:
            ident = event.identifier
            contexts = retrieve_select(self.data, ident)
        except QueryError as err:
            return err
        except Exception as exc:  # noqa: BLE001 - an undecodable identifier
            return QueryError(0xC000, f"Cannot decode identifier: {exc}"[:64])
        return len(contexts), (retrieve_instance(c) for c in contexts)

    def _on_c_get(self, event: evt.Event) -> Iterator:
        found = self._retrieve_datasets(event)
        if isinstance(found, QueryError):
            yield found.status_dataset()
            return
        yield from _sub_operations(event, *found)

    def _on_c_move(self, event: evt.Event) -> Iterator:
        destination = (event.move_destination or b"")
        if isinstance(destination, bytes):
            destination = destination.decode("ascii", "replace")
        destination = destination.strip()
        where = self.move_destinations.get(destination)
        if where is None and self.move_port is not None:
            where = (event.assoc.requestor.address, self.move_port)
        if where is None:
            yield None, None  # pynetdicom answers 0xA801 Move Destination Unknown
            return
        found = self._retrieve_datasets(event)
        if isinstance(found, QueryError):
            yield where[0], where[1]
            yield found.status_dataset()
            return
        yield where[0], where[1], {"contexts": _STORE_CONTEXTS}
        yield from _sub_operations(event, *found)

    def _send_pendings(self, event: evt.Event, plan: _Plan, ts: UID,
                       limit: int | None = None) -> Iterator:
        """The pending responses written straight to the socket as P-DATA PDUs.

        pynetdicom's path (a DIMSE message, its state machine, two PDUs through the DUL
        thread) served ~2,000 responses/s, so the benchmarks measured the demo, not the
        client. The command set is encoded once; identifiers are encoded by pydicom and,
        at the patient and study levels, kept per row for the next query with the same
        keys. The final response goes through pynetdicom as before. Returns True when
        the query ended here (cancelled, or the client went away).
        """
        assoc = event.assoc
        sock = assoc.dul.socket.socket
        context_id = event.context.context_id
        max_pdu = assoc.requestor.maximum_length or (1 << 24)
        room = max(max_pdu - 6, 8)  # a PDV item's own header is 6 bytes
        command = _find_rsp_command(str(event.context.abstract_syntax),
                                    event.request.MessageID)
        command_pdu = _p_data(context_id, 0x03, command)
        implicit, little = ts.is_implicit_VR, ts.is_little_endian
        cache = None
        if plan.cacheable:
            key = (plan.signature(), str(ts))
            cache = self._encoded.pop(key, None) or {}
            self._encoded[key] = cache  # most recent last; a few queries' worth are kept
            while len(self._encoded) > 4:
                self._encoded.pop(next(iter(self._encoded)))
        for key, build in itertools.islice(plan.encodable_results(), limit):
            if event.is_cancelled:
                yield 0xFE00, None
                return True
            raw = cache.get(key) if cache is not None else None
            if raw is None:
                raw = encode(build(), implicit, little)
                if cache is not None:
                    cache[key] = raw
            out = [command_pdu]
            for start in range(0, len(raw), room):
                part = raw[start:start + room]
                out.append(_p_data(context_id, 0x02 if start + room >= len(raw) else 0x00, part))
            try:
                sock.sendall(b"".join(out))
            except OSError:
                return True  # the client went away; pynetdicom notices on its own
        return False


# ---------------------------------------------------------------------------
# CLI: findtui demo-scp
# ---------------------------------------------------------------------------

# ---------------------------------------------------------------------------
# C-GET / C-MOVE: the demo's images as real instances
# ---------------------------------------------------------------------------
# An identifier's unique keys (PatientID, StudyInstanceUID, SeriesInstanceUID,
# SOPInstanceUID; one value or a list) select images; each becomes a dataset with the
# attributes the C-FIND shows and a small 16-bit gradient as pixel data.

_RETRIEVE_LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")


def _wanted(ident: Dataset, keyword: str) -> set[str] | None:
    """The values a unique key asks for (None: any)."""
    value = ident.get(keyword)
    if value in (None, ""):
        return None
    values = [value] if isinstance(value, str) else list(value)
    wanted = {str(v).strip() for v in values if str(v).strip()}
    return wanted or None


def retrieve_select(data: DemoData, ident: Dataset) -> list[tuple]:
    """The (patient, study, series, image) contexts an identifier retrieves; raises
    QueryError for an identifier without its level or the level's unique key."""
    level = str(ident.get("QueryRetrieveLevel", "") or "").strip().upper()
    if level not in _RETRIEVE_LEVELS:
        raise QueryError(0xA900, "QueryRetrieveLevel missing or not one of PATIENT, STUDY, "
                                 "SERIES, IMAGE", (0x00080052,))
    unique = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    rank = _RETRIEVE_LEVELS.index(level)
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


def retrieve_instance(c: tuple) -> Dataset:
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


def retrieve_instances(data: DemoData, ident: Dataset) -> Iterator[Dataset]:
    for c in retrieve_select(data, ident):
        yield retrieve_instance(c)


def _sub_operations(event: evt.Event, count: int, datasets) -> Iterator:
    """A C-GET/C-MOVE handler's part after the destination: the count, then each
    instance, or Cancel as soon as the client asks."""
    yield count
    for ds in datasets:
        if event.is_cancelled:
            yield 0xFE00, None
            return
        yield 0xFF00, ds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="findtui demo-scp",
        description="Run the embedded demo SCP (C-FIND, C-GET, C-MOVE, C-ECHO) on 127.0.0.1 "
                    "with synthetic data.",
    )
    parser.add_argument("--port", type=int, default=11112,
                        help="TCP port (default 11112; 0 picks a free one)")
    parser.add_argument("--patients", type=int, default=50, help="number of patients (default 50)")
    parser.add_argument("--studies", type=int, default=None,
                        help="exact number of studies (default: 1-4 per patient)")
    parser.add_argument("--seed", type=int, default=1, help="data seed (default 1)")
    parser.add_argument("--aet", default=DEFAULT_AE_TITLE, help=f"AE title (default {DEFAULT_AE_TITLE})")
    parser.add_argument("--cap", type=int, metavar="N",
                        help="return at most N matches a query, as a capped PACS does "
                             "(see --cap-style)")
    parser.add_argument("--cap-style", choices=CAP_STYLES, default="cancel",
                        help="past the cap: 'cancel' sends N matches then Cancel 0xFE00 "
                             "(Orthanc), 'failure' refuses with 0xA700 'Too many matches' "
                             "(dcm4chee), 'success' stops at N with Success (default: cancel)")
    parser.add_argument("--move-port", type=int, metavar="PORT", default=11113,
                        help="C-MOVE: send to the requesting host at this port, whatever the "
                             "destination AE title (default 11113, findtui's --store-port)")
    args = parser.parse_args(argv)
    if args.patients < 1 or (args.studies is not None and args.studies < 0) or args.port < 0:
        parser.error("--patients must be >= 1, --studies and --port >= 0")
    if args.cap is not None and args.cap < 1:
        parser.error("--cap must be >= 1")

    # This process is the SCP's own, so pynetdicom's global switches are ours to
    # set: don't pretty-print every identifier into a log nobody reads.
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False

    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        try:
            demo = DemoSCP(port=args.port, patients=args.patients, studies=args.studies,
                           seed=args.seed, ae_title=args.aet, cap=args.cap,
                           cap_style=args.cap_style, move_port=args.move_port).start()
        except OSError as exc:
            print(f"findtui demo-scp: cannot listen on {DemoSCP.address}:{args.port}: {exc}",
                  file=sys.stderr)
            return 1
        try:
            counts = demo.data.counts()
            print(f"Demo SCP {demo.ae_title} listening on {demo.address}:{demo.port} "
                  f"({counts['patients']} patients, {counts['studies']} studies); Ctrl-C to stop",
                  flush=True)
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            demo.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
