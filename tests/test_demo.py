"""The embedded demo SCP, queried with pynetdicom's own SCU (not our engine)."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import zlib
from collections.abc import Iterator

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, _config, evt
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation
from pynetdicom.sop_class import Verification

from findtui.demo import scp as demo_mod
from findtui.demo.scp import (
    P_CS,
    P_ID,
    P_NAME,
    P_NSTUDIES,
    S_DATE,
    S_MODS,
    S_PAT,
    S_SPEC,
    S_TIME,
    S_UID,
    SE_NIMAGES,
    SE_UID,
    SP_DATE,
    SP_ID,
    SP_MOD,
    SPECIAL_NAMES,
    W_SPS,
    DemoData,
    DemoSCP,
)
from findtui.engine.models import QueryModel

PATIENT = QueryModel.PATIENT
STUDY = QueryModel.STUDY
PSONLY = QueryModel.PSONLY
WORKLIST = QueryModel.WORKLIST
ALL_TS = (ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
          ExplicitVRBigEndian)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scp() -> Iterator[DemoSCP]:
    with DemoSCP() as demo:
        yield demo


@pytest.fixture(scope="module")
def data(scp: DemoSCP) -> DemoData:
    return scp.data


class Client:
    """A pynetdicom SCU association to a DemoSCP; closes on exit."""

    def __init__(self, demo: DemoSCP, *, ts=ALL_TS, ext_neg=None, called=None):
        self.ae = AE(ae_title="TESTSCU")
        for model in QueryModel:
            self.ae.add_requested_context(model.sop_class_uid, list(ts))
        self.ae.add_requested_context(Verification, list(ts))
        self.raw: list[bytes] = []   # each response identifier's bytes, as received
        self.assoc = self.ae.associate(
            demo.address, demo.port, ae_title=called or demo.ae_title, ext_neg=ext_neg,
            evt_handlers=[(evt.EVT_DIMSE_RECV, self._on_dimse)],
        )

    def _on_dimse(self, event) -> None:
        data = event.message.data_set
        if data is not None and data.getvalue():
            self.raw.append(data.getvalue())

    def __enter__(self) -> Client:
        assert self.assoc.is_established
        return self

    def __exit__(self, *exc) -> None:
        if self.assoc.is_established:
            self.assoc.release()
        self.ae.shutdown()

    def find(self, model: QueryModel, query: Dataset) -> tuple[list[Dataset], Dataset]:
        """(pending identifiers, final status dataset)."""
        found = []
        status = None
        for status, ident in self.assoc.send_c_find(query, model.sop_class_uid):
            if ident is not None and status.Status in (0xFF00, 0xFF01):
                found.append(ident)
        assert status is not None and "Status" in status, "no final response"
        return found, status


def q(level: str | None = None, charset: str | None = None, **keys) -> Dataset:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    if level:
        ds.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(ds, k, v)
    return ds


def find(demo: DemoSCP, model: QueryModel, query: Dataset, **kw) -> tuple[list[Dataset], int]:
    with Client(demo, **kw) as c:
        found, status = c.find(model, query)
    return found, status.Status


def find_ok(demo: DemoSCP, model: QueryModel, query: Dataset, **kw) -> list[Dataset]:
    found, status = find(demo, model, query, **kw)
    assert status == 0x0000, hex(status)
    return found


# ---------------------------------------------------------------------------
# lifecycle, negotiation
# ---------------------------------------------------------------------------

def test_start_stop_on_free_port() -> None:
    demo = DemoSCP(patients=3)
    assert demo.port == 0
    with demo:
        assert demo.address == "127.0.0.1"
        assert demo.port > 0
        assert demo.running
        with Client(demo) as c:
            assert c.assoc.send_c_echo().Status == 0x0000
        port = demo.port
    assert not demo.running
    # closed: nothing listens any more
    ae = AE()
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=demo.ae_title)
    assert not assoc.is_established
    ae.shutdown()


def test_two_instances_and_fixed_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with DemoSCP(patients=2) as a, DemoSCP(patients=3, port=free) as b:
        assert b.port == free != a.port
        assert len(find_ok(a, PATIENT, q("PATIENT", PatientID=""))) == 2
        assert len(find_ok(b, PATIENT, q("PATIENT", PatientID=""))) == 3


def test_listens_on_loopback_only(scp: DemoSCP) -> None:
    assert scp._server.socket.getsockname()[0] == "127.0.0.1"


def test_all_transfer_syntaxes_accepted_and_recorded(scp: DemoSCP) -> None:
    for ts in ALL_TS:
        with Client(scp, ts=[ts]) as c:
            cx = [cx for cx in c.assoc.accepted_contexts
                  if cx.abstract_syntax == STUDY.sop_class_uid]
            assert cx and cx[0].transfer_syntax[0] == ts
            found, status = c.find(STUDY, q("STUDY", StudyInstanceUID="", PatientName="Smith*"))
            assert status.Status == 0 and found
        assert scp.last_transfer_syntax == ts


def test_transfer_syntax_restriction() -> None:
    with DemoSCP(patients=2, transfer_syntaxes=["explicit"]) as demo:
        with Client(demo, ts=[ImplicitVRLittleEndian, ExplicitVRLittleEndian]) as c:
            accepted = {cx.abstract_syntax: cx.transfer_syntax[0] for cx in c.assoc.accepted_contexts}
            assert accepted[STUDY.sop_class_uid] == ExplicitVRLittleEndian
        ae = AE()
        ae.add_requested_context(STUDY.sop_class_uid, ImplicitVRLittleEndian)
        assoc = ae.associate(demo.address, demo.port, ae_title=demo.ae_title)
        try:
            assert not assoc.is_established or not assoc.accepted_contexts
        finally:
            if assoc.is_established:
                assoc.release()
            ae.shutdown()


def test_require_called_aet() -> None:
    with DemoSCP(patients=2, ae_title="DEMOAE", require_called_aet=True) as demo:
        ae = AE()
        ae.add_requested_context(Verification)
        bad = ae.associate(demo.address, demo.port, ae_title="WRONG")
        assert bad.is_rejected
        with Client(demo, called="DEMOAE") as c:
            assert c.assoc.send_c_echo().Status == 0
        ae.shutdown()


def test_extended_negotiation_echoed_and_recorded() -> None:
    def item(model: QueryModel, info: bytes) -> SOPClassExtendedNegotiation:
        it = SOPClassExtendedNegotiation()
        it.sop_class_uid = model.sop_class_uid
        it.service_class_application_information = info
        return it

    asked = {
        STUDY.sop_class_uid: b"\x01\x01\x00\x00\x00",
        PATIENT.sop_class_uid: b"\x01\x00\x01\x01\x00",
        WORKLIST.sop_class_uid: b"\x01\x01\x01\x00",
    }
    with DemoSCP(patients=5) as demo:
        assert demo.received_ext_neg == {}
        with Client(demo, ext_neg=[item(QueryModel.from_sop_class(k), v)
                                   for k, v in asked.items()]) as c:
            assert demo.received_ext_neg == {str(k): v for k, v in asked.items()}
            assert {str(k): v for k, v in c.assoc.acceptor.sop_class_extended.items()} == {
                str(k): v for k, v in asked.items()}
        # a later association records its own bytes, per SOP class
        with Client(demo, ext_neg=[item(STUDY, b"\x00\x01")]):
            assert demo.received_ext_neg[str(STUDY.sop_class_uid)] == b"\x00\x01"
            assert demo.received_ext_neg[str(PATIENT.sop_class_uid)] == b"\x01\x00\x01\x01\x00"


def _relational(model: QueryModel, info: bytes = b"\x01") -> list[SOPClassExtendedNegotiation]:
    it = SOPClassExtendedNegotiation()
    it.sop_class_uid = model.sop_class_uid
    it.service_class_application_information = info
    return [it]


def test_relational_query_allowed_only_when_negotiated(scp: DemoSCP, data: DemoData) -> None:
    query = q("STUDY", StudyInstanceUID="", PatientName="")
    found, status = find(scp, PATIENT, query)
    assert status == 0xA900 and not found
    found = find_ok(scp, PATIENT, query, ext_neg=_relational(PATIENT))
    assert len(found) == len(data.studies)


def test_combined_datetime_matching_when_negotiated(scp: DemoSCP, data: DemoData) -> None:
    # Pick bounds from the data so that both behaviours have matches to differ on.
    dates = sorted({st[S_DATE] for st in data.studies})
    d1, d2 = dates[10], dates[40]
    query = q("STUDY", StudyInstanceUID="", StudyDate=f"{d1}-{d2}", StudyTime="1200-1000")

    def combined(st: tuple) -> bool:
        return f"{d1}120000" <= st[S_DATE] + st[S_TIME] <= f"{d2}100099"

    expected_combined = {st[S_UID] for st in data.studies if combined(st)}
    expected_separate = {st[S_UID] for st in data.studies
                         if d1 <= st[S_DATE] <= d2 and "120000" <= st[S_TIME] <= "100099"}
    assert expected_combined and not expected_separate  # 12:00..10:00 is empty alone
    found = find_ok(scp, STUDY, query, ext_neg=_relational(STUDY, b"\x00\x01"))
    assert {ds.StudyInstanceUID for ds in found} == expected_combined
    assert find_ok(scp, STUDY, query) == []


# ---------------------------------------------------------------------------
# data: deterministic, counts per model and level
# ---------------------------------------------------------------------------

def test_data_is_deterministic_and_pinned() -> None:
    a, b = DemoData(seed=1), DemoData(seed=1)
    assert a.studies == b.studies and a.patients == b.patients and a.worklist == b.worklist
    assert a.series_of(a.studies[5]) == b.series_of(b.studies[5])
    # pinned: a change here changes what users and the docs see
    assert a.counts() == {"patients": 50, "studies": 119, "series": 288, "images": 3328,
                          "worklist": 38}
    assert a.studies[0][S_UID] == DemoData(seed=1, patients=3).studies[0][S_UID]
    c = DemoData(seed=2)
    assert c.studies[0][S_UID] != a.studies[0][S_UID]
    # the same seed's patients don't depend on how many studies are asked for
    assert DemoData(seed=1, studies=500).patients[7][P_NAME] == a.patients[7][P_NAME]


def test_data_shape() -> None:
    d = DemoData(seed=3, patients=200)
    mods = {m for st in d.studies for m in st[S_MODS]}
    assert {"CT", "MR", "US", "CR", "DX", "MG", "PT", "NM", "XA"} <= mods
    years = {st[S_DATE][:4] for st in d.studies}
    assert min(years) == "2015" and max(years) == "2026"
    uids = [st[S_UID] for st in d.studies]
    assert len(set(uids)) == len(uids)
    assert all(re.fullmatch(r"2\.25\.[1-9][0-9]*", u) and len(u) <= 64 for u in uids)
    st = next(st for st in d.studies if "PT" in st[S_MODS])
    assert "CT" in st[S_MODS]  # PET/CT
    series = d.series_of(st)
    assert len(series) == len(st[S_SPEC])
    images = d.images_of(st, series[0])
    assert len(images) == series[0][SE_NIMAGES]
    assert len({i[0] for i in images}) == len(images)


def test_exact_study_count() -> None:
    assert len(DemoData(patients=10, studies=7).studies) == 7
    d = DemoData(patients=10, studies=1234)
    assert len(d.studies) == 1234
    assert all(p[P_NSTUDIES] >= 1 for p in d.patients)
    assert len(DemoData(patients=10, studies=0).studies) == 0


@pytest.mark.parametrize("model", [PATIENT, PSONLY])
def test_patient_level_count(scp: DemoSCP, data: DemoData, model: QueryModel) -> None:
    found = find_ok(scp, model, q("PATIENT", PatientID="", PatientName="",
                                   NumberOfPatientRelatedStudies=""))
    assert len(found) == 50
    assert [ds.PatientID for ds in found] == [p[P_ID] for p in data.patients]
    assert sum(int(ds.NumberOfPatientRelatedStudies) for ds in found) == 119


def test_study_root_levels(scp: DemoSCP, data: DemoData) -> None:
    studies = find_ok(scp, STUDY, q("STUDY", StudyInstanceUID="", NumberOfStudyRelatedSeries="",
                                     NumberOfStudyRelatedInstances=""))
    assert len(studies) == 119
    assert sum(int(ds.NumberOfStudyRelatedSeries) for ds in studies) == 288
    assert sum(int(ds.NumberOfStudyRelatedInstances) for ds in studies) == 3328
    # all series of all studies (Study Root: the study key is optional)
    assert len(find_ok(scp, STUDY, q("SERIES", SeriesInstanceUID=""))) == 288
    st = data.studies[3]
    series = find_ok(scp, STUDY, q("SERIES", StudyInstanceUID=st[S_UID], SeriesInstanceUID="",
                                    Modality="", NumberOfSeriesRelatedInstances=""))
    assert len(series) == len(st[S_SPEC])
    assert [ds.Modality for ds in series] == [m for m, _ in st[S_SPEC]]
    se = series[-1]
    images = find_ok(scp, STUDY, q("IMAGE", StudyInstanceUID=st[S_UID],
                                    SeriesInstanceUID=se.SeriesInstanceUID, SOPInstanceUID="",
                                    InstanceNumber=""))
    assert len(images) == int(se.NumberOfSeriesRelatedInstances) > 0
    assert [int(ds.InstanceNumber) for ds in images] == list(range(1, len(images) + 1))


def test_patient_root_levels(scp: DemoSCP, data: DemoData) -> None:
    p = data.patients[2]
    studies = find_ok(scp, PATIENT, q("STUDY", PatientID=p[P_ID], StudyInstanceUID=""))
    assert len(studies) == p[P_NSTUDIES] == sum(1 for st in data.studies if st[S_PAT] == 2)
    st = next(st for st in data.studies if st[S_PAT] == 2)
    series = find_ok(scp, PATIENT, q("SERIES", PatientID=p[P_ID], StudyInstanceUID=st[S_UID],
                                      SeriesInstanceUID=""))
    assert len(series) == len(st[S_SPEC])
    se = data.series_of(st)[0]
    images = find_ok(scp, PATIENT, q("IMAGE", PatientID=p[P_ID], StudyInstanceUID=st[S_UID],
                                      SeriesInstanceUID=se[SE_UID], SOPInstanceUID=""))
    assert len(images) == se[SE_NIMAGES]


def test_patient_study_only(scp: DemoSCP, data: DemoData) -> None:
    p = data.patients[5]
    found = find_ok(scp, PSONLY, q("STUDY", PatientID=p[P_ID], StudyInstanceUID="", StudyDate=""))
    assert len(found) == p[P_NSTUDIES]
    found, status = find(scp, PSONLY, q("SERIES", PatientID=p[P_ID], StudyInstanceUID="1.2.3",
                                        SeriesInstanceUID=""))
    assert status == 0xA900 and not found


def test_worklist_universal(scp: DemoSCP, data: DemoData) -> None:
    sps = Dataset()
    sps.Modality = ""
    sps.ScheduledProcedureStepID = ""
    found = find_ok(scp, WORKLIST, q(None, PatientName="", AccessionNumber="",
                                      ScheduledProcedureStepSequence=[sps]))
    assert len(found) == len(data.worklist) == 38
    assert sum(len(ds.ScheduledProcedureStepSequence) for ds in found) == sum(
        len(w[W_SPS]) for w in data.worklist)


def test_worklist_attributes(scp: DemoSCP) -> None:
    keys = ["PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
            "RequestedProcedureID", "RequestedProcedureDescription", "StudyInstanceUID",
            "ReferringPhysicianName"]
    sps_keys = ["Modality", "ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
                "ScheduledProcedureStepStartTime", "ScheduledPerformingPhysicianName",
                "ScheduledProcedureStepDescription", "ScheduledProcedureStepID"]
    sps = q(None, **{k: "" for k in sps_keys})
    query = q(None, ScheduledProcedureStepSequence=[sps], **{k: "" for k in keys})
    found = find_ok(scp, WORKLIST, query)
    for ds in found:
        for k in keys:
            assert ds.get(k) not in (None, ""), k
        for item in ds.ScheduledProcedureStepSequence:
            assert sorted(e.keyword for e in item) == sorted(sps_keys)
            for k in sps_keys:
                assert item.get(k) not in (None, ""), k
    # a zero-item sequence is universal: whole items come back
    found = find_ok(scp, WORKLIST, q(None, PatientID="", ScheduledProcedureStepSequence=[]))
    assert all(len(ds.ScheduledProcedureStepSequence) >= 1 and
               "ScheduledStationAETitle" in ds.ScheduledProcedureStepSequence[0] for ds in found)


# ---------------------------------------------------------------------------
# the response identifier
# ---------------------------------------------------------------------------

def test_response_has_exactly_the_requested_keys(scp: DemoSCP) -> None:
    query = q("STUDY", StudyInstanceUID="", PatientName="", StudyDate="", InstitutionName="",
              Modality="", RetrieveAETitle="")
    query.add_new(0x00091010, "LO", None)  # a private tag: unknown, returned empty
    found = find_ok(scp, STUDY, query)
    asked = {e.tag for e in query}
    for ds in found:
        got = {e.tag for e in ds}
        assert got - {0x00080005} == asked
        assert ("SpecificCharacterSet" in ds) == (not str(ds.PatientName).isascii())
        assert ds.InstitutionName in (None, "")   # unsupported: empty
        assert ds.Modality in (None, "")          # lower level than STUDY: empty
        assert ds.RetrieveAETitle == scp.ae_title
        assert ds.QueryRetrieveLevel == "STUDY"
        assert ds.StudyDate and ds.StudyInstanceUID


def test_unsupported_key_is_not_matched(scp: DemoSCP) -> None:
    found = find_ok(scp, STUDY, q("STUDY", StudyInstanceUID="", InstitutionName="Nowhere*"))
    assert len(found) == 119


def test_last_identifier_recorded(scp: DemoSCP) -> None:
    find_ok(scp, STUDY, q("STUDY", PatientName="Zz*", StudyInstanceUID=""))
    assert scp.last_identifier.PatientName == "Zz*"
    assert scp.last_identifier.QueryRetrieveLevel == "STUDY"


# ---------------------------------------------------------------------------
# matching
# ---------------------------------------------------------------------------

def _uids(found: list[Dataset]) -> set[str]:
    return {ds.StudyInstanceUID for ds in found}


def test_pn_wildcard_is_case_insensitive(scp: DemoSCP, data: DemoData) -> None:
    expected = {st[S_UID] for st in data.studies
                if data.patients[st[S_PAT]][P_NAME].lower().startswith("s")}
    assert expected
    for pattern in ("s*", "S*"):
        found = find_ok(scp, STUDY, q("STUDY", PatientName=pattern, StudyInstanceUID=""))
        assert _uids(found) == expected
    # single value PN: exact but case-insensitive
    p = next(p for p in data.patients if not p[P_CS])
    found = find_ok(scp, PATIENT, q("PATIENT", PatientName=p[P_NAME].upper(), PatientID=""))
    assert p[P_ID] in {ds.PatientID for ds in found}
    assert all(str(ds.PatientName).upper() == p[P_NAME].upper() for ds in found)


def test_question_mark_and_case_sensitive_wildcards(scp: DemoSCP, data: DemoData) -> None:
    found = find_ok(scp, PATIENT, q("PATIENT", PatientID="PAT0000?"))
    assert sorted(ds.PatientID for ds in found) == [f"PAT0000{i}" for i in range(1, 10)]
    expected = {st[S_UID] for st in data.studies if st[8].startswith("CT ")}
    assert expected
    assert _uids(find_ok(scp, STUDY, q("STUDY", StudyDescription="CT *", StudyInstanceUID=""))) \
        == expected
    assert find_ok(scp, STUDY, q("STUDY", StudyDescription="ct *", StudyInstanceUID="")) == []


def test_single_value_matching(scp: DemoSCP, data: DemoData) -> None:
    st = data.studies[17]
    found = find_ok(scp, STUDY, q("STUDY", AccessionNumber=st[5], StudyInstanceUID=""))
    assert _uids(found) == {st[S_UID]}
    found = find_ok(scp, STUDY, q("STUDY", StudyDate=st[S_DATE], StudyInstanceUID=""))
    assert _uids(found) == {s[S_UID] for s in data.studies if s[S_DATE] == st[S_DATE]}


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
@pytest.mark.parametrize("value, lo, hi", [
    ("20200101-20201231", "20200101", "20201231"),
    ("-2016", "00000000", "20169999"),
    ("2025-", "20250000", "99999999"),
    ("20190301-20190331", "20190301", "20190331"),
])
def test_date_range(scp: DemoSCP, data: DemoData, value: str, lo: str, hi: str) -> None:
    expected = {st[S_UID] for st in data.studies if lo <= st[S_DATE] <= hi}
    assert expected or value.startswith("2019")
    found = find_ok(scp, STUDY, q("STUDY", StudyDate=value, StudyInstanceUID=""))
    assert _uids(found) == expected
    assert all(lo <= ds.StudyDate <= hi for ds in found)


def test_time_range(scp: DemoSCP, data: DemoData) -> None:
    expected = {st[S_UID] for st in data.studies if st[S_TIME][:4] <= "0900"}
    assert expected
    assert _uids(find_ok(scp, STUDY, q("STUDY", StudyTime="-0900", StudyInstanceUID=""))) \
        == expected
    expected = {st[S_UID] for st in data.studies if "103000" <= st[S_TIME] <= "120000"}
    assert _uids(find_ok(scp, STUDY, q("STUDY", StudyTime="103000-120000",
                                        StudyInstanceUID=""))) == expected


def test_datetime_range(scp: DemoSCP, data: DemoData) -> None:
    st = data.studies[0]
    se = data.series_of(st)[0]
    images = data.images_of(st, se)
    assert len(images) >= 3
    lo, hi = images[1][5], images[-1][5]
    found = find_ok(scp, STUDY, q("IMAGE", StudyInstanceUID=st[S_UID],
                                   SeriesInstanceUID=se[SE_UID], SOPInstanceUID="",
                                   AcquisitionDateTime=f"{lo}-{hi}"))
    assert {ds.SOPInstanceUID for ds in found} == {i[0] for i in images[1:]}
    found = find_ok(scp, STUDY, q("IMAGE", StudyInstanceUID=st[S_UID],
                                   SeriesInstanceUID=se[SE_UID], SOPInstanceUID="",
                                   AcquisitionDateTime=f"-{lo}+0100"))
    assert {ds.SOPInstanceUID for ds in found} == {i[0] for i in images[:2]}
    # a negative UTC offset is not a range separator
    found = find_ok(scp, STUDY, q("IMAGE", StudyInstanceUID=st[S_UID],
                                   SeriesInstanceUID=se[SE_UID], SOPInstanceUID="",
                                   AcquisitionDateTime=f"{lo}-0500-"))
    assert {ds.SOPInstanceUID for ds in found} == {i[0] for i in images[1:]}


def test_uid_list_matching(scp: DemoSCP, data: DemoData) -> None:
    picked = [data.studies[i][S_UID] for i in (4, 50, 101)]
    found = find_ok(scp, STUDY, q("STUDY", StudyInstanceUID=picked + ["1.2.3.999"]))
    assert _uids(found) == set(picked) and len(found) == 3


def test_modalities_in_study(scp: DemoSCP, data: DemoData) -> None:
    found = find_ok(scp, STUDY, q("STUDY", StudyInstanceUID="", ModalitiesInStudy="PT"))
    assert _uids(found) == {st[S_UID] for st in data.studies if "PT" in st[S_MODS]}
    assert found and all({"PT", "CT"} <= set(ds.ModalitiesInStudy) for ds in found)
    found = find_ok(scp, STUDY, q("STUDY", StudyInstanceUID="", ModalitiesInStudy=["MG", "NM"]))
    expected = {st[S_UID] for st in data.studies if {"MG", "NM"} & set(st[S_MODS])}
    assert _uids(found) == expected
    assert any("MG" in st[S_MODS] for st in data.studies)
    assert any("NM" in st[S_MODS] for st in data.studies)
    # CT matches the PET/CT studies too
    ct = find_ok(scp, STUDY, q("STUDY", StudyInstanceUID="", ModalitiesInStudy="CT"))
    assert _uids(ct) >= {st[S_UID] for st in data.studies if "PT" in st[S_MODS]}
    assert _uids(ct) == {st[S_UID] for st in data.studies if "CT" in st[S_MODS]}


def test_worklist_sequence_matching(scp: DemoSCP, data: DemoData) -> None:
    sps = q(None, Modality="MR", ScheduledProcedureStepStartDate="20260302-20260308",
            ScheduledProcedureStepID="")
    found = find_ok(scp, WORKLIST, q(None, AccessionNumber="", ScheduledProcedureStepSequence=[sps]))
    expected = {w[2] for w in data.worklist
                if any(s[SP_MOD] == "MR" and "20260302" <= s[SP_DATE] <= "20260308"
                       for s in w[W_SPS])}
    assert expected
    assert {ds.AccessionNumber for ds in found} == expected
    for ds in found:
        for item in ds.ScheduledProcedureStepSequence:
            assert item.Modality == "MR"
            assert "20260302" <= item.ScheduledProcedureStepStartDate <= "20260308"


def test_worklist_returns_only_matching_items(scp: DemoSCP, data: DemoData) -> None:
    doubles = [w for w in data.worklist if len(w[W_SPS]) == 2]
    assert doubles
    found = find_ok(scp, WORKLIST, q(None, AccessionNumber="", ScheduledProcedureStepSequence=[
        q(None, ScheduledProcedureStepID="SPS*-2")]))
    assert {ds.AccessionNumber for ds in found} == {w[2] for w in doubles}
    for ds in found:
        assert [i.ScheduledProcedureStepID for i in ds.ScheduledProcedureStepSequence] == [
            next(w for w in doubles if w[2] == ds.AccessionNumber)[W_SPS][1][SP_ID]]


def test_worklist_top_level_matching(scp: DemoSCP, data: DemoData) -> None:
    w = data.worklist[5]
    pid = data.patients[w[1]][P_ID]
    found = find_ok(scp, WORKLIST, q(None, PatientID=pid, AccessionNumber=""))
    assert {ds.AccessionNumber for ds in found} == {x[2] for x in data.worklist
                                                    if data.patients[x[1]][P_ID] == pid}


# ---------------------------------------------------------------------------
# character sets
# ---------------------------------------------------------------------------

def _special(data: DemoData, name: str) -> tuple:
    return next(p for p in data.patients if p[P_NAME] == name)


@pytest.mark.parametrize("ts", ALL_TS, ids=lambda ts: ts.name)
@pytest.mark.parametrize("name, charset, codec", [
    ("Müller^Jürgen", "ISO_IR 192", "utf-8"),
    ("山田^太郎", "ISO_IR 192", "utf-8"),
    ("Ωμέγα^Άλφα", "ISO_IR 192", "utf-8"),
    ("Søren^Åse", "ISO_IR 100", "latin-1"),
    ("Ménard^Zoé", "ISO_IR 100", "latin-1"),
])
def test_non_ascii_names(scp: DemoSCP, data: DemoData, ts, name, charset, codec) -> None:
    p = _special(data, name)
    assert p[P_CS] == charset
    with Client(scp, ts=[ts]) as c:
        found, status = c.find(PATIENT, q("STUDY", PatientID=p[P_ID], PatientName="",
                                          StudyInstanceUID=""))
    assert status.Status == 0
    assert len(found) == p[P_NSTUDIES] == len(c.raw)
    for ds, raw in zip(found, c.raw):
        assert ds.SpecificCharacterSet == charset
        assert str(ds.PatientName) == name
        if ts == DeflatedExplicitVRLittleEndian:
            raw = zlib.decompress(raw, -zlib.MAX_WBITS)
        assert name.encode(codec) in raw
        other = "latin-1" if codec == "utf-8" else "utf-8"
        try:
            assert name.encode(other) not in raw
        except UnicodeEncodeError:
            pass


def test_query_by_non_ascii_name(scp: DemoSCP, data: DemoData) -> None:
    found = find_ok(scp, PATIENT, q("PATIENT", charset="ISO_IR 192", PatientName="山田*",
                                     PatientID=""))
    assert [str(ds.PatientName) for ds in found] == ["山田^太郎"]
    found = find_ok(scp, PATIENT, q("PATIENT", charset="ISO_IR 100", PatientName="søren*",
                                     PatientID=""))
    assert [str(ds.PatientName) for ds in found] == ["Søren^Åse"]
    assert found[0].SpecificCharacterSet == "ISO_IR 100"


def test_ascii_patients_carry_no_charset(scp: DemoSCP, data: DemoData) -> None:
    found = find_ok(scp, PATIENT, q("PATIENT", PatientName="", PatientID=""))
    by_id = {ds.PatientID: ds for ds in found}
    for p in data.patients:
        ds = by_id[p[P_ID]]
        if p[P_CS]:
            assert ds.SpecificCharacterSet == p[P_CS]
        else:
            assert "SpecificCharacterSet" not in ds
    assert {p[P_NAME] for p in data.patients if p[P_CS]} == {n for n, _ in SPECIAL_NAMES}


# ---------------------------------------------------------------------------
# failures
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("model, query", [
    (STUDY, q(None, StudyInstanceUID="")),                       # no level
    (STUDY, q("PATIENT", PatientID="")),                         # not in Study Root
    (PSONLY, q("SERIES", PatientID="PAT00001", SeriesInstanceUID="")),
    (PATIENT, q("FOO", PatientID="")),
    (PATIENT, q("STUDY", StudyInstanceUID="")),                  # no PatientID
    (PATIENT, q("STUDY", PatientID="PAT*", StudyInstanceUID="")),  # wildcard unique key
    (PATIENT, q("SERIES", PatientID="PAT00001", SeriesInstanceUID="")),  # no StudyInstanceUID
])
def test_bad_identifier_fails(scp: DemoSCP, model: QueryModel, query: Dataset) -> None:
    with Client(scp) as c:
        found, status = c.find(model, query)
    assert not found
    assert status.Status == 0xA900
    assert status.get("ErrorComment")


# ---------------------------------------------------------------------------
# cancel, scale
# ---------------------------------------------------------------------------

def test_c_cancel_stops_early() -> None:
    with DemoSCP(patients=5, studies=400, delay_per_response=0.01) as demo, Client(demo) as c:
        cx = next(cx for cx in c.assoc.accepted_contexts
                  if cx.abstract_syntax == STUDY.sop_class_uid)
        pending = 0
        statuses = []
        for status, ident in c.assoc.send_c_find(q("STUDY", StudyInstanceUID=""),
                                                  STUDY.sop_class_uid, msg_id=7):
            statuses.append(status.Status)
            if status.Status == 0xFF00:
                pending += 1
                if pending == 5:
                    c.assoc.send_c_cancel(7, cx.context_id)
        assert statuses[-1] == 0xFE00
        assert 5 <= pending < 200   # 400 would come without the cancel
        # the association is still usable afterwards
        found, status = c.find(STUDY, q("STUDY", StudyInstanceUID="", PatientID="PAT00001"))
        assert status.Status == 0 and found


def test_large_instance_count_query() -> None:
    with DemoSCP(studies=5_000) as demo:
        found = find_ok(demo, STUDY, q("STUDY", StudyInstanceUID=""))
    assert len(found) == 5_000
    assert len({ds.StudyInstanceUID for ds in found}) == 5_000


def test_hundred_thousand_studies() -> None:
    d = DemoData(studies=100_000)
    assert len(d.studies) == 100_000
    assert len(d.study_by_uid) == 100_000
    # a narrow query over all of it, without the network
    plan = demo_mod._Plan(d, STUDY, q("STUDY", StudyDate="20200101", StudyInstanceUID=""),
                          None, "X")
    n = sum(1 for _ in plan.results())
    assert n == sum(1 for st in d.studies if st[S_DATE] == "20200101") > 0


# ---------------------------------------------------------------------------
# hygiene: logging, global config, headless
# ---------------------------------------------------------------------------

def test_scp_side_is_silent_and_config_untouched(scp: DemoSCP, caplog) -> None:
    before = (_config.LOG_HANDLER_LEVEL, _config.LOG_REQUEST_IDENTIFIERS,
              _config.LOG_RESPONSE_IDENTIFIERS)
    caplog.set_level(logging.DEBUG, logger="pynetdicom")
    find_ok(scp, STUDY, q("STUDY", StudyInstanceUID="", PatientID="PAT00001"))
    messages = [r.getMessage() for r in caplog.records]
    # the client side still logs at DEBUG (sanity) ...
    assert any("OUTGOING DIMSE MESSAGE" in m for m in messages)
    assert any("Find SCP Result" in m for m in messages)
    # ... the SCP side not at all: no dumps, no per-response lines
    assert not any(r.threadName.startswith("AcceptorThread") for r in caplog.records)
    assert not any(m.startswith(("Find SCP Response 1", "Accepting Association"))
                   for m in messages)
    assert not any("C-FIND RSP" in m and "OUTGOING" in m for m in messages)
    assert (_config.LOG_HANDLER_LEVEL, _config.LOG_REQUEST_IDENTIFIERS,
            _config.LOG_RESPONSE_IDENTIFIERS) == before


def test_scp_association_setup(scp: DemoSCP) -> None:
    """No logging handlers on the SCP's associations, and TCP_NODELAY on their sockets."""
    from pynetdicom._handlers import standard_dimse_sent_handler, standard_pdu_recv_handler

    with Client(scp) as c:
        assert c.assoc.send_c_echo().Status == 0
        acceptors = scp._ae.active_associations
        assert acceptors
        for assoc in acceptors:
            sent = [h[0] for h in assoc.get_handlers(evt.EVT_DIMSE_SENT)]
            recv = [h[0] for h in assoc.get_handlers(evt.EVT_PDU_RECV)]
            assert standard_dimse_sent_handler not in sent
            assert standard_pdu_recv_handler not in recv
            sock = assoc.dul.socket.socket
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        # the client's own association keeps them
        assert standard_dimse_sent_handler in [
            h[0] for h in c.assoc.get_handlers(evt.EVT_DIMSE_SENT)]


def test_no_textual_or_rich() -> None:
    code = ("import sys, findtui.demo; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_main_serves_until_signal(sig) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "findtui.demo", "--port", "0", "--patients", "4",
         "--studies", "9", "--seed", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline()
        m = re.fullmatch(r"Demo SCP FINDTUI-DEMO listening on 127\.0\.0\.1:(\d+) "
                         r"\(4 patients, 9 studies\); Ctrl-C to stop\n", line)
        assert m, line
        port = int(m.group(1))
        ae = AE()
        ae.add_requested_context(STUDY.sop_class_uid)
        assoc = ae.associate("127.0.0.1", port, ae_title="FINDTUI-DEMO")
        assert assoc.is_established
        n = sum(1 for st, ds in assoc.send_c_find(q("STUDY", StudyInstanceUID=""),
                                                   STUDY.sop_class_uid) if ds is not None)
        assoc.release()
        ae.shutdown()
        assert n == 9
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert "Traceback" not in err


def test_main_reports_busy_port() -> None:
    with DemoSCP(patients=1) as demo:
        proc = subprocess.run(
            [sys.executable, "-m", "findtui.demo", "--port", str(demo.port)],
            capture_output=True, text=True, timeout=60,
        )
    assert proc.returncode == 1
    assert "cannot listen" in proc.stderr and "Traceback" not in proc.stderr
