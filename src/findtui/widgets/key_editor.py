"""The key editor: the query's keys in ``-k`` syntax, checked by the engine's parser.

One parser (findtui.engine.keys) for the CLI and the TUI: a key the editor
accepts is exactly a key ``findtui --batch -k`` accepts, and a bad key shows
the same KeyPathError message.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Sequence

from pydicom.datadict import dictionary_VR, keyword_dict, tag_for_keyword
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.suggester import Suggester
from textual.widgets import Button, Input, OptionList, Static
from textual.widgets.option_list import Option

from findtui.engine.keys import (
    KeyPathError,
    QueryFileError,
    dataset_to_keys,
    load_query_file,
    parse_key,
)
from findtui.engine.sanitize import visible
from findtui.widgets.lists import HighlightInView

QR_LEVEL_TAG = 0x00080052
HINT = "Keyword=value · (gggg,eeee)=value · Seq[0].Keyword=value · Enter adds"

# Offered first when they match what is typed: the keys people query by.
COMMON_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "StudyDescription", "StudyInstanceUID", "AccessionNumber", "ModalitiesInStudy",
    "ReferringPhysicianName", "StudyID", "SeriesInstanceUID", "SeriesNumber",
    "SeriesDescription", "SeriesDate", "Modality", "SOPInstanceUID", "SOPClassUID",
    "InstanceNumber", "NumberOfStudyRelatedInstances", "NumberOfStudyRelatedSeries",
    "NumberOfSeriesRelatedInstances", "NumberOfPatientRelatedStudies",
    "ScheduledProcedureStepSequence", "ScheduledStationAETitle",
    "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime",
    "ScheduledPerformingPhysicianName", "ScheduledProcedureStepDescription",
    "RequestedProcedureDescription", "RequestedProcedureID", "SpecificCharacterSet",
    "QueryRetrieveLevel", "BodyPartExamined", "InstitutionName", "StationName",
)


@functools.cache
def _all_keywords() -> tuple[list[str], list[str]]:
    """(lower-cased sorted keywords, the keywords in the same order)."""
    pairs = sorted((kw.lower(), kw) for kw in keyword_dict if kw)
    return [p[0] for p in pairs], [p[1] for p in pairs]


def complete_keyword(prefix: str) -> str | None:
    """The dictionary keyword completing ``prefix`` (case-insensitive), common ones first."""
    if not prefix:
        return None
    low = prefix.lower()
    for kw in COMMON_KEYWORDS:
        if kw.lower().startswith(low):
            return kw
    lowered, keywords = _all_keywords()
    i = bisect.bisect_left(lowered, low)
    if i < len(lowered) and lowered[i].startswith(low):
        return keywords[i]
    return None


class KeywordSuggester(Suggester):
    """Completes the keyword being typed in a key path, adding '=' (or '[0].' for a sequence)."""

    def __init__(self) -> None:
        super().__init__(use_cache=True, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if "=" in value:
            return None
        head, dot, segment = value.rpartition(".")
        if not segment or not segment[0].isalpha() or not segment.isalnum():
            return None
        keyword = complete_keyword(segment)
        if keyword is None:
            return None
        try:
            is_sequence = dictionary_VR(tag_for_keyword(keyword)) == "SQ"
        except KeyError:
            is_sequence = False
        return f"{head}{dot}{keyword}" + ("[0]." if is_sequence else "=")


def key_identity(text: str) -> tuple | None:
    """What a key addresses (tags and item indexes), or None when it does not parse."""
    try:
        parsed = parse_key(text)
    except KeyPathError:
        return None
    return tuple((int(p.tag), p.index) for p in parsed.path)


def is_level_key(text: str) -> bool:
    return key_identity(text) == ((QR_LEVEL_TAG, None),)


def key_value(text: str) -> str:
    return text.partition("=")[2]


def with_value(text: str, value: str) -> str:
    return f"{text.partition('=')[0].strip()}={value}"


def contains(value: str) -> str:
    """'Doe' -> '*Doe*' (the C-FIND wildcard for "contains"); idempotent."""
    core = value.strip("*")
    return f"*{core}*" if core else value


def key_label(text: str) -> Text:
    path, sep, value = text.partition("=")
    label = Text(visible(path.strip()), style="bold")
    if sep and value:
        label.append("=")
        label.append(visible(value))
    else:
        label.append("  (any)", style="dim")
    return label


class KeyList(HighlightInView):
    """The keys, one per line; Enter edits, Delete removes."""

    BINDINGS = [
        Binding("delete", "remove_key", "Remove key", id="keys.remove"),
        Binding("enter", "select", "Edit key", id="keys.edit"),
    ]

    class RemoveRequested(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def action_remove_key(self) -> None:
        if self.highlighted is None:
            return
        if not self.highlight_in_view():
            # never remove a key the user cannot see: show it first, Del again removes it
            self.scroll_to_highlight()
            self.notify("Del again removes the highlighted key", timeout=3)
            return
        self.post_message(self.RemoveRequested(self.highlighted))


class KeyEditor(Vertical):
    """Add, edit and remove keys; load a query file. Posts Changed on user edits."""

    class Changed(Message):
        """The user changed the keys (not a programmatic fill)."""

        def __init__(self, keys: list[str]) -> None:
            super().__init__()
            self.keys = keys

    class LevelRequested(Message):
        """A QueryRetrieveLevel key was entered or loaded: the level select owns it."""

        def __init__(self, level: str) -> None:
            super().__init__()
            self.level = level

    class DefaultsRequested(Message):
        pass

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._keys: list[str] = []
        self._editing: int | None = None
        # Puts keys read from a dataset (tag order) in reading order; set by the screen.
        self.key_order: Callable[[list[str]], list[str]] | None = None
        # Shows a key as the list should (patient data masked while hidden); set by the screen.
        self.shown_key: Callable[[str], str] = lambda key: key

    def compose(self) -> ComposeResult:
        yield Input(placeholder="Key, e.g. PatientName=DOE^* (→ completes)", id="key-input",
                    suggester=KeywordSuggester(), compact=True)
        yield Static(Text(HINT), id="key-message", classes="hint")
        yield KeyList(id="key-list", compact=True)
        with Horizontal(classes="button-row"):
            yield Button("Remove", id="key-remove", compact=True)
            yield Button("Contains *…*", id="key-contains", compact=True)
            yield Button("Defaults", id="key-defaults", compact=True)
        yield Input(placeholder="Query file (-f): path, Enter loads it", id="query-file",
                    compact=True)

    # -- state ------------------------------------------------------------

    @property
    def keys(self) -> list[str]:
        return list(self._keys)

    def set_keys(self, keys: Sequence[str]) -> None:
        """Replace the keys (programmatic: no Changed). QueryRetrieveLevel keys are left out."""
        self._keys = [k for k in keys if not is_level_key(k)]
        self._editing = None
        self._refresh_list()
        self._show_message(Text(HINT), "hint")

    def _refresh_list(self, highlight: int | None = None) -> None:
        key_list = self.query_one(KeyList)
        old = key_list.highlighted if highlight is None else highlight
        key_list.clear_options()
        key_list.add_options([Option(key_label(self.shown_key(k))) for k in self._keys])
        if self._keys:
            key_list.highlighted = min(old or 0, len(self._keys) - 1)

    def redraw(self) -> None:
        """Show the keys again (the way they are shown changed)."""
        self._refresh_list()

    def _changed(self) -> None:
        self.post_message(self.Changed(self.keys))

    def _show_message(self, text: Text | str, kind: str) -> None:
        message = self.query_one("#key-message", Static)
        message.update(Text(text) if isinstance(text, str) else text)
        message.set_classes(kind)

    # -- operations -------------------------------------------------------

    def upsert(self, text: str, at: int | None = None) -> str | None:
        """Add a key, or replace the one at ``at`` / the one with the same path.

        Returns the parser's error message, or None when the key was taken.
        """
        text = text.strip()
        try:
            parse_key(text)
        except KeyPathError as exc:
            return str(exc)
        if is_level_key(text):
            self.post_message(self.LevelRequested(key_value(text).strip()))
            return None
        ident = key_identity(text)
        same = next((i for i, k in enumerate(self._keys) if key_identity(k) == ident), None)
        if at is not None and at < len(self._keys):
            self._keys[at] = text
            if same is not None and same != at:
                del self._keys[same]
                at -= same < at
            index = at
        elif same is not None:
            self._keys[same] = text
            index = same
        else:
            self._keys.append(text)
            index = len(self._keys) - 1
        self._refresh_list(highlight=index)
        self._changed()
        return None

    def commit_typed(self) -> str | None:
        """Take a key typed but not entered yet (Run was pressed): the parser's error, or None."""
        key_input = self.query_one("#key-input", Input)
        text = key_input.value.strip()
        if not text:
            return None
        error = self.upsert(text, at=self._editing)
        if error:
            self._show_message(error, "error")
            return error
        self._editing = None
        key_input.value = ""
        return None

    def remove(self, index: int) -> None:
        if 0 <= index < len(self._keys):
            removed = self._keys.pop(index)
            self._refresh_list(highlight=max(0, index - 1) if index >= len(self._keys) else index)
            self._show_message(Text.assemble("Removed ", (visible(removed), "bold")), "hint")
            self._changed()

    def wrap_contains(self) -> None:
        """Wrap the value of the key being typed (or the highlighted key) in *…*."""
        key_input = self.query_one("#key-input", Input)
        if key_input.value.strip():
            if not key_value(key_input.value):
                self._show_message("Type a value after '=' first, then press Contains", "error")
                return
            key_input.value = with_value(key_input.value, contains(key_value(key_input.value)))
            key_input.focus()
            return
        index = self.query_one(KeyList).highlighted
        if index is None or index >= len(self._keys):
            self._show_message("Select a key (or type one) to wrap its value in *…*", "error")
            return
        key = self._keys[index]
        if not key_value(key):
            self._show_message("That key has no value to wrap: edit it first (Enter)", "error")
            return
        error = self.upsert(with_value(key, contains(key_value(key))), at=index)
        if error:
            self._show_message(error, "error")

    def load_file(self, path: str) -> str | None:
        """Replace the keys with a query file's (-f); returns the error message or None."""
        try:
            ds = load_query_file(path)
        except QueryFileError as exc:
            return str(exc)
        keys = dataset_to_keys(ds)
        for key in keys:
            if is_level_key(key):
                self.post_message(self.LevelRequested(key_value(key).strip()))
        if self.key_order is not None:
            keys = self.key_order([k for k in keys if not is_level_key(k)])
        self.set_keys(keys)
        self._show_message(f"Loaded {len(self._keys)} key(s) from {path}", "ok")
        self._changed()
        return None

    # -- events -----------------------------------------------------------

    @on(Input.Changed, "#key-input")
    def _validate_as_typed(self, event: Input.Changed) -> None:
        text = event.value.strip()
        if not text:
            self._show_message(Text(HINT), "hint")
            return
        try:
            parse_key(text)
        except KeyPathError as exc:
            self._show_message(str(exc), "error")
            return
        verb = "saves key" if self._editing is not None else "adds"
        ident = key_identity(text)
        if self._editing is None and any(key_identity(k) == ident for k in self._keys):
            verb = "replaces"
        self._show_message(Text.assemble("✓ Enter ", verb, " ", (visible(text.partition("=")[0]), "bold")), "ok")

    @on(Input.Submitted, "#key-input")
    def _submit_key(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if not text:
            return
        error = self.upsert(text, at=self._editing)
        if error:
            self._show_message(error, "error")
            self.app.bell()
            return
        self._editing = None
        event.input.value = ""
        self._show_message(Text.assemble("✓ ", (visible(text), "bold")), "ok")

    @on(Input.Submitted, "#query-file")
    def _submit_file(self, event: Input.Submitted) -> None:
        event.stop()
        path = event.value.strip()
        if not path:
            self._show_message("Type the path of a DICOM query file first", "error")
            return
        error = self.load_file(path)
        if error:
            self._show_message(error, "error")

    @on(OptionList.OptionSelected, "#key-list")
    def _edit_key(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self._editing = event.option_index
        key_input = self.query_one("#key-input", Input)
        key_input.value = self._keys[event.option_index]
        key_input.focus()
        self._show_message(f"Editing key {event.option_index + 1}: Enter saves, Esc leaves it", "ok")

    @on(KeyList.RemoveRequested)
    def _remove_key(self, event: KeyList.RemoveRequested) -> None:
        event.stop()
        self.remove(event.index)

    @on(Button.Pressed, "#key-remove")
    def _remove_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        index = self.query_one(KeyList).highlighted
        if index is not None:
            self.remove(index)

    @on(Button.Pressed, "#key-contains")
    def _contains_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.wrap_contains()

    @on(Button.Pressed, "#key-defaults")
    def _defaults_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.DefaultsRequested())

    def on_key(self, event) -> None:
        # Esc while editing a key leaves the key as it was.
        if event.key == "escape" and self.query_one("#key-input", Input).has_focus \
                and self._editing is not None:
            event.stop()
            event.prevent_default()
            self._editing = None
            self.query_one("#key-input", Input).value = ""
            self._show_message(Text(HINT), "hint")
