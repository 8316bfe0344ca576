"""Export and history match the screen, and the form asks before it loses work (issue 13):
export defaults to the rows shown in the order shown; the history groups drill-down
sub-queries under their query; Ctrl+S on a loaded profile offers to update it; the
Defaults button asks before dropping typed keys; the filter ignores accents."""

from __future__ import annotations

import csv
import json

import pytest
from textual.widgets import Button, Input, RadioSet

from findtui.app import make_app
from findtui.config.store import Store
from findtui.screens.dialogs import ConfirmScreen, NameScreen
from findtui.screens.export import ExportScreen
from findtui.screens.history import HistoryScreen
from findtui.widgets.key_editor import KeyEditor
from findtui.widgets.results_table import ResultsTable

from pilot import run_and_wait, sync, wait_for  # noqa: E402

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


def demo_app():
    app = make_app(demo=True, demo_options={"patients": 30, "seed": 7})
    app.show_timing = False
    return app


async def export_csv(pilot, folder, scope: str | None = None) -> list[list[str]]:
    app = pilot.app
    await pilot.press("f6")
    await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen), what="the dialog")
    dialog = app.screen
    dialog.query_one("#export-folder", Input).value = str(folder)
    dialog.query_one("#export-kind").query("RadioButton")[1].value = True  # CSV
    if scope is not None:
        next(b for b in dialog.query_one("#export-scope").query("RadioButton")
             if b.name == scope).value = True
    await pilot.pause()
    dialog.query_one("#export-file", Input).value = f"{scope or 'default'}.csv"
    dialog.query_one("#export-folder", Input).focus()
    await pilot.press("enter")
    target = folder / f"{scope or 'default'}.csv"
    await wait_for(pilot, target.exists, what="the CSV")
    await pilot.app.workers.wait_for_complete()
    with open(target, newline="", encoding="utf-8") as fp:
        return list(csv.reader(fp))


@pytest.mark.parametrize("size", SIZES)
@sync
async def test_export_defaults_to_the_rows_shown_in_the_order_shown(size, tmp_path):
    app = demo_app()
    async with app.run_test(size=size) as pilot:
        screen = await run_and_wait(pilot)
        table = screen.query_one(ResultsTable)
        total = table.total_count
        await pilot.press("l", "S")  # by PatientID, descending
        await pilot.press("slash", *"ct", "enter")
        await wait_for(pilot, lambda: table.filter_text == "ct", what="the filter")
        await pilot.pause()
        shown = [table.get_row(i) for i in table.displayed_source_indices()]
        assert 1 < len(shown) < total
        await pilot.press("f6")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen), what="the dialog")
        pressed = app.screen.query_one("#export-scope", RadioSet).pressed_button
        assert pressed.name == "shown" and f"{len(shown)} shown" in str(pressed.label)
        await pilot.press("escape")
        await pilot.pause()
        rows = await export_csv(pilot, tmp_path)
        uid = rows[0].index("StudyInstanceUID")
        column = table.columns.index("StudyInstanceUID")
        assert [r[uid] for r in rows[1:]] == [row[column] for row in shown]
        # the other choice: every response, as received
        rows = await export_csv(pilot, tmp_path, "all")
        assert [r[uid] for r in rows[1:]] == [table.get_row(i)[column] for i in range(total)]


@sync
async def test_history_groups_drill_down_sub_queries_under_their_query():
    app = demo_app()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await run_and_wait(pilot)
        depth = len(screen._stack)
        await pilot.press("d")
        await wait_for(pilot, lambda: len(screen._stack) > depth and not screen.running
                       and screen.current_level.state != "running", what="the drill-down")
        await pilot.app.workers.wait_for_complete()
        await pilot.press("backspace")
        await run_and_wait(pilot)  # the study query again: a group of its own
        entries = Store().history.entries()
        assert [e.drill for e in entries] == [0, 1, 0]
        lines = Store().history.path.read_text().splitlines()
        assert json.loads(lines[1])["drill"] == 1 and "drill" not in json.loads(lines[0])
        await pilot.press("f8")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen), what="history")
        await pilot.pause()
        shown = app.screen.entries
        assert [e.drill for e in shown] == [0, 0, 1]  # newest query first, its sub-query after
        assert shown[1].time <= shown[2].time
        keys = [str(app.screen.query_one("DataTable").get_row_at(i)[-1])
                for i in range(len(shown))]
        assert keys[2].startswith("↳ SERIES: StudyInstanceUID=")
        assert not keys[0].startswith("↳")


@sync
async def test_ctrl_s_on_a_loaded_query_profile_offers_to_update_it():
    from findtui.screens.profiles import load_query

    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.query_screen
        editor = screen.query_one(KeyEditor)
        editor.set_keys(["PatientName=DOE*", "PatientID="])
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, NameScreen), what="save as")
        app.screen.query_one("#name-input", Input).value = "doe"
        app.screen.query_one("#name-input", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        store = Store()
        load_query(screen, store.get_query("doe"), None)
        await pilot.pause()
        editor.upsert("StudyDate=20200101-")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, NameScreen), what="save as")
        dialog = app.screen
        await pilot.pause()
        assert dialog.query_one("#name-input", Input).value == "doe"
        assert "Update query profile 'doe'" in str(dialog.query_one("#name-dialog").border_title)
        assert dialog.query_one("#name-kind", RadioSet).pressed_button.name == "query"
        dialog.query_one("#name-input", Input).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        assert "Update it?" in str(app.screen.query_one("#confirm-dialog").border_title)
        await pilot.press("y")
        await pilot.pause()
        assert "StudyDate=20200101-" in store.get_query("doe").keys


@sync
async def test_defaults_asks_before_dropping_typed_keys():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.query_screen
        editor = screen.query_one(KeyEditor)
        defaults = editor.keys
        editor.upsert("StationName=CT1")
        typed = editor.keys
        screen.query_one("#key-defaults", Button).press()
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("n")
        await pilot.pause()
        assert editor.keys == typed
        screen.query_one("#key-defaults", Button).press()
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("y")
        await pilot.pause()
        assert editor.keys == defaults
        screen.query_one("#key-defaults", Button).press()  # nothing to lose: no question
        await pilot.pause()
        assert app.screen is screen and editor.keys == defaults


@sync
async def test_the_filter_ignores_case_and_accents():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await run_and_wait(pilot)
        table = screen.query_one(ResultsTable)
        muellers = [i for i in range(table.total_count) if "Müller" in table.get_row(i)[0]]
        assert muellers
        await pilot.press("slash", *"muller", "enter")
        await wait_for(pilot, lambda: table.filter_text == "muller", what="the filter")
        await pilot.pause()
        assert table.displayed_source_indices() == muellers
        await pilot.press("slash")
        screen.query_one("#filter-input", Input).value = "MÜLLER, JÜRGEN"  # as shown, any case
        await pilot.press("enter")
        await pilot.pause()
        assert table.displayed_source_indices() == muellers


@sync
async def test_helpers_offer_only_keys_valid_at_the_level():
    """A patient has no date or modality of its own: at the PATIENT level the date and
    modality helpers are off (and say why); at STUDY and below, and for the worklist,
    they are on again."""
    from textual.widgets import Select

    from findtui.engine.models import QueryModel
    from findtui.widgets.model_form import ModelForm
    from findtui.widgets.query_helpers import PATIENT_LEVEL_NOTE

    app = make_app(demo=True, no_history=True)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.query_screen
        date, modalities = screen.query_one("#date-preset", Select), screen.query_one("#modalities")
        note = screen.query_one("#helpers-note")
        assert not date.disabled and not modalities.disabled and not note.display
        for model, level, on in ((QueryModel.PATIENT, "PATIENT", False),
                                 (QueryModel.PATIENT, "SERIES", True),
                                 (QueryModel.PSONLY, "PATIENT", False),
                                 (QueryModel.WORKLIST, "", True),
                                 (QueryModel.STUDY, "STUDY", True)):
            screen.query_one(ModelForm).fill(model, level or None)
            screen._model_changed(ModelForm.Changed(model, level))
            await pilot.pause()
            assert date.disabled is (not on) and modalities.disabled is (not on), (model, level)
            assert modalities.display is on
            assert note.display is (not on)
            if not on:
                assert PATIENT_LEVEL_NOTE in str(note.render())
