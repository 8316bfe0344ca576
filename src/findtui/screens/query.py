"""The query screen: form (Query / Network / Log tabs) above the streaming results table.

Layout for 80x24: a one-line breadcrumb, the tabbed form (collapsed after a
run so the table gets the screen; F2 brings it back), the results table, a
filter bar (on /), the status line and the footer.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Button, Footer, Input, Label, Log, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerCancelled, WorkerFailed

from findtui.engine import output
from findtui.engine.keys import KeyPathError, dataset_to_keys
from findtui.engine.models import ExtendedNegotiationError, QueryModel
from findtui.engine.network import Network
from findtui.engine.query import (
    Associated,
    AssociationFailed,
    CancelSent,
    Fault,
    Final,
    FindQuery,
    FindRequest,
    IdentifierDecodeError,
    Pending,
    echo,
)
from findtui.engine.run import RunSummary
from findtui.engine.settings import form_hint
from findtui.engine.sanitize import visible
from findtui.messages import (
    EchoFinished,
    ExportFinished,
    QueryAssociated,
    QueryCancelSent,
    QueryFinished,
    QueryOutcome,
    RowsReceived,
    RunEnded,
)
from findtui.engine.hierarchy import (
    LEVEL_UNIQUE_KEY,
    DrillDownError,
    default_keys,
    drill_down_request,
    next_level,
    request_level,
)
from findtui.screens.query_logic import (
    ResponseStore,
    RowBatcher,
    build_request_identifier,
    build_row,
    cell_formatters,
    column_display,
    compact,
    order_keys,
    row_title,
    table_columns,
    UiGate,
)
from findtui.widgets.key_editor import KeyEditor, is_level_key, key_identity, key_value
from findtui.widgets.model_form import ExtNegForm, ModelForm
from findtui.widgets.network_form import FormError, NetworkForm
from findtui.widgets.query_helpers import QueryHelpers, modality_key_for
from findtui.widgets.results_table import ResultsTable, TableView
from findtui.widgets.status_line import StatusLine, outcome_of

@dataclass
class ResultLevel:
    """One breadcrumb level: what was asked, what came back, where the cursor was."""

    request: FindRequest
    keys: list[str]
    columns: list[str]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    responses: ResponseStore = field(default_factory=ResponseStore)
    state: str = "idle"
    outcome: QueryOutcome | None = None
    elapsed: float | None = None
    view: TableView = field(default_factory=TableView)  # the table as it was left (drill-down)
    row_title: str = ""  # the row drilled into from this level
    row_title_masked: str = ""  # the same, patient data masked (PHI hidden)
    split: str | None = None  # run split by date (engine.split): auto, day, ...
    display: dict = field(default_factory=dict)  # the table's readable layer (column_display)


class QueryResults(ResultsTable):
    """The results table with a footer that fits 80 columns (S still reverses)."""

    BINDINGS = [
        Binding("S", "sort_reverse", "Reverse", show=False, id="results.sort_reverse"),
    ]


def _unique_column(request: FindRequest, columns: list[str]) -> int | None:
    """The column of the level's unique key (e.g. StudyInstanceUID), if the table has it."""
    keyword = LEVEL_UNIQUE_KEY.get(request_level(request.identifier) or "")
    return columns.index(keyword) if keyword in columns else None


def _settle_heap() -> None:
    """After a stream (rows frozen as they came): collect what died meanwhile, once, then
    freeze what lives on, so later collections do not walk it."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class QueryScreen(Screen):
    """Build a C-FIND, run it, browse and export the matches."""

    BINDINGS = [
        Binding("f5,ctrl+r", "run", "Run", id="query.run"),
        Binding("escape", "cancel", "Cancel", id="query.cancel"),
        Binding("escape", "leave_form", "Results", show=False, id="query.leave_form"),
        Binding("f2", "toggle_form", "Form", id="query.form"),
        Binding("f3", "toggle_log", "Log", id="query.log", show=False),
        Binding("slash", "filter", "Filter", id="results.filter"),
        Binding("d", "drill", "Drill", id="results.drill"),
        Binding("backspace", "back", "Back", id="results.back"),
        Binding("f6,ctrl+o", "export", "Export", id="query.export"),
        Binding("f4,ctrl+t", "echo", "C-ECHO", id="query.echo", show=False),
        Binding("f9", "split", "Split", id="query.split", show=False),
        Binding("R", "retrieve", "Retrieve", id="query.retrieve", show=False),
        Binding("v", "toggle_raw", "Raw values", id="results.raw", show=False),
    ]

    def __init__(self, request: FindRequest | None = None, *, run_on_start: bool = False) -> None:
        super().__init__()
        self._initial = request
        self._run_on_start = run_on_start
        self._base: FindRequest | None = request
        self._keys_are_default = True
        self._run_id = 0
        self._query: FindQuery | None = None
        self._worker: Worker | None = None
        self._query_running = False
        self._level: ResultLevel | None = None
        self._stack: list[ResultLevel] = []
        self._filter_timer: Timer | None = None
        self._next_launch: tuple[FindRequest, list[str], str | None, bool] | None = None
        # F5 on the same query: the row the cursor was on, found again as rows arrive
        self._cursor_wanted: tuple[TableView, int | None] | None = None
        self._launching = False
        self._fresh: bool | None = None
        self._ui_gate = UiGate()  # the query thread steps aside while the UI draws
        self._log_lines: list[str] = []  # the log pane's lines as written (masked when shown)
        self._froze = False  # rows were frozen out of the collector's sight (gc.freeze)
        # Benchmark probes (time.perf_counter()): see bench/tui_stream.py.
        self.timings: dict[str, float] = {}

    def notify(self, message: str, *, title: str = "", severity="information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Notifications carry PACS and user text: never read as markup here."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    # -- patient data hidden (PHI) ----------------------------------------

    def phi_changed(self) -> None:
        """Patient data masked or shown (Ctrl+G): every place on this screen follows."""
        self.query_one(ResultsTable).redraw_cells()
        self.query_one(KeyEditor).redraw()
        log = self.query_one("#log", Log)
        log.clear()
        log.write_lines([self.app.phi.line(line) for line in self._log_lines])  # type: ignore[attr-defined]
        self._update_breadcrumb()
        self._update_empty_text()
        self.query_one(StatusLine).refresh_line()

    def write_log(self, *lines: str) -> None:
        """Write lines to the log pane (patient data masked while hidden)."""
        self._log_lines.extend(lines)
        phi = self.app.phi  # type: ignore[attr-defined]
        self.query_one("#log", Log).write_lines([phi.line(line) for line in lines]
                                                if phi.on else list(lines))

    # -- layout -----------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="breadcrumb")
        with TabbedContent(id="form", initial="tab-query"):
            with TabPane("Query", id="tab-query"):
                with Horizontal(id="query-pane"):
                    yield KeyEditor(id="key-editor")
                    with Vertical(id="query-side"):
                        yield ModelForm(id="model-form")
                        yield QueryHelpers(id="helpers")
                        with Horizontal(classes="button-row"):
                            yield Button("Run (F5)", id="run", variant="primary", compact=True)
                            yield Button("C-ECHO", id="echo", compact=True)
            with TabPane("Network", id="tab-network"):
                with VerticalScroll(id="network-pane"):
                    yield NetworkForm(id="network-form")
                    yield ExtNegForm(id="extneg-form")
                    with Horizontal(classes="button-row"):
                        yield Button("C-ECHO (F4)", id="echo-net", compact=True)
            with TabPane("Log", id="tab-log"):
                yield Log(id="log", highlight=False)
        yield QueryResults(id="results")
        with Horizontal(id="filter-bar"):
            yield Label("Filter:", classes="form-label")
            yield Input(placeholder="text in any column · Enter keeps it · Esc clears",
                        id="filter-input", compact=True)
        yield Static(id="incomplete-banner")
        yield StatusLine(id="status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(ResultsTable).drawing = self._ui_gate
        self.query_one(ResultsTable).mask = self.app.phi  # type: ignore[attr-defined]
        self.query_one(KeyEditor).shown_key = self.app.phi.key  # type: ignore[attr-defined]
        self._set_fresh(True)
        self.query_one(StatusLine).show_timing = getattr(self.app, "show_timing", True)
        self.query_one("#log", Log).can_focus = True
        model_form = self.query_one(ModelForm)
        self.query_one(KeyEditor).key_order = lambda keys: order_keys(
            keys, model_form.model, model_form.level)
        if self._initial is not None:
            self.fill_form(self._initial)
        else:
            self.query_one(KeyEditor).set_keys(default_keys(QueryModel.STUDY, "STUDY"))
            self._after_model_change(QueryModel.STUDY, "STUDY")
        self._update_breadcrumb()
        self.query_one("#key-input", Input).focus()
        if self._run_on_start:
            self.call_after_refresh(self.action_run)

    # -- the form ---------------------------------------------------------

    def fill_form(self, request: FindRequest) -> None:
        """Fill every field from a FindRequest (the CLI's options, a history entry)."""
        self._base = request
        self.query_one(NetworkForm).fill(request.network)
        self._fill_query(request)

    def fill_network(self, network: Network) -> None:
        """Fill the Network tab (a node profile)."""
        self.query_one(NetworkForm).fill(network)
        self._update_breadcrumb()

    def fill_query(self, model: QueryModel, identifier, keys: list[str] | None = None) -> None:
        """Fill the Query tab: model, level (from the identifier) and keys (a query profile)."""
        self._fill_query(FindRequest(network=Network("-", 104), identifier=identifier,
                                     model=model), keys)

    def set_model(self, model: QueryModel, show_form: bool = False) -> None:
        """Switch the information model (keys follow if they are the defaults)."""
        model_form = self.query_one(ModelForm)
        if model is model_form.model:
            return
        model_form.fill(model, None)
        self._model_changed(ModelForm.Changed(model, model_form.level))
        if show_form:
            self._show_form("tab-query")

    def cancel_query(self) -> None:
        """Ask the running query (if any) to cancel; its worker ends on its own."""
        if self._query is not None:
            self._query.cancel()

    @property
    def current_level(self) -> ResultLevel | None:
        """The results on view: what was asked, what came back."""
        return self._level

    def _fill_query(self, request: FindRequest, keys: list[str] | None = None) -> None:
        model = request.model
        model_form = self.query_one(ModelForm)
        model_form.fill(model, request_level(request.identifier))
        self.query_one(ExtNegForm).fill(request.ext_neg, model)
        if keys is None:
            keys = order_keys([k for k in dataset_to_keys(request.identifier)
                               if not is_level_key(k)], model, model_form.level)
        self.query_one(KeyEditor).set_keys(keys)
        self._keys_are_default = keys == default_keys(model, model_form.level)
        self._after_model_change(model, model_form.level)

    def _after_model_change(self, model: QueryModel, level: str) -> None:
        self.query_one(QueryHelpers).set_context(model, level)
        self.query_one(ExtNegForm).set_model(model)
        self._reflect_modalities()
        self._update_breadcrumb()

    def _reflect_modalities(self) -> None:
        helpers = self.query_one(QueryHelpers)
        target = key_identity(modality_key_for(helpers.model, helpers.level) + "=")
        values: list[str] = []
        for key in self.query_one(KeyEditor).keys:
            if key_identity(key) == target:
                values = [v.strip() for v in key_value(key).split("\\") if v.strip()]
        helpers.set_modalities(values)

    def build_request(self) -> FindRequest:
        """The request the form describes; raises FormError, KeyPathError or
        ExtendedNegotiationError with a message for the user."""
        network = self.query_one(NetworkForm).network()
        model_form = self.query_one(ModelForm)
        model, level = model_form.model, model_form.level
        ext_neg = self.query_one(ExtNegForm).ext_neg()
        ext_neg.validate(model)
        identifier = build_request_identifier(model, level, self.query_one(KeyEditor).keys)
        base = self._base
        return FindRequest(
            network=network, identifier=identifier, model=model, ext_neg=ext_neg,
            priority=base.priority if base else 2,
            cancel_after=base.cancel_after if base else None,
            cancel_grace=base.cancel_grace if base else 5.0,
        )

    def _commit_typed_key(self) -> bool:
        """A key typed but not yet entered counts: add it (False if it is bad)."""
        error = self.query_one(KeyEditor).commit_typed()
        if error:
            self._show_form("tab-query")
            self.query_one("#key-input", Input).focus()
            self.notify(error, title="Bad key", severity="error")
            return False
        return True

    @on(Input.Changed, "#net-called")
    def _called_changed(self) -> None:
        self._update_breadcrumb()

    @on(ModelForm.Changed)
    def _model_changed(self, event: ModelForm.Changed) -> None:
        if self._keys_are_default:
            self.query_one(KeyEditor).set_keys(default_keys(event.model, event.level))
        else:
            self.notify(f"Keys kept; press Defaults for the {event.level or 'worklist'} keys",
                        timeout=3)
        self._after_model_change(event.model, event.level)

    @on(KeyEditor.Changed)
    def _keys_changed(self, event: KeyEditor.Changed) -> None:
        self._keys_are_default = False
        self._reflect_modalities()

    @on(KeyEditor.DefaultsRequested)
    def _defaults(self) -> None:
        """The model/level's default keys; asks first when that drops keys typed here."""
        model_form = self.query_one(ModelForm)
        defaults = default_keys(model_form.model, model_form.level)
        keys = self.query_one(KeyEditor).keys
        dropped = [k for k in keys if k not in defaults]
        if not dropped:
            self._set_default_keys()
            return
        from findtui.screens.dialogs import ConfirmScreen

        shown = ", ".join(self.app.phi.key(k) for k in dropped[:4])  # type: ignore[attr-defined]
        more = f" and {len(dropped) - 4} more" if len(dropped) > 4 else ""
        self.app.push_screen(ConfirmScreen(
            f"The default keys replace these: {visible(shown)}{more}.",
            "Drop the keys typed?", yes="Defaults", no="Keep"),
            lambda ok: self._set_default_keys() if ok else None)

    def _set_default_keys(self) -> None:
        model_form = self.query_one(ModelForm)
        self.query_one(KeyEditor).set_keys(default_keys(model_form.model, model_form.level))
        self._keys_are_default = True
        self._reflect_modalities()

    @on(KeyEditor.LevelRequested)
    def _level_key(self, event: KeyEditor.LevelRequested) -> None:
        model_form = self.query_one(ModelForm)
        level = event.level.upper()
        if level in model_form.model.levels:
            model_form.fill(model_form.model, level)
            self._after_model_change(model_form.model, level)
            self.notify(f"QueryRetrieveLevel set to {level} (the Level select)", timeout=3)
        else:
            levels = ", ".join(model_form.model.levels) or "none"
            self.notify(f"{model_form.model.label} has no level {visible(level)!r} "
                        f"(levels: {levels})", severity="error")

    @on(QueryHelpers.KeyProduced)
    def _helper_key(self, event: QueryHelpers.KeyProduced) -> None:
        editor = self.query_one(KeyEditor)
        if event.edit:
            key_input = self.query_one("#key-input", Input)
            key_input.value = event.key
            key_input.focus()
            return
        error = editor.upsert(event.key)
        if error:
            self.notify(error, title="Bad key", severity="error")

    @on(Button.Pressed, "#run")
    def _run_pressed(self) -> None:
        self.action_run()

    @on(Button.Pressed, "#echo, #echo-net")
    def _echo_pressed(self) -> None:
        self.action_echo()

    # -- form visibility --------------------------------------------------

    def _set_fresh(self, fresh: bool) -> None:
        """Before the first run there is nothing to show: the form takes the screen."""
        if fresh == self._fresh:
            return
        self._fresh = fresh
        self.query_one(ResultsTable).display = not fresh
        self.query_one("#form").styles.height = "1fr" if fresh else None

    @property
    def form_visible(self) -> bool:
        return self.query_one("#form").display

    def _show_form(self, tab: str | None = None) -> None:
        form = self.query_one("#form", TabbedContent)
        form.display = True
        if tab:
            form.active = tab
        self.refresh_bindings()

    def _hide_form(self) -> None:
        # display, not a CSS class: a class change restyles the whole form subtree,
        # a frame of ~60 ms just when a query starts.
        self.query_one("#form").display = False
        self.query_one(ResultsTable).focus()
        self.refresh_bindings()

    def action_toggle_form(self) -> None:
        form = self.query_one("#form", TabbedContent)
        if self.form_visible and form.active != "tab-log":
            self._hide_form()
        else:
            self._show_form("tab-query")
            self.query_one("#key-input", Input).focus()

    def action_leave_form(self) -> None:
        """Esc in the form (nothing running): back to the results."""
        self._hide_form()

    def action_toggle_log(self) -> None:
        form = self.query_one("#form", TabbedContent)
        if self.form_visible and form.active == "tab-log":
            self._hide_form()
        else:
            self._show_form("tab-log")
            self.query_one("#log", Log).focus()

    def action_network(self) -> None:
        self._show_form("tab-network")
        self.query_one("#net-address", Input).focus()

    # -- running ----------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._query_running

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        table_focused = isinstance(self.focused, ResultsTable)
        if action == "cancel":
            return self._query_running
        if action == "toggle_raw":
            return table_focused or not self.form_visible
        if action == "leave_form":
            return not self._query_running and self.form_visible and self._level is not None
        if action == "back":
            return bool(self._stack) and (table_focused or not self.form_visible)
        if action in ("filter", "drill"):
            if not table_focused:
                return False
            if action == "drill":
                level = self._level
                return bool(level and level.responses and next_level(
                    level.request.model, request_level(level.request.identifier)))
            return True
        if action == "export":
            return bool(self._level and self._level.responses) or None
        if action == "split":  # offered once a run came back incomplete
            return self._offers_split()
        if action == "retrieve":
            level = self._level
            return bool(table_focused and level and level.responses
                        and level.request.model is not QueryModel.WORKLIST)
        return True

    def _offers_split(self) -> bool:
        level = self._level
        return (not self._query_running and level is not None and level.outcome is not None
                and level.outcome.category == "incomplete" and level.split != "auto")

    def _show_banner(self) -> None:
        """The incomplete banner: more matches exist than arrived; F9 splits by date."""
        banner = self.query_one("#incomplete-banner", Static)
        level = self._level
        if level is None or not self._offers_split():
            banner.display = False
            return
        banner.update(Content.assemble(  # one line at 80 columns
            ("▲ ", "bold"), "The SCP stopped at its result limit: more matches exist. ",
            ("F9", "bold"), " splits by date"))
        banner.display = True

    def action_split(self) -> None:
        """Run the current level's query again, split by date (auto) on one association."""
        level = self._level
        if level is None:
            return
        from findtui.engine.split import SplitError, SplitPlan

        try:
            SplitPlan(level.request, "auto")
        except SplitError as exc:
            self.notify(visible(str(exc).replace("--split", "Splitting")),
                        title="Cannot split", severity="error", timeout=8)
            return
        self._launch(level.request, level.keys, "auto")

    def action_run(self) -> None:
        """Run the query the form describes (cancelling a running one first)."""
        if not self._commit_typed_key():
            return
        try:
            request = self.build_request()
        except FormError as exc:
            self._show_form("tab-network")
            self.query_one(f"#{exc.field_id}").focus()
            self.notify(str(exc), title="Network", severity="error")
            return
        except (KeyPathError, ExtendedNegotiationError) as exc:
            self._show_form("tab-query")
            self.notify(str(exc), title="Cannot run", severity="error")
            return
        current = self._level
        same_place = (current is not None and current.request.model is request.model
                      and request_level(current.request.identifier)
                      == request_level(request.identifier))
        if not same_place:
            self._stack.clear()
        self._launch(request, self.query_one(KeyEditor).keys)

    def _launch(self, request: FindRequest, keys: list[str], split: str | None = None,
                drill: bool = False) -> None:
        """Run ``request`` as soon as the running query has stopped; the latest wins.
        ``drill``: a level below the current one (its table starts unsorted, unfiltered)."""
        self._next_launch = (request, list(keys), split, drill)
        if not self._launching:
            self._launching = True
            self._launch_when_idle()

    @work(exit_on_error=False, group="launch")
    async def _launch_when_idle(self) -> None:
        """Waits (as a worker, so a slow C-CANCEL never holds up the keyboard) for the
        running query's worker to end, then starts the next: never two feeding one table."""
        try:
            while self._next_launch is not None:
                request, keys, split, drill = self._next_launch
                self._next_launch = None
                await self.stop_running()
                if self._next_launch is None:
                    self.start_query(request, keys, split, drill=drill)
        finally:
            self._launching = False

    def start_query(self, request: FindRequest, keys: list[str],
                    split: str | None = None, drill: bool = False) -> None:
        """Start the query at once (the caller made sure nothing is running); ``split``:
        split it by date (engine.split) on one association; ``drill``: a level below
        the current one, whose table starts unsorted and unfiltered. The same query
        again (F5) keeps the sort, the filter and the cursor's row; another keeps the
        filter."""
        if self._froze:  # the last stream froze its rows: collect once, before this one
            self._froze = False
            _settle_heap()
        self._run_id += 1
        columns = table_columns(request.identifier, keys)
        table = self.query_one(ResultsTable)
        previous, view = self._level, table.view_state()
        same = (previous is not None and not drill and previous.keys == list(keys)
                and previous.request.model is request.model
                and previous.request.network == request.network)
        drilled = drill or bool(self._stack)
        self._level = ResultLevel(request=request, keys=list(keys), columns=columns,
                                  state="running", split=split,
                                  display=column_display(
                                      columns, request if drilled else None))
        table.set_columns(columns, **self._level.display)
        if drill:
            self._set_filter_bar("")
        elif same:
            table.restore_view(view)
        self._cursor_wanted = ((view, _unique_column(request, columns))
                               if same and view.cursor_cells is not None else None)
        table.set_empty_text("")
        table.add_class("-streaming")
        self._set_fresh(False)
        self.query_one("#log", Log).clear()
        self._log_lines.clear()
        self.query_one(StatusLine).start()
        self.timings = {"started": time.perf_counter()}
        self._update_breadcrumb()
        self._hide_form()
        if split:
            from findtui.engine.split import SplitPlan, SplitRun

            self._query = SplitRun(SplitPlan(request, split))
        else:
            self._query = FindQuery(request)
        self._query_running = True
        self._show_banner()
        self.refresh_bindings()
        self._worker = self._run_query(self._run_id, self._query, request, columns)

    async def stop_running(self) -> None:
        """Cancel the running query (if any) and wait for its worker to end."""
        worker, query = self._worker, self._query
        if worker is None or query is None or worker.is_finished:
            return
        query.cancel()
        self.query_one(StatusLine).cancelling()
        try:
            await worker.wait()
        except (WorkerCancelled, WorkerFailed):
            pass

    def action_cancel(self) -> None:
        if self._query_running and self._query is not None:
            self._query.cancel()
            self.query_one(StatusLine).cancelling()
            self.write_log("I: Cancel requested")

    @work(thread=True, exclusive=True, exit_on_error=False, group="query")
    def _run_query(self, run_id: int, query, request: FindRequest, columns: list[str]) -> None:
        """The C-FIND, on its own thread: responses go out in batches (RowsReceived).
        ``query``: a FindQuery, or a SplitRun (several C-FINDs; it keeps its summary)."""
        from findtui.engine.split import SplitRun, SubQueryEnded, SubQueryStarted

        split = query if isinstance(query, SplitRun) else None
        formatters = cell_formatters(columns)
        tags = output.top_level_tags(columns)
        post = self.post_message

        def send(rows, responses, lines, first):
            post(RowsReceived(run_id, rows, responses, lines, first))

        batcher = RowBatcher(send).start()
        batcher.log(["I: Requesting Association"])
        summary = split.summary if split is not None else RunSummary.of(request)
        gate = self._ui_gate
        try:
            for event in query.events():
                if split is None:
                    summary.feed(event)
                if isinstance(event, Pending):
                    gate.wait()  # the UI draws or takes rows: let it have the GIL
                    row = build_row(event, columns, formatters, tags)
                    line = next(output.pending_lines(event, with_identifier=False))
                    batcher.add(row, compact(event), "I: " + line)
                elif isinstance(event, Associated):
                    post(QueryAssociated(run_id))
                    lines = [f"I: Association Accepted (Max Send PDV: {event.peer_max_pdu})",
                             f"I: Transfer syntax: {event.transfer_syntax.name}"]
                    lines += ["I: " + line for line in
                              request.ext_neg.describe_accepted(request.model, event.ext_neg_reply)]
                    lines.append("I: Sending Find Request")
                    lines += ["I: " + visible(line) for line in
                              output.identifier_lines(request.identifier, "Request Identifier")]
                    batcher.log(lines)
                elif isinstance(event, CancelSent):
                    post(QueryCancelSent(run_id, event.after))
                    batcher.log([f"I: Sent C-CANCEL after {event.after} responses"])
                elif isinstance(event, Final):
                    prefix = {"failure": "E: ", "warning": "W: "}.get(event.category, "I: ")
                    batcher.log([prefix + visible(line) for line in output.final_lines(event)]
                                + ["I: Releasing Association"])
                elif isinstance(event, (AssociationFailed, Fault)):
                    batcher.log(["E: " + visible(event.message + form_hint(event.settings))])
                elif isinstance(event, SubQueryStarted):
                    sub = event.sub
                    what = (f"{split.plan.key}={sub.range.dicom()}" if sub.range is not None
                            else "the query as given")
                    batcher.log([f"I: Sub-query {sub.number}: {what}"])
                elif isinstance(event, SubQueryEnded):
                    batcher.log([f"I: Sub-query {event.sub.number} ended: "
                                 f"{visible(event.summary.title)}, {event.summary.received} "
                                 f"matches ({event.duplicates} already received)"
                                 + ("; incomplete, split in two" if event.bisected else "")])
        except Exception as exc:  # a bug or an unexpected library error: show it, keep the rows
            summary.crashed(f"{type(exc).__name__}: {exc}")
            batcher.log(["E: " + visible(f"{type(exc).__name__}: {exc}")])
        finally:
            batcher.close()
        summary = split.finish() if split is not None else summary.finish()
        post(QueryFinished(run_id, outcome_of(summary), summary))

    @on(RowsReceived)
    def _rows_received(self, message: RowsReceived) -> None:
        if message.run_id != self._run_id or self._level is None:
            return
        with self._ui_gate:
            self._take_rows(message)

    def _take_rows(self, message: RowsReceived) -> None:
        if message.rows:
            level = self._level
            level.rows.extend(message.rows)
            level.responses.extend(message.responses)
            table = self.query_one(ResultsTable)
            start = table.total_count
            table.add_rows(message.rows)
            if self._cursor_wanted is not None:
                self._find_cursor_row(table, start, message.rows)
            # Rows are kept: out of the collector's sight at once. Otherwise a full
            # collection walks every row so far, again and again while 100k stream in
            # (20-35 ms stalls, dozens of them). What died meanwhile is collected when
            # the next query starts (_settle_heap).
            gc.freeze()
            self._froze = True
            status = self.query_one(StatusLine)
            status.set_matches(len(level.responses))
            if table.filter_text:
                status.set_filter_info(table.displayed_count)
            if "first_row" not in self.timings:
                self.timings["first_response"] = message.first_response_at or 0.0
                self.timings["first_row"] = time.perf_counter()
                self.call_after_refresh(self._first_row_painted)
                self.refresh_bindings()
        if message.log_lines:
            self.write_log(*message.log_lines)

    def _find_cursor_row(self, table: ResultsTable, start: int, rows) -> None:
        """F5 on the same query: put the cursor back on its row when it arrives (by the
        level's unique key, else by all its cells), unless the user moved it meanwhile."""
        view, unique = self._cursor_wanted
        if table.cursor_pinned:
            self._cursor_wanted = None
            return
        cells = view.cursor_cells
        for offset, row in enumerate(rows):
            if (row[unique] == cells[unique] if unique is not None and row[unique]
                    else row == cells):
                self._cursor_wanted = None
                table.place_cursor(start + offset, view.screen_line)
                return

    def _first_row_painted(self) -> None:
        self.timings.setdefault("first_row_painted", time.perf_counter())

    @on(QueryAssociated)
    def _associated(self, message: QueryAssociated) -> None:
        if message.run_id == self._run_id:
            self.timings["associated"] = time.perf_counter()

    @on(QueryCancelSent)
    def _cancel_sent(self, message: QueryCancelSent) -> None:
        if message.run_id == self._run_id:
            self.query_one(StatusLine).cancelling()

    @on(QueryFinished)
    def _finished(self, message: QueryFinished) -> None:
        if message.run_id != self._run_id or self._level is None:
            return
        self.timings["finished"] = time.perf_counter()
        self._query_running = False
        self.query_one(ResultsTable).remove_class("-streaming")
        status = self.query_one(StatusLine)
        status.finish(message.outcome, len(self._level.responses))
        wanted, self._cursor_wanted = self._cursor_wanted, None
        table = self.query_one(ResultsTable)
        if wanted is not None and not table.cursor_pinned and wanted[0].cursor_row:
            # the row is gone: the cursor stays where it was in the list
            table.move_cursor(wanted[0].cursor_row)
        level = self._level
        level.state, level.outcome, level.elapsed = message.outcome.category, \
            message.outcome, status.elapsed
        self._update_empty_text()
        self.post_message(RunEnded(level.request, list(level.keys), message.summary,
                                   level.split))
        self._show_banner()
        self.refresh_bindings()
        if message.outcome.category in ("network", "failure"):
            self.notify(visible(message.outcome.detail or message.outcome.title),
                        title=message.outcome.title, severity="error", timeout=8)
        if message.outcome.category == "network" and not level.responses:
            # Never associated: what needs fixing is on the Network tab.
            self._show_form("tab-network")
            self.query_one("#net-address", Input).focus()

    # -- results ----------------------------------------------------------

    @on(ResultsTable.PositionChanged)
    def _position_changed(self, event: ResultsTable.PositionChanged) -> None:
        self.query_one(StatusLine).set_row(event.row)

    @on(ResultsTable.MarksChanged)
    def _marks_changed(self, event: ResultsTable.MarksChanged) -> None:
        self.query_one(StatusLine).set_marked(event.count)

    def action_retrieve(self) -> None:
        """Retrieve the marked rows (or the current one): a dialog, then the queue."""
        from findtui.engine.retrieve import ItemList, RetrieveError
        from findtui.screens.retrieve import RetrieveDialog

        level = self._level
        table = self.query_one(ResultsTable)
        if level is None or not level.responses:
            self.notify("Nothing to retrieve yet: run a query first", severity="warning")
            return
        sources = table.marked or ([table.cursor_source_index]
                                   if table.cursor_source_index is not None else [])
        model = level.request.model
        what = request_level(level.request.identifier) or "PATIENT"
        found, titles = ItemList(model, what), []
        try:
            for source in sources:
                ds = level.responses[source].identifier
                if found.add(ds) is not None:
                    phi = self.app.phi  # type: ignore[attr-defined]
                    titles.append(row_title(ds, what, phi if phi.on else None))
        except (RetrieveError, IdentifierDecodeError) as exc:
            self.notify(visible(str(exc)), title="Cannot retrieve", severity="error",
                        timeout=8)
            return
        items = found.items
        if not items:
            return
        noun = {"PATIENT": "patient", "STUDY": "study", "SERIES": "series",
                "IMAGE": "image"}.get(what, "item")
        noun = noun if len(items) == 1 or noun == "series" else (
            "studies" if noun == "study" else noun + "s")

        def done(settings) -> None:
            if settings is None:
                return
            self.app.queue_retrieves(settings, level.request.network, model,  # type: ignore[attr-defined]
                                     items, titles)
            table.clear_marks()

        defaults = self.app.retrieve_settings(level.request.network)  # type: ignore[attr-defined]
        self.app.push_screen(RetrieveDialog(len(items), noun, defaults),
                             done)

    def _update_empty_text(self) -> None:
        """What the table says when it shows no row: no match, or no row passing the filter."""
        table = self.query_one(ResultsTable)
        level = self._level
        text = ""
        if level is not None and not self._query_running:
            if not level.responses and level.state in ("success", "warning"):
                criteria = [self.app.phi.key(k)  # type: ignore[attr-defined]
                            for k in level.keys if key_value(k)]
                where = request_level(level.request.identifier) or "worklist"
                text = (f"No matches for {', '.join(criteria)} at {where} level"
                        if criteria else f"No matches: the peer has no {where} records")
            elif table.filter_text and not table.displayed_count:
                text = f"No row contains {table.filter_text!r} · / then Esc clears the filter"
        table.set_empty_text(text)

    @on(ResultsTable.RowSelected)
    def _row_selected(self, event: ResultsTable.RowSelected) -> None:
        from findtui.screens.detail import DetailScreen

        level = self._level
        if level is None or event.source_index >= len(level.responses):
            return
        response = level.responses[event.source_index]
        self.app.push_screen(DetailScreen(response, level.request,
                                          total=len(level.responses)))

    def _selected_response(self) -> tuple[int, Pending] | None:
        level = self._level
        index = self.query_one(ResultsTable).cursor_source_index
        if level is None or index is None or index >= len(level.responses):
            return None
        return index, level.responses[index]

    def action_drill(self) -> None:
        """Query the level below the selected row (its studies, series or images)."""
        level = self._level
        selected = self._selected_response()
        if level is None or selected is None:
            self.notify("Select a row first", severity="warning")
            return
        try:
            ds = selected[1].identifier
            request, below = drill_down_request(level.request, ds)
        except (DrillDownError, IdentifierDecodeError) as exc:
            self.notify(str(exc), title="Cannot drill down", severity="warning")
            return
        table = self.query_one(ResultsTable)
        level.view = table.view_state()
        level.row_title = row_title(ds, request_level(level.request.identifier))
        level.row_title_masked = row_title(ds, request_level(level.request.identifier),
                                           self.app.phi)  # type: ignore[attr-defined]
        self._stack.append(level)
        keys = order_keys([k for k in dataset_to_keys(request.identifier)
                           if not is_level_key(k)], request.model, below)
        self._fill_query(request, keys)
        self._keys_are_default = False
        self._launch(request, keys, drill=True)

    def action_back(self) -> None:
        """Back to the level above, as it was (no new query)."""
        if not self._stack:
            return
        self._next_launch = None  # a run waiting to start is dropped too
        if self._query is not None:
            self._query.cancel()  # its worker ends on its own; the next run waits for it
        self._run_id += 1  # anything still in flight from the abandoned run is dropped
        self._query_running = False
        self._cursor_wanted = None
        self.query_one(ResultsTable).remove_class("-streaming")
        level = self._stack.pop()
        level.row_title = ""
        self._level = level
        table = self.query_one(ResultsTable)
        table.set_columns(level.columns, **level.display)
        table.add_rows(level.rows)
        table.restore_view(level.view)
        self._set_filter_bar(level.view.filter_text)
        self.query_one(StatusLine).restore(level.state, len(level.responses), level.outcome,
                                           level.elapsed)
        self._show_banner()
        self._fill_query(level.request, level.keys)
        self._update_breadcrumb()
        self._update_empty_text()
        table.focus()
        self.refresh_bindings()

    def action_toggle_raw(self) -> None:
        """Readable values (dates 2019-08-26, names, titles, folded columns) or raw DICOM."""
        table = self.query_one(ResultsTable)
        table.readable = not table.readable
        self.notify("Readable values: dates, names, SOP classes; v shows the DICOM values"
                    if table.readable else
                    "Raw DICOM values, keywords, every column; v makes them readable",
                    timeout=3)

    def _update_breadcrumb(self) -> None:
        model_form = self.query_one(ModelForm)
        parts: list = []
        try:
            called = self.query_one("#net-called", Input).value.strip()
        except Exception:
            called = ""
        if called:
            parts += [(visible(called), "bold"), " · "]
        hidden = self.app.phi.on  # type: ignore[attr-defined]
        levels = [(lv.request.model, request_level(lv.request.identifier),
                   lv.row_title_masked if hidden else lv.row_title) for lv in self._stack]
        model = model_form.model
        parts.append(model.label)
        for _, name, title in levels:
            parts += [" › ", name or "", ": ", (title, "italic")]
        current = model_form.level if model.levels else "worklist"
        parts += [" › ", (current, "bold $accent")]
        if self._stack:
            parts.append(("   ⌫ back", "$text-muted"))
        if hidden:  # first: a long breadcrumb is cut at the right edge
            parts[:0] = [("⊘ PHI hidden", "bold reverse"), " "]
        self.query_one("#breadcrumb", Static).update(Content.assemble(*parts))

    # -- filter -----------------------------------------------------------

    def _set_filter_bar(self, text: str) -> None:
        """The filter bar and the table's filter show ``text`` (a level's own filter)."""
        if self._filter_timer is not None:
            self._filter_timer.stop()
        filter_input = self.query_one("#filter-input", Input)
        with filter_input.prevent(Input.Changed):
            filter_input.value = text
        self.query_one("#filter-bar").set_class(bool(text), "-visible")
        self._apply_filter(text)

    def action_filter(self) -> None:
        bar = self.query_one("#filter-bar")
        bar.add_class("-visible")
        self.query_one("#filter-input", Input).focus()

    @on(Input.Changed, "#filter-input")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        # A short pause first: one filter pass per burst of typing, not per key.
        self._filter_timer = self.set_timer(0.12, partial(self._apply_filter, event.value))

    def _apply_filter(self, text: str) -> None:
        table = self.query_one(ResultsTable)
        table.set_filter(text)
        self.query_one(StatusLine).set_filter_info(table.displayed_count if text else None,
                                                  f"filter {text!r}" if text else "")
        self._update_empty_text()

    @on(Input.Submitted, "#filter-input")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._apply_filter(event.value)
        if not event.value:
            self.query_one("#filter-bar").remove_class("-visible")
        self.query_one(ResultsTable).focus()

    def on_key(self, event) -> None:
        filter_input = self.query_one("#filter-input", Input)
        if event.key == "escape" and filter_input.has_focus:
            event.stop()
            event.prevent_default()
            filter_input.value = ""
            self._apply_filter("")
            self.query_one("#filter-bar").remove_class("-visible")
            self.query_one(ResultsTable).focus()

    # -- C-ECHO -----------------------------------------------------------

    def action_echo(self) -> None:
        try:
            network = self.query_one(NetworkForm).network()
        except FormError as exc:
            self._show_form("tab-network")
            self.query_one(f"#{exc.field_id}").focus()
            self.notify(str(exc), title="C-ECHO", severity="error")
            return
        self.notify(f"C-ECHO to {network.called_aet}…", timeout=2)
        request = FindRequest(network=network, identifier=build_request_identifier(
            QueryModel.STUDY, "STUDY", []))
        self._echo(request, f"{network.called_aet} at {network.address}:{network.port}")

    @work(thread=True, exclusive=True, exit_on_error=False, group="echo")
    def _echo(self, request: FindRequest, target: str) -> None:
        try:
            result = echo(request)
        except Exception as exc:  # unexpected: report, never crash the UI
            from findtui.engine.query import EchoResult

            result = EchoResult(False, f"{type(exc).__name__}: {exc}")
        self.post_message(EchoFinished(result, target))

    @on(EchoFinished)
    def _echo_finished(self, message: EchoFinished) -> None:
        result = message.result
        self.write_log(("I: " if result.ok else "E: ") + visible(result.message))
        self.notify(visible(result.message), title=f"C-ECHO {visible(message.target)}",
                    severity="information" if result.ok else "error",
                    timeout=5 if result.ok else 10)

    # -- export -----------------------------------------------------------

    def action_export(self) -> None:
        from findtui.screens.export import ExportChoice, ExportScreen

        level = self._level
        if level is None or not level.responses:
            self.notify("Nothing to export yet: run a query first", severity="warning")
            return
        table = self.query_one(ResultsTable)
        selected = self._selected_response()
        shown = table.displayed_count
        as_received = not table.filter_text and table.sort_column is None

        def done(choice: ExportChoice | None) -> None:
            if choice is None:
                return
            if choice.scope == "selected" and selected is not None:
                responses = level.responses.subset([selected[0]])
            elif choice.scope == "shown":
                responses = level.responses.subset(table.displayed_source_indices())
            else:
                responses = level.responses.copy()
            if self.app.phi.on:  # type: ignore[attr-defined]
                from findtui.screens.dialogs import ConfirmScreen

                def confirmed(ok: bool | None) -> None:
                    if ok:
                        self._start_export(choice, responses, level)

                self.app.push_screen(ConfirmScreen(
                    "Patient data is hidden on screen, but the export holds it unmasked "
                    "(names, IDs, birth dates, as the PACS sent them).",
                    "Export unmasked patient data?", yes="Export", no="Cancel"), confirmed)
                return
            self._start_export(choice, responses, level)

        self.app.push_screen(
            ExportScreen(total=len(level.responses), shown=shown, as_received=as_received,
                         selected=selected[1].index if selected else None,
                         sop_class_uid=level.request.model.sop_class_uid,
                         folder=getattr(self.app, "export_folder", None) or Path.cwd(),
                         download=self.app.is_web),
            done)

    def _start_export(self, choice, responses: ResponseStore, level: ResultLevel) -> None:
        self.notify(f"Exporting {len(responses):,} response(s)…", timeout=2)
        self._export(choice, responses, level.request, level.columns)

    @work(thread=True, exclusive=True, exit_on_error=False, group="export")
    def _export(self, choice, responses: ResponseStore, request: FindRequest,
                columns: list[str]) -> None:
        from findtui.screens.export import export_download, write_export

        download = None
        try:
            if choice.download:
                download, text = export_download(choice, responses, request, columns)
            else:
                text = write_export(choice, responses, request, columns)
        except (output.OutputError, OSError) as exc:
            self.post_message(ExportFinished(False, str(exc)))
            return
        self.post_message(ExportFinished(True, text, download))

    @on(ExportFinished)
    def _export_finished(self, message: ExportFinished) -> None:
        download = message.download
        if download is not None:
            self.app.deliver_binary(download.file, save_filename=download.name,
                                    mime_type=download.mime_type)
        self.write_log(("I: " if message.ok else "E: ") + visible(message.text))
        self.notify(visible(message.text), title="Export" if message.ok else "Export failed",
                    severity="information" if message.ok else "error",
                    timeout=6 if message.ok else 12)

    # -- command palette --------------------------------------------------

    def palette_commands(self) -> list[tuple[str, object, str]]:
        run = self.run_action
        commands: list[tuple[str, object, str]] = [
            ("Run query", partial(run, "run"), "Run the C-FIND the form describes (F5)"),
            ("C-ECHO the peer", partial(run, "echo"), "Verify the association to the SCP (F4)"),
            ("Show or hide the form", partial(run, "toggle_form"), "Keys, model and level (F2)"),
            ("Show the log", partial(run, "toggle_log"), "findscu-style log of the last query (F3)"),
            ("Network settings", partial(run, "network"), "Address, port, AE titles, TLS"),
            ("Default keys", self._defaults, "Replace the keys with the model/level defaults"),
        ]
        if self._query_running:
            commands.append(("Cancel query", partial(run, "cancel"), "C-CANCEL (Esc)"))
        level = self._level
        if level and level.responses:
            commands += [
                ("Export results…", partial(run, "export"), "rsp*.dcm, CSV or DICOM JSON (F6)"),
                ("Filter rows", partial(run, "filter"), "Show rows containing a text (/)"),
                ("Drill down", partial(run, "drill"), "Query the level below the row (d)"),
            ]
            if level.request.model is not QueryModel.WORKLIST:
                commands.append(("Retrieve marked rows…", self.action_retrieve,
                                 "C-GET or C-MOVE the rows marked with Space, or the "
                                 "current one (R)"))
            table = self.query_one(ResultsTable)
            for i, column in enumerate(level.columns):
                commands.append((f"Sort by {column}", partial(table.sort_by, i),
                                 "ascending; S reverses"))
            commands.append(("Sort by arrival order", partial(table.sort_by, None), ""))
            commands.append(("Show raw DICOM values" if table.readable
                             else "Show readable values", partial(run, "toggle_raw"),
                             "Dates, times, names, SOP classes and titles readable or as "
                             "sent; folded columns back (v)"))
        hidden = self.app.phi.on  # type: ignore[attr-defined]
        commands.append(("Show patient data" if hidden else "Hide patient data (PHI)",
                         self.app.action_toggle_phi,  # type: ignore[attr-defined]
                         "Mask patient names, IDs and birth dates everywhere on screen, for "
                         "screenshots and shared rooms (Ctrl+G)"))
        if self._offers_split():
            commands.append(("Re-run split by date", partial(run, "split"),
                             "The answer was incomplete: split the query on its date (F9)"))
        if self._stack:
            commands.append(("Back up a level", partial(run, "back"), "Backspace"))
        for model in QueryModel:
            commands.append((f"Model: {model.label}", partial(self.set_model, model, True),
                             "Information model of the query"))
        return commands
