"""The TUI's saved profiles and history (issue 4): Pilot tests against the embedded
demo SCP at 80x24, and snapshots of the profiles and history screens.

FINDTUI_CONFIG_DIR points at a fresh folder for each test (conftest), so the
store and history the app sees are the test's own.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static

from findtui.app import make_app
from findtui.demo import DemoSCP
from findtui.engine.keys import build_identifier
from findtui.engine.models import QueryModel
from findtui.config import (
    HistoryEntry,
    NodeProfile,
    QueryProfile,
    Store,
)
from findtui.engine.network import Network
from findtui.engine.query import Final, FindRequest, Pending
from findtui.engine.run import summarize
from findtui.screens.history import HistoryScreen
from findtui.screens.profiles import ConfirmScreen, NameScreen, ProfilesScreen
from findtui.widgets.key_editor import KeyEditor
from findtui.widgets.model_form import ModelForm
from findtui.widgets.results_table import ResultsTable

from pilot import run_and_wait, sync, wait_for  # noqa: E402

SIZE = (80, 24)






async def type_into(pilot, selector: str, text: str) -> None:
    """Focus a field, clear it, and type as a user would."""
    field = pilot.app.screen.query_one(selector, Input)
    field.focus()
    field.value = ""
    await pilot.press(*[{" ": "space"}.get(c, c) for c in text])


def notifications(app) -> list[str]:
    return [f"{n.title} {n.message}" for n in app._notifications]


@pytest.fixture
def demo():
    scp = DemoSCP(patients=12, seed=3).start()
    try:
        yield scp
    finally:
        scp.stop()


# --- node profiles --------------------------------------------------------------


@sync
async def test_create_a_node_profile_and_run_a_query_with_it(demo):
    app = make_app()  # an empty form: the node profile is what points it at the demo
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("f7")
        assert isinstance(app.screen, ProfilesScreen)
        await pilot.press("n")
        await type_into(pilot, "#pf-name", "demo")
        await type_into(pilot, "#pf-description", "the demo SCP")
        await type_into(pilot, "#net-address", demo.address)
        await type_into(pilot, "#net-port", str(demo.port))
        await type_into(pilot, "#net-called", demo.ae_title)
        await pilot.press("ctrl+s")
        await pilot.pause()
        node = Store().get_node("demo")
        net = node.network
        assert (net.address, net.port, net.called_aet) == (demo.address, demo.port,
                                                           demo.ae_title)
        assert node.description == "the demo SCP"
        # The new profile is listed and highlighted: u uses it.
        assert app.screen.selected_name() == "demo"
        await pilot.press("u")
        await pilot.pause()
        screen = app.query_screen
        assert app.screen is screen
        assert screen.query_one("#net-address", Input).value == demo.address
        await run_and_wait(pilot)
        assert screen.query_one(ResultsTable).total_count > 12
        # The run is recorded with the node profile it used.
        await wait_for(pilot, lambda: Store().history.entries(), what="the history entry")
        entry = Store().history.entries()[-1]
        assert (entry.node, entry.source, entry.outcome) == ("demo", "tui", "success")
        assert entry.results == screen.query_one(ResultsTable).total_count


@sync
async def test_a_run_from_the_command_lines_profile_is_recorded_with_it(demo):
    from findtui.config.schema import find_request

    node = NodeProfile.of("demo", demo.address, demo.port, called_aet=demo.ae_title)
    query = QueryProfile("pids", model=QueryModel.PATIENT, level="PATIENT",
                         keys=("PatientName=", "PatientID="))
    Store().save(node)
    Store().save(query)
    # What `findtui --profile demo --query pids` starts with.
    app = make_app(find_request(query, node), profiles=("demo", "pids"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = await run_and_wait(pilot)
        assert screen.query_one(ResultsTable).total_count == 12
        await wait_for(pilot, lambda: Store().history.entries(), what="the history entry")
        entry = Store().history.entries()[-1]
        assert (entry.node, entry.query) == ("demo", "pids")
        # Edited, then quit: the edit to the node profile is not lost silently.
        screen.query_one("#net-calling", Input).value = "ELSEWHERE"
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)


@sync
async def test_profiles_screen_rename_duplicate_default_delete():
    store = Store()
    store.save(NodeProfile.of("pacs", "10.0.0.1", 104, called_aet="PACS"))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("f7")
        await pilot.press("c")
        assert isinstance(app.screen, NameScreen)
        await pilot.press("enter")  # the offered name, pacs-copy
        await pilot.pause()
        assert store.names("node") == ["pacs", "pacs-copy"]
        await pilot.press("r")
        await type_into(pilot, "#name-input", "backup")
        await pilot.press("enter")
        await pilot.pause()
        assert store.names("node") == ["pacs", "backup"]
        await pilot.press("asterisk")
        await pilot.pause()
        assert store.default("node") == "backup"
        await pilot.press("delete")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await pilot.pause()
        assert store.names("node") == ["pacs"]
        assert store.default("node") is None


@sync
async def test_a_bad_field_is_shown_and_nothing_saved():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("f7", "n")
        await type_into(pilot, "#pf-name", "bad")
        await type_into(pilot, "#net-address", "host")
        await type_into(pilot, "#net-port", "99999")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert Store().names("node") == []
        assert isinstance(app.screen, ProfilesScreen)
        assert "Not saved" in " ".join(notifications(app))


@sync
async def test_the_command_palette_loads_a_saved_node():
    Store().save(NodeProfile.of("pacs", "10.0.0.1", 4104, called_aet="PACS"))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Use node: pacs")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause()
        screen = app.query_screen
        assert screen.query_one("#net-port", Input).value == "4104"
        assert screen.query_one("#net-called", Input).value == "PACS"


@sync
async def test_a_node_profiles_default_model_is_applied():
    Store().save(NodeProfile.of("ris", "10.0.0.2", 4105, called_aet="RIS",
                             model=QueryModel.WORKLIST))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.query_screen.query_one(ModelForm).model is QueryModel.STUDY
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Use node: ris")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause()
        screen = app.query_screen
        assert screen.query_one(ModelForm).model is QueryModel.WORKLIST
        keys = screen.query_one(KeyEditor).keys
        assert any(k.startswith("ScheduledProcedureStepSequence[0].") for k in keys), keys


# --- query profiles -------------------------------------------------------------


@sync
async def test_save_the_form_as_a_query_profile_and_load_it_back():
    app = make_app(demo=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.query_screen
        editor = screen.query_one(KeyEditor)
        editor.set_keys(["PatientName=DOE*", "PatientID=", "StudyDate=20200101-"])
        saved_keys = list(editor.keys)
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, NameScreen)
        await pilot.pause()
        await type_into(pilot, "#name-input", "doe")
        await pilot.press("enter")
        await pilot.pause()
        query = Store().get_query("doe")
        assert query.model is QueryModel.STUDY and query.level == "STUDY"
        assert list(query.keys) == saved_keys
        # Change the form, then load the profile: a prompt first, then the saved keys.
        editor.set_keys(["PatientID=X"])
        await pilot.press("f7")
        app.screen.query_one("#query-list").focus()
        await pilot.pause()
        await pilot.press("u")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # keep editing: nothing changes
        await pilot.pause()
        assert editor.keys == ["PatientID=X"]
        await pilot.press("f7")
        app.screen.query_one("#query-list").focus()
        await pilot.pause()
        await pilot.press("u")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert app.screen is screen
        assert editor.keys == saved_keys


@sync
async def test_quit_asks_when_a_loaded_profile_was_edited():
    Store().save(NodeProfile.of("pacs", "10.0.0.1", 104, called_aet="PACS"))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("f7", "u")
        await pilot.pause()
        screen = app.query_screen
        assert screen.query_one("#net-called", Input).value == "PACS"
        screen.query_one("#net-called", Input).value = "OTHER"
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running and app.screen is screen
        await pilot.press("ctrl+q")
        await pilot.press("y")
        await pilot.pause()
        assert not app.is_running


# --- history --------------------------------------------------------------------


@sync
async def test_a_run_is_recorded_and_run_again_from_the_history():
    app = make_app(demo=True, demo_options={"patients": 8, "seed": 2})
    async with app.run_test(size=SIZE) as pilot:
        screen = await run_and_wait(pilot)
        rows = screen.query_one(ResultsTable).total_count
        history = Store().history
        await wait_for(pilot, lambda: len(history.entries()) == 1, what="the history entry")
        entry = history.entries()[0]
        assert entry.source == "tui" and entry.results == rows and entry.status == "Success"
        assert entry.keys[0] == "QueryRetrieveLevel=STUDY"
        # Change the form, then run the entry again from the history screen.
        screen.query_one(KeyEditor).set_keys(["PatientID=NOBODY"])
        await pilot.press("f8")
        assert isinstance(app.screen, HistoryScreen)
        table = app.screen.query_one(DataTable)
        assert table.row_count == 1
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)  # the edited keys would be lost
        await pilot.press("y")
        await pilot.pause()
        await wait_for(pilot, lambda: len(history.entries()) == 2, what="the second entry")
        await wait_for(pilot, lambda: not screen.running, what="the re-run")
        assert screen.query_one(ResultsTable).total_count == rows
        assert "PatientID=NOBODY" not in screen.query_one(KeyEditor).keys
        assert history.entries()[1].keys == entry.keys


def pendings(n: int) -> list[Pending]:
    return [Pending(i, 0xFF00, b"", "1.2.840.10008.1.2") for i in range(1, n + 1)]


@sync
async def test_load_a_history_entry_into_the_form(demo):
    request = FindRequest(network=Network(demo.address, demo.port, called_aet=demo.ae_title),
                          model=QueryModel.PATIENT,
                          identifier=build_identifier(["QueryRetrieveLevel=PATIENT",
                                                       "PatientName=A*", "PatientID="]))
    Store().history.append(HistoryEntry.from_run(request, summarize(pendings(3)), source="cli"))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("f8", "l")
        await pilot.pause()
        screen = app.query_screen
        assert screen.query_one("#net-port", Input).value == str(demo.port)
        assert screen.query_one(KeyEditor).keys == ["PatientName=A*", "PatientID="]
        assert not screen.running


@sync
async def test_a_demo_run_from_the_history_runs_again_on_the_demo_scp():
    """Its recorded port is gone (the demo SCP's port is new every start); run again goes to
    the demo SCP of this session, and the new run is recorded as a demo run."""
    gone = Network("127.0.0.1", 9, called_aet="FINDTUI-DEMO")
    request = FindRequest(network=gone, model=QueryModel.PATIENT,
                          identifier=build_identifier(["QueryRetrieveLevel=PATIENT",
                                                       "PatientID=", "PatientName="]))
    Store().history.append(HistoryEntry.from_run(request, summarize(pendings(3)),
                                                 source="tui", demo=True))
    app = make_app(demo=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("f8", "r")
        screen = app.query_screen
        await wait_for(pilot, lambda: screen.current_level is not None
                       and screen.current_level.state == "success", what="the re-run")
        assert screen.current_level.request.network.port == app.demo.port
        assert len(screen.current_level.responses) > 0
        await wait_for(pilot, lambda: len(Store().history.entries()) == 2, what="the record")
        assert Store().history.entries()[-1].demo is True


@sync
async def test_the_history_screen_clears_the_history_after_asking():
    request = FindRequest(network=Network("127.0.0.1", 104), model=QueryModel.PATIENT,
                          identifier=build_identifier(["QueryRetrieveLevel=PATIENT",
                                                       "PatientName=WHITE*"]))
    Store().history.append(HistoryEntry.from_run(request, summarize(pendings(1))))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("f8", "x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # kept
        await pilot.pause()
        assert len(Store().history.entries()) == 1
        await pilot.press("x", "y")
        await pilot.pause()
        assert Store().history.entries() == []
        assert not Store().history.path.read_text()


@sync
async def test_no_history_records_nothing_in_the_tui(demo):
    app = make_app(demo=True, no_history=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("f5")
        screen = app.query_screen
        await wait_for(pilot, lambda: screen.current_level is not None
                       and screen.current_level.state == "success", what="the run")
        await pilot.pause(0.3)
    assert Store().history.entries() == []


# --- a corrupt profiles file ------------------------------------------------------


@sync
async def test_a_corrupt_profiles_file_is_reported_and_never_written(findtui_config_dir: Path):
    path = findtui_config_dir / "profiles.toml"
    text = '# mine\n[nodes.pacs]\naddress = "10.0.0.1"\nport = \n'
    path.write_text(text)
    app = make_app(demo=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: notifications(app), what="a notification")
        shown = " ".join(notifications(app))
        assert str(path) in shown and "line 4" in shown
        # Saving from the query screen and from the profiles screen: refused, said so.
        await pilot.press("ctrl+s")
        await pilot.pause()
        await type_into(pilot, "#name-input", "q")
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("f7")
        assert str(path) in str(app.screen.query_one("#profile-error", Static).render())
        await pilot.press("n")
        await type_into(pilot, "#pf-name", "x")
        await type_into(pilot, "#net-address", "h")
        await pilot.press("ctrl+s")
        await pilot.pause()
        # The query screen still runs queries.
        await pilot.press("escape")
        await pilot.pause()
        screen = await run_and_wait(pilot)
        assert screen.query_one(ResultsTable).total_count > 0
    assert path.read_text() == text


# --- snapshots --------------------------------------------------------------------

FIXED_TIME = dt.datetime(2026, 3, 14, 9, 26, 53, tzinfo=dt.timezone.utc)


def fixed_store() -> None:
    store = Store()
    store.save(NodeProfile.of("orthanc", "pacs.example.org", 4242, called_aet="ORTHANC",
                           description="main archive"))
    store.save(NodeProfile.of("demo", "127.0.0.1", 11112, called_aet="FINDTUI-DEMO"))
    store.save(QueryProfile("todays-ct", model=QueryModel.STUDY, level="STUDY",
                            keys=("PatientName=", "PatientID=", "StudyDate=20260314",
                                  "ModalitiesInStudy=CT"), node="orthanc"))
    store.save(QueryProfile("worklist", model=QueryModel.WORKLIST,
                            keys=("PatientName=", "ScheduledProcedureStepSequence[0].Modality=")))
    store.set_default("node", "orthanc")
    history = store.history
    runs = [
        (["QueryRetrieveLevel=STUDY", "PatientName=DOE*", "StudyDate="], 12,
         Final(0x0000, None), "orthanc"),
        (["QueryRetrieveLevel=PATIENT", "PatientID=PID1"], 0, Final(0xC000, None), None),
        (["QueryRetrieveLevel=STUDY", "ModalitiesInStudy=CT"], 481,
         Final(0xFE00, None, cancel_requested=True), "demo"),  # the user cancelled
    ]
    for i, (keys, results, final, node) in enumerate(runs):
        model = QueryModel.PATIENT if "PATIENT" in keys[0] else QueryModel.STUDY
        request = FindRequest(network=Network("127.0.0.1", 11112, called_aet="FINDTUI-DEMO"),
                              model=model, identifier=build_identifier(keys))
        history.append(HistoryEntry.from_run(request, summarize([*pendings(results), final]),
                                             node=node, source="tui", keys=keys,
                                             when=FIXED_TIME + dt.timedelta(minutes=7 * i)))


async def settle(pilot) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    for node in pilot.app.screen.query(Input):
        node.cursor_blink = False
    await pilot.pause()


def snapshot_app():
    fixed_store()
    app = make_app()
    app.show_timing = False
    return app


def test_profiles_screen_snapshot(snap_compare):
    async def run_before(pilot):
        await pilot.pause()
        await pilot.press("f7")
        await pilot.pause()
        from rich.text import Text

        pilot.app.screen.query_one("#profiles-title", Static).update(Text.assemble(
            ("Profiles", "bold"), " · ", ("~/.config/findtui/profiles.toml", "dim")))
        await settle(pilot)

    assert snap_compare(snapshot_app(), terminal_size=SIZE, run_before=run_before)


def test_query_profile_snapshot(snap_compare):
    async def run_before(pilot):
        await pilot.pause()
        await pilot.press("f7")
        pilot.app.screen.query_one("#query-list").focus()
        await pilot.pause()
        from rich.text import Text

        pilot.app.screen.query_one("#profiles-title", Static).update(Text.assemble(
            ("Profiles", "bold"), " · ", ("~/.config/findtui/profiles.toml", "dim")))
        await settle(pilot)

    assert snap_compare(snapshot_app(), terminal_size=SIZE, run_before=run_before)


def test_history_screen_snapshot(snap_compare):
    async def run_before(pilot):
        await pilot.pause()
        await pilot.press("f8")
        await pilot.pause()
        from rich.text import Text

        pilot.app.screen.query_one("#history-title", Static).update(Text.assemble(
            ("History", "bold"), " · 3 runs · ", ("~/.local/state/findtui/history.jsonl", "dim")))
        await settle(pilot)

    assert snap_compare(snapshot_app(), terminal_size=SIZE, run_before=run_before)
