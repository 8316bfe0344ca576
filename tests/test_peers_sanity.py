"""The peer fixtures work: checked with the reference clients only (DCMTK
findscu; pynetdicom's association for single-transfer-syntax proposals, which
findscu cannot make for the explicit syntaxes)."""

from __future__ import annotations

import os
import socket

import pytest

import peers
from peers import (
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    find_with_dcmtk,
    find_with_pynetdicom,
    run_findscu,
)

pytestmark = pytest.mark.peer

CORPUS = peers.corpus()

# level -> (unique key keyword, expected unique key values)
EXPECTED = {
    "PATIENT": ("PatientID", {p.patient_id for p in CORPUS.patients}),
    "STUDY": ("StudyInstanceUID", {s.study_instance_uid for s in CORPUS.studies}),
    "SERIES": ("SeriesInstanceUID", {s.series_instance_uid for s in CORPUS.series}),
    "IMAGE": ("SOPInstanceUID", {i.sop_instance_uid for i in CORPUS.instances}),
}

# findscu option proposing the transfer syntax (first); findscu cannot propose
# one explicit syntax alone, but a single-TS peer accepts only its own.
FINDSCU_PROPOSE = {
    IMPLICIT_VR_LE: "-xi",  # implicit only
    EXPLICIT_VR_LE: "-xe",  # explicit LE first, then the other uncompressed
    EXPLICIT_VR_BE: "-xb",  # explicit BE first, ...
    DEFLATED_EXPLICIT_VR_LE: "-xd",  # deflated first, ...
}
DCMTK_TS_NAMES = {
    IMPLICIT_VR_LE: "LittleEndianImplicit",
    EXPLICIT_VR_LE: "LittleEndianExplicit",
    EXPLICIT_VR_BE: "BigEndianExplicit",
    DEFLATED_EXPLICIT_VR_LE: "DeflatedLittleEndianExplicit",
}


def _query(level: str) -> list[str]:
    keyword, _ = EXPECTED[level]
    keys = [f"QueryRetrieveLevel={level}", "PatientName", "PatientID", keyword]
    return list(dict.fromkeys(keys))


def _unique_values(responses, keyword: str) -> list[str]:
    return [str(ds.get(keyword, "")) for ds in responses]


# --------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------


def test_corpus_is_deterministic_and_has_the_announced_shape():
    assert len(CORPUS.patients) == 5
    assert len(CORPUS.studies) == 10
    assert len(CORPUS.series) == 20
    assert len(CORPUS.instances) == len(CORPUS.datasets) == 40
    assert any(not p.name.isascii() for p in CORPUS.patients)
    rebuilt = peers._build_corpus()
    assert [s.study_instance_uid for s in rebuilt.studies] == [s.study_instance_uid for s in CORPUS.studies]
    assert [ds.SOPInstanceUID for ds in rebuilt.datasets] == [ds.SOPInstanceUID for ds in CORPUS.datasets]


# --------------------------------------------------------------------------
# Orthanc
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, level",
    [
        ("-P", "PATIENT"),
        ("-P", "STUDY"),
        ("-P", "SERIES"),
        ("-P", "IMAGE"),
        ("-S", "STUDY"),
        ("-S", "SERIES"),
        ("-S", "IMAGE"),
    ],
)
def test_orthanc_answers_each_level(orthanc, model, level):
    keyword, expected = EXPECTED[level]
    responses = find_with_dcmtk(orthanc, [model], _query(level))
    values = _unique_values(responses, keyword)
    assert len(values) == len(expected)
    assert set(values) == expected


def test_orthanc_rest_and_identity(orthanc):
    assert orthanc.http_url.startswith("http://127.0.0.1:")
    assert orthanc.ae_title == "ORTHANC"
    stats = orthanc.statistics()
    assert (stats["CountPatients"], stats["CountStudies"], stats["CountSeries"], stats["CountInstances"]) == (
        5, 10, 20, 40,
    )


def test_orthanc_non_ascii_names_round_trip(orthanc):
    responses = find_with_dcmtk(
        orthanc, ["-P"], ["QueryRetrieveLevel=PATIENT", "PatientID", "PatientName", "SpecificCharacterSet"]
    )
    names = {str(ds.PatientID): str(ds.PatientName) for ds in responses}
    assert names == {p.patient_id: p.name for p in CORPUS.patients}


def test_orthanc_matches_like_the_corpus_says(orthanc):
    responses = find_with_dcmtk(
        orthanc, ["-S"], ["QueryRetrieveLevel=STUDY", "StudyDate=20240101-20241231", "StudyInstanceUID"]
    )
    expected = {s.study_instance_uid for s in CORPUS.studies if "20240101" <= s.study_date <= "20241231"}
    assert {str(ds.StudyInstanceUID) for ds in responses} == expected


def test_orthanc_worklist(orthanc):
    responses = find_with_dcmtk(
        orthanc,
        ["-W"],
        ["PatientName", "PatientID", "AccessionNumber", "ScheduledProcedureStepSequence[0].Modality"],
    )
    assert sorted(str(ds.AccessionNumber) for ds in responses) == sorted(
        i.accession_number for i in peers.WORKLIST
    )
    assert {str(ds.PatientName) for ds in responses} == {i.patient_name for i in peers.WORKLIST}
    ct_only = find_with_dcmtk(
        orthanc, ["-W"], ["AccessionNumber", "ScheduledProcedureStepSequence[0].Modality=CT"]
    )
    assert sorted(str(ds.AccessionNumber) for ds in ct_only) == sorted(
        i.accession_number for i in peers.WORKLIST if i.modality == "CT"
    )


def test_pynetdicom_findscu_agrees_with_dcmtk_on_orthanc(orthanc):
    dcmtk = find_with_dcmtk(orthanc, ["-S"], ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName"])
    pnd = find_with_pynetdicom(orthanc, ["-S"], ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName"])
    assert sorted(str(d.StudyInstanceUID) for d in pnd) == sorted(str(d.StudyInstanceUID) for d in dcmtk)
    assert len(pnd) == 10


# --------------------------------------------------------------------------
# DCMTK wlmscpfs
# --------------------------------------------------------------------------


def test_wlmscpfs_worklist(wlmscpfs):
    assert wlmscpfs.ae_title == "WLMSCP"
    responses = find_with_dcmtk(
        wlmscpfs,
        ["-W"],
        ["PatientName", "PatientID", "AccessionNumber", "ScheduledProcedureStepSequence[0].Modality"],
    )
    assert sorted(str(ds.AccessionNumber) for ds in responses) == sorted(
        i.accession_number for i in peers.WORKLIST
    )
    assert {str(ds.PatientName) for ds in responses} == {i.patient_name for i in peers.WORKLIST}
    mr_only = find_with_dcmtk(
        wlmscpfs, ["-W"], ["AccessionNumber", "ScheduledProcedureStepSequence[0].Modality=MR"]
    )
    assert [str(ds.AccessionNumber) for ds in mr_only] == [
        i.accession_number for i in peers.WORKLIST if i.modality == "MR"
    ]


# --------------------------------------------------------------------------
# DCMTK dcmqrscp
# --------------------------------------------------------------------------


@pytest.mark.parametrize("model, level", [("-P", "PATIENT"), ("-P", "STUDY"), ("-S", "STUDY"), ("-O", "STUDY")])
def test_dcmqrscp_answers(dcmqrscp, model, level):
    keyword, expected = EXPECTED[level]
    responses = find_with_dcmtk(dcmqrscp, [model], _query(level))
    assert sorted(_unique_values(responses, keyword)) == sorted(expected)


def test_dcmqrscp_series_of_a_study(dcmqrscp):
    study = CORPUS.studies[3]
    responses = find_with_dcmtk(
        dcmqrscp,
        ["-S"],
        ["QueryRetrieveLevel=SERIES", f"StudyInstanceUID={study.study_instance_uid}", "SeriesInstanceUID", "Modality"],
    )
    assert sorted((str(d.SeriesInstanceUID), str(d.Modality)) for d in responses) == sorted(
        (s.series_instance_uid, s.modality) for s in study.series
    )


def test_dcmqrscp_refuses_a_wrong_called_ae(dcmqrscp):
    run = run_findscu(dcmqrscp, ["-S", "-aec", "NOT-QRSCP"], ["QueryRetrieveLevel=STUDY"])
    assert run.returncode != 0
    assert not run.responses


# --------------------------------------------------------------------------
# pynetdicom qrscp
# --------------------------------------------------------------------------


def test_qrscp_answers(qrscp):
    responses = find_with_dcmtk(qrscp, ["-S"], ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientID"])
    # qrscp as it is: one response per matching instance
    assert len(responses) == len(CORPUS.instances)
    assert {str(d.StudyInstanceUID) for d in responses} == EXPECTED["STUDY"][1]


def test_qrscp_answers_pynetdicom_findscu(qrscp):
    responses = find_with_pynetdicom(qrscp, ["-P"], ["QueryRetrieveLevel=PATIENT", "PatientID"])
    assert {str(d.PatientID) for d in responses} == EXPECTED["PATIENT"][1]


# --------------------------------------------------------------------------
# Single-transfer-syntax peers
# --------------------------------------------------------------------------


def test_single_ts_peer_accepts_its_transfer_syntax(single_ts_peer):
    (ts,) = single_ts_peer.transfer_syntaxes
    run = run_findscu(
        single_ts_peer,
        ["-S", FINDSCU_PROPOSE[ts], "-d"],
        ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName"],
    )
    assert run.returncode == 0, run.output[-3000:]
    assert f"Accepted Transfer Syntax: ={DCMTK_TS_NAMES[ts]}" in run.output
    assert sorted(str(d.StudyInstanceUID) for d in run.responses) == sorted(EXPECTED["STUDY"][1])
    names = {str(d.PatientName) for d in run.responses}
    assert names == {p.name for p in CORPUS.patients}


def test_single_ts_peer_with_implicit_only_findscu(single_ts_peer):
    """findscu -xi proposes Implicit VR LE alone: only the implicit peer takes it."""
    (ts,) = single_ts_peer.transfer_syntaxes
    run = run_findscu(single_ts_peer, ["-S", "-xi"], ["QueryRetrieveLevel=STUDY", "StudyInstanceUID"])
    if ts == IMPLICIT_VR_LE:
        assert run.returncode == 0, run.output[-3000:]
        assert len(run.responses) == len(CORPUS.studies)
    else:
        assert run.returncode != 0
        assert not run.responses


@pytest.mark.parametrize(
    "proposed", UNCOMPRESSED_TRANSFER_SYNTAXES, ids=[peers.TRANSFER_SYNTAX_NAMES[t] for t in UNCOMPRESSED_TRANSFER_SYNTAXES]
)
def test_single_ts_peer_accepts_only_its_own_when_one_is_proposed(single_ts_peer, proposed):
    (ts,) = single_ts_peer.transfer_syntaxes
    assert single_ts_peer.echo(proposed) == (proposed == ts)


# --------------------------------------------------------------------------
# Lifecycle, isolation, missing binaries
# --------------------------------------------------------------------------


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_peers_stop_what_they_start(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with peers.wlmscpfs(tmp_path) as peer:
            pid, port = peer.server.pid, peer.port
            assert _port_open(port)
            raise RuntimeError("boom")
    assert peer.server.proc.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not _port_open(port)


def test_missing_binary_fails_naming_the_debian_package():
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y dcmtk"):
        peers.require_binary("no-such-dcmtk-tool", "dcmtk")


def test_findtui_config_dir_is_isolated(findtui_config_dir):
    assert os.environ["FINDTUI_CONFIG_DIR"] == str(findtui_config_dir)
    assert findtui_config_dir.is_dir()
    assert not any(findtui_config_dir.iterdir())
