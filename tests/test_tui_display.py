"""The readable display layer (issue 13): dates, times, date-times, names and SOP classes
as people read them, short column titles, columns folded when empty or (below a
drill-down) the same on every row, and `v` for the raw DICOM values. Exports stay raw."""

from __future__ import annotations

import pytest

from findtui.app import make_app
from findtui.engine.display import (
    column_title,
    filter_needles,
    fold,
    readable_date,
    readable_datetime,
    readable_time,
    readable_uid,
)
from findtui.screens.export import ExportChoice, write_export
from findtui.widgets.results_table import ResultsTable

from pilot import run_and_wait, sync, wait_for  # noqa: E402

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


def demo_app():
    app = make_app(demo=True, demo_options={"patients": 30, "seed": 7})
    app.show_timing = False
    return app


def test_values_read_as_people_read_them():
    assert readable_date("20190826") == "2019-08-26"
    assert readable_date("20190826\\20200101") == "2019-08-26\\2020-01-01"
    assert readable_date("2019.08.26") == "2019-08-26"
    assert readable_date("2019") == "2019" and readable_date("") == ""
    assert readable_time("173000") == "17:30:00"
    assert readable_time("1730") == "17:30" and readable_time("17") == "17"
    assert readable_time("173000.123456") == "17:30:00.123456"
    assert readable_time("17:30:00") == "17:30:00" and readable_time("abc") == "abc"
    assert readable_datetime("20190826173000") == "2019-08-26 17:30:00"
    assert readable_datetime("20190826173000.5+0100") == "2019-08-26 17:30:00.5+01:00"
    assert readable_datetime("20190826-0500") == "2019-08-26-05:00"
    assert readable_datetime("2019") == "2019"
    assert readable_uid("1.2.840.10008.5.1.4.1.1.2") == "CT Image Storage"
    assert readable_uid("2.25.1234") == "2.25.1234"  # an instance UID stays a UID
    assert column_title("PatientBirthDate") == "Birth date"
    assert column_title("ScheduledProcedureStepSequence[0].Modality") == "Modality"
    assert fold("Müller") == "muller" and fold("ÉCOLE") == "ecole"
    assert filter_needles("2019-08") == ("2019-08", "201908")
    assert filter_needles("17:30") == ("17:30", "1730")
    assert filter_needles("Müller, J") == ("muller, j", "muller^j")
    assert filter_needles("CT-HEAD") == ("ct-head",)


@pytest.mark.parametrize("size", SIZES)
@sync
async def test_readable_values_and_titles_then_v_shows_raw(size, tmp_path):
    app = demo_app()
    async with app.run_test(size=size) as pilot:
        screen = await run_and_wait(pilot)
        table = screen.query_one(ResultsTable)
        assert table.readable
        labels = table.column_labels
        assert labels[:4] == ["Name", "ID", "Birth date", "Date"]
        assert "Accession" in labels and "Modalities" in labels
        header = table.render_line(0).text
        assert "Birth date" in header and "PatientBirthDate" not in header
        row = table.render_line(1).text
        raw = table.get_row(table.cursor_source_index)
        date = raw[3]
        assert f"{date[:4]}-{date[4:6]}-{date[6:]}" in row and date not in row
        assert ", " in row and "^" not in row  # Family, Given
        # the filter finds the date as shown and as sent
        table.set_filter(f"{date[:4]}-{date[4:6]}")
        assert table.displayed_count >= 1
        table.set_filter("")

        await pilot.press("v")
        await pilot.pause()
        assert not table.readable
        assert table.column_labels[:4] == ["PatientName", "PatientID", "PatientBirthDate",
                                           "StudyDate"]
        row = table.render_line(1).text
        assert date in row and "^" in row
        await pilot.press("v")
        await pilot.pause()
        assert table.readable and "Birth date" in table.render_line(0).text

        # exports stay raw DICOM whatever the table shows
        level = screen.current_level
        text = write_export(ExportChoice("csv", "all", tmp_path, "out.csv"), level.responses,
                            level.request, level.columns)
        csv = (tmp_path / "out.csv").read_text()
        assert text and date in csv and f"{date[:4]}-{date[4:6]}" not in csv


@pytest.mark.parametrize("size", SIZES)
@sync
async def test_a_drill_down_folds_the_parents_keys_and_empty_columns(size):
    app = demo_app()
    async with app.run_test(size=size) as pilot:
        screen = await run_and_wait(pilot)
        table = screen.query_one(ResultsTable)
        assert not table.folded_columns
        depth = len(screen._stack)
        await pilot.press("d")
        await wait_for(pilot, lambda: len(screen._stack) > depth and not screen.running
                       and screen.current_level.state != "running", what="the drill-down")
        await pilot.pause()
        columns = table.columns
        study_uid = columns.index("StudyInstanceUID")
        assert study_uid in table.folded_columns  # the parent's key, the same on every row
        header = table.render_line(0).text
        assert "Study UID" not in header and "Series UID" in header
        # the cell cursor skips the folded column
        for _ in columns:
            await pilot.press("l")
            assert table.cursor_column != study_uid
        await pilot.press("v")  # raw: every column
        await pilot.pause()
        assert not table.folded_columns and "StudyInstanceUID" in "".join(table.column_labels)
        await pilot.press("v")
        await pilot.pause()
        assert study_uid in table.folded_columns


@sync
async def test_a_column_empty_on_every_row_is_folded():
    from textual.app import App

    class TableApp(App):
        def compose(self):
            yield ResultsTable(["PatientName", "OtherPatientIDs", "StudyDate"])

    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ResultsTable)
        assert not table.folded_columns  # no rows yet: every header shows
        table.add_rows([("Doe^Jane", "", "20190826"), ("Roe^Rick", "", "20200101")])
        await pilot.pause()
        assert table.folded_columns == {1}
        assert "OtherPatientIDs" not in table.render_line(0).text
        table.add_rows([("Poe^Edgar", "X1", "")])  # a value arrives: the column is back
        await pilot.pause()
        assert not table.folded_columns and "OtherPatientIDs" in table.render_line(0).text
