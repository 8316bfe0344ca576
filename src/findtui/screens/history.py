"""The run history in the TUI: every run is recorded (as the CLI's are), and the
history screen re-runs an entry or loads it into the form.

The history file is findtui.config.history.History: one JSON
object a line, bounded; unreadable lines are skipped, never fatal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from findtui.config.history import History, HistoryEntry, RetrieveRecord, history_wanted
from findtui.config.schema import MODEL_NAMES, ProfileError
from findtui.engine.keys import KeyPathError, dataset_to_keys
from findtui.engine.phi import PhiMask
from findtui.engine.sanitize import visible
from findtui.screens.dialogs import ConfirmScreen, confirm_then, notify_error
from findtui.screens.form_state import store_of, tracker_of

if TYPE_CHECKING:
    from findtui.messages import RunEnded
    from findtui.screens.query import QueryScreen

OUTCOME_ICON = {"success": "✔", "warning": "▲", "cancel": "■", "incomplete": "▲"}
RETRIEVE_ICON = {"success": "⇩", "partial": "▲", "cancel": "■"}


def record_run(screen: QueryScreen, message: RunEnded) -> None:
    """Add a finished TUI run to the history (on a thread; a failure is only logged)."""
    request = message.request
    tracker = tracker_of(screen.app)
    try:
        profiles = store_of(screen.app).load()
    except ProfileError:
        profiles = None
    if not history_wanted(getattr(screen.app, "no_history", False), profiles):
        _mark_ran_form(screen, tracker, request)
        return
    node, query = tracker.names_for(request)
    prefix = []
    if request.model.levels:
        prefix = [k for k in dataset_to_keys(request.identifier)
                  if k.startswith("QueryRetrieveLevel=")]
    demo = getattr(screen.app, "demo", None)
    on_demo = demo is not None and (request.network.address, request.network.port) == (
        demo.address, demo.port)
    entry = HistoryEntry.from_run(request, message.summary, node=node, query=query,
                                  source="tui", demo=on_demo, keys=prefix + list(message.keys),
                                  drill=len(screen._stack), split=message.split)
    history = store_of(screen.app).history
    _mark_ran_form(screen, tracker, request)

    def append() -> None:
        try:
            history.append(entry)
        except (OSError, ProfileError) as exc:
            text = visible(f"The run was not recorded in the history: {exc}")
            screen.app.call_from_thread(_log_warning, screen, text)

    screen.run_worker(append, thread=True, group="history", exit_on_error=False)


def record_retrieve(app, task, summary) -> None:
    """Add a finished retrieve job to the history (called on the queue's worker thread; a
    failure is only logged). The line's query is the match's own keys (QueryRetrieveLevel
    and its unique keys: a query that finds that match again, 1 result), its ``retrieve``
    the job's outcome, counts and folder."""
    try:
        try:
            profiles = store_of(app).load()
        except ProfileError:
            profiles = None
        if not history_wanted(getattr(app, "no_history", False), profiles):
            return
        request = task.request
        entry = HistoryEntry(
            time=_now(), network=request.network, model=request.model,
            keys=tuple(dataset_to_keys(task.item.identifier)), results=1, outcome="success",
            status="Success", node=task.node, source="tui", demo=task.demo,
            retrieve=RetrieveRecord.of(request, summary))
        store_of(app).history.append(entry)
    except Exception as exc:  # noqa: BLE001 - the history never stops the queue
        text = visible(f"The retrieve was not recorded in the history: {exc}")
        try:
            app.call_from_thread(app.notify, text, title="History", severity="warning",
                                 timeout=6, markup=False)
        except RuntimeError:  # the app is gone
            pass


def _now() -> str:
    import datetime as dt

    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _mark_ran_form(screen: QueryScreen, tracker, request) -> None:
    """A form just run is in the history, so loading over it loses nothing: it counts as
    saved (except against a loaded profile, whose edits are still not in the profile)."""
    try:
        current = screen.build_request()
    except Exception:  # noqa: BLE001 - a half-edited form: simply not marked
        return
    if tracker.node is None and current.network == request.network:
        tracker.mark(screen, query=False)
    if tracker.query is None and (current.model, current.identifier, current.ext_neg) == (
            request.model, request.identifier, request.ext_neg):
        tracker.mark(screen, network=False)


def _log_warning(screen: QueryScreen, text: str) -> None:
    screen.write_log("W: " + text)
    screen.notify(text, title="History", severity="warning", timeout=6)


def short_time(iso: str) -> str:
    """'2026-11-26T11:32:48+00:00' -> '2026-11-26 11:32'."""
    return iso[:16].replace("T", " ")


def peer_label(entry: HistoryEntry) -> str:
    if entry.demo:
        return "demo SCP"  # its port changes every start; re-runs go to the current one
    return entry.node or f"{entry.address}:{entry.port}"


def shown_keys(entry: HistoryEntry, mask: PhiMask | None = None) -> str:
    """The keys, the level first ('STUDY: PatientName=DOE* StudyDate='); ``mask``: patient
    data masked while it hides it."""
    level = [k.split("=", 1)[1] for k in entry.keys if k.startswith("QueryRetrieveLevel=")]
    rest = [mask.key(k) if mask is not None else k
            for k in entry.keys if not k.startswith("QueryRetrieveLevel=")]
    rest.sort(key=lambda k: not k.partition("=")[2])  # the keys with a value first
    lead = "  " * (entry.drill - 1) + "↳ " if entry.drill else ""
    return visible(lead + (f"{level[-1]}: " if level else "")
                   + (" ".join(rest) or "(no keys)"))


def grouped(entries: list[HistoryEntry]) -> list[HistoryEntry]:
    """Newest first, each query run followed by its drill-down sub-queries in the order
    they ran (oldest first in ``entries``)."""
    groups: list[list[HistoryEntry]] = []
    for entry in entries:
        if entry.drill and groups:
            groups[-1].append(entry)
        else:
            groups.append([entry])
    return [entry for group in reversed(groups) for entry in group]


class HistoryScreen(Screen):
    """Past runs, newest first: Enter runs one again, l loads it into the form."""

    DEFAULT_CSS = """
    HistoryScreen {
        layout: vertical;
        & #history-title, #history-keys { height: 1; padding: 0 1; background: $panel; }
        & #history-table { height: 1fr; scrollbar-size-vertical: 1; }
    }
    """

    BINDINGS = [
        Binding("r,enter", "rerun", "Run again", id="history.rerun"),
        Binding("l", "load", "Load into form", id="history.load"),
        Binding("x", "clear", "Clear all", id="history.clear"),
        Binding("escape,q", "close", "Back", id="history.close"),
    ]

    def __init__(self, history: History, *,
                 on_choose: Callable[[HistoryEntry, bool], None] | None = None) -> None:
        super().__init__()
        self.history = history
        self.on_choose = on_choose
        self.entries: list[HistoryEntry] = []

    def compose(self) -> ComposeResult:
        yield Static(id="history-title")
        yield DataTable(id="history-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="history-keys")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        try:
            self.entries = grouped(self.history.entries())
        except OSError as exc:  # not a plain file, or too large: said, never read unbounded
            self.entries = []
            notify_error(self.app, exc, "History not read")
        self._show_title()
        table = self.query_one(DataTable)
        table.add_columns("Time", "Node", "Model", "Results", "Status", "Keys")
        self._add_rows()
        if not self.entries:
            self.query_one("#history-keys", Static).update(
                Text("No runs yet: every query run here or with findtui --batch is recorded.",
                     style="italic"))
        table.focus()
        self._show_keys()

    def phi_changed(self) -> None:
        """Patient data masked or shown (Ctrl+G): the keys follow."""
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        self._add_rows()
        if self.entries:
            table.move_cursor(row=row)
        self._show_keys()

    def _add_rows(self) -> None:
        table = self.query_one(DataTable)
        mask = self.app.phi  # type: ignore[attr-defined]
        for i, e in enumerate(self.entries):
            status = Text(f"{OUTCOME_ICON.get(e.outcome, '✖')} {visible(e.status)}")
            if e.retrieve is not None:  # the run retrieved its matches: how that went
                r = e.retrieve
                status = Text(f"{RETRIEVE_ICON.get(r.outcome, '✖')} C-{r.method.upper()} "
                              f"{r.written + r.skipped if r.folder else r.done}")
            table.add_row(
                Text(short_time(e.time)),
                Text(visible(peer_label(e))),
                Text(MODEL_NAMES[e.model] + (f" [{visible(e.query)}]" if e.query else "")),
                Text(f"{e.results:>7,}"),
                status,
                Text(shown_keys(e, mask)),
                key=str(i),
            )

    def _show_title(self) -> None:
        n = len(self.entries)
        self.query_one("#history-title", Static).update(Text.assemble(
            ("History", "bold"), f" · {n} run{'' if n == 1 else 's'} · ",
            (visible(str(self.history.path)), "dim")))

    def _selected(self) -> HistoryEntry | None:
        table = self.query_one(DataTable)
        if not self.entries or table.cursor_row is None or table.cursor_row >= len(self.entries):
            return None
        return self.entries[table.cursor_row]

    @on(DataTable.RowHighlighted)
    def _show_keys(self) -> None:
        entry = self._selected()
        if entry is None:
            return
        retrieve = ("", "")
        if entry.retrieve is not None:
            retrieve = (" · ", visible(entry.retrieve.describe()))
        self.query_one("#history-keys", Static).update(Text.assemble(
            (visible(entry.called_aet), "bold"), " · ",
            shown_keys(entry, self.app.phi), *retrieve))  # type: ignore[attr-defined]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("rerun", "load"):
            return self._selected() is not None or None
        return True

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_rerun()

    def _choose(self, run: bool) -> None:
        entry = self._selected()
        if entry is None or self.on_choose is None:
            return
        on_choose = self.on_choose
        self.dismiss()
        on_choose(entry, run)

    def action_rerun(self) -> None:
        self._choose(True)

    def action_load(self) -> None:
        self._choose(False)

    def action_close(self) -> None:
        self.dismiss()

    def action_clear(self) -> None:
        """Forget every run (the history holds patient names, IDs and dates)."""
        if not self.entries:
            return

        def done(ok: bool | None) -> None:
            if not ok:
                return
            try:
                self.history.clear()
            except OSError as exc:
                notify_error(self.app, exc, "History not cleared")
                return
            self.entries = []
            self.query_one(DataTable).clear()
            self._show_title()
            self.notify("History cleared", timeout=3)

        self.app.push_screen(ConfirmScreen(
            f"Forget all {len(self.entries)} runs in {self.history.path}? They hold the "
            "query keys (patient names, IDs, dates).", "Clear the history?", yes="Clear",
            no="Keep"), done)


def use_entry(screen: QueryScreen, entry: HistoryEntry, run: bool) -> None:
    """Load a history entry into the form with every setting it ran with, and run it
    when ``run`` (a run on the demo SCP goes to the demo SCP running now)."""
    app = screen.app
    tracker = tracker_of(app)
    node = query = None
    try:
        profiles = store_of(app).load()
        node = profiles.nodes.get(entry.node) if entry.node else None
        query = profiles.queries.get(entry.query) if entry.query else None
    except ProfileError:
        pass  # the history works without profiles
    network = entry.network
    if entry.demo:
        network = app.demo_network(network)
    if run and not entry.complete:
        notify_error(app, ValueError(
            "this entry was recorded before findtui kept every setting (TLS, timeouts, PDU "
            "size, transfer syntaxes): load it (l), check the Network tab, then run it"),
            "Not run")
        return
    try:
        request = entry.find_request(network)
    except KeyPathError as exc:
        notify_error(app, exc, "Cannot load the entry")
        return
    edits = []
    if tracker.network_edited(screen):
        edits.append("network settings")
    if tracker.query_edited(screen):
        edits.append("query")

    def load() -> None:
        screen.fill_form(request)
        tracker.node = node if node is not None and node.network == entry.network else None
        tracker.query = query
        tracker.mark(screen)
        if run and entry.split:  # split by date again, as it ran
            from findtui.widgets.key_editor import KeyEditor

            screen._launch(request, screen.query_one(KeyEditor).keys, entry.split)
        elif run:
            screen.action_run()
        else:
            screen.notify("Loaded the run from the history: F5 runs it", timeout=3)

    confirm_then(screen, edits, load)


def open_history(screen: QueryScreen) -> None:
    from functools import partial

    screen.app.push_screen(HistoryScreen(store_of(screen.app).history,
                                         on_choose=partial(use_entry, screen)))
