"""The streaming results table: rows, headers, cursor, sort, filter, hostile values."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from rich.cells import cell_len
from textual.app import App, ComposeResult

from findtui.widgets.results_table import (
    IMMEDIATE_MERGE_ROWS,
    MAX_COLUMN_WIDTH,
    MERGE_DELAY,
    ResultsTable,
    short_label,
    sort_key,
    visible,
)


from pilot import sync as pilot_test  # noqa: E402


COLUMNS = ["PatientName", "PatientID", "ScheduledProcedureStepSequence[0].Modality"]


class TableApp(App[None]):
    def __init__(self, columns: list[str] = COLUMNS) -> None:
        super().__init__()
        self.columns = columns
        self.messages: list[ResultsTable.RowSelected | ResultsTable.CursorMoved] = []

    def compose(self) -> ComposeResult:
        yield ResultsTable(self.columns)

    def on_mount(self) -> None:
        self.query_one(ResultsTable).focus()

    def on_results_table_row_selected(self, message: ResultsTable.RowSelected) -> None:
        self.messages.append(message)

    def on_results_table_cursor_moved(self, message: ResultsTable.CursorMoved) -> None:
        self.messages.append(message)

    def selected(self) -> list[int]:
        return [m.source_index for m in self.messages if isinstance(m, ResultsTable.RowSelected)]

    def moved(self) -> list[int]:
        return [m.source_index for m in self.messages if isinstance(m, ResultsTable.CursorMoved)]


def screen_lines(table: ResultsTable) -> list[str]:
    """What the widget draws, line by line (line 0 is the header)."""
    return [table.render_line(y).text for y in range(table.size.height)]


def body_lines(table: ResultsTable) -> list[str]:
    return [line for line in screen_lines(table)[1:] if line.strip()]


def rows(count: int, start: int = 0) -> list[tuple[str, str, str]]:
    return [(f"Doe^John{i:05d}", str(i), "CT") for i in range(start, start + count)]


# ---------------------------------------------------------------- pure functions


def test_visible_makes_controls_visible() -> None:
    assert visible("Doe^John") == "Doe^John"
    assert visible("[bold red]x[/]") == "[bold red]x[/]"
    assert visible("山田^太郎") == "山田^太郎"
    assert visible("\x1b[31mred") == "␛[31mred"
    assert visible("\x1b]52;c;ZXZpbA==\x07") == "␛]52;c;ZXZpbA==␇"
    assert visible("a\tb\nc\rd\x00\x7f") == "a␉b␊c␍d␀␡"
    assert visible("\x9b31m") == "<U+009B>31m"
    assert visible("abc\u202edef") == "abc<U+202E>def"
    for char in "\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069\u200e\u200f\u061c":
        assert visible(char) == f"<U+{ord(char):04X}>"


def test_visible_covers_every_control_and_format_character() -> None:
    unsafe = [
        chr(code)
        for code in range(sys.maxunicode + 1)
        if unicodedata.category(chr(code)) in ("Cc", "Cf", "Cs", "Zl", "Zp")
    ]
    assert len(unsafe) > 2000
    for char in unsafe:
        shown = visible(char)
        assert shown != char
        assert all(unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in shown)


def test_sort_key_numbers_numerically_then_text_case_insensitively() -> None:
    values = ["b", "10", "9", "A", "100", "a", " 7", "C"]
    assert sorted(values, key=sort_key) == [" 7", "9", "10", "100", "A", "a", "b", "C"]


def test_short_label_is_the_last_path_component() -> None:
    assert short_label("ScheduledProcedureStepSequence[0].Modality") == "Modality"
    assert short_label("PatientName") == "PatientName"


# ---------------------------------------------------------------- rows and headers


@pilot_test
async def test_rows_and_short_headers_appear() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ResultsTable)
        table.add_rows(rows(3))
        await pilot.pause()
        lines = screen_lines(table)
        assert lines[0].split() == ["PatientName", "PatientID", "Modality"]
        assert lines[1].split() == ["Doe^John00000", "0", "CT"]
        assert lines[3].split() == ["Doe^John00002", "2", "CT"]
        assert lines[4].strip() == ""
        assert table.columns == tuple(COLUMNS)
        assert table.column_labels == ["PatientName", "PatientID", "Modality"]
        assert (table.total_count, table.displayed_count) == (3, 3)
        assert "Doe^John00001" in app.export_screenshot()


@pilot_test
async def test_header_stays_while_the_body_scrolls() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ResultsTable)
        table.add_rows(rows(100))
        await pilot.pause()
        await pilot.press("end")
        await pilot.pause()
        lines = screen_lines(table)
        assert table.scroll_y > 0
        assert lines[0].split() == ["PatientName", "PatientID", "Modality"]
        assert "Doe^John00099" in lines[-1] or "Doe^John00099" in lines[-2]
        assert all("Doe^John00000" not in line for line in lines)


@pilot_test
async def test_100k_rows_streamed_in_1k_batches() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ResultsTable)
        for batch in range(100):
            table.add_rows(rows(1000, start=batch * 1000))
            if batch % 10 == 0:
                await pilot.pause()
        await pilot.pause()
        assert (table.total_count, table.displayed_count) == (100_000, 100_000)
        assert table.virtual_size.height == 100_001  # header + rows: the scrollbar knows
        # The cursor did not move while rows streamed in; the view did not jump.
        assert (table.cursor_row, table.cursor_source_index) == (0, 0)
        assert table.scroll_y == 0
        assert app.moved() == [0]
        await pilot.press("end")
        await pilot.pause()
        assert table.cursor_source_index == 99_999
        assert "Doe^John99999" in "".join(screen_lines(table))


# ---------------------------------------------------------------- cursor


@pilot_test
async def test_cursor_keys_and_enter_post_source_indices() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ResultsTable)
        table.add_rows(rows(100))
        await pilot.pause()
        await pilot.press("down", "down", "down", "up", "enter")
        await pilot.pause()
        assert table.cursor_row == 2
        assert app.selected() == [2]
        assert app.moved() == [0, 1, 2, 3, 2]
        await pilot.press("pagedown")
        body = table.scrollable_content_region.height - 1
        assert table.cursor_row == 2 + body
        assert table.scroll_y <= table.cursor_row < table.scroll_y + body
        await pilot.press("end", "enter")
        assert table.cursor_row == 99
        await pilot.press("pageup")
        assert table.cursor_row == 99 - body
        await pilot.press("home", "enter")
        await pilot.pause()
        assert (table.cursor_row, table.scroll_y) == (0, 0)
        assert app.selected() == [2, 99, 0]


@pilot_test
async def test_cursor_row_is_drawn_in_the_cursor_style() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ResultsTable)
        table.add_rows(rows(5))
        await pilot.press("down")
        await pilot.pause()
        cursor = table.get_component_rich_style("results-table--cursor").bgcolor
        backgrounds = [{seg.style.bgcolor for seg in table.render_line(y)} for y in (1, 2, 3)]
        assert backgrounds[1] == {cursor}
        assert cursor not in backgrounds[0] | backgrounds[2]
        table.blur()  # the cursor stays visible, in its unfocused colour
        await pilot.pause()
        blurred = table.get_component_rich_style("results-table--cursor").bgcolor
        assert blurred != cursor
        assert {seg.style.bgcolor for seg in table.render_line(2)} == {blurred}


@pilot_test
async def test_enter_reports_the_source_index_in_sorted_order() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ResultsTable)
        table.add_rows([("c", "1", ""), ("a", "2", ""), ("b", "3", "")])
        table.sort_by(0)
        await pilot.press("home", "enter", "down", "enter")
        assert app.selected() == [1, 2]


@pilot_test
async def test_click_moves_cursor_and_header_click_sorts() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ResultsTable)
        table.add_rows([("c", "1", ""), ("a", "2", ""), ("b", "3", "")])
        await pilot.pause()
        await pilot.click(ResultsTable, offset=(2, 3))
        assert table.cursor_source_index == 2
        await pilot.click(ResultsTable, offset=(2, 0))
        assert (table.sort_column, table.sort_reverse) == (0, False)
        await pilot.click(ResultsTable, offset=(2, 0))
        assert (table.sort_column, table.sort_reverse) == (0, True)
        assert [line.split()[0] for line in body_lines(table)] == ["c", "b", "a"]


# ---------------------------------------------------------------- sort


@pilot_test
async def test_sort_ascending_descending_numeric_and_back() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ResultsTable)
        table.add_rows(
            [
                ("smith", "10", "CT"),
                ("Adams", "9", "MR"),
                ("brown", "100", "CT"),
                ("adams", "9", "US"),
            ]
        )
        table.sort_by(1)
        await pilot.pause()
        assert [line.split()[1] for line in body_lines(table)] == ["9", "9", "10", "100"]
        assert table.displayed_source_indices() == [1, 3, 0, 2]  # ties keep arrival order
        assert "PatientID ▲" in screen_lines(table)[0]
        table.sort_by(1, reverse=True)
        await pilot.pause()
        assert [line.split()[1] for line in body_lines(table)] == ["100", "10", "9", "9"]
        assert "PatientID ▼" in screen_lines(table)[0]
        table.sort_by(0)
        await pilot.pause()
        names = [line.split()[0] for line in body_lines(table)]
        assert names == ["Adams", "adams", "brown", "smith"]
        table.sort_by(None)
        await pilot.pause()
        names = [line.split()[0] for line in body_lines(table)]
        assert names == ["smith", "Adams", "brown", "adams"]
        assert "▲" not in screen_lines(table)[0] and "▼" not in screen_lines(table)[0]


@pilot_test
async def test_s_sorts_by_the_column_under_the_cell_cursor() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ResultsTable)
        table.add_rows([("b", "1", "z"), ("a", "2", "y")])
        await pilot.press("s")
        assert (table.sort_column, table.sort_reverse) == (0, False)
        await pilot.press("S")
        assert (table.sort_column, table.sort_reverse) == (0, True)
        await pilot.press("l", "l", "s")  # the third column, where the cell cursor is
        assert (table.sort_column, table.sort_reverse) == (2, False)
        assert table.displayed_source_indices() == [1, 0]
        assert "▲" in screen_lines(table)[0]
        await pilot.press("s")  # the same column again: descending
        assert (table.sort_column, table.sort_reverse) == (2, True)
        assert table.displayed_source_indices() == [0, 1]
        await pilot.press("s")  # and again: arrival order
        assert table.sort_column is None
        assert table.displayed_source_indices() == [0, 1]
        await pilot.press("h", "s")
        assert (table.sort_column, table.sort_reverse) == (1, False)


@pytest.mark.parametrize("total", [500, IMMEDIATE_MERGE_ROWS + 5000])
@pilot_test
async def test_rows_streamed_while_sorted_are_merged_in_order(total: int) -> None:
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ResultsTable)
        table.sort_by(1, reverse=True)
        values = [str((i * 7919) % 100_003) for i in range(total - 1)] + ["1000000"]
        for start in range(0, total, 250):
            table.add_rows([("x", v, "") for v in values[start : start + 250]])
        await pilot.pause(MERGE_DELAY * 3)
        # Drawn without asking the table anything first: the merge ran by itself,
        # including the last batch (whose value sorts first).
        assert table.virtual_size.height == total + 1
        assert body_lines(table)[0].split()[1] == "1000000"
        expected = sorted(range(total), key=lambda i: int(values[i]), reverse=True)
        assert table.displayed_source_indices() == expected
        assert table.displayed_count == total


@pilot_test
async def test_cursor_keeps_its_row_and_screen_line_when_rows_merge_above() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ResultsTable)
        table.add_rows([("x", str(i), "") for i in range(100, 200)])
        table.sort_by(1)
        table.move_cursor(50)
        await pilot.pause()
        source, screen_line = table.cursor_source_index, table.cursor_row - table.scroll_y
        table.add_rows([("x", str(i), "") for i in range(10)])  # all sort above the cursor
        await pilot.pause()
        assert table.cursor_source_index == source
        assert table.cursor_row == 60
        assert table.cursor_row - table.scroll_y == screen_line
        assert "150" in screen_lines(table)[1 + screen_line]


# ---------------------------------------------------------------- filter


@pilot_test
async def test_filter_shows_matching_rows_and_applies_to_new_rows() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ResultsTable)
        table.add_rows(
            [("SMITH^Ann", "1", "CT"), ("Jones^Bob", "2", "MR"), ("Smithers^C", "3", "US")]
        )
        table.set_filter("smith")
        await pilot.pause()
        assert [line.split()[0] for line in body_lines(table)] == ["SMITH^Ann", "Smithers^C"]
        assert (table.displayed_count, table.total_count) == (2, 3)
        table.add_rows([("Brown", "4", "CT"), ("blacksmith", "5", "MR")])
        await pilot.pause()
        assert [line.split()[0] for line in body_lines(table)] == [
            "SMITH^Ann",
            "Smithers^C",
            "blacksmith",
        ]
        table.set_filter("smithe")  # narrowing
        assert table.displayed_source_indices() == [2]
        table.set_filter("MR")  # a different column
        assert table.displayed_source_indices() == [1, 4]
        table.set_filter("1ct")  # never across two cells
        assert table.displayed_count == 0
        table.set_filter("")
        await pilot.pause()
        assert (table.displayed_count, table.total_count) == (5, 5)
        assert len(body_lines(table)) == 5


@pilot_test
async def test_filter_and_sort_together() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ResultsTable)
        table.add_rows([("a", str(i), "CT" if i % 2 else "MR") for i in range(20)])
        table.sort_by(1, reverse=True)
        table.set_filter("ct")
        assert table.displayed_source_indices() == list(range(19, 0, -2))
        table.add_rows([("a", "25", "CT"), ("a", "24", "MR")])
        assert table.displayed_source_indices()[:2] == [20, 19]
        table.set_filter("")
        assert table.displayed_source_indices()[:3] == [20, 21, 19]


@pilot_test
async def test_cursor_returns_to_top_when_its_row_is_filtered_out() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ResultsTable)
        table.add_rows([("a", str(i), "CT" if i < 50 else "MR") for i in range(100)])
        table.move_cursor(10)
        table.set_filter("ct")
        assert table.cursor_source_index == 10  # still shown: kept
        table.set_filter("mr")
        await pilot.pause()
        assert (table.cursor_row, table.cursor_source_index) == (0, 50)
        assert app.moved()[-1] == 50


# ---------------------------------------------------------------- plain, visible text


@pilot_test
async def test_hostile_values_are_shown_as_visible_plain_text() -> None:
    hostile = [
        ("\x1b]52;c;ZXZpbA==\x07", "\x1b[2J\x1b[31mred", "[bold red]x[/]"),
        ("abc\u202edef", "\x9b31m", "bell\x07"),
    ]
    app = TableApp(["Bad\x1b[5mLabel", "PatientID", "Modality"])
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ResultsTable)
        table.add_rows(hostile)
        await pilot.pause()
        drawn = "".join(
            segment.text for y in range(table.size.height) for segment in table.render_line(y)
        )
        for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
            assert raw not in drawn
        assert "[bold red]x[/]" in drawn
        assert "␛]52;c;ZXZpbA==␇" in drawn
        assert "␛[2J␛[31mred" in drawn
        assert "abc<U+202E>def" in drawn
        assert "<U+009B>31m" in drawn
        assert "Bad␛[5mLabel" in screen_lines(table)[0]
        screenshot = app.export_screenshot()
        assert "\x1b" not in screenshot and "\x07" not in screenshot
        assert "␛]52;c;ZXZpbA==␇" in screenshot
        assert "red]x[/]" in screenshot  # the SVG writes the space as &#160;
        assert table.get_row(0) == hostile[0]  # stored as given


@pilot_test
async def test_wide_characters_align_and_long_values_are_capped() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ResultsTable)
        table.add_rows(
            [("山田^太郎", "id1", "CT"), ("Doe^John", "id2", "MR"), ("長" * 30, "id3", "US")]
        )
        await pilot.pause()
        lines = screen_lines(table)
        columns_at = [
            cell_len(line[: line.index(f"id{n}")]) for n, line in enumerate(lines[1:4], 1)
        ]
        assert columns_at[0] == columns_at[1] == columns_at[2]
        assert table.column_widths[0] == MAX_COLUMN_WIDTH
        assert "…" in lines[3]
        assert all(cell_len(line) == table.size.width for line in lines)


@pilot_test
async def test_left_and_right_scroll_header_and_body_by_column() -> None:
    columns = [f"Column{n}" for n in range(6)]
    app = TableApp(columns)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ResultsTable)
        table.add_rows([tuple(f"{n}" * 60 for n in range(6))])
        await pilot.pause()
        assert table.column_widths == [MAX_COLUMN_WIDTH] * 6
        await pilot.press("right")
        await pilot.pause()
        assert table.scroll_x == MAX_COLUMN_WIDTH + 2
        assert screen_lines(table)[0].split()[0] == "Column1"
        assert screen_lines(table)[1].strip().startswith("1111")
        await pilot.press("left")
        await pilot.pause()
        assert table.scroll_x == 0
        assert screen_lines(table)[0].split()[0] == "Column0"


@pilot_test
async def test_clear_and_set_columns() -> None:
    app = TableApp()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(ResultsTable)
        table.add_rows(rows(50))
        await pilot.press("end")
        table.clear()
        await pilot.pause()
        assert (table.total_count, table.displayed_count) == (0, 0)
        assert table.cursor_source_index is None
        assert body_lines(table) == []
        assert screen_lines(table)[0].split() == ["PatientName", "PatientID", "Modality"]
        table.set_columns(["StudyDate"])
        table.add_rows([("20240101",)])
        await pilot.pause()
        assert screen_lines(table)[0].split() == ["StudyDate"]
        assert body_lines(table)[0].split() == ["20240101"]


# ---------------------------------------------------------------- snapshot


def test_snapshot_80x24(snap_compare) -> None:
    names = ["Doe^John", "山田^太郎", "Müller^Jürgen", "O'Brien^Pat", "Smith^Ann"]
    modalities = ["CT", "MR", "US", "CR", "DX"]
    columns = [
        "PatientName",
        "PatientID",
        "StudyDate",
        "ModalitiesInStudy",
        "StudyDescription",
        "ScheduledProcedureStepSequence[0].Modality",
    ]
    data = [
        (
            names[i % 5],
            f"{(i * 37) % 1000:04d}",
            f"2024{(i % 12) + 1:02d}{(i % 28) + 1:02d}",
            modalities[i % 5],
            {3: "[bold red]not markup[/]", 4: "bidi \u202eevil"}.get(i, f"Study {i}"),
            modalities[(i + 2) % 5],
        )
        for i in range(30)
    ]

    async def run_before(pilot) -> None:
        table = pilot.app.query_one(ResultsTable)
        table.add_rows(data)
        table.sort_by(1)
        await pilot.press("down", "down")
        await pilot.pause()

    assert snap_compare(TableApp(columns), terminal_size=(80, 24), run_before=run_before)
