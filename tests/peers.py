"""Real third-party DICOM peers for the tests: Orthanc, DCMTK, pynetdicom.

Each peer is started as a separate process on 127.0.0.1 on a free port, with
its own configuration and storage in a directory of its own, is loaded with a
deterministic test corpus, is waited for until it answers a C-ECHO, and is
stopped (SIGTERM to its process group, then SIGKILL) when its context manager
exits, also when the test failed.

    with orthanc(tmp_path) as peer:          # peer.address, .port, .ae_title, .http_url
        rsps = find_with_dcmtk(peer, ["-S"], ["QueryRetrieveLevel=STUDY", "PatientName"])

A missing binary is a test *failure* naming the Debian package to install,
never a skip: ``.ci/install`` installs them.

The peers:

* :func:`orthanc`: Orthanc with the ModalityWorklists plugin (Q/R + worklist).
* :func:`dcmqrscp`: DCMTK's Q/R SCP; ``transfer_syntax=IMPLICIT_VR_LE`` makes
  it accept Implicit VR Little Endian only (``+xi``).
* :func:`wlmscpfs`: DCMTK's worklist SCP over ``<dir>/<AET>/*.wl`` files.
* :func:`qrscp`: pynetdicom's ``qrscp`` app; ``transfer_syntax=X`` restricts
  every presentation context it accepts to the one transfer syntax X;
  ``conformant=True`` fixes its C-FIND answers (see :func:`qrscp`).
* :func:`single_ts_peer`: a peer that accepts only one given transfer
  syntax, for each of the four uncompressed ones: DCMTK where DCMTK can do it
  (Implicit VR LE: ``dcmqrscp +xi``), the restricted pynetdicom qrscp for the
  others. DCMTK's SCPs accept FIND/ECHO contexts with Implicit LE *only*
  (``+xi``) or with an explicit syntax *preferred* (``+xe``/``+xb``/``+xd``,
  still accepting the other uncompressed ones), never with an explicit one
  alone; dcmqrscp's ``-xf`` association profile applies to storage SOP
  classes only (``DcmQueryRetrieveSCP::negotiateAssociation``).

Reference clients for comparison tests: :func:`find_with_dcmtk` (DCMTK
``findscu -X``) and :func:`find_with_pynetdicom` (``python -m pynetdicom
findscu -w``), plus :func:`run_findscu` when the exit status matters.

This module is also a script: ``python tests/peers.py qrscp --one-ts UID
-- QRSCP_ARGS`` runs pynetdicom's qrscp restricted to one transfer syntax.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import generate_uid

LOCALHOST = "127.0.0.1"

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
UNCOMPRESSED_TRANSFER_SYNTAXES = (
    IMPLICIT_VR_LE,
    EXPLICIT_VR_LE,
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
)
TRANSFER_SYNTAX_NAMES = {
    IMPLICIT_VR_LE: "implicit-le",
    EXPLICIT_VR_LE: "explicit-le",
    DEFLATED_EXPLICIT_VR_LE: "deflated-le",
    EXPLICIT_VR_BE: "explicit-be",
}

VERIFICATION = "1.2.840.10008.1.1"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
PATIENT_STUDY_ONLY_FIND = "1.2.840.10008.5.1.4.1.2.3.1"
MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"

_SOP_CLASS_BY_MODALITY = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
    "SR": "1.2.840.10008.5.1.4.1.1.88.11",
    "OT": "1.2.840.10008.5.1.4.1.1.7",
}

ORTHANC_BINARY = "/usr/sbin/Orthanc"
ORTHANC_WORKLIST_PLUGIN = "/usr/share/orthanc/plugins/libModalityWorklists.so"

START_TIMEOUT = 30.0


# --------------------------------------------------------------------------
# Requirements, ports, processes
# --------------------------------------------------------------------------


def _fail(message: str) -> None:
    import pytest

    pytest.fail(message, pytrace=False)


def require_binary(name: str, debian_package: str) -> str:
    """Return the path of ``name``; fail the test if it is not installed."""
    path = name if os.path.isabs(name) and os.access(name, os.X_OK) else shutil.which(name)
    if not path:
        _fail(
            f"{name} is not installed: it comes with the Debian package "
            f"'{debian_package}' (apt-get install -y {debian_package}; "
            f"or run `bash .ci/install`)"
        )
    return path


def require_python_module(module: str, pip_package: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        _fail(
            f"Python module {module!r} is missing: pip install {pip_package} "
            f"(or run `bash .ci/install`)"
        )


def free_ports(count: int = 1) -> list[int]:
    """Ports free on 127.0.0.1 right now (bind to port 0, read, close)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOCALHOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


_LIVE: set[Server] = set()
_LIVE_LOCK = threading.Lock()


class Server:
    """A server process in its own process group, with its output in a log file."""

    def __init__(self, name: str, cmd: Sequence[str], cwd: Path, env: dict | None = None):
        self.name = name
        self.cmd = [str(c) for c in cmd]
        self.cwd = Path(cwd)
        self.log_path = self.cwd / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        with _LIVE_LOCK:
            _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers, reap."""
        try:
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            # The group may hold children (dcmqrscp forks one per association).
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        finally:
            self._log.close()
            with _LIVE_LOCK:
                _LIVE.discard(self)


@atexit.register
def _stop_leftovers() -> None:  # belt and braces: e.g. on KeyboardInterrupt
    for server in list(_LIVE):
        server.stop(timeout=3)


def echo(
    address: str,
    port: int,
    ae_title: str,
    transfer_syntax: str | None = None,
    calling_ae: str = "FINDTUI-TEST",
    timeout: float = 5.0,
) -> bool:
    """True if the peer accepts an association with a Verification context
    (proposing only ``transfer_syntax`` if given) and answers C-ECHO with Success."""
    from pynetdicom import AE

    ae = AE(calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = timeout
    if transfer_syntax:
        ae.add_requested_context(VERIFICATION, [transfer_syntax])
    else:
        ae.add_requested_context(VERIFICATION)
    assoc = ae.associate(address, port, ae_title=ae_title)
    if not assoc.is_established:
        return False
    try:
        status = assoc.send_c_echo()
        return bool(status) and status.Status == 0x0000
    finally:
        assoc.release()


def _port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


class StartError(Exception):
    """A peer did not come up; ``retry`` when another port may help."""

    def __init__(self, message: str, retry: bool):
        super().__init__(message)
        self.retry = retry


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def listens_on(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` holds the listening socket of ``port``
    (None where /proc cannot tell)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None if not os.path.exists("/proc/net/tcp") else False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def wait_until_ready(
    server: Server,
    address: str,
    port: int,
    ae_title: str,
    transfer_syntax: str | None = None,
    timeout: float = START_TIMEOUT,
) -> None:
    """Poll with C-ECHO until the peer answers; raise StartError if it died,
    timed out, or if what answers on ``port`` is not this server."""
    import logging

    deadline = time.monotonic() + timeout
    quiet = logging.getLogger("pynetdicom")

    def error(what: str, retry: bool) -> StartError:
        return StartError(
            f"{server.name} {what}; command: {' '.join(server.cmd)}\n"
            f"--- {server.log_path} ---\n{server.log_tail()}",
            retry,
        )

    while True:
        if not server.alive():
            raise error(f"exited with status {server.proc.returncode} while starting", True)
        if _port_open(address, port):
            if listens_on(server.pid, port) is False:
                time.sleep(0.2)  # give a server that is binding a moment
                if server.alive() and listens_on(server.pid, port) is False:
                    raise error(f"is not the process listening on port {port}", True)
                continue
            level = quiet.level
            quiet.setLevel(logging.CRITICAL)
            try:
                if echo(address, port, ae_title, transfer_syntax, timeout=5):
                    return
            finally:
                quiet.setLevel(level)
        if time.monotonic() > deadline:
            raise error(f"did not answer C-ECHO on {address}:{port} within {timeout:.0f}s", False)
        time.sleep(0.05)


def start_server(
    name: str,
    workdir: Path,
    make_cmd,
    *,
    ae_title: str,
    transfer_syntax: str | None = None,
    ports: int = 1,
    env: dict | None = None,
    attempts: int = 3,
    ready_check=None,
) -> tuple[Server, list[int]]:
    """Pick ``ports`` free ports, ``make_cmd(*ports)`` (which also writes the
    config), start it and wait until it answers C-ECHO on the first port;
    retry on other ports if the server died or the port was taken meanwhile.
    ``ready_check(server, ports)`` may check more, raising StartError.
    Fails the test (with the server's log) if it never comes up."""
    last: StartError | None = None
    for _ in range(attempts):
        chosen = free_ports(ports)
        server = Server(name, make_cmd(*chosen), workdir, env=env)
        try:
            wait_until_ready(server, LOCALHOST, chosen[0], ae_title, transfer_syntax)
            if ready_check is not None:
                ready_check(server, chosen)
            return server, chosen
        except StartError as exc:
            server.stop()
            last = exc
            if not exc.retry:
                break
        except BaseException:
            server.stop()
            raise
    _fail(str(last))
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------
# Test corpus (deterministic)
# --------------------------------------------------------------------------

_UID_SALT = "findtui-test-corpus-v1"


def det_uid(*parts: object) -> str:
    """A deterministic UID under pydicom's root."""
    return generate_uid(entropy_srcs=[_UID_SALT, *map(str, parts)])


@dataclass(frozen=True)
class InstanceInfo:
    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str


@dataclass(frozen=True)
class SeriesInfo:
    series_instance_uid: str
    modality: str
    series_number: int
    description: str
    body_part: str
    study_instance_uid: str
    patient_id: str
    instances: tuple[InstanceInfo, ...]


@dataclass(frozen=True)
class StudyInfo:
    study_instance_uid: str
    study_date: str
    study_time: str
    description: str
    accession_number: str
    study_id: str
    referring_physician: str
    patient_id: str
    patient_name: str
    series: tuple[SeriesInfo, ...]

    @property
    def modalities(self) -> tuple[str, ...]:
        """ModalitiesInStudy, sorted, no duplicates."""
        return tuple(sorted({s.modality for s in self.series}))

    @property
    def instances(self) -> tuple[InstanceInfo, ...]:
        return tuple(i for s in self.series for i in s.instances)


@dataclass(frozen=True)
class PatientInfo:
    patient_id: str
    name: str
    birth_date: str
    sex: str
    specific_character_set: str  # "" = default repertoire (ASCII)
    studies: tuple[StudyInfo, ...]


@dataclass(frozen=True)
class Corpus:
    """What a peer was loaded with; tests compute expected results from it."""

    patients: tuple[PatientInfo, ...]
    datasets: tuple[Dataset, ...] = field(repr=False, compare=False)

    @property
    def studies(self) -> tuple[StudyInfo, ...]:
        return tuple(st for p in self.patients for st in p.studies)

    @property
    def series(self) -> tuple[SeriesInfo, ...]:
        return tuple(se for st in self.studies for se in st.series)

    @property
    def instances(self) -> tuple[InstanceInfo, ...]:
        return tuple(i for se in self.series for i in se.instances)

    def patient(self, patient_id: str) -> PatientInfo:
        return next(p for p in self.patients if p.patient_id == patient_id)

    def study(self, study_instance_uid: str) -> StudyInfo:
        return next(s for s in self.studies if s.study_instance_uid == study_instance_uid)


# (patient id, name, birth date, sex)
_PATIENTS = (
    ("FT0001", "DOE^JOHN", "19700101", "M"),
    ("FT0002", "SMITH^JANE^A", "19851231", "F"),
    ("FT0003", "MÜLLER^JÜRGEN", "19600229", "M"),
    ("FT0004", "山田^太郎", "19920815", "M"),
    ("FT0005", "NGUYEN^ANH", "20010704", "O"),
)
# Two studies per patient, in patient order:
# (date, time, description, referring physician, (modality of series 1, 2), body part)
_STUDIES = (
    ("20230115", "083000", "CT CHEST", "HOUSE^GREGORY", ("CT", "CT"), "CHEST"),
    ("20240220", "141500", "MR BRAIN", "", ("MR", "MR"), "HEAD"),
    ("20230301", "090000", "CHEST 2 VIEWS", "HOUSE^GREGORY", ("CR", "CR"), "CHEST"),
    ("20241105", "101010", "PET-CT WHOLE BODY", "WILSON^JAMES", ("CT", "PT"), "WHOLEBODY"),
    ("20221231", "235959", "US ABDOMEN", "", ("US", "US"), "ABDOMEN"),
    ("20250102", "000000", "MR KNEE", "CUDDY^LISA", ("MR", "MR"), "KNEE"),
    ("20240229", "120000", "CT HEAD", "WILSON^JAMES", ("CT", "CT"), "HEAD"),
    ("20240301", "120000", "XR HAND", "", ("DX", "DX"), "HAND"),
    ("20200614", "073000", "MAMMO SCREENING", "CUDDY^LISA", ("MG", "MG"), "BREAST"),
    ("20250520", "153000", "MR SPINE", "HOUSE^GREGORY", ("MR", "SR"), "SPINE"),
)
SERIES_PER_STUDY = 2
INSTANCES_PER_SERIES = 2


def _file_meta(sop_class_uid: str, sop_instance_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = EXPLICIT_VR_LE
    return meta


def _charset_for(*texts: str) -> str:
    return "" if all(t.isascii() for t in texts) else "ISO_IR 192"


def _instance_dataset(
    patient: tuple[str, str, str, str],
    study: StudyInfo,
    series: SeriesInfo,
    instance: InstanceInfo,
) -> Dataset:
    patient_id, name, birth_date, sex = patient
    ds = Dataset()
    charset = _charset_for(name)
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = instance.sop_class_uid
    ds.SOPInstanceUID = instance.sop_instance_uid
    ds.StudyDate = study.study_date
    ds.SeriesDate = study.study_date
    ds.StudyTime = study.study_time
    ds.SeriesTime = study.study_time
    ds.AccessionNumber = study.accession_number
    ds.Modality = series.modality
    ds.Manufacturer = "FINDTUI TEST"
    ds.InstitutionName = "FINDTUI HOSPITAL"
    ds.ReferringPhysicianName = study.referring_physician
    ds.StudyDescription = study.description
    ds.SeriesDescription = series.description
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth_date
    ds.PatientSex = sex
    ds.BodyPartExamined = series.body_part
    ds.StudyInstanceUID = study.study_instance_uid
    ds.SeriesInstanceUID = series.series_instance_uid
    ds.StudyID = study.study_id
    ds.SeriesNumber = series.series_number
    ds.InstanceNumber = instance.instance_number
    ds.file_meta = _file_meta(instance.sop_class_uid, instance.sop_instance_uid)
    return ds


def _build_corpus() -> Corpus:
    patients: list[PatientInfo] = []
    datasets: list[Dataset] = []
    study_no = 0
    for p_index, (patient_id, name, birth_date, sex) in enumerate(_PATIENTS):
        studies = []
        for s_local in range(2):
            spec = _STUDIES[p_index * 2 + s_local]
            date, tm, description, referring, modalities, body_part = spec
            study_no += 1
            study_uid = det_uid("study", study_no)
            series_list = []
            for se_index, modality in enumerate(modalities, start=1):
                series_uid = det_uid("series", study_no, se_index)
                instances = tuple(
                    InstanceInfo(
                        sop_instance_uid=det_uid("instance", study_no, se_index, i),
                        sop_class_uid=_SOP_CLASS_BY_MODALITY[modality],
                        instance_number=i,
                        series_instance_uid=series_uid,
                        study_instance_uid=study_uid,
                        patient_id=patient_id,
                    )
                    for i in range(1, INSTANCES_PER_SERIES + 1)
                )
                series_list.append(
                    SeriesInfo(
                        series_instance_uid=series_uid,
                        modality=modality,
                        series_number=se_index,
                        description=f"{description} {modality} {se_index}",
                        body_part=body_part,
                        study_instance_uid=study_uid,
                        patient_id=patient_id,
                        instances=instances,
                    )
                )
            studies.append(
                StudyInfo(
                    study_instance_uid=study_uid,
                    study_date=date,
                    study_time=tm,
                    description=description,
                    accession_number=f"A{study_no:05d}",
                    study_id=str(study_no),
                    referring_physician=referring,
                    patient_id=patient_id,
                    patient_name=name,
                    series=tuple(series_list),
                )
            )
        patient = PatientInfo(
            patient_id=patient_id,
            name=name,
            birth_date=birth_date,
            sex=sex,
            specific_character_set=_charset_for(name),
            studies=tuple(studies),
        )
        patients.append(patient)
        for st in patient.studies:
            for se in st.series:
                for inst in se.instances:
                    datasets.append(
                        _instance_dataset((patient_id, name, birth_date, sex), st, se, inst)
                    )
    return Corpus(patients=tuple(patients), datasets=tuple(datasets))


_CORPUS: Corpus | None = None


def corpus() -> Corpus:
    """The standard test corpus: 5 patients x 2 studies x 2 series x 2 images.

    Deterministic (fixed UIDs, names, dates). Two patients have non-ASCII
    names (ISO_IR 192): MÜLLER^JÜRGEN and 山田^太郎. Do not mutate the datasets.
    """
    global _CORPUS
    if _CORPUS is None:
        _CORPUS = _build_corpus()
    return _CORPUS


def bulk_study_datasets(n: int, start: int = 0) -> Iterator[Dataset]:
    """Studies number ``start`` to ``n - 1`` of a deterministic bulk set: one
    CT/MR/CR/US image each, two studies per patient; for benchmarks."""
    modalities = ("CT", "MR", "CR", "US")
    for k in range(start, n):
        modality = modalities[k % len(modalities)]
        study_uid = det_uid("bulk-study", k)
        series_uid = det_uid("bulk-series", k)
        sop_uid = det_uid("bulk-instance", k)
        sop_class = _SOP_CLASS_BY_MODALITY[modality]
        ds = Dataset()
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        year = 2010 + (k % 16)
        month = 1 + (k // 16) % 12
        day = 1 + (k // 192) % 28
        ds.StudyDate = f"{year:04d}{month:02d}{day:02d}"
        ds.StudyTime = f"{(k % 24):02d}{(k % 60):02d}00"
        ds.AccessionNumber = f"B{k:07d}"
        ds.Modality = modality
        ds.ReferringPhysicianName = ""
        ds.StudyDescription = f"BULK {modality} STUDY {k}"
        ds.PatientName = f"BULK^PATIENT{k // 2:06d}"
        ds.PatientID = f"BK{k // 2:06d}"
        ds.PatientBirthDate = f"{1940 + (k // 2) % 70:04d}0101"
        ds.PatientSex = "MF"[k // 2 % 2]
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = str(k)
        ds.SeriesNumber = 1
        ds.InstanceNumber = 1
        ds.file_meta = _file_meta(sop_class, sop_uid)
        yield ds


def to_part10_bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def write_part10(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    dcmwrite(path, ds, enforce_file_format=True)
    return path


# --------------------------------------------------------------------------
# Worklist (deterministic)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class WorklistItem:
    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    accession_number: str
    requested_procedure_id: str
    requested_procedure_description: str
    modality: str
    station_ae_title: str
    start_date: str
    start_time: str
    step_id: str
    step_description: str
    performing_physician: str

    @property
    def study_instance_uid(self) -> str:
        return det_uid("worklist-study", self.accession_number)

    def dataset(self) -> Dataset:
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.AccessionNumber = self.accession_number
        ds.ReferringPhysicianName = "HOUSE^GREGORY"
        ds.PatientName = self.patient_name
        ds.PatientID = self.patient_id
        ds.PatientBirthDate = self.birth_date
        ds.PatientSex = self.sex
        ds.StudyInstanceUID = self.study_instance_uid
        ds.RequestedProcedureDescription = self.requested_procedure_description
        ds.RequestedProcedureID = self.requested_procedure_id
        ds.RequestedProcedurePriority = "ROUTINE"
        step = Dataset()
        step.Modality = self.modality
        step.ScheduledStationAETitle = self.station_ae_title
        step.ScheduledProcedureStepStartDate = self.start_date
        step.ScheduledProcedureStepStartTime = self.start_time
        step.ScheduledPerformingPhysicianName = self.performing_physician
        step.ScheduledProcedureStepDescription = self.step_description
        step.ScheduledProcedureStepID = self.step_id
        step.ScheduledStationName = self.station_ae_title
        step.ScheduledProcedureStepLocation = "ROOM 1"
        ds.ScheduledProcedureStepSequence = [step]
        sop_instance_uid = det_uid("worklist-item", self.accession_number)
        ds.file_meta = _file_meta(MODALITY_WORKLIST_FIND, sop_instance_uid)
        return ds


WORKLIST: tuple[WorklistItem, ...] = (
    WorklistItem("FT0001", "DOE^JOHN", "19700101", "M", "W0001", "RP0001",
                 "CT ABDOMEN", "CT", "CT01", "20250610", "080000", "SPS0001",
                 "CT ABDOMEN W CONTRAST", "RADIOLOGIST^ONE"),
    WorklistItem("FT0003", "MÜLLER^JÜRGEN", "19600229", "M", "W0002", "RP0002",
                 "MR KNEE", "MR", "MR01", "20250610", "093000", "SPS0002",
                 "MR KNEE LEFT", "RADIOLOGIST^TWO"),
    WorklistItem("FT0006", "GARCÍA^JOSÉ", "19781120", "M", "W0003", "RP0003",
                 "US THYROID", "US", "US01", "20250611", "140000", "SPS0003",
                 "US THYROID", "RADIOLOGIST^ONE"),
    WorklistItem("FT0002", "SMITH^JANE^A", "19851231", "F", "W0004", "RP0004",
                 "CT CHEST", "CT", "CT02", "20250612", "101500", "SPS0004",
                 "CT CHEST LOW DOSE", "RADIOLOGIST^TWO"),
)


def write_worklist(directory: Path, items: Iterable[WorklistItem] = WORKLIST) -> list[Path]:
    """Write one ``<accession>.wl`` file (Explicit VR LE, with file meta) per item."""
    directory.mkdir(parents=True, exist_ok=True)
    return [write_part10(item.dataset(), directory / f"{item.accession_number}.wl") for item in items]


# --------------------------------------------------------------------------
# Peers
# --------------------------------------------------------------------------


@dataclass
class Peer:
    """A running peer. ``ae_title`` is the called AE title to use."""

    kind: str
    address: str
    port: int
    ae_title: str
    workdir: Path
    server: Server = field(repr=False)
    #: transfer syntaxes it accepts for FIND/ECHO (one item: it accepts only that one)
    transfer_syntaxes: tuple[str, ...] = (IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE)
    #: FIND SOP classes it serves
    find_models: tuple[str, ...] = ()
    #: what it was loaded with (None: no Q/R data)
    corpus: Corpus | None = field(default=None, repr=False)
    #: worklist items it serves
    worklist: tuple[WorklistItem, ...] = ()
    http_url: str | None = None

    @property
    def patients(self) -> tuple[PatientInfo, ...]:
        return self.corpus.patients if self.corpus else ()

    @property
    def studies(self) -> tuple[StudyInfo, ...]:
        return self.corpus.studies if self.corpus else ()

    @property
    def series(self) -> tuple[SeriesInfo, ...]:
        return self.corpus.series if self.corpus else ()

    @property
    def instances(self) -> tuple[InstanceInfo, ...]:
        return self.corpus.instances if self.corpus else ()

    @property
    def log_path(self) -> Path:
        return self.server.log_path

    def log_tail(self, lines: int = 40) -> str:
        return self.server.log_tail(lines)

    def echo(self, transfer_syntax: str | None = None) -> bool:
        return echo(self.address, self.port, self.ae_title, transfer_syntax)


@contextlib.contextmanager
def _workdir(workdir: Path | None, prefix: str) -> Iterator[Path]:
    if workdir is not None:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    path = Path(tempfile.mkdtemp(prefix=f"findtui-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


# ---- Orthanc ---------------------------------------------------------------


def orthanc_config(
    workdir: Path,
    dicom_port: int,
    http_port: int,
    *,
    ae_title: str = "ORTHANC",
    worklist_dir: Path | None = None,
    storage_dir: Path | None = None,
    extra: dict | None = None,
) -> dict:
    storage = Path(storage_dir) if storage_dir else workdir / "storage"
    config = {
        "Name": "findtui-test",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "TemporaryDirectory": str(workdir / "tmp"),
        "StorageCompression": False,
        "SyncStorageArea": False,
        "SaveJobs": False,
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,  # the REST API answers loopback only
        "AuthenticationEnabled": False,
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "HttpCompressionEnabled": False,
        "DicomServerEnabled": True,
        "DicomPort": dicom_port,
        "DicomAet": ae_title,
        "DicomCheckCalledAet": False,
        "DicomCheckModalityHost": False,
        # Unknown calling AEs (FINDSCU, FINDTUI, ...) may C-ECHO/C-FIND/C-STORE.
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowFindWorklist": True,
        "DicomModalities": {},
        "UnknownSopClassAccepted": True,
        "DefaultEncoding": "Utf8",
        "LimitFindResults": 0,
        "LimitFindInstances": 0,
        "StorageAccessOnFind": "Always",
        "StableAge": 3600,
        "Plugins": [ORTHANC_WORKLIST_PLUGIN],
        "Worklists": {
            "Enable": worklist_dir is not None,
            "Database": str(worklist_dir or workdir / "worklists"),
            "FilterIssuerAet": False,
            "LimitAnswers": 0,
        },
    }
    if extra:
        config.update(extra)
    return config


class OrthancPeer(Peer):
    """An Orthanc peer: also ``http_url`` and REST helpers."""

    def rest(self, method: str, path: str, body: bytes | None = None) -> object:
        assert self.http_url
        conn = http.client.HTTPConnection(LOCALHOST, self.http_port, timeout=120)
        try:
            conn.request(method, path, body=body)
            rsp = conn.getresponse()
            data = rsp.read()
            if rsp.status >= 300:
                raise RuntimeError(f"Orthanc {method} {path}: HTTP {rsp.status}: {data[:500]!r}")
            return json.loads(data) if data else None
        finally:
            conn.close()

    @property
    def http_port(self) -> int:
        assert self.http_url
        return int(self.http_url.rsplit(":", 1)[1].rstrip("/"))

    def upload(self, payloads: Iterable[bytes | Dataset], workers: int = 4) -> int:
        """POST each instance to ``/instances``, concurrently; returns the count."""
        return upload_to_orthanc(self.http_port, payloads, workers=workers)

    def statistics(self) -> dict:
        return self.rest("GET", "/statistics")  # type: ignore[return-value]


def upload_to_orthanc(http_port: int, payloads: Iterable[bytes | Dataset], workers: int = 4) -> int:
    local = threading.local()

    def post(payload: bytes | Dataset) -> None:
        data = payload if isinstance(payload, bytes) else to_part10_bytes(payload)
        conn = getattr(local, "conn", None)
        for attempt in range(3):
            if conn is None:
                conn = local.conn = http.client.HTTPConnection(LOCALHOST, http_port, timeout=120)
            try:
                conn.request(
                    "POST", "/instances", body=data,
                    headers={"Content-Type": "application/dicom"},
                )
                rsp = conn.getresponse()
                body = rsp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = local.conn = None
                if attempt == 2:
                    raise
                continue
            if rsp.status != 200:
                raise RuntimeError(f"Orthanc POST /instances: HTTP {rsp.status}: {body[:300]!r}")
            return

    # Workers pull from the (possibly lazy) iterable one item at a time: memory
    # stays flat and generation overlaps the uploads.
    items = iter(payloads)
    lock = threading.Lock()

    def work() -> int:
        done = 0
        try:
            while True:
                with lock:
                    try:
                        payload = next(items)
                    except StopIteration:
                        return done
                post(payload)
                done += 1
        finally:
            conn = getattr(local, "conn", None)
            if conn is not None:
                conn.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(work) for _ in range(workers)]
        return sum(f.result() for f in futures)


@contextlib.contextmanager
def orthanc(
    workdir: Path | None = None,
    *,
    data: Corpus | None | bool = True,
    worklist: Iterable[WorklistItem] | None = WORKLIST,
    ae_title: str = "ORTHANC",
    storage_dir: Path | None = None,
    extra_config: dict | None = None,
) -> Iterator[OrthancPeer]:
    """Run Orthanc (DICOM Q/R + ModalityWorklists plugin + REST on loopback).

    ``data=True`` loads :func:`corpus`; a :class:`Corpus` loads that one;
    ``None``/``False`` loads nothing. ``storage_dir`` reuses a storage+index
    directory (e.g. a benchmark cache); by default it is fresh under ``workdir``.
    """
    binary = require_binary(ORTHANC_BINARY, "orthanc")
    if not os.path.exists(ORTHANC_WORKLIST_PLUGIN):
        _fail(f"{ORTHANC_WORKLIST_PLUGIN} missing: install the Debian package 'orthanc'")
    with _workdir(workdir, "orthanc") as wd:
        items = tuple(worklist or ())
        wl_dir = wd / "worklists"
        write_worklist(wl_dir, items)
        (wd / "tmp").mkdir(exist_ok=True)
        config_path = wd / "orthanc.json"

        def make_cmd(dicom_port: int, http_port: int) -> list[str]:
            config = orthanc_config(
                wd, dicom_port, http_port, ae_title=ae_title, worklist_dir=wl_dir,
                storage_dir=storage_dir, extra=extra_config,
            )
            config_path.write_text(json.dumps(config, indent=2))
            return [binary, "--no-jobs", str(config_path)]

        server, (dicom_port, http_port) = start_server(
            "orthanc", wd, make_cmd, ae_title=ae_title, ports=2, ready_check=_orthanc_http_ready
        )
        with _running(server):
            loaded = corpus() if data is True else (data or None)
            peer = OrthancPeer(
                kind="orthanc",
                address=LOCALHOST,
                port=dicom_port,
                ae_title=ae_title,
                workdir=wd,
                server=server,
                transfer_syntaxes=(IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE),
                find_models=(PATIENT_ROOT_FIND, STUDY_ROOT_FIND, MODALITY_WORKLIST_FIND),
                corpus=loaded,
                worklist=items,
                http_url=f"http://{LOCALHOST}:{http_port}",
            )
            if loaded is not None:
                peer.upload(loaded.datasets)
            yield peer


def _orthanc_http_ready(server: Server, ports: list[int], timeout: float = 15.0) -> None:
    """The REST API answers, from this Orthanc."""
    http_port = ports[1]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            break
        if listens_on(server.pid, http_port) is not False:
            try:
                conn = http.client.HTTPConnection(LOCALHOST, http_port, timeout=5)
                conn.request("GET", "/system")
                rsp = conn.getresponse()
                body = rsp.read()
                conn.close()
                if rsp.status == 200 and json.loads(body).get("DicomPort") == ports[0]:
                    return
            except (OSError, http.client.HTTPException, ValueError):
                pass
        time.sleep(0.05)
    raise StartError(
        f"orthanc REST API not ready on port {http_port}\n--- {server.log_path} ---\n"
        f"{server.log_tail()}",
        retry=True,
    )


def load_bulk_studies(peer: OrthancPeer, n: int, workers: int = 4) -> float:
    """Upload :func:`bulk_study_datasets` ``(n)``; returns the seconds it took."""
    t0 = time.perf_counter()
    peer.upload(bulk_study_datasets(n), workers=workers)
    return time.perf_counter() - t0


@contextlib.contextmanager
def orthanc_with_bulk_studies(
    n: int, cache_root: Path, workdir: Path | None = None, workers: int = 4
) -> Iterator[OrthancPeer]:
    """Orthanc holding ``n`` bulk studies, for benchmarks (not tests).

    The storage+index directory is cached at ``cache_root/orthanc-bulk-<n>``
    and reused when complete, so only the first run pays for the upload.
    """
    cache = Path(cache_root) / f"orthanc-bulk-{n}"
    done = cache / "COMPLETE"
    if not done.exists():
        shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    with orthanc(workdir, data=None, worklist=None, storage_dir=cache) as peer:
        if not done.exists():
            load_bulk_studies(peer, n, workers=workers)
            done.write_text(f"{n}\n")
        yield peer


# Orthanc that caps its answers, as production setups do: a C-FIND matching more than
# CAPPED_LIMIT studies gets CAPPED_LIMIT pendings, then Cancel (0xFE00) nobody asked for.
CAPPED_LIMIT = 10
CAPPED_STUDIES = 300  # bulk_study_datasets: 2010-2025, ~19 a year, a day or two each


@contextlib.contextmanager
def bulk_orthanc(
    workdir: Path | None = None, *, studies: int = CAPPED_STUDIES, limit: int = 0
) -> Iterator[OrthancPeer]:
    """Orthanc holding ``bulk_study_datasets(studies)``; ``limit`` > 0 sets its
    ``LimitFindResults`` (and ``LimitFindInstances``)."""
    config = {"LimitFindResults": limit, "LimitFindInstances": limit}
    with orthanc(workdir, data=None, worklist=None, extra_config=config) as peer:
        load_bulk_studies(peer, studies)
        yield peer


def capped_orthanc(
    workdir: Path | None = None, *, studies: int = CAPPED_STUDIES, limit: int = CAPPED_LIMIT
):
    """Orthanc with ``LimitFindResults: limit`` holding ``bulk_study_datasets(studies)``."""
    return bulk_orthanc(workdir, studies=studies, limit=limit)


# ---- DCMTK dcmqrscp --------------------------------------------------------


def _dcmqrscp_config(port: int, ae_title: str, storage: Path, max_studies: int,
                     hosts: dict[str, tuple[str, int]] | None = None) -> str:
    host_lines = "".join(f"{name.lower()} = ({name}, {host}, {p})\n"
                         for name, (host, p) in (hosts or {}).items())
    return (
        f"NetworkTCPPort  = {port}\n"
        "MaxPDUSize      = 16384\n"
        "MaxAssociations = 16\n"
        "\n"
        "HostTable BEGIN\n"
        f"{host_lines}"
        "HostTable END\n"
        "\n"
        "VendorTable BEGIN\n"
        "VendorTable END\n"
        "\n"
        "AETable BEGIN\n"
        f"{ae_title}  {storage}  RW  ({max_studies}, 1024mb)  ANY\n"
        "AETable END\n"
    )


def _dcmqridx(storage: Path, files: Sequence[Path]) -> None:
    binary = require_binary("dcmqridx", "dcmtk")
    for start in range(0, len(files), 500):
        chunk = [str(f) for f in files[start : start + 500]]
        proc = subprocess.run(
            [binary, str(storage), *chunk], capture_output=True, text=True, timeout=300
        )
        if proc.returncode != 0:
            _fail(f"dcmqridx failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


@contextlib.contextmanager
def dcmqrscp(
    workdir: Path | None = None,
    transfer_syntax: str | None = None,
    *,
    data: Corpus | None | bool = True,
    datasets: Iterable[Dataset] | None = None,
    ae_title: str = "QRSCP",
    extra_args: Sequence[str] = (),
    move_destinations: dict[str, tuple[str, int]] | None = None,
) -> Iterator[Peer]:
    """Run DCMTK's dcmqrscp (Patient Root, Study Root, Patient/Study Only FIND, and
    GET/MOVE: ``move_destinations`` = {AE title: (host, port)} it may C-MOVE to).

    ``transfer_syntax=None``: it accepts Explicit LE/BE and Implicit LE (DCMTK's
    default, explicit local byte order preferred). ``transfer_syntax=IMPLICIT_VR_LE``:
    it accepts Implicit VR Little Endian only (``+xi``). DCMTK cannot restrict
    FIND to another single transfer syntax (``+xe``/``+xb``/``+xd`` only change
    the preference): use :func:`single_ts_peer` for those.
    ``datasets`` adds extra instances (indexed with ``dcmqridx`` before start).
    """
    binary = require_binary("dcmqrscp", "dcmtk")
    if transfer_syntax not in (None, IMPLICIT_VR_LE):
        raise ValueError(
            "dcmqrscp can be restricted to Implicit VR LE only; "
            "use single_ts_peer() for other transfer syntaxes"
        )
    with _workdir(workdir, "dcmqrscp") as wd:
        storage = wd / "storage"
        storage.mkdir(exist_ok=True)
        loaded = corpus() if data is True else (data or None)
        files: list[Path] = []
        all_ds = list(loaded.datasets) if loaded else []
        all_ds += list(datasets or ())
        for ds in all_ds:
            files.append(write_part10(ds, storage / f"{ds.SOPInstanceUID}.dcm"))
        if files:
            _dcmqridx(storage, files)
        n_studies = len({ds.StudyInstanceUID for ds in all_ds})
        cfg = wd / "dcmqrscp.cfg"
        max_studies = max(200, n_studies + 100)

        def make_cmd(port: int) -> list[str]:
            cfg.write_text(_dcmqrscp_config(port, ae_title, storage, max_studies,
                                            move_destinations))
            cmd = [binary, "-c", str(cfg), "-dhl"]
            if transfer_syntax == IMPLICIT_VR_LE:
                cmd.append("+xi")
            return cmd + list(extra_args)

        server, (port,) = start_server(
            "dcmqrscp", wd, make_cmd, ae_title=ae_title, transfer_syntax=transfer_syntax
        )
        with _running(server):
            yield Peer(
                kind="dcmqrscp",
                address=LOCALHOST,
                port=port,
                ae_title=ae_title,
                workdir=wd,
                server=server,
                transfer_syntaxes=(
                    (transfer_syntax,) if transfer_syntax
                    else (EXPLICIT_VR_LE, EXPLICIT_VR_BE, IMPLICIT_VR_LE)
                ),
                find_models=(PATIENT_ROOT_FIND, STUDY_ROOT_FIND, PATIENT_STUDY_ONLY_FIND),
                corpus=loaded,
            )


# ---- DCMTK wlmscpfs --------------------------------------------------------


@contextlib.contextmanager
def wlmscpfs(
    workdir: Path | None = None,
    *,
    worklist: Iterable[WorklistItem] = WORKLIST,
    ae_title: str = "WLMSCP",
    extra_args: Sequence[str] = ("-csk",),
) -> Iterator[Peer]:
    """Run DCMTK's wlmscpfs over ``<dir>/<ae_title>/*.wl`` (+ ``lockfile``).

    By default ``-csk``: answers carry the Specific Character Set of the files
    (ISO_IR 192); wlmscpfs's own default is to send none.
    """
    binary = require_binary("wlmscpfs", "dcmtk")
    with _workdir(workdir, "wlmscpfs") as wd:
        items = tuple(worklist)
        db = wd / "wlistdb"
        ae_dir = db / ae_title
        write_worklist(ae_dir, items)
        (ae_dir / "lockfile").touch()
        server, (port,) = start_server(
            "wlmscpfs", wd,
            lambda port: [binary, "-dfp", str(db), "-dhl", *extra_args, str(port)],
            ae_title=ae_title,
        )
        with _running(server):
            yield Peer(
                kind="wlmscpfs",
                address=LOCALHOST,
                port=port,
                ae_title=ae_title,
                workdir=wd,
                server=server,
                transfer_syntaxes=(EXPLICIT_VR_LE, EXPLICIT_VR_BE, IMPLICIT_VR_LE),
                find_models=(MODALITY_WORKLIST_FIND,),
                worklist=items,
            )


# ---- pynetdicom qrscp ------------------------------------------------------


def _store_into(peer_address: str, port: int, ae_title: str, datasets: Sequence[Dataset],
                transfer_syntax: str | None) -> None:
    """C-STORE ``datasets`` over one association (in this process)."""
    from pynetdicom import AE

    ae = AE("FINDTUI-LOAD")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ts = [transfer_syntax] if transfer_syntax else [EXPLICIT_VR_LE, IMPLICIT_VR_LE]
    for sop_class in sorted({ds.SOPClassUID for ds in datasets}):
        ae.add_requested_context(sop_class, ts)
    assoc = ae.associate(peer_address, port, ae_title=ae_title)
    if not assoc.is_established:
        _fail(f"cannot associate with {ae_title}@{peer_address}:{port} to load instances")
    try:
        for ds in datasets:
            if transfer_syntax:
                ds = _with_transfer_syntax(ds, transfer_syntax)
            status = assoc.send_c_store(ds)
            if not status or status.Status != 0x0000:
                _fail(f"C-STORE of {ds.SOPInstanceUID} failed: {status}")
    finally:
        assoc.release()


def _with_transfer_syntax(ds: Dataset, transfer_syntax: str) -> Dataset:
    """A shallow copy of ``ds`` whose file meta says ``transfer_syntax``."""
    copy = Dataset(ds)
    copy.file_meta = FileMetaDataset(ds.file_meta)
    copy.file_meta.TransferSyntaxUID = transfer_syntax
    return copy


def _preload_qrscp_db(db_file: Path, instance_dir: Path, datasets: Sequence[Dataset]) -> None:
    """Fill qrscp's sqlite database the way its C-STORE handler does
    (``db.add_instance`` + the file in its instance directory), in one go."""
    from pynetdicom.apps.qrscp import db
    from sqlalchemy import create_engine, event
    from sqlalchemy.orm import Session

    engine = create_engine(f"sqlite:///{db_file}")

    @event.listens_for(engine, "connect")
    def _fast(dbapi_conn, _record):  # a test database: no fsync per commit
        dbapi_conn.execute("PRAGMA synchronous=OFF")
        dbapi_conn.execute("PRAGMA journal_mode=MEMORY")

    db.Base.metadata.create_all(engine)
    instance_dir.mkdir(parents=True, exist_ok=True)
    with Session(engine) as session:
        for ds in datasets:
            path = write_part10(ds, instance_dir / ds.SOPInstanceUID)
            db.add_instance(ds, session, str(path))
    engine.dispose()


@contextlib.contextmanager
def qrscp(
    workdir: Path | None = None,
    transfer_syntax: str | None = None,
    *,
    data: Corpus | None | bool = True,
    ae_title: str = "QRSCP",
    conformant: bool = False,
    load: str = "db",
) -> Iterator[Peer]:
    """Run pynetdicom's qrscp app (``python -m pynetdicom qrscp``).

    Beware, that is how qrscp is: it answers one C-FIND response per matching
    *instance* at every level (10 studies of 4 images: 40 STUDY responses), its
    database keeps only a few attributes (patient id/name, study uid/date/time,
    accession, study id, series uid/number, modality, instance uid/number), and
    it wants the unique keys of the levels above the query level, it returns
    no Specific Character Set (non-ASCII names come out mangled).
    ``conformant=True`` patches its C-FIND (see ``_make_qrscp_conformant``):
    one response per matching entity of the query level, with that level's
    unique key, and ISO_IR 192 declared when a value is not ASCII.

    ``transfer_syntax``: every presentation context it accepts (ECHO, FIND,
    GET, MOVE, STORE, worklist) is restricted to that one transfer syntax.

    ``load="db"`` fills its database with qrscp's own ``db.add_instance`` before
    it starts (fast); ``load="c-store"`` sends the instances by C-STORE
    (about 50 ms per instance: qrscp commits each to sqlite).
    """
    require_python_module("sqlalchemy", "sqlalchemy")
    if transfer_syntax is not None and transfer_syntax not in UNCOMPRESSED_TRANSFER_SYNTAXES:
        raise ValueError(f"unsupported transfer syntax {transfer_syntax}")
    if load not in ("db", "c-store"):
        raise ValueError(f"load must be 'db' or 'c-store', not {load!r}")
    with _workdir(workdir, "qrscp") as wd:
        instance_dir = wd / "instances"
        db_file = wd / "instances.sqlite"
        loaded = corpus() if data is True else (data or None)
        if loaded is not None and load == "db":
            _preload_qrscp_db(db_file, instance_dir, loaded.datasets)
        cfg = wd / "qrscp.ini"

        def make_cmd(port: int) -> list[str]:
            cfg.write_text(
                "[DEFAULT]\n"
                f"ae_title: {ae_title}\n"
                f"port: {port}\n"
                "max_pdu: 16382\n"
                "acse_timeout: 30\n"
                "dimse_timeout: 30\n"
                "network_timeout: 30\n"
                f"bind_address: {LOCALHOST}\n"
                f"instance_location: {instance_dir}\n"
                f"database_location: {db_file}\n"
                "log_identifier: False\n"
            )
            if not (transfer_syntax or conformant):
                return [sys.executable, "-m", "pynetdicom", "qrscp", "-c", str(cfg)]
            cmd = [sys.executable, str(Path(__file__).resolve()), "qrscp"]
            if transfer_syntax:
                cmd += ["--one-ts", transfer_syntax]
            if conformant:
                cmd += ["--conformant"]
            return cmd + ["--", "-c", str(cfg)]

        server, (port,) = start_server(
            "qrscp", wd, make_cmd, ae_title=ae_title, transfer_syntax=transfer_syntax,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        with _running(server):
            if loaded is not None and load == "c-store":
                _store_into(LOCALHOST, port, ae_title, loaded.datasets, transfer_syntax)
            yield Peer(
                kind="qrscp",
                address=LOCALHOST,
                port=port,
                ae_title=ae_title,
                workdir=wd,
                server=server,
                transfer_syntaxes=(
                    (transfer_syntax,) if transfer_syntax else UNCOMPRESSED_TRANSFER_SYNTAXES
                ),
                find_models=(PATIENT_ROOT_FIND, STUDY_ROOT_FIND),
                corpus=loaded,
            )


@contextlib.contextmanager
def single_ts_peer(
    transfer_syntax: str, workdir: Path | None = None, *, data: Corpus | None | bool = True
) -> Iterator[Peer]:
    """A Q/R peer (Patient + Study Root FIND, C-ECHO) accepting only ``transfer_syntax``.

    * Implicit VR LE: DCMTK ``dcmqrscp +xi``.
    * Explicit VR LE, Deflated Explicit VR LE, Explicit VR BE: pynetdicom's
      qrscp with every accepted context restricted to that transfer syntax,
      and ``conformant=True`` (one response per study at STUDY level, ...).
    """
    if transfer_syntax == IMPLICIT_VR_LE:
        with dcmqrscp(workdir, IMPLICIT_VR_LE, data=data) as peer:
            yield peer
    else:
        with qrscp(workdir, transfer_syntax, data=data, conformant=True) as peer:
            yield peer


# --------------------------------------------------------------------------
# Reference clients
# --------------------------------------------------------------------------


@dataclass
class FindRun:
    cmd: list[str]
    returncode: int
    output: str  # stdout + stderr
    responses: list[Dataset]


def _read_responses(directory: Path) -> list[Dataset]:
    return [dcmread(p, force=True) for p in sorted(directory.glob("rsp*.dcm"))]


def _has_option(args: Sequence[str], *names: str) -> bool:
    return any(a in names for a in args)


def run_findscu(
    peer: Peer,
    args: Sequence[str] = (),
    keys: Sequence[str] = (),
    *,
    timeout: float = 120,
) -> FindRun:
    """Run DCMTK ``findscu -X`` against ``peer``; the response identifiers are
    read back from the ``rsp*.dcm`` files it extracts.

    ``args`` are extra findscu options (``-P``/``-S``/``-W``, ``-xi``, ...);
    ``keys`` are ``-k`` values (``"QueryRetrieveLevel=STUDY"``, ``"PatientName"``,
    ``"(0010,0020)=FT*"``, ``"ScheduledProcedureStepSequence[0].Modality=CT"``).
    ``-aec peer.ae_title`` is added unless ``args`` has ``-aec``/``--call``.
    """
    binary = require_binary("findscu", "dcmtk")
    with tempfile.TemporaryDirectory(prefix="findtui-findscu-") as out:
        cmd = [binary, "-X", "-od", out, "-to", "10", "-ta", "10"]
        if not _has_option(args, "-aec", "--call"):
            cmd += ["-aec", peer.ae_title]
        cmd += list(args)
        for key in keys:
            cmd += ["-k", key]
        cmd += [peer.address, str(peer.port)]
        proc = subprocess.run(
            cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        output = (proc.stdout + proc.stderr).decode("utf-8", errors="replace")
        return FindRun(cmd, proc.returncode, output, _read_responses(Path(out)))


def find_with_dcmtk(
    peer: Peer, args: Sequence[str] = (), keys: Sequence[str] = (), *, timeout: float = 120
) -> list[Dataset]:
    """DCMTK ``findscu``'s C-FIND responses (pending identifiers, in order);
    raises AssertionError with findscu's output if it exits non-zero."""
    run = run_findscu(peer, args, keys, timeout=timeout)
    if run.returncode != 0:
        raise AssertionError(
            f"findscu exited {run.returncode}: {' '.join(run.cmd)}\n{run.output[-4000:]}"
        )
    return run.responses


def find_with_pynetdicom(
    peer: Peer, args: Sequence[str] = (), keys: Sequence[str] = (), *, timeout: float = 120
) -> list[Dataset]:
    """``python -m pynetdicom findscu -w`` responses (run in a temp cwd).

    ``args``: e.g. ``["-S"]``, ``["-W"]``; ``keys``: ``-k`` values as in
    :func:`run_findscu` (pynetdicom's syntax: ``PatientName=``, ``(0010,0020)=X``).
    """
    with tempfile.TemporaryDirectory(prefix="findtui-pynetdicom-findscu-") as out:
        cmd = [sys.executable, "-m", "pynetdicom", "findscu", "-w"]
        if not _has_option(args, "-aec", "--called-aet"):
            cmd += ["-aec", peer.ae_title]
        cmd += list(args)
        for key in keys:
            cmd += ["-k", key]
        cmd += [peer.address, str(peer.port)]
        proc = subprocess.run(
            cmd, capture_output=True, timeout=timeout, cwd=out, stdin=subprocess.DEVNULL
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"pynetdicom findscu exited {proc.returncode}: {' '.join(cmd)}\n"
                f"{(proc.stdout + proc.stderr).decode(errors='replace')[-4000:]}"
            )
        return _read_responses(Path(out))


# --------------------------------------------------------------------------
# Script entry: qrscp restricted to one transfer syntax
# --------------------------------------------------------------------------


_QR_LEVEL_KEYS = {
    "PATIENT": ("PatientID", "patient_id"),
    "STUDY": ("StudyInstanceUID", "study_instance_uid"),
    "SERIES": ("SeriesInstanceUID", "series_instance_uid"),
    "IMAGE": ("SOPInstanceUID", "sop_instance_uid"),
}


def _make_qrscp_conformant() -> None:
    """Patch pynetdicom's qrscp (in the qrscp process) so that its C-FIND
    answers one response per matching entity of the query level instead of
    one per instance, always returns that level's unique key, and declares
    ISO_IR 192 when a returned value is not ASCII. C-GET/C-MOVE are untouched."""
    from pynetdicom.apps.qrscp import db, handlers

    find_models = {PATIENT_ROOT_FIND, STUDY_ROOT_FIND}
    original_search = handlers.search

    def search(model, identifier, session):
        matches = original_search(model, identifier, session)
        level = getattr(identifier, "QueryRetrieveLevel", None)
        if model not in find_models or level not in _QR_LEVEL_KEYS:
            return matches
        attr = _QR_LEVEL_KEYS[level][1]
        seen: set = set()
        unique = []
        for match in matches:
            key = getattr(match, attr)
            if key not in seen:
                seen.add(key)
                unique.append(match)
        return unique

    handlers.search = search
    original_as_identifier = db.Instance.as_identifier

    def as_identifier(self, identifier, model):
        ds = original_as_identifier(self, identifier, model)
        keyword, attr = _QR_LEVEL_KEYS.get(identifier.QueryRetrieveLevel, (None, None))
        if keyword and keyword not in ds:
            setattr(ds, keyword, getattr(self, attr))
        if any(not str(e.value).isascii() for e in ds if e.value is not None):
            ds.SpecificCharacterSet = "ISO_IR 192"
        return ds

    db.Instance.as_identifier = as_identifier


def _run_qrscp(argv: list[str]) -> None:
    """``peers.py qrscp [--one-ts UID] [--conformant] -- QRSCP_ARGS``."""
    import argparse

    from pynetdicom import AE
    from pynetdicom.apps.qrscp import qrscp as app

    parser = argparse.ArgumentParser(prog="peers.py qrscp")
    parser.add_argument("--one-ts", help="accept only this transfer syntax UID")
    parser.add_argument("--conformant", action="store_true",
                        help="C-FIND: one response per entity, with its unique key and charset")
    parser.add_argument("qrscp_args", nargs=argparse.REMAINDER)
    opts = parser.parse_args(argv)
    qrscp_args = [a for a in opts.qrscp_args if a != "--"]

    if opts.one_ts:
        only = opts.one_ts

        class OneTransferSyntaxAE(AE):
            def add_supported_context(self, abstract_syntax, transfer_syntax=None,
                                      scu_role=None, scp_role=None):
                return super().add_supported_context(abstract_syntax, [only], scu_role, scp_role)

        app.AE = OneTransferSyntaxAE

    if opts.conformant:
        _make_qrscp_conformant()

    app.main(qrscp_args)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "qrscp":
        _run_qrscp(sys.argv[2:])
    else:
        sys.exit("usage: peers.py qrscp [--one-ts UID] [--conformant] -- [qrscp options]")
