"""The engine and the ``--batch`` CLI against real third-party peers.

Every expectation comes from what the peers were loaded with (``peers.corpus()``,
``peers.WORKLIST``) or from DCMTK's ``findscu`` (the reference client) on the
same query against the same peer, never from our own output alone:

* Orthanc, DCMTK dcmqrscp / wlmscpfs, pynetdicom qrscp: each level of each
  information model, wildcards, date ranges, non-ASCII (ISO_IR 192) names,
  worklist items with their Scheduled Procedure Step Sequence;
* ``findtui --batch -w`` vs ``findscu -X``: the same response datasets, and
  ``--output-format jsonl`` gives as many lines as findscu gives responses;
* transfer syntaxes against single-transfer-syntax peers;
* extended negotiation bytes as an SCP received them (a pynetdicom SCP here);
* the ``-v`` log and a rejected association (also when pynetdicom sees the
  peer's close before its A-ASSOCIATE-RJ).
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import struct
import subprocess
import sys
import threading
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID

import peers
from findtui.engine.keys import build_identifier
from findtui.engine.models import QueryModel
from findtui.engine.query import (
    Associated,
    AssociationFailed,
    Final,
    FindQuery,
    FindRequest,
    Network,
    Pending,
)
from peers import (
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    MODALITY_WORKLIST_FIND,
    PATIENT_ROOT_FIND,
    PATIENT_STUDY_ONLY_FIND,
    STUDY_ROOT_FIND,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    WORKLIST,
    find_with_dcmtk,
)

pytestmark = pytest.mark.peer

CORPUS = peers.corpus()
EXIT_NETWORK = 3  # cli.ExitCode.NETWORK, spelled out: the documented contract

# --transfer-syntax names (the README's), independent of the engine's table
CLI_TS_NAMES = {
    IMPLICIT_VR_LE: "implicit",
    EXPLICIT_VR_LE: "explicit",
    DEFLATED_EXPLICIT_VR_LE: "deflated",
    EXPLICIT_VR_BE: "big",
}


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


@dataclass
class Outcome:
    events: list

    @property
    def associated(self) -> Associated:
        assert isinstance(self.events[0], Associated), self.events[:2]
        return self.events[0]

    @property
    def pendings(self) -> list[Pending]:
        return [e for e in self.events if isinstance(e, Pending)]

    @property
    def final(self) -> Final:
        assert isinstance(self.events[-1], Final), self.events[-1]
        return self.events[-1]

    def ok(self) -> list[Dataset]:
        """Check the event stream of a successful query; the identifiers, decoded."""
        assert self.associated
        assert self.final.status == 0x0000, (self.final, self.events)
        assert self.final.category == "success"
        pendings = self.pendings
        assert self.events[1:-1] == pendings, "only Pending events between Associated and Final"
        assert [p.index for p in pendings] == list(range(1, len(pendings) + 1))
        assert all(p.status == 0xFF00 for p in pendings)
        return [p.identifier for p in pendings]


def network(peer, called_aet: str | None = None, calling_aet: str = "FINDTUI-TEST") -> Network:
    return Network(peer.address, peer.port, calling_aet=calling_aet,
                   called_aet=called_aet or peer.ae_title, acse_timeout=15,
                   dimse_timeout=30, network_timeout=15)


def engine_find(peer, model: QueryModel, keys, transfer_syntax: str | None = None,
                **kwargs) -> Outcome:
    net = network(peer).replace(transfer_syntax=transfer_syntax)
    request = FindRequest(net, build_identifier(keys), model, **kwargs)
    return Outcome(list(FindQuery(request).events()))


def run_cli(args, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m findtui --batch ARGS``, as a user runs it."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "findtui", "--batch", *args],
                          capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


def key_args(keys) -> list[str]:
    return [a for k in keys for a in ("-k", k)]


def peer_args(peer) -> list[str]:
    return ["-aec", peer.ae_title, peer.address, str(peer.port)]


def _value(elem):
    if elem.VR == "SQ":
        return tuple(dataset_items(item) for item in elem.value)
    value = elem.value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return tuple(str(v) for v in value)
    return str(value)


def dataset_items(ds: Dataset) -> frozenset:
    """A response as a set of (tag, decoded value); sequences recursively."""
    return frozenset((int(elem.tag), _value(elem)) for elem in ds)


def values(responses, keyword: str) -> list[str]:
    return [str(ds.get(keyword, "")) for ds in responses]


def by_key(responses, unique: str, keywords) -> dict[str, dict[str, str]]:
    out = {}
    for ds in responses:
        key = str(ds[unique].value)
        assert key not in out, f"{unique} {key} answered twice"
        out[key] = {kw: str(ds.get(kw, "")) for kw in keywords}
    return out


# --------------------------------------------------------------------------
# Expectations from the corpus
# --------------------------------------------------------------------------

PATIENT_ATTRS = ("PatientName", "PatientBirthDate", "PatientSex")
STUDY_ATTRS = ("StudyDate", "StudyDescription", "AccessionNumber", "PatientName")
SERIES_ATTRS = ("Modality", "SeriesNumber", "SeriesDescription")
IMAGE_ATTRS = ("InstanceNumber", "SOPClassUID")

THE_PATIENT = CORPUS.patients[3]  # FT0004, 山田^太郎 (ISO_IR 192)
THE_STUDY = CORPUS.studies[3]  # PET-CT WHOLE BODY: a CT and a PT series
THE_SERIES = THE_STUDY.series[1]  # the PT series


def expected_patients(patients=CORPUS.patients):
    return "PatientID", {p.patient_id: {"PatientName": p.name, "PatientBirthDate": p.birth_date,
                                        "PatientSex": p.sex} for p in patients}


def expected_studies(studies=CORPUS.studies):
    return "StudyInstanceUID", {
        s.study_instance_uid: {"StudyDate": s.study_date, "StudyDescription": s.description,
                               "AccessionNumber": s.accession_number,
                               "PatientName": s.patient_name}
        for s in studies}


def expected_series(series=THE_STUDY.series):
    return "SeriesInstanceUID", {
        s.series_instance_uid: {"Modality": s.modality, "SeriesNumber": str(s.series_number),
                                "SeriesDescription": s.description}
        for s in series}


def expected_images(instances=THE_SERIES.instances):
    return "SOPInstanceUID", {
        i.sop_instance_uid: {"InstanceNumber": str(i.instance_number),
                             "SOPClassUID": i.sop_class_uid}
        for i in instances}


P, S, O = QueryModel.PATIENT, QueryModel.STUDY, QueryModel.PSONLY

# id -> (model, level, matching keys for a lenient peer (Orthanc), matching keys a
# strictly hierarchical peer (dcmqrscp) needs, return keys, expectation)
LEVEL_QUERIES = {
    "P-PATIENT": (P, "PATIENT", [], [], PATIENT_ATTRS, expected_patients()),
    "P-STUDY": (P, "STUDY", [f"PatientID={THE_PATIENT.patient_id}"], [], STUDY_ATTRS,
                expected_studies(THE_PATIENT.studies)),
    "P-SERIES": (P, "SERIES", [f"StudyInstanceUID={THE_STUDY.study_instance_uid}"],
                 [f"PatientID={THE_STUDY.patient_id}"], SERIES_ATTRS, expected_series()),
    "P-IMAGE": (P, "IMAGE", [f"SeriesInstanceUID={THE_SERIES.series_instance_uid}"],
                [f"PatientID={THE_STUDY.patient_id}",
                 f"StudyInstanceUID={THE_STUDY.study_instance_uid}"],
                IMAGE_ATTRS, expected_images()),
    "S-STUDY": (S, "STUDY", [], [], STUDY_ATTRS, expected_studies()),
    "S-SERIES": (S, "SERIES", [f"StudyInstanceUID={THE_STUDY.study_instance_uid}"], [],
                 SERIES_ATTRS, expected_series()),
    "S-IMAGE": (S, "IMAGE", [f"SeriesInstanceUID={THE_SERIES.series_instance_uid}"],
                [f"StudyInstanceUID={THE_STUDY.study_instance_uid}"], IMAGE_ATTRS,
                expected_images()),
    "O-PATIENT": (O, "PATIENT", [], [], PATIENT_ATTRS, expected_patients()),
    "O-STUDY": (O, "STUDY", [f"PatientID={THE_PATIENT.patient_id}"], [], STUDY_ATTRS,
                expected_studies(THE_PATIENT.studies)),
}


# dcmqrscp's index does not keep these (it returns them empty)
DCMQRSCP_NOT_INDEXED = ("SeriesDescription", "SOPClassUID")


def level_keys(query_id: str, strict: bool, attrs) -> list[str]:
    model, level, matching, hierarchy, _, (unique, _) = LEVEL_QUERIES[query_id]
    keys = [f"QueryRetrieveLevel={level}", *(hierarchy if strict else []), *matching]
    named = {k.split("=", 1)[0] for k in keys}
    keys += [k for k in (unique, *attrs) if k not in named]
    return keys


def check_level(peer, query_id: str, strict: bool, not_kept=()) -> list[Dataset]:
    """Query one level; strict: add the unique keys of the levels above, as a
    hierarchical SCP wants; not_kept: attributes the peer does not store."""
    model, level, _, _, attrs, (unique, expected) = LEVEL_QUERIES[query_id]
    attrs = tuple(a for a in attrs if a not in not_kept)
    assert attrs
    outcome = engine_find(peer, model, level_keys(query_id, strict, attrs))
    responses = outcome.ok()
    assert outcome.associated.transfer_syntax in peer.transfer_syntaxes
    assert all(p.transfer_syntax == outcome.associated.transfer_syntax for p in outcome.pendings)
    assert values(responses, "QueryRetrieveLevel") == [level] * len(responses)
    assert by_key(responses, unique, attrs) == {
        key: {a: v for a, v in row.items() if a in attrs} for key, row in expected.items()}
    return responses


def wildcard_expectation(kind: str, pattern: str):
    """(unique keyword, expected unique values) for a wildcard/range match on the corpus."""
    def wild(value: str) -> bool:  # DICOM * and ? (the corpus has no [ ])
        return fnmatch.fnmatchcase(value, pattern)

    def in_range(value: str) -> bool:
        low, sep, high = pattern.partition("-")
        if not sep:
            return value == pattern
        return (not low or value >= low) and (not high or value <= high)

    if kind == "PatientName":
        return "PatientID", {p.patient_id for p in CORPUS.patients if wild(p.name)}
    if kind == "PatientID":
        return "PatientID", {p.patient_id for p in CORPUS.patients if wild(p.patient_id)}
    if kind == "StudyDescription":
        return "StudyInstanceUID", {s.study_instance_uid for s in CORPUS.studies
                                    if wild(s.description)}
    if kind == "StudyDate":
        return "StudyInstanceUID", {s.study_instance_uid for s in CORPUS.studies
                                    if in_range(s.study_date)}
    raise ValueError(kind)


MATCHING_QUERIES = [
    # (model, level, matching key, charset key or None)
    (P, "PATIENT", "PatientName", "?OE*", None),
    (P, "PATIENT", "PatientName", "*A*", None),
    (P, "PATIENT", "PatientID", "*3", None),
    (P, "PATIENT", "PatientName", "MÜ*", "ISO_IR 192"),
    (P, "PATIENT", "PatientName", "山田*", "ISO_IR 192"),
    (S, "STUDY", "StudyDescription", "MR*", None),
    (S, "STUDY", "StudyDate", "20240101-20241231", None),
    (S, "STUDY", "StudyDate", "-20221231", None),
    (S, "STUDY", "StudyDate", "20250101-", None),
    (S, "STUDY", "StudyDate", "20240229", None),
]


def check_matching(peer, model, level, keyword, pattern, charset):
    unique, expected = wildcard_expectation(keyword, pattern)
    assert expected, "a query that matches nothing proves little"
    keys = [f"SpecificCharacterSet={charset}"] if charset else []
    keys += [f"QueryRetrieveLevel={level}", f"{keyword}={pattern}"]
    keys += [k for k in dict.fromkeys((unique, "PatientID")) if k != keyword]
    responses = engine_find(peer, model, keys).ok()
    got = values(responses, unique)
    assert len(got) == len(set(got))
    assert set(got) == expected


WORKLIST_KEYS = [
    "PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
    "RequestedProcedureID", "RequestedProcedureDescription",
    "ScheduledProcedureStepSequence[0].Modality",
    "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID",
    "ScheduledProcedureStepSequence[0].ScheduledProcedureStepDescription",
    "ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName",
]


def _worklist_row(ds: Dataset) -> dict:
    seq = ds.get("ScheduledProcedureStepSequence")
    assert seq is not None and len(seq) == 1, ds
    step = seq[0]
    return {
        "PatientName": str(ds.PatientName), "PatientID": str(ds.PatientID),
        "PatientBirthDate": str(ds.PatientBirthDate),
        "RequestedProcedureID": str(ds.RequestedProcedureID),
        "RequestedProcedureDescription": str(ds.RequestedProcedureDescription),
        "Modality": str(step.Modality), "Station": str(step.ScheduledStationAETitle),
        "StartDate": str(step.ScheduledProcedureStepStartDate),
        "StartTime": str(step.ScheduledProcedureStepStartTime),
        "StepID": str(step.ScheduledProcedureStepID),
        "StepDescription": str(step.ScheduledProcedureStepDescription),
        "Performing": str(step.ScheduledPerformingPhysicianName),
    }


def _expected_worklist_row(item) -> dict:
    return {
        "PatientName": item.patient_name, "PatientID": item.patient_id,
        "PatientBirthDate": item.birth_date, "RequestedProcedureID": item.requested_procedure_id,
        "RequestedProcedureDescription": item.requested_procedure_description,
        "Modality": item.modality, "Station": item.station_ae_title,
        "StartDate": item.start_date, "StartTime": item.start_time, "StepID": item.step_id,
        "StepDescription": item.step_description, "Performing": item.performing_physician,
    }


def check_worklist(peer):
    outcome = engine_find(peer, QueryModel.WORKLIST, WORKLIST_KEYS)
    responses = outcome.ok()
    rows = {str(ds.AccessionNumber): _worklist_row(ds) for ds in responses}
    assert len(rows) == len(responses)
    assert rows == {i.accession_number: _expected_worklist_row(i) for i in WORKLIST}
    # the non-ASCII names came back decoded (ISO_IR 192)
    assert {"MÜLLER^JÜRGEN", "GARCÍA^JOSÉ"} <= {r["PatientName"] for r in rows.values()}

    ct = engine_find(peer, QueryModel.WORKLIST,
                     ["AccessionNumber", "ScheduledProcedureStepSequence[0].Modality=CT"]).ok()
    assert sorted(values(ct, "AccessionNumber")) == sorted(
        i.accession_number for i in WORKLIST if i.modality == "CT")
    assert all(ds.ScheduledProcedureStepSequence[0].Modality == "CT" for ds in ct)

    dated = engine_find(peer, QueryModel.WORKLIST, [
        "AccessionNumber",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20250611-20250612",
    ]).ok()
    assert sorted(values(dated, "AccessionNumber")) == sorted(
        i.accession_number for i in WORKLIST if "20250611" <= i.start_date <= "20250612")


# --------------------------------------------------------------------------
# 1. Orthanc
# --------------------------------------------------------------------------


@pytest.mark.parametrize("query_id", ["P-PATIENT", "P-STUDY", "P-SERIES", "P-IMAGE",
                                      "S-STUDY", "S-SERIES", "S-IMAGE"])
def test_orthanc_each_level(orthanc, query_id):
    check_level(orthanc, query_id, strict=False)


def test_orthanc_non_ascii_names_decoded(orthanc):
    responses = engine_find(orthanc, P, ["QueryRetrieveLevel=PATIENT", "PatientID",
                                         "PatientName", "SpecificCharacterSet"]).ok()
    names = {str(ds.PatientID): ds.PatientName for ds in responses}
    assert {k: str(v) for k, v in names.items()} == {p.patient_id: p.name for p in CORPUS.patients}
    assert names["FT0004"].family_name == "山田" and names["FT0004"].given_name == "太郎"
    assert names["FT0003"].family_name == "MÜLLER"
    assert all("ISO_IR 192" in str(ds.get("SpecificCharacterSet", "")) for ds in responses
               if not str(ds.PatientName).isascii())


@pytest.mark.parametrize("model, level, keyword, pattern, charset", MATCHING_QUERIES,
                         ids=[f"{q[2]}={q[3]}" for q in MATCHING_QUERIES])
def test_orthanc_wildcards_and_ranges(orthanc, model, level, keyword, pattern, charset):
    check_matching(orthanc, model, level, keyword, pattern, charset)


def test_orthanc_worklist(orthanc):
    check_worklist(orthanc)


# --------------------------------------------------------------------------
# 2. DCMTK dcmqrscp and wlmscpfs, pynetdicom qrscp
# --------------------------------------------------------------------------


@pytest.mark.parametrize("query_id", list(LEVEL_QUERIES))
def test_dcmqrscp_each_level(dcmqrscp, query_id):
    responses = check_level(dcmqrscp, query_id, strict=True, not_kept=DCMQRSCP_NOT_INDEXED)
    if query_id.endswith("PATIENT"):
        by_id = {str(ds.PatientID): ds for ds in responses}
        assert by_id["FT0004"].SpecificCharacterSet == "ISO_IR 192"


@pytest.mark.parametrize("model, level, keyword, pattern, charset", MATCHING_QUERIES,
                         ids=[f"{q[2]}={q[3]}" for q in MATCHING_QUERIES])
def test_dcmqrscp_wildcards_and_ranges(dcmqrscp, model, level, keyword, pattern, charset):
    check_matching(dcmqrscp, model, level, keyword, pattern, charset)


def test_wlmscpfs_worklist(wlmscpfs):
    check_worklist(wlmscpfs)


def test_qrscp_conformant_study_level(tmp_path_factory):
    """pynetdicom's qrscp (patched to be conformant): one response per study."""
    with peers.qrscp(tmp_path_factory.mktemp("qrscp-conformant"), conformant=True) as peer:
        outcome = engine_find(peer, S, ["QueryRetrieveLevel=STUDY", "StudyInstanceUID",
                                        "PatientID", "PatientName", "StudyDate"])
        responses = outcome.ok()
    got = by_key(responses, "StudyInstanceUID", ("PatientID", "PatientName", "StudyDate"))
    assert got == {s.study_instance_uid: {"PatientID": s.patient_id, "PatientName": s.patient_name,
                                          "StudyDate": s.study_date} for s in CORPUS.studies}


# --------------------------------------------------------------------------
# 3. findtui --batch vs DCMTK findscu, same query, same peer
# --------------------------------------------------------------------------

COMPARISONS = {
    "orthanc-P-PATIENT": ("orthanc", ["-P"], ["QueryRetrieveLevel=PATIENT", "PatientName",
                                               "PatientID", "PatientBirthDate", "PatientSex"]),
    "orthanc-S-STUDY-range": ("orthanc", ["-S"], [
        "QueryRetrieveLevel=STUDY", "StudyDate=20240101-20241231", "StudyInstanceUID",
        "PatientName", "PatientID", "StudyDescription", "AccessionNumber", "ModalitiesInStudy"]),
    "orthanc-S-SERIES": ("orthanc", ["-S"], [
        "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={THE_STUDY.study_instance_uid}",
        "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription"]),
    "orthanc-P-IMAGE": ("orthanc", ["-P"], [
        "QueryRetrieveLevel=IMAGE", f"SeriesInstanceUID={THE_SERIES.series_instance_uid}",
        "SOPInstanceUID", "SOPClassUID", "InstanceNumber"]),
    "orthanc-W": ("orthanc", ["-W"], WORKLIST_KEYS),
    "dcmqrscp-P-STUDY": ("dcmqrscp", ["-P"], [
        "QueryRetrieveLevel=STUDY", "PatientID=FT0003", "StudyInstanceUID", "StudyDate",
        "StudyDescription", "PatientName"]),
    "dcmqrscp-S-STUDY-wildcard": ("dcmqrscp", ["-S"], [
        "QueryRetrieveLevel=STUDY", "PatientName=*A*", "StudyInstanceUID", "PatientName",
        "PatientID", "StudyDate", "AccessionNumber"]),
    "dcmqrscp-O-PATIENT": ("dcmqrscp", ["-O"], [
        "QueryRetrieveLevel=PATIENT", "PatientID", "PatientName", "PatientBirthDate"]),
    "wlmscpfs-W": ("wlmscpfs", ["-W"], WORKLIST_KEYS),
}


@pytest.mark.parametrize("case", list(COMPARISONS))
def test_batch_matches_dcmtk_findscu(request, tmp_path, case):
    peer_name, model_args, keys = COMPARISONS[case]
    peer = request.getfixturevalue(peer_name)
    reference = find_with_dcmtk(peer, model_args, keys)
    assert reference, "findscu got no responses: the comparison would prove nothing"

    r = run_cli(["-q", "-w", "-od", str(tmp_path), "--output-format", "jsonl", *model_args,
                 *key_args(keys), *peer_args(peer)])
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    files = sorted(tmp_path.glob("rsp*.dcm"))
    assert [f.name for f in files] == [f"rsp{i:06d}.dcm" for i in range(1, len(reference) + 1)]
    ours = [dcmread(f) for f in files]
    assert Counter(dataset_items(ds) for ds in ours) == Counter(
        dataset_items(ds) for ds in reference)

    lines = r.stdout.splitlines()
    assert len(lines) == len(reference)
    from_json = [Dataset.from_json(json.loads(line)) for line in lines]
    for keyword in ("PatientID", "AccessionNumber", "StudyInstanceUID", "SOPInstanceUID"):
        if keyword in reference[0]:
            assert Counter(values(from_json, keyword)) == Counter(values(reference, keyword))
    assert Counter(values(from_json, "PatientName")) == Counter(values(reference, "PatientName"))


# --------------------------------------------------------------------------
# 4. Transfer syntaxes
# --------------------------------------------------------------------------

TS_KEYS = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName", "StudyDate"]


def _check_ts_responses(directory: Path, ts: str) -> None:
    files = sorted(directory.glob("rsp*.dcm"))
    assert len(files) == len(CORPUS.studies)
    got = {}
    for f in files:
        ds = dcmread(f)
        assert ds.file_meta.TransferSyntaxUID == ts
        assert ds.file_meta.MediaStorageSOPClassUID == STUDY_ROOT_FIND
        got[str(ds.StudyInstanceUID)] = (str(ds.PatientName), str(ds.StudyDate))
    assert got == {s.study_instance_uid: (s.patient_name, s.study_date) for s in CORPUS.studies}


def test_transfer_syntax_only_its_own(single_ts_peer, tmp_path):
    (ts,) = single_ts_peer.transfer_syntaxes
    r = run_cli(["-q", "-w", "-od", str(tmp_path), "--transfer-syntax", CLI_TS_NAMES[ts], "-S",
                 *key_args(TS_KEYS), *peer_args(single_ts_peer)])
    assert r.returncode == 0, r.stderr
    _check_ts_responses(tmp_path, ts)
    # the bytes after the file meta really are in that transfer syntax
    raw = (tmp_path / "rsp000001.dcm").read_bytes()
    assert raw[128:132] == b"DICM" and raw[132:140] == b"\x02\x00\x00\x00UL\x04\x00"
    body = raw[144 + struct.unpack("<I", raw[140:144])[0]:]
    if ts == DEFLATED_EXPLICIT_VR_LE:
        assert b"STUDY" not in body
        body = zlib.decompress(body, -zlib.MAX_WBITS)
    level_element = {  # (0008,0052) CS "STUDY "
        IMPLICIT_VR_LE: b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY ",
        EXPLICIT_VR_LE: b"\x08\x00\x52\x00CS\x06\x00STUDY ",
        DEFLATED_EXPLICIT_VR_LE: b"\x08\x00\x52\x00CS\x06\x00STUDY ",
        EXPLICIT_VR_BE: b"\x00\x08\x00\x52CS\x00\x06STUDY ",
    }[ts]
    assert level_element in body


def test_transfer_syntax_only_another_fails_cleanly(single_ts_peer, tmp_path):
    (ts,) = single_ts_peer.transfer_syntaxes
    others = [t for t in UNCOMPRESSED_TRANSFER_SYNTAXES if t != ts]
    # CLI: one other syntax (the next one), exit 3, a clear one-line message
    other = UNCOMPRESSED_TRANSFER_SYNTAXES[(UNCOMPRESSED_TRANSFER_SYNTAXES.index(ts) + 1) % 4]
    r = run_cli(["-w", "-od", str(tmp_path), "--transfer-syntax", CLI_TS_NAMES[other], "-S",
                 *key_args(TS_KEYS), *peer_args(single_ts_peer)])
    assert r.returncode == EXIT_NETWORK, r.stderr
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("E: ")]
    assert any("--transfer-syntax" in line and "presentation context" in line
               for line in errors), r.stderr
    assert not list(tmp_path.glob("rsp*.dcm"))
    # engine: each other syntax alone gives AssociationFailed('no-context'), nothing else
    for other in others:
        outcome = engine_find(single_ts_peer, S, TS_KEYS, transfer_syntax=CLI_TS_NAMES[other])
        assert len(outcome.events) == 1, (other, outcome.events)
        failed = outcome.events[0]
        assert isinstance(failed, AssociationFailed)
        assert failed.kind == "no-context", (other, failed)


def test_default_proposal_succeeds(single_ts_peer, tmp_path):
    (ts,) = single_ts_peer.transfer_syntaxes
    outcome = engine_find(single_ts_peer, S, TS_KEYS)
    assert outcome.associated.transfer_syntax == ts
    assert len(outcome.ok()) == len(CORPUS.studies)
    r = run_cli(["-q", "-w", "-od", str(tmp_path), "-S", *key_args(TS_KEYS),
                 *peer_args(single_ts_peer)])
    assert r.returncode == 0, r.stderr
    _check_ts_responses(tmp_path, ts)


# --------------------------------------------------------------------------
# 5. Extended negotiation, as an SCP received it
# --------------------------------------------------------------------------

# The SCP here answers each item with the bytes it got, these positions zeroed.
ZEROED = {1, 3}
EXT_FLAGS = ("--relational-query", "--dt-matching", "--fuzzy-names", "--timezone-adj",
             "--enhanced-conversion")
EXT_DESCRIPTIONS = {  # the CLI's wording (README), spelled out here
    "--relational-query": "relational queries",
    "--dt-matching": "combined date-time matching",
    "--fuzzy-names": "fuzzy semantic matching of person names",
    "--timezone-adj": "timezone query adjustment",
    "--enhanced-conversion": "enhanced multi-frame image conversion",
}
_calling_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def ext_neg_scp():
    """A pynetdicom SCP recording the extended negotiation items it receives,
    per calling AE title; it replies with ZEROED positions set to 0, or not at
    all when the calling AE title starts with NOREPLY."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import Verification

    received: dict[str, dict[str, bytes]] = {}
    lock = threading.Lock()

    def on_extended(event):
        calling = event.assoc.requestor.ae_title.strip()
        info = {str(uid): bytes(data) for uid, data in event.app_info.items()}
        with lock:
            received[calling] = info
        if calling.startswith("NOREPLY"):
            return {}
        return {uid: bytes(0 if i in ZEROED else b for i, b in enumerate(data))
                for uid, data in info.items()}

    def on_find(event):
        ds = Dataset()
        ds.PatientName = "EXT^NEG"
        ds.PatientID = "EXT1"
        if "QueryRetrieveLevel" in event.identifier:
            ds.QueryRetrieveLevel = event.identifier.QueryRetrieveLevel
        yield 0xFF00, ds

    ae = AE("EXTNEG")
    for uid in (PATIENT_ROOT_FIND, STUDY_ROOT_FIND, PATIENT_STUDY_ONLY_FIND,
                MODALITY_WORKLIST_FIND, Verification):
        ae.add_supported_context(uid, list(UNCOMPRESSED_TRANSFER_SYNTAXES))
    server = ae.start_server(("127.0.0.1", 0), block=False,
                             evt_handlers=[(evt.EVT_SOP_EXTENDED, on_extended),
                                           (evt.EVT_C_FIND, on_find)])
    try:
        yield SimpleNamespace(address="127.0.0.1", port=server.socket.getsockname()[1],
                              ae_title="EXTNEG", received=received)
    finally:
        server.shutdown()


def _run_ext(scp, model_flag, flags, keys, prefix="EXT"):
    calling = f"{prefix}{next(_calling_numbers):03d}"
    r = run_cli(["-aet", calling, model_flag, *flags, *key_args(keys), "-aec", scp.ae_title,
                 scp.address, str(scp.port)])
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r, scp.received.get(calling)


def _ext_lines(stderr: str) -> list[str]:
    return [line[3:] for line in stderr.splitlines() if line.startswith("I: Extended negotiation:")]


QR_EXT_CASES = [
    ("-S", ("--relational-query",)),
    ("-S", ("--dt-matching", "--timezone-adj")),
    ("-P", ("--fuzzy-names", "--enhanced-conversion")),
    ("-O", ("--relational-query", "--fuzzy-names", "--timezone-adj")),
    ("-S", EXT_FLAGS),
]
QR_SOP = {"-P": PATIENT_ROOT_FIND, "-S": STUDY_ROOT_FIND, "-O": PATIENT_STUDY_ONLY_FIND}


@pytest.mark.parametrize("model_flag, flags", QR_EXT_CASES,
                         ids=["+".join(f[2:] for f in c[1]) + c[0] for c in QR_EXT_CASES])
def test_qr_extended_negotiation_bytes_and_report(ext_neg_scp, model_flag, flags):
    r, received = _run_ext(ext_neg_scp, model_flag, flags, ["QueryRetrieveLevel=STUDY",
                                                             "PatientName"])
    expected = bytes(int(f in flags) for f in EXT_FLAGS)
    assert received == {QR_SOP[model_flag]: expected}
    assert _ext_lines(r.stderr) == [
        f"Extended negotiation: {EXT_DESCRIPTIONS[f]}: "
        + ("not supported" if EXT_FLAGS.index(f) in ZEROED else "accepted")
        for f in EXT_FLAGS if f in flags
    ]
    assert "I: Find SCP Response: 1 - 0xFF00 (Pending)" in r.stderr.splitlines()


WL_EXT_CASES = [("--fuzzy-names",), ("--timezone-adj",), ("--fuzzy-names", "--timezone-adj")]


@pytest.mark.parametrize("flags", WL_EXT_CASES, ids=["+".join(f[2:] for f in c)
                                                     for c in WL_EXT_CASES])
def test_worklist_extended_negotiation_bytes_and_report(ext_neg_scp, flags):
    r, received = _run_ext(ext_neg_scp, "-W", flags, ["PatientName"])
    fuzzy, tz = int("--fuzzy-names" in flags), int("--timezone-adj" in flags)
    assert received == {MODALITY_WORKLIST_FIND: b"\x01\x01" + bytes([fuzzy, tz])}
    # worklist positions: fuzzy is byte 2 (kept by the SCP), timezone byte 3 (zeroed)
    expected = []
    if fuzzy:
        expected.append(f"Extended negotiation: {EXT_DESCRIPTIONS['--fuzzy-names']}: accepted")
    if tz:
        expected.append(
            f"Extended negotiation: {EXT_DESCRIPTIONS['--timezone-adj']}: not supported")
    assert _ext_lines(r.stderr) == expected


def test_no_extended_negotiation_flag_sends_no_item(ext_neg_scp):
    r, received = _run_ext(ext_neg_scp, "-S", (), ["QueryRetrieveLevel=STUDY", "PatientName"])
    assert not received  # None or {}: no item was proposed
    assert _ext_lines(r.stderr) == []


def test_extended_negotiation_without_reply_is_not_reported_accepted(ext_neg_scp):
    r, received = _run_ext(ext_neg_scp, "-S", ("--relational-query", "--fuzzy-names"),
                           ["QueryRetrieveLevel=STUDY", "PatientName"], prefix="NOREPLY")
    assert received == {STUDY_ROOT_FIND: b"\x01\x00\x01\x00\x00"}
    lines = _ext_lines(r.stderr)
    assert [line.rsplit(": ", 1)[0] for line in lines] == [
        f"Extended negotiation: {EXT_DESCRIPTIONS['--relational-query']}",
        f"Extended negotiation: {EXT_DESCRIPTIONS['--fuzzy-names']}"]
    assert all("not supported" in line and "accepted" not in line for line in lines), lines


# --------------------------------------------------------------------------
# 6. The -v log against Orthanc; a rejected association
# --------------------------------------------------------------------------


def test_verbose_log_against_orthanc(orthanc):
    expected = [s for s in CORPUS.studies if "20240101" <= s.study_date <= "20241231"]
    r = run_cli(["-v", "-S", *key_args(["QueryRetrieveLevel=STUDY",
                                        "StudyDate=20240101-20241231", "StudyInstanceUID",
                                        "PatientName"]), *peer_args(orthanc)])
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == "I: Requesting Association"
    for line in ("I: Association Accepted", "I: Sending Find Request: MsgID 1",
                 "I: # Request Identifier", "I: Find SCP Result: 0x0000 (Success)"):
        assert line in lines, line
    assert lines[-1] == "I: Releasing Association"
    responses = [line for line in lines if line.startswith("I: Find SCP Response: ")]
    assert responses == [f"I: Find SCP Response: {i} - 0xFF00 (Pending)"
                         for i in range(1, len(expected) + 1)]
    assert lines.count("I: # Response Identifier") == len(expected)
    order = [lines.index(x) for x in ("I: Requesting Association", "I: Association Accepted",
                                      "I: Sending Find Request: MsgID 1",
                                      "I: # Request Identifier", responses[0],
                                      "I: # Response Identifier",
                                      "I: Find SCP Result: 0x0000 (Success)",
                                      "I: Releasing Association")]
    assert order == sorted(order)
    for study in expected:  # every response identifier is dumped, names decoded
        assert any(study.study_instance_uid in line for line in lines), study
        assert any(f"[{study.patient_name}]" in line for line in lines), study.patient_name
    assert r.stdout == ""


def test_rejected_called_ae_title(dcmqrscp):
    r = run_cli(["-S", "-k", "QueryRetrieveLevel=STUDY", "-aec", "NOT-QRSCP",
                 dcmqrscp.address, str(dcmqrscp.port)])
    assert r.returncode == EXIT_NETWORK, r.stderr
    assert "Traceback" not in r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith("E: ") and "rejected" in last, r.stderr
    assert "called AE title" in last, r.stderr


class _LateEvent(threading.Event):
    """An Event whose waiter wakes up late: what a busy scheduler sometimes does."""

    def wait(self, timeout=None):
        result = super().wait(timeout)
        threading.Event().wait(0.3)
        return result


def test_rejection_is_reported_even_when_pynetdicom_sees_the_close_first(dcmqrscp,
                                                                          monkeypatch):
    """That scheduling made deterministic: the ACSE thread wakes 0.3 s late."""
    from pynetdicom import transport

    original_init = transport.AssociationSocket.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if not self._ready.is_set():  # our (requestor) socket
            self._ready = _LateEvent()

    monkeypatch.setattr(transport.AssociationSocket, "__init__", init)
    request = FindRequest(network(dcmqrscp, called_aet="NOT-QRSCP"),
                          build_identifier(["QueryRetrieveLevel=STUDY"]), S)
    events = list(FindQuery(request).events())
    assert len(events) == 1 and isinstance(events[0], AssociationFailed), events
    assert events[0].kind == "rejected", events[0]
    assert "called AE title not recognised" in events[0].message
