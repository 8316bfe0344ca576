"""Helpers that write keys for you: date presets and a modality multi-select.

They only produce key text (``StudyDate=20261119-20261126``,
``ModalitiesInStudy=CT\\MR``); the key editor takes it like a typed key, so
what a helper did is always visible, and editable, in the key list.
"""

from __future__ import annotations

import datetime as dt

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Label, Select, Static

from findtui.widgets.toggles import SelectionList

from findtui.engine.models import QueryModel

MODALITIES = ("CT", "MR", "US", "CR", "DX", "MG", "PT", "NM", "XA", "RF", "OT", "SR", "DOC")
SPS = "ScheduledProcedureStepSequence[0]"

DATE_PRESETS = (
    ("Today", "today"),
    ("Yesterday", "yesterday"),
    ("Last 7 days", "7"),
    ("Last 30 days", "30"),
    ("Range… (edit the key)", "range"),
    ("Any date", "any"),
)


PATIENT_LEVEL_NOTE = ("Date and modality are keys of a patient's studies, not of the "
                      "patient: choose the STUDY level (or below) to use them.")


def helpers_valid(model: QueryModel, level: str) -> bool:
    """Whether the date and modality helpers' keys exist at ``level``."""
    return model is QueryModel.WORKLIST or level != "PATIENT"


def date_key_for(model: QueryModel, level: str) -> str:
    if model is QueryModel.WORKLIST:
        return f"{SPS}.ScheduledProcedureStepStartDate"
    return {"SERIES": "SeriesDate", "IMAGE": "ContentDate"}.get(level, "StudyDate")


def modality_key_for(model: QueryModel, level: str) -> str:
    if model is QueryModel.WORKLIST:
        return f"{SPS}.Modality"
    return "Modality" if level in ("SERIES", "IMAGE") else "ModalitiesInStudy"


def date_value(preset: str, today: dt.date) -> str:
    """The DA matching value for a preset: '20261126', '20261119-20261126', ''."""
    fmt = "%Y%m%d"
    if preset == "today":
        return today.strftime(fmt)
    if preset == "yesterday":
        return (today - dt.timedelta(days=1)).strftime(fmt)
    if preset in ("7", "30", "range"):
        days = 7 if preset == "range" else int(preset)
        return f"{(today - dt.timedelta(days=days)).strftime(fmt)}-{today.strftime(fmt)}"
    return ""


class QueryHelpers(Vertical):
    """Posts KeyProduced(key, edit) for the key editor; edit=True puts it in the input."""

    class KeyProduced(Message):
        def __init__(self, key: str, edit: bool = False) -> None:
            super().__init__()
            self.key = key
            self.edit = edit

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model = QueryModel.STUDY
        self.level = "STUDY"
        # Tests and the benchmark pin "today" for deterministic keys.
        self.today: dt.date | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="form-row"):
            yield Label("Date", classes="form-label")
            yield Select(DATE_PRESETS, prompt="preset…", id="date-preset", compact=True)
        yield Label("Modality (space toggles)", classes="form-title", id="modalities-title")
        yield SelectionList[str](*((m, m) for m in MODALITIES), id="modalities", compact=True)
        yield Static(PATIENT_LEVEL_NOTE, id="helpers-note")

    def on_mount(self) -> None:
        self.query_one("#helpers-note").display = False

    def set_context(self, model: QueryModel, level: str) -> None:
        """Offer only keys valid at ``level``: a patient has no date or modality of its own
        (those are its studies' keys), so at the PATIENT level both helpers are off."""
        self.model, self.level = model, level
        valid = helpers_valid(model, level)
        self.query_one("#date-preset", Select).disabled = not valid
        modalities = self.query_one("#modalities", SelectionList)
        modalities.disabled = not valid
        modalities.display = self.query_one("#modalities-title").display = valid
        self.query_one("#helpers-note").display = not valid

    def set_modalities(self, values: list[str]) -> None:
        """Reflect a key's modalities in the list without producing a key."""
        selection = self.query_one("#modalities", SelectionList)
        with self.prevent(SelectionList.SelectedChanged):
            selection.deselect_all()
            for value in values:
                if value in MODALITIES:
                    selection.select(value)

    @on(Select.Changed, "#date-preset")
    def _date_chosen(self, event: Select.Changed) -> None:
        event.stop()
        if not isinstance(event.value, str):
            return
        today = self.today or dt.date.today()
        key = f"{date_key_for(self.model, self.level)}={date_value(event.value, today)}"
        self.post_message(self.KeyProduced(key, edit=event.value == "range"))
        with self.prevent(Select.Changed):
            event.select.clear()

    @on(SelectionList.SelectedChanged, "#modalities")
    def _modalities_changed(self, event: SelectionList.SelectedChanged) -> None:
        event.stop()
        chosen = [m for m in MODALITIES if m in event.selection_list.selected]
        self.post_message(self.KeyProduced(f"{modality_key_for(self.model, self.level)}="
                                           + "\\".join(chosen)))
