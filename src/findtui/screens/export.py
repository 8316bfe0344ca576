"""The export dialog (rsp*.dcm, CSV, DICOM JSON) and the writing it asks for.

Nothing is ever overwritten silently: the folder is checked before the dialog
closes (the engine's ResponseFileWriter.check / an existing file), and the
writers open files exclusively unless "Overwrite" is ticked.

Served in a web browser (``findtui serve``), an export is a download instead: the
same writers fill a temporary file that the app delivers to the browser
(``App.deliver_binary``); rsp*.dcm files go as one ZIP.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from findtui.widgets.toggles import Checkbox, RadioButton, RadioSet

from findtui.engine.output import (
    OutputError,
    ResponseFileWriter,
    make_writer,
    open_output,
    rsp_name,
)
from findtui.engine.settings import form_hint
from findtui.engine.query import FindRequest, IdentifierDecodeError, Pending

FORMATS = {"rsp": "Response files (rsp*.dcm)", "csv": "CSV", "json": "DICOM JSON"}
DEFAULT_NAMES = {"csv": "findtui-results.csv", "json": "findtui-results.json"}
ZIP_NAME = "findtui-responses.zip"  # rsp*.dcm, downloaded
MIME_TYPES = {"rsp": "application/zip", "csv": "text/csv", "json": "application/dicom+json"}


@dataclass(frozen=True)
class ExportChoice:
    kind: str  # rsp | csv | json
    scope: str  # all | shown | selected
    folder: Path
    filename: str | None = None
    overwrite: bool = False
    download: bool = False  # served in a browser: delivered as a download, no folder
    excel_safe: bool = False  # CSV: ' before cells a spreadsheet would run as formulas

    @property
    def target(self) -> Path:
        return self.folder / self.filename if self.filename else self.folder


def check_choice(choice: ExportChoice, sop_class_uid: str, selected: int | None) -> None:
    """Raise OutputError for what would fail or overwrite, before anything is written."""
    if choice.download:
        if not choice.filename or os.sep in choice.filename:
            raise OutputError("give a file name (no folder: the browser saves it)")
        return
    folder = choice.folder
    if not folder.is_dir():
        raise OutputError(f"folder {str(folder)!r} does not exist; create it or choose another")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"folder {str(folder)!r} is not writable; choose another")
    if choice.kind == "rsp":
        if choice.scope == "selected" and selected is not None:
            path = folder / rsp_name(selected)
            if path.exists() and not choice.overwrite:
                raise OutputError(f"{str(path)!r} already exists; not overwritten "
                                  "(tick Overwrite, or choose another folder)")
            return
        try:
            ResponseFileWriter(folder, sop_class_uid, choice.overwrite).check()
        except OutputError as exc:
            raise OutputError(str(exc) + form_hint(exc.settings)) from None
        return
    if not choice.filename:
        raise OutputError("give a file name")
    if choice.target.exists() and not choice.overwrite:
        raise OutputError(f"{str(choice.target)!r} already exists; not overwritten "
                          "(tick Overwrite, or choose another name)")


def write_export(choice: ExportChoice, responses: Sequence[Pending], request: FindRequest,
                 columns: Sequence[str]) -> str:
    """Write the export (on a worker thread); returns what was written where.

    ``responses`` should hand out Pendings that are not kept (a ResponseStore):
    the CSV and JSON writers decode each one. ``columns``: the table's, for CSV.
    """
    if choice.kind == "rsp":
        writer = ResponseFileWriter(choice.folder, request.model.sop_class_uid, choice.overwrite)
        if choice.scope != "selected":
            writer.check()
        for response in responses:
            writer.write(response)
        written = writer.written
        if len(written) == 1:
            return f"Wrote {written[0].name} to {choice.folder}"
        names = f" ({written[0].name} … {written[-1].name})" if written else ""
        stale = writer.stale() if choice.overwrite and choice.scope != "selected" else []
        note = (f"; {len(stale)} older rsp files of an earlier run are still there "
                f"({stale[0]}…)") if stale else ""
        return f"Wrote {len(written):,} response files{names} to {choice.folder}{note}"
    path = choice.target
    skipped = 0
    try:
        with open_output(path, choice.overwrite) as stream:
            writer = make_writer(choice.kind, stream, columns, choice.excel_safe)
            for response in responses:
                try:
                    writer.write(response)
                except IdentifierDecodeError:
                    skipped += 1
            writer.close()
    except OutputError as exc:
        raise OutputError(str(exc) + form_hint(exc.settings)) from None
    except OSError as exc:
        raise OutputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    what = "CSV" if choice.kind == "csv" else "DICOM JSON"
    rows = len(responses) - skipped
    note = f" ({skipped} undecodable left out)" if skipped else ""
    return f"Wrote {rows:,} row{'' if rows == 1 else 's'} as {what} to {path}{note}"


@dataclass(frozen=True)
class Download:
    """An export for the browser: a temporary file, read from the start, and its name."""

    file: BinaryIO
    name: str
    mime_type: str


def export_download(choice: ExportChoice, responses: Sequence[Pending], request: FindRequest,
                    columns: Sequence[str]) -> tuple[Download, str]:
    """Write the export into a temporary file (on a worker thread); returns it and what
    it holds. rsp*.dcm go into one ZIP, each file as ``-w`` writes it."""
    name = choice.filename or ZIP_NAME
    data = tempfile.TemporaryFile()  # unnamed: gone once delivered or dropped
    try:
        skipped = 0
        if choice.kind == "rsp":
            writer = ResponseFileWriter(choice.folder, request.model.sop_class_uid)
            with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED) as archive:
                for response in responses:
                    archive.writestr(rsp_name(response.index), b"".join(writer.part10(response)))
            what = f"{len(responses):,} response files (ZIP)"
        else:
            stream = io.TextIOWrapper(data, encoding="utf-8", newline="")
            writer = make_writer(choice.kind, stream, columns, choice.excel_safe)
            for response in responses:
                try:
                    writer.write(response)
                except IdentifierDecodeError:
                    skipped += 1
            writer.close()
            stream.detach()
            rows = len(responses) - skipped
            what = (f"{rows:,} row{'' if rows == 1 else 's'} as "
                    f"{'CSV' if choice.kind == 'csv' else 'DICOM JSON'}")
        data.seek(0)
    except BaseException:
        data.close()
        raise
    note = f" ({skipped} undecodable left out)" if skipped else ""
    return (Download(data, name, MIME_TYPES[choice.kind]),
            f"Sent {what} to the browser as {name}{note}")


class ExportScreen(ModalScreen[ExportChoice | None]):
    """Choose what, which rows and where; Enter/Export checks, then closes."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="export.cancel")]

    def __init__(self, *, total: int, shown: int | None, selected: int | None,
                 sop_class_uid: str, folder: Path, download: bool = False,
                 as_received: bool = False) -> None:
        """``shown``: the rows the table shows (the default choice, in its order; None:
        all); ``as_received``: the table shows every row in arrival order."""
        super().__init__()
        self.download = download  # served in a browser: a download, no folder
        self.total = total
        self.shown = shown
        self.as_received = as_received
        self.selected = selected
        self.sop_class_uid = sop_class_uid
        self.folder = folder

    def compose(self) -> ComposeResult:
        with Vertical(id="export-dialog") as dialog:
            dialog.border_title = "Export results"
            with Horizontal(classes="form-row"):
                yield Label("What", classes="form-label")
                with RadioSet(id="export-kind", compact=True):
                    for i, (kind, label) in enumerate(FORMATS.items()):
                        yield RadioButton(label, value=i == 0, name=kind, compact=True)
            with Horizontal(classes="form-row"):
                yield Label("Rows", classes="form-label")
                with RadioSet(id="export-scope", compact=True):
                    if self.shown is not None and not self.as_received:
                        # what the screen shows, first: a sorted, filtered list exported so
                        yield RadioButton(f"The {self.shown:,} shown, in this order", value=True,
                                          name="shown", compact=True)
                    yield RadioButton(f"All {self.total:,} responses, as received",
                                      value=self.shown is None or self.as_received,
                                      name="all", compact=True)
                    if self.selected is not None:
                        yield RadioButton(f"Selected row (response {self.selected})",
                                          name="selected", compact=True)
            with Horizontal(classes="form-row", id="export-folder-row"):
                yield Label("Folder", classes="form-label")
                yield Input(str(self.folder), id="export-folder", compact=True)
            with Horizontal(classes="form-row", id="export-file-row"):
                yield Label("Name" if self.download else "File", classes="form-label")
                yield Input(DEFAULT_NAMES["csv"], id="export-file", compact=True)
            yield Checkbox("Overwrite existing files", id="export-overwrite", compact=True)
            yield Checkbox("Excel-safe: ' before cells starting with = + - @", compact=True,
                           id="export-excel-safe",
                           tooltip="so that a spreadsheet does not run a PACS value as a "
                                   "formula (it changes those cells)")
            yield Static(id="export-error")
            with Horizontal(classes="button-row"):
                yield Button("Export", id="export-ok", variant="primary", compact=True)
                yield Button("Cancel", id="export-cancel", compact=True)

    def on_mount(self) -> None:
        if self.download:
            self.query_one("#export-folder-row").display = False
            self.query_one("#export-overwrite").display = False
        self._kind_changed()
        self.query_one("#export-kind", RadioSet).focus()

    def _radio(self, wid: str) -> str:
        pressed = self.query_one(f"#{wid}", RadioSet).pressed_button
        return pressed.name if pressed is not None and pressed.name else ""

    @on(RadioSet.Changed, "#export-kind")
    def _kind_changed(self) -> None:
        kind = self._radio("export-kind") or "rsp"
        names = {**DEFAULT_NAMES, "rsp": ZIP_NAME} if self.download else DEFAULT_NAMES
        self.query_one("#export-file-row").display = kind in names
        self.query_one("#export-excel-safe").display = kind == "csv"
        file_input = self.query_one("#export-file", Input)
        if kind in names and file_input.value in names.values():
            file_input.value = names[kind]
        self.query_one("#export-error", Static).update("")

    def choice(self) -> ExportChoice:
        kind = self._radio("export-kind") or "rsp"
        folder = Path(os.path.expanduser(self.query_one("#export-folder", Input).value.strip()
                                         or "."))
        named = kind != "rsp" or self.download
        filename = self.query_one("#export-file", Input).value.strip() if named else None
        return ExportChoice(kind=kind, scope=self._radio("export-scope") or "all",
                            folder=folder, filename=filename or None,
                            overwrite=self.query_one("#export-overwrite", Checkbox).value,
                            download=self.download,
                            excel_safe=kind == "csv"
                            and self.query_one("#export-excel-safe", Checkbox).value)

    @on(Button.Pressed, "#export-ok")
    @on(Input.Submitted)
    def _export(self, event) -> None:
        event.stop()
        choice = self.choice()
        try:
            check_choice(choice, self.sop_class_uid, self.selected)
        except OutputError as exc:
            self.query_one("#export-error", Static).update(Text(str(exc)))
            self.app.bell()
            return
        if not choice.download:
            self.app.export_folder = choice.folder
        self.dismiss(choice)

    @on(Button.Pressed, "#export-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
