"""The --batch CLI checked on the wire, by exit code and through `findtui history`.

Every test runs ``python -m findtui`` as a subprocess, as a user does, and looks
only at what crosses the process boundary: the bytes of the A-ASSOCIATE-RQ the
peer received, the exit code, the error line on stderr, the CSV on stdout and
``findtui history --json``. Nothing here imports findtui, so the tests hold
whatever the modules under src/ become.

The peers are on 127.0.0.1, on ports the kernel picks:

* :func:`recording_scp`: a pynetdicom C-FIND SCP that keeps the raw bytes of
  every PDU it receives (``evt.EVT_DATA_RECV``, before pynetdicom decodes
  them), so that the A-ASSOCIATE-RQ is parsed here, byte by byte (PS3.8 9.3.2);
* tests/faultscp.py's raw-socket ``FaultSCP`` for a scripted final status and
  for a peer that accepts the TCP connection and then says nothing;
* a listening socket whose accept queue is full, for a TCP connect that is
  never answered;
* ``findtui demo-scp`` in a subprocess.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from pydicom.dataset import Dataset

from faultscp import FaultSCP, assert_no_traceback, run_findtui

LOCALHOST = "127.0.0.1"

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
# findscu's proposal (../shared/seed/findscu.rst, "Transfer Syntaxes"), in its order.
SEED_ORDER = [IMPLICIT_LE, EXPLICIT_LE, DEFLATED_LE, EXPLICIT_BE]

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"

# Exit codes (README "Exit codes"); literal on purpose: they are the CLI's contract.
EXIT_OK = 0
EXIT_NETWORK = 3

STUDY_QUERY = ["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=",
               "-k", "StudyInstanceUID="]
PATIENT_QUERY = ["-P", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=",
                 "-k", "PatientName="]


def run_cli(args: list[str], timeout: float = 90) -> subprocess.CompletedProcess:
    """``python -m findtui ARGS`` (no --batch added), text output."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "findtui", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def error_lines(stderr: str) -> list[str]:
    return [line[3:] for line in stderr.splitlines() if line.startswith("E: ")]


# --------------------------------------------------------------------------
# The A-ASSOCIATE-RQ, parsed by hand
# --------------------------------------------------------------------------


@dataclass
class AssociateRQ:
    called_aet: str
    calling_aet: str
    contexts: list[tuple[int, str, list[str]]]  # (id, abstract syntax, transfer syntaxes)
    max_pdu: int | None  # the Maximum Length sub-item (0x51); None if absent

    def transfer_syntaxes_for(self, abstract_syntax: str) -> list[list[str]]:
        return [ts for _, abstract, ts in self.contexts if abstract == abstract_syntax]


def _sub_items(buf: bytes, pos: int = 0) -> Iterator[tuple[int, bytes]]:
    while pos + 4 <= len(buf):
        item_type, _, length = struct.unpack_from(">BBH", buf, pos)
        yield item_type, buf[pos + 4:pos + 4 + length]
        pos += 4 + length


def parse_associate_rq(pdu: bytes) -> AssociateRQ:
    """PS3.8 9.3.2: a type 0x01 PDU, its fixed fields, then variable items from byte 74."""
    pdu_type, _, length = struct.unpack_from(">BBI", pdu, 0)
    assert pdu_type == 0x01, f"not an A-ASSOCIATE-RQ: PDU type {pdu_type:#04x}"
    assert len(pdu) == 6 + length, "truncated A-ASSOCIATE-RQ"
    called = pdu[10:26].decode("ascii").strip()
    calling = pdu[26:42].decode("ascii").strip()
    contexts, max_pdu = [], None
    for item_type, value in _sub_items(pdu, 74):
        if item_type == 0x20:  # presentation context
            abstract, syntaxes = None, []
            for sub_type, sub in _sub_items(value, 4):
                uid = sub.rstrip(b"\0").decode("ascii")
                if sub_type == 0x30:
                    abstract = uid
                elif sub_type == 0x40:
                    syntaxes.append(uid)
            contexts.append((value[0], abstract, syntaxes))
        elif item_type == 0x50:  # user information
            for sub_type, sub in _sub_items(value):
                if sub_type == 0x51:
                    (max_pdu,) = struct.unpack(">I", sub)
    return AssociateRQ(called, calling, contexts, max_pdu)


@dataclass
class RecordingSCP:
    address: str
    port: int
    received: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def associate_requests(self) -> list[AssociateRQ]:
        with self.lock:
            pdus = list(self.received)
        return [parse_associate_rq(p) for p in pdus if p[:1] == b"\x01"]


@contextlib.contextmanager
def recording_scp() -> Iterator[RecordingSCP]:
    """A pynetdicom Q/R C-FIND SCP (all four uncompressed transfer syntaxes) that
    answers two pendings and Success, and keeps every PDU it received, raw."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import (
        PatientRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelFind,
        Verification,
    )

    peer = RecordingSCP(LOCALHOST, 0)

    def on_data(event):
        with peer.lock:
            peer.received.append(bytes(event.data))

    def on_find(event):
        for i in range(2):
            ds = Dataset()
            ds.QueryRetrieveLevel = event.identifier.QueryRetrieveLevel
            ds.PatientID = f"WIRE{i}"
            yield 0xFF00, ds
        yield 0x0000, None

    ae = AE("RECORDER")
    for sop in (PatientRootQueryRetrieveInformationModelFind,
                StudyRootQueryRetrieveInformationModelFind, Verification):
        ae.add_supported_context(sop, SEED_ORDER)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    server = ae.start_server((LOCALHOST, 0), block=False,
                             evt_handlers=[(evt.EVT_DATA_RECV, on_data),
                                           (evt.EVT_C_FIND, on_find)])
    peer.port = server.socket.getsockname()[1]
    try:
        yield peer
    finally:
        server.shutdown()


def only_request(scp: RecordingSCP) -> AssociateRQ:
    requests = scp.associate_requests()
    assert len(requests) == 1, f"expected one A-ASSOCIATE-RQ, got {len(requests)}"
    return requests[0]


# --------------------------------------------------------------------------
# Transfer syntaxes proposed
# --------------------------------------------------------------------------


@pytest.mark.parametrize("options,expected", [
    pytest.param([], SEED_ORDER, id="default-seed-order"),
    pytest.param(["--prefer-transfer-syntax", "explicit"],
                 [EXPLICIT_LE, IMPLICIT_LE, DEFLATED_LE, EXPLICIT_BE], id="prefer-explicit"),
    pytest.param(["--prefer-transfer-syntax", "big"],
                 [EXPLICIT_BE, IMPLICIT_LE, EXPLICIT_LE, DEFLATED_LE], id="prefer-big"),
    pytest.param(["--transfer-syntax", "big"], [EXPLICIT_BE], id="only-big"),
    pytest.param(["--transfer-syntax", "implicit"], [IMPLICIT_LE], id="only-implicit"),
])
def test_transfer_syntaxes_proposed_for_the_find_context(options, expected):
    """The C-FIND presentation context of the A-ASSOCIATE-RQ proposes exactly these
    transfer syntaxes, in this order (findscu's order by default; the preferred one
    first and then the other three in findscu's order; or the only one)."""
    with recording_scp() as scp:
        r = run_cli(["--batch", "-q", "--output-format", "csv", *options,
                     scp.address, str(scp.port), *STUDY_QUERY])
        rq = only_request(scp)
    assert r.returncode == EXIT_OK, r.stderr
    assert [row["PatientID"] for row in csv.DictReader(io.StringIO(r.stdout))] == [
        "WIRE0", "WIRE1"]
    # One presentation context for the Study Root C-FIND, with exactly these syntaxes.
    assert rq.transfer_syntaxes_for(STUDY_ROOT_FIND) == [expected], rq.contexts


def test_patient_root_model_gets_the_same_default_proposal():
    with recording_scp() as scp:
        r = run_cli(["--batch", "-q", scp.address, str(scp.port), *PATIENT_QUERY])
        rq = only_request(scp)
    assert r.returncode == EXIT_OK, r.stderr
    assert rq.transfer_syntaxes_for(PATIENT_ROOT_FIND) == [SEED_ORDER], rq.contexts
    assert rq.called_aet == "ANY-SCP" and rq.calling_aet == "FINDSCU"  # findscu's defaults


# --------------------------------------------------------------------------
# -pdu: the Maximum Length we advertise
# --------------------------------------------------------------------------


@pytest.mark.parametrize("options,advertised", [
    pytest.param([], 16382, id="default-16382"),
    pytest.param(["-pdu", "32768"], 32768, id="pdu-32768"),
    pytest.param(["-pdu", "8192"], 8192, id="pdu-8192"),
    pytest.param(["-pdu", "0"], 0, id="pdu-0-unlimited"),
])
def test_max_pdu_advertised_in_the_associate_rq(options, advertised):
    with recording_scp() as scp:
        r = run_cli(["--batch", "-q", *options, scp.address, str(scp.port), *STUDY_QUERY])
        rq = only_request(scp)
    assert r.returncode == EXIT_OK, r.stderr
    assert rq.max_pdu == advertised


# --------------------------------------------------------------------------
# A Warning final status: exit 0, "warning" in the history
# --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [0xB000, 0x0001], ids=["0xB000", "0x0001"])
def test_warning_final_status_exits_0_and_is_a_warning_in_the_history(status, findtui_config_dir):
    finals = iter([0x0000, status])  # the first association gets Success, the next one the warning

    def script(s):
        s.serve([{"PatientID": "W1", "PatientName": "WARN^ONE"},
                 {"PatientID": "W2", "PatientName": "WARN^TWO"}], final=next(finals))

    assert os.environ["FINDTUI_CONFIG_DIR"] == str(findtui_config_dir)
    with FaultSCP(script) as scp:
        # A plain success first, so that the history's last entry is told apart.
        ok = run_cli(["--batch", "-q", "-aec", "PACS", scp.address, str(scp.port),
                      *PATIENT_QUERY])
        run = run_findtui(["--output-format", "csv", scp.address, str(scp.port),
                           *PATIENT_QUERY])
    assert ok.returncode == EXIT_OK, ok.stderr
    assert run.returncode == EXIT_OK, run.err
    assert_no_traceback(run)
    assert [r["PatientID"] for r in csv.DictReader(io.StringIO(run.out))] == ["W1", "W2"]
    assert f"Find SCP Result: 0x{status:04X} (" in run.err, run.err
    assert not run.error_lines(), run.err

    hist = run_cli(["history", "--json"])
    assert hist.returncode == 0, hist.stderr
    entries = [json.loads(line) for line in hist.stdout.splitlines()]
    assert len(entries) == 2, hist.stdout
    assert entries[0]["outcome"] != "warning"
    last = entries[-1]
    assert last["outcome"] == "warning", last
    assert last["status_code"] == status
    assert last["results"] == 2
    assert (last["address"], last["port"]) == (LOCALHOST, scp.port)


# --------------------------------------------------------------------------
# Timeouts: -ta, -tn (and -td), each on the path it governs
# --------------------------------------------------------------------------
#
# How findtui maps them onto pynetdicom (engine/query.py _make_ae):
#   -ta -> AE.acse_timeout: the wait for the A-ASSOCIATE-AC/RJ once the RQ is sent;
#   -tn -> AE.connection_timeout (the TCP connect) and AE.network_timeout
#          (pynetdicom's idle timer, which its reactor does not check while a C-FIND
#          runs: it does not bound the wait for C-FIND responses);
#   -td -> AE.dimse_timeout, and findtui's own wait for the next C-FIND response.
#
# No test measures time. Each peer stays silent, but not for ever: it answers
# after LATE_ANSWER seconds (or as soon as the client has gone), so that a
# timeout that is not honoured shows as a different *outcome* (an association
# rejected, a query that succeeds), not as a slower test.

LATE_ANSWER = 20.0  # s: far above the 1-3 s timeouts given, below the 30 s defaults

ASSOCIATE_RJ = struct.pack(">BBIBBBB", 0x03, 0, 4, 0, 1, 1, 1)  # permanent, user, no reason


def _read_pdu(conn: socket.socket) -> bytes:
    def exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    head = exact(6)
    return head + exact(struct.unpack(">I", head[2:])[0])


class LateRejectingPeer:
    """Accepts the TCP connection, reads the A-ASSOCIATE-RQ, then says nothing
    until the client gives up (closes or aborts) or LATE_ANSWER seconds have
    passed; then, if the client is still there, it rejects the association.

    ``outcomes``: per connection, "client gave up" or "rejected"."""

    def __init__(self) -> None:
        self.listener = socket.create_server((LOCALHOST, 0))
        self.address, self.port = LOCALHOST, self.listener.getsockname()[1]
        self.outcomes: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> LateRejectingPeer:
        self._accept.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in [self._accept, *self._threads]:
            thread.join(LATE_ANSWER + 5)
        self.listener.close()

    def _accept_loop(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(10)
                assert _read_pdu(conn)[:1] == b"\x01"
                conn.settimeout(LATE_ANSWER)
                try:
                    conn.recv(1)  # an A-ABORT, or b"" (closed): the client gave up
                    self.outcomes.append("client gave up")
                except TimeoutError:
                    conn.sendall(ASSOCIATE_RJ)
                    self.outcomes.append("rejected")
            except OSError as exc:
                self.outcomes.append(f"error: {exc}")


def names_option(line: str, option: str) -> bool:
    """Whether the message points at this option (e.g. "-ta", not within "--tls")."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", line) is not None


def timeout_line(stderr: str) -> str:
    """The one error line about a timeout (there must be exactly one)."""
    lines = [line for line in error_lines(stderr) if "within" in line]
    assert len(lines) == 1, stderr
    return lines[0]


def test_ta_bounds_the_wait_for_the_association_answer():
    """A peer that accepts the TCP connection, reads the A-ASSOCIATE-RQ and does not
    answer: -ta 1 gives up (-tn 60 plays no part); exit 3, one error line naming
    -ta and its value. (Were -ta not honoured, the peer's late A-ASSOCIATE-RJ would
    arrive first and the error would be a rejection.)"""
    with LateRejectingPeer() as peer:
        r = run_cli(["--batch", "-ta", "1", "-tn", "60", peer.address, str(peer.port),
                     *PATIENT_QUERY])
    assert peer.outcomes == ["client gave up"], (peer.outcomes, r.stderr)
    assert r.returncode == EXIT_NETWORK, r.stderr
    assert "Traceback" not in r.stderr
    line = timeout_line(r.stderr)
    assert line.startswith(f"{peer.address}:{peer.port}: "), line
    assert "association request within 1 s" in line, line
    assert names_option(line, "-ta") and not names_option(line, "-tn"), line
    assert "rejected" not in r.stderr


def test_tn_does_not_bound_the_wait_for_the_association_answer():
    """-tn 1 with -ta 3 against the same silent peer: the failure is -ta's, with
    -ta's value (were -tn governing this wait, the message would be -tn's)."""
    with LateRejectingPeer() as peer:
        r = run_cli(["--batch", "-ta", "3", "-tn", "1", peer.address, str(peer.port),
                     *PATIENT_QUERY])
    assert peer.outcomes == ["client gave up"], (peer.outcomes, r.stderr)
    assert r.returncode == EXIT_NETWORK, r.stderr
    line = timeout_line(r.stderr)
    assert "within 3 s" in line, line
    assert names_option(line, "-ta") and not names_option(line, "-tn"), line


class UnansweredPort:
    """A port whose TCP handshake is not completed: a listener with a backlog of 0
    and a full accept queue (Linux then drops further SYNs, and the client's
    connect waits, retransmitting its SYN, until its own timeout).

    When the client has gone (``release()``) or after LATE_ANSWER seconds, the
    queue is emptied, so a client still trying gets connected at its next SYN
    retransmission, and is then rejected (``rejected`` counts those)."""

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind((LOCALHOST, 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.rejected = 0
        self._released = threading.Event()
        self._stop = threading.Event()
        self._fillers: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> UnansweredPort:
        for _ in range(4):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.connect((LOCALHOST, self.port))
            self._fillers.append(c)
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect((LOCALHOST, self.port))
        except TimeoutError:
            pass  # the premise of the test holds: a connect gets no answer
        else:
            self.__exit__()
            pytest.fail("could not make a port that never answers a TCP connect (a full "
                        "accept queue); this test relies on Linux dropping the SYN",
                        pytrace=False)
        finally:
            probe.close()
        self._thread.start()
        return self

    def release(self) -> None:
        self._released.set()

    def __exit__(self, *exc) -> None:
        self._released.set()
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        for c in self._fillers:
            c.close()
        self.listener.close()

    def _run(self) -> None:
        self._released.wait(LATE_ANSWER)
        fillers = {c.getsockname()[1] for c in self._fillers if c.fileno() != -1}
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, (_, port) = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                if port in fillers:
                    continue
                with contextlib.suppress(OSError, ConnectionError):
                    conn.settimeout(10)
                    _read_pdu(conn)
                    conn.sendall(ASSOCIATE_RJ)
                    self.rejected += 1


def test_tn_bounds_the_tcp_connect():
    """A TCP connect that is never answered: -tn 1 gives up (-ta 60 plays no part
    before the connection exists); exit 3, one error line naming -tn and its value.
    (Were -tn not honoured, the connect would get through once the port is freed
    after LATE_ANSWER seconds, and the error would be a rejection.)"""
    with UnansweredPort() as port:
        r = run_cli(["--batch", "-tn", "1", "-ta", "60", LOCALHOST, str(port.port),
                     *PATIENT_QUERY], timeout=120)
        port.release()
    assert port.rejected == 0, r.stderr
    assert r.returncode == EXIT_NETWORK, r.stderr
    assert "Traceback" not in r.stderr
    line = timeout_line(r.stderr)
    assert line.startswith(f"{LOCALHOST}:{port.port}: "), line
    assert "within 1 s" in line, line
    assert names_option(line, "-tn") and not names_option(line, "-ta"), line
    assert "rejected" not in r.stderr


def test_td_bounds_the_wait_for_a_find_response():
    """Associated, C-FIND-RQ sent, then silence: -td 1 gives up (-tn 60 and -ta 60
    play no part); exit 3, one error line naming -td. (Were -td not honoured, the
    peer's late answer, one match and Success, would make it exit 0.)"""
    def script(s):
        s.hang(LATE_ANSWER)  # returns early when the client goes away
        s.serve([{"PatientID": "LATE", "PatientName": "LATE^ANSWER"}])

    with FaultSCP(script) as scp:
        r = run_cli(["--batch", "-td", "1", "-tn", "60", "-ta", "60", scp.address,
                     str(scp.port), *PATIENT_QUERY])
    assert r.returncode == EXIT_NETWORK, r.stderr
    assert "Traceback" not in r.stderr
    lines = [line for line in error_lines(r.stderr) if names_option(line, "-td")]
    assert len(lines) == 1, r.stderr
    assert "1 s" in lines[0], lines[0]
    assert not names_option(lines[0], "-tn") and not names_option(lines[0], "-ta"), lines[0]
    assert "LATE" not in r.stderr


# --------------------------------------------------------------------------
# findtui demo-scp
# --------------------------------------------------------------------------

_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+) \((\d+) patients, (\d+) studies\)")


@contextlib.contextmanager
def demo_scp_process(*args: str) -> Iterator[tuple[subprocess.Popen, int, str]]:
    """``findtui demo-scp --port 0 ARGS``; yields (process, port, its first line)."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "findtui", "demo-scp", "--port", "0", *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()  # it prints the line once it listens (flushed)
        match = _LISTENING.search(line)
        if match is None:
            proc.kill()
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"demo-scp did not report where it listens: {line!r} {err[-2000:]}")
        yield proc, int(match.group(1)), line
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT],
                         ids=["SIGTERM", "SIGINT"])
def test_demo_scp_serves_exactly_the_studies_it_promises_and_stops_cleanly(stop_signal):
    patients, studies = 7, 23
    with demo_scp_process("--patients", str(patients), "--studies", str(studies),
                          "--seed", "5") as (proc, port, line):
        assert f"({patients} patients, {studies} studies)" in line
        r = run_cli(["--batch", "-q", "--output-format", "csv", LOCALHOST, str(port),
                     "-aec", "FINDTUI-DEMO", "-S", "-k", "QueryRetrieveLevel=STUDY",
                     "-k", "PatientID=", "-k", "StudyInstanceUID="])
        assert r.returncode == EXIT_OK, r.stderr
        rows = list(csv.DictReader(io.StringIO(r.stdout)))
        assert len(rows) == studies
        assert len({row["StudyInstanceUID"] for row in rows}) == studies
        assert all(row["StudyInstanceUID"] for row in rows)
        assert len({row["PatientID"] for row in rows}) == patients  # each has one
        r = run_cli(["--batch", "-q", "--output-format", "csv", LOCALHOST, str(port), "-P",
                     "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID="])
        assert r.returncode == EXIT_OK, r.stderr
        assert len(list(csv.DictReader(io.StringIO(r.stdout)))) == patients

        proc.send_signal(stop_signal)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "Traceback" not in err and "Traceback" not in out, err
    # It stopped listening.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOCALHOST, port), timeout=5).close()
