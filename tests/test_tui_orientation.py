"""Orientation and discoverability in the results (issue 13), at 80x24 and 120x40 against
the demo SCP: the row counter in the status line, F1/? listing every binding, vi-like
movement, y/Y copying (OSC 52), "No matches for …", and a footer that fits."""

from __future__ import annotations

import pytest
from textual.widgets import Footer, Input, Static
from textual.widgets._footer import FooterKey

from findtui.app import FindtuiApp, make_app
from findtui.engine.keys import build_identifier
from findtui.engine.models import QueryModel
from findtui.engine.query import FindRequest, Network
from findtui.screens.help import HelpScreen, key_label
from findtui.screens.query import QueryResults, QueryScreen
from findtui.widgets.key_editor import KeyEditor
from findtui.widgets.results_table import ResultsTable
from findtui.widgets.status_line import StatusLine

from pilot import run_and_wait, sync, wait_for  # noqa: E402

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]



def status_text(app) -> str:
    return str(app.query_screen.query_one(StatusLine).render())


def demo_app(request: FindRequest | None = None):
    app = make_app(request, demo=True, demo_options={"patients": 30, "seed": 7})
    app.show_timing = False
    return app


@pytest.mark.parametrize("size", SIZES)
@sync
async def test_row_counter_follows_the_cursor_and_the_filter(size):
    app = demo_app()
    async with app.run_test(size=size) as pilot:
        screen = await run_and_wait(pilot)
        table = screen.query_one(ResultsTable)
        total = table.total_count
        assert f"row 1/{total}" in status_text(app)
        await pilot.press("j", "j", "j")
        assert f"row 4/{total}" in status_text(app)
        await pilot.press("k")
        assert f"row 3/{total}" in status_text(app)
        await pilot.press("G")
        assert f"row {total}/{total}" in status_text(app)
        await pilot.press("g")
        assert f"row 1/{total}" in status_text(app) and table.cursor_row == 0
        await pilot.press("pagedown")
        body = table.scrollable_content_region.height - 1  # less the header
        assert table.cursor_row == body
        assert f"row {body + 1}/{total}" in status_text(app)
        await pilot.press("pageup")
        assert table.cursor_row == 0
        # filtered: the position among the rows shown, and how many of how many
        descriptions = [table.get_row(i)[4] for i in range(total)]
        shown = sum("thyroid" in d.lower() for d in descriptions)
        assert 0 < shown < total
        await pilot.press("slash", *"thyroid", "enter")
        await wait_for(pilot, lambda: table.filter_text == "thyroid", what="the filter")
        await pilot.pause()
        await pilot.press("j")
        status = status_text(app)
        assert f"row 2/{shown}" in status and f"{shown} shown of {total}" in status


@pytest.mark.parametrize("size", SIZES)
@sync
async def test_f1_and_question_mark_list_every_binding_of_the_screen(size):
    app = demo_app()
    async with app.run_test(size=size) as pilot:
        await run_and_wait(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#help-text", Static).render())
        # every binding of the query screen, the results table and the app, with its keys
        for owner in (QueryScreen, QueryResults, ResultsTable, KeyEditor, FindtuiApp):
            for binding in owner.BINDINGS:
                assert binding.description in text, (owner.__name__, binding)
                for key in binding.key.split(","):
                    assert key_label(key) in text, (owner.__name__, key)
        assert "Results table (focused)" in text.splitlines()[0]  # what works now, first
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, QueryScreen)
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("f1")  # F1 again closes it
        await pilot.pause()
        assert isinstance(app.screen, QueryScreen)


@sync
async def test_question_mark_in_a_text_field_is_typed_not_help():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        key_input = app.query_screen.query_one("#key-input", Input)
        key_input.focus()
        await pilot.press("P", "question_mark")
        await pilot.pause()
        assert key_input.value == "P?"
        assert isinstance(app.screen, QueryScreen)


@sync
async def test_y_copies_the_cell_and_Y_the_row():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await run_and_wait(pilot)
        table = screen.query_one(ResultsTable)
        await pilot.press("j", "l")  # second row, second column
        row = table.get_row(table.cursor_source_index)
        assert table.cursor_column == 1
        await pilot.press("y")
        assert app.clipboard == row[1] and row[1].startswith("PAT")
        await pilot.press("Y")  # as shown: readable dates and names
        assert app.clipboard == "\t".join(table.shown_cell(row, c) for c in range(len(row)))
        assert "-" in app.clipboard.split("\t")[2]
        await pilot.press("h", "h", "y")  # clamped at the first column
        assert app.clipboard == table.shown_cell(row, 0) and ", " in app.clipboard
        # the far right column scrolls into view
        for _ in table.columns:
            await pilot.press("l")
        assert table.cursor_column == len(table.columns) - 1
        assert table.scroll_x + table.scrollable_content_region.width >= \
            sum(w + 2 for w in table.column_widths)


@pytest.mark.parametrize("size", SIZES)
@sync
async def test_an_empty_result_says_no_matches_for_the_criteria(size):
    request = FindRequest(network=Network("127.0.0.1", 104), model=QueryModel.STUDY,
                          identifier=build_identifier([
                              "QueryRetrieveLevel=STUDY", "PatientName=NOBODY*", "PatientID=",
                              "ModalitiesInStudy=CT"]))
    app = demo_app(request)
    async with app.run_test(size=size) as pilot:
        screen = await run_and_wait(pilot)
        table = screen.query_one(ResultsTable)
        assert table.total_count == 0
        first_line = table.render_line(1).text
        assert "No matches for PatientName=NOBODY*, ModalitiesInStudy=CT at STUDY level" \
            in first_line
        assert "0 matches" in status_text(app)


@sync
async def test_a_filter_that_hides_every_row_says_so():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await run_and_wait(pilot)
        table = screen.query_one(ResultsTable)
        await pilot.press("slash", *"zzzz", "enter")
        await wait_for(pilot, lambda: table.filter_text == "zzzz", what="the filter")
        await pilot.pause()
        assert table.displayed_count == 0
        assert "No row contains 'zzzz'" in table.render_line(1).text
        assert f"0 shown of {table.total_count}" in status_text(app)


def assert_footer_fits(app) -> None:
    footer = app.screen.query_one(Footer)
    keys = [k for k in footer.query(FooterKey) if "-command-palette" not in k.classes]
    palette = [k for k in footer.query(FooterKey) if "-command-palette" in k.classes]
    assert keys, "no key in the footer"
    right_edge = palette[0].region.x if palette else footer.region.right
    for key in keys:
        label = f"{key.key_display} {key.description}"
        assert key.region.width >= len(label), f"{label!r} is cut"
        assert key.region.right <= right_edge, f"{label!r} runs under the palette key"
    assert "Keys" in [k.description for k in keys]  # where the other keys are


@sync
async def test_the_footer_never_cuts_a_label_at_80_columns():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert_footer_fits(app)  # the form
        await run_and_wait(pilot)
        assert_footer_fits(app)  # the results
        await pilot.press("f2", "tab")
        await pilot.pause()
        assert_footer_fits(app)  # the key list
        await pilot.press("escape", "escape")
        app.query_screen.query_one(ResultsTable).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert_footer_fits(app)  # the detail screen
        await pilot.press("escape", "f7")
        await pilot.pause()
        assert_footer_fits(app)  # profiles
        await pilot.press("escape", "f8")
        await pilot.pause()
        assert_footer_fits(app)  # history
