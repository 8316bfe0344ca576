"""Run a C-FIND: a request in, a stream of events out. The only module that talks to pynetdicom.

pynetdicom associates, sends the C-FIND-RQ, the C-CANCEL, the release or the abort.
The responses are read by the query itself, straight from the socket (``_DirectReader``),
so that it can keep each identifier's raw bytes (written as-is by ``-w``), decode
lazily (nothing pays for a dump nobody reads), report an undecodable identifier without
losing the others, bound what a peer may cost (PDU and identifier size, stalls), poll
for cancel, and bound the wait after a C-CANCEL. Under -d pynetdicom reads them (its
dumps), through ``_DebugReceiver``.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import socket
import struct
import ssl
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, evt
from pynetdicom._handlers import (
    standard_dimse_recv_handler,
    standard_dimse_sent_handler,
    standard_pdu_recv_handler,
    standard_pdu_sent_handler,
)
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.dsutils import decode
from pynetdicom.pdu_primitives import A_ASSOCIATE, A_P_ABORT, SOPClassExtendedNegotiation
from pynetdicom.sop_class import Verification

from findtui.engine.models import (
    ExtendedNegotiation,
    QueryModel,
    is_pending,
    status_name,
)
from findtui.engine.network import Network, TLSOptions

PYNETDICOM_LOGGER = logging.getLogger("pynetdicom")

MAX_IDENTIFIER_SIZE = 16 * 1024 * 1024  # bytes; C-FIND identifiers are a few KB
# pynetdicom cannot fragment a message for a peer that receives fewer bytes than this
# (ValueError or ZeroDivisionError deep in its P-DATA encoder).
MIN_PEER_PDU = 14


@dataclass
class FindRequest:
    network: Network
    identifier: Dataset
    model: QueryModel = QueryModel.PATIENT
    ext_neg: ExtendedNegotiation = field(default_factory=ExtendedNegotiation)
    priority: int = 2
    cancel_after: int | None = None
    # How long to wait for the final status after a C-CANCEL before aborting.
    cancel_grace: float = 5.0
    # The largest response identifier accepted; a larger one aborts the association.
    max_identifier_size: int = MAX_IDENTIFIER_SIZE

    @property
    def transfer_syntaxes(self) -> tuple[UID, ...]:
        return self.network.transfer_syntaxes()


# --- events -----------------------------------------------------------------


@dataclass(frozen=True)
class Associated:
    transfer_syntax: UID
    ext_neg_sent: bytes | None
    ext_neg_reply: bytes | None
    peer_max_pdu: int | None


@dataclass(frozen=True)
class AssociationFailed:
    """The association never got established. kind: rejected|unreachable|timeout|aborted|tls|no-context.

    ``message`` names settings by their labels; ``settings`` lists the ones to check
    (engine.settings keys), which each front end points to in its own words.
    """

    kind: str
    message: str
    settings: tuple[str, ...] = ()


class IdentifierDecodeError(ValueError):
    pass


@dataclass
class Pending:
    """One pending C-FIND response; ``identifier`` is decoded on first use."""

    index: int
    status: int
    raw: bytes
    transfer_syntax: UID
    # more responses have arrived already: a writer may leave its flush to the last of them
    more: bool = field(default=False, compare=False)
    _decoded: Dataset | None = field(default=None, repr=False, compare=False)
    _elements: object = field(default=None, repr=False, compare=False)

    @property
    def elements(self):
        """The identifier's top-level elements read without a Dataset
        (engine.elements.read_elements, once), or None: use ``identifier``."""
        if self._elements is None:
            from findtui.engine.elements import read_elements

            self._elements = read_elements(self.raw, self.transfer_syntax) or ()
        return self._elements or None

    @property
    def identifier(self) -> Dataset:
        if self._decoded is None:
            ts = self.transfer_syntax
            try:
                ds = decode(BytesIO(self.raw), ts.is_implicit_VR, ts.is_little_endian,
                            ts.is_deflated)
                # pydicom decodes lazily: touch every element so a bad one fails here.
                for _ in ds.iterall():
                    pass
            except Exception as exc:  # any decode problem is the peer's data, not ours
                raise IdentifierDecodeError(
                    f"response {self.index}: identifier could not be decoded ({exc})"
                ) from None
            self._decoded = ds
        return self._decoded

    @property
    def optional_keys_unsupported(self) -> bool:
        return self.status == 0xFF01


@dataclass(frozen=True)
class Final:
    """The final C-FIND response."""

    status: int
    error_comment: str | None = None
    offending_element: tuple[int, ...] | None = None
    identifier: Dataset | None = None
    cancel_requested: bool = False

    @property
    def name(self) -> str:
        return status_name(self.status)

    @property
    def category(self) -> str:
        if self.status == 0x0000:
            return "success"
        if self.status == 0xFE00:
            return "cancel"
        if (self.status & 0xF000) == 0xB000 or self.status in (0x0001, 0x0107, 0x0116):
            return "warning"
        return "failure"

    @property
    def advice(self) -> str | None:
        """What to try after a failure status (one line), None otherwise."""
        if self.category != "failure":
            return None
        status = self.status
        if status == 0xA700:
            return ("the SCP is out of resources: narrow the query (more specific keys, "
                    "a lower level) or try again later")
        if status == 0xA900:
            return ("the identifier does not match the information model: check the model, "
                    "QueryRetrieveLevel and the keys")
        if status == 0x0122:
            return "the SCP does not support this information model: try another"
        if status == 0x0124:
            return "the SCP refused us: ask its admin to allow C-FIND for our calling AE title"
        if 0xC000 <= status <= 0xCFFF:
            where = " (see the offending element)" if self.offending_element else ""
            return (f"the SCP could not process the query: check the keys and their values"
                    f"{where}, and the SCP's log")
        return "the query failed on the SCP: check the keys and the SCP's log"

    @property
    def settings(self) -> tuple[str, ...]:
        """The settings the advice points at."""
        return {0xA900: ("model", "level"), 0x0122: ("model",),
                0x0124: ("calling_aet",)}.get(self.status, ())


@dataclass(frozen=True)
class CancelSent:
    after: int


@dataclass(frozen=True)
class QuerySent:
    """One of several C-FINDs on the association was sent (only with ``events(identifiers)``)."""

    msg_id: int


@dataclass(frozen=True)
class Fault:
    """The association broke during the query. kind: aborted|timeout|cancel-timeout|protocol."""

    kind: str
    message: str
    settings: tuple[str, ...] = ()
    cancel_requested: bool = False  # a C-CANCEL had been asked for (Ctrl-C, --cancel, Esc)


Event = Associated | AssociationFailed | Pending | Final | CancelSent | Fault | QuerySent


# --- running ----------------------------------------------------------------


class _PynetdicomErrors(logging.Handler):
    """Keeps pynetdicom's error lines during association, for a precise message."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[tuple[int | None, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.append((record.thread, record.getMessage()))
        except Exception:  # never let a bad record break the association
            pass

    def lines_of(self, threads: set[int | None]) -> list[str]:
        """The lines logged by these threads (other associations may run at the same time)."""
        return [line for thread, line in self.records if thread in threads]


# pynetdicom reports why a connection or an association failed only in its log
# (e.g. "TCP Initialisation Error: [Errno 111] Connection refused"). When the
# application silenced pynetdicom (findtui -q, the TUI), these loggers are
# enabled at ERROR for the duration of an association request, with their
# records kept from the application's handlers (propagate off).
_ERROR_LOGGERS = ("pynetdicom.transport", "pynetdicom.acse", "pynetdicom.association",
                  "pynetdicom.dul")
_capture_lock = threading.Lock()
_capture_users = 0
_capture_saved: dict[str, tuple[int, bool]] = {}


@contextlib.contextmanager
def _pynetdicom_errors() -> Iterator[_PynetdicomErrors]:
    global _capture_users
    handler = _PynetdicomErrors()
    with _capture_lock:
        if _capture_users == 0 and not PYNETDICOM_LOGGER.isEnabledFor(logging.ERROR):
            for name in _ERROR_LOGGERS:
                logger = logging.getLogger(name)
                _capture_saved[name] = (logger.level, logger.propagate)
                logger.setLevel(logging.ERROR)
                logger.propagate = False
        _capture_users += 1
        targets = [PYNETDICOM_LOGGER, *(logging.getLogger(name) for name in _capture_saved)]
        for logger in targets:
            logger.addHandler(handler)
    try:
        yield handler
    finally:
        with _capture_lock:
            for logger in targets:
                logger.removeHandler(handler)
            _capture_users -= 1
            if _capture_users == 0:
                for name, (level, propagate) in _capture_saved.items():
                    logger = logging.getLogger(name)
                    logger.setLevel(level)
                    logger.propagate = propagate
                _capture_saved.clear()


def _make_ae(request: FindRequest, abstract_syntaxes: list[UID],
             extra_contexts: Sequence[tuple[str, list[str]]] = ()) -> AE:
    net = request.network
    ae = AE(ae_title=net.calling_aet)
    ae.acse_timeout = net.acse_timeout
    ae.dimse_timeout = net.dimse_timeout
    ae.network_timeout = net.network_timeout
    ae.connection_timeout = net.network_timeout
    for uid in abstract_syntaxes:
        ae.add_requested_context(uid, list(request.transfer_syntaxes))
    for uid, syntaxes in extra_contexts:  # e.g. the storage classes of a C-GET
        ae.add_requested_context(uid, list(syntaxes))
    return ae


def _queued_rejection(assoc):
    """An A-ASSOCIATE-RJ that pynetdicom received but never read.

    When the peer rejects and closes the connection at once (DCMTK does), pynetdicom's
    requestor can find the socket closed before it reads the reply
    (``ACSE._negotiate_as_requestor``: ``if not socket._is_connected: abort``) and
    reports an abort; the rejection is still in the DUL's queue.
    """
    try:
        queued = list(assoc.dul.to_user_queue.queue)
    except AttributeError:
        return None
    return next((p for p in queued
                 if isinstance(p, A_ASSOCIATE) and getattr(p, "result", None) in (1, 2)), None)


def _describe_rejection(assoc, prim=None,
                        request: FindRequest | None = None) -> tuple[str, tuple[str, ...]]:
    """The rejection in words, and the settings to check."""
    prim = prim or assoc.acceptor.primitive
    result = {1: "rejected (permanent)", 2: "rejected (transient)"}.get(
        getattr(prim, "result", None), "rejected")
    source = getattr(prim, "result_source", None)
    diag = getattr(prim, "diagnostic", None)
    reasons = {
        (1, 1): "no reason given",
        (1, 2): "application context name not supported",
        (1, 3): "calling AE title not recognised",
        (1, 7): "called AE title not recognised",
        (2, 1): "no reason given (ACSE)",
        (2, 2): "protocol version not supported",
        (3, 1): "temporary congestion",
        (3, 2): "local limit exceeded",
    }
    sources = {1: "service user", 2: "service provider (ACSE)", 3: "service provider (presentation)"}
    reason = reasons.get((source, diag), f"diagnostic {diag}")
    net = request.network if request is not None else None
    calling = f" {net.calling_aet!r}" if net else ""
    called = f" {net.called_aet!r}" if net else ""
    hints = {
        (1, 1): (f"; check the called AE title{called} and ask the SCP's admin whether "
                 f"it accepts our calling AE title{calling} from this host",
                 ("called_aet", "calling_aet")),
        (1, 2): ("; the peer may not be a DICOM SCP: check the address and port",
                 ("address", "port")),
        (1, 3): (f"; the SCP does not know our calling AE title{calling}: ask its admin "
                 "to add it, or use the AE title it expects", ("calling_aet",)),
        (1, 7): (f"; the SCP is not called{called}: check the called AE title", ("called_aet",)),
        (2, 1): (f"; check the AE titles (calling{calling}, called{called}) with the SCP's "
                 "admin", ("calling_aet", "called_aet")),
        (2, 2): ("; the peer does not support this DICOM upper-layer protocol version", ()),
        (3, 1): ("; the SCP is busy: try again later", ()),
        (3, 2): ("; the SCP has too many associations open: try again later", ()),
    }
    hint, settings = hints.get((source, diag), ("", ()))
    if getattr(prim, "result", None) == 2 and "try again later" not in hint:
        hint += "; the rejection is transient: try again later"
    return f"association {result} by the {sources.get(source, 'peer')}: {reason}{hint}", settings


def _failed_association(request: FindRequest, assoc, errors: list[str]) -> AssociationFailed:
    net = request.network
    where = f"{net.address}:{net.port}"
    rejection = None if assoc.is_rejected else _queued_rejection(assoc)
    if assoc.is_rejected or rejection is not None:
        text, settings = _describe_rejection(assoc, rejection, request)
        return AssociationFailed("rejected", f"{where}: {text}", settings)
    detail = next((line.split(": ", 1)[1] for line in errors
                   if line.startswith("TCP Initialisation Error")), None)
    if detail:
        low = detail.lower()
        if "ssl" in low or "certificate" in low or "tls" in low:
            hint, settings = _tls_hint(low)
            return AssociationFailed("tls", f"{where}: TLS handshake failed: {detail}{hint}",
                                     settings)
        if "timed out" in low:
            return AssociationFailed(
                "timeout", f"{where}: no answer within {net.network_timeout:g} s; "
                "check the address and port, or raise the network timeout",
                ("address", "port", "network_timeout"))
        if "refused" in low:
            return AssociationFailed(
                "unreachable", f"{where}: connection refused; is the SCP running on that port?",
                ("address", "port"))
        return AssociationFailed("unreachable", f"{where}: cannot connect: {detail}",
                                 ("address", "port"))
    if "No accepted presentation contexts" in errors:
        return AssociationFailed(
            "no-context",
            f"{where}: the SCP accepted none of the proposed presentation contexts "
            f"({request.model.label} C-FIND); check the information model "
            "or the transfer syntax", ("model", "transfer_syntax"))
    if net.tls is None:
        tls_hint, tls_settings = "; if the peer expects TLS, turn TLS on", ("tls",)
    else:
        tls_hint, tls_settings = "; is the peer a TLS port?", ()
    invalid = next((line for line in errors if line.startswith(
        ("Unknown PDU type", "Unable to decode the received PDU"))), None)
    if invalid:
        return AssociationFailed(
            "aborted", f"{where}: the peer answered with data that is not DICOM ({invalid}); "
            f"association aborted; check that the port is a DICOM SCP{tls_hint}",
            ("port", *tls_settings))
    alert = next((line for line in errors if "[SSL" in line), None)
    if alert is not None and net.tls is not None:
        low = alert.lower()
        if "certificate required" in low:
            hint, settings = ("; the peer requires a client certificate: give our "
                              "certificate and key files", ("tls.cert_file", "tls.key_file"))
        elif "unknown ca" in low or "bad certificate" in low or "certificate unknown" in low:
            hint, settings = ("; the peer does not trust our client certificate: ask its "
                              "admin to trust the CA that signed it", ("tls.cert_file",))
        else:
            hint, settings = _tls_hint(low)
        return AssociationFailed("tls", f"{where}: TLS failed: {alert}{hint}", settings)
    if any(line.startswith("ACSE timeout reached") for line in errors):
        return AssociationFailed(
            "timeout", f"{where}: no answer to the association request within "
            f"{net.acse_timeout:g} s; raise the ACSE timeout or check that the port is a DICOM "
            f"SCP{tls_hint}", ("acse_timeout", "port", *tls_settings))
    if assoc.is_aborted:
        return AssociationFailed(
            "aborted", f"{where}: the peer aborted the association request{tls_hint}",
            tls_settings)
    return AssociationFailed(
        "timeout", f"{where}: no association answer within {net.acse_timeout:g} s",
        ("acse_timeout",))


def _tls_hint(low: str) -> tuple[str, tuple[str, ...]]:
    if "hostname mismatch" in low or "ip address mismatch" in low:
        return ("; the peer's certificate is not for this address: connect by the name "
                "in its certificate", ("address",))
    if "certificate verify failed" in low or "self-signed" in low or "self signed" in low:
        return ("; the peer's certificate is not trusted: give its CA file "
                "(or, insecure, turn certificate verification off)",
                ("tls.ca_file", "tls.verify"))
    if "certificate required" in low or "alert" in low:
        return ("; the peer may require a client certificate: give our certificate and key "
                "files", ("tls.cert_file", "tls.key_file"))
    return "; is the peer a TLS port? (turn TLS off for a plain DICOM port)", ("tls",)


def _check_resolvable(net: Network) -> AssociationFailed | None:
    try:
        socket.getaddrinfo(net.address, net.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return AssociationFailed(
            "unreachable", f"cannot resolve host {net.address!r}: {exc.args[-1]}; check the "
            "address", ("address",))
    return None


_LOG_HANDLERS = (
    (evt.EVT_DIMSE_RECV, standard_dimse_recv_handler),
    (evt.EVT_DIMSE_SENT, standard_dimse_sent_handler),
    (evt.EVT_PDU_RECV, standard_pdu_recv_handler),
    (evt.EVT_PDU_SENT, standard_pdu_sent_handler),
)


def _associate(request: FindRequest, abstract_syntaxes: list[UID], ext_neg=None, *,
               extra_contexts: Sequence[tuple[str, list[str]]] = (), evt_handlers=None):
    """Associate; returns (assoc, None) or (None, AssociationFailed)."""
    net = request.network
    unresolved = _check_resolvable(net)
    if unresolved:
        return None, unresolved
    ae = _make_ae(request, abstract_syntaxes, extra_contexts)
    tls_args = None
    if net.tls is not None:
        for setting, path in (("tls.ca_file", net.tls.ca_file), ("tls.cert_file", net.tls.cert_file),
                              ("tls.key_file", net.tls.key_file)):
            if path and not os.path.isfile(os.path.expanduser(path)):
                label = {"tls.ca_file": "CA file", "tls.cert_file": "certificate file",
                         "tls.key_file": "key file"}[setting]
                return None, AssociationFailed(
                    "tls", f"the TLS {label} {path!r} does not exist or is not a file",
                    (setting,))
        try:
            tls_args = (net.tls.context(), net.address)
        except (OSError, ssl.SSLError) as exc:
            return None, AssociationFailed("tls", f"cannot load TLS files: {exc}",
                                           ("tls.ca_file", "tls.cert_file", "tls.key_file"))
    with _pynetdicom_errors() as errors:
        assoc = ae.associate(net.address, net.port, ae_title=net.called_aet,
                             max_pdu=net.max_pdu, ext_neg=ext_neg or None, tls_args=tls_args,
                             evt_handlers=evt_handlers)
    if not assoc.is_established:
        threads = {threading.get_ident(), getattr(assoc.dul, "ident", None),
                   getattr(assoc, "ident", None)}
        return None, _failed_association(request, assoc, errors.lines_of(threads))
    if not PYNETDICOM_LOGGER.isEnabledFor(logging.DEBUG):
        # pynetdicom's PDU/DIMSE log handlers cost ~15% of a large query even when
        # nothing is logged; unbound per association, pynetdicom's _config stays as it is.
        for event, handler in _LOG_HANDLERS:
            assoc.unbind(event, handler)
    try:
        # pynetdicom sends a message as two small PDUs; Nagle delays each query by ~40 ms.
        assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        pass
    return assoc, None


_CFIND_RSP = 0x8020
_NO_DATASET = 0x0101


@dataclass
class _FindResponse:
    """The parts of a C-FIND-RSP the response loop reads (named as pynetdicom's C_FIND)."""

    Status: int
    Identifier: BytesIO | None
    ErrorComment: str | None = None
    OffendingElement: list[int] | None = None
    MessageIDBeingRespondedTo: int | None = None
    is_valid_response: bool = True

    # Read by pynetdicom's reactor if one is left in the queue after an early close:
    # it then ignores the message instead of failing on it.
    msg_type: ClassVar[str] = "C-FIND"
    is_valid_request: ClassVar[bool] = False


def _parse_command_set(buf: bytes) -> dict[int, bytes] | None:
    """Group 0000 elements of an implicit VR LE command set, by element number; None if malformed."""
    fields: dict[int, bytes] = {}
    pos, end = 0, len(buf)
    while pos < end:
        if pos + 8 > end:
            return None
        group, elem, length = struct.unpack_from("<HHI", buf, pos)
        pos += 8
        if group != 0x0000 or pos + length > end:
            return None
        fields[elem] = buf[pos:pos + length]
        pos += length
    return fields


def _find_response(fields: dict[int, bytes], data: bytes | None) -> _FindResponse | None:
    try:
        status = struct.unpack("<H", fields[0x0900])[0]
        msg_id = struct.unpack("<H", fields[0x0120])[0]
    except (KeyError, struct.error):
        return None
    comment = fields.get(0x0902)
    offending = fields.get(0x0901)
    if offending is not None:
        if len(offending) % 4:
            return None
        offending = [(g << 16) | e for g, e in struct.iter_unpack("<HH", offending)] or None
    return _FindResponse(
        Status=status,
        Identifier=BytesIO(data) if data is not None else None,
        ErrorComment=comment.decode("latin-1").rstrip(" \0") if comment else None,
        OffendingElement=offending,
        MessageIDBeingRespondedTo=msg_id,
    )


_TOO_LARGE = object()  # put in the DIMSE queue when an identifier passes the size limit


def _stall_problem(timeout: float) -> tuple[str, str, tuple[str, ...]]:
    return ("timeout",
            f"the peer stopped in the middle of a message: nothing received for {timeout:g} s "
            "(network timeout); association aborted; the responses received are kept; check "
            "the network, or raise the network timeout", ("network_timeout",))


def _oversize_problem(length: int, limit: int) -> tuple[str, str, tuple[str, ...]]:
    return ("protocol",
            f"the peer sent a PDU of {length:,} bytes, more than the {limit:,} we accept (the "
            "maximum PDU size we proposed); association aborted; the responses received are "
            "kept; report it to the SCP's admin", ("max_pdu",))


class _ReceiveGuard:
    """Bounds what the peer can cost once the association is up: every socket read waits
    at most the network timeout (a peer stalling inside a PDU used to hang pynetdicom's
    reader, and every abort behind it, for good), and no PDU may be longer than the
    maximum we advertised (a 100 MB PDU was read whole into memory)."""

    def __init__(self, assoc, network: Network, max_identifier: int) -> None:
        self.sock = assoc.dul.socket  # pynetdicom's AssociationSocket
        self.timeout = network.network_timeout
        self.limit = network.max_pdu or (max_identifier + (1 << 16))
        self.problem: tuple[str, str, tuple[str, ...]] | None = None
        self.original = self.sock.recv

    def install(self) -> None:
        with contextlib.suppress(AttributeError, OSError):
            self.sock.socket.settimeout(self.timeout)
        self.sock.recv = self

    def __call__(self, nr_bytes: int):
        if nr_bytes > self.limit:
            self.problem = _oversize_problem(nr_bytes, self.limit)
            raise OSError("PDU longer than the negotiated maximum")
        try:
            return self.original(nr_bytes)
        except TimeoutError:
            self.problem = _stall_problem(self.timeout)
            raise


_COMMAND_NAMES = {0x0001: "C-STORE", 0x0010: "C-GET", 0x0020: "C-FIND", 0x0021: "C-MOVE",
                  0x0030: "C-ECHO", 0x0FFF: "C-CANCEL", 0x8001: "C-STORE", 0x8010: "C-GET",
                  0x8021: "C-MOVE", 0x8030: "C-ECHO", 0x0100: "N-EVENT-REPORT",
                  0x0110: "N-GET", 0x0120: "N-SET", 0x0130: "N-ACTION", 0x0140: "N-CREATE",
                  0x0150: "N-DELETE"}


@dataclass(frozen=True)
class _Unexpected:
    """A message that is not a C-FIND-RSP."""

    name: str


class _QuietSocket:
    """Mixed into pynetdicom's AssociationSocket while the query reads the socket itself:
    the DUL thread then never reads (it still sends: C-CANCEL, A-RELEASE, A-ABORT)."""

    @property
    def ready(self) -> bool:
        return False


class _DirectReader:
    """Reads the peer's PDUs straight from the socket, in the query's own thread.

    Once the association is up, pynetdicom's reader thread (a select, two recv calls, a
    state machine and a queue per PDU) cost ~60 us a response and the GIL the main thread
    needed. Here: one recv per 64 KB, PDUs and PDVs parsed with struct (PS3.8 9.3.5), the
    C-FIND-RSP command set with struct (PS3.7 E.1). ``get(timeout)`` returns a response,
    ``None`` when the association ended (see ``problem``), or raises queue.Empty.
    Bounds: no PDU longer than we proposed, no identifier over the limit, no wait inside
    a PDU longer than the network timeout.
    """

    def __init__(self, assoc, network: Network, max_identifier: int) -> None:
        self.assoc = assoc
        self.assoc_socket = assoc.dul.socket
        self.sock = assoc.dul.socket.socket
        self.timeout = network.network_timeout
        self.limit = network.max_pdu or (max_identifier + (1 << 16))
        self.max_identifier = max_identifier
        self.buf = bytearray()
        self.ready: collections.deque = collections.deque()
        self.command = bytearray()
        self.data = bytearray()
        self.fields: dict[int, bytes] | None = None
        self.problem: tuple[str, str, tuple[str, ...]] | None = None
        self.peer_aborted = False
        self.closed = False
        self.close_reason = ""
        self.last_byte = time.monotonic()
        self._class = None

    def pause_pynetdicom(self) -> None:
        cls = type(self.assoc_socket)
        self._class = cls
        self.assoc_socket.__class__ = type("_Quiet" + cls.__name__, (_QuietSocket, cls), {})

    def resume_pynetdicom(self) -> None:
        if self._class is not None:
            self.assoc_socket.__class__ = self._class
            self._class = None

    def get(self, timeout: float):
        while not self.ready:
            if self.problem or self.peer_aborted or self.closed:
                return None
            self._read(timeout)
            self._parse()
        return self.ready.popleft()

    def _read(self, timeout: float) -> None:
        try:
            self.sock.settimeout(timeout)
            chunk = self.sock.recv(1 << 16)
        except (TimeoutError, socket.timeout):
            if self.buf and time.monotonic() - self.last_byte > self.timeout:
                self.problem = _stall_problem(self.timeout)
                return
            raise queue.Empty from None
        except (OSError, ssl.SSLError) as exc:  # e.g. a reset: said in the message
            self.close_reason = f"{exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
            chunk = b""
        if not chunk:
            self.closed = True
            return
        self.last_byte = time.monotonic()
        idle = getattr(self.assoc.dul, "_idle_timer", None)
        if idle is not None:
            idle.restart()  # pynetdicom's network timeout counts what it reads itself
        self.buf += chunk

    def _parse(self) -> None:
        buf = self.buf
        pos = 0
        while len(buf) - pos >= 6 and not self.problem:
            pdu_type, length = buf[pos], struct.unpack_from(">I", buf, pos + 2)[0]
            if pdu_type == 0x04 and length > self.limit:
                self.problem = _oversize_problem(length, self.limit)
                break
            if pdu_type not in (0x04, 0x05, 0x06, 0x07):
                self.problem = ("protocol", "", ())
                break
            if len(buf) - pos - 6 < length:
                break  # the rest of this PDU is still on its way
            body = bytes(buf[pos + 6:pos + 6 + length])
            pos += 6 + length
            if pdu_type == 0x04:
                self._p_data(body)
            elif pdu_type == 0x07:
                self.peer_aborted = True
                break
            else:  # a release in the middle of a query
                self.problem = ("protocol", "", ())
                break
        del buf[:pos]

    def _p_data(self, body: bytes) -> None:
        pos, end = 0, len(body)
        while pos < end:
            if end - pos < 6:
                self.problem = ("protocol", "", ())
                return
            item_length = struct.unpack_from(">I", body, pos)[0]
            if item_length < 2 or pos + 4 + item_length > end:
                self.problem = ("protocol", "", ())
                return
            header = body[pos + 5]
            value = body[pos + 6:pos + 4 + item_length]
            pos += 4 + item_length
            if header & 1:
                self.command += value
                if not header & 2:
                    continue
                fields = _parse_command_set(bytes(self.command))
                self.command = bytearray()
                if fields is None or 0x0100 not in fields or 0x0800 not in fields:
                    self.problem = ("protocol", "", ())
                    return
                command = struct.unpack("<H", fields[0x0100])[0]
                if command != _CFIND_RSP:
                    self.ready.append(_Unexpected(_COMMAND_NAMES.get(command,
                                                                     f"0x{command:04X}")))
                    return
                if struct.unpack("<H", fields[0x0800])[0] == _NO_DATASET:
                    self._respond(fields, None)
                else:
                    self.fields = fields
            else:
                if self.fields is None:
                    self.problem = ("protocol", "", ())
                    return
                self.data += value
                if len(self.data) > self.max_identifier:
                    self.data = bytearray()
                    self.ready.append(_TOO_LARGE)
                    self.problem = ("too-large", "", ())
                    return
                if header & 2:
                    fields, self.fields = self.fields, None
                    data, self.data = bytes(self.data), bytearray()
                    self._respond(fields, data)

    def _respond(self, fields: dict[int, bytes], data: bytes | None) -> None:
        rsp = _find_response(fields, data)
        if rsp is None:
            self.problem = ("protocol", "", ())
        else:
            self.ready.append(rsp)


class _DebugReceiver:
    """Stands in for ``assoc.dimse.receive_primitive`` under -d, where pynetdicom reads
    the responses itself (for its dumps): an identifier over the size limit stops the
    query, and a command set that does not decode no longer kills pynetdicom's thread."""

    def __init__(self, dimse, max_data: int = MAX_IDENTIFIER_SIZE) -> None:
        self.dimse = dimse
        self.original = dimse.receive_primitive
        self.max_data = max_data
        self.data_seen = 0  # bytes of the current message's identifier
        self.too_large: int | None = None  # set when an identifier passed max_data

    def install(self) -> None:
        self.dimse.receive_primitive = self

    def uninstall(self) -> None:
        self.dimse.__dict__.pop("receive_primitive", None)

    def _original(self, primitive) -> None:
        """pynetdicom's receiver, minus its crash on a command set that does not decode.

        (``DIMSEMessage.decode_msg`` raises e.g. AttributeError for a command set
        without CommandField, which kills the DUL thread and leaves the query hanging
        until the DIMSE timeout.) It becomes what pynetdicom does for any other
        invalid message: Evt19, an A-ABORT, which the response loop reports.
        """
        try:
            self.original(primitive)
        except Exception:
            self.dimse.message = None
            self.dimse.dul.event_queue.put("Evt19")

    def _over_limit(self, primitive) -> bool:
        """Counts the identifier's bytes; past ``max_data`` the rest of the association's
        data is dropped and the response loop is told (memory stays bounded)."""
        if self.too_large is not None:
            return True
        for _, pdv in primitive.presentation_data_value_list:
            header = pdv[0]
            if header & 1:
                self.data_seen = 0 if header & 2 else self.data_seen
            else:
                self.data_seen += len(pdv) - 1
                if self.data_seen > self.max_data:
                    self.too_large = self.data_seen
                    self.dimse.msg_queue.put((None, _TOO_LARGE))
                    return True
                if header & 2:
                    self.data_seen = 0
        return False

    def __call__(self, primitive) -> None:
        if not self._over_limit(primitive):
            self._original(primitive)


class FindQuery:
    """One C-FIND: iterate ``events()``; ``cancel()`` from any thread."""

    POLL = 0.1

    def __init__(self, request: FindRequest) -> None:
        self.request = request
        self._cancel = threading.Event()
        self._broken = False
        self.pending_count = 0

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def events(self, identifiers: Iterable[Dataset] | None = None) -> Iterator[Event]:
        """The events of the request's C-FIND; with ``identifiers``, of one C-FIND per
        identifier, one after the other on one association (each announced by QuerySent and
        ended by its Final). The next identifier is taken only once the previous query's
        Final has been consumed, so the consumer may steer what comes next; a cancel, a
        fault or the end of ``identifiers`` ends the run."""
        req = self.request
        sop_class = req.model.sop_class_uid
        app_info = req.ext_neg.app_info(req.model)
        ext = []
        if app_info is not None:
            item = SOPClassExtendedNegotiation()
            item.sop_class_uid = sop_class
            item.service_class_application_information = app_info
            ext.append(item)

        if identifiers is None and ensure_character_set(req.identifier):
            logging.getLogger("findtui").info(
                "Query has non-ASCII values: added SpecificCharacterSet=ISO_IR 192")
        assoc, failed = _associate(req, [sop_class], ext)
        if failed:
            yield failed
            return
        try:
            cx = next((c for c in assoc.accepted_contexts if c.abstract_syntax == sop_class), None)
            if cx is None:
                assoc.release()
                yield AssociationFailed(
                    "no-context",
                    f"the SCP accepted the association but not {req.model.label} C-FIND with "
                    f"any proposed transfer syntax; try another model or transfer syntax",
                    ("model", "transfer_syntax"))
                return
            ts = UID(cx.transfer_syntax[0])
            yield Associated(
                transfer_syntax=ts,
                ext_neg_sent=app_info,
                ext_neg_reply=assoc.acceptor.sop_class_extended.get(sop_class),
                peer_max_pdu=assoc.acceptor.maximum_length,
            )
            if identifiers is None:
                yield from self._find(assoc, cx, ts, req.identifier)
                return
            msg_id = 0
            for identifier in identifiers:
                if self._cancel.is_set():
                    break
                ensure_character_set(identifier)
                msg_id = msg_id % 0xFFFF + 1
                yield QuerySent(msg_id)
                if not (yield from self._find(assoc, cx, ts, identifier, msg_id)):
                    break  # the association is gone
        finally:
            if assoc.is_established and not self._broken:
                assoc.release()
            elif assoc.is_established:
                assoc.abort()
            # A release that the peer never answers must not leave the reactor hanging.
            assoc._reactor_checkpoint.set()

    def _find(self, assoc, cx, ts: UID, identifier: Dataset,
              msg_id: int = 1) -> Generator[Event, None, bool]:
        """One C-FIND on the association; returns True when it ended with a final status
        (the association can carry another)."""
        req = self.request
        # -d wants pynetdicom's own receiver and its dumps; else the query reads the socket
        debug = PYNETDICOM_LOGGER.isEnabledFor(logging.DEBUG)
        peer_max = assoc.acceptor.maximum_length
        if peer_max and peer_max < MIN_PEER_PDU:
            yield self._unsendable(assoc, f"the peer's maximum PDU length is {peer_max} bytes, "
                                   "too small to carry a query (a broken A-ASSOCIATE-AC)")
            return False
        receiver = _DebugReceiver(assoc.dimse, max_data=req.max_identifier_size)
        guard = _ReceiveGuard(assoc, req.network, req.max_identifier_size)
        reader = None
        if debug:
            receiver.install()
            guard.install()
        else:
            reader = _DirectReader(assoc, req.network, req.max_identifier_size)
            reader.pause_pynetdicom()
        try:
            # send_c_find encodes and sends at once; its response generator is never started.
            assoc.send_c_find(identifier, req.model.sop_class_uid, msg_id=msg_id,
                              priority=req.priority)
        except (ValueError, ZeroDivisionError, struct.error) as exc:
            receiver.uninstall()
            if reader is not None:
                reader.resume_pynetdicom()
            yield self._unsendable(assoc, f"the query could not be sent to this peer ({exc})")
            return False
        msg_queue = assoc.dimse.msg_queue
        dimse_timeout = req.network.dimse_timeout
        last_message = time.monotonic()
        cancel_deadline: float | None = None
        pending = 0
        finished = False
        try:
            while True:
                if cancel_deadline is None and (
                    self._cancel.is_set()
                    or (req.cancel_after is not None and self.pending_count >= req.cancel_after)
                ):
                    self._cancel.set()
                    assoc.send_c_cancel(msg_id, cx.context_id)
                    cancel_deadline = time.monotonic() + req.cancel_grace
                    yield CancelSent(after=pending)
                if cancel_deadline is not None and time.monotonic() > cancel_deadline:
                    # Checked on every response too: a peer that ignores the C-CANCEL and
                    # keeps sending never leaves the queue empty.
                    assoc.abort()
                    yield Fault("cancel-timeout",
                                f"no final status within {req.cancel_grace:g} s of C-CANCEL "
                                "(the SCP ignored the cancel); association aborted after "
                                f"{pending} responses, which are kept",
                                cancel_requested=True)
                    return
                try:
                    if reader is not None:
                        rsp = reader.get(self.POLL)
                    else:
                        _, rsp = msg_queue.get(timeout=self.POLL)
                except queue.Empty:
                    if reader is None and _provider_aborted(assoc):
                        # pynetdicom aborts on an invalid PDU (PS3.8 AA-8) without telling
                        # the DIMSE queue; the connection may stay open until ARTIM expires.
                        assoc.abort()
                        kind, message, settings = guard.problem or (
                            "protocol", _protocol_message(pending), ())
                        yield Fault(kind, message, settings,
                                    cancel_requested=self._cancel.is_set())
                        return
                    now = time.monotonic()
                    if now - last_message > dimse_timeout:
                        assoc.abort()
                        yield Fault("timeout",
                                    f"no response within the DIMSE timeout ({dimse_timeout:g} s) "
                                    f"after {pending} responses; association aborted; the responses "
                                    "received are kept; raise the DIMSE timeout if the SCP is slow",
                                    ("dimse_timeout",), cancel_requested=self._cancel.is_set())
                        return
                    continue
                last_message = time.monotonic()
                if rsp is _TOO_LARGE:
                    assoc.abort()
                    yield Fault("protocol",
                                f"response {pending + 1} has an identifier of more than "
                                f"{req.max_identifier_size:,} bytes (the largest accepted); "
                                f"association aborted after {pending} responses, which are "
                                "kept; raise the limit if the SCP's data is really that large",
                                ("max_identifier_size",), cancel_requested=self._cancel.is_set())
                    return
                if rsp is None and reader is not None:
                    self._broken = True  # nothing left to release
                    yield self._reader_fault(reader, pending)
                    return
                if rsp is None:
                    self._broken = True  # nothing left to release
                    if guard.problem is not None:
                        kind, message, settings = guard.problem
                        yield Fault(kind, message, settings,
                                    cancel_requested=self._cancel.is_set())
                        return
                    yield Fault("aborted", _abort_message(assoc, pending),
                                cancel_requested=self._cancel.is_set())
                    return
                if not isinstance(rsp, (C_FIND, _FindResponse)) or not rsp.is_valid_response:
                    assoc.abort()
                    name = rsp.name if isinstance(rsp, _Unexpected) else \
                        type(rsp).__name__.replace('_', '-')
                    yield Fault("protocol",
                                f"the peer sent an unexpected {name} "
                                f"message after {pending} responses; association aborted; the "
                                "responses received are kept; report it to the SCP's admin",
                                cancel_requested=self._cancel.is_set())
                    return
                status = rsp.Status
                if is_pending(status):
                    pending += 1
                    self.pending_count += 1
                    ident = rsp.Identifier
                    raw = ident.getvalue() if ident is not None else b""
                    yield Pending(index=pending, status=status, raw=raw, transfer_syntax=ts,
                                  more=reader is not None and bool(reader.ready))
                    continue
                finished = True
                yield self._final(rsp, ts)
                return True
        finally:
            if not finished and assoc.is_established:
                # Closed early (e.g. `| head`, an exception in the consumer): the SCP may
                # still be sending; a release would wait behind those responses.
                assoc.abort()
            receiver.uninstall()
            if reader is not None:
                reader.resume_pynetdicom()  # pynetdicom reads the release (or abort) itself
            # Responses left in the queue must not reach pynetdicom's reactor, which
            # would treat them as requests once it resumes.
            while True:
                try:
                    msg_queue.get_nowait()
                except queue.Empty:
                    break
            assoc._reactor_checkpoint.set()

    def _unsendable(self, assoc, why: str) -> Fault:
        """Abort an association the query cannot be sent on."""
        assoc.abort()
        self._broken = True
        return Fault("protocol", f"{why}; association aborted; report it to the SCP's admin")

    def _reader_fault(self, reader: _DirectReader, pending: int) -> Fault:
        """How the association ended under the direct reader."""
        cancel = self._cancel.is_set()
        if reader.problem is not None:
            kind, message, settings = reader.problem
            return Fault(kind, message or _protocol_message(pending), settings,
                         cancel_requested=cancel)
        if reader.peer_aborted:
            return Fault("aborted", _abort_message(None, pending, peer_abort=True),
                         cancel_requested=cancel)
        message = _abort_message(None, pending, peer_abort=False)
        if reader.close_reason:
            message = message.replace("(no A-RELEASE or A-ABORT)",
                                      f"({reader.close_reason}; no A-RELEASE or A-ABORT)")
        return Fault("aborted", message, cancel_requested=cancel)

    def _final(self, rsp, ts: UID) -> Final:
        identifier = None
        if rsp.Identifier is not None:
            raw = rsp.Identifier.getvalue()
            if raw:
                try:
                    identifier = decode(BytesIO(raw), ts.is_implicit_VR, ts.is_little_endian,
                                        ts.is_deflated)
                except Exception:
                    identifier = None
        offending = rsp.OffendingElement
        if offending is not None:
            offending = tuple(offending) if isinstance(offending, (list, tuple)) else (offending,)
        return Final(
            status=rsp.Status,
            error_comment=rsp.ErrorComment or None,
            offending_element=offending,
            identifier=identifier,
            cancel_requested=self._cancel.is_set(),
        )


def _has_non_ascii_text(ds: Dataset) -> bool:
    for elem in ds.iterall():
        value = elem.value
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            values = value
        else:
            values = (value,)
        if any(not str(v).isascii() for v in values if not isinstance(v, (bytes, Dataset))):
            return True
    return False


def ensure_character_set(identifier: Dataset) -> bool:
    """Declare ISO_IR 192 (UTF-8) when the query has non-ASCII text and no (0008,0005).

    Without it pydicom encodes e.g. 'MÜ*' in the default repertoire and PACS match nothing.
    Returns True when it added the element.
    """
    if "SpecificCharacterSet" in identifier or not _has_non_ascii_text(identifier):
        return False
    identifier.SpecificCharacterSet = "ISO_IR 192"
    return True


def _provider_aborted(assoc) -> bool:
    """True when pynetdicom's upper layer aborted the association on an invalid PDU.

    (An A-P-ABORT with a reason; a closed connection gives reason 0 and is reported
    through the DIMSE queue instead.)
    """
    try:
        primitive = assoc.dul.peek_next_pdu()
    except Exception:
        return False
    return isinstance(primitive, A_P_ABORT) and bool(getattr(primitive, "provider_reason", 0))


def _protocol_message(pending: int) -> str:
    return (f"the peer sent data that is not a valid DICOM message after {pending} responses "
            "(protocol error); association aborted; the responses received are kept; report "
            "it to the SCP's admin")


def _abort_message(assoc, pending: int, peer_abort: bool | None = None) -> str:
    if peer_abort is None:
        peer_abort = assoc.acse.is_aborted("a-abort")
    if peer_abort:
        return (f"the peer aborted the association (A-ABORT) after {pending} responses; the "
                "responses received are kept; check the SCP's log, or retry with a narrower "
                "query")
    return (f"the connection closed unexpectedly (no A-RELEASE or A-ABORT) after {pending} "
            "responses; the responses received are kept; check the SCP's log and the "
            "network, then retry")


def run_find(request: FindRequest) -> Iterator[Event]:
    """Convenience: the events of one C-FIND."""
    return FindQuery(request).events()


@dataclass(frozen=True)
class EchoResult:
    ok: bool
    message: str
    status: int | None = None


def echo(request: FindRequest) -> EchoResult:
    """C-ECHO (verification) against the request's node."""
    probe = FindRequest(network=request.network, identifier=Dataset())
    assoc, failed = _associate(probe, [Verification])
    if failed:
        return EchoResult(False, failed.message)
    try:
        status = assoc.send_c_echo()
        code = getattr(status, "Status", None)
        if code is None:
            return EchoResult(False, "no C-ECHO response (timeout or abort)")
        return EchoResult(code == 0, f"C-ECHO: 0x{code:04X} ({status_name(code)})", code)
    finally:
        if assoc.is_established:
            assoc.release()


__all__ = [
    "Associated", "AssociationFailed", "CancelSent", "EchoResult", "Event", "Fault", "Final",
    "FindQuery", "FindRequest", "IdentifierDecodeError", "Network", "Pending", "QuerySent",
    "TLSOptions",
    "echo", "run_find",
]
