"""Where responses go: rsp*.dcm files, CSV, DICOM JSON / JSONL, findscu-style log lines.

Every writer takes one response at a time and flushes whenever no further
response is waiting (``Pending.more``), so a killed process loses at most the
responses of one read from the network, and a reader at the other end of a pipe
sees each row as soon as the network pauses.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO


from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID, generate_uid
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID
from pynetdicom.dsutils import pretty_dataset

from findtui import __version__
from findtui.engine import files
from findtui.engine.elements import json_dict, pretty_lines
from findtui.engine.keys import (
    KeyPathError,
    column_paths,
    column_steps,
    parse_key,
    value_at,
    value_text,
)
from findtui.engine.query import Final, IdentifierDecodeError, Pending
from findtui.engine.sanitize import json_safe, visible

IMPLEMENTATION_VERSION_NAME = f"FINDTUI_{__version__}"[:16]
RSP_PATTERN = re.compile(r"^rsp\d{6,}\.dcm$")


class OutputError(OSError):
    """Writing results failed (folder missing or read-only, disk full, file exists).

    ``settings``: what the user can change about it (engine.settings keys)."""

    def __init__(self, message: str, settings: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.settings = settings

    def __str__(self) -> str:
        return self.args[0]


def rsp_name(index: int) -> str:
    return f"rsp{index:06d}.dcm"


class ResponseFileWriter:
    """Writes each pending identifier as a Part-10 file, rsp000001.dcm, ...

    The identifier's bytes are written as received (same transfer syntax, no
    re-encoding); the file meta says which syntax that is.
    """

    def __init__(self, directory: str | os.PathLike, sop_class_uid: str,
                 overwrite: bool = False) -> None:
        self.directory = Path(directory)
        self.sop_class_uid = sop_class_uid
        self.overwrite = overwrite
        self.written: list[Path] = []
        self._folder = str(self.directory)
        self._uid_root: str | None = None
        self._templates: dict[tuple[str, int], tuple[bytes, bytes]] = {}

    def check(self) -> None:
        """Fail before querying if the folder is unusable or already holds rsp files."""
        d = self.directory
        if d.exists() and not d.is_dir():
            raise OutputError(f"output directory {str(d)!r} is a file, not a folder; choose a "
                              "folder", ("output_directory",))
        if not d.is_dir():
            raise OutputError(f"output directory {str(d)!r} does not exist; create it or "
                              "choose another", ("output_directory",))
        if not os.access(d, os.W_OK):
            raise OutputError(f"output directory {str(d)!r} is not writable; choose another",
                              ("output_directory",))
        if not self.overwrite:
            existing = sorted(p.name for p in d.iterdir() if RSP_PATTERN.match(p.name))
            if existing:
                raise OutputError(
                    f"{str(d)!r} already holds {len(existing)} response file(s) "
                    f"({existing[0]}…); allow overwriting to replace them or choose another "
                    "folder", ("overwrite", "output_directory"))

    def _meta(self, transfer_syntax: UID, index: int) -> bytes:
        """Preamble, DICM and file meta; MediaStorageSOPInstanceUID is this run's UID root
        (one UUID-derived 2.25 UID) with the response number appended.

        pydicom encodes one template per transfer syntax and UID length; each file
        then swaps in its own UID (encoding a FileMetaDataset per file cost 60% of -w).
        """
        if self._uid_root is None:
            self._uid_root = generate_uid(prefix=None)  # 2.25.<UUID>: room for the number
        uid = f"{self._uid_root}.{index}"
        new = uid.encode() + b"\0" * (len(uid) & 1)
        key = (transfer_syntax, len(new))
        template = self._templates.get(key)
        if template is not None:
            encoded, old = template
            return encoded.replace(old, new, 1)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = self.sop_class_uid
        meta.MediaStorageSOPInstanceUID = uid
        meta.TransferSyntaxUID = transfer_syntax
        meta.ImplementationClassUID = PYNETDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
        buf = DicomBytesIO()
        buf.is_little_endian = True
        buf.is_implicit_VR = False
        write_file_meta_info(buf, meta, enforce_standard=True)
        encoded = b"\x00" * 128 + b"DICM" + buf.getvalue()
        self._templates[key] = (encoded, new)
        return encoded

    def part10(self, response: Pending) -> tuple[bytes, bytes]:
        """The file's bytes, in two parts: preamble and file meta, then the identifier."""
        return self._meta(response.transfer_syntax, response.index), response.raw

    def write(self, response: Pending) -> Path:
        name = os.path.join(self._folder, rsp_name(response.index))
        try:
            files.write_new(name, self.part10(response), self.overwrite)
        except FileExistsError:
            raise OutputError(f"{name!r} already exists; not overwritten",
                              ("overwrite",)) from None
        except files.UnsafeFileError as exc:
            raise OutputError(f"{name!r} {exc.strerror} (results are written only inside "
                              "the output folder): remove it or choose another folder",
                              ("output_directory",)) from None
        except OSError as exc:  # (a partial file is removed by write_new)
            raise OutputError(_write_problem(name, exc), ("output_directory",)) from None
        path = Path(name)
        self.written.append(path)
        return path

    def stale(self) -> list[str]:
        """rsp*.dcm of an earlier, larger run left beside this run's (with --overwrite):
        not from this query, and easy to mix up with its results."""
        mine = {p.name for p in self.written}
        try:
            names = [p.name for p in self.directory.iterdir() if RSP_PATTERN.match(p.name)]
        except OSError:
            return []
        return sorted(n for n in names if n not in mine and int(n[3:-4]) > len(self.written))


def open_output(path: str | os.PathLike, overwrite: bool = False) -> IO[str]:
    """A text file for CSV/JSON results: never through a link or into a FIFO, never over an
    existing file unless ``overwrite`` (raises OutputError)."""
    if os.path.isdir(path):
        raise OutputError(f"{str(path)!r} is a folder: give a file name")
    try:
        return files.open_new(path, overwrite)
    except FileExistsError:
        raise OutputError(f"{str(path)!r} already exists; not overwritten", ("overwrite",)) from None
    except files.UnsafeFileError as exc:
        raise OutputError(f"{str(path)!r} {exc.strerror}: remove it or choose another file"
                          ) from None
    except OSError as exc:
        raise OutputError(f"cannot open {str(path)!r}: {exc.strerror or exc}") from None


def _write_problem(path: Path | str, exc: OSError) -> str:
    """'cannot write X: No space left on device; free some space ...' (one line)."""
    hints = {
        errno.ENOSPC: "free some space or choose another folder",
        errno.EDQUOT: "free some space (disk quota exceeded) or choose another folder",
        errno.EROFS: "the file system is read-only; choose another folder",
        errno.EACCES: "permission denied; choose a folder you can write to",
        errno.EPERM: "permission denied; choose a folder you can write to",
        errno.EFBIG: "the file is too large for this file system or limit",
    }
    hint = hints.get(exc.errno, "choose another folder")
    return f"cannot write {str(path)!r}: {exc.strerror or exc}; {hint}"


def table_columns(request_identifier: Dataset, keys: Sequence[str] = ()) -> list[str]:
    """The result columns: the identifier's leaf paths, in the order the -k keys named them.

    Columns no key names (those from an -f file) keep dataset order, after the named ones.
    """
    columns = column_paths(request_identifier)
    named: list[str] = []
    for key in keys:
        try:
            parsed = parse_key(key)
        except KeyPathError:
            continue
        named.append(".".join(
            p.name + ("" if p.index is None else f"[{p.index}]") for p in parsed.path))

    def rank(column: str) -> int:
        for i, name in enumerate(named):
            if column == name or column.startswith((name + ".", name + "[")):
                return i
        return len(named)

    return sorted(columns, key=rank)  # stable: ties keep dataset order


def _stream_name(stream: IO[str]) -> str:
    name = getattr(stream, "name", None)
    return "<stdout>" if name is None else str(name)


def close_quietly(stream: IO) -> None:
    """Close a stream whose last flush may have failed already (disk full): that error
    was reported when it happened; closing must not raise it a second time."""
    try:
        stream.close()
    except OSError:
        pass


class _StreamWriter:
    """Flushes after every response; a failing write becomes an OutputError.

    (BrokenPipeError stays what it is: `findtui ... | head` is not an error.)
    """

    stream: IO[str]

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(_write_problem(_stream_name(self.stream), exc).replace(
                "another folder", "another file or folder")) from None

    def _put(self, text: str, flush: bool = True) -> None:
        with self._errors():
            self.stream.write(text)
            if flush:
                self.stream.flush()


# OWASP's list of the characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def excel_safe(cell: str) -> str:
    """``cell`` with a single quote in front when a spreadsheet would read it as a formula
    (``=HYPERLINK(...)``, ``-2+3``, ``@SUM(...)``): formula injection from peer values."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


class CsvWriter(_StreamWriter):
    """CSV of the requested keys, in request order; multi-values joined with '\\'.

    Cells are made visible (:func:`findtui.engine.sanitize.visible`): control and
    bidi characters in peer data never reach a terminal or a spreadsheet raw.
    ``excel_safe``: cells a spreadsheet would run as a formula get a leading ``'``
    (:func:`excel_safe`; off by default: it changes the data).
    """

    def __init__(self, stream: IO[str], columns: Sequence[str], excel_safe: bool = False,
                 lead: Sequence[str] = ()) -> None:
        self.stream = stream
        self.excel_safe = excel_safe
        self.columns = list(columns)
        self._csv = csv.writer(stream, lineterminator="\n")
        self._tags = top_level_tags(self.columns)
        self._row([visible(c) for c in (*lead, *self.columns)])

    def _row(self, cells: list[str], flush: bool = True) -> None:
        with self._errors():
            self._csv.writerow(cells)
            if flush:
                self.stream.flush()

    def write(self, response: Pending, lead: RunTags | None = None) -> None:
        """``lead``: the query set's node and query columns of this row."""
        cells = [visible(c) for c in row_cells(response, self.columns, self._tags)]
        if lead is not None:
            cells[:0] = [visible(c) for c in lead.cells()]
        if self.excel_safe:
            cells = [excel_safe(c) for c in cells]
        self._row(cells, flush=not response.more)

    def close(self) -> None:
        self._put("")


def _top_level_tag(column: str) -> int | None:
    try:
        steps = column_steps(column)
    except KeyPathError:
        return None
    return int(steps[0][0]) if len(steps) == 1 and steps[0][1] is None else None


def top_level_tags(columns: Sequence[str]) -> list[int] | None:
    """The tags of ``columns`` when all are top-level elements (what :func:`row_cells`
    reads without a Dataset), else None."""
    tags = [_top_level_tag(c) for c in columns]
    return None if None in tags else tags  # type: ignore[return-value]


def row_cells(response: Pending, columns: Sequence[str],
              tags: list[int] | None = None) -> list[str]:
    """Each column's display text (:func:`findtui.engine.keys.value_at`), as CSV and the
    TUI's table show it, not yet made visible. Top-level columns (``tags``, from
    :func:`top_level_tags`) are read without a Dataset (:mod:`findtui.engine.elements`);
    nested ones, or an identifier that needs it, the Dataset way, which raises
    IdentifierDecodeError for one that cannot be decoded."""
    elements = response.elements if tags else None
    if elements is None:
        ds = response.identifier
        return [value_at(ds, c) for c in columns]
    by_tag = {e.tag: e for e in elements}
    cells = []
    for tag in tags:  # type: ignore[union-attr]
        e = by_tag.get(tag)
        if e is None:
            cells.append("")
        elif e.items is not None:
            cells.append("\\".join(e.items))
        else:
            cells.append(value_text(e.VR, e.value))
    return cells


class JsonWriter(_StreamWriter):
    """DICOM JSON model (PS3.18 F): an array (json) or one object per line (jsonl).

    Non-ASCII text stays readable; control, bidi and other invisible characters
    are written as ``\\uXXXX`` escapes (:func:`findtui.engine.sanitize.json_safe`):
    the same data, safe on a terminal.
    """

    def __init__(self, stream: IO[str], lines: bool) -> None:
        self.stream = stream
        self.lines = lines
        self.count = 0
        if not lines:
            self._put("[")

    def write(self, response: Pending, lead: RunTags | None = None) -> None:
        """``lead``: the query set's node and query, added as private elements."""
        try:
            elements = response.elements
            if elements is not None:
                data = json_dict(elements)
            else:
                data = response.identifier.to_json_dict()
            if lead is not None:
                data = lead.add_to_json(data)
            text = json_safe(json.dumps(data, ensure_ascii=False))
        except IdentifierDecodeError:
            raise
        except Exception as exc:  # a value pydicom cannot express in DICOM JSON
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise IdentifierDecodeError(
                f"response {response.index}: identifier cannot be written as DICOM JSON "
                f"({detail})") from None
        flush = not response.more
        if self.lines:
            self._put(text + "\n", flush)
        else:
            self._put(("\n" if self.count == 0 else ",\n") + text, flush)
        self.count += 1

    def close(self) -> None:
        if not self.lines:
            self._put("\n]\n" if self.count else "]\n")
        else:
            self._put("")


@dataclass(frozen=True)
class RunTags:
    """Which node(s) and listed query(ies) a row of a query set came from.

    CSV: leading columns ``node`` and/or ``query`` (several values joined with ``\\``).
    DICOM JSON: private elements of creator ``findtui`` in group 0009 (the first free
    block): ``(0009,xx01)`` LO the node names, ``(0009,xx02)`` UL the query numbers, so
    each object stays a valid DICOM JSON dataset.
    """

    nodes: tuple[str, ...] | None = None  # None: not a column (one node)
    queries: tuple[int, ...] | None = None  # None: no query list

    def cells(self) -> list[str]:
        out = []
        if self.nodes is not None:
            out.append("\\".join(self.nodes))
        if self.queries is not None:
            out.append("\\".join(str(q) for q in self.queries))
        return out

    def add_to_json(self, data: dict) -> dict:
        block = next(b for b in range(0x10, 0x100)
                     if f"0009{b:04X}" not in data or
                     data[f"0009{b:04X}"].get("Value") == [PRIVATE_CREATOR])
        ours = {f"0009{block:04X}": {"vr": "LO", "Value": [PRIVATE_CREATOR]}}
        if self.nodes is not None:
            ours[f"0009{block:02X}01"] = {"vr": "LO", "Value": list(self.nodes)}
        if self.queries is not None:
            ours[f"0009{block:02X}02"] = {"vr": "UL", "Value": list(self.queries)}
        merged = {**data, **ours}
        return dict(sorted(merged.items()))


PRIVATE_CREATOR = "findtui"


def make_writer(fmt: str, stream: IO[str], columns: Sequence[str], excel_safe: bool = False,
                lead: Sequence[str] = ()):
    """``excel_safe``: CSV only (:class:`CsvWriter`); ``lead``: the CSV's leading column
    names (a query set's node and query)."""
    if fmt == "csv":
        return CsvWriter(stream, columns, excel_safe, lead)
    if fmt in ("json", "jsonl"):
        return JsonWriter(stream, lines=(fmt == "jsonl"))
    raise ValueError(fmt)


# --- findscu-style log lines -------------------------------------------------


def identifier_lines(ds: Dataset, title: str) -> Iterator[str]:
    yield ""
    yield f"# {title}"
    yield from pretty_dataset(ds)
    yield ""


def pending_lines(response: Pending, with_identifier: bool = True) -> Iterator[str]:
    flag = " (Pending - optional keys not supported)" if response.status == 0xFF01 else " (Pending)"
    yield f"Find SCP Response: {response.index} - 0x{response.status:04X}{flag}"
    if with_identifier:
        elements = response.elements
        if elements is None:
            yield from identifier_lines(response.identifier, "Response Identifier")
        else:
            yield ""
            yield "# Response Identifier"
            yield from pretty_lines(elements)
            yield ""


def final_lines(final: Final) -> Iterator[str]:
    yield f"Find SCP Result: 0x{final.status:04X} ({final.name})"
    if final.error_comment:
        yield f"Error Comment: {final.error_comment}"
    if final.offending_element:
        tags = ", ".join(f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in final.offending_element)
        yield f"Offending Element: {tags}"
    if final.advice:
        yield f"What to try: {final.advice}"
