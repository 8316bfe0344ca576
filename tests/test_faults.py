"""The fault matrix: a misbehaving peer against the --batch CLI and the engine.

Every case runs against tests/faultscp.py's raw-socket peer (or, where a real
implementation is enough, a pynetdicom SCP) on a free loopback port. For each:
one clear error line (what happened, what to try), the documented exit code
(README "Exit codes"), no traceback, and every response received before the
fault kept in the -w files and in the CSV / JSON lines output.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from faultscp import (
    IMPLICIT_VR_LE,
    REJECTIONS,
    FaultSCP,
    Session,
    assert_no_traceback,
    command_set,
    pynetdicom_scp,
    run_findtui,
)
from findtui.cli import ExitCode
from findtui.engine.query import (
    Associated, AssociationFailed, CancelSent, Fault, Final, FindQuery, FindRequest, Network,
    Pending, run_find,
)

KEYS = ["-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=", "-k", "PatientName="]


def patient(i: int) -> dict:
    return {"PatientID": f"P{i}", "PatientName": f"DOE^JOHN{i}"}


def query() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "PATIENT"
    ds.PatientID = ""
    ds.PatientName = ""
    return ds


@pytest.fixture
def quiet_pynetdicom():
    """pynetdicom silenced as the TUI and -q do: messages must not depend on its log."""
    logger = logging.getLogger("pynetdicom")
    saved = logger.level, logger.propagate, list(logger.handlers)
    logger.handlers[:] = [logging.NullHandler()]
    logger.setLevel(logging.CRITICAL + 1)
    logger.propagate = False
    try:
        yield
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        logger.handlers[:] = saved[2]


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cli(peer, tmp_path: Path, *extra: str, fmt: str = "csv", write: bool = True, timeout=60):
    """Run the CLI against ``peer`` with -w into tmp_path/rsp and --output tmp_path/out.*"""
    args = list(extra)
    if write:
        (tmp_path / "rsp").mkdir(exist_ok=True)
        args += ["-w", "-od", str(tmp_path / "rsp")]
    if fmt:
        args += ["--output-format", fmt, "--output", str(tmp_path / f"out.{fmt}")]
    return run_findtui([*args, peer.address if hasattr(peer, "address") else peer[0],
                        str(peer.port if hasattr(peer, "port") else peer[1]), *KEYS],
                       timeout=timeout)


def kept(tmp_path: Path, fmt: str = "csv") -> tuple[list[str], list[str]]:
    """(PatientIDs in the -w files, PatientIDs in the --output file), in order."""
    files = sorted((tmp_path / "rsp").glob("rsp*.dcm"))
    ids = [str(dcmread(f).PatientID) for f in files]
    assert [f.name for f in files] == [f"rsp{i:06d}.dcm" for i in range(1, len(files) + 1)]
    text = (tmp_path / f"out.{fmt}").read_text(encoding="utf-8")
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        out = [r["PatientID"] for r in rows]
    elif fmt == "jsonl":
        out = [json.loads(line)["00100020"]["Value"][0] for line in text.splitlines()]
    else:
        out = [item["00100020"]["Value"][0] for item in json.loads(text)]
    return ids, out


def engine_events(peer, **network) -> list:
    request = FindRequest(Network(peer.address, peer.port, **network), query())
    return list(run_find(request))


def one_line(run, *fragments: str) -> str:
    """The error line holding every fragment; there must be exactly one such line."""
    lines = [line for line in run.error_lines() if all(f in line for f in fragments)]
    assert len(lines) == 1, (fragments, run.err[-3000:])
    return lines[0]


# --------------------------------------------------------------------------
# Association: rejected, refused, unresolvable, broken before it is established
# --------------------------------------------------------------------------

REJECTION_TEXT = {
    "permanent-user-no-reason": ("rejected (permanent) by the service user: no reason given",
                                 "-aec"),
    "permanent-user-context-name": ("application context name not supported",
                                    "may not be a DICOM SCP"),
    "permanent-user-calling-aet": ("calling AE title not recognised", "'FINDSCU'"),
    "permanent-user-called-aet": ("called AE title not recognised", "(-aec)"),
    "transient-user-no-reason": ("rejected (transient) by the service user", "try again later"),
    "permanent-acse-no-reason": ("by the service provider (ACSE): no reason given", "-aet"),
    "permanent-acse-protocol-version": ("protocol version not supported", "protocol version"),
    "transient-presentation-congestion": ("(presentation): temporary congestion",
                                          "try again later"),
    "transient-presentation-local-limit": ("local limit exceeded", "try again later"),
}


@pytest.mark.parametrize("name", list(REJECTIONS))
def test_rejection_cli(name, tmp_path):
    with FaultSCP(reject=REJECTIONS[name]) as scp:
        run = cli(scp, tmp_path)
    assert run.returncode == ExitCode.NETWORK, run.err
    assert_no_traceback(run)
    what, hint = REJECTION_TEXT[name]
    line = one_line(run, what)
    assert hint in line and line.startswith(f"127.0.0.1:{scp.port}: association")
    if name == "permanent-user-calling-aet":
        assert line.endswith("(-aet)")
    assert not list((tmp_path / "rsp").iterdir())


@pytest.mark.parametrize("name", list(REJECTIONS))
def test_rejection_engine(name, quiet_pynetdicom):
    with FaultSCP(reject=REJECTIONS[name]) as scp:
        events = engine_events(scp)
    assert len(events) == 1 and isinstance(events[0], AssociationFailed)
    assert events[0].kind == "rejected"
    assert REJECTION_TEXT[name][0] in events[0].message


def test_rejection_by_a_real_scp_calling_aet(tmp_path):
    with pynetdicom_scp(require_calling_aet=["ONLYME"]) as peer:
        run = cli(peer, tmp_path, "-aet", "STRANGER")
    assert run.returncode == ExitCode.NETWORK
    assert_no_traceback(run)
    line = one_line(run, "calling AE title not recognised")
    assert "'STRANGER'" in line and line.endswith("(-aet)")


def test_connection_refused(tmp_path, quiet_pynetdicom):
    port = free_port()
    run = cli(("127.0.0.1", port), tmp_path)
    assert run.returncode == ExitCode.NETWORK
    assert_no_traceback(run)
    assert "is the SCP running" in one_line(run, "connection refused")
    events = list(run_find(FindRequest(Network("127.0.0.1", port), query())))
    assert [(type(e), e.kind) for e in events] == [(AssociationFailed, "unreachable")]
    assert "connection refused" in events[0].message


def test_unresolvable_host(tmp_path, quiet_pynetdicom):
    run = cli(("no-such-host.invalid", 104), tmp_path)
    assert run.returncode == ExitCode.NETWORK
    assert_no_traceback(run)
    assert "check the address" in one_line(run, "cannot resolve host 'no-such-host.invalid'")
    events = list(run_find(FindRequest(Network("no-such-host.invalid", 104), query())))
    assert [(type(e), e.kind) for e in events] == [(AssociationFailed, "unreachable")]


@pytest.mark.parametrize("behaviour,kind,fragments,flags", [
    ("garbage", "aborted", ("not DICOM", "Unknown PDU type", "turn TLS on"), "(--tls)"),
    ("close", "aborted", ("aborted the association request", "turn TLS on"), "(--tls)"),
    ("hang", "timeout", ("no answer to the association request within 1 s",
                         "raise the ACSE timeout"), "(-ta, --tls)"),
])
def test_broken_association_request(behaviour, kind, fragments, flags, tmp_path,
                                    quiet_pynetdicom):
    with FaultSCP(on_associate=behaviour) as scp:
        run = cli(scp, tmp_path, "-ta", "1")
        events = engine_events(scp, acse_timeout=1)
    assert run.returncode == ExitCode.NETWORK
    assert_no_traceback(run)
    assert one_line(run, *fragments).endswith(flags)  # the CLI names its options
    assert [(type(e), e.kind) for e in events] == [(AssociationFailed, kind)]
    assert all(f in events[0].message for f in fragments)
    assert " -" not in events[0].message  # the engine's words name no option


# --------------------------------------------------------------------------
# The association breaks in the middle of the query: responses are kept
# --------------------------------------------------------------------------


def three_then(fault):
    def script(s: Session):
        for i in range(3):
            s.pending(patient(i))
        fault(s)
    return script


def _garbage(s):
    s.raw(b"\xde\xad\xbe\xef" * 8)
    s.hang(20)


def _mid_pdu(s):
    pdu = Session.p_data(s.request.context_id, b"\x00" * 200, False, True)
    s.raw(pdu[:20])
    s.close()


def _bad_pdv_length(s):
    s.raw(struct.pack(">BBI", 4, 0, 10) + struct.pack(">IBB", 200, 1, 3) + b"abcd")
    s.hang(20)


def _bad_command_set(s):
    s.raw(Session.p_data(s.request.context_id, b"\x00\x00\x00\x00\xff\xff\xff\xff", True, True))
    s.hang(20)


def _reset(s):
    s.sleep(0.3)  # let the client read the responses: an RST may discard unread data
    s.reset()


def _unexpected_message(s):  # a C-STORE-RQ, of all things
    s.send_message(s.request.context_id, command_set([
        (0x0002, b"1.2.840.10008.5.1.4.1.1.7\0"), (0x0100, struct.pack("<H", 0x0001)),
        (0x0110, struct.pack("<H", 7)), (0x0800, struct.pack("<H", 0x0101))]), None)
    s.hang(20)


MID_QUERY = {
    "a-abort": (Session.abort, "aborted", ("aborted the association (A-ABORT) after 3 responses",
                                           "kept")),
    "close": (Session.close, "aborted", ("closed unexpectedly", "after 3 responses")),
    "close-mid-pdu": (_mid_pdu, "aborted", ("closed unexpectedly", "after 3 responses")),
    "tcp-reset": (_reset, "aborted", ("closed unexpectedly", "after 3 responses")),
    "garbage": (_garbage, "protocol", ("not a valid DICOM message after 3 responses",
                                       "protocol error")),
    "bad-pdv-length": (_bad_pdv_length, "protocol", ("not a valid DICOM message",)),
    "bad-command-set": (_bad_command_set, "protocol", ("not a valid DICOM message",)),
    "unexpected-message": (_unexpected_message, "protocol", ("unexpected C-STORE message after 3",)),
    "hang": (Session.hang, "timeout", ("no response within the DIMSE timeout (1 s) after 3",)),
}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("name", list(MID_QUERY))
def test_mid_query_fault_cli_keeps_responses(name, fmt, tmp_path):
    fault, _, fragments = MID_QUERY[name]
    with FaultSCP(three_then(fault)) as scp:
        run = cli(scp, tmp_path, "-td", "1", fmt=fmt)
    assert run.returncode == ExitCode.NETWORK, run.err
    assert_no_traceback(run)
    one_line(run, *fragments)
    assert kept(tmp_path, fmt) == (["P0", "P1", "P2"], ["P0", "P1", "P2"])
    assert not scp.errors


@pytest.mark.parametrize("name", list(MID_QUERY))
def test_mid_query_fault_engine(name, quiet_pynetdicom):
    fault, kind, fragments = MID_QUERY[name]
    with FaultSCP(three_then(fault)) as scp:
        events = engine_events(scp, dimse_timeout=1)
    assert isinstance(events[0], Associated)
    pending = [e for e in events if isinstance(e, Pending)]
    assert [p.identifier.PatientID for p in pending] == ["P0", "P1", "P2"]
    assert isinstance(events[-1], Fault) and events[-1].kind == kind
    assert all(f in events[-1].message for f in fragments)


def test_mid_query_fault_with_pynetdicom_receiver(caplog):
    """-d uses pynetdicom's own receiver: a command set that does not decode must
    not kill its thread (and leave the query waiting for the DIMSE timeout)."""
    caplog.set_level(logging.DEBUG, logger="pynetdicom")
    with FaultSCP(three_then(_bad_command_set)) as scp:
        events = engine_events(scp, dimse_timeout=10)
    # "protocol", not "timeout": detected when it happened, not after -td ran out
    assert isinstance(events[-1], Fault) and events[-1].kind == "protocol"
    assert sum(isinstance(e, Pending) for e in events) == 3


def test_tracebacks_only_with_debug(tmp_path):
    """A connection reset makes pynetdicom log an exception: its traceback is shown
    with -d only."""
    with FaultSCP(three_then(_reset)) as scp:
        runs = {level: run_findtui([level, scp.address, str(scp.port), *KEYS])
                for level in ("-v", "-d")}
    for run in runs.values():
        assert run.returncode == ExitCode.NETWORK
        one_line(run, "closed unexpectedly", "after 3 responses")
    assert_no_traceback(runs["-v"])
    assert "Connection reset by peer" in one_line(runs["-v"], "closed unexpectedly")
    assert "Traceback (most recent call last):" in runs["-d"].err


# --------------------------------------------------------------------------
# Final statuses and pendings
# --------------------------------------------------------------------------


@pytest.mark.parametrize("status,name,advice", [
    (0xA700, "Failure: Out of Resources", "narrow the query"),
    (0xA900, "Failure: Identifier Does Not Match SOP Class", "-P/-S/-O/-W"),
    (0xC000, "Failure: Unable to Process", "check the keys"),
])
def test_failure_status_with_comment_and_offending_element(status, name, advice, tmp_path):
    def script(s):
        s.pending(patient(0))
        s.pending(patient(1))
        s.final(status, comment="Cannot process the keys", offending=(0x00100010, 0x00100020))
        s.finish()

    with FaultSCP(script) as scp:
        run = cli(scp, tmp_path, fmt="json")
        events = engine_events(scp)
    assert run.returncode == ExitCode.FAILURE_STATUS, run.err
    assert_no_traceback(run)
    errors = run.error_lines()
    assert f"Find SCP Result: 0x{status:04X} ({name})" in errors
    assert "Error Comment: Cannot process the keys" in errors
    assert "Offending Element: (0010,0010), (0010,0020)" in errors
    assert advice in one_line(run, "What to try:")
    assert kept(tmp_path, "json") == (["P0", "P1"], ["P0", "P1"])
    final = events[-1]
    assert isinstance(final, Final) and final.status == status and final.category == "failure"
    assert final.error_comment == "Cannot process the keys"
    assert final.offending_element == (0x00100010, 0x00100020)
    if advice.startswith("-"):  # an option: the CLI's words; the engine names the setting
        assert "-P" not in final.advice and "model" in final.settings
    else:
        assert advice in final.advice


def test_ff01_pendings(tmp_path):
    with FaultSCP(lambda s: s.serve([patient(i) for i in range(4)], status=0xFF01)) as scp:
        run = cli(scp, tmp_path)
        events = engine_events(scp)
    assert run.returncode == ExitCode.OK, run.err
    assert_no_traceback(run)
    assert run.err.count("- 0xFF01 (Pending - optional keys not supported)") == 4
    assert kept(tmp_path) == ([f"P{i}" for i in range(4)],) * 2
    pending = [e for e in events if isinstance(e, Pending)]
    assert len(pending) == 4 and all(p.optional_keys_unsupported for p in pending)


# --------------------------------------------------------------------------
# Slow drip, then cancel: --cancel N, Ctrl-C, a peer that ignores C-CANCEL
# --------------------------------------------------------------------------


def drip(n: int = 30, honour_cancel: bool = True, interval: float = 1.0):
    return lambda s: s.serve([patient(i) for i in range(n)], interval=interval,
                             honour_cancel=honour_cancel)


def test_slow_drip_then_cancel_option(tmp_path):
    with FaultSCP(drip()) as scp:
        run = cli(scp, tmp_path, "--cancel", "2", fmt="jsonl")
    assert run.returncode == ExitCode.CANCELLED, run.err
    assert_no_traceback(run)
    assert "I: Sent C-CANCEL after 2 responses" in run.err
    assert "I: Find SCP Result: 0xFE00 (Cancel)" in run.err
    assert kept(tmp_path, "jsonl") == (["P0", "P1"], ["P0", "P1"])
    assert scp.cancels == 1


def _start(scp, tmp_path, fmt="csv", *extra):
    (tmp_path / "rsp").mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "findtui", "--batch", "-w", "-od", str(tmp_path / "rsp"),
         "--output-format", fmt, "--output", str(tmp_path / f"out.{fmt}"), *extra,
         scp.address, str(scp.port), *KEYS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def _wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def _ctrl_c_after_two(script, tmp_path) -> tuple[int, str]:
    """Run the CLI against ``script``, press Ctrl-C once two responses are on disk."""
    with FaultSCP(script) as scp:
        proc = _start(scp, tmp_path)
        _wait_for(tmp_path / "rsp" / "rsp000002.dcm")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    return proc.returncode, err.decode()


def test_slow_drip_then_ctrl_c(tmp_path):
    code, err = _ctrl_c_after_two(drip(), tmp_path)
    assert code == ExitCode.CANCELLED, err
    assert "Traceback" not in err
    assert "W: Interrupted: sending C-CANCEL" in err and "0xFE00 (Cancel)" in err
    ids, rows = kept(tmp_path)
    assert ids == rows and ids[:2] == ["P0", "P1"] and len(ids) <= 3


def test_slow_drip_then_cancel_engine(quiet_pynetdicom):
    with FaultSCP(drip(interval=0.5)) as scp:
        find = FindQuery(FindRequest(Network(scp.address, scp.port), query()))
        events = []
        for event in find.events():
            events.append(event)
            if isinstance(event, Pending) and event.index == 2:
                threading.Thread(target=find.cancel).start()
    assert [type(e) for e in events] == [Associated, Pending, Pending, CancelSent, Final]
    assert events[-1].status == 0xFE00 and events[-1].cancel_requested
    assert events[-1].category == "cancel"


def test_second_ctrl_c_aborts_at_once(tmp_path):
    with FaultSCP(drip(honour_cancel=False, interval=0.3)) as scp:
        proc = _start(scp, tmp_path)
        _wait_for(tmp_path / "rsp" / "rsp000002.dcm")
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    err = err.decode()
    assert proc.returncode == ExitCode.CANCELLED, err
    assert "Traceback" not in err
    ids, rows = kept(tmp_path)
    assert ids == rows and len(ids) >= 2
    assert f"E: Aborted after {len(ids)} responses" in err


def test_killed_process_loses_nothing_already_received(tmp_path):
    """Flushed as it goes: SIGKILL after 3 responses leaves 3 rows and 3 files."""
    def script(s):
        for i in range(3):
            s.pending(patient(i))
        s.hang(30)

    with FaultSCP(script) as scp:
        proc = _start(scp, tmp_path, "jsonl")
        deadline = time.monotonic() + 20
        out = tmp_path / "out.jsonl"
        while not (out.exists() and out.read_text().count("\n") == 3):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.kill()
        proc.communicate(timeout=10)
    assert kept(tmp_path, "jsonl") == (["P0", "P1", "P2"],) * 2


def test_peer_ignoring_cancel_is_aborted(tmp_path, quiet_pynetdicom):
    with FaultSCP(drip(honour_cancel=False, interval=0.25)) as scp:
        find = FindQuery(FindRequest(Network(scp.address, scp.port), query(), cancel_after=2,
                                      cancel_grace=0.5))
        events = list(find.events())
        run = cli(scp, tmp_path, "--cancel", "1")
    assert [type(e) for e in events[:4]] == [Associated, Pending, Pending, CancelSent]
    assert isinstance(events[-1], Fault) and events[-1].kind == "cancel-timeout"
    assert run.returncode == ExitCode.CANCELLED, run.err
    assert_no_traceback(run)
    line = one_line(run, "no final status within 5 s of C-CANCEL", "ignored the cancel")
    ids, rows = kept(tmp_path)  # what came after the C-CANCEL is kept too
    assert ids == rows == [f"P{i}" for i in range(len(ids))] and len(ids) > 1
    assert f"association aborted after {len(ids)} responses" in line


# --------------------------------------------------------------------------
# Data the peer should not have sent
# --------------------------------------------------------------------------


def test_pending_identifier_that_does_not_decode(tmp_path):
    def script(s):
        s.pending(patient(0))
        s.pending(s.element(0x00100020, "LO", b"P1") + b"\x10\x00\x10\x00ZZ\x04\x00abcd")
        s.pending(patient(2))
        s.final(0)
        s.finish()

    with FaultSCP(script) as scp:
        run = cli(scp, tmp_path)
        events = engine_events(scp)
    assert run.returncode == ExitCode.OK, run.err
    assert_no_traceback(run)
    one_line(run, "response 2: identifier could not be decoded", "left out of --output-format")
    files = sorted((tmp_path / "rsp").glob("rsp*.dcm"))
    assert len(files) == 3  # kept as received
    assert files[1].read_bytes().endswith(b"ZZ\x04\x00abcd")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text())))
    assert [r["PatientID"] for r in rows] == ["P0", "P2"]
    pending = [e for e in events if isinstance(e, Pending)]
    assert len(pending) == 3 and pending[2].identifier.PatientID == "P2"
    with pytest.raises(ValueError, match="response 2: identifier could not be decoded"):
        pending[1].identifier


@pytest.mark.parametrize("charset,value,expected,warning", [
    (b"ISO_IR 999", "MÜLLER^HANS".encode("latin-1"), "MÜLLER^HANS", "Unknown encoding 'ISO_IR 999'"),
    (b"ISO_IR 192", "MÜLLER^HANS".encode("latin-1"), "M\ufffdLLER^HANS", "Failed to decode"),
    (b"ISO_IR 100", "MÜLLER^HANS".encode("utf-8"), "MÃ\x9cLLER^HANS", None),
    (b"ISO_IR 144", "ИВАНОВ^ИВАН".encode("iso8859_5"), "ИВАНОВ^ИВАН", None),
])
def test_wrong_or_unknown_character_set(charset, value, expected, warning, tmp_path):
    def script(s):
        s.pending(s.element(0x00080005, "CS", charset) + s.element(0x00100010, "PN", value)
                  + s.element(0x00100020, "LO", b"P0"))
        s.final(0)
        s.finish()

    with FaultSCP(script) as scp:
        run = cli(scp, tmp_path, fmt="jsonl")
    assert run.returncode == ExitCode.OK, run.err
    assert_no_traceback(run)
    if warning:
        assert any(warning in line for line in run.err.splitlines() if line.startswith("W: "))
    row = json.loads((tmp_path / "out.jsonl").read_text())
    assert row["00100010"]["Value"][0]["Alphabetic"] == expected
    assert len(list((tmp_path / "rsp").glob("*.dcm"))) == 1


def test_very_long_values(tmp_path):
    long_name = b"A" * 65536
    long_text = ("x" * 70000).encode()

    def script(s):
        for i in range(3):
            s.pending(s.element(0x00100010, "PN", long_name)
                      + s.element(0x00100020, "LO", f"P{i}".encode())
                      + s.element(0x00104000, "LT", long_text))
        s.final(0)
        s.finish()

    with FaultSCP(script, transfer_syntaxes=(IMPLICIT_VR_LE,)) as scp:
        run = cli(scp, tmp_path, "-k", "PatientComments=")
    assert run.returncode == ExitCode.OK, run.err
    assert_no_traceback(run)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text())))
    assert [len(r["PatientName"]) for r in rows] == [65536] * 3
    assert [len(r["PatientComments"]) for r in rows] == [70000] * 3
    ds = dcmread(tmp_path / "rsp" / "rsp000003.dcm")
    assert len(ds.PatientName) == 65536 and ds.PatientID == "P2"


def test_large_and_deep_sequences(tmp_path):
    def script(s):
        items = [s.element(0x00100020, "LO", f"OTHER{i}".encode())
                 + s.element(0x00100022, "CS", b"TEXT") for i in range(3000)]
        deep = s.element(0x00100020, "LO", b"LEAF")
        for _ in range(12):
            deep = s.sequence(0x00081110, [deep])
        s.pending(s.element(0x00100010, "PN", b"SEQ^TEST") + s.element(0x00100020, "LO", b"P0")
                  + s.sequence(0x00101002, items) + deep)
        s.final(0)
        s.finish()

    with FaultSCP(script) as scp:
        run = cli(scp, tmp_path, fmt="jsonl")
        events = engine_events(scp)
    assert run.returncode == ExitCode.OK, run.err
    assert_no_traceback(run)
    row = json.loads((tmp_path / "out.jsonl").read_text())
    assert len(row["00101002"]["Value"]) == 3000
    assert row["00101002"]["Value"][2999]["00100020"]["Value"] == ["OTHER2999"]
    ds = dcmread(tmp_path / "rsp" / "rsp000001.dcm")
    assert len(ds.OtherPatientIDsSequence) == 3000
    identifier = [e for e in events if isinstance(e, Pending)][0].identifier
    assert len(identifier.OtherPatientIDsSequence) == 3000
    # The 12 nested ReferencedStudySequence levels arrive whole, LEAF at the bottom,
    # in the JSON output, in the rsp file and in the engine's identifier.
    node = row
    for depth in range(12):
        items = node.get("00081110", {}).get("Value")
        assert items is not None and len(items) == 1, f"JSON sequence level {depth + 1} missing"
        node = items[0]
    assert node["00100020"]["Value"] == ["LEAF"]
    for deep in (ds, identifier):
        for depth in range(12):
            assert len(deep.ReferencedStudySequence) == 1, f"level {depth + 1}"
            deep = deep.ReferencedStudySequence[0]
        assert deep.PatientID == "LEAF"
        assert "ReferencedStudySequence" not in deep


def test_ctrl_c_answered_by_a_peer_abort_is_a_cancel_everywhere(tmp_path):
    """Ctrl-C, then the PACS aborts instead of confirming the C-CANCEL: the CLI exits 5
    (cancelled) and the history says 'cancel' too (it said 'network')."""
    from findtui.config import History

    def script(s):
        for i in range(30):
            s.pending(patient(i))
            if s.wait_cancel(1.0):
                s.abort()
                return

    code, err = _ctrl_c_after_two(script, tmp_path)
    assert code == ExitCode.CANCELLED, err
    assert "aborted the association" in err
    last = History().entries()[-1]
    assert last.outcome == "cancel", last
    ids, rows = kept(tmp_path)
    assert ids == rows and ids[:2] == ["P0", "P1"]


# --------------------------------------------------------------------------
# What a broken or hostile peer may cost: bounded time, bounded memory
# --------------------------------------------------------------------------


def _stall_in_pdu(promised: int):
    """One pending, then a P-DATA header promising ``promised`` bytes, 10 sent, and silence:
    a half-open connection in the middle of a message."""
    def script(s):
        s.pending(patient(0))
        s.raw(struct.pack(">BBI", 0x04, 0, promised) + b"\x00" * 10)
        s.hang(120)
    return script


def test_a_peer_stalling_inside_a_pdu_is_aborted_within_the_timeouts(tmp_path):
    """It used to hang for good: pynetdicom's reader sat in recv() and every abort waited for
    it. Now no read waits longer than -tn (the test's own timeout bounds the run)."""
    with FaultSCP(_stall_in_pdu(100)) as scp:
        run = cli(scp, tmp_path, "-td", "2", "-tn", "2", fmt="csv", timeout=40)
    assert run.returncode == ExitCode.NETWORK, run.err
    assert_no_traceback(run)
    line = one_line(run, "association aborted")
    assert "timeout" in line  # the network (-tn) or DIMSE (-td) timeout, named
    assert kept(tmp_path) == (["P0"], ["P0"])


def test_a_pdu_longer_than_we_proposed_is_refused_unread(tmp_path):
    """A header promising 100 MB: refused at the header (it was read whole into memory)."""

    with FaultSCP(_stall_in_pdu(100_000_000)) as scp:
        run = cli(scp, tmp_path, "-pdu", "16384", fmt="csv", timeout=40)
    assert run.returncode == ExitCode.NETWORK, run.err
    assert_no_traceback(run)
    one_line(run, "PDU of 100,000,000 bytes", "more than the 16,384 we accept")
    assert kept(tmp_path) == (["P0"], ["P0"])
    # The client never grew near the 100 MB it was offered: measured on a run of its own
    # (RUSAGE_CHILDREN of a wrapper whose only child it is; this test process has had
    # bigger children, Orthanc among them).
    wrapper = ("import resource, subprocess, sys\n"
               "r = subprocess.run([sys.executable, '-m', 'findtui', '--batch', *sys.argv[1:]],"
               " capture_output=True)\n"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    with FaultSCP(_stall_in_pdu(100_000_000)) as scp:
        measured = subprocess.run(
            [sys.executable, "-c", wrapper, "-pdu", "16384", scp.address, str(scp.port), *KEYS],
            capture_output=True, text=True, timeout=60)
    assert int(measured.stdout.strip()) < 150 * 1024, measured.stdout


def test_an_identifier_over_the_size_limit_is_refused(tmp_path):
    big = {"PatientID": "P1", "PatientName": "X" * 400_000}

    def script(s):
        s.pending(patient(0))
        s.pending(big)  # in PDUs of the size we proposed, each one legal
        s.pending(patient(2))
        s.finish()

    with FaultSCP(script) as scp:
        run = cli(scp, tmp_path, "--max-identifier-size", "100000", fmt="jsonl")
        events = list(run_find(FindRequest(Network(scp.address, scp.port), query(),
                                           max_identifier_size=100_000)))
    assert run.returncode == ExitCode.NETWORK, run.err
    assert_no_traceback(run)
    assert one_line(run, "more than 100,000 bytes").endswith("(--max-identifier-size)")
    assert kept(tmp_path, "jsonl") == (["P0"], ["P0"])
    assert isinstance(events[-1], Fault) and events[-1].kind == "protocol"
    assert [e.index for e in events if isinstance(e, Pending)] == [1]


def test_a_peer_that_ignores_cancel_and_keeps_sending_is_aborted(tmp_path):
    """The cancel deadline is checked on every response (it was only checked when the
    queue ran dry, which a peer sending every 20 ms never lets happen)."""
    with FaultSCP(drip(n=100_000, honour_cancel=False, interval=0.02)) as scp:
        run = cli(scp, tmp_path, "--cancel", "3", fmt="csv", timeout=60)
    assert run.returncode == ExitCode.CANCELLED, run.err
    assert_no_traceback(run)
    one_line(run, "the SCP ignored the cancel", "which are kept")
    ids, rows = kept(tmp_path)
    assert ids == rows and ids[:3] == ["P0", "P1", "P2"]
    assert len(ids) < 100_000


@pytest.mark.parametrize("max_pdu", [1, 5, 6, 7, 13])
def test_a_tiny_maximum_pdu_in_the_association_answer_is_a_clear_error(max_pdu, tmp_path):
    with FaultSCP(lambda s: s.serve([patient(0)]), max_pdu=max_pdu) as scp:
        run = cli(scp, tmp_path, "-q", fmt="csv")
        events = engine_events(scp)
    assert run.returncode == ExitCode.NETWORK, run.err
    assert run.err == ""  # -q: nothing, not even a traceback
    assert isinstance(events[-1], Fault) and "too small" in events[-1].message
    from findtui.config import History

    assert History().entries()[-1].outcome == "network"
