"""Retrieve (C-GET / C-MOVE) against real peers, compared with DCMTK's getscu/movescu.

Each peer test retrieves with ``findtui --batch ... --retrieve`` and with DCMTK's
getscu/movescu from the same peer in the same test, and compares the SOP Instance UIDs
received (and both with what the peer was loaded with). Also: the file layout and its
sanitising of hostile values, resume, cancel, the errors a user meets, and a fault peer
(a peer abort mid-way, failed sub-operations).
"""

from __future__ import annotations

import resource
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

import peers
from findtui.cli import ExitCode
from findtui.engine.models import QueryModel
from findtui.engine.network import Network
from findtui.engine.retrieve import (
    InstanceWriter, ItemDone, Layout, RetrieveError, RetrieveFault, RetrieveJob,
    RetrieveRequest, RetrieveSummary, item_from_match, safe_component,
)

OUR_AET = "FINDTUI"
DCMTK_AET = "MOVESCU"


def received_uids(folder: Path) -> set[str]:
    """The SOP Instance UIDs of the DICOM files under ``folder`` (read from the files)."""
    uids = set()
    for path in folder.rglob("*"):
        if path.is_file():
            uids.add(str(dcmread(path, stop_before_pixels=True).SOPInstanceUID))
    return uids


def part_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]


def findtui(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "findtui", "--batch", "-aet", OUR_AET, *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def ports():
    return peers.free_ports(2)


@pytest.fixture(scope="module")
def orthanc_rt(tmp_path_factory, ports):
    """Orthanc that answers C-GET and C-MOVE and knows our AE and DCMTK's movescu."""
    ours, dcmtk = ports
    extra = {"DicomAlwaysAllowGet": True, "DicomAlwaysAllowMove": True,
             "DicomModalities": {"findtui": [OUR_AET, "127.0.0.1", ours],
                                 "movescu": [DCMTK_AET, "127.0.0.1", dcmtk]}}
    with peers.orthanc(tmp_path_factory.mktemp("orthanc-rt"), extra_config=extra) as peer:
        yield peer


@pytest.fixture(scope="module")
def dcmqrscp_rt(tmp_path_factory, ports):
    ours, dcmtk = ports
    with peers.dcmqrscp(tmp_path_factory.mktemp("dcmqrscp-rt"), move_destinations={
            OUR_AET: ("127.0.0.1", ours), DCMTK_AET: ("127.0.0.1", dcmtk)}) as peer:
        yield peer


def _patient_with_studies(peer, n: int = 2):
    return next(p for p in peer.patients if len(p.studies) >= n)


def _dcmtk_get(peer, study_uids, folder: Path) -> None:
    getscu = peers.require_binary("getscu", "dcmtk")
    folder.mkdir(parents=True, exist_ok=True)
    for uid in study_uids:
        r = subprocess.run([getscu, "-S", "-aet", DCMTK_AET, "-aec", peer.ae_title, "-od",
                            str(folder), peer.address, str(peer.port), "-k",
                            "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={uid}"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr


def _dcmtk_move(peer, study_uids, folder: Path, port: int) -> None:
    movescu = peers.require_binary("movescu", "dcmtk")
    folder.mkdir(parents=True, exist_ok=True)
    for uid in study_uids:
        r = subprocess.run([movescu, "-S", "-aet", DCMTK_AET, "-aem", DCMTK_AET, "-aec",
                            peer.ae_title, "--port", str(port), "-od", str(folder),
                            peer.address, str(peer.port), "-k", "QueryRetrieveLevel=STUDY",
                            "-k", f"StudyInstanceUID={uid}"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("peer_name", ["orthanc_rt", "dcmqrscp_rt"])
@pytest.mark.parametrize("method", ["get", "move"])
def test_retrieve_receives_what_dcmtk_receives(request, peer_name, method, ports, tmp_path):
    peer = request.getfixturevalue(peer_name)
    patient = _patient_with_studies(peer)
    expected = {i.sop_instance_uid for st in patient.studies for i in st.instances}
    ours = tmp_path / "findtui"
    extra = ["--store-port", str(ports[0]), "--store-host", "127.0.0.1"] if method == "move" \
        else []
    r = findtui("-S", "-aec", peer.ae_title, peer.address, str(peer.port),
                "-k", "QueryRetrieveLevel=STUDY", "-k", f"PatientID={patient.patient_id}",
                "--retrieve", method, *extra, "-od", str(ours))
    assert r.returncode == ExitCode.OK, r.stderr
    dcmtk = tmp_path / "dcmtk"
    uids = [st.study_instance_uid for st in patient.studies]
    if method == "get":
        _dcmtk_get(peer, uids, dcmtk)
    else:
        _dcmtk_move(peer, uids, dcmtk, ports[1])
    assert received_uids(ours) == received_uids(dcmtk) == expected
    # the default layout: PatientID/StudyInstanceUID/SeriesInstanceUID/SOPInstanceUID.dcm
    for inst in (i for st in patient.studies for i in st.instances):
        assert (ours / patient.patient_id / inst.study_instance_uid / inst.series_instance_uid
                / f"{inst.sop_instance_uid}.dcm").is_file()
    assert f"Retrieved {len(expected)} instance(s)" in r.stderr
    assert not part_files(ours)


@pytest.mark.parametrize("method", ["get", "move"])
def test_the_demo_scp_serves_retrieves(tmp_path, method):
    """The demo SCP (the TUI's --demo) answers C-GET and C-MOVE with its images; DCMTK's
    getscu receives the same instances from it."""
    from findtui.demo import DemoSCP
    from findtui.demo.retrieve import select

    port = peers.free_port()
    with DemoSCP(patients=4, seed=3, move_port=port) as demo:
        patient = demo.data.patients[1][1]
        extra = ["--store-port", str(port), "--store-host", "127.0.0.1"] if method == "move" \
            else []
        r = findtui("-S", "-aec", demo.ae_title, demo.address, str(demo.port), "-k",
                    "QueryRetrieveLevel=STUDY", "-k", f"PatientID={patient}", "--retrieve",
                    method, *extra, "-od", str(tmp_path / "ours"))
        assert r.returncode == 0, r.stderr
        ident = Dataset()
        ident.QueryRetrieveLevel, ident.PatientID = "PATIENT", patient
        expected = {c[3][0] for c in select(demo.data, ident)}
        getscu = peers.require_binary("getscu", "dcmtk")
        (tmp_path / "dcmtk").mkdir()
        d = subprocess.run([getscu, "-P", "-aec", demo.ae_title, "-od", str(tmp_path / "dcmtk"),
                            demo.address, str(demo.port), "-k", "QueryRetrieveLevel=PATIENT",
                            "-k", f"PatientID={patient}"], capture_output=True, text=True)
        assert d.returncode == 0, d.stderr
    assert received_uids(tmp_path / "ours") == received_uids(tmp_path / "dcmtk") == expected
    assert expected


def test_a_second_run_resumes_and_writes_nothing(orthanc_rt, tmp_path):
    patient = _patient_with_studies(orthanc_rt)
    args = ["-S", "-aec", orthanc_rt.ae_title, orthanc_rt.address, str(orthanc_rt.port), "-k",
            "QueryRetrieveLevel=STUDY", "-k", f"PatientID={patient.patient_id}",
            "--retrieve", "get", "-od", str(tmp_path)]
    first = findtui(*args)
    assert first.returncode == 0, first.stderr
    n = sum(len(st.instances) for st in patient.studies)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.dcm")}
    second = findtui(*args)
    assert second.returncode == 0, second.stderr
    assert f"0 written (0.0 MB), {n} already on disk" in second.stderr
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.dcm")} == before


def test_series_level_with_a_layout(orthanc_rt, tmp_path):
    study = orthanc_rt.studies[0]
    series = study.series[0]
    r = findtui("-S", "-aec", orthanc_rt.ae_title, orthanc_rt.address, str(orthanc_rt.port),
                "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={study.study_instance_uid}",
                "-k", f"SeriesInstanceUID={series.series_instance_uid}",
                "--retrieve", "get", "--layout", "{Modality}/{SeriesNumber}-{SOPInstanceUID}.dcm",
                "-od", str(tmp_path))
    assert r.returncode == 0, r.stderr
    names = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.dcm"))
    assert names == sorted(f"{series.modality}/{series.series_number}-{i.sop_instance_uid}.dcm"
                           for i in series.instances)


def test_unknown_move_destination_says_what_to_do(orthanc_rt, tmp_path):
    r = findtui("-S", "-aec", orthanc_rt.ae_title, orthanc_rt.address, str(orthanc_rt.port),
                "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=",
                "--retrieve", "move", "--move-dest", "NOBODY", "-od", str(tmp_path))
    assert r.returncode == ExitCode.FAILURE_STATUS, r.stderr
    assert "failed alike" in r.stderr and "were not tried" in r.stderr  # not one per study
    assert "Traceback" not in r.stderr


def test_store_port_in_use(orthanc_rt, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = findtui("-S", "-aec", orthanc_rt.ae_title, orthanc_rt.address,
                    str(orthanc_rt.port), "-k", "QueryRetrieveLevel=STUDY", "-k",
                    "StudyInstanceUID=", "--retrieve", "move", "--store-port", str(port),
                    "--store-host", "127.0.0.1", "-od", str(tmp_path))
    assert r.returncode == ExitCode.NETWORK
    assert f"127.0.0.1:{port}: in use by another program; choose another store port " \
           "(--store-port)" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--move-dest", "X"], "--move-dest needs --retrieve get|move"),
    (["--retrieve", "get", "--store-port", "1234"], "are for --retrieve move"),
    (["--retrieve", "move", "--store-port", "70000"], "--store-port takes a TCP port"),
    (["--retrieve", "get", "--layout", "{PatientID}.dcm"], "must contain {SOPInstanceUID}"),
    (["--retrieve", "get", "--layout", "/abs/{SOPInstanceUID}"], "relative path"),
    (["--retrieve", "get", "--layout", "{Nope}/{SOPInstanceUID}"], "{Nope} is not a placeholder"),
    (["-W", "--retrieve", "get"], "worklist items cannot be retrieved"),
])
def test_retrieve_option_errors(args, message):
    r = findtui("127.0.0.1", "9", "-k", "PatientID=1", *args)
    assert r.returncode == ExitCode.USAGE
    assert message in r.stderr


def test_ctrl_c_cancels_and_leaves_only_complete_files(orthanc_rt, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "findtui", "--batch", "-aet", OUR_AET, "-S", "-aec",
         orthanc_rt.ae_title, orthanc_rt.address, str(orthanc_rt.port), "-k",
         "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=", "--retrieve", "get", "-od",
         str(tmp_path)], stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("I: Item 1/"):
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == ExitCode.CANCELLED, "".join(lines) + rest
    assert "sending C-CANCEL" in rest
    assert not part_files(tmp_path)
    for path in tmp_path.rglob("*.dcm"):
        dcmread(path)  # complete, readable files only
    assert len(list(tmp_path.rglob("*.dcm"))) < len(orthanc_rt.instances)


def test_a_full_disk_stops_the_retrieve_and_keeps_only_complete_files(orthanc_rt, tmp_path):
    """RLIMIT_FSIZE makes every write past 256 bytes fail (EFBIG), as a full disk would."""
    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (256, 256))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    r = subprocess.run(
        [sys.executable, "-m", "findtui", "--batch", "--no-history", "-aet", OUR_AET, "-S",
         "-aec", orthanc_rt.ae_title, orthanc_rt.address, str(orthanc_rt.port), "-k",
         "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=", "--retrieve", "get", "-od",
         str(tmp_path)], capture_output=True, text=True, timeout=120, preexec_fn=small_files)
    assert r.returncode == ExitCode.OUTPUT, r.stderr
    assert "cannot write into" in r.stderr and "too large" in r.stderr
    assert "(-od)" in r.stderr
    assert r.stderr.count("cannot write into") == 1  # said once, then the retrieve stops
    assert not part_files(tmp_path) and not list(tmp_path.rglob("*.dcm"))
    assert "Traceback" not in r.stderr


# --- the file layout -------------------------------------------------------------


@pytest.mark.parametrize("value, safe", [
    ("../../etc", "_.._etc"), ("..", "_"), ("a/b\\c", "a_b_c"), ("", "_"), ("  x  ", "x"),
    ("evil\x1b[2J\x00", "evil_[2J_"), ("rtl\u202eexe.dcm", "rtl_exe.dcm"), ("x" * 300, "x" * 64),
    ("trailing. ", "trailing"), ("C:\\Windows", "C__Windows"),
])
def test_path_components_from_peer_data_are_safe(value, safe):
    assert safe_component(value) == safe


def test_a_hostile_pacs_never_writes_outside_the_folder(tmp_path):
    out = tmp_path / "out"
    writer = InstanceWriter(str(out), Layout("{PatientID}/{StudyInstanceUID}/{SOPInstanceUID}.dcm"))
    writer.check()
    path = writer.store(b"DATA", {"PatientID": "../../..", "StudyInstanceUID": "/etc",
                                  "SOPInstanceUID": "../passwd"})
    assert Path(path).resolve().is_relative_to(out.resolve())
    assert Path(path).read_bytes() == b"DATA"
    # a link inside the folder pointing outside it is not followed
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (out / "P1").symlink_to(outside)
    with pytest.raises(RetrieveError, match="outside the output folder"):
        writer.store(b"DATA", {"PatientID": "P1", "StudyInstanceUID": "S",
                               "SOPInstanceUID": "I"})
    assert not any(outside.rglob("*"))
    # never over an existing file: the second one is counted as already there
    writer.store(b"OTHER", {"PatientID": "../../..", "StudyInstanceUID": "/etc",
                            "SOPInstanceUID": "../passwd"})
    assert Path(path).read_bytes() == b"DATA" and writer.skipped == 1


def test_a_match_without_its_unique_key_is_a_clear_error():
    ds = Dataset()
    ds.PatientID = "P1"
    with pytest.raises(RetrieveError, match="has no StudyInstanceUID: add StudyInstanceUID"):
        item_from_match(QueryModel.STUDY, "STUDY", ds)
    ds.StudyInstanceUID = "1.2.3"
    ds.NumberOfStudyRelatedInstances = "4"
    item = item_from_match(QueryModel.PATIENT, "STUDY", ds)
    assert (item.identifier.PatientID, item.identifier.StudyInstanceUID, item.expected) == (
        "P1", "1.2.3", 4)


# --- a fault peer: sub-operations that fail, a peer that aborts mid-way --------------


def _ct(i: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "F1", "1.2.3", "1.2.3.4"
    ds.Modality, ds.InstanceNumber = "CT", i
    return ds


class FaultGetSCP:
    """A C-GET SCP (pynetdicom) that sends ``good`` instances, then per ``then``: 'abort'
    (A-ABORT), 'unstorable' (one instance of a class we never proposed: a failed
    sub-operation, final status B000) or 'stall' (silence until the test ends). Its C-FIND
    answers one study, 1.2.3, for the CLI's query."""

    def __init__(self, good: int, then: str) -> None:
        self.good, self.then = good, then
        self.release = threading.Event()
        ae = AE(ae_title="FAULTY")
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        for cx in ("1.2.840.10008.5.1.4.1.1.2",):
            ae.add_supported_context(cx, scp_role=True, scu_role=False)
        self.ae = ae
        self.server = None

    def _get(self, event):
        extra = 1 if self.then == "unstorable" else 0
        yield self.good + extra
        for i in range(self.good):
            yield 0xFF00, _ct(i)
        if self.then == "abort":
            event.assoc.abort()
            return
        if self.then == "stall":  # a PACS that hangs mid-way, the connection still up
            self.release.wait(120)
            return
        odd = _ct(99)
        odd.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide: not proposed
        yield 0xFF00, odd

    @staticmethod
    def _find(event):
        match = Dataset()
        match.QueryRetrieveLevel, match.StudyInstanceUID = "STUDY", "1.2.3"
        yield 0xFF00, match

    def __enter__(self):
        self.server = self.ae.start_server(("127.0.0.1", 0), block=False,
                                           evt_handlers=[(evt.EVT_C_GET, self._get),
                                                         (evt.EVT_C_FIND, self._find)])
        self.port = self.server.server_address[1]
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()


def _match() -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = "1.2.3"
    return ds


def _get_one_study(port: int, aet: str, folder) -> tuple[list, RetrieveSummary]:
    """C-GET of study 1.2.3 from a test peer: its events and their summary."""
    job = RetrieveJob(RetrieveRequest(
        Network("127.0.0.1", port, called_aet=aet), QueryModel.STUDY, "get",
        (item_from_match(QueryModel.STUDY, "STUDY", _match()),), str(folder)))
    events = list(job.events())
    summary = RetrieveSummary()
    for event in events:
        summary.feed(event)
    return events, summary


@pytest.mark.parametrize("then, outcome, kind", [("abort", "network", "aborted"),
                                                ("unstorable", "partial", None)])
def test_fault_peer(tmp_path, then, outcome, kind):
    with FaultGetSCP(good=3, then=then) as scp:
        events, summary = _get_one_study(scp.port, "FAULTY", tmp_path)
    assert summary.outcome == outcome
    assert len(list(tmp_path.rglob("*.dcm"))) == 3  # what arrived is kept, complete
    assert not part_files(tmp_path)
    if kind:
        fault = next(e for e in events if isinstance(e, RetrieveFault))
        assert fault.kind == kind and "3 instance(s) written so far are kept" in fault.message
    else:
        done = next(e for e in events if isinstance(e, ItemDone))
        assert done.failed == 1 and done.status == 0xB000 and "retry" in done.advice


def test_a_pacs_that_accepts_no_storage_class_says_use_move(tmp_path):
    """C-GET needs the PACS to accept our storage classes with the SCP role: one that
    accepts none gets a clear fault (use C-MOVE), not a run that receives nothing."""
    ae = AE(ae_title="NOSTORE")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    try:
        events, summary = _get_one_study(server.server_address[1], "NOSTORE", tmp_path)
    finally:
        server.shutdown()
    fault = next(e for e in events if isinstance(e, RetrieveFault))
    assert fault.kind == "no-context" and "use --retrieve move" in fault.message
    assert summary.outcome == "network"


def test_out_of_resources_is_a_failure_with_what_to_try(tmp_path):
    """0xA702 (out of resources, sub-operations not done): the item fails and says what
    to try; what arrived before it is kept."""
    ae = AE(ae_title="TIRED")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_supported_context(CTImageStorage, scp_role=True, scu_role=False)

    def on_get(event):
        yield 2
        yield 0xFF00, _ct(0)
        status = Dataset()
        status.Status = 0xA702
        status.NumberOfRemainingSuboperations = 1
        yield status, None

    server = ae.start_server(("127.0.0.1", 0), block=False,
                             evt_handlers=[(evt.EVT_C_GET, on_get)])
    try:
        events, summary = _get_one_study(server.server_address[1], "TIRED", tmp_path)
    finally:
        server.shutdown()
    done = next(e for e in events if isinstance(e, ItemDone))
    assert done.status == 0xA702 and done.category == "failure"
    assert "out of resources" in done.advice and done.written == 1
    assert summary.outcome == "partial"  # one instance arrived and is kept


def test_a_pacs_that_stalls_mid_get_is_ended_by_the_dimse_timeout(tmp_path):
    """The PACS sends 2 instances, then nothing (the connection stays up): the DIMSE timeout
    (-td) ends the retrieve with a message naming it; the 2 complete files are kept, no
    temporary file is left."""
    with FaultGetSCP(good=2, then="stall") as scp:
        r = findtui("-S", "-td", "2", "-aec", "FAULTY", "127.0.0.1", str(scp.port), "-k",
                    "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=", "--retrieve", "get",
                    "-od", str(tmp_path), timeout=60)
    assert r.returncode == ExitCode.NETWORK, r.stderr
    assert "no response within the DIMSE timeout (2 s) during item 1" in r.stderr
    assert "the instances written are kept" in r.stderr and "(-td)" in r.stderr
    assert "Retrieved 2 instance(s) of 0/1 item(s)" in r.stderr  # the item cut short counts
    assert "Traceback" not in r.stderr
    files = list(tmp_path.rglob("*"))
    assert len([p for p in files if p.is_file()]) == 2 and not part_files(tmp_path)
    for path in (p for p in files if p.is_file()):
        assert dcmread(path).Modality == "CT"  # complete


class FaultMoveSCP:
    """A C-MOVE SCP (pynetdicom) that sends ``good`` instances to the destination (our
    Storage SCP at ``store_port``), then aborts the association mid-way."""

    def __init__(self, good: int, store_port: int) -> None:
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

        self.good, self.store_port = good, store_port
        ae = AE(ae_title="FAULTY")
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
        ae.add_requested_context(CTImageStorage)
        self.ae = ae

    def _move(self, event):
        yield "127.0.0.1", self.store_port
        yield self.good + 2
        for i in range(self.good):
            yield 0xFF00, _ct(i)
        event.assoc.abort()

    def __enter__(self):
        self.server = self.ae.start_server(("127.0.0.1", 0), block=False,
                                           evt_handlers=[(evt.EVT_C_MOVE, self._move)])
        self.port = self.server.server_address[1]
        return self

    def __exit__(self, *exc):
        self.server.shutdown()


def test_a_peer_abort_mid_move_keeps_what_arrived(tmp_path):
    store_port = peers.free_port()
    with FaultMoveSCP(good=3, store_port=store_port) as scp:
        job = RetrieveJob(RetrieveRequest(
            Network("127.0.0.1", scp.port, called_aet="FAULTY", calling_aet=OUR_AET),
            QueryModel.STUDY, "move", (item_from_match(QueryModel.STUDY, "STUDY", _match()),),
            str(tmp_path), store_port=store_port, store_host="127.0.0.1"))
        events = list(job.events())
    summary = RetrieveSummary()
    for event in events:
        summary.feed(event)
    fault = next(e for e in events if isinstance(e, RetrieveFault))
    assert fault.kind == "aborted" and "3 instance(s) written so far are kept" in fault.message
    assert summary.outcome == "network" and summary.written == 3
    assert len(list(tmp_path.rglob("*.dcm"))) == 3 and not part_files(tmp_path)


# --- memory: a huge instance is held once ------------------------------------------------


class BigInstanceSCP(FaultGetSCP):
    """Answers the study 1.2.3 with one CT instance of ``size`` bytes of pixel data."""

    def __init__(self, size: int) -> None:
        super().__init__(good=0, then="none")
        self.size = size

    def _get(self, event):
        yield 1
        ds = _ct(0)
        ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored = self.size // 16384, 8192, 16, 16
        ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 15, 0, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = bytes(self.size)
        yield 0xFF00, ds


# The peak RSS (KiB) of one `findtui --batch ...` run, measured in a wrapper whose only child
# it is (this test process has had bigger children, Orthanc among them).
PEAK_RSS = ("import resource, subprocess, sys\n"
            "r = subprocess.run([sys.executable, '-m', 'findtui', '--batch', *sys.argv[1:]],"
            " capture_output=True)\n"
            "assert r.returncode == 0, r.stderr.decode()[-2000:]\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")


def _peak_rss_of_a_get(size: int, folder: Path) -> int:
    with BigInstanceSCP(size) as scp:
        measured = subprocess.run(
            [sys.executable, "-c", PEAK_RSS, "--no-history", "-q", "-S", "-aec",
             "FAULTY", "127.0.0.1", str(scp.port), "-k", "QueryRetrieveLevel=STUDY", "-k",
             "StudyInstanceUID=", "--retrieve", "get", "-od", str(folder)],
            capture_output=True, text=True, timeout=600)
    assert measured.returncode == 0, measured.stderr
    (written,) = [p for p in folder.rglob("*") if p.is_file()]
    assert written.stat().st_size > size and not part_files(folder)
    return int(measured.stdout.strip()) * 1024


def test_a_huge_instance_is_not_held_twice_in_memory(tmp_path):
    """A C-GET of a 256 MB instance: the client's peak memory grows by about the instance
    once (pynetdicom assembles it in memory), not twice (it was copied again to put the file
    meta in front of it)."""
    size = 256 * 1024 * 1024
    small = _peak_rss_of_a_get(1024 * 1024, tmp_path / "small")
    big = _peak_rss_of_a_get(size, tmp_path / "big")
    assert big - small < 1.5 * size, f"peak {big / 2**20:.0f} MiB, a 1 MiB instance: " \
                                     f"{small / 2**20:.0f} MiB"


@pytest.mark.parametrize("pdu, offered", [(None, 1024 * 1024), ("32768", 32768)])
def test_a_retrieve_receives_large_pdus_unless_pdu_is_given(tmp_path, pdu, offered):
    """-pdu left at findscu's default: the retrieve association offers 1 MiB (instances in
    64 times fewer PDUs); a -pdu given is kept."""
    from findtui.demo import DemoSCP

    with DemoSCP(patients=3, seed=3) as demo:
        patient = demo.data.patients[0][1]
        extra = ["-pdu", pdu] if pdu else []
        r = findtui("-S", "-aec", demo.ae_title, demo.address, str(demo.port), *extra, "-k",
                    "QueryRetrieveLevel=STUDY", "-k", f"PatientID={patient}", "--retrieve",
                    "get", "-od", str(tmp_path))
        assert r.returncode == 0, r.stderr
        assert demo.retrieve_peer_pdus and set(demo.retrieve_peer_pdus) == {offered}
    assert received_uids(tmp_path)
