"""Pilot tests of the TUI against the embedded demo SCP (80x24, as over SSH).

Each test drives the app the way a user does (keys, the form) and checks what
the user sees: rows in the table, the status line, notifications, files.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from textual.widgets import Checkbox, Input, Log, Select, SelectionList, Static, Tree

from findtui.app import make_app
from findtui.engine.keys import KeyPathError, build_identifier, parse_key, value_at
from findtui.engine.models import ExtendedNegotiation, QueryModel
from findtui.engine.query import FindRequest, Network, Pending, TLSOptions, run_find
from findtui.screens.detail import DetailScreen
from findtui.screens.export import ExportScreen
from findtui.screens.query import QueryScreen
from findtui.engine.hierarchy import drill_down_request
from findtui.screens.query_logic import RowBatcher, readable_pn, table_columns
from findtui.widgets.key_editor import KeyEditor, complete_keyword
from findtui.widgets.model_form import ModelForm
from findtui.widgets.query_helpers import QueryHelpers
from findtui.widgets.results_table import ResultsTable
from findtui.widgets.status_line import StatusLine

from pilot import run_and_wait, sync, wait_for  # noqa: E402

SIZE = (80, 24)




# --- helpers ------------------------------------------------------------------




def screen_of(app) -> QueryScreen:
    return app.query_screen


def engine_responses(request: FindRequest) -> list[Pending]:
    return [e for e in run_find(request) if isinstance(e, Pending)]


def column_values(screen: QueryScreen, column: str) -> list[str]:
    table = screen.query_one(ResultsTable)
    i = list(table.columns).index(column)
    return [table.shown_cell(table.get_row(n), i) for n in range(table.total_count)]


def status_text(screen: QueryScreen) -> str:
    return str(screen.query_one(StatusLine).render())


async def type_text(pilot, text: str) -> None:
    await pilot.press(*[{" ": "space"}.get(c, c) for c in text])


def notifications(app) -> list[str]:
    return [f"{n.title} {n.message}" for n in app._notifications]


async def submit_export(pilot) -> None:
    """Enter in the folder field (a click could land on a notification toast)."""
    pilot.app.screen.query_one("#export-folder", Input).focus()
    await pilot.press("enter")
    await pilot.pause()


async def wait_for_export(pilot, what: str) -> None:
    """Wait for the export worker's notification (it starts after the dialog closes)."""
    await wait_for(pilot, lambda: any(n.startswith("Export ") and what in n
                                      for n in notifications(pilot.app)), what=f"export {what}")


# --- rows ---------------------------------------------------------------------


@sync
async def test_rows_appear_and_match_a_direct_engine_run():
    app = make_app(demo=True, demo_options={"patients": 30, "seed": 7})
    async with app.run_test(size=SIZE) as pilot:
        screen = await run_and_wait(pilot)
        table = screen.query_one(ResultsTable)
        request = screen.build_request()
        expected = await asyncio.to_thread(engine_responses, request)
        assert len(expected) > 30
        assert table.total_count == len(expected)
        assert len(screen._level.responses) == len(expected)
        # Same rows, same order, as the engine gives them (PN made readable).
        ids = [value_at(r.identifier, "StudyInstanceUID") for r in expected]
        assert column_values(screen, "StudyInstanceUID") == ids
        names = [readable_pn(value_at(r.identifier, "PatientName")) for r in expected]
        assert column_values(screen, "PatientName") == names
        assert "," in names[0]  # 'Family^Given' shown as 'Family, Given'
        assert screen.query_one(StatusLine).state == "success"
        assert f"Success · {len(expected)} matches" in status_text(screen)
        # The form collapses after a run: the table has the screen.
        assert not screen.form_visible
        assert table.size.height >= 18
        assert screen.focused is table


@sync
async def test_columns_follow_the_requested_keys():
    app = make_app(demo=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = screen_of(app)
        editor = screen.query_one(KeyEditor)
        editor.set_keys(["StudyDate=", "PatientName=", "AccessionNumber="])
        screen = await run_and_wait(pilot)
        assert list(screen.query_one(ResultsTable).columns) == [
            "StudyDate", "PatientName", "AccessionNumber"]


@sync
async def test_cancel_keeps_the_rows_received():
    app = make_app(demo=True, demo_options={"patients": 50, "delay_per_response": 0.05})
    async with app.run_test(size=SIZE) as pilot:
        screen = screen_of(app)
        table = screen.query_one(ResultsTable)
        await pilot.press("f5")
        await wait_for(pilot, lambda: table.total_count >= 3, what="first rows")
        assert screen.running
        assert "Querying…" in status_text(screen)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not screen.running, what="the cancel")
        await app.workers.wait_for_complete()
        await pilot.pause()
        total = app.demo.data.counts()["studies"]
        assert 3 <= table.total_count < total
        assert len(screen._level.responses) == table.total_count
        assert screen.query_one(StatusLine).state == "cancel"
        assert "Cancel" in status_text(screen)
        log = "\n".join(screen.query_one("#log", Log).lines)
        assert "C-CANCEL" in log


@sync
async def test_a_new_run_cancels_the_running_one_first():
    app = make_app(demo=True, demo_options={"patients": 20, "delay_per_response": 0.02})
    async with app.run_test(size=SIZE) as pilot:
        screen = screen_of(app)
        table = screen.query_one(ResultsTable)
        await pilot.press("f5")
        await wait_for(pilot, lambda: table.total_count >= 2, what="first rows")
        first_run = screen._run_id
        await pilot.press("f5")
        await wait_for(pilot, lambda: screen._run_id > first_run and not screen.running,
                       what="the second run")
        await app.workers.wait_for_complete()
        await pilot.pause()
        total = app.demo.data.counts()["studies"]
        # One run fed the table: every study once, no leftovers of the first run.
        assert table.total_count == total
        assert len(set(column_values(screen, "StudyInstanceUID"))) == total
        assert screen.query_one(StatusLine).state == "success"


@sync
async def test_filter_shows_matching_rows_only():
    app = make_app(demo=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await run_and_wait(pilot)
        table = screen.query_one(ResultsTable)
        descriptions = column_values(screen, "StudyDescription")
        await pilot.press("slash")
        await type_text(pilot, "thyroid")
        await pilot.press("enter")
        await pilot.pause()
        expected = sum("thyroid" in d.lower() for d in descriptions)
        assert 0 < expected < table.total_count
        assert table.displayed_count == expected
        assert f"{expected} shown of {table.total_count}" in status_text(screen)
        await pilot.press("slash", "escape")
        await pilot.pause()
        assert table.displayed_count == table.total_count


# --- detail -------------------------------------------------------------------


@sync
async def test_enter_opens_the_whole_identifier_with_sequences():
    app = make_app(demo=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = screen_of(app)
        screen.query_one(ModelForm).fill(QueryModel.WORKLIST, None)
        screen._model_changed(ModelForm.Changed(QueryModel.WORKLIST, ""))
        screen = await run_and_wait(pilot)
        assert screen.query_one(ResultsTable).total_count > 0
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailScreen)
        tree = app.screen.query_one(Tree)
        labels = []

        def walk(node):
            for child in node.children:
                labels.append(str(child.label))
                walk(child)

        walk(tree.root)
        text = "\n".join(labels)
        assert "ScheduledProcedureStepSequence" in text
        assert "Item 1" in text
        assert "ScheduledStationAETitle" in text  # inside the item
        assert "PatientName" in text
        await pilot.press("escape")
        assert isinstance(app.screen, QueryScreen)


# --- drill-down ---------------------------------------------------------------


@sync
async def test_drill_down_study_to_series_and_back():
    app = make_app(demo=True, demo_options={"patients": 10})
    async with app.run_test(size=SIZE) as pilot:
        screen = await run_and_wait(pilot)
        table = screen.query_one(ResultsTable)
        studies = table.total_count
        table.move_cursor(2)
        study_uid = column_values(screen, "StudyInstanceUID")[table.cursor_source_index]
        await pilot.press("d")
        await wait_for(pilot, lambda: screen._stack and not screen.running, what="drill-down")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen.query_one(ModelForm).level == "SERIES"
        assert screen._level.request.identifier.StudyInstanceUID == study_uid
        expected = len(app.demo.data.series_of(app.demo.data.study_by_uid[study_uid]))
        assert table.total_count == expected > 0
        assert set(column_values(screen, "StudyInstanceUID")) == {study_uid}
        assert "Modality" in table.columns
        assert "SERIES" in str(screen.query_one("#breadcrumb", Static).render())
        # Series -> images.
        await pilot.press("d")
        await wait_for(pilot, lambda: len(screen._stack) == 2 and not screen.running,
                       what="drill-down to images")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen.query_one(ModelForm).level == "IMAGE"
        ident = screen._level.request.identifier
        assert ident.StudyInstanceUID == study_uid and ident.SeriesInstanceUID
        assert table.total_count > 0
        # Back twice: the studies as they were, cursor on the same study.
        await pilot.press("backspace")
        await pilot.press("backspace")
        await pilot.pause()
        assert not screen._stack
        assert screen.query_one(ModelForm).level == "STUDY"
        assert table.total_count == studies
        assert column_values(screen, "StudyInstanceUID")[table.cursor_source_index] == study_uid


@sync
async def test_drill_down_patient_root_carries_patient_id():
    request = FindRequest(network=Network("127.0.0.1", 104), model=QueryModel.PATIENT,
                          identifier=build_identifier(["QueryRetrieveLevel=PATIENT",
                                                       "PatientName=", "PatientID="]))
    app = make_app(request, demo=True, demo_options={"patients": 12})
    async with app.run_test(size=SIZE) as pilot:
        screen = await run_and_wait(pilot)
        table = screen.query_one(ResultsTable)
        assert table.total_count == 12
        table.move_cursor(4)
        patient_id = column_values(screen, "PatientID")[table.cursor_source_index]
        await pilot.press("d")
        await wait_for(pilot, lambda: screen._stack and not screen.running, what="drill-down")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen._level.request.identifier.PatientID == patient_id
        assert set(column_values(screen, "PatientID")) == {patient_id}
        expected = app.demo.data.patient_by_id[patient_id][7]  # P_NSTUDIES
        assert table.total_count == expected
        # Study -> series in Patient Root needs PatientID and StudyInstanceUID.
        await pilot.press("d")
        await wait_for(pilot, lambda: len(screen._stack) == 2 and not screen.running,
                       what="drill-down to series")
        ident = screen._level.request.identifier
        assert ident.PatientID == patient_id and ident.StudyInstanceUID


def test_drill_down_request_needs_the_unique_key():
    request = FindRequest(network=Network("h", 104), model=QueryModel.STUDY,
                          identifier=build_identifier(["QueryRetrieveLevel=STUDY",
                                                       "PatientName="]))
    response = Dataset()
    response.PatientName = "Doe^John"
    with pytest.raises(ValueError, match="StudyInstanceUID"):
        drill_down_request(request, response)
    response.StudyInstanceUID = "1.2.3"
    below, level = drill_down_request(request, response)
    assert level == "SERIES"
    assert below.identifier.StudyInstanceUID == "1.2.3"
    assert below.identifier.QueryRetrieveLevel == "SERIES"


# --- export -------------------------------------------------------------------


@sync
async def test_export_rsp_files_csv_and_json(tmp_path: Path):
    app = make_app(demo=True, demo_options={"patients": 8})
    async with app.run_test(size=SIZE) as pilot:
        screen = await run_and_wait(pilot)
        rows = screen.query_one(ResultsTable).total_count
        # rsp*.dcm, all rows
        await pilot.press("f6")
        await pilot.pause()
        assert isinstance(app.screen, ExportScreen)
        app.screen.query_one("#export-folder", Input).value = str(tmp_path)
        await submit_export(pilot)
        await wait_for_export(pilot, "response files")
        files = sorted(tmp_path.glob("rsp*.dcm"))
        assert len(files) == rows
        first = dcmread(files[0])
        assert first.StudyInstanceUID == column_values(screen, "StudyInstanceUID")[0]
        assert any(f"Wrote {rows} response files" in n and str(tmp_path) in n
                   for n in notifications(app))
        # The same again: refused, nothing overwritten, the dialog says why.
        before = files[0].stat().st_mtime_ns
        await pilot.press("f6")
        await pilot.pause()
        app.screen.query_one("#export-folder", Input).value = str(tmp_path)
        await submit_export(pilot)
        await pilot.pause()
        assert isinstance(app.screen, ExportScreen)
        error = str(app.screen.query_one("#export-error", Static).render())
        assert "already holds" in error
        assert files[0].stat().st_mtime_ns == before
        # CSV of the table
        app.screen.query_one("#export-kind").query("RadioButton")[1].value = True
        await pilot.pause()
        await submit_export(pilot)
        await pilot.pause()
        await wait_for_export(pilot, "as CSV")
        with open(tmp_path / "findtui-results.csv", newline="", encoding="utf-8") as fp:
            table = list(csv.reader(fp))
        assert "StudyInstanceUID" in table[0]
        assert len(table) == rows + 1
        uid_col = table[0].index("StudyInstanceUID")
        assert [r[uid_col] for r in table[1:]] == column_values(screen, "StudyInstanceUID")
        # DICOM JSON, the selected row only
        await pilot.press("f6")
        await pilot.pause()
        dialog = app.screen
        dialog.query_one("#export-folder", Input).value = str(tmp_path)
        dialog.query_one("#export-kind").query("RadioButton")[2].value = True
        dialog.query_one("#export-scope").query("RadioButton")[-1].value = True
        await pilot.pause()
        await submit_export(pilot)
        await wait_for_export(pilot, "as DICOM JSON")
        data = json.loads((tmp_path / "findtui-results.json").read_text(encoding="utf-8"))
        assert len(data) == 1
        assert data[0]["0020000D"]["Value"] == [column_values(screen, "StudyInstanceUID")[0]]


# --- the key editor -----------------------------------------------------------


@sync
async def test_a_bad_key_shows_the_parsers_error_and_is_not_added():
    app = make_app(demo=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = screen_of(app)
        editor = screen.query_one(KeyEditor)
        before = editor.keys
        await pilot.click("#key-input")
        await type_text(pilot, "PatientNme=DOE")
        await pilot.press("enter")
        await pilot.pause()
        with pytest.raises(KeyPathError) as exc:
            parse_key("PatientNme=DOE")
        message = str(screen.query_one("#key-message", Static).render())
        assert str(exc.value) in message.replace("\n", "")
        assert "did you mean PatientName" in message
        assert editor.keys == before
        # F5 with the bad key still typed: no query, the error is shown.
        await pilot.press("f5")
        await pilot.pause()
        assert screen._level is None
        assert any("PatientNme" in n for n in notifications(app))


@sync
async def test_keys_add_replace_remove_and_complete():
    app = make_app(demo=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = screen_of(app)
        editor = screen.query_one(KeyEditor)
        await pilot.click("#key-input")
        await type_text(pilot, "PatientName=SMITH*")
        await pilot.press("enter")
        assert "PatientName=SMITH*" in editor.keys
        assert sum(k.startswith("PatientName") for k in editor.keys) == 1  # replaced
        # completion from the DICOM dictionary
        await type_text(pilot, "ReferringPhy")
        await pilot.pause(0.2)
        await pilot.press("right")
        assert screen.query_one("#key-input", Input).value == "ReferringPhysicianName="
        await pilot.press("enter")
        assert editor.keys[-1] == "ReferringPhysicianName="
        # remove with Delete in the list
        key_list = screen.query_one("#key-list")
        key_list.focus()
        key_list.highlighted = len(editor.keys) - 1
        await pilot.press("delete")
        assert "ReferringPhysicianName=" not in editor.keys
        # the query uses the keys: only SMITH* patients come back
        screen = await run_and_wait(pilot)
        names = column_values(screen, "PatientName")
        assert names and all(n.startswith("Smith") for n in names)


def test_keyword_completion_prefers_common_keys():
    assert complete_keyword("Pat") == "PatientName"
    assert complete_keyword("studyi") == "StudyInstanceUID"
    assert complete_keyword("Xyzzy") is None


@sync
async def test_helpers_write_date_modality_and_contains_keys():
    app = make_app(demo=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = screen_of(app)
        editor = screen.query_one(KeyEditor)
        helpers = screen.query_one(QueryHelpers)
        helpers.today = dt.date(2026, 11, 26)
        screen.query_one("#date-preset", Select).value = "7"
        await pilot.pause()
        assert "StudyDate=20261119-20261126" in editor.keys
        screen.query_one("#date-preset", Select).value = "today"
        await pilot.pause()
        assert "StudyDate=20261126" in editor.keys
        modalities = screen.query_one("#modalities", SelectionList)
        modalities.select("CT")
        modalities.select("MR")
        await pilot.pause()
        assert "ModalitiesInStudy=CT\\MR" in editor.keys
        await pilot.click("#key-input")
        await type_text(pilot, "StudyDescription=HEAD")
        await pilot.click("#key-contains")
        assert screen.query_one("#key-input", Input).value == "StudyDescription=*HEAD*"
        await pilot.press("enter")
        assert "StudyDescription=*HEAD*" in editor.keys
        # Worklist: the modality helper writes the SPS item key.
        screen.query_one(ModelForm).fill(QueryModel.WORKLIST, None)
        screen._model_changed(ModelForm.Changed(QueryModel.WORKLIST, ""))
        await pilot.pause()
        modalities.deselect_all()
        modalities.select("US")
        await pilot.pause()
        assert "ScheduledProcedureStepSequence[0].Modality=US" in editor.keys


@sync
async def test_query_file_loads_into_the_key_list(tmp_path: Path):
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = "PAT00003"
    ds.StudyDate = ""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = QueryModel.STUDY.sop_class_uid
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    path = tmp_path / "query.dcm"
    ds.save_as(path, enforce_file_format=True)
    app = make_app(demo=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = screen_of(app)
        await pilot.click("#query-file")
        await type_text(pilot, str(path))
        await pilot.press("enter")
        await pilot.pause()
        assert screen.query_one(KeyEditor).keys == ["PatientID=PAT00003", "StudyDate="]
        screen = await run_and_wait(pilot)
        assert set(column_values(screen, "PatientID")) == {"PAT00003"}
        # a file that is not there: the engine's message
        await pilot.press("f2")
        await pilot.click("#query-file")
        screen.query_one("#query-file", Input).value = str(tmp_path / "nope.dcm")
        await pilot.press("enter")
        await pilot.pause()
        assert "no such file" in str(screen.query_one("#key-message", Static).render())


# --- model, network, echo -----------------------------------------------------


@sync
async def test_worklist_disables_the_qr_only_negotiation_and_sets_its_keys():
    app = make_app(demo=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = screen_of(app)
        screen.query_one("#ext-relational", Checkbox).value = True
        screen.query_one("#model", Select).value = QueryModel.WORKLIST
        await pilot.pause()
        for name in ("relational", "dt_matching", "enhanced_conversion"):
            box = screen.query_one(f"#ext-{name}", Checkbox)
            assert box.disabled and not box.value
        assert not screen.query_one("#ext-fuzzy_names", Checkbox).disabled
        assert screen.query_one("#level", Select).disabled
        keys = screen.query_one(KeyEditor).keys
        assert "ScheduledProcedureStepSequence[0].Modality=" in keys
        request = screen.build_request()
        assert request.model is QueryModel.WORKLIST
        assert "QueryRetrieveLevel" not in request.identifier


@sync
async def test_the_form_is_filled_from_a_find_request():
    identifier = build_identifier(["QueryRetrieveLevel=SERIES", "StudyInstanceUID=1.2.3",
                                   "Modality=CT", "SeriesDescription=*AX*"])
    request = FindRequest(
        network=Network("pacs.example.org", 4242, calling_aet="ME", called_aet="PACS",
                        acse_timeout=12, dimse_timeout=34, network_timeout=5, max_pdu=32768,
                        tls=TLSOptions(ca_file="/etc/ca.pem", cert_file="/c.pem",
                                       key_file="/k.pem", verify=False)),
        identifier=identifier, model=QueryModel.PATIENT,
        ext_neg=ExtendedNegotiation(relational=True, fuzzy_names=True))
    app = make_app(request)
    async with app.run_test(size=SIZE) as pilot:
        screen = screen_of(app)
        await pilot.pause()
        value = lambda wid: screen.query_one(f"#{wid}", Input).value  # noqa: E731
        assert value("net-address") == "pacs.example.org"
        assert value("net-port") == "4242"
        assert value("net-calling") == "ME" and value("net-called") == "PACS"
        assert (value("net-acse"), value("net-dimse"), value("net-network")) == ("12", "34", "5")
        assert value("net-pdu") == "32768"
        assert screen.query_one("#net-tls", Checkbox).value
        assert not screen.query_one("#net-verify", Checkbox).value
        assert value("net-ca") == "/etc/ca.pem"
        assert screen.query_one(ModelForm).model is QueryModel.PATIENT
        assert screen.query_one(ModelForm).level == "SERIES"
        assert screen.query_one("#ext-relational", Checkbox).value
        assert screen.query_one("#ext-fuzzy_names", Checkbox).value
        assert screen.query_one(KeyEditor).keys == [
            "Modality=CT", "SeriesDescription=*AX*", "StudyInstanceUID=1.2.3"]
        # ...and reads back to the same request.
        again = screen.build_request()
        assert again.network == request.network
        assert again.model is request.model and again.ext_neg == request.ext_neg
        assert again.identifier == request.identifier


@sync
async def test_bad_network_field_is_reported_not_run():
    app = make_app(demo=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = screen_of(app)
        screen.query_one("#net-port", Input).value = "70000"
        await pilot.press("f5")
        await pilot.pause()
        assert screen._level is None
        assert any("port must be an integer from 1 to 65535" in n
                   for n in notifications(app))
        assert screen.query_one("#form").active == "tab-network"
        assert screen.focused is screen.query_one("#net-port")


@sync
async def test_c_echo_reports_in_a_notification():
    app = make_app(demo=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await wait_for(pilot, lambda: any("0x0000" in n for n in notifications(app)),
                       what="the C-ECHO notification")
        assert any("C-ECHO" in n and "Success" in n for n in notifications(app))
        # and against nothing listening: an error notification, not a crash
        screen = screen_of(app)
        port = app.demo.port
        app.demo.stop()
        screen.query_one("#net-port", Input).value = str(port)
        await pilot.press("f4")
        await wait_for(pilot, lambda: any("refused" in n or "cannot connect" in n.lower()
                                          for n in notifications(app)),
                       what="the failed C-ECHO notification")


@sync
async def test_unreachable_peer_shows_the_engine_message():
    app = make_app(demo=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = screen_of(app)
        port = app.demo.port
        app.demo.stop()
        screen.query_one("#net-port", Input).value = str(port)
        screen = await run_and_wait(pilot)
        assert screen.query_one(StatusLine).state == "network"
        assert "connection refused" in status_text(screen)
        # what needs fixing is shown: the Network tab, on the address
        assert screen.form_visible and screen.query_one("#form").active == "tab-network"
        assert screen.focused is screen.query_one("#net-address")


@sync
async def test_log_pane_shows_findscu_style_lines():
    app = make_app(demo=True, demo_options={"patients": 3})
    async with app.run_test(size=SIZE) as pilot:
        screen = await run_and_wait(pilot)
        await pilot.press("f3")
        await pilot.pause()
        assert screen.form_visible and screen.query_one("#form").active == "tab-log"
        lines = screen.query_one("#log", Log).lines
        text = "\n".join(lines)
        assert "I: Requesting Association" in text
        assert "I: Find SCP Response: 1 - 0xFF00 (Pending)" in text
        assert "I: Find SCP Result: 0x0000 (Success)" in text
        n = screen.query_one(ResultsTable).total_count
        assert sum("Find SCP Response:" in line for line in lines) == n


@sync
async def test_command_palette_lists_the_main_actions():
    app = make_app(demo=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await run_and_wait(pilot)
        names = [name for name, _, _ in screen.palette_commands()]
        for wanted in ("Run query", "C-ECHO the peer", "Export results…", "Drill down",
                       "Filter rows", "Show the log", "Sort by PatientName"):
            assert wanted in names
        await pilot.press("ctrl+p")
        await pilot.pause()
        await type_text(pilot, "show the log")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert screen.form_visible and screen.query_one("#form").active == "tab-log"


# --- pure logic ---------------------------------------------------------------


def test_readable_person_names():
    assert readable_pn("Doe^John") == "Doe, John"
    assert readable_pn("Doe^John^Q^Dr^Jr") == "Doe, Dr John Q, Jr"
    assert readable_pn("Doe") == "Doe"
    assert readable_pn("Yamada^Tarou=山田^太郎") == "Yamada, Tarou = 山田, 太郎"
    assert readable_pn("A^B\\C^D") == "A, B\\C, D"


def test_table_columns_follow_key_order_without_the_level():
    keys = ["StudyDate=", "ScheduledProcedureStepSequence[0].Modality=", "PatientName="]
    ident = build_identifier(["QueryRetrieveLevel=STUDY"] + keys)
    assert table_columns(ident, keys) == [
        "StudyDate", "ScheduledProcedureStepSequence[0].Modality", "PatientName"]


def test_row_batcher_posts_the_first_row_at_once_and_batches_the_rest():
    # With a 60 s batching interval, the first row still goes out on its own at once:
    # posted before close() (which would flush it anyway), while the rows after it
    # wait for the interval or for max_rows.
    first: list[int] = []
    slow = RowBatcher(lambda rows, responses, lines, is_first: first.append(len(rows)),
                      interval=60, max_rows=3).start()
    slow.add(("a",), None, "l")
    deadline = time.monotonic() + 10
    while not first and time.monotonic() < deadline:
        time.sleep(0.001)
    assert first == [1], "the first row was not posted at once (before close())"
    for row in ("b", "c", "d"):  # max_rows: one batch of three, without the interval
        slow.add((row,), None, "l")
    deadline = time.monotonic() + 10
    while len(first) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    slow.add(("e",), None, "l")  # held: the 60 s interval has not passed
    time.sleep(0.2)
    assert first == [1, 3], "rows after the first were not batched"
    slow.close()
    assert first == [1, 3, 1]

    posted: list[tuple[float, int]] = []
    batcher = RowBatcher(lambda rows, responses, lines, is_first: posted.append(
        (time.monotonic(), len(rows))), interval=0.05, max_rows=500).start()
    batcher.add(("a",), None, "l")
    for i in range(2000):
        batcher.add((str(i),), None, "l")
    # A lone row after a pause is not held until the next response.
    time.sleep(0.2)
    batcher.add(("late",), None, "l")
    time.sleep(0.15)
    assert sum(n for _, n in posted) == 2002
    batcher.close()
    assert all(n <= 500 for _, n in posted)
    assert len(posted) < 20


@sync
async def test_markup_in_user_text_is_shown_literally():
    app = make_app(demo=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = screen_of(app)
        await pilot.click("#key-input")
        await type_text(pilot, "Foo[/x]=1")
        await pilot.press("f5")  # the typed key is bad: notified, not run
        await pilot.pause(0.2)
        assert screen._level is None
        assert any("Foo[/x]" in n for n in notifications(app))
        # a valid value with markup in it is kept as typed
        screen.query_one("#key-input", Input).value = ""
        await type_text(pilot, "StudyDescription=[b]x[/b]")
        await pilot.press("enter")
        assert "StudyDescription=[b]x[/b]" in screen.query_one(KeyEditor).keys
        await pilot.pause()


@pytest.mark.filterwarnings("ignore:Found unknown escape sequence")
def test_rows_are_terminal_safe_and_pn_readable():
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    from pydicom.uid import ImplicitVRLittleEndian

    from findtui.engine.output import top_level_tags
    from findtui.screens.query_logic import build_row, cell_formatters

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Evil\x1b[2J^[red]Mallory"
    ds.StudyDescription = "right\u202eleft"
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, True
    write_dataset(buf, ds)
    response = Pending(index=1, status=0xFF00, raw=buf.getvalue(),
                       transfer_syntax=ImplicitVRLittleEndian)
    columns = ["PatientName", "StudyDescription"]
    for tags in (None, top_level_tags(columns)):  # the Dataset way and the fast way
        row = build_row(response, columns, cell_formatters(columns), tags)
        assert row == ("Evil␛[2J^[red]Mallory", "right<U+202E>left")
    # An identifier that cannot be decoded becomes a row saying so.
    broken = Pending(index=2, status=0xFF00, raw=b"\x28\x00\x10\x00\x03\x00\x00\x00abc",
                     transfer_syntax=ImplicitVRLittleEndian)
    row = build_row(broken, columns, cell_formatters(columns), top_level_tags(columns))
    assert "could not be decoded" in row[0] and row[1] == ""


@sync
async def test_run_on_start_runs_the_request_at_once():
    request = FindRequest(network=Network("127.0.0.1", 104), model=QueryModel.STUDY,
                          identifier=build_identifier(["QueryRetrieveLevel=STUDY",
                                                       "PatientID=PAT00002", "StudyDate="]))
    app = make_app(request, demo=True, run_on_start=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = screen_of(app)
        await wait_for(pilot, lambda: screen._level is not None and not screen.running,
                       what="the query started on start")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen.query_one(ResultsTable).total_count >= 1
        assert set(column_values(screen, "PatientID")) == {"PAT00002"}
