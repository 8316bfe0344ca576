"""Retrieve from the TUI: the dialog (method, folder, layout, move destination, store port),
the queue (one job per marked row, run one after another in a worker thread while the
user keeps browsing) and the queue screen (progress, rate, state; cancel, retry).

The queue itself (RetrieveQueue, RetrieveTask) holds no widget: the app owns one, a
worker thread runs its tasks with engine.retrieve.RetrieveJob, and the queue screen
draws it a few times a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, Static

from findtui.widgets.toggles import RadioButton, RadioSet

from findtui.engine.models import QueryModel
from findtui.engine.network import Network
from findtui.engine.retrieve import (
    DEFAULT_LAYOUT,
    DEFAULT_STORE_PORT,
    AssociationFailed,
    ItemDone,
    ItemProgress,
    Layout,
    RetrieveError,
    RetrieveFault,
    RetrieveItem,
    RetrieveJob,
    RetrieveOptions,
    RetrieveRequest,
    RetrieveSummary,
    megabytes,
)
from findtui.engine.sanitize import visible

@dataclass(frozen=True)
class RetrieveSettings:
    """What the dialog asks (a node profile may give the defaults)."""

    method: str = "get"
    folder: str = "."
    layout: str = DEFAULT_LAYOUT
    move_destination: str = ""  # "" = our calling AE title
    store_port: int = DEFAULT_STORE_PORT
    store_host: str = ""  # not in the dialog: a node profile's store_host, else all interfaces

    @classmethod
    def of(cls, options: RetrieveOptions | None, folder: str) -> RetrieveSettings:
        """The dialog's defaults: a node profile's retrieve settings over ours (``folder``
        where the profile names none)."""
        o = options or RetrieveOptions()
        return cls(method=o.retrieve or "get",
                   folder=str(Path(o.retrieve_folder).expanduser()) if o.retrieve_folder
                   else folder,
                   layout=o.layout or DEFAULT_LAYOUT, move_destination=o.move_destination or "",
                   store_port=o.store_port or DEFAULT_STORE_PORT, store_host=o.store_host or "")

    def check(self) -> str | None:
        """What is wrong, in one line, or None."""
        try:
            Layout(self.layout)
        except RetrieveError as exc:
            return str(exc).replace("--layout", "Layout")
        if not self.folder.strip():
            return "Folder: give a folder"
        folder = Path(self.folder).expanduser()
        if folder.exists() and not folder.is_dir():
            return f"Folder {str(folder)!r} is a file, not a folder"
        if self.method == "move":
            if not 1 <= self.store_port <= 65535:
                return "Store port: a TCP port, 1 to 65535"
            if len(self.move_destination.strip()) > 16:
                return "Move destination: an AE title of at most 16 characters"
        return None


# --- the queue (no widgets) ---------------------------------------------------------


@dataclass
class RetrieveTask:
    """One job: one marked row, retrieved on its own association."""

    number: int
    item: RetrieveItem
    request: RetrieveRequest
    title: str = ""  # what the row showed (a patient's name, a study's date...)
    state: str = "queued"  # queued, running, done, partial, failed, cancelled
    completed: int = 0
    failed: int = 0
    remaining: int | None = None
    written: int = 0
    skipped: int = 0
    bytes: int = 0
    started: float | None = None
    ended: float | None = None
    message: str = ""
    job: RetrieveJob | None = field(default=None, repr=False)
    node: str | None = None  # the node profile the row came from (for the history)
    demo: bool = False  # the row came from the embedded demo SCP

    @property
    def received(self) -> int:
        return self.written + self.skipped

    def rate(self) -> float:
        """Bytes per second while running (or over the whole run when finished)."""
        if self.started is None:
            return 0.0
        span = (self.ended or time.monotonic()) - self.started
        return self.bytes / span if span > 0.2 else 0.0

    def fraction(self) -> float | None:
        total = None
        if self.remaining is not None:
            total = self.completed + self.failed + self.remaining
        elif self.item.expected:
            total = self.item.expected
        if not total:
            return None if self.state in ("queued", "running") else 1.0
        return min(1.0, (self.received + self.failed) / total)


class RetrieveQueue:
    """Tasks in order; ``run_next()`` (a worker thread) runs them one by one."""

    def __init__(self) -> None:
        self.tasks: list[RetrieveTask] = []
        self._lock = threading.Lock()
        self.version = 0  # bumped on every change: the screen redraws when it moves
        # Called on the worker thread when a task has ended (the app records it in the history).
        self.on_finished: Callable[[RetrieveTask, RetrieveSummary], None] | None = None

    def add(self, settings: RetrieveSettings, network: Network, model: QueryModel,
            items: list[RetrieveItem], titles: list[str] | None = None) -> list[RetrieveTask]:
        added = []
        titles = titles or [item.label for item in items]
        with self._lock:
            for item, title in zip(items, titles):
                request = RetrieveRequest(
                    network=network, model=model, method=settings.method, items=(item,),
                    directory=str(Path(settings.folder).expanduser()), layout=settings.layout,
                    move_destination=settings.move_destination.strip() or None,
                    store_port=settings.store_port, store_host=settings.store_host)
                task = RetrieveTask(len(self.tasks) + 1, item, request, title)
                self.tasks.append(task)
                added.append(task)
            self.version += 1
        return added

    def pending(self) -> bool:
        return any(t.state == "queued" for t in self.tasks)

    def cancel(self, task: RetrieveTask) -> None:
        with self._lock:
            if task.state == "queued":
                task.state, task.message = "cancelled", "cancelled before it started"
            elif task.state == "running" and task.job is not None:
                task.job.cancel()
                task.message = "cancelling…"
            self.version += 1

    def retry(self, task: RetrieveTask) -> bool:
        with self._lock:
            if task.state not in ("failed", "cancelled", "partial"):
                return False
            task.state, task.message = "queued", ""
            task.completed = task.failed = task.written = task.skipped = task.bytes = 0
            task.remaining = task.started = task.ended = None
            self.version += 1
            return True

    def run_next(self) -> RetrieveTask | None:
        """Run the first queued task to its end (on the calling thread)."""
        with self._lock:
            task = next((t for t in self.tasks if t.state == "queued"), None)
            if task is None:
                return None
            task.state, task.started = "running", time.monotonic()
            task.job = RetrieveJob(task.request)
            self.version += 1
        summary = RetrieveSummary()
        try:
            for event in task.job.events():
                summary.feed(event)
                if isinstance(event, ItemProgress):
                    task.completed, task.failed = event.completed, event.failed
                    task.remaining = event.remaining
                    task.written, task.skipped, task.bytes = (event.written, event.skipped,
                                                              event.bytes)
                elif isinstance(event, ItemDone):
                    task.completed, task.failed, task.remaining = event.completed, event.failed, 0
                    task.written, task.skipped, task.bytes = (event.written, event.skipped,
                                                              event.bytes)
                    notes = [f"{event.name} (0x{event.status:04X})"]
                    if event.error_comment:
                        notes.append(event.error_comment)
                    if event.mismatch():
                        notes.append(event.mismatch())
                    if event.advice and event.category != "success":
                        notes.append(event.advice)
                    task.message = "; ".join(notes)
                elif isinstance(event, (RetrieveFault, AssociationFailed)):
                    task.message = event.message
                self.version += 1
        except Exception as exc:  # noqa: BLE001 - a bug: shown on the task, the queue goes on
            task.message = f"{type(exc).__name__}: {exc}"
            summary.fault = RetrieveFault("aborted", task.message)
        summary.cancel_requested = task.job.cancel_requested
        outcome = summary.outcome
        task.state = {"success": "done", "partial": "partial", "cancel": "cancelled"}.get(
            outcome, "failed")
        task.ended = time.monotonic()
        self.version += 1
        if self.on_finished is not None:
            self.on_finished(task, summary)
        return task


# --- the dialog -------------------------------------------------------------------------


class RetrieveDialog(ModalScreen[RetrieveSettings | None]):
    """How to retrieve the marked rows; Enter/Retrieve checks, then closes."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="retrieve.cancel")]

    def __init__(self, count: int, what: str, defaults: RetrieveSettings) -> None:
        super().__init__()
        self.count = count
        self.what = what
        self.defaults = defaults

    def compose(self) -> ComposeResult:
        d = self.defaults
        with Vertical(id="retrieve-dialog") as dialog:
            dialog.border_title = f"Retrieve {self.count:,} {self.what}"
            with Horizontal(classes="form-row"):
                yield Label("Method", classes="form-label")
                with RadioSet(id="retrieve-method", compact=True):
                    yield RadioButton("C-GET", value=d.method == "get", name="get",
                                      compact=True)
                    yield RadioButton("C-MOVE", value=d.method == "move", name="move",
                                      compact=True)
            with Horizontal(classes="form-row"):
                yield Label("Folder", classes="form-label")
                yield Input(d.folder, id="retrieve-folder", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("Layout", classes="form-label")
                yield Input(d.layout, id="retrieve-layout", compact=True)
            with Horizontal(classes="form-row", id="retrieve-dest-row"):
                yield Label("Move to", classes="form-label")
                yield Input(d.move_destination, id="retrieve-dest", compact=True,
                            placeholder="our calling AE title")
            with Horizontal(classes="form-row", id="retrieve-port-row"):
                yield Label("Store port", classes="form-label")
                yield Input(str(d.store_port), id="retrieve-port", compact=True,
                            type="integer")
            yield Static(id="retrieve-error")
            with Horizontal(classes="button-row"):
                yield Button("Retrieve", id="retrieve-ok", variant="primary", compact=True)
                yield Button("Cancel", id="retrieve-cancel", compact=True)

    def on_mount(self) -> None:
        self._method_changed()
        self.query_one("#retrieve-method", RadioSet).focus()

    def _method(self) -> str:
        pressed = self.query_one("#retrieve-method", RadioSet).pressed_button
        return pressed.name if pressed is not None and pressed.name else "get"

    @on(RadioSet.Changed, "#retrieve-method")
    def _method_changed(self) -> None:
        move = self._method() == "move"
        self.query_one("#retrieve-dest-row").display = move
        self.query_one("#retrieve-port-row").display = move

    def settings(self) -> RetrieveSettings:
        port_text = self.query_one("#retrieve-port", Input).value.strip()
        try:
            port = int(port_text)
        except ValueError:
            port = -1
        return RetrieveSettings(
            method=self._method(), folder=self.query_one("#retrieve-folder", Input).value,
            layout=self.query_one("#retrieve-layout", Input).value,
            move_destination=self.query_one("#retrieve-dest", Input).value, store_port=port,
            store_host=self.defaults.store_host)

    @on(Button.Pressed, "#retrieve-ok")
    @on(Input.Submitted)
    def _ok(self) -> None:
        settings = self.settings()
        problem = settings.check()
        if problem:
            self.query_one("#retrieve-error", Static).update(visible(problem))
            return
        self.dismiss(settings)

    @on(Button.Pressed, "#retrieve-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


# --- the queue screen ---------------------------------------------------------------------

STATE_MARKS = {"queued": "·", "running": "▶", "done": "✓", "partial": "!", "failed": "✗",
               "cancelled": "–"}


def _bar(fraction: float | None, width: int = 12) -> str:
    if fraction is None:
        return "[" + "?" * width + "]"
    full = int(round(fraction * width))
    return "[" + "#" * full + "." * (width - full) + "]"


class RetrieveScreen(Screen):
    """The retrieve queue: a line per job; c cancels it, r retries it; Esc goes back."""

    HELP_TITLE = "Retrieve queue"
    BINDINGS = [
        Binding("escape", "back", "Back", id="queue.back"),
        Binding("c", "cancel_job", "Cancel job", id="queue.cancel"),
        Binding("r", "retry_job", "Retry", id="queue.retry"),
        Binding("R", "retry_failed", "Retry all failed", id="queue.retry_all", show=False),
    ]
    COLUMNS = ("#", "Item", "State", "Progress", "Instances", "Rate", "Note")

    def __init__(self, queue: RetrieveQueue) -> None:
        super().__init__()
        self.retrieve_queue = queue
        self._shown_version = -1

    def compose(self) -> ComposeResult:
        yield Static(id="queue-summary")
        table = DataTable(id="queue-table", cursor_type="row", zebra_stripes=False)
        table.add_columns(*self.COLUMNS)
        yield table
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._redraw()
        self.set_interval(0.25, self._redraw)
        self.query_one(DataTable).focus()

    def _redraw(self) -> None:
        queue = self.retrieve_queue
        if queue.version == self._shown_version:
            return
        self._shown_version = queue.version
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for task in queue.tasks:
            instances = f"{task.received}"
            if task.skipped:
                instances += f" ({task.skipped} on disk)"
            if task.failed:
                instances += f", {task.failed} failed"
            rate = f"{task.rate() / 1e6:.1f}MB/s" if task.bytes else ""
            cells = (str(task.number), visible(task.title or task.item.label)[:24],
                     f"{STATE_MARKS.get(task.state, '?')} {task.state}", _bar(task.fraction()),
                     instances, rate, visible(task.message)[:80])
            table.add_row(*(Text(cell) for cell in cells), key=str(task.number))  # no markup
        if queue.tasks:
            table.move_cursor(row=min(row, len(queue.tasks) - 1))
        counts: dict[str, int] = {}
        for task in queue.tasks:
            counts[task.state] = counts.get(task.state, 0) + 1
        written = sum(t.written for t in queue.tasks)
        done_bytes = sum(t.bytes for t in queue.tasks)
        parts = [f"{n} {state}" for state, n in counts.items()]
        self.query_one("#queue-summary", Static).update(
            visible(f"{len(queue.tasks)} job(s): " + ", ".join(parts)
                    + f" · {written} instance(s) written, {megabytes(done_bytes)}")
            if queue.tasks else "No retrieve jobs yet: mark rows with Space, then press R")

    def _current(self) -> RetrieveTask | None:
        table = self.query_one(DataTable)
        tasks = self.retrieve_queue.tasks
        if not tasks or table.cursor_row < 0 or table.cursor_row >= len(tasks):
            return None
        return tasks[table.cursor_row]

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_cancel_job(self) -> None:
        task = self._current()
        if task is not None:
            self.retrieve_queue.cancel(task)
            self._redraw()

    def action_retry_job(self) -> None:
        task = self._current()
        if task is not None and self.retrieve_queue.retry(task):
            self.app.start_retrieves()  # type: ignore[attr-defined]
            self._redraw()

    def action_retry_failed(self) -> None:
        retried = [t for t in self.retrieve_queue.tasks if self.retrieve_queue.retry(t)]
        if retried:
            self.app.start_retrieves()  # type: ignore[attr-defined]
        self.notify(f"{len(retried)} job(s) queued again" if retried else "Nothing to retry")

