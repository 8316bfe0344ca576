"""Retrieve from the TUI against the demo SCP (which serves C-GET and C-MOVE of its images):
Space marks rows (a count in the status line), R asks how and queues a job per row, the
queue screen shows each job's progress and state, jobs can be cancelled and retried, and
the files on disk are the instances the demo holds for those rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from textual.widgets import DataTable, Input, RadioButton, RadioSet

from findtui.app import make_app
from findtui.demo.retrieve import select
from findtui.screens.retrieve import RetrieveDialog, RetrieveScreen
from findtui.widgets.results_table import ResultsTable
from findtui.widgets.status_line import StatusLine

import peers
from pilot import run_and_wait, sync, wait_for  # noqa: E402

SIZE = (80, 24)


def uids_on_disk(folder: Path) -> set[str]:
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID)
            for p in folder.rglob("*.dcm")}


def expected_uids(app, identifiers) -> set[str]:
    return {c[3][0] for ident in identifiers for c in select(app.demo.data, ident)}


async def fill_dialog(pilot, folder: Path, method: str = "get", port: int | None = None) -> None:
    dialog = pilot.app.screen
    assert isinstance(dialog, RetrieveDialog)
    if method == "move":
        radios = dialog.query_one("#retrieve-method", RadioSet)
        radios.query(RadioButton).last().value = True  # C-MOVE
        await pilot.pause()
        dialog.query_one("#retrieve-port", Input).value = str(port)
    dialog.query_one("#retrieve-folder", Input).value = str(folder)
    await pilot.click("#retrieve-ok")
    await pilot.pause()


@pytest.mark.parametrize("method", ["get", "move"])
@sync
async def test_mark_rows_and_retrieve_them(tmp_path, method):
    port = peers.free_port()
    app = make_app(demo=True, demo_options={"patients": 6, "seed": 3, "move_port": port},
                   no_history=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.query_screen
        await run_and_wait(pilot)
        table = screen.query_one(ResultsTable)
        table.focus()
        await pilot.press("space", "space")  # the first two rows
        await pilot.pause()
        assert table.marked == [0, 1]
        status = screen.query_one(StatusLine)
        assert "2 marked (R retrieves)" in str(status.render())
        identifiers = [screen._level.responses[i].identifier for i in table.marked]
        await pilot.press("R")
        await pilot.pause()
        assert isinstance(app.screen, RetrieveDialog)
        assert "Retrieve 2 studies" in str(app.screen.query_one("#retrieve-dialog").border_title)
        await fill_dialog(pilot, tmp_path, method, port)
        assert isinstance(app.screen, RetrieveScreen)
        queue = app.retrieve_queue
        await wait_for(pilot, lambda: [t.state for t in queue.tasks] == ["done", "done"],
                       what="both jobs to finish")
        assert uids_on_disk(tmp_path) == expected_uids(app, identifiers)
        assert table.marked == []  # queued: the marks are cleared
        await pilot.pause(0.3)
        rows = app.screen.query_one(DataTable)
        assert rows.row_count == 2
        first = " ".join(str(cell) for cell in rows.get_row_at(0))
        assert "✓ done" in first and "[############]" in first


@sync
async def test_cancel_a_queued_job_then_retry_it(tmp_path):
    app = make_app(demo=True, demo_options={"patients": 6, "seed": 3}, no_history=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.query_screen
        await run_and_wait(pilot)
        table = screen.query_one(ResultsTable)
        table.focus()
        await pilot.press("space", "space", "space")
        identifiers = [screen._level.responses[i].identifier for i in table.marked]
        queue = app.retrieve_queue
        first_run = queue.run_next
        gate = []

        def held():  # the first job waits until the test has cancelled the third
            while not gate:
                import time
                time.sleep(0.01)
            return first_run()

        queue.run_next = held
        await pilot.press("R")
        await pilot.pause()
        await fill_dialog(pilot, tmp_path)
        queue_screen = app.screen
        assert isinstance(queue_screen, RetrieveScreen)
        queue_screen.query_one(DataTable).move_cursor(row=2)
        await pilot.press("c")
        assert queue.tasks[2].state == "cancelled"
        gate.append(True)
        await wait_for(pilot, lambda: [t.state for t in queue.tasks] == [
            "done", "done", "cancelled"], what="two jobs done, one cancelled")
        await pilot.press("r")  # retry the cancelled one
        await wait_for(pilot, lambda: queue.tasks[2].state == "done", what="the retried job")
        assert uids_on_disk(tmp_path) == expected_uids(app, identifiers)
        await pilot.press("escape")
        assert app.screen is screen


@sync
async def test_a_bad_layout_is_refused_in_the_dialog(tmp_path):
    app = make_app(demo=True, demo_options={"patients": 3, "seed": 3}, no_history=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.query_screen
        await run_and_wait(pilot)
        screen.query_one(ResultsTable).focus()
        await pilot.press("R")
        await pilot.pause()
        dialog = app.screen
        dialog.query_one("#retrieve-layout", Input).value = "{PatientID}.dcm"
        await pilot.click("#retrieve-ok")
        await pilot.pause()
        assert app.screen is dialog
        assert "must contain {SOPInstanceUID}" in str(dialog.query_one("#retrieve-error").render())
        assert not app.retrieve_queue.tasks


def test_ui_gate_holds_the_query_thread_while_the_ui_draws():
    """UiGate: the query thread's wait() returns at once when the UI is idle, and only
    after the UI leaves the gate while it draws (streaming then never takes the GIL from a
    frame being drawn)."""
    import threading

    from findtui.screens.query_logic import UiGate

    gate = UiGate()
    gate.wait()  # idle: returns at once
    order = []
    inside = threading.Event()

    def query_thread():
        inside.wait()
        gate.wait(limit=30)
        order.append("query went on")

    worker = threading.Thread(target=query_thread)
    worker.start()
    with gate:
        inside.set()
        threading.Event().wait(0.05)
        order.append("ui drew")
    worker.join(10)
    assert order == ["ui drew", "query went on"]


def test_streamed_rows_are_frozen_out_of_the_collector_and_settled_on_the_next_query(
        monkeypatch):
    import gc

    import findtui.screens.query as query_module

    settled = []
    real = query_module._settle_heap
    monkeypatch.setattr(query_module, "_settle_heap", lambda: (settled.append(1), real()))

    @sync
    async def scenario():
        app = make_app(demo=True, demo_options={"patients": 6, "seed": 3}, no_history=True)
        async with app.run_test(size=SIZE) as pilot:
            screen = app.query_screen
            gc.unfreeze()
            await run_and_wait(pilot)
            assert screen._froze and gc.get_freeze_count() > 0 and settled == []
            await run_and_wait(pilot)  # settles the last stream's heap first, then freezes
            assert settled == [1] and screen._froze

    scenario()
