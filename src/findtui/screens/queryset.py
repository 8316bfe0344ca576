"""The query set screen (F10): the form's query against several nodes at once, and/or for
a list of values pasted or loaded from a CSV file, optionally split by date.

It runs engine.queryset.QuerySetRun in a worker thread: every node on its own thread and
association, a list's queries one after the other on it. Results stream into one table
with a Node and a Query column (Dedupe merges the rows of the same match once all nodes
have answered); one status line per node says how far it is and how it ended. Enter
shows a row's detail; Esc cancels a running set, then goes back to the query screen.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field, replace

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets.selection_list import Selection
from textual.widgets import Footer, Input, Label, Select, Static, TextArea

from findtui.engine.output import row_cells, table_columns, top_level_tags
from findtui.engine.query import (
    AssociationFailed, Fault, FindRequest, IdentifierDecodeError, Pending,
)
from findtui.engine.querylist import (
    QueryList, QueryListError, check_rows, parse_query_list, read_query_list,
)
from findtui.engine.queryset import (
    Node, NodeDone, QueryDone, QuerySetRun, Tagged, job_identifier, match_key,
)
from findtui.engine.sanitize import visible
from findtui.engine.split import SPLIT_MODES, SplitError, SplitPlan, unique_key
from findtui.screens.query_logic import column_display
from findtui.widgets.results_table import ResultsTable
from findtui.widgets.toggles import Checkbox, SelectionList

FORM_NODE = "\x00form"  # the SelectionList value of the form's own connection


def node_label(node: Node) -> str:
    """A node's name in the table and the status lines: its profile's name, or for the
    form's own connection its called AE title (short enough for an 80-column Node column;
    the form's line in the node list gives the address)."""
    return node.name or node.request.network.called_aet or node.label


class QuerySetError(ValueError):
    """What the form says cannot run (shown as a notification)."""


@dataclass
class NodeState:
    label: str
    queries: int
    done: int = 0
    matches: int = 0
    state: str = "waiting"  # waiting, running, then the node's outcome
    message: str = ""

    def line(self) -> str:
        text = f"{self.label}: "
        if self.queries > 1:
            text += f"{self.done:,}/{self.queries:,} queries, "
        text += f"{self.matches:,} matches · {self.state}"
        if self.message and self.state not in ("success", "warning", "running"):
            text += f" ({self.message})"
        return text


@dataclass
class SetPlan:
    """What one run of the screen asks: nodes, queries, split, dedupe."""

    nodes: list[Node]
    queries: QueryList | None
    split: str | None
    dedupe: bool
    columns: list[str] = field(default_factory=list)


def values_list(key: str, text: str) -> QueryList | None:
    """A pasted column of values for ``key`` as a query list (None when nothing is pasted);
    a first line equal to the key (a pasted spreadsheet column) is its header."""
    values = [line.strip() for line in text.splitlines()]
    while values and not values[-1]:
        values.pop()
    if not any(values):
        return None
    if not key.strip():
        raise QuerySetError("Key: name the key the pasted values are for, e.g. "
                            "AccessionNumber")
    if values[0] == key.strip():
        values = values[1:]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([key.strip()])
    writer.writerows([[v] for v in values])
    return parse_query_list(out.getvalue(), "the pasted values")


class QuerySetScreen(Screen):
    """Several nodes and/or a list of values for the form's query."""

    BINDINGS = [
        Binding("f5,ctrl+r", "run", "Run", id="queryset.run"),
        Binding("escape", "cancel_or_close", "Back", id="queryset.back"),
        Binding("f2", "toggle_form", "Form", id="queryset.form"),
    ]

    def __init__(self, request: FindRequest, keys: list[str], node_name: str | None = None,
                 node_names: list[str] | None = None, profiles=None) -> None:
        super().__init__()
        self.request = request
        self.keys = list(keys)
        self.node_name = node_name  # the form's node profile, if loaded from one
        self.node_names = list(node_names or [])
        self.profiles = profiles
        self.run: QuerySetRun | None = None
        self.responses: list[Pending] = []
        self.nodes: list[NodeState] = []
        self._started = 0.0

    def compose(self) -> ComposeResult:
        net = self.request.network
        form_label = (self.node_name or
                      f"this form: {net.called_aet}@{net.address}:{net.port}")
        with Vertical(id="qs-form"):
            with Horizontal(classes="qs-row qs-tall"):
                yield Label("Nodes", classes="form-label")
                options = [Selection(visible(form_label), FORM_NODE, True, id="form")]
                options += [Selection(visible(n), n, False) for n in self.node_names
                            if n != self.node_name]
                yield SelectionList(*options, id="qs-nodes", compact=True)
            with Horizontal(classes="qs-row"):
                yield Label("Key", classes="form-label")
                yield Input(id="qs-key", compact=True, placeholder="e.g. AccessionNumber")
                yield Label("Split", classes="qs-label")
                yield Select([(m, m) for m in SPLIT_MODES], id="qs-split", compact=True,
                             prompt="off", allow_blank=True)
                yield Checkbox("Dedupe", id="qs-dedupe", compact=True)
            with Horizontal(classes="qs-row qs-tall"):
                yield Label("Values", classes="form-label")
                yield TextArea(id="qs-values", soft_wrap=False, show_line_numbers=False,
                               compact=True)
            with Horizontal(classes="qs-row"):
                yield Label("or file", classes="form-label")
                yield Input(id="qs-file", compact=True,
                            placeholder="a list file: header of keys, a query a row")
        yield Static(id="qs-node-status")
        yield ResultsTable(id="qs-results")
        yield Static(id="qs-status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#qs-form").border_title = "Query set: the form's query on"
        self.query_one("#qs-status", Static).update(
            "Pick nodes (Space), paste values for a key or name a CSV list, then F5")
        self.query_one("#qs-nodes").focus()

    # --- the form -> a plan --------------------------------------------------------

    def plan(self) -> SetPlan:
        """What the form asks (raises QuerySetError with what to fix)."""
        chosen = list(self.query_one("#qs-nodes", SelectionList).selected)
        if not chosen:
            raise QuerySetError("Nodes: pick at least one node (Space)")
        nodes = []
        for name in chosen:
            if name == FORM_NODE:
                nodes.append(Node(self.node_name, self.request))
                continue
            profile = self.profiles.nodes[name]
            nodes.append(Node(name, replace(self.request, network=profile.network)))
        split = self.query_one("#qs-split", Select).value
        split = split if isinstance(split, str) else None
        path = self.query_one("#qs-file", Input).value.strip()
        try:
            if path:
                import os

                listed = read_query_list(os.path.expanduser(path))
            else:
                listed = values_list(self.query_one("#qs-key", Input).value,
                                     self.query_one("#qs-values", TextArea).text)
            def splittable(ds) -> None:
                SplitPlan(replace(self.request, identifier=ds), split)

            check = splittable if split else None
            if listed is not None:
                listed = check_rows(listed, self.request.identifier, False, check)
            elif split:
                splittable(self.request.identifier)
        except QueryListError as exc:
            raise QuerySetError(str(exc)) from None
        except SplitError as exc:
            raise QuerySetError(str(exc).replace("--split", "Split")) from None
        if len(nodes) == 1 and listed is None and not split:
            raise QuerySetError("One node and no list: run it from the query screen (F5), "
                                "or pick more nodes, or give values")
        identifier = self.request.identifier
        keys = list(self.keys)
        if listed is not None:
            identifier = job_identifier(identifier, listed.queries[0])
            keys += list(listed.keys)
        columns = table_columns(identifier, keys)
        return SetPlan(nodes, listed, split, self.query_one("#qs-dedupe", Checkbox).value,
                       columns)

    # --- actions ----------------------------------------------------------------

    def action_toggle_form(self) -> None:
        form = self.query_one("#qs-form")
        form.display = not form.display
        (self.query_one("#qs-nodes") if form.display else self.query_one(ResultsTable)).focus()

    def action_run(self) -> None:
        if self.run is not None:
            self.notify("A query set is running: Esc cancels it", severity="warning")
            return
        try:
            plan = self.plan()
        except QuerySetError as exc:
            self.notify(visible(str(exc)), title="Cannot run", severity="error", timeout=10)
            return
        labels = [node_label(n) for n in plan.nodes]
        lead = ["Node", "Query"] if plan.queries is not None else ["Node"]
        table = self.query_one(ResultsTable)
        table.mask = self.app.phi  # type: ignore[attr-defined]  # Ctrl+G: patient data hidden
        columns = [*lead, *plan.columns]
        table.set_columns(columns, **column_display(columns))
        table.set_empty_text("")
        self.responses = []
        count = len(plan.queries.queries) if plan.queries is not None else 1
        self.nodes = [NodeState(visible(label), count) for label in labels]
        self.run = QuerySetRun(plan.nodes, plan.queries.queries if plan.queries else None,
                               split=plan.split)
        self._started = time.monotonic()
        self.query_one("#qs-form").display = False
        table.focus()
        self._show_status()
        self._stream(self.run, plan)

    def action_cancel_or_close(self) -> None:
        if self.run is not None:
            self.run.cancel()
            self.query_one("#qs-status", Static).update("Cancelling…")
            return
        self.dismiss()

    @on(ResultsTable.RowSelected)
    def _row_selected(self, event: ResultsTable.RowSelected) -> None:
        from findtui.screens.detail import DetailScreen

        if event.source_index < len(self.responses):
            self.app.push_screen(DetailScreen(self.responses[event.source_index],
                                              self.request, total=len(self.responses)))

    # --- the worker -----------------------------------------------------------------

    @work(thread=True, exit_on_error=False, group="queryset")
    def _stream(self, run: QuerySetRun, plan: SetPlan) -> None:
        tags = top_level_tags(plan.columns)
        labels = [visible(node_label(n)) for n in plan.nodes]
        unique = unique_key(self.request.model, self.request.identifier)
        merged: dict[object, list] = {}
        batch: list[tuple[Pending, tuple[str, ...]]] = []
        last = time.monotonic()
        listed = plan.queries is not None

        def cells(event: Pending, node: str, query: str) -> tuple[str, ...]:
            try:
                values = row_cells(event, plan.columns, tags)
            except IdentifierDecodeError:
                values = ["(cannot be decoded)"] + [""] * (len(plan.columns) - 1)
            lead = [node, query] if listed else [node]
            return tuple(visible(c) for c in (*lead, *values))

        for item in run.events():
            if isinstance(item, Tagged):
                state = self.nodes[item.node]
                if state.state == "waiting":
                    state.state = "running"
                event = item.event
                if isinstance(event, Pending):
                    state.matches += 1
                    query = "" if item.query is None else str(item.query)
                    if plan.dedupe:
                        key = match_key(event, unique)
                        held = merged.setdefault(key, [event, set(), set()])
                        held[1].add(item.node)
                        held[2].add(item.query)
                        continue
                    batch.append((event, cells(event, labels[item.node], query)))
                elif isinstance(event, (AssociationFailed, Fault)):
                    state.message = event.message
            elif isinstance(item, QueryDone):
                self.nodes[item.node].done += 1
            elif isinstance(item, NodeDone):
                state = self.nodes[item.node]
                state.state = item.summary.outcome.value
                if item.summary.failures:
                    state.message = item.summary.failures[-1]
                if item.summary.not_sent:
                    state.message = (f"{item.summary.not_sent} not sent; " + state.message)
            now = time.monotonic()
            if now - last > 0.1:
                last = now
                rows, batch = batch, []
                self.app.call_from_thread(self._add, rows)
        if plan.dedupe:
            for event, nodes, queries in merged.values():
                node = "\\".join(labels[n] for n in sorted(nodes))
                query = "\\".join(str(q) for q in sorted(q for q in queries if q is not None))
                batch.append((event, cells(event, node, query)))
        self.app.call_from_thread(self._add, batch)
        self.app.call_from_thread(self._ended, run)

    def _add(self, rows: list[tuple[Pending, tuple[str, ...]]]) -> None:
        if rows:
            self.responses.extend(event for event, _ in rows)
            self.query_one(ResultsTable).add_rows([cells for _, cells in rows])
        self._show_status()

    def _ended(self, run: QuerySetRun) -> None:
        if self.run is run:
            self.run = None
        if not self.responses:
            self.query_one(ResultsTable).set_empty_text("No matches on any node")
        self._show_status()

    def phi_changed(self) -> None:
        """Patient data masked or shown (Ctrl+G)."""
        self.query_one(ResultsTable).redraw_cells()

    def _show_status(self) -> None:
        self.query_one("#qs-node-status", Static).update(
            "\n".join(n.line() for n in self.nodes))
        table = self.query_one(ResultsTable)
        what = "running" if self.run is not None else "done"
        if self._started and getattr(self.app, "show_timing", False):
            what += f" · {time.monotonic() - self._started:.1f} s"
        self.query_one("#qs-status", Static).update(
            f"{table.total_count:,} rows · {what} · F2 form · Enter detail · Esc "
            + ("cancel" if self.run else "back"))




def open_query_set(screen) -> None:
    """From the query screen (F10, the palette): its form's query, on the set screen."""
    from findtui.config.schema import ProfileError
    from findtui.engine.keys import KeyPathError
    from findtui.engine.models import ExtendedNegotiationError
    from findtui.screens.form_state import store_of, tracker_of
    from findtui.widgets.key_editor import KeyEditor
    from findtui.widgets.network_form import FormError

    if not screen._commit_typed_key():
        return
    try:
        request = screen.build_request()
    except (FormError, KeyPathError, ExtendedNegotiationError) as exc:
        screen.notify(visible(str(exc)), title="Cannot run", severity="error")
        return
    try:
        profiles = store_of(screen.app).load()
    except ProfileError as exc:
        screen.notify(visible(str(exc)), title="Profiles", severity="warning")
        profiles = None
    loaded = tracker_of(screen.app).node
    screen.app.push_screen(QuerySetScreen(
        request, screen.query_one(KeyEditor).keys, loaded.name if loaded else None,
        sorted(profiles.nodes) if profiles else [], profiles))


__all__ = ["QuerySetError", "QuerySetScreen", "open_query_set", "values_list"]
