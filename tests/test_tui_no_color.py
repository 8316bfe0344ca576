"""State visible without colour (issue 13): under NO_COLOR=1 checkboxes read [x]/[ ],
radio buttons (•)/( ), the modality list [x]/[ ]; the highlighted key of the key list
is always on screen, and Del never removes a key scrolled out of view. Snapshots at
80x24 and 120x40 with NO_COLOR=1 (textual reads it when the app is made)."""

from __future__ import annotations

import pytest
from textual.widgets import Checkbox, RadioButton

from findtui.app import make_app
from findtui.widgets.key_editor import KeyEditor, KeyList
from findtui.widgets.query_helpers import QueryHelpers
from findtui.widgets.toggles import SelectionList

from pilot import run_and_wait, sync  # noqa: E402
from test_tui_snapshots import MASKED_PORT, SIZES, demo_app, run_query, settle  # noqa: E402

EXTRA_KEYS = ["PatientSex=", "StudyTime=", "StudyID=", "ReferringPhysicianName=",
              "InstitutionName=", "StationName=", "BodyPartExamined=",
              "NumberOfStudyRelatedSeries="]


@pytest.fixture
def no_color(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")


def plain(widget) -> str:
    return str(widget.render())


@sync
async def test_toggles_show_their_state_in_the_glyph(no_color):
    app = demo_app()
    assert app.no_color
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await run_and_wait(pilot)
        await pilot.press("f6")
        await pilot.pause()
        radios = list(app.screen.query(RadioButton))
        assert radios and all(plain(r).startswith("(•)" if r.value else "( )") for r in radios)
        assert sum(r.value for r in radios) >= 2  # one per set
        box = app.screen.query(Checkbox).first()
        assert plain(box).startswith("[ ]")
        box.value = True
        assert plain(box).startswith("[x]")
        await pilot.press("escape")
        await pilot.pause()
        # the modality list: a selected modality reads [x]
        screen.query_one(QueryHelpers).set_modalities(["MR"])
        modalities = screen.query_one(SelectionList)
        lines = [modalities.render_line(y).text for y in range(3)]
        assert lines[0].startswith("[ ] CT") and lines[1].startswith("[x] MR")


@pytest.mark.parametrize("size", SIZES)
@sync
async def test_tab_into_the_key_list_shows_the_highlighted_key(size):
    app = demo_app()
    async with app.run_test(size=size) as pilot:
        screen = app.query_screen
        editor = screen.query_one(KeyEditor)
        for key in EXTRA_KEYS:
            editor.upsert(key)
        key_list = screen.query_one(KeyList)
        await pilot.pause()
        last = key_list.option_count - 1
        assert key_list.highlighted == last
        key_list.scroll_to(y=0, animate=False, immediate=True)  # as a resize or a refill may leave it
        await pilot.pause()
        assert not (lambda k: round(k.scroll_y) <= k.highlighted < round(k.scroll_y) + k.scrollable_content_region.height)(key_list) or size == (120, 40)
        screen.query_one("#key-input").focus()
        await pilot.press("tab")
        await pilot.pause()
        assert app.focused is key_list and (lambda k: round(k.scroll_y) <= k.highlighted < round(k.scroll_y) + k.scrollable_content_region.height)(key_list)


@sync
async def test_del_never_removes_a_key_out_of_view():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.query_screen
        editor = screen.query_one(KeyEditor)
        for key in EXTRA_KEYS:
            editor.upsert(key)
        key_list = screen.query_one(KeyList)
        key_list.focus()
        await pilot.pause()
        keys = editor.keys
        key_list.scroll_to(y=0, animate=False, immediate=True)
        await pilot.pause()
        assert not (lambda k: round(k.scroll_y) <= k.highlighted < round(k.scroll_y) + k.scrollable_content_region.height)(key_list)
        await pilot.press("delete")
        await pilot.pause()
        assert editor.keys == keys and (lambda k: round(k.scroll_y) <= k.highlighted < round(k.scroll_y) + k.scrollable_content_region.height)(key_list)
        await pilot.press("delete")  # now it is on screen: removed
        await pilot.pause()
        assert editor.keys == keys[:-1]


@pytest.mark.parametrize("size", SIZES)
def test_no_color_form(snap_compare, size, no_color):
    async def run_before(pilot):
        screen = pilot.app.query_screen
        screen.query_one(QueryHelpers).set_modalities(["CT"])
        await settle(pilot)

    assert snap_compare(demo_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_no_color_export_dialog(snap_compare, size, no_color):
    async def run_before(pilot):
        await run_query(pilot)
        await pilot.press("f6")
        await settle(pilot)

    assert snap_compare(demo_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_no_color_network_tab(snap_compare, size, no_color):
    async def run_before(pilot):
        await pilot.app.workers.wait_for_complete()
        screen = pilot.app.query_screen
        screen.action_network()
        screen.query_one("#net-port").value = MASKED_PORT
        await settle(pilot)

    assert snap_compare(demo_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_no_color_results(snap_compare, size, no_color):
    assert snap_compare(demo_app(), terminal_size=size, run_before=run_query)
