"""Keeping the user's place (issue 13): each drill-down level has its own sort, filter,
cursor and scroll, Backspace puts them back, and F5 on the same query keeps the sort
and the cursor's row. Against the demo SCP, at 80x24 and 120x40."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from findtui.app import make_app
from findtui.widgets.results_table import ResultsTable
from findtui.widgets.status_line import StatusLine

from pilot import run_and_wait, sync, wait_for  # noqa: E402

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


def demo_app():
    app = make_app(demo=True, demo_options={"patients": 30, "seed": 7})
    app.show_timing = False
    return app


async def drilled(pilot, screen) -> None:
    depth = len(screen._stack)
    await pilot.press("d")
    await wait_for(pilot, lambda: len(screen._stack) > depth and not screen.running
                   and screen._level.state != "running", what="the drill-down")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
@sync
async def test_each_level_keeps_its_sort_filter_cursor_and_scroll(size):
    app = demo_app()
    async with app.run_test(size=size) as pilot:
        screen = await run_and_wait(pilot)
        table = screen.query_one(ResultsTable)
        total = table.total_count
        await pilot.press("S")  # sorted by the first column, descending
        await pilot.press("slash", *"ct", "enter")
        await wait_for(pilot, lambda: table.filter_text == "ct", what="the filter")
        await pilot.pause()
        shown = table.displayed_count
        assert 2 < shown < total
        await pilot.press("j", "j")
        before = table.view_state()
        assert before.cursor_row == 2 and table.sort_reverse
        cells = table.get_row(table.cursor_source_index)

        await drilled(pilot, screen)
        # the child level: every row it got, unsorted, no filter (bar hidden and empty)
        assert table.filter_text == "" and table.sort_column is None
        assert table.displayed_count == table.total_count > 0
        assert screen.query_one("#filter-input", Input).value == ""
        assert not screen.query_one("#filter-bar").has_class("-visible")
        assert "shown of" not in str(screen.query_one(StatusLine).render())
        await pilot.press("s", "G")  # sort and move here: the parent must not care
        child = table.view_state()

        await pilot.press("backspace")
        await pilot.pause()
        assert table.filter_text == "ct" and table.displayed_count == shown
        assert table.sort_column == 0 and table.sort_reverse
        assert table.cursor_row == 2 and table.get_row(table.cursor_source_index) == cells
        assert table.view_state().screen_line == before.screen_line
        assert screen.query_one("#filter-input", Input).value == "ct"
        assert screen.query_one("#filter-bar").has_class("-visible")
        assert f"{shown} shown of {total}" in str(screen.query_one(StatusLine).render())

        # the same child again: a fresh level (its own place was for that visit only)
        await drilled(pilot, screen)
        assert table.sort_column is None and table.filter_text == ""
        assert child.sort_column is not None


@sync
async def test_backspace_restores_the_scroll_of_a_long_list():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await run_and_wait(pilot)
        table = screen.query_one(ResultsTable)
        await pilot.press("pagedown", "pagedown", "j")
        row, top = table.cursor_row, table.scroll_y
        assert top > 0
        await drilled(pilot, screen)
        assert table.scroll_y == 0 and table.cursor_row == 0
        await pilot.press("backspace")
        await pilot.pause()
        assert table.cursor_row == row and table.scroll_y == top


@pytest.mark.parametrize("size", SIZES)
@sync
async def test_f5_on_the_same_query_keeps_the_sort_and_the_cursor_row(size):
    app = demo_app()
    async with app.run_test(size=size) as pilot:
        screen = await run_and_wait(pilot)
        table = screen.query_one(ResultsTable)
        await pilot.press("l", "s")  # sorted by the second column (PatientID)
        await pilot.press("j", "j", "j", "j", "j")
        sort, cells, line = table.sort_column, table.get_row(table.cursor_source_index), \
            table.view_state().screen_line
        assert sort == 1
        await run_and_wait(pilot)
        assert table.sort_column == sort and not table.sort_reverse
        assert table.get_row(table.cursor_source_index) == cells
        assert table.cursor_row == 5 and table.view_state().screen_line == line
        # a key moved while the rows come in wins over the restore
        before = screen._run_id
        await pilot.press("f5")
        await pilot.press("g")
        await wait_for(pilot, lambda: screen._run_id > before and not screen.running,
                       what="the query")
        await pilot.pause()
        assert table.cursor_row == 0 and table.sort_column == sort
