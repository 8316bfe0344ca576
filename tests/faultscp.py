"""Fault-injecting DICOM peers for the tests, on 127.0.0.1 only.

:class:`FaultSCP` is a raw-socket peer: it speaks just enough of the DICOM
upper layer (PS3.8) and DIMSE (PS3.7) to accept or reject an association and
answer a C-FIND, byte by byte as a test script says, so that it can also do
what no well-behaved SCP does: send an A-ABORT after N responses, close the
socket in the middle of a PDU, send garbage, hang, send an identifier that
does not decode, values with control characters, a wrong character set, a
64 KB value...

    def script(s: Session):
        for i in range(3):
            s.pending({"PatientID": f"P{i}"})
        s.abort()

    with FaultSCP(script) as scp:          # scp.address, scp.port
        ...

``FaultSCP(reject=(result, source, reason))`` rejects every association
request with that A-ASSOCIATE-RJ and closes the connection at once (as DCMTK
does); ``on_associate="garbage"|"close"|"hang"`` misbehaves before the
association is established.

:func:`pynetdicom_scp` starts a pynetdicom SCP (optionally with an
``ssl.SSLContext``) whose C-FIND handler yields what the test gives it: for
the cases a real SCP implementation is enough for (TLS, statuses).

Everything a peer starts is stopped by its context manager, also when the
test failed; ports are free ports picked by the kernel (bind to port 0).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pynetdicom.dsutils import encode

LOCALHOST = "127.0.0.1"

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
VERIFICATION = "1.2.840.10008.1.1"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.9.7433.1.1"

C_FIND_RQ, C_FIND_RSP = 0x0020, 0x8020
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
C_CANCEL_RQ = 0x0FFF
NO_DATASET = 0x0101

# A-ASSOCIATE-RJ (result, source, reason) combinations of PS3.8 Table 9-21.
REJECTIONS = {
    "permanent-user-no-reason": (1, 1, 1),
    "permanent-user-context-name": (1, 1, 2),
    "permanent-user-calling-aet": (1, 1, 3),
    "permanent-user-called-aet": (1, 1, 7),
    "transient-user-no-reason": (2, 1, 1),
    "permanent-acse-no-reason": (1, 2, 1),
    "permanent-acse-protocol-version": (1, 2, 2),
    "transient-presentation-congestion": (2, 3, 1),
    "transient-presentation-local-limit": (2, 3, 2),
}


class PeerClosed(Exception):
    """The client closed the connection (or aborted) while the script was running."""


def _uid_bytes(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\0" * (len(raw) & 1)


def _even(value: bytes, pad: bytes = b" ") -> bytes:
    return value + pad * (len(value) & 1)


def command_set(fields: list[tuple[int, bytes]]) -> bytes:
    """An implicit VR LE command set: (element, value bytes) of group 0000, with its length."""
    body = b"".join(struct.pack("<HHI", 0, elem, len(value)) + value for elem, value in fields)
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def encode_identifier(data: Dataset | Mapping[str, object], ts: str) -> bytes:
    """Encode a Dataset (or {keyword: value}) in transfer syntax ``ts``, no validation."""
    if not isinstance(data, Dataset):
        ds = Dataset()
        for keyword, value in data.items():
            tag = tag_for_keyword(keyword)
            ds[tag] = DataElement(tag, dictionary_VR(tag), value, validation_mode=config.IGNORE)
        data = ds
    raw = encode(data, ts == IMPLICIT_VR_LE, True)
    assert raw is not None, "pydicom could not encode the test identifier"
    return raw


_LONG_LENGTH_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"}


def element(tag: int, vr: str, value: bytes, ts: str = EXPLICIT_VR_LE) -> bytes:
    """One data element, encoded by hand (no validation at all) in LE ``ts``."""
    value = _even(value, b"\0" if vr in ("UI", "OB", "UN") else b" ")
    group, elem = tag >> 16, tag & 0xFFFF
    if ts == IMPLICIT_VR_LE:
        return struct.pack("<HHI", group, elem, len(value)) + value
    if vr in _LONG_LENGTH_VRS:
        return struct.pack("<HH2s2xI", group, elem, vr.encode(), len(value)) + value
    if len(value) > 0xFFFF:
        raise ValueError(f"{vr} value of {len(value)} bytes needs implicit VR")
    return struct.pack("<HH2sH", group, elem, vr.encode(), len(value)) + value


def sequence(tag: int, items: list[bytes], ts: str = EXPLICIT_VR_LE) -> bytes:
    """A sequence of undefined length whose items (encoded datasets) have undefined length."""
    group, elem = tag >> 16, tag & 0xFFFF
    if ts == IMPLICIT_VR_LE:
        head = struct.pack("<HHI", group, elem, 0xFFFFFFFF)
    else:
        head = struct.pack("<HH2s2xI", group, elem, b"SQ", 0xFFFFFFFF)
    body = b"".join(struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + item
                    + struct.pack("<HHI", 0xFFFE, 0xE00D, 0) for item in items)
    return head + body + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)


@dataclass
class Message:
    context_id: int
    command: dict[int, bytes]
    data: bytes | None

    @property
    def command_field(self) -> int:
        return struct.unpack("<H", self.command[0x0100])[0]

    @property
    def message_id(self) -> int:
        return struct.unpack("<H", self.command.get(0x0110, b"\0\0"))[0]


def parse_command(buf: bytes) -> dict[int, bytes]:
    fields, pos = {}, 0
    while pos + 8 <= len(buf):
        _, elem, length = struct.unpack_from("<HHI", buf, pos)
        fields[elem] = buf[pos + 8:pos + 8 + length]
        pos += 8 + length
    return fields


@dataclass
class Session:
    """One association, as the test script sees it (all sends block until written)."""

    scp: FaultSCP
    sock: socket.socket
    peer_max_pdu: int
    contexts: dict[int, tuple[str, str]]  # context id -> (abstract syntax, transfer syntax)
    request: Message | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    closed: bool = False
    _command: bytearray = field(default_factory=bytearray, repr=False)
    _data: bytearray = field(default_factory=bytearray, repr=False)
    _fields: dict = field(default_factory=dict, repr=False)

    # --- what the script can do --------------------------------------------

    @property
    def transfer_syntax(self) -> str:
        return self.contexts[self.request.context_id][1]

    @property
    def sop_class(self) -> str:
        return self.contexts[self.request.context_id][0]

    def pending(self, identifier: Dataset | Mapping[str, object] | bytes,
                status: int = 0xFF00) -> None:
        raw = identifier if isinstance(identifier, bytes) else encode_identifier(
            identifier, self.transfer_syntax)
        self.send_response(status, data=raw)

    def final(self, status: int = 0x0000, comment: bytes | str | None = None,
              offending: tuple[int, ...] = (), identifier=None) -> None:
        raw = None
        if identifier is not None:
            raw = identifier if isinstance(identifier, bytes) else encode_identifier(
                identifier, self.transfer_syntax)
        self.send_response(status, data=raw, comment=comment, offending=offending)

    def element(self, tag: int, vr: str, value: bytes) -> bytes:
        return element(tag, vr, value, self.transfer_syntax)

    def sequence(self, tag: int, items: list[bytes]) -> bytes:
        return sequence(tag, items, self.transfer_syntax)

    def serve(self, identifiers, *, interval: float = 0.0, status: int = 0xFF00,
              final: int = 0x0000, honour_cancel: bool = True) -> None:
        """Send these pendings (``interval`` s apart), then the final status and release.

        A C-CANCEL stops the pendings and is answered with 0xFE00 (unless
        ``honour_cancel`` is false: then it is ignored and the peer keeps going).
        """
        for identifier in identifiers:
            if honour_cancel and self.cancelled.is_set():
                break
            self.pending(identifier, status)
            self.sleep(interval or 0.005)
        cancelled = honour_cancel and self.cancelled.is_set()
        self.final(0xFE00 if cancelled else final)
        self.finish()

    def reset(self) -> None:
        """Close the connection with a TCP RST (SO_LINGER 0), not a FIN."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.closed = True
        self.sock.close()

    def send_response(self, status: int, data: bytes | None = None,
                      comment: bytes | str | None = None, offending: tuple[int, ...] = ()
                      ) -> None:
        fields = [
            (0x0002, _uid_bytes(self.sop_class)),
            (0x0100, struct.pack("<H", C_FIND_RSP)),
            (0x0120, struct.pack("<H", self.request.message_id)),
            (0x0800, struct.pack("<H", 0x0000 if data is not None else NO_DATASET)),
            (0x0900, struct.pack("<H", status)),
        ]
        if offending:
            fields.append((0x0901, b"".join(struct.pack("<HH", t >> 16, t & 0xFFFF)
                                            for t in offending)))
        if comment is not None:
            if isinstance(comment, str):
                comment = comment.encode("latin-1")
            fields.append((0x0902, _even(comment)))
        self.send_message(self.request.context_id, command_set(fields), data)

    def send_message(self, context_id: int, command: bytes, data: bytes | None) -> None:
        self.raw(self.p_data(context_id, command, True, True))
        if data is not None:
            chunk = max(self.peer_max_pdu - 12, 16) if self.peer_max_pdu else 1 << 20
            for start in range(0, max(len(data), 1), chunk):
                last = start + chunk >= len(data)
                self.raw(self.p_data(context_id, data[start:start + chunk], False, last))

    @staticmethod
    def p_data(context_id: int, value: bytes, is_command: bool, last: bool) -> bytes:
        header = (1 if is_command else 0) | (2 if last else 0)
        pdv = struct.pack(">IBB", len(value) + 2, context_id, header) + value
        return struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv

    def raw(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise PeerClosed(str(exc)) from None

    def abort(self, source: int = 0, reason: int = 0) -> None:
        """Send an A-ABORT PDU and close the connection."""
        self.raw(struct.pack(">BBIBBBB", 0x07, 0, 4, 0, 0, source, reason))
        self.close()

    def close(self) -> None:
        """Close the TCP connection (no A-ABORT, no release)."""
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()

    def wait_cancel(self, timeout: float) -> bool:
        """Read the client's PDUs until a C-CANCEL-RQ arrived (True) or ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.cancelled.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._read_one(left)
        return True

    def sleep(self, seconds: float) -> None:
        """Wait while still reading what the client sends (a C-CANCEL is noted)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._read_one(left)

    def hang(self, seconds: float = 60.0) -> None:
        """Never answer again: wait until the client goes away (or ``seconds``)."""
        with contextlib.suppress(PeerClosed):
            self.sleep(seconds)

    def finish(self, timeout: float = 10.0) -> None:
        """After the final response: answer the client's A-RELEASE-RQ, then close."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(PeerClosed):
            while time.monotonic() < deadline:
                pdu_type, _ = self._read_pdu(deadline - time.monotonic())
                if pdu_type == 0x05:
                    self.raw(struct.pack(">BBII", 0x06, 0, 4, 0))
                    break
                if pdu_type == 0x07:
                    break
        self.close()

    # --- reading ------------------------------------------------------------

    def _recv_exact(self, n: int, timeout: float) -> bytes:
        buf = bytearray()
        self.sock.settimeout(max(timeout, 0.01))
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except TimeoutError:
                if buf:
                    continue
                raise
            except OSError as exc:
                raise PeerClosed(str(exc)) from None
            if not chunk:
                raise PeerClosed("connection closed")
            buf += chunk
        return bytes(buf)

    def _read_pdu(self, timeout: float) -> tuple[int | None, bytes]:
        try:
            head = self._recv_exact(6, timeout)
        except TimeoutError:
            return None, b""
        pdu_type, _, length = struct.unpack(">BBI", head)
        body = self._recv_exact(length, 30.0)
        if pdu_type == 0x07:
            raise PeerClosed("the client aborted")
        return pdu_type, body

    def _read_one(self, timeout: float) -> Message | None:
        """Read one PDU; returns a complete DIMSE message when one ends."""
        pdu_type, body = self._read_pdu(timeout)
        if pdu_type == 0x05:  # A-RELEASE-RQ out of turn: answer it
            self.raw(struct.pack(">BBII", 0x06, 0, 4, 0))
            raise PeerClosed("the client released")
        if pdu_type != 0x04:
            return None
        pos = 0
        while pos < len(body):
            length, context_id, header = struct.unpack_from(">IBB", body, pos)
            value = body[pos + 6:pos + 4 + length]
            pos += 4 + length
            if header & 1:
                self._command += value
                if header & 2:
                    fields = parse_command(bytes(self._command))
                    self._command = bytearray()
                    if struct.unpack("<H", fields[0x0800])[0] == NO_DATASET:
                        return self._message(Message(context_id, fields, None))
                    self._fields = fields
            else:
                self._data += value
                if header & 2:
                    message = Message(context_id, self._fields, bytes(self._data))
                    self._data = bytearray()
                    return self._message(message)
        return None

    def _message(self, message: Message) -> Message:
        if message.command_field == C_CANCEL_RQ:
            self.cancelled.set()
            self.scp.cancels += 1
        return message

    def read_request(self, timeout: float = 10.0) -> Message:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self._read_one(deadline - time.monotonic())
            if message is None:
                continue
            if message.command_field == C_ECHO_RQ:
                self.request = message
                fields = [
                    (0x0002, _uid_bytes(VERIFICATION)),
                    (0x0100, struct.pack("<H", C_ECHO_RSP)),
                    (0x0120, struct.pack("<H", message.message_id)),
                    (0x0800, struct.pack("<H", NO_DATASET)),
                    (0x0900, struct.pack("<H", 0)),
                ]
                self.send_message(message.context_id, command_set(fields), None)
                continue
            if message.command_field == C_FIND_RQ:
                self.request = message
                return message
        raise PeerClosed("no C-FIND-RQ")


Script = Callable[[Session], None]


def _items(buf: bytes, pos: int = 0) -> Iterator[tuple[int, bytes]]:
    while pos + 4 <= len(buf):
        item_type, _, length = struct.unpack_from(">BBH", buf, pos)
        yield item_type, buf[pos + 4:pos + 4 + length]
        pos += 4 + length


class FaultSCP:
    """A raw-socket peer that runs ``script(session)`` for every C-FIND it receives."""

    def __init__(self, script: Script | None = None, *, reject: tuple[int, int, int] | None = None,
                 on_associate: str | None = None, ae_title: str = "FAULTSCP",
                 transfer_syntaxes: tuple[str, ...] = (EXPLICIT_VR_LE, IMPLICIT_VR_LE),
                 implementation_version: bytes = b"FAULTSCP", max_pdu: int = 16382) -> None:
        self.script = script or (lambda s: s.final(0))
        self.reject = reject
        self.on_associate = on_associate
        self.ae_title = ae_title
        self.transfer_syntaxes = transfer_syntaxes
        self.implementation_version = implementation_version
        self.max_pdu = max_pdu  # what the A-ASSOCIATE-AC says we receive
        self.address = LOCALHOST
        self.port = 0
        self.associations = 0
        self.cancels = 0
        self.errors: list[BaseException] = []
        self.done = threading.Event()  # set when a script has returned
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._stopping = False

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> FaultSCP:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOCALHOST, 0))
        listener.listen(8)
        self._listener = listener
        self.port = listener.getsockname()[1]
        thread = threading.Thread(target=self._accept_loop, name="faultscp-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        for conn in list(self._conns):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> FaultSCP:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                      name="faultscp-conn")
            thread.start()
            self._threads.append(thread)

    # --- one connection -------------------------------------------------------

    def _serve(self, conn: socket.socket) -> None:
        session = Session(self, conn, 0, {})
        try:
            if self.on_associate == "close":
                session.close()
                return
            pdu_type, body = session._read_pdu(30.0)
            if pdu_type != 0x01:
                return
            if self.on_associate == "garbage":
                session.raw(b"\xde\xad\xbe\xef" * 64)
                session.hang(30)
                return
            if self.on_associate == "hang":
                session.hang(60)
                return
            if self.reject is not None:
                result, source, reason = self.reject
                session.raw(struct.pack(">BBIBBBB", 0x03, 0, 4, 0, result, source, reason))
                session.close()
                return
            self._accept(session, body)
            self.associations += 1
            session.read_request()
            try:
                self.script(session)
            finally:
                self.done.set()
        except PeerClosed:
            pass
        except BaseException as exc:  # surfaced by the tests that look at scp.errors
            if not self._stopping:
                self.errors.append(exc)
        finally:
            session.close()

    def _accept(self, session: Session, rq: bytes) -> None:
        called, calling = rq[4:20], rq[20:36]
        results = []
        for item_type, value in _items(rq, 68):
            if item_type == 0x20:  # presentation context
                context_id = value[0]
                abstract, proposed = None, []
                for sub_type, sub in _items(value, 4):
                    uid = sub.rstrip(b"\0").decode("ascii")
                    if sub_type == 0x30:
                        abstract = uid
                    elif sub_type == 0x40:
                        proposed.append(uid)
                chosen = next((ts for ts in self.transfer_syntaxes if ts in proposed), None)
                results.append((context_id, chosen))
                if chosen:
                    session.contexts[context_id] = (abstract, chosen)
            elif item_type == 0x50:  # user information
                for sub_type, sub in _items(value):
                    if sub_type == 0x51:
                        session.peer_max_pdu = struct.unpack(">I", sub)[0]

        def item(item_type: int, value: bytes) -> bytes:
            return struct.pack(">BBH", item_type, 0, len(value)) + value

        body = item(0x10, APPLICATION_CONTEXT.encode())
        for context_id, chosen in results:
            ts = item(0x40, (chosen or IMPLICIT_VR_LE).encode())
            body += item(0x21, struct.pack(">BBBB", context_id, 0, 0 if chosen else 4, 0) + ts)
        body += item(0x50, item(0x51, struct.pack(">I", self.max_pdu))
                     + item(0x52, IMPLEMENTATION_UID.encode())
                     + item(0x55, self.implementation_version))
        ac = struct.pack(">HH", 1, 0) + called + calling + b"\0" * 32 + body
        session.raw(struct.pack(">BBI", 0x02, 0, len(ac)) + ac)


# --------------------------------------------------------------------------
# A pynetdicom SCP whose C-FIND handler yields what it is given
# --------------------------------------------------------------------------


@contextlib.contextmanager
def pynetdicom_scp(responses: Callable[[object], Iterator[tuple[int, Dataset | None]]]
                   | None = None, *, ssl_context=None, ae_title: str = "PYNDSCP",
                   require_calling_aet: list[str] | None = None) -> Iterator[tuple[str, int]]:
    """A pynetdicom C-FIND SCP (Patient/Study Root, Worklist, Verification) on a free port.

    ``responses(event)`` yields ``(status, identifier)`` like a pynetdicom
    C-FIND handler; the default answers one pending and Success. Yields
    ``(address, port)``; the server is shut down on exit.
    """
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import (
        ModalityWorklistInformationFind,
        PatientRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelFind,
        Verification,
    )

    def default(event):
        ds = Dataset()
        ds.PatientID = "TLS-OK"
        ds.PatientName = "SECURE^PATIENT"
        yield 0xFF00, ds
        yield 0x0000, None

    handler_impl = responses or default

    def handler(event):
        yield from handler_impl(event)

    ae = AE(ae_title)
    for sop in (PatientRootQueryRetrieveInformationModelFind,
                StudyRootQueryRetrieveInformationModelFind, ModalityWorklistInformationFind,
                Verification):
        ae.add_supported_context(sop)
    if require_calling_aet:
        ae.require_calling_aet = require_calling_aet
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 10
    server = ae.start_server((LOCALHOST, 0), block=False, ssl_context=ssl_context,
                             evt_handlers=[(evt.EVT_C_FIND, handler)])
    try:
        yield LOCALHOST, server.socket.getsockname()[1]
    finally:
        server.shutdown()


# --------------------------------------------------------------------------
# Running the CLI, and checking what it wrote
# --------------------------------------------------------------------------


@dataclass
class CliRun:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8")

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8")

    def error_lines(self) -> list[str]:
        return [line[3:] for line in self.err.splitlines() if line.startswith("E: ")]


def run_findtui(args: list[str], *, timeout: float = 60, **popen) -> CliRun:
    """``python -m findtui --batch ARGS`` as a user runs it; stdout/stderr as bytes."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    env.update(popen.pop("env", {}))
    proc = subprocess.run([sys.executable, "-m", "findtui", "--batch", *args],
                          capture_output=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL, **popen)
    return CliRun(proc.returncode, proc.stdout, proc.stderr)


def assert_no_traceback(run: CliRun) -> None:
    assert "Traceback" not in run.err and "Exception in thread" not in run.err, run.err[-3000:]
    assert "Warning:" not in run.err, run.err[-3000:]  # a raw Python warning line
