"""Retrieve what a query found: C-GET or C-MOVE, item by item, files written safely.

A retrieve is a run like a query: ``RetrieveJob(request).events()`` yields events
(ItemStarted, ItemProgress, ItemDone, RetrieveFault) that a RetrieveSummary turns
into one outcome; ``cancel()`` works from any thread (C-CANCEL, then abort).

- C-GET: the storage sub-operations come back on our association; we propose the
  storage SOP classes the C-FIND said exist (SOPClassesInStudy) and the common ones,
  within pynetdicom's 128 presentation contexts, every one with the SCP role.
- C-MOVE: to our own Storage SCP (listening only while the retrieve runs) or to a
  third AE (then nothing is written here).

Files: ``DIR/{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm`` by
default (a template); each component from peer data sanitised (no separator, no
``..``, no control character, bounded), so a hostile PACS never writes outside DIR.
An instance already on disk is skipped and counted (a second run resumes cheaply);
files are written to a temporary name and linked into place, so an interrupted run
leaves only complete files and never overwrites one.

Headless: nothing here imports textual or rich.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import string
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID
from pynetdicom import AE, build_role, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    PatientStudyOnlyQueryRetrieveInformationModelGet,
    PatientStudyOnlyQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from pynetdicom.status import code_to_category
from pynetdicom.dsutils import encode_file_meta

from findtui.engine.hierarchy import LEVEL_UNIQUE_KEY, UPPER_UNIQUE_KEYS
from findtui.engine.models import QueryModel, status_name
from findtui.engine.network import Network, NetworkError, validation_error
from findtui.engine.query import AssociationFailed, FindRequest, _associate

GET_MODELS = {
    QueryModel.PATIENT: PatientRootQueryRetrieveInformationModelGet,
    QueryModel.STUDY: StudyRootQueryRetrieveInformationModelGet,
    QueryModel.PSONLY: PatientStudyOnlyQueryRetrieveInformationModelGet,
}
MOVE_MODELS = {
    QueryModel.PATIENT: PatientRootQueryRetrieveInformationModelMove,
    QueryModel.STUDY: StudyRootQueryRetrieveInformationModelMove,
    QueryModel.PSONLY: PatientStudyOnlyQueryRetrieveInformationModelMove,
}
METHODS = ("get", "move")
DEFAULT_LAYOUT = "{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm"
# What a layout may name: read from each instance (or its C-STORE command).
LAYOUT_KEYS = {
    "PatientID": 0x00100020, "PatientName": 0x00100010, "StudyInstanceUID": 0x0020000D,
    "SeriesInstanceUID": 0x0020000E, "SOPInstanceUID": 0x00080018, "SOPClassUID": 0x00080016,
    "StudyDate": 0x00080020, "StudyID": 0x00200010, "AccessionNumber": 0x00080050,
    "StudyDescription": 0x00081030, "SeriesDescription": 0x0008103E, "Modality": 0x00080060,
    "SeriesNumber": 0x00200011, "InstanceNumber": 0x00200013,
}
# Counts a C-FIND may return, per level, to verify a retrieve against.
EXPECTED_COUNT_KEY = {
    "PATIENT": "NumberOfPatientRelatedInstances",
    "STUDY": "NumberOfStudyRelatedInstances",
    "SERIES": "NumberOfSeriesRelatedInstances",
    "IMAGE": None,
}
DEFAULT_STORE_PORT = 11113  # our Storage SCP for C-MOVE (pynetdicom's movescu's too)
MAX_COMPONENT = 64  # characters of one path component made from peer data
_MAX_CONTEXTS = 128  # pynetdicom's limit of requested presentation contexts
# The largest PDU a retrieve association receives when -pdu is left at findscu's default
# (16382): instances arrive in 64 times fewer PDUs, each of which pynetdicom handles in
# Python (a 200-instance study, 7 alternating runs: C-GET 1.40 -> 1.34 s, C-MOVE 1.93 ->
# 1.46 s). A -pdu given otherwise is kept as it is.
RETRIEVE_MAX_PDU = 1024 * 1024
FINDSCU_DEFAULT_PDU = 16382


def retrieve_pdu(network: Network) -> Network:
    """``network`` with the receive PDU a retrieve association offers."""
    if network.max_pdu == FINDSCU_DEFAULT_PDU:
        return network.replace(max_pdu=RETRIEVE_MAX_PDU)
    return network


# Transfer syntaxes we accept for storage: instances are written as received, never
# decoded, so compressed ones are as welcome as the uncompressed.
STORAGE_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
]
# The storage classes proposed first for C-GET when the C-FIND did not say (in order).
COMMON_STORAGE = [
    "1.2.840.10008.5.1.4.1.1.2",  # CT
    "1.2.840.10008.5.1.4.1.1.4",  # MR
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture
    "1.2.840.10008.5.1.4.1.1.1",  # CR
    "1.2.840.10008.5.1.4.1.1.1.1",  # DX (presentation)
    "1.2.840.10008.5.1.4.1.1.1.2",  # MG (presentation)
    "1.2.840.10008.5.1.4.1.1.6.1",  # US
    "1.2.840.10008.5.1.4.1.1.3.1",  # US multi-frame
    "1.2.840.10008.5.1.4.1.1.20",  # NM
    "1.2.840.10008.5.1.4.1.1.128",  # PET
    "1.2.840.10008.5.1.4.1.1.12.1",  # XA
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection
    "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.481.1",  # RT Image
    "1.2.840.10008.5.1.4.1.1.481.2",  # RT Dose
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT Structure Set
    "1.2.840.10008.5.1.4.1.1.481.5",  # RT Plan
]


class RetrieveError(ValueError):
    """A retrieve that cannot start (a bad layout, a match without its keys...)."""

    def __init__(self, message: str, settings: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.settings = settings


# --- a node's retrieve settings ------------------------------------------------


class RetrieveOptions(Struct, frozen=True, forbid_unknown_fields=True):
    """How to retrieve from a peer, as a node profile gives it: every field optional, each
    one a default that the command line or the TUI's dialog can override. The field types
    and constraints are the validation rules (``retrieve_options_from``)."""

    retrieve: Literal["get", "move"] | None = None  # the method
    move_destination: Annotated[str, Meta(pattern=r"^(?=.*[^ ])[ -\[\]-~]{1,16}$")] | None = None
    store_port: Annotated[int, Meta(ge=1, le=65535)] | None = None
    store_host: Annotated[str, Meta(pattern=r"^[^\s\x00-\x1f\x7f-\x9f]{1,253}$")] | None = None
    retrieve_folder: Annotated[str, Meta(min_length=1, pattern=r"^[^\x00]*$")] | None = None
    layout: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (TOML), unset fields left out."""
        return {k: v for k, v in msgspec.to_builtins(self).items() if v is not None}


RETRIEVE_FIELDS: tuple[str, ...] = RetrieveOptions.__struct_fields__


def retrieve_options_from(data: dict[str, Any]) -> RetrieveOptions:
    """Validated RetrieveOptions from plain data (a profile table, the profile editor);
    raises NetworkError naming the field and saying what it takes."""
    try:
        options = msgspec.convert(data, RetrieveOptions)
    except msgspec.ValidationError as exc:
        raise validation_error(exc, data) from None
    if options.layout is not None:
        try:
            Layout(options.layout)
        except RetrieveError as exc:
            raise NetworkError("layout", "layout " + str(exc).removeprefix("--layout ")) from None
    return options


# --- what to retrieve ----------------------------------------------------------


@dataclass(frozen=True)
class RetrieveItem:
    """One C-FIND match to retrieve at its level."""

    level: str
    identifier: Dataset  # QueryRetrieveLevel and the unique keys
    label: str  # what the user sees (the unique key's value)
    expected: int | None = None  # instances the C-FIND said the match holds
    sop_classes: tuple[str, ...] = ()  # SOPClassesInStudy, when returned


def retrieve_keys(model: QueryModel, level: str) -> list[str]:
    """The unique keys that name a match at ``level`` in a retrieve: the level's own and,
    hierarchically, those of the levels above it."""
    return [*UPPER_UNIQUE_KEYS.get(model, {}).get(level, ()), LEVEL_UNIQUE_KEY[level]]


def item_from_match(model: QueryModel, level: str, match: Dataset) -> RetrieveItem:
    """The retrieve identifier of a C-FIND match: its level and unique keys (PS3.4 C.4.2.1.4,
    C.4.3.1.3). Raises RetrieveError when the match lacks one of them."""
    if model not in GET_MODELS:
        raise RetrieveError(f"{model.label} matches cannot be retrieved (no C-GET/C-MOVE model)",
                            ("model",))
    if level not in LEVEL_UNIQUE_KEY:
        raise RetrieveError(f"matches at level {level!r} cannot be retrieved: the level must "
                            "be PATIENT, STUDY, SERIES or IMAGE", ("level",))
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword in retrieve_keys(model, level):
        value = str(match.get(keyword, "") or "").strip()
        if not value:
            raise RetrieveError(
                f"a {level.lower()} match has no {keyword}: add {keyword} to the return keys "
                "(the retrieve names each match by it)", ("keys",))
        setattr(ds, keyword, value)
    count_key = EXPECTED_COUNT_KEY.get(level)
    expected = None
    if count_key and str(match.get(count_key, "") or "").strip():
        try:
            expected = int(str(match.get(count_key)).strip())
        except ValueError:
            expected = None
    classes = match.get("SOPClassesInStudy") or ()
    if isinstance(classes, str):
        classes = [classes]
    sop_classes = tuple(str(c) for c in classes if str(c).strip())
    return RetrieveItem(level, ds, str(getattr(ds, LEVEL_UNIQUE_KEY[level])), expected,
                        sop_classes)


@dataclass(frozen=True)
class RetrieveRequest:
    network: Network
    model: QueryModel
    method: str  # "get" or "move"
    items: tuple[RetrieveItem, ...]
    directory: str
    layout: str = DEFAULT_LAYOUT
    move_destination: str | None = None  # default: our calling AE title
    store_port: int = 0  # C-MOVE to ourselves: the Storage SCP's port
    store_host: str = ""  # "" = all interfaces (the PACS must reach it)
    priority: int = 2
    cancel_grace: float = 5.0

    @property
    def destination(self) -> str:
        return self.move_destination or self.network.calling_aet

    @property
    def moves_to_us(self) -> bool:
        return self.method == "move" and self.destination == self.network.calling_aet


# --- files ---------------------------------------------------------------------

_UNSAFE_COMPONENT = re.compile(r'[\x00-\x1f\x7f-\x9f/\\:*?"<>|\u200b-\u200f\u202a-\u202e'
                               r"\u2066-\u2069\ufeff]")


def safe_component(value: str) -> str:
    """One path component from peer data: no separator, control or bidi character, not
    ``.``/``..``, no leading dot or trailing dot/space, at most MAX_COMPONENT characters;
    ``_`` when nothing is left."""
    text = _UNSAFE_COMPONENT.sub("_", value.strip())[:MAX_COMPONENT]
    text = text.lstrip(".").rstrip(". ")
    return text or "_"


class Layout:
    """A path template with ``{Keyword}`` placeholders (LAYOUT_KEYS), relative to DIR."""

    def __init__(self, template: str) -> None:
        self.template = template
        problem = None
        try:
            fields = [f for _, f, spec, conv in string.Formatter().parse(template)
                      if f is not None]
        except ValueError as exc:
            fields, problem = [], f"it does not parse ({exc})"
        unknown = [f for f in fields if f not in LAYOUT_KEYS]
        literal = re.sub(r"\{[^{}]*\}", "x", template)
        parts = literal.replace("\\", "/").split("/")
        if problem is None and unknown:
            problem = (f"{{{unknown[0]}}} is not a placeholder; use "
                       + ", ".join(f"{{{k}}}" for k in LAYOUT_KEYS))
        elif problem is None and (template.startswith(("/", "\\")) or ".." in parts
                                  or os.path.isabs(template)):
            problem = "it must be a relative path inside the output folder, without '..'"
        elif problem is None and "SOPInstanceUID" not in fields:
            problem = "it must contain {SOPInstanceUID}, or instances would overwrite each other"
        elif problem is None and not parts[-1]:
            problem = "it must end with a file name"
        if problem:
            raise RetrieveError(f"--layout {template!r}: {problem}", ("layout",))
        self.fields = tuple(dict.fromkeys(fields))
        self.max_tag = max((LAYOUT_KEYS[f] for f in self.fields), default=0)

    def path(self, values: dict[str, str]) -> str:
        """The relative path of an instance; every value made a safe component."""
        safe = {k: safe_component(values.get(k, "")) for k in self.fields}
        return os.path.normpath(self.template.format(**safe))


def _header_values(raw: bytes, transfer_syntax: str, layout: Layout) -> dict[str, str]:
    """The layout's values from an instance's bytes, reading no further than needed."""
    ts = UID(transfer_syntax)
    values: dict[str, str] = {}
    if ts.is_deflated or not layout.fields:
        return values
    limit = layout.max_tag
    try:
        ds = read_dataset(BytesIO(raw), ts.is_implicit_VR, ts.is_little_endian,
                          stop_when=lambda tag, vr, length: tag > limit)
        for keyword in layout.fields:
            elem = ds.get(LAYOUT_KEYS[keyword])
            if elem is not None and elem.VR != "SQ" and elem.value is not None:
                value = elem.value
                values[keyword] = ("\\".join(str(v) for v in value)
                                   if isinstance(value, (list, tuple)) else str(value))
    except Exception:  # noqa: BLE001 - a field we cannot read becomes "_"
        pass
    return values


class InstanceWriter:
    """Writes received instances under ``directory`` by a Layout; never overwrites."""

    def __init__(self, directory: str, layout: Layout) -> None:
        self.directory = os.path.realpath(directory)
        self.layout = layout
        self.lock = threading.Lock()
        self.written = 0
        self.skipped = 0
        self.bytes = 0

    def check(self) -> None:
        d = self.directory
        if os.path.exists(d) and not os.path.isdir(d):
            raise RetrieveError(f"output directory {d!r} is a file, not a folder",
                                ("output_directory",))
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as exc:
            raise RetrieveError(f"cannot create output directory {d!r}: "
                                f"{exc.strerror or exc}", ("output_directory",)) from None
        if not os.access(d, os.W_OK):
            raise RetrieveError(f"output directory {d!r} is not writable; choose another",
                                ("output_directory",))

    def store(self, data: bytes | Sequence[bytes], values: dict[str, str]) -> str:
        """Write one instance (a Part-10 file's bytes, or its parts in order); returns its
        path. Raises OSError (the disk is full...) or RetrieveError (a path that would leave
        the folder)."""
        parts = (data,) if isinstance(data, (bytes, bytearray, memoryview)) else tuple(data)
        rel = self.layout.path(values)
        path = os.path.join(self.directory, rel)
        folder = os.path.dirname(path)
        if os.path.commonpath([self.directory, os.path.realpath(folder)]) != self.directory:
            raise RetrieveError(f"{rel!r} would be written outside the output folder "
                                "(a link inside it?); not written", ("output_directory",))
        if os.path.lexists(path):
            return self._counted(path, skipped=True)
        os.makedirs(folder, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=folder, prefix=".findtui-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fp:
                for part in parts:
                    fp.write(part)
            try:
                os.link(temp, path)  # never over an existing file, all or nothing
            except FileExistsError:
                return self._counted(path, skipped=True)
            except OSError as exc:  # no hard links here (e.g. some network file systems)
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                if os.path.lexists(path):
                    return self._counted(path, skipped=True)
                os.rename(temp, path)
        finally:
            try:
                os.unlink(temp)
            except OSError:
                pass
        return self._counted(path, size=sum(len(part) for part in parts))

    def _counted(self, path: str, skipped: bool = False, size: int = 0) -> str:
        """Count an instance written (``size`` bytes) or already on disk; returns ``path``.
        (Stores run on pynetdicom's threads.)"""
        with self.lock:
            if skipped:
                self.skipped += 1
            else:
                self.written += 1
                self.bytes += size
        return path


# --- events --------------------------------------------------------------------


@dataclass(frozen=True)
class ItemStarted:
    index: int  # 1-based
    total: int
    item: RetrieveItem


@dataclass(frozen=True)
class ItemProgress:
    index: int
    remaining: int | None
    completed: int
    failed: int
    warning: int
    written: int  # this item: files written here
    skipped: int  # this item: instances already on disk
    bytes: int


@dataclass(frozen=True)
class ItemDone:
    index: int
    item: RetrieveItem
    status: int
    completed: int
    failed: int
    warning: int
    written: int
    skipped: int
    bytes: int
    error_comment: str | None = None
    cancelled: bool = False

    @property
    def category(self) -> str:
        if self.status == 0x0000 and not self.failed:
            return "success"
        if self.status == 0xFE00:
            return "cancel"
        if self.status == 0xB000 or code_to_category(self.status) == "Warning" or (
                self.status == 0x0000 and self.failed):
            return "partial"
        return "failure"

    @property
    def name(self) -> str:
        return status_name(self.status)

    @property
    def received(self) -> int:
        return self.written + self.skipped

    def mismatch(self) -> str | None:
        """Says so when what arrived differs from what the peer or the C-FIND counted."""
        notes = []
        if self.item.expected is not None and self.received != self.item.expected \
                and self.category == "success":
            notes.append(f"the query counted {self.item.expected} instance(s), "
                         f"{self.received} arrived")
        if self.completed + self.warning and self.received != self.completed + self.warning \
                and self.category != "cancel":
            notes.append(f"the peer reported {self.completed + self.warning} sub-operation(s) "
                         f"done, {self.received} instance(s) arrived here")
        return "; ".join(notes) or None

    @property
    def advice(self) -> str | None:
        return retrieve_advice(self.status)


@dataclass(frozen=True)
class RetrieveFault:
    kind: str  # network, aborted, timeout, output, store-port, no-context, cancel-timeout
    message: str
    settings: tuple[str, ...] = ()


Event = ItemStarted | ItemProgress | ItemDone | RetrieveFault | AssociationFailed


def megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def retrieve_advice(status: int) -> str | None:
    if status == 0xA801:
        return ("the PACS does not know the move destination: register our AE title with "
                "our host and store port in the PACS, or use C-GET")
    if status in (0xA701, 0xA702):
        return "the PACS is out of resources: retry later, or retrieve fewer items at a time"
    if status == 0xB000:
        return "some instances failed to arrive: retry (those on disk are skipped)"
    if status == 0xA900:
        return "the PACS did not accept the identifier: check the level and unique keys"
    if 0xC000 <= status <= 0xCFFF:
        return "the PACS could not process the request: see its log"
    if status == 0x0122:
        return "the PACS does not support this retrieve model: try the other method"
    return None


# --- the run -------------------------------------------------------------------


class RetrieveJob:
    """Runs a RetrieveRequest; ``events()`` in one thread, ``cancel()`` from any."""

    POLL = 0.2

    def __init__(self, request: RetrieveRequest) -> None:
        self.request = request
        self.layout = Layout(request.layout)
        self.writer = InstanceWriter(request.directory, self.layout)
        self._cancel = threading.Event()
        self._assoc = None
        self._msg_id = 0
        self._context_id: int | None = None
        self._cancel_sent = False
        self.output_error: str | None = None
        self._lock = threading.Lock()

    def cancel(self) -> None:
        self._cancel.set()
        self._send_cancel()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def _send_cancel(self) -> None:
        with self._lock:
            assoc, cx = self._assoc, self._context_id
            if self._cancel_sent or assoc is None or cx is None or not assoc.is_established:
                return
            self._cancel_sent = True
        try:
            assoc.send_c_cancel(self._msg_id, cx)
        except Exception:  # noqa: BLE001 - the abort after the grace period still ends it
            pass

    # storage --------------------------------------------------------------------

    def _on_store(self, event) -> int:
        if self.output_error is not None:
            return 0xA700  # out of resources: the disk is full (said once already)
        try:
            request = event.request
            ts = event.context.transfer_syntax
            raw = request.DataSet.getvalue()
            values = _header_values(raw, ts, self.layout)
            uid = str(request.AffectedSOPInstanceUID or "")
            values.setdefault("SOPInstanceUID", uid)
            values["SOPInstanceUID"] = uid or values.get("SOPInstanceUID", "")
            values.setdefault("SOPClassUID", str(request.AffectedSOPClassUID or ""))
            # The dataset as received, behind its file meta, written in two parts:
            # event.encoded_dataset() would join them into a second copy of the instance.
            meta = b"\x00" * 128 + b"DICM" + encode_file_meta(event.file_meta)
            self.writer.store((meta, raw), values)
        except RetrieveError as exc:
            self.output_error = str(exc)
            return 0xA700
        except OSError as exc:
            hint = {errno.ENOSPC: "free some space or choose another folder",
                    errno.EDQUOT: "free some space (quota) or choose another folder",
                    errno.EROFS: "the file system is read-only; choose another folder",
                    errno.EACCES: "permission denied; choose a folder you can write to",
                    errno.EFBIG: "the file is too large for this file system or limit"}.get(
                        exc.errno, "choose another folder")
            self.output_error = (f"cannot write into {self.writer.directory!r}: "
                                 f"{exc.strerror or exc}; {hint}")
            return 0xA700
        return 0x0000

    # association ----------------------------------------------------------------

    def _storage_classes(self) -> list[str]:
        wanted: list[str] = []
        for item in self.request.items:
            wanted += [c for c in item.sop_classes if c not in wanted]
        wanted += [c for c in COMMON_STORAGE if c not in wanted]
        wanted += [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts
                   if str(cx.abstract_syntax) not in wanted]
        return wanted[:_MAX_CONTEXTS - 1]

    def events(self) -> Iterator[Event]:
        req = self.request
        try:
            if req.method == "get" or req.moves_to_us:
                self.writer.check()
        except RetrieveError as exc:
            yield RetrieveFault("output", str(exc), exc.settings)
            return
        models = GET_MODELS if req.method == "get" else MOVE_MODELS
        sop_class = models[req.model]
        server = None
        handlers = [(evt.EVT_C_STORE, self._on_store)]
        ext_neg = []
        extra_contexts: list[tuple[str, list[str]]] = []
        if req.method == "get":
            for uid in self._storage_classes():
                extra_contexts.append((uid, STORAGE_TRANSFER_SYNTAXES))
                ext_neg.append(build_role(uid, scp_role=True))
        elif req.moves_to_us:
            server_ae = AE(ae_title=req.network.calling_aet)
            server_ae.maximum_pdu_size = retrieve_pdu(req.network).max_pdu
            server_ae.network_timeout = req.network.network_timeout
            server_ae.dimse_timeout = req.network.dimse_timeout
            for cx in AllStoragePresentationContexts:
                server_ae.add_supported_context(cx.abstract_syntax, STORAGE_TRANSFER_SYNTAXES)
            server_ae.require_called_aet = False
            try:
                server = server_ae.start_server(
                    (req.store_host, req.store_port), block=False,
                    evt_handlers=[*handlers, (evt.EVT_CONN_OPEN, _no_delay)])
            except OSError as exc:
                where = f"{req.store_host or '*'}:{req.store_port}"
                why = ("in use by another program" if exc.errno == errno.EADDRINUSE
                       else exc.strerror or str(exc))
                yield RetrieveFault("store-port", f"cannot listen for the C-MOVE on {where}: "
                                    f"{why}; choose another store port", ("store_port",))
                return
        find_like = FindRequest(retrieve_pdu(req.network), Dataset(), req.model)
        assoc, failed = _associate(find_like, [sop_class], ext_neg or None,
                                   extra_contexts=extra_contexts,
                                   evt_handlers=handlers if req.method == "get" else None)
        try:
            if failed:
                yield failed
                return
            cx = next((c for c in assoc.accepted_contexts if c.abstract_syntax == sop_class),
                      None)
            if cx is None:
                yield AssociationFailed(
                    "no-context", f"the PACS accepted the association but not "
                    f"{req.model.label} C-{req.method.upper()}; try the other retrieve method "
                    "or model", ("retrieve", "model"))
                return
            if req.method == "get" and not any(
                    c.abstract_syntax != sop_class and c.as_scp for c in assoc.accepted_contexts):
                yield RetrieveFault(
                    "no-context", "the PACS accepted none of the storage classes for C-GET, so "
                    "no instance can arrive on this association; use --retrieve move",
                    ("retrieve",))
                return
            with self._lock:
                self._assoc, self._context_id = assoc, cx.context_id
            yield from self._run_items(assoc, sop_class)
        finally:
            with self._lock:
                self._assoc = None
            if assoc is not None and assoc.is_established:
                if self._cancel.is_set() and not self._cancel_sent:
                    assoc.abort()
                else:
                    assoc.release()
            if server is not None:
                server.shutdown()

    def _run_items(self, assoc, sop_class: str) -> Iterator[Event]:
        req = self.request
        total = len(req.items)
        last_failure: int | None = None
        for index, item in enumerate(req.items, 1):
            if self._cancel.is_set():
                return
            yield ItemStarted(index, total, item)
            self._msg_id += 1
            with self._lock:
                self._cancel_sent = False
            before = (self.writer.written, self.writer.skipped, self.writer.bytes)
            done = yield from self._one_item(assoc, sop_class, index, item, before)
            if done is None:  # the association is gone
                return
            yield done
            if self.output_error is not None:
                yield RetrieveFault("output", self.output_error, ("output_directory",))
                return
            if done.category == "cancel" or self._cancel.is_set():
                return
            # The same failure twice in a row with nothing moved (an unknown move
            # destination, a refused model...): every other item would fail alike.
            failure = done.status if done.category == "failure" and not (
                done.completed or done.received) else None
            if failure is not None and failure == last_failure and index < total:
                yield RetrieveFault(
                    "failure", f"items {index - 1} and {index} failed alike "
                    f"({done.name}, 0x{failure:04X}); the other {total - index} item(s) "
                    "were not tried", ())
                return
            last_failure = failure

    def _counts(self, before: tuple[int, int, int]) -> tuple[int, int, int]:
        w = self.writer
        return w.written - before[0], w.skipped - before[1], w.bytes - before[2]

    def _one_item(self, assoc, sop_class: str, index: int, item: RetrieveItem,
                  before: tuple[int, int, int]):
        req = self.request
        if req.method == "get":
            responses = assoc.send_c_get(item.identifier, sop_class, msg_id=self._msg_id,
                                         priority=req.priority)
        else:
            responses = assoc.send_c_move(item.identifier, req.destination, sop_class,
                                          msg_id=self._msg_id, priority=req.priority)
        completed = failed = warning = 0
        remaining: int | None = None
        final_status = None
        comment = None
        # A watchdog: pynetdicom's generator blocks up to the DIMSE timeout per response;
        # a cancel must go out at once, and one the PACS ignores must still end the item.
        item_done = threading.Event()
        threading.Thread(target=self._watch_cancel, args=(assoc, item_done),
                         daemon=True).start()
        last = time.monotonic()
        try:
            for status, _identifier in responses:
                if status is None or "Status" not in status:
                    break  # no answer in time, or the association went
                last = time.monotonic()
                code = int(status.Status)
                completed = int(status.get("NumberOfCompletedSuboperations", completed) or 0)
                failed = int(status.get("NumberOfFailedSuboperations", failed) or 0)
                warning = int(status.get("NumberOfWarningSuboperations", warning) or 0)
                rem = status.get("NumberOfRemainingSuboperations")
                remaining = int(rem) if rem is not None and rem != "" else None
                written, skipped, nbytes = self._counts(before)
                if code in (0xFF00, 0xFF01):
                    yield ItemProgress(index, remaining, completed, failed, warning,
                                       written, skipped, nbytes)
                    continue
                final_status = code
                comment = str(status.get("ErrorComment", "") or "") or None
                break
        finally:
            item_done.set()
        written, skipped, nbytes = self._counts(before)
        if final_status is None:
            # What arrived before the end counts (the summary, the history).
            yield ItemProgress(index, remaining, completed, failed, warning, written, skipped,
                               nbytes)
            # pynetdicom ends its generator on an abort as on a timeout (after which it
            # aborts the association itself): tell them apart by the silence before it
            timed_out = time.monotonic() - last >= req.network.dimse_timeout - 0.5
            if self._cancel.is_set():
                if assoc.is_established:
                    assoc.abort()
                yield RetrieveFault(
                    "cancel-timeout", f"no final status within {req.cancel_grace:g} s of "
                    f"C-CANCEL; association aborted; {self.writer.written} instance(s) kept", ())
            elif not timed_out:
                if assoc.is_established:
                    assoc.abort()
                yield RetrieveFault(
                    "aborted", f"the PACS ended the association during item {index} "
                    f"({item.label}); {self.writer.written} instance(s) written so far are kept; "
                    "run the retrieve again to resume", ())
            else:
                assoc.abort()
                yield RetrieveFault(
                    "timeout", f"no response within the DIMSE timeout "
                    f"({req.network.dimse_timeout:g} s) during item {index}; association "
                    "aborted; the instances written are kept; raise the DIMSE timeout if the "
                    "PACS is slow", ("dimse_timeout",))
            return None
        return ItemDone(index, item, final_status, completed, failed, warning, written, skipped,
                        nbytes, comment, cancelled=self._cancel.is_set())

    def _watch_cancel(self, assoc, item_done: threading.Event) -> None:
        """Until the item ends: send the C-CANCEL as soon as asked, and abort if the PACS
        has not ended the item within the grace period."""
        while not item_done.is_set() and assoc.is_established:
            if self._cancel.wait(self.POLL):
                self._send_cancel()
                if not item_done.wait(self.request.cancel_grace) and assoc.is_established:
                    assoc.abort()
                return


def _no_delay(event) -> None:
    """Each C-STORE-RSP is two small PDUs: without TCP_NODELAY, Nagle's algorithm holds
    the second for the peer's delayed ACK (~40 ms an instance)."""
    try:
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        pass


# --- the summary -----------------------------------------------------------------


@dataclass
class RetrieveSummary:
    """A retrieve's events -> counts and one outcome (success, partial, failure, cancel,
    network, output)."""

    items: int = 0
    done: list[ItemDone] = field(default_factory=list)
    fault: RetrieveFault | AssociationFailed | None = None
    cancel_requested: bool = False
    current: ItemProgress | None = None  # the item under way (or cut short): its counts

    def feed(self, event: Event) -> None:
        if isinstance(event, ItemStarted):
            self.items = event.total
            self.current = None
        elif isinstance(event, ItemProgress):
            self.current = event
        elif isinstance(event, ItemDone):
            self.done.append(event)
            self.current = None
        elif isinstance(event, (RetrieveFault, AssociationFailed)):
            if self.fault is None or isinstance(self.fault, RetrieveFault) and \
                    self.fault.kind != "output":
                self.fault = event

    def _sum(self, name: str) -> int:
        under_way = getattr(self.current, name) if self.current is not None else 0
        return sum(getattr(d, name) for d in self.done) + under_way

    @property
    def written(self) -> int:
        return self._sum("written")

    @property
    def skipped(self) -> int:
        return self._sum("skipped")

    @property
    def failed(self) -> int:
        return self._sum("failed")

    @property
    def bytes(self) -> int:
        return self._sum("bytes")

    @property
    def outcome(self) -> str:
        fault = self.fault
        if isinstance(fault, RetrieveFault) and fault.kind == "failure":
            fault = None  # items failed alike: judged by the items below
        if fault is not None:
            if isinstance(fault, RetrieveFault) and fault.kind == "output":
                return "output"
            if isinstance(fault, RetrieveFault) and fault.kind in ("cancel-timeout",) \
                    or self.cancel_requested:
                return "cancel"
            return "network"
        if self.cancel_requested or any(d.category == "cancel" for d in self.done):
            return "cancel"
        if any(d.category == "failure" for d in self.done):
            return "partial" if any(d.received for d in self.done) else "failure"
        if any(d.category == "partial" for d in self.done) or len(self.done) < self.items:
            return "partial"
        return "success"


class ItemList:
    """Retrieve items made from matches as they come, one per distinct unique key, in
    order (a match can come twice: split sub-queries, several peers, marked twice)."""

    def __init__(self, model: QueryModel, level: str) -> None:
        self.model, self.level = model, level
        self.items: list[RetrieveItem] = []
        self._seen: set[str] = set()

    def add(self, match: Dataset) -> RetrieveItem | None:
        """The new item, or None when it was there already (raises RetrieveError)."""
        item = item_from_match(self.model, self.level, match)
        if item.label in self._seen:
            return None
        self._seen.add(item.label)
        self.items.append(item)
        return item


def retrieve_items(model: QueryModel, level: str, matches: Sequence[Dataset]) -> tuple[
        RetrieveItem, ...]:
    """The items of a query's matches, one per distinct unique key, in order."""
    items = ItemList(model, level)
    for match in matches:
        items.add(match)
    return tuple(items.items)
