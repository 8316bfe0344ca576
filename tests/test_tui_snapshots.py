"""Snapshots of each screen at 80x24 and 120x40 (pytest-textual-snapshot; SVGs in snapshots/).

Deterministic: the demo SCP's seeded data, no elapsed time or rate in the
status line (app.show_timing = False), cursor blink off, every worker waited
for. The demo listens on a random free port: the Network tab shows it, so
that one field is masked to 11112 before the picture is taken.

Update with ``pytest tests/test_tui_snapshots.py --snapshot-update`` and look
at the SVGs before committing them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.widgets import Input

from findtui.app import make_app
from findtui.engine.keys import build_identifier
from findtui.engine.models import QueryModel
from findtui.engine.query import FindRequest, Network
from findtui.widgets.results_table import ResultsTable

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]
MASKED_PORT = "11112"


def demo_app(request: FindRequest | None = None, **demo_options):
    app = make_app(request, demo=True, demo_options={"seed": 1, "patients": 50, **demo_options})
    app.show_timing = False
    app.export_folder = Path("/data/exports")
    return app


async def settle(pilot) -> None:
    """Wait for workers and queued messages; stop every cursor blinking."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    for node in pilot.app.screen.query(Input):
        node.cursor_blink = False
    await pilot.pause()


async def run_query(pilot) -> None:
    screen = pilot.app.query_screen
    before = screen._run_id
    await pilot.press("f5")
    deadline = time.monotonic() + 30
    while screen._run_id == before or screen.running:
        assert time.monotonic() < deadline, "the query did not finish"
        await pilot.pause(0.05)
    await settle(pilot)


@pytest.mark.parametrize("size", SIZES)
def test_query_screen_before_a_run(snap_compare, size):
    assert snap_compare(demo_app(), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_query_screen_after_a_run(snap_compare, size):
    assert snap_compare(demo_app(), terminal_size=size, run_before=run_query)


@pytest.mark.parametrize("size", SIZES)
def test_network_tab(snap_compare, size):
    async def run_before(pilot):
        await pilot.app.workers.wait_for_complete()
        screen = pilot.app.query_screen
        screen.action_network()
        screen.query_one("#net-port", Input).value = MASKED_PORT
        await settle(pilot)

    assert snap_compare(demo_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_detail_screen(snap_compare, size):
    async def run_before(pilot):
        await run_query(pilot)
        await pilot.press("down", "down", "enter")  # Müller^Jürgen, ISO_IR 192
        await settle(pilot)

    assert snap_compare(demo_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_worklist_detail_with_a_sequence(snap_compare, size):
    request = FindRequest(network=Network("127.0.0.1", 104), model=QueryModel.WORKLIST,
                          identifier=build_identifier([
                              "PatientName=", "PatientID=",
                              "ScheduledProcedureStepSequence[0].Modality=",
                              "ScheduledProcedureStepSequence[0].ScheduledStationAETitle=",
                              "ScheduledProcedureStepSequence[0]"
                              ".ScheduledProcedureStepStartDate="]))

    async def run_before(pilot):
        await run_query(pilot)
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(demo_app(request), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_export_dialog(snap_compare, size):
    async def run_before(pilot):
        await run_query(pilot)
        await pilot.press("f6")
        await settle(pilot)

    assert snap_compare(demo_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_log_pane(snap_compare, size):
    async def run_before(pilot):
        await run_query(pilot)
        await pilot.press("f3")
        await settle(pilot)

    assert snap_compare(demo_app(patients=5), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_drill_down_to_series(snap_compare, size):
    async def run_before(pilot):
        await run_query(pilot)
        await pilot.press("down", "down", "d")
        screen = pilot.app.query_screen
        deadline = time.monotonic() + 30
        while not screen._stack or screen.running:
            assert time.monotonic() < deadline, "the drill-down did not finish"
            await pilot.pause(0.05)
        await settle(pilot)

    assert snap_compare(demo_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_bad_key_error(snap_compare, size):
    async def run_before(pilot):
        await pilot.click("#key-input")
        await pilot.press(*"PatientNme=DOE", "enter")
        await settle(pilot)

    assert snap_compare(demo_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_filtered_and_sorted_results(snap_compare, size):
    async def run_before(pilot):
        await run_query(pilot)
        await pilot.press("s")  # sort by the first column (PatientName)
        await pilot.press("slash", *"ct", "enter")
        await pilot.pause(0.3)
        table = pilot.app.query_screen.query_one(ResultsTable)
        assert table.filter_text == "ct"
        await settle(pilot)

    assert snap_compare(demo_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("theme", ["ansi-dark", "textual-light"])
@pytest.mark.parametrize("view", ["form", "results"])
def test_other_themes_stay_readable(snap_compare, theme, view):
    app = demo_app()

    async def run_before(pilot):
        pilot.app.theme = theme
        if view == "results":
            await run_query(pilot)
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_help_screen(snap_compare, size):
    async def run_before(pilot):
        await run_query(pilot)
        await pilot.press("f1")
        await settle(pilot)

    assert snap_compare(demo_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_no_matches(snap_compare, size):
    request = FindRequest(network=Network("127.0.0.1", 104), model=QueryModel.STUDY,
                          identifier=build_identifier([
                              "QueryRetrieveLevel=STUDY", "PatientName=NOBODY*",
                              "StudyDate=", "ModalitiesInStudy=CT"]))

    async def run_before(pilot):
        await run_query(pilot)
        await settle(pilot)

    assert snap_compare(demo_app(request), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_row_counter_and_cell_cursor(snap_compare, size):
    async def run_before(pilot):
        await run_query(pilot)
        await pilot.press("j", "j", "l", "l")  # third row, its third cell
        await settle(pilot)

    assert snap_compare(demo_app(), terminal_size=size, run_before=run_before)
