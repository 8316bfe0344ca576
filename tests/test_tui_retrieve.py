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


# --- a node profile's retrieve settings, and the history ---------------------------------


@sync
async def test_the_dialog_comes_prefilled_from_the_node_profile_and_the_job_is_recorded(
        tmp_path):
    """The node profile in use gives the dialog's method, folder, layout, move destination
    and store port; the job retrieves with them and its line in the history says how it went
    (also on the history screen)."""
    from findtui.config import NodeProfile, Store
    from findtui.demo import DemoSCP
    from findtui.engine.hierarchy import default_keys
    from findtui.engine.models import QueryModel
    from findtui.engine.query import FindRequest
    from findtui.engine.retrieve import RetrieveOptions
    from findtui.screens.history import HistoryScreen
    from findtui.screens.query_logic import build_request_identifier

    port = peers.free_port()
    layout = "{PatientID}/{SOPInstanceUID}.dcm"
    with DemoSCP(patients=6, seed=3, move_port=port) as demo:
        node = NodeProfile.of("demo", demo.address, demo.port, called_aet=demo.ae_title,
                              retrieve=RetrieveOptions(
                                  retrieve="move", move_destination="ELSEWHERE",
                                  store_port=port, retrieve_folder=str(tmp_path / "node"),
                                  layout=layout))
        Store().save(node)
        request = FindRequest(network=node.network, model=QueryModel.STUDY,
                              identifier=build_request_identifier(
                                  QueryModel.STUDY, "STUDY",
                                  default_keys(QueryModel.STUDY, "STUDY")))
        app = make_app(request, profiles=("demo", None))  # findtui --profile demo -S ...
        async with app.run_test(size=SIZE) as pilot:
            screen = await run_and_wait(pilot)
            table = screen.query_one(ResultsTable)
            table.focus()
            identifier = screen._level.responses[0].identifier
            await pilot.press("R")
            await pilot.pause()
            dialog = app.screen
            assert isinstance(dialog, RetrieveDialog)
            assert dialog.query_one("#retrieve-method", RadioSet).pressed_button.name == "move"
            values = {wid: dialog.query_one(f"#{wid}", Input).value for wid in (
                "retrieve-folder", "retrieve-layout", "retrieve-dest", "retrieve-port")}
            assert values == {"retrieve-folder": str(tmp_path / "node"),
                              "retrieve-layout": layout, "retrieve-dest": "ELSEWHERE",
                              "retrieve-port": str(port)}
            # to ourselves this time (the demo sends any destination to the store port)
            dialog.query_one("#retrieve-dest", Input).value = ""
            await pilot.click("#retrieve-ok")
            queue = app.retrieve_queue
            await wait_for(pilot, lambda: [t.state for t in queue.tasks] == ["done"],
                           what="the job to finish")
            expected = {c[3][0] for c in select(demo.data, identifier)}
            files = sorted((tmp_path / "node").rglob("*.dcm"))
            assert {p.stem for p in files} == expected
            assert all(p.parent.parent == tmp_path / "node" for p in files)  # the layout

            history = Store().history
            await wait_for(pilot, lambda: any(e.retrieve for e in history.entries()),
                           what="the retrieve in the history")
            entry = history.entries()[-1]
            assert (entry.source, entry.node, entry.results) == ("tui", "demo", 1)
            assert f"StudyInstanceUID={identifier.StudyInstanceUID}" in entry.keys
            r = entry.retrieve
            assert (r.method, r.outcome, r.written, r.folder, r.layout, r.store_port) == (
                "move", "success", len(expected), str(tmp_path / "node"), layout, port)

            # the next R with this node: the settings last used with it
            app.pop_screen()
            await pilot.press("R")
            await pilot.pause()
            assert app.screen.query_one("#retrieve-dest", Input).value == ""
            await pilot.press("escape")
            await pilot.press("f8")
            await pilot.pause()
            assert isinstance(app.screen, HistoryScreen)
            row = " ".join(str(c) for c in app.screen.query_one(DataTable).get_row_at(0))
            assert f"C-MOVE {len(expected)}" in row
            bottom = str(app.screen.query_one("#history-keys").render())
            assert f"C-MOVE success: {len(expected)} written" in bottom


@sync
async def test_the_profile_editor_keeps_a_nodes_retrieve_settings(tmp_path):
    from textual.widgets import Select

    from findtui.config import Store
    from findtui.engine.retrieve import RetrieveOptions
    from findtui.screens.profiles import ProfilesScreen

    app = make_app(no_history=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("f7")
        editor = app.screen
        assert isinstance(editor, ProfilesScreen)
        await pilot.press("n")
        await pilot.pause()
        fields = {"#pf-name": "pacs", "#net-address": "10.0.0.5", "#net-port": "104",
                  "#pf-move-dest": "ARCHIVE", "#pf-store-port": "0",
                  "#pf-retrieve-folder": str(tmp_path), "#pf-layout": "{SOPInstanceUID}.dcm"}
        for selector, value in fields.items():
            editor.query_one(selector, Input).value = value
        editor.query_one("#pf-retrieve-method", Select).value = "move"
        await pilot.press("ctrl+s")
        await pilot.pause()
        error = str(editor.query_one("#profile-error").render())
        assert "Store port must be a TCP port from 1 to 65535, not 0" in error
        assert "pacs" not in Store().load().nodes
        editor.query_one("#pf-store-port", Input).value = "11999"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert Store().get_node("pacs").retrieve == RetrieveOptions(
            "move", "ARCHIVE", 11999, None, str(tmp_path), "{SOPInstanceUID}.dcm")
        # shown again when the profile is highlighted
        editor.action_new()
        editor._show_selected()
        await pilot.pause()
        assert editor.query_one("#pf-store-port", Input).value == "11999"
        assert editor.query_one("#pf-retrieve-method", Select).value == "move"
