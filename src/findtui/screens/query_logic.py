"""The query screen's logic that needs no widgets: key order, table columns, row cells
and the row batcher of the query worker (the Q/R hierarchy is engine/hierarchy.py).

Kept apart from the screen so it can be tested without an app.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from pydicom.dataset import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.uid import UID

from findtui.engine import output
from findtui.engine.keys import KeyPathError, build_identifier, parse_key
from findtui.engine.models import QueryModel
from findtui.engine.query import IdentifierDecodeError, Pending
from findtui.engine import display
from findtui.engine.display import readable_pn
from findtui.engine.phi import PhiMask, is_phi
from findtui.engine.hierarchy import UPPER_UNIQUE_KEYS, default_keys, request_level
from findtui.engine.sanitize import visible

def order_keys(keys: Sequence[str], model: QueryModel, level: str | None) -> list[str]:
    """Keys from a dataset (tag order) in a reading order: the model/level's default
    keys in their order first, then the rest as they were."""
    defaults = default_keys(model, level or "STUDY")
    rank: dict[tuple, int] = {}
    for i, key in enumerate(defaults):
        ident = _identity(key.partition("=")[0])
        if ident is not None:
            rank.setdefault(ident[:1], i)

    def position(key: str) -> int:
        ident = _identity(key.partition("=")[0])
        return rank.get(ident[:1], len(defaults)) if ident else len(defaults)

    return sorted(keys, key=position)


def build_request_identifier(model: QueryModel, level: str, keys: Sequence[str]) -> Dataset:
    """The identifier for the form: QueryRetrieveLevel (Q/R models) then the keys."""
    prefix = [f"QueryRetrieveLevel={level}"] if model.levels else []
    return build_identifier(prefix + list(keys))


# --- table columns and cells --------------------------------------------------


def _identity(path: str) -> tuple | None:
    try:
        return tuple((int(p.tag), p.index) for p in parse_key(path).path)
    except KeyPathError:
        return None


def table_columns(identifier: Dataset, keys: Sequence[str] = ()) -> list[str]:
    """The table's columns: the engine's (output.table_columns, the same as the batch
    CLI's CSV: leaf paths in key order) without QueryRetrieveLevel, which is the
    same on every row."""
    return [c for c in output.table_columns(identifier, keys) if c != "QueryRetrieveLevel"]


def _leaf_vr(path: str) -> str:
    try:
        part = parse_key(path).path[-1]
    except KeyPathError:
        return ""
    if part.vr:
        return part.vr
    try:
        return dictionary_VR(part.tag)
    except KeyError:
        return ""


def cell_formatters(columns: Sequence[str]) -> list[Callable[[str], str]]:
    """Per column, on the query thread: the value made terminal-safe (the table keeps
    it so; `column_display` makes it readable when drawn, and the raw view shows it)."""
    return [visible for _ in columns]


def column_display(columns: Sequence[str], drilled_request=None) -> dict:
    """The table's readable layer for these columns (ResultsTable.set_columns keywords):
    short titles, value formatters by VR, and, below a drill-down (``drilled_request``:
    the query one level below), the parent's unique keys (the same on every row) as
    columns to fold away."""
    parents: tuple[str, ...] = ()
    if drilled_request is not None:
        level = request_level(drilled_request.identifier) or ""
        parents = UPPER_UNIQUE_KEYS.get(drilled_request.model, {}).get(level, ())
    return {
        "titles": [display.column_title(c) for c in columns],
        "formatters": [display.formatter(c, _leaf_vr(c)) for c in columns],
        "constant": [i for i, c in enumerate(columns) if c in parents],
    }


def row_title(response: Dataset, level: str | None, mask: PhiMask | None = None) -> str:
    """A short breadcrumb label for a response row (``mask``: patient data masked)."""
    def get(keyword: str) -> str:
        value = response.get(keyword)
        text = str(value).strip() if value not in (None, "") else ""
        return mask.token(keyword, text) if mask is not None and text and is_phi(keyword) \
            else text

    if level == "PATIENT":
        text = readable_pn(get("PatientName")) or get("PatientID")
    elif level == "STUDY":
        date = get("StudyDate")
        if len(date) == 8 and date.isdigit():
            date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
        text = " ".join(p for p in (date, get("StudyDescription")) if p) or get("StudyInstanceUID")
    elif level == "SERIES":
        number = get("SeriesNumber")
        text = " ".join(p for p in (f"#{number}" if number else "", get("Modality"),
                                    get("SeriesDescription")) if p) or get("SeriesInstanceUID")
    else:
        text = get("SOPInstanceUID")
    text = visible(text or "?")
    return text if len(text) <= 32 else text[:31] + "…"


# --- kept responses -----------------------------------------------------------


def compact(response: Pending) -> tuple[int, int, bytes, str]:
    """A pending response as a tuple of atoms: the garbage collector never scans it."""
    return (response.index, response.status, response.raw, str(response.transfer_syntax))


class ResponseStore(Sequence[Pending]):
    """The responses of one query (raw bytes, for detail and export), kept compact.

    100k Pending objects would be 200k objects for every full garbage collection
    to walk (a UI stall); tuples of bytes/int/str are untracked. Each access
    returns a new Pending that decodes on its own, so no decoded dataset is kept.
    """

    __slots__ = ("_items",)

    def __init__(self, items: list[tuple[int, int, bytes, str]] | None = None) -> None:
        self._items = items if items is not None else []

    def extend(self, items: Sequence[tuple[int, int, bytes, str]]) -> None:
        self._items.extend(items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return ResponseStore(self._items[i])
        index, status, raw, ts = self._items[i]
        return Pending(index, status, raw, UID(ts))

    def subset(self, indices: Sequence[int]) -> ResponseStore:
        items = self._items
        return ResponseStore([items[i] for i in indices])

    def copy(self) -> ResponseStore:
        return ResponseStore(list(self._items))


# --- the worker's row batcher -------------------------------------------------


def build_row(response: Pending, columns: Sequence[str],
              formatters: Sequence[Callable[[str], str]],
              tags: list[int] | None = None) -> tuple[str, ...]:
    """The table's cells of a response (``tags``: :func:`output.top_level_tags` of the
    columns, computed once a query; then no Dataset is built for the row)."""
    try:
        cells = output.row_cells(response, columns, tags)
    except IdentifierDecodeError as exc:
        return (visible(str(exc)),) + ("",) * (len(columns) - 1)
    return tuple(fmt(cell) for fmt, cell in zip(formatters, cells))


class UiGate:
    """The UI thread says when it draws or takes in rows; the query thread steps aside
    meanwhile. (Two threads busy in Python share the GIL in switch-interval slices: a
    frame drawn while the query thread decodes would take twice as long, or more.)"""

    def __init__(self) -> None:
        self.busy = 0

    def __enter__(self) -> UiGate:
        self.busy += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.busy -= 1

    def wait(self, limit: float = 0.05) -> None:
        """On the query thread: while the UI is busy, sleep (the GIL is the UI's)."""
        if self.busy:
            deadline = time.perf_counter() + limit
            while self.busy and time.perf_counter() < deadline:
                time.sleep(0.0005)


class RowBatcher:
    """Collects rows on the query thread; a flusher thread posts them in batches.

    A batch goes out when ``interval`` has passed since the last one or
    ``max_rows`` are waiting, whichever comes first — and the first row at
    once. Because the flusher has its own thread, a row is never held back
    waiting for the next response (a PACS that pauses mid-stream).

    Once ``settle_after`` rows are out (the screen is full), batches go out
    every ``settled_interval`` instead: each batch costs the UI a frame
    (~5 ms whatever its size), and a count ticking at 10 Hz reads as well as
    at 20 Hz while 100k rows stream in.
    """

    def __init__(self, post: Callable[[list, list, list[str], float | None], None],
                 interval: float = 0.05, max_rows: int = 500, settle_after: int = 1000,
                 settled_interval: float = 0.1) -> None:
        self._post = post
        self.interval = interval
        self.max_rows = max_rows
        self.settle_after = settle_after
        self.settled_interval = settled_interval
        self.posted_rows = 0
        self._cond = threading.Condition()
        self._rows: list = []
        self._responses: list = []
        self._lines: list[str] = []
        self._closed = False
        self.first_response_at: float | None = None
        self._thread = threading.Thread(target=self._run, name="findtui-row-batcher",
                                        daemon=True)

    def start(self) -> RowBatcher:
        self._thread.start()
        return self

    def add(self, row, response, line: str) -> None:
        with self._cond:
            if self.first_response_at is None:
                self.first_response_at = time.perf_counter()
            self._rows.append(row)
            self._responses.append(response)
            self._lines.append(line)
            n = len(self._rows)
            if n == 1 or n >= self.max_rows:
                self._cond.notify()

    def log(self, lines: Sequence[str]) -> None:
        with self._cond:
            self._lines.extend(lines)
            self._cond.notify()

    def close(self) -> None:
        """Flush what is left and stop the flusher (returns when all is posted)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        last = 0.0
        cond = self._cond
        while True:
            with cond:
                while not (self._rows or self._lines) and not self._closed:
                    cond.wait()
                if self._closed and not (self._rows or self._lines):
                    return
                interval = (self.interval if self.posted_rows < self.settle_after
                            else self.settled_interval)
                deadline = last + interval
                while len(self._rows) < self.max_rows and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    cond.wait(remaining)
                n = self.max_rows
                rows, self._rows = self._rows[:n], self._rows[n:]
                responses, self._responses = self._responses[:n], self._responses[n:]
                lines, self._lines = self._lines, []
                first = self.first_response_at
            self._post(rows, responses, lines, first)
            self.posted_rows += len(rows)
            last = time.monotonic()
