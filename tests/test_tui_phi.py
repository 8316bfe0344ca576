"""PHI-safe display (issue 13): --hide-phi, Ctrl+G and the palette mask patient names,
IDs and birth dates everywhere on screen — table, detail, breadcrumb, log pane,
notifications, history, key list — with a short hash that is the same for the same
patient; exports ask before writing the data unmasked; a node profile can turn it on."""

from __future__ import annotations

import pytest
from textual.widgets import Log, Static, Tree

from findtui.app import make_app
from findtui.config.schema import NodeProfile
from findtui.engine.keys import build_identifier
from findtui.engine.models import QueryModel
from findtui.engine.phi import PhiMask, is_phi
from findtui.engine.query import FindRequest, Network
from findtui.screens.dialogs import ConfirmScreen
from findtui.screens.export import ExportScreen
from findtui.widgets.key_editor import KeyList
from findtui.widgets.results_table import ResultsTable

from pilot import run_and_wait, sync, wait_for  # noqa: E402
from test_tui_snapshots import SIZES, settle  # noqa: E402

SECRET = b"a fixed secret for deterministic masks"


def phi_app(request: FindRequest | None = None, hide: bool = True):
    app = make_app(request, demo=True, demo_options={"patients": 30, "seed": 7},
                   hide_phi=hide)
    app.show_timing = False
    app.phi = PhiMask(on=hide, secret=SECRET)
    return app


def patient_values(table: ResultsTable) -> list[str]:
    """Every patient name, ID and birth date the table holds, as sent and as readable."""
    from findtui.engine.display import readable_date, readable_pn

    values = set()
    for column, path in enumerate(table.columns):
        if is_phi(path):
            for source in range(table.total_count):
                value = table.get_row(source)[column]
                values |= {value, readable_pn(value), readable_date(value)}
    values.discard("")
    return sorted(values)


def _lines(app) -> str:
    from rich.console import Console

    console = Console(width=app.size.width, record=True, file=open("/dev/null", "w"))
    console.print(app.screen._compositor.render_full_update(), end="")
    return console.export_text()


def test_the_mask_is_stable_short_and_keyed():
    mask = PhiMask(on=True, secret=SECRET)
    token = mask.value("PatientName", "Müller^Jürgen")
    assert token.startswith("Pt#") and len(token) == 9
    assert mask.value("PatientName", "Müller^Jürgen") == token  # the same patient, the same
    assert mask.value("PatientName", "Lee^Linda") != token
    assert PhiMask(on=True).value("PatientName", "Müller^Jürgen") != token  # keyed per session
    assert mask.value("StudyDescription", "CT HEAD") == "CT HEAD"
    assert mask.value("OtherPatientIDsSequence[0].PatientID", "X1").startswith("ID#")
    assert mask.key("PatientID=PAT00003").startswith("PatientID=ID#")
    line = "I: (0010,0010) PN [DOE*]                     # 1 PatientName"
    assert "DOE" not in mask.line(line) and "[Pt#" in mask.line(line)
    assert "Müller" not in mask.text("Copied Müller^Jürgen")
    assert PhiMask(on=False).value("PatientName", "Doe^J") == "Doe^J"


@pytest.mark.parametrize("size", SIZES)
@sync
async def test_hide_phi_masks_table_detail_log_notifications_and_toggles(size):
    request = FindRequest(network=Network("127.0.0.1", 104), model=QueryModel.STUDY,
                          identifier=build_identifier([
                              "QueryRetrieveLevel=STUDY", "PatientName=M*", "PatientID=",
                              "PatientBirthDate=", "StudyDate=", "StudyDescription=",
                              "StudyInstanceUID="]))
    app = phi_app(request)
    async with app.run_test(size=size) as pilot:
        screen = await run_and_wait(pilot)
        table = screen.query_one(ResultsTable)
        secrets = patient_values(table)
        assert any("Müller" in v for v in secrets)
        # the table: tokens, the same for every study of one patient
        shown = _lines(app)
        assert not [v for v in secrets if v in shown]
        assert "Pt#" in shown and "ID#" in shown and "DOB#" in shown
        assert "PHI hidden" in str(screen.query_one("#breadcrumb", Static).render())
        names = {table.shown_cell(table.get_row(i), 0) for i in range(table.total_count)}
        ids = {table.shown_cell(table.get_row(i), 1) for i in range(table.total_count)}
        assert len(names) == len(ids) == len({table.get_row(i)[1]
                                              for i in range(table.total_count)})
        # the log pane: the request's PatientName=M* masked
        log_text = "\n".join(str(line) for line in screen.query_one("#log", Log).lines)
        assert "[M*]" not in log_text and "(0010,0010) PN [Pt#" in log_text
        # the key list: the criterion masked
        key_list = screen.query_one(KeyList)
        labels = [str(key_list.get_option_at_index(i).prompt)
                  for i in range(key_list.option_count)]
        assert "PatientName=M*" not in labels and any("PatientName=Pt#" in s for s in labels)
        # a notification: copying the name says the masked name
        await pilot.press("y")
        await pilot.pause()
        notes = " ".join(n.message + n.title for n in app._notifications)
        assert not [v for v in secrets if v in notes] and "Pt#" in notes
        # the detail
        await pilot.press("enter")
        await pilot.pause()
        tree_text = " ".join(str(node.label) for node in _nodes(app.screen.query_one(Tree)))
        assert not [v for v in secrets if v in tree_text] and "Pt#" in tree_text
        await pilot.press("ctrl+g")  # shown again, here and on the screen below
        await pilot.pause()
        tree_text = " ".join(str(node.label) for node in _nodes(app.screen.query_one(Tree)))
        assert "Müller" in tree_text or any(v in tree_text for v in secrets)
        await pilot.press("escape")
        await pilot.pause()
        assert [v for v in secrets if v in _lines(app)]
        assert "PHI hidden" not in str(screen.query_one("#breadcrumb", Static).render())
        await pilot.press("ctrl+g")
        await pilot.pause()
        assert not [v for v in secrets if v in _lines(app)]


def _nodes(tree):
    stack = [tree.root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.children)


@sync
async def test_breadcrumb_history_and_export_under_hide_phi(tmp_path):
    request = FindRequest(network=Network("127.0.0.1", 104), model=QueryModel.PATIENT,
                          identifier=build_identifier([
                              "QueryRetrieveLevel=PATIENT", "PatientName=", "PatientID=",
                              "PatientBirthDate="]))
    app = phi_app(request)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await run_and_wait(pilot)
        table = screen.query_one(ResultsTable)
        secrets = patient_values(table)
        depth = len(screen._stack)
        await pilot.press("d")  # the patient's studies: the breadcrumb names the patient
        await wait_for(pilot, lambda: len(screen._stack) > depth and not screen.running
                       and screen.current_level.state != "running", what="the drill-down")
        crumb = str(screen.query_one("#breadcrumb", Static).render())
        assert "PATIENT: Pt#" in crumb and not [v for v in secrets if v in crumb]
        # the history: PatientID=… of the drill-down masked
        await pilot.press("f8")
        await wait_for(pilot, lambda: app.screen is not screen, what="the history")
        await pilot.pause()
        history = _lines(app)
        assert "PatientID=ID#" in history and not [v for v in secrets if v in history]
        await pilot.press("escape")
        await pilot.pause()
        # an export asks first
        await pilot.press("f6")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen), what="export")
        app.screen.query_one("#export-folder").value = str(tmp_path)
        app.screen.query_one("#export-folder").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        assert "unmasked" in _lines(app)
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is screen and not list(tmp_path.iterdir())  # nothing written


@sync
async def test_a_node_profile_can_hide_phi(tmp_path):
    from findtui.config.store import Store
    from findtui.screens.profiles import load_node

    path = tmp_path / "profiles.toml"
    path.write_text('[nodes.pacs]\naddress = "10.0.0.5"\nport = 104\nhide_phi = true\n'
                    '[nodes.lab]\naddress = "10.0.0.6"\nport = 104\n')
    profiles = Store(tmp_path).load()
    pacs, lab = profiles.nodes["pacs"], profiles.nodes["lab"]
    assert pacs.hide_phi and not lab.hide_phi
    assert pacs.to_toml()["hide_phi"] is True and "hide_phi" not in lab.to_toml()
    app = phi_app(hide=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        load_node(app.query_screen, lab)
        assert not app.phi.on
        load_node(app.query_screen, pacs)
        await pilot.pause()
        assert app.phi.on
        assert "PHI hidden" in str(app.query_screen.query_one("#breadcrumb", Static).render())


@pytest.mark.parametrize("size", SIZES)
def test_hide_phi_results(snap_compare, size):
    async def run_before(pilot):
        await run_and_wait(pilot)
        await settle(pilot)

    app = phi_app()
    app.demo_options.update(patients=50, seed=1)
    assert snap_compare(app, terminal_size=size, run_before=run_before)
