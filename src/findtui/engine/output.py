"""Where responses go: rsp*.dcm files, CSV, DICOM JSON / JSONL, findscu-style log lines.

Every writer takes one response at a time and flushes as it goes, so a
killed process loses at most the response in flight.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID, generate_uid
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID
from pynetdicom.dsutils import pretty_dataset

from findtui import __version__
from findtui.engine.keys import KeyPathError, column_paths, parse_key, value_at
from findtui.engine.query import Final, Pending

IMPLEMENTATION_VERSION_NAME = f"FINDTUI_{__version__}"[:16]
RSP_PATTERN = re.compile(r"^rsp\d{6,}\.dcm$")


class OutputError(OSError):
    """Writing results failed (folder missing or read-only, disk full, file exists)."""


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
        self._templates: dict[tuple[str, int], tuple[bytes, bytes]] = {}

    def check(self) -> None:
        """Fail before querying if the folder is unusable or already holds rsp files."""
        d = self.directory
        if not d.is_dir():
            raise OutputError(f"output directory {str(d)!r} does not exist; create it or "
                              "choose another with -od")
        if not os.access(d, os.W_OK):
            raise OutputError(f"output directory {str(d)!r} is not writable; choose another with -od")
        if not self.overwrite:
            existing = sorted(p.name for p in d.iterdir() if RSP_PATTERN.match(p.name))
            if existing:
                raise OutputError(
                    f"{str(d)!r} already holds {len(existing)} response file(s) "
                    f"({existing[0]}…); use --overwrite to replace them or choose another "
                    "folder with -od")

    def _meta(self, transfer_syntax: UID) -> bytes:
        """Preamble, DICM and file meta with a fresh MediaStorageSOPInstanceUID.

        pydicom encodes one template per transfer syntax and UID length; each file
        then swaps in its own UID (encoding a FileMetaDataset per file cost 60% of -w).
        """
        uid = generate_uid()
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

    def write(self, response: Pending) -> Path:
        path = self.directory / rsp_name(response.index)
        mode = "wb" if self.overwrite else "xb"
        try:
            with open(path, mode) as fp:
                fp.write(self._meta(response.transfer_syntax))
                fp.write(response.raw)
        except FileExistsError:
            raise OutputError(f"{str(path)!r} already exists; not overwritten (use --overwrite)"
                              ) from None
        except OSError as exc:
            # Don't leave a truncated file behind that looks like a response.
            try:
                path.unlink()
            except OSError:
                pass
            raise OutputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
        self.written.append(path)
        return path


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


class CsvWriter:
    """CSV of the requested keys, in request order; multi-values joined with '\\'."""

    def __init__(self, stream: IO[str], columns: Sequence[str]) -> None:
        self.stream = stream
        self.columns = list(columns)
        self._csv = csv.writer(stream, lineterminator="\n")
        self._csv.writerow(self.columns)
        stream.flush()

    def write(self, response: Pending) -> None:
        ds = response.identifier
        self._csv.writerow([value_at(ds, c) for c in self.columns])
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class JsonWriter:
    """DICOM JSON model (PS3.18 F): an array (json) or one object per line (jsonl)."""

    def __init__(self, stream: IO[str], lines: bool) -> None:
        self.stream = stream
        self.lines = lines
        self.count = 0
        if not lines:
            stream.write("[")
            stream.flush()

    def write(self, response: Pending) -> None:
        text = json.dumps(response.identifier.to_json_dict(), ensure_ascii=False)
        if self.lines:
            self.stream.write(text + "\n")
        else:
            self.stream.write(("\n" if self.count == 0 else ",\n") + text)
        self.count += 1
        self.stream.flush()

    def close(self) -> None:
        if not self.lines:
            self.stream.write("\n]\n" if self.count else "]\n")
        self.stream.flush()


def make_writer(fmt: str, stream: IO[str], columns: Sequence[str]):
    if fmt == "csv":
        return CsvWriter(stream, columns)
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
        yield from identifier_lines(response.identifier, "Response Identifier")


def final_lines(final: Final) -> Iterator[str]:
    yield f"Find SCP Result: 0x{final.status:04X} ({final.name})"
    if final.error_comment:
        yield f"Error Comment: {final.error_comment}"
    if final.offending_element:
        tags = ", ".join(f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in final.offending_element)
        yield f"Offending Element: {tags}"
