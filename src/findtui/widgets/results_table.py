"""A virtualised, streaming table for C-FIND responses.

Only the visible lines are ever rendered (Textual's Line API), so the cost of a
frame depends on the terminal size, never on the number of rows.

Design, in short:

* Rows are kept as a list of tuples of display strings, in the order they
  arrived (the *source* order; a row's position there is its *source index*).
* What is shown is a list of source indices, ``_order``; ``None`` stands for
  "every row, in arrival order" so the common case (no sort, no filter) costs
  nothing per appended row.
* Filter: a lower-cased "haystack" string per row is built the first time a
  filter is set and then kept up to date on append, so each keystroke is one
  C-speed scan; narrowing a filter only scans the rows currently shown.
* Sort: one column, ties keep arrival order. The sort keys (plain strings, see
  `sort_key`) of the sorted column are cached per row. Rows that arrive while
  sorted wait in ``_pending`` and are merged in at most every ``MERGE_DELAY``
  seconds (at once while the table is small, or when something asks for the
  displayed order); a merge is one Timsort pass over two sorted runs, O(n) in C
  (a few ms at 100k rows), never a full re-sort per batch.
* The cursor sticks to its row (source index), not to a screen position: rows
  merged in above it shift the view with it so nothing jumps under the user.
"""

from __future__ import annotations

import contextlib

from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style

from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer

from findtui.engine.display import filter_needles, fold
from findtui.engine.phi import PhiMask, is_phi
from findtui.engine.sanitize import visible

__all__ = ["ResultsTable", "TableView", "short_label", "sort_key", "visible"]

MAX_COLUMN_WIDTH = 40
"""Columns never grow wider than this many cells; longer values end in '…'."""

SAMPLE_ROWS = 200
"""Column widths are measured on the first rows that arrive plus every row drawn."""

MERGE_DELAY = 0.1
"""While sorted, streamed rows are merged into the sorted order at most this often."""

IMMEDIATE_MERGE_ROWS = 10_000
"""Below this many shown rows a merge is cheap (< 1 ms), so it happens at once."""


def sort_key(value: str) -> str:
    """The sort key of one cell: numbers (all ASCII digits) first, in numeric order,
    then text, case-insensitively.

    Keys are plain strings (length-prefixed digits for numbers), which Python
    compares several times faster than tuples.
    """
    stripped = value.strip()
    if stripped.isascii() and stripped.isdigit():
        digits = stripped.lstrip("0") or "0"
        return f"\x00{len(digits):06d}{digits}"
    return "\x01" + value.casefold()


def short_label(path: str) -> str:
    """The last component of a key path.

    'ScheduledProcedureStepSequence[0].Modality' -> 'Modality'.
    """
    return path.rsplit(".", 1)[-1] or path


def _fit(text: str, width: int) -> str:
    """Pad or truncate (with an ellipsis) `text` to exactly `width` cells."""
    length = cell_len(text)
    if length <= width:
        return text + " " * (width - length)
    return set_cell_size(text, width - 1) + "…"


@dataclass(frozen=True)
class TableView:
    """Where the user is in a table: sort, filter, current row and cell, scroll.

    Columns are named by their key path and the row by its arrival index and its
    cells, so a view can be put back on the same rows (Backspace after a drill-down)
    or on a re-run of the same query (F5), where the row is found again by its cells.
    """

    sort_column: str | None = None
    sort_reverse: bool = False
    filter_text: str = ""
    cursor_source: int | None = None
    cursor_row: int = 0
    cursor_cells: tuple[str, ...] | None = None
    screen_line: int = 0  # the cursor's line in the body (0: the first under the header)
    cursor_column: str | None = None
    scroll_x: int = 0


@lru_cache(maxsize=256)
def _column_meta(column: int) -> Style:
    return Style.from_meta({"column": column})


class ResultsTable(ScrollView, can_focus=True):
    """A read-only table of C-FIND matches that takes rows as they stream in.

    Rows are sequences of display strings, one per column. They are shown as
    plain text (no markup) with control characters made visible.
    """

    ALLOW_MAXIMIZE = True
    HELP_TITLE = "Results table"

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "results-table--header",
        "results-table--cursor",
        "results-table--cell-cursor",
        "results-table--empty",
    }

    DEFAULT_CSS = """
    ResultsTable {
        height: 1fr;
        background: $surface;
        color: $foreground;
        & > .results-table--header {
            background: $panel;
            color: $foreground;
            text-style: bold;
        }
        &:ansi > .results-table--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .results-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        /* ansi themes have no blurred cursor colour: keep the row visible */
        &:ansi > .results-table--cursor {
            text-style: underline;
        }
        /* the current cell (y copies it): reversed, visible without colour too */
        & > .results-table--cell-cursor {
            text-style: reverse;
        }
        & > .results-table--empty {
            color: $text-muted;
            text-style: italic;
        }
        &:focus {
            background-tint: $foreground 5%;
            & > .results-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_row", "Detail", id="results.select"),
        Binding("s", "sort_column", "Sort", id="results.sort"),
        Binding("S", "sort_reverse", "Reverse", id="results.sort_reverse"),
        Binding("up,k", "cursor_up", "Up", show=False, id="results.cursor_up"),
        Binding("down,j", "cursor_down", "Down", show=False, id="results.cursor_down"),
        Binding("pageup", "cursor_page_up", "Page up", show=False, id="results.page_up"),
        Binding(
            "pagedown", "cursor_page_down", "Page down", show=False, id="results.page_down"
        ),
        Binding("home,g", "cursor_first", "First row", show=False, id="results.first"),
        Binding("end,G", "cursor_last", "Last row", show=False, id="results.last"),
        Binding("left,h", "column_left", "Previous column", show=False, id="results.column_left"),
        Binding("right,l", "column_right", "Next column", show=False, id="results.column_right"),
        Binding("space", "toggle_mark", "Mark", show=False, id="results.mark"),
        Binding("y", "copy_cell", "Copy cell", show=False, id="results.copy_cell"),
        Binding("Y", "copy_row", "Copy row", show=False, id="results.copy_row"),
    ]

    class _RowMessage(Message):
        def __init__(self, results_table: ResultsTable, source_index: int) -> None:
            super().__init__()
            self.results_table = results_table
            self.source_index = source_index
            """Index of the row in arrival order (as passed to `add_rows`)."""

        @property
        def control(self) -> ResultsTable:
            return self.results_table

    class RowSelected(_RowMessage):
        """Enter (or a double click) on a row."""

    class CursorMoved(_RowMessage):
        """The row under the cursor changed."""

    class MarksChanged(Message):
        """Rows were marked or unmarked (``count``: how many are marked now)."""

        def __init__(self, results_table: ResultsTable, count: int) -> None:
            super().__init__()
            self.results_table = results_table
            self.count = count

        @property
        def control(self) -> ResultsTable:
            return self.results_table

    class PositionChanged(Message):
        """The cursor's place in the displayed order changed (``row`` None: nothing shown)."""

        def __init__(self, results_table: ResultsTable, row: int | None) -> None:
            super().__init__()
            self.results_table = results_table
            self.row = row

        @property
        def control(self) -> ResultsTable:
            return self.results_table

    def __init__(
        self,
        columns: Sequence[str] = (),
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self._columns: tuple[str, ...] = ()
        self._labels: list[str] = []
        self._titles: list[str] = []  # the readable header titles (Name, Date, …)
        self._formatters: list[Callable[[str], str] | None] = []  # the readable values
        self._readable = True  # False: raw DICOM values, keywords, every column
        self._shown: list[int] = []  # the columns drawn (readable: without the folded ones)
        self._empty: set[int] = set()  # columns empty on every row so far
        self._constant: list[int] = []  # columns folded while the same on every row
        self._same: dict[int, str | None] = {}  # of those, the ones the same so far
        self._folded: frozenset[int] = frozenset()
        self._phi: frozenset[int] = frozenset()  # columns of patient data (masked when asked)
        self.mask: PhiMask | None = None  # masks patient data while its ``on`` is true
        self._header_widths: list[int] = []
        self._widths: list[int] = []
        self._offsets: list[int] = []
        self._total_width = 0
        self._rows: list[tuple[str, ...]] = []
        self._order: list[int] | None = None
        self._pending: list[int] = []
        self._sort_column: int | None = None
        self._sort_reverse = False
        self._sort_keys: list[str] | None = None
        self._filter = ""
        self._needles: tuple[str, ...] = ()
        self._filter_text = ""
        self._haystack: list[str] | None = None
        self._cursor_row = 0
        self._cursor_source: int | None = None
        self._cursor_pinned = False
        self._cursor_column = 0
        self._position: int | None = None
        self._marked: set[int] = set()  # source indices marked with Space (to retrieve)
        # entered while drawing (a context manager, e.g. the query screen's UiGate: its
        # query thread steps aside while the table draws)
        self.drawing = contextlib.nullcontext()
        self.empty_text = ""  # shown in place of rows when none is shown
        self._merge_timer: Timer | None = None
        self._strip_cache: LRUCache[tuple[int, bool], Strip] = LRUCache(256)
        self._styles: tuple[Style, Style, Style] | None = None
        self.set_columns(columns)

    # ------------------------------------------------------------------ public API

    @property
    def columns(self) -> tuple[str, ...]:
        """The full column labels (key paths), as given to `set_columns`."""
        return self._columns

    @property
    def column_labels(self) -> list[str]:
        """Each column's header label as shown (its title, or raw: the last key path
        component), folded columns included."""
        return list(self._labels)

    @property
    def shown_columns(self) -> list[int]:
        """The columns drawn, in order (readable values fold the empty and constant ones)."""
        return list(self._shown)

    @property
    def folded_columns(self) -> frozenset[int]:
        return self._folded if self._readable else frozenset()

    @property
    def readable(self) -> bool:
        """True: values and titles as formatted (dates 2019-08-26…); False: raw DICOM."""
        return self._readable

    @readable.setter
    def readable(self, readable: bool) -> None:
        if readable == self._readable:
            return
        self._readable = readable
        self._set_labels()
        self.redraw_cells()

    def redraw_cells(self) -> None:
        """Cells shown differently (readable or raw, patient data masked or not): measure
        and draw again."""
        self._widths = list(self._header_widths)
        self._measure(self._rows[:SAMPLE_ROWS])
        self._update_folds(force=True)
        self._strip_cache.clear()
        self.refresh()

    def shown_cell(self, row: Sequence[str], column: int) -> str:
        """A cell as the table shows it (formatted unless raw, terminal-safe)."""
        value = row[column] if column < len(row) else ""
        fmt = self._formatters[column] if self._readable and self._formatters else None
        shown = fmt(value) if fmt is not None and value else value
        mask = self.mask
        if mask is not None and mask.on and column in self._phi:
            shown = mask.value(self._columns[column], value, shown=shown)
        return visible(shown)

    @property
    def column_widths(self) -> list[int]:
        """The current width of each column, in cells, without padding."""
        return list(self._widths)

    @property
    def total_count(self) -> int:
        """Number of rows received (since the last `clear`)."""
        return len(self._rows)

    @property
    def displayed_count(self) -> int:
        """Number of rows that pass the filter (shown, or about to be merged in)."""
        return self._shown_count() + len(self._pending)

    @property
    def sort_column(self) -> int | None:
        """The column the rows are sorted by, or None for arrival order."""
        return self._sort_column

    @property
    def sort_reverse(self) -> bool:
        """True if sorted in descending order."""
        return self._sort_reverse

    @property
    def filter_text(self) -> str:
        """The current filter, as given to `set_filter`."""
        return self._filter_text

    @property
    def cursor_row(self) -> int:
        """Cursor position in the displayed order (0 when nothing is shown)."""
        self._merge_pending()
        return self._cursor_row

    @cursor_row.setter
    def cursor_row(self, row: int) -> None:
        self.move_cursor(row)

    @property
    def cursor_source_index(self) -> int | None:
        """Arrival index of the row under the cursor, or None when nothing is shown."""
        self._merge_pending()
        return self._cursor_source

    @property
    def cursor_column(self) -> int:
        """The column of the current cell (Left/Right move it; y copies the cell)."""
        return self._cursor_column

    @property
    def cursor_pinned(self) -> bool:
        """True once the cursor was moved (by the user or `move_cursor`) since `clear`."""
        return self._cursor_pinned

    def row_of_source(self, source: int) -> int | None:
        """The displayed position of the row with this arrival index (None: not shown)."""
        self._merge_pending()
        return self._row_of(source)

    def view_state(self) -> TableView:
        """Sort, filter, cursor and scroll, to put back later with `restore_view`."""
        source = self.cursor_source_index
        column = self._cursor_column
        return TableView(
            sort_column=None if self._sort_column is None else self._columns[self._sort_column],
            sort_reverse=self._sort_reverse,
            filter_text=self._filter_text,
            cursor_source=source,
            cursor_row=self._cursor_row,
            cursor_cells=None if source is None else self._rows[source],
            screen_line=max(0, self._cursor_row - int(self.scroll_y)),
            cursor_column=self._columns[column] if column < len(self._columns) else None,
            scroll_x=int(self.scroll_x),
        )

    def restore_view(self, view: TableView) -> None:
        """Sort and filter as in ``view``; the cursor back on its row (when it is here),
        on the same screen line, in the same column."""
        columns = self._columns
        self.set_filter(view.filter_text)
        if view.sort_column in columns:
            self.sort_by(columns.index(view.sort_column), reverse=view.sort_reverse)
        else:
            self.sort_by(None)
        if view.cursor_column in columns:
            self._cursor_column = columns.index(view.cursor_column)
        if view.cursor_source is not None and view.cursor_source < len(self._rows):
            self.place_cursor(view.cursor_source, view.screen_line)
        self.scroll_to(x=min(view.scroll_x, self.max_scroll_x), animate=False, force=True)

    def place_cursor(self, source: int, screen_line: int = 0) -> bool:
        """The cursor on the row with this arrival index, ``screen_line`` lines under the
        header if the rows allow it; False if the row is not shown (filtered out)."""
        row = self.row_of_source(source)
        if row is None:
            return False
        self.move_cursor(row)
        line = max(0, min(screen_line, self._body_height() - 1))
        self.scroll_to(y=max(0, row - line), animate=False, force=True)
        return True

    def cell_text(self) -> tuple[str, str] | None:
        """(column label, text) of the current cell, as shown; None when nothing is shown."""
        source = self.cursor_source_index
        if source is None or not self._columns:
            return None
        row = self._rows[source]
        column = self._cursor_column
        return self._labels[column], self.shown_cell(row, column)

    def row_text(self) -> str | None:
        """The row under the cursor as shown, its cells separated by tabs."""
        source = self.cursor_source_index
        if source is None:
            return None
        row = self._rows[source]
        return "\t".join(self.shown_cell(row, column) for column in self._shown)

    @property
    def marked(self) -> list[int]:
        """The source indices of the marked rows, in arrival order."""
        return sorted(self._marked)

    def toggle_mark(self, source: int) -> None:
        if source in self._marked:
            self._marked.discard(source)
        else:
            self._marked.add(source)
        self._strip_cache.clear()
        self.refresh()
        self.post_message(self.MarksChanged(self, len(self._marked)))

    def clear_marks(self) -> None:
        if self._marked:
            self._marked.clear()
            self._strip_cache.clear()
            self.refresh()
            self.post_message(self.MarksChanged(self, 0))

    def set_empty_text(self, text: str) -> None:
        """What the body says while no row is shown (e.g. "No matches for …")."""
        if text != self.empty_text:
            self.empty_text = text
            self.refresh()

    def get_row(self, source_index: int) -> tuple[str, ...]:
        """The row with this arrival index, as it was added."""
        return self._rows[source_index]

    def displayed_source_indices(self) -> list[int]:
        """Arrival indices of the shown rows, in display order (e.g. for export)."""
        self._merge_pending()
        if self._order is None:
            return list(range(len(self._rows)))
        return list(self._order)

    def set_columns(self, labels: Iterable[str], *, titles: Sequence[str] | None = None,
                    formatters: Sequence[Callable[[str], str] | None] | None = None,
                    constant: Iterable[int] = ()) -> None:
        """Set the columns (full key paths) and remove every row. Resets the sort.

        Readable (the default): ``titles`` head the columns, ``formatters`` make values
        readable, and a column empty on every row, or one of ``constant`` with the
        same value on every row, is folded away. Raw (``readable = False``): keywords,
        the values as added, every column."""
        self._columns = tuple(labels)
        count = len(self._columns)
        self._titles = list(titles) if titles is not None else [
            short_label(label) for label in self._columns]
        self._formatters = list(formatters) if formatters is not None else [None] * count
        self._constant = [c for c in constant if 0 <= c < count]
        self._phi = frozenset(i for i, c in enumerate(self._columns) if is_phi(c))
        self._set_labels()
        self._sort_column = None
        self._sort_reverse = False
        self._cursor_column = 0
        self.clear()

    def clear(self) -> None:
        """Remove every row. Columns, filter and sort column are kept."""
        self._stop_merge_timer()
        self._rows = []
        self._pending = []
        self._sort_keys = [] if self._sort_column is not None else None
        self._haystack = [] if self._filter else None
        self._order = [] if (self._filter or self._sort_column is not None) else None
        self._widths = list(self._header_widths)
        self._empty = set(range(len(self._columns)))
        self._same = dict.fromkeys(self._constant)
        self._update_folds(force=True)
        self._layout_columns()
        self._cursor_row = 0
        self._cursor_source = None
        self._cursor_pinned = False
        if self._marked:
            self._marked.clear()
            self.post_message(self.MarksChanged(self, 0))
        self._strip_cache.clear()
        self._post_position()
        self._update_virtual_size()
        if self.is_mounted:
            self.scroll_to(0, 0, animate=False, force=True)
        self.refresh()

    def add_rows(self, rows: Sequence[Sequence[str]]) -> None:
        """Append rows of display strings. Amortised O(len(rows)), whatever the row count."""
        if not rows:
            return
        start = len(self._rows)
        shown_before = self._shown_count()
        new_rows = list(map(tuple, rows))
        self._rows.extend(new_rows)
        end = len(self._rows)

        self._track_folds(new_rows)
        if start < SAMPLE_ROWS and self._measure(new_rows[: SAMPLE_ROWS - start]):
            self._layout_columns()
            self._strip_cache.clear()
            self.refresh()

        matches: Iterable[int] = range(start, end)
        if self._haystack is not None:
            self._haystack.extend(map(self._haystack_of, new_rows))
            if self._filter:
                matches = self._matching(range(start, end))
        if self._sort_keys is not None:
            column = self._sort_column
            self._sort_keys.extend(
                sort_key(row[column]) if column < len(row) else sort_key("")
                for row in new_rows
            )

        if self._sort_column is not None:
            self._pending.extend(matches)
            if self._pending:
                self._schedule_merge()
            return
        if self._order is not None:
            self._order.extend(matches)
        self._rows_appended(shown_before)

    def sort_by(self, column: int | None, reverse: bool = False) -> None:
        """Sort by one column (ties keep arrival order); None restores arrival order."""
        if column is not None and not 0 <= column < len(self._columns):
            raise IndexError(f"no column {column}")
        if column is not None and column != self._sort_column:
            self._sort_keys = [
                sort_key(row[column]) if column < len(row) else sort_key("")
                for row in self._rows
            ]
        elif column is None:
            self._sort_keys = None
        self._sort_column = column
        self._sort_reverse = reverse if column is not None else False
        self._rebuild_order()

    def set_filter(self, text: str) -> None:
        """Show only rows where some cell contains `text` as sent or as shown (a date, time
        or name typed as shown is looked for as sent), whatever the case and accents
        ('muller' finds 'Müller'); '' shows all."""
        needle = fold(text)
        self._filter_text = text
        if needle == self._filter:
            return
        previous, self._filter = self._filter, needle
        self._needles = filter_needles(text)
        if needle and self._haystack is None:
            self._haystack = list(map(self._haystack_of, self._rows))
        if needle and previous and previous in needle and len(self._needles) == 1:
            # Narrowing: only the rows shown can still match, and their order holds.
            self._merge_pending()
            current = self._order if self._order is not None else range(len(self._rows))
            self._order = self._matching(current)
            self._reordered(keep_view=False)
        else:
            self._rebuild_order()

    def move_cursor(self, row: int) -> None:
        """Move the cursor to a position in the displayed order and scroll it into view."""
        self._merge_pending()
        self._cursor_pinned = True
        self._set_cursor(row)
        self._scroll_cursor_into_view()

    # -------------------------------------------------------------------- actions

    def action_select_row(self) -> None:
        source = self.cursor_source_index
        if source is not None:
            self.post_message(self.RowSelected(self, source))

    def action_toggle_mark(self) -> None:
        """Mark or unmark the current row (a ● before it), then move down, as in a file
        manager: Space Space Space marks three rows."""
        source = self.cursor_source_index
        if source is not None:
            self.toggle_mark(source)
            self.move_cursor(self.cursor_row + 1)

    def action_cursor_up(self) -> None:
        self.move_cursor(self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self.cursor_row + 1)

    def action_cursor_page_up(self) -> None:
        self._page(-1)

    def action_cursor_page_down(self) -> None:
        self._page(+1)

    def action_cursor_first(self) -> None:
        self.move_cursor(0)

    def action_cursor_last(self) -> None:
        self.move_cursor(self._shown_count() + len(self._pending) - 1)

    def action_column_right(self) -> None:
        self._step_column(+1)

    def action_column_left(self) -> None:
        self._step_column(-1)

    def _step_column(self, step: int) -> None:
        shown = self._shown
        if not shown:
            return
        current = self._cursor_column
        if current in shown:
            place = shown.index(current) + step
        else:  # on a folded column: the next shown one that way
            place = bisect_right(shown, current) - (1 if step < 0 else 0)
        self.move_column(shown[max(0, min(place, len(shown) - 1))])

    def move_column(self, column: int) -> None:
        """Put the cell cursor on ``column`` (clamped, a shown one) and scroll it into view."""
        if not self._columns or not self._shown:
            return
        column = max(0, min(column, len(self._columns) - 1))
        if column not in self._shown:
            column = min(self._shown, key=lambda c: (abs(c - column), c))
        if column != self._cursor_column:
            self._cursor_column = column
            self._strip_cache.clear()
            self._refresh_row(self._cursor_row)
        left = self._offsets[column]
        right = left + self._widths[column] + 2
        x, width = int(self.scroll_x), self.scrollable_content_region.width
        if left < x or column == self._shown[0]:
            self.scroll_to(x=left, animate=False, force=True)
        elif right > x + width:
            self.scroll_to(x=min(self.max_scroll_x, max(left, right - width)), animate=False,
                           force=True)

    def action_copy_cell(self) -> None:
        cell = self.cell_text()
        if cell is None:
            return
        label, text = cell
        self.app.copy_to_clipboard(text)
        self.notify(text if len(text) <= 60 else text[:59] + "…",
                    title=f"Copied {label}", timeout=3, markup=False)

    def action_copy_row(self) -> None:
        text = self.row_text()
        if text is None:
            return
        self.app.copy_to_clipboard(text)
        self.notify(f"{len(self._shown)} cells, separated by tabs", title="Copied the row",
                    timeout=3, markup=False)

    def action_sort_column(self) -> None:
        """Sort by the column of the cell cursor; again: descending; again: arrival order."""
        if not self._columns:
            return
        column = self._cursor_column
        if self._sort_column != column:
            self.sort_by(column)
        elif not self._sort_reverse:
            self.sort_by(column, reverse=True)
        else:
            self.sort_by(None)

    def action_sort_reverse(self) -> None:
        """Flip the direction of the current sort (sorting by column 0 if unsorted)."""
        if not self._columns:
            return
        if self._sort_column is None:
            self.sort_by(0, reverse=True)
        else:
            self.sort_by(self._sort_column, reverse=not self._sort_reverse)

    # ---------------------------------------------------------------------- mouse

    def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            column = self._column_at(offset.x + int(self.scroll_x))
            if column is not None:
                same = column == self._sort_column
                self.sort_by(column, reverse=same and not self._sort_reverse)
            return
        row = int(self.scroll_y) + offset.y - 1
        if 0 <= row < self._shown_count():
            if event.chain >= 2 and row == self._cursor_row:
                self.action_select_row()
            else:
                self.move_cursor(row)

    def _on_mouse_move(self, event: events.MouseMove) -> None:
        offset = event.get_content_offset(self)
        tooltip = None
        if offset is not None and offset.y == 0:
            column = self._column_at(offset.x + int(self.scroll_x))
            if column is not None and self._columns[column] != self._labels[column]:
                tooltip = visible(self._columns[column])
        if self.tooltip != tooltip:
            self.tooltip = tooltip

    # ------------------------------------------------------------------ rendering

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None
        self._strip_cache.clear()

    def render_lines(self, crop: Region) -> list[Strip]:
        with self.drawing:
            return self._render_lines(crop)

    def _render_lines(self, crop: Region) -> list[Strip]:
        styles = (
            self.rich_style,
            self.get_component_rich_style("results-table--header"),
            self.get_component_rich_style("results-table--cursor"),
            self.get_component_rich_style("results-table--cell-cursor", partial=True),
            self.get_component_rich_style("results-table--empty", partial=True),
        )
        if styles != self._styles:
            self._styles = styles
            self._strip_cache.clear()
        # Widen columns for the rows about to be drawn, before drawing any of them.
        top = int(self.scroll_y)
        bottom = min(self._shown_count(), top + self._body_height())
        drawn = [self._rows[self._source_at(i)] for i in range(top, bottom)]
        if self._measure(drawn):
            self._layout_columns()
            self._strip_cache.clear()
            self.refresh()
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        scroll_x, scroll_y = self.scroll_offset
        base, header, cursor, _, empty = self._styles or (
            self.rich_style, Style(), Style(), Style(), Style())
        if y == 0:
            return self._header_strip(header).crop_extend(scroll_x, scroll_x + width, header)
        row = scroll_y + y - 1
        if row >= self._shown_count():
            if row == 0 and self.empty_text:
                return Strip([Segment(" " + _fit(visible(self.empty_text), width - 1),
                                      base + empty)], width)
            return Strip.blank(width, base)
        is_cursor = row == self._cursor_row
        style = cursor if is_cursor else base
        strip = self._row_strip(self._source_at(row), is_cursor, style)
        return strip.crop_extend(scroll_x, scroll_x + width, style)

    def _header_strip(self, style: Style) -> Strip:
        segments = []
        labels, widths = self._labels, self._widths
        for column in self._shown:
            label, width = labels[column], widths[column]
            if column == self._sort_column:
                arrow = "▼" if self._sort_reverse else "▲"
                text = f" {_fit(label, max(1, width - 2))} {arrow} "
            else:
                text = f" {_fit(label, width)} "
            segments.append(Segment(text, style + _column_meta(column)))
        return Strip(segments, self._total_width)

    def _row_strip(self, source: int, is_cursor: bool, style: Style) -> Strip:
        key = (source, is_cursor)
        strip = self._strip_cache.get(key)
        if strip is None:
            row = self._rows[source]
            cells = len(row)
            current = self._cursor_column if is_cursor else -1
            cell_style = style + (self._styles[3] if self._styles else Style(reverse=True))
            # One segment a cell, kept apart by its meta, so that exports (SVG) place
            # each cell at its own offset whatever the font makes of wide characters.
            # A marked row shows ● in the first cell's leading space: no layout change,
            # visible without colour.
            lead = "●" if source in self._marked else " "
            first, widths, cell = (self._shown[0] if self._shown else 0), self._widths, \
                self.shown_cell
            strip = Strip(
                [
                    Segment(
                        f"{lead if column == first else ' '}"
                        f"{_fit(cell(row, column) if column < cells else '', widths[column])} ",
                        (cell_style if column == current else style) + _column_meta(column),
                    )
                    for column in self._shown
                ],
                self._total_width,
            )
            self._strip_cache.set(key, strip)
        return strip

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _haystack_of(row: tuple[str, ...]) -> str:
        # NUL separates cells so a filter cannot match across two of them. The values as
        # sent (a filter as shown is turned into them: filter_needles), folded.
        return fold("\x00".join(row))

    def _matching(self, sources: Iterable[int]) -> list[int]:
        """The rows among ``sources`` that pass the filter."""
        haystack, needles = self._haystack, self._needles
        assert haystack is not None
        if len(needles) == 1:
            needle = needles[0]
            return [i for i in sources if needle in haystack[i]]
        return [i for i in sources if any(n in haystack[i] for n in needles)]

    def _shown_count(self) -> int:
        return len(self._rows) if self._order is None else len(self._order)

    def _source_at(self, row: int) -> int:
        return row if self._order is None else self._order[row]

    def _row_of(self, source: int) -> int | None:
        if self._order is None:
            return source if source < len(self._rows) else None
        try:
            return self._order.index(source)
        except ValueError:
            return None

    def _body_height(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _column_at(self, x: int) -> int | None:
        index = bisect_right(self._offsets, x) - 1
        if 0 <= index < len(self._widths) and x < self._total_width:
            return index
        return None

    def _measure(self, rows: Iterable[tuple[str, ...]]) -> bool:
        """Widen columns to fit `rows` (capped); True if any column grew."""
        widths = self._widths
        count = len(widths)
        grew = False
        formatters = self._formatters if self._readable else ()
        masked = self._phi if self.mask is not None and self.mask.on else ()
        for row in rows:
            for column, value in enumerate(row[:count]):
                if column in masked:
                    value = self.shown_cell(row, column)
                    fmt = None
                else:
                    fmt = formatters[column] if formatters else None
                if fmt is not None and value:
                    value = fmt(value)
                if len(value) > widths[column] or not value.isascii():
                    length = min(MAX_COLUMN_WIDTH, cell_len(visible(value)))
                    if length > widths[column]:
                        widths[column] = length
                        grew = True
        return grew

    def _layout_columns(self) -> None:
        offsets, x = [], 0
        folded = self.folded_columns
        for column, width in enumerate(self._widths):
            offsets.append(x)
            if column not in folded:
                x += width + 2
        self._offsets = offsets
        self._total_width = x
        self._update_virtual_size()

    def _update_virtual_size(self) -> None:
        size = Size(self._total_width, self._shown_count() + 1)
        if size != self.virtual_size:
            self.virtual_size = size

    def _set_labels(self) -> None:
        names = self._titles if self._readable else [short_label(c) for c in self._columns]
        self._labels = [visible(name) for name in names]
        # Room for the sort indicator (" ▲") so sorting never shifts the layout.
        self._header_widths = [
            min(MAX_COLUMN_WIDTH, max(1, cell_len(label) + 2)) for label in self._labels
        ]

    def _track_folds(self, rows: Sequence[tuple[str, ...]]) -> None:
        """Columns with a value stop being empty; constant ones that differ, constant."""
        changed = False
        for column in list(self._empty):
            if any(column < len(row) and row[column] for row in rows):
                self._empty.discard(column)
                changed = True
        for column, value in list(self._same.items()):
            if value is None and rows:
                value = self._same[column] = rows[0][column] if column < len(rows[0]) else ""
            if any((row[column] if column < len(row) else "") != value for row in rows):
                del self._same[column]
                changed = True
        if changed or not self._folded:
            self._update_folds()

    def _update_folds(self, force: bool = False) -> None:
        """The folded columns: empty ones and constant ones, once there are rows, and
        never every column."""
        count = len(self._columns)
        folded: frozenset[int] = frozenset()
        if self._rows:
            folded = frozenset(self._empty) | frozenset(self._same)
            if len(folded) >= count:
                folded = frozenset()
        if folded == self._folded and not force and self._shown:
            return
        self._folded = folded
        visible_folded = self.folded_columns
        self._shown = [c for c in range(count) if c not in visible_folded]
        if self._shown and self._cursor_column not in self._shown:
            self._cursor_column = min(self._shown, key=lambda c: (abs(c - self._cursor_column), c))
        self._layout_columns()
        self._strip_cache.clear()
        self.refresh()

    def _rows_appended(self, shown_before: int) -> None:
        """Rows were added at the end of the displayed order."""
        shown = self._shown_count()
        if shown == shown_before:
            return
        self._update_virtual_size()
        top = int(self.scroll_y)
        bottom = top + self._body_height()
        if shown_before < bottom:
            self.refresh_lines(shown_before + 1, min(shown, bottom) - shown_before)
        if self._cursor_source is None:
            self._set_cursor(0)

    def _set_cursor(self, row: int) -> None:
        """Put the cursor on a displayed row (clamped); post CursorMoved if its row changed."""
        shown = self._shown_count()
        old_row = self._cursor_row
        row = max(0, min(row, shown - 1))
        source = self._source_at(row) if shown else None
        self._cursor_row = row
        self._refresh_row(old_row)
        self._refresh_row(row)
        self._post_position()
        if source != self._cursor_source:
            self._cursor_source = source
            if source is not None:
                self.post_message(self.CursorMoved(self, source))

    def _post_position(self) -> None:
        position = self._cursor_row if self._shown_count() else None
        if position != self._position:
            self._position = position
            self.post_message(self.PositionChanged(self, position))

    def _refresh_row(self, row: int) -> None:
        top = int(self.scroll_y)
        if top <= row < top + self._body_height():
            self.refresh_lines(row + 1, 1)

    def _scroll_cursor_into_view(self) -> None:
        top = int(self.scroll_y)
        body = self._body_height()
        row = self._cursor_row
        if row < top:
            self.scroll_to(y=row, animate=False, force=True)
        elif row >= top + body:
            self.scroll_to(y=row - body + 1, animate=False, force=True)

    def _page(self, direction: int) -> None:
        body = self._body_height()
        self._merge_pending()
        screen_line = self._cursor_row - int(self.scroll_y)
        self._cursor_pinned = True
        self._set_cursor(self._cursor_row + direction * body)
        if 0 <= screen_line < body:
            # Keep the cursor on the same screen line, like a pager.
            self.scroll_to(y=self._cursor_row - screen_line, animate=False, force=True)
        self._scroll_cursor_into_view()

    def _rebuild_order(self) -> None:
        """Recompute the displayed order from scratch (sort or filter changed)."""
        self._stop_merge_timer()
        self._pending = []
        count = len(self._rows)
        sources: Iterable[int] = range(count)
        if self._filter:
            sources = self._matching(range(count))
        if self._sort_column is not None:
            assert self._sort_keys is not None
            self._order = sorted(
                sources, key=self._sort_keys.__getitem__, reverse=self._sort_reverse
            )
        elif self._filter:
            self._order = list(sources)
        else:
            self._order = None
        self._reordered(keep_view=False)

    def _schedule_merge(self) -> None:
        if self._shown_count() + len(self._pending) <= IMMEDIATE_MERGE_ROWS or not (
            self.is_mounted
        ):
            self._merge_pending()
        elif self._merge_timer is None:
            self._merge_timer = self.set_timer(MERGE_DELAY, self._merge_pending)

    def _stop_merge_timer(self) -> None:
        if self._merge_timer is not None:
            self._merge_timer.stop()
            self._merge_timer = None

    def _merge_pending(self) -> None:
        """Merge rows that arrived while sorted into the sorted order."""
        self._stop_merge_timer()
        if not self._pending:
            return
        assert self._order is not None and self._sort_keys is not None
        # Two sorted runs (the pending batch sorts itself): Timsort merges in O(n).
        self._order = sorted(
            self._order + self._pending,
            key=self._sort_keys.__getitem__,
            reverse=self._sort_reverse,
        )
        self._pending = []
        self._reordered(keep_view=True)

    def _reordered(self, keep_view: bool) -> None:
        """The displayed order changed: keep the cursor on its row and the view steady."""
        old_row = self._cursor_row
        top = int(self.scroll_y)
        cursor_on_screen = top <= old_row < top + self._body_height()
        self._strip_cache.clear()
        self._update_virtual_size()
        self.refresh()
        row: int | None = None
        if self._cursor_pinned and self._cursor_source is not None:
            row = self._row_of(self._cursor_source)
        if row is None:
            # Unpinned, or the cursor's row is filtered out: back to the top.
            self._cursor_pinned = self._cursor_pinned and keep_view
            self._set_cursor(0)
            if not keep_view:
                self.scroll_to(y=0, animate=False, force=True)
            return
        self._set_cursor(row)
        if keep_view and cursor_on_screen:
            self.scroll_to(y=max(0, top + row - old_row), animate=False, force=True)
        else:
            self._scroll_cursor_into_view()
