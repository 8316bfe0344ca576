"""Saved node and query profiles in the TUI: the profiles screen, "save current form
as…", loading a profile into the query form, and the unsaved-changes prompt.

Storage is findtui.config.store.Store: every call re-reads the
file, and a corrupt file is never written over (every save raises ProfileError,
which is shown, never raised).

Unsaved changes: ``FormTracker`` keeps what the query form held when a profile (or
history entry) was last loaded or saved, separately for the network part (a node
profile) and the query part (a query profile). Loading over a part that was edited
since asks first; so does quitting, when the edited part came from a profile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import (
    Footer,
    Input,
    Label,
    OptionList,
    RadioButton,
    RadioSet,
    Select,
    Static,
    TextArea,
)
from textual.widgets.option_list import Option

from findtui.config.schema import NodeProfile, ProfileError, QueryProfile
from findtui.config.store import Store
from findtui.engine.keys import KeyPathError
from findtui.engine.models import QueryModel
from findtui.engine.network import Network, NetworkError
from findtui.engine.retrieve import DEFAULT_LAYOUT, DEFAULT_STORE_PORT, retrieve_options_from
from findtui.engine.sanitize import visible
from findtui.screens.dialogs import (
    ConfirmScreen,
    NameScreen,
    SaveChoice,
    confirm_then,
    notify_error,
)
from findtui.screens.form_state import store_of, tracker_of
from findtui.widgets.key_editor import KeyEditor
from findtui.widgets.lists import HighlightInView
from findtui.widgets.model_form import ExtNegForm, ModelForm
from findtui.widgets.network_form import FormError, NetworkForm

if TYPE_CHECKING:
    from findtui.screens.query import QueryScreen

# --- loading into the query form ----------------------------------------------


def load_node(screen: QueryScreen, node: NodeProfile, apply_model: bool = True) -> None:
    screen.fill_network(node.network)
    if node.hide_phi:  # this node's patient data stays off the screen
        screen.app.set_hide_phi(True)  # type: ignore[attr-defined]
    if apply_model and node.model is not None:
        # The node's default model; a query profile loaded with it sets its own instead.
        screen.set_model(node.model)
    tracker = tracker_of(screen.app)
    tracker.node = node
    tracker.mark(screen, query=False)


def load_query(screen: QueryScreen, query: QueryProfile, node: NodeProfile | None) -> None:
    if node is not None:
        load_node(screen, node, apply_model=False)
    screen.fill_query(query.model, query.identifier())
    tracker = tracker_of(screen.app)
    tracker.query = query
    tracker.mark(screen, network=False)


def use_profile(screen: QueryScreen, kind: str, name: str) -> None:
    """Load a saved profile into the query form (asking first if it would drop edits)."""
    app = screen.app
    store = store_of(app)
    tracker = tracker_of(app)
    try:
        profiles = store.load()
        profile = profiles.get(kind, name, store.path)
        node = None
        if kind == "query" and profile.node:
            node = profiles.nodes.get(profile.node)
            if node is None:
                app.notify(f"Its node {visible(profile.node)!r} is not saved: the Network tab "
                           "is left as it is", severity="warning", markup=False)
        if kind == "query":
            profile.identifier()  # keys that no longer parse: say so before touching the form
    except (ProfileError, KeyPathError) as exc:
        notify_error(app, exc, "Cannot load the profile")
        return
    edits = []
    if (kind == "node" or node is not None) and tracker.network_edited(screen):
        edits.append("network settings")
    if kind == "query" and tracker.query_edited(screen):
        edits.append("query")

    def load() -> None:
        if kind == "node":
            load_node(screen, profile)
        else:
            load_query(screen, profile, node)
        app.notify(f"Loaded {kind} profile {visible(name)!r}", timeout=3, markup=False)

    confirm_then(screen, edits, load)


def save_form_as(screen: QueryScreen) -> None:
    """ "Save current form as…": the Network tab as a node profile, or the Query tab as a
    query profile (which remembers the node profile in use, if any)."""
    app = screen.app
    store = store_of(app)
    tracker = tracker_of(app)
    query_tab = screen.query_one("#form").active != "tab-network" if screen.form_visible else True

    def build(choice: SaveChoice):
        if choice.kind == "node":
            network = screen.query_one(NetworkForm).network()
            old = tracker.node if tracker.node and tracker.node.name == choice.name else None
            fields = {} if old is None else {"model": old.model, "description": old.description,
                                             "retrieve": old.retrieve}
            return NodeProfile.from_network(choice.name, network, **fields).validated()
        screen.query_one(KeyEditor).commit_typed()
        request = screen.build_request()
        node_name, _ = tracker.names_for(request)
        profile = QueryProfile.from_request(choice.name, request, node=node_name)
        # The keys as the user gave them (their order is the table's column order).
        keys = tuple(screen.query_one(KeyEditor).keys)
        return replace(profile, keys=keys).validated()

    def check(choice: SaveChoice) -> str | None:
        try:
            build(choice)
        except FormError as exc:
            return f"Network tab: {exc}"
        except (KeyPathError, ProfileError, ValueError) as exc:
            return str(exc)
        return None

    def done(choice: SaveChoice | None) -> None:
        if choice is None:
            return
        try:
            profile = build(choice)
            exists = choice.name in store.names(choice.kind)
        except (FormError, KeyPathError, ProfileError, ValueError) as exc:
            notify_error(app, exc, "Not saved")
            return

        def save() -> None:
            try:
                store.save(profile, replace=True)
            except ProfileError as exc:
                notify_error(app, exc, "Not saved")
                return
            if choice.kind == "node":
                tracker.node = profile
                tracker.mark(screen, query=False)
            else:
                tracker.query = profile
                tracker.mark(screen, network=False)
            app.notify(f"Saved {choice.kind} profile {visible(choice.name)!r}", timeout=3,
                       markup=False)

        if exists and loaded is not None and (choice.kind, choice.name) == (
                loaded.kind, loaded.name):
            app.push_screen(ConfirmScreen(
                f"The {choice.kind} profile {choice.name!r} was loaded into the form; "
                "save the form over it.", "Update it?", yes="Update", no="Cancel"),
                lambda ok: save() if ok else None)
        elif exists:
            app.push_screen(ConfirmScreen(f"A {choice.kind} profile {choice.name!r} exists.",
                                          "Replace it?", yes="Replace", no="Cancel"),
                            lambda ok: save() if ok else None)
        else:
            save()

    kinds = ("query", "node") if query_tab else ("node", "query")
    # A profile loaded into the form: offered under its name (Enter updates it).
    loaded = (tracker.query or tracker.node) if query_tab else (tracker.node or tracker.query)
    title = ("Save current form as…" if loaded is None
             else f"Update {loaded.kind} profile {visible(loaded.name)!r}, or save as…")
    first = loaded.kind if loaded is not None else kinds[0]
    dialog = NameScreen(title, name=loaded.name if loaded is not None else "",
                        kinds=("node", "query"), check=check)
    app.push_screen(dialog, done)
    if first == "query":  # offer a query profile first
        dialog.call_after_refresh(lambda: setattr(
            dialog.query_one("#name-kind", RadioSet).query(RadioButton).last(), "value", True))


# --- the profiles screen ------------------------------------------------------

# The node's retrieve settings in the editor: (input id, label, placeholder, input type).
RETRIEVE_INPUTS = (
    ("pf-move-dest", "Move to", "our calling AE title", "text"),
    ("pf-store-port", "Store port", str(DEFAULT_STORE_PORT), "integer"),
    ("pf-store-host", "Store host", "all interfaces", "text"),
    ("pf-retrieve-folder", "Folder", "the current folder", "text"),
    ("pf-layout", "Layout", DEFAULT_LAYOUT, "text"),
)
RETRIEVE_FIELD_OF = {"pf-move-dest": "move_destination", "pf-store-port": "store_port",
                     "pf-store-host": "store_host", "pf-retrieve-folder": "retrieve_folder",
                     "pf-layout": "layout"}
RETRIEVE_LABEL = {"retrieve": "Method", "move_destination": "Move to",
                  "store_port": "Store port", "store_host": "Store host",
                  "retrieve_folder": "Folder", "layout": "Layout"}


def _option(name: str, default: bool) -> Option:
    label = Text(visible(name), style="bold" if default else "")
    if default:
        label.append(" ★", style="bold")
    return Option(label, id=name)


class ProfileList(HighlightInView):
    """One kind's profiles; ``kind`` says which."""

    def __init__(self, kind: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kind = kind


class ProfilesScreen(Screen):
    """Node and query profiles: list on the left, the highlighted one's fields on the right."""

    DEFAULT_CSS = """
    ProfilesScreen {
        layout: vertical;
        & #profiles-title { height: 1; padding: 0 1; background: $panel; }
        & #profiles-body { height: 1fr; }
        & #profiles-lists { width: 24; height: 1fr; padding: 0 0 0 1; }
        & ProfileList {
            height: 1fr;
            border: none;
            border-left: outer $panel;
            scrollbar-size-vertical: 1;
            &:focus { border: none; border-left: outer $accent; }
        }
        & #profile-form { width: 1fr; height: 1fr; padding: 0 1; scrollbar-size-vertical: 1; }
        & #profile-heading { height: 1; margin-bottom: 1; }
        & #profile-form Input { width: 1fr; }
        & #profile-form Select { width: 1fr; }
        & #pf-node, #pf-query, #pf-network, #pf-model, #pf-extneg, #pf-retrieve { height: auto; }
        & #pf-keys { height: 6; margin-bottom: 1; }
        & #pf-retrieve { margin-top: 1; }
        & #profile-error { height: auto; margin-bottom: 1; color: $text-error; text-style: bold; }
    }
    """

    BINDINGS = [
        Binding("u", "use", "Use", id="profiles.use"),
        Binding("n", "new", "New", id="profiles.new"),
        Binding("ctrl+s", "save", "Save", id="profiles.save", priority=True),
        Binding("c", "duplicate", "Copy", id="profiles.duplicate", show=False),
        Binding("r", "rename", "Rename", id="profiles.rename"),
        Binding("delete,x", "delete", "Delete", id="profiles.delete"),
        Binding("asterisk", "set_default", "Default", id="profiles.default"),
        Binding("escape", "close", "Back", id="profiles.close"),
    ]

    def __init__(self, store: Store, *, on_use: Callable[[str, str], None] | None = None) -> None:
        super().__init__()
        self.store = store
        self.on_use = on_use
        self.kind = "node"
        self.editing: str | None = None  # the name in the form; None: a new profile
        self.error: ProfileError | None = None
        self.node_names: list[str] = []  # the node profiles offered for a query

    def notify(self, message: str, *, title: str = "", severity="information",
               timeout: float | None = None, markup: bool = False) -> None:
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def compose(self) -> ComposeResult:
        yield Static(id="profiles-title")
        with Horizontal(id="profiles-body"):
            with Vertical(id="profiles-lists"):
                yield Label("Nodes", classes="form-title")
                yield ProfileList("node", id="node-list")
                yield Label("Queries", classes="form-title")
                yield ProfileList("query", id="query-list")
            with VerticalScroll(id="profile-form"):
                yield Static(id="profile-heading")
                yield Static(id="profile-error")
                with Horizontal(classes="form-row"):
                    yield Label("Name", classes="form-label")
                    yield Input(id="pf-name", compact=True, max_length=64)
                with Horizontal(classes="form-row"):
                    yield Label("About", classes="form-label")
                    yield Input(id="pf-description", placeholder="description", compact=True)
                with Vertical(id="pf-node"):
                    with Horizontal(classes="form-row"):
                        yield Label("Model", classes="form-label")
                        yield Select([(m.label, m) for m in QueryModel], id="pf-node-model",
                                     prompt="(none)", compact=True)
                    yield NetworkForm(id="pf-network")
                    with Vertical(id="pf-retrieve"):
                        yield Label("Retrieve (defaults of R and --retrieve)", classes="form-title")
                        with Horizontal(classes="form-row"):
                            yield Label("Method", classes="form-label")
                            yield Select([("C-GET", "get"), ("C-MOVE", "move")],
                                         id="pf-retrieve-method", prompt="(none: C-GET)",
                                         compact=True)
                        for wid, label, hint, kind in RETRIEVE_INPUTS:
                            with Horizontal(classes="form-row"):
                                yield Label(label, classes="form-label")
                                yield Input(id=wid, placeholder=hint, compact=True, type=kind)
                with Vertical(id="pf-query"):
                    yield ModelForm(QueryModel.STUDY, "STUDY", id="pf-model")
                    with Horizontal(classes="form-row"):
                        yield Label("Node", classes="form-label")
                        yield Select([], id="pf-query-node", prompt="(none)", compact=True)
                    yield Label("Keys, one a line (-k syntax)", classes="form-title")
                    yield TextArea(id="pf-keys", soft_wrap=False, show_line_numbers=False,
                                   compact=True)
                    yield ExtNegForm(id="pf-extneg")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        # Two columns, not the Network tab's four: inline styles, as app.tcss outranks DEFAULT_CSS.
        for wid in ("#net-grid", "#tls-grid", "#extneg-grid"):
            grid = self.query_one(wid)
            grid.styles.grid_size_columns = 2
            if wid != "#extneg-grid":
                grid.styles.grid_columns = "14 1fr"
        self.query_one("#net-grid").styles.margin = 0
        for label in self.query("#profile-form .form-row > Label"):
            label.styles.width = 15  # lined up with the network grid's inputs (14 + gutter)
        self.query_one("#pf-query").display = False
        self.refresh_lists()
        self.query_one("#node-list", ProfileList).focus()

    # -- lists ------------------------------------------------------------

    def refresh_lists(self, select: tuple[str, str] | None = None) -> None:
        try:
            profiles = self.store.load()
            self.error = None
        except ProfileError as exc:
            self.error = exc
            profiles = None
        title = Text.assemble(("Profiles", "bold"), " · ", (visible(str(self.store.path)), "dim"))
        self.query_one("#profiles-title", Static).update(title)
        for kind in ("node", "query"):
            olist = self.query_one(f"#{kind}-list", ProfileList)
            highlighted = olist.highlighted_option.id if olist.highlighted_option else None
            if select and select[0] == kind:
                highlighted = select[1]
            olist.clear_options()
            if profiles is None:
                continue
            default = profiles.default(kind)
            olist.add_options([_option(name, name == default) for name in profiles.of(kind)])
            if olist.option_count:
                index = 0
                if highlighted is not None:
                    with_id = [i for i in range(olist.option_count)
                               if olist.get_option_at_index(i).id == highlighted]
                    index = with_id[0] if with_id else 0
                olist.highlighted = index
        if profiles is not None:
            self.node_names = list(profiles.nodes)
            self.query_one("#pf-query-node", Select).set_options(
                [(visible(n), n) for n in self.node_names])
        if self.error is not None:
            self._show_error(f"{self.error}\nFix the file; nothing is saved until then.")
        self._show_selected()

    def _list(self) -> ProfileList:
        return self.query_one(f"#{self.kind}-list", ProfileList)

    def selected_name(self) -> str | None:
        option = self._list().highlighted_option
        return option.id if option is not None else None

    @on(OptionList.OptionHighlighted)
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        olist = event.option_list
        # Filling both lists highlights in each: only the list in use shows its profile.
        if isinstance(olist, ProfileList) and (olist.has_focus or olist.kind == self.kind):
            self.kind = olist.kind
            self._show_selected()

    def on_descendant_focus(self, event) -> None:
        widget = event.widget
        if isinstance(widget, ProfileList) and widget.kind != self.kind:
            self.kind = widget.kind
            self._show_selected()

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        if isinstance(event.option_list, ProfileList):
            event.stop()
            self.action_use()

    # -- the form ---------------------------------------------------------

    def _show_error(self, text: str = "") -> None:
        lines = "\n".join(visible(line) for line in text.split("\n"))  # our LFs, escaped theirs
        error = self.query_one("#profile-error", Static)
        error.update(Text(lines) if text else "")
        error.display = bool(text)

    def _show_selected(self) -> None:
        name = self.selected_name()
        profile = None
        if name is not None and self.error is None:
            try:
                profile = self.store.get(self.kind, name)
            except ProfileError:
                profile = None
        self._fill(profile)

    def _fill(self, profile, new: bool = False) -> None:
        kind = self.kind
        self.editing = profile.name if profile is not None else None
        self.query_one("#pf-node").display = kind == "node"
        self.query_one("#pf-query").display = kind == "query"
        if self.error is not None:
            heading = "Profiles file not loaded: read-only"
        elif new:
            heading = f"New {kind} profile: fill in, then Ctrl+S saves"
        elif profile is not None:
            heading = f"{kind.capitalize()} profile {profile.name!r} · c copies"
        else:
            heading = f"No {kind} profiles yet: n makes one"
        self.query_one("#profile-heading", Static).update(Text(visible(heading), style="bold"))
        name_input = self.query_one("#pf-name", Input)
        name_input.value = profile.name if profile else ""
        name_input.disabled = profile is not None  # r renames
        self.query_one("#pf-description", Input).value = profile.description if profile else ""
        if kind == "node":
            node = profile or NodeProfile(name="", network=Network(address="", port=104))
            self.query_one("#pf-network", NetworkForm).fill(node.network)
            model_select = self.query_one("#pf-node-model", Select)
            if node.model is None:
                model_select.clear()
            else:
                model_select.value = node.model
            options = node.retrieve
            method = self.query_one("#pf-retrieve-method", Select)
            if options.retrieve is None:
                method.clear()
            else:
                method.value = options.retrieve
            for wid, field_name in RETRIEVE_FIELD_OF.items():
                value = getattr(options, field_name)
                self.query_one(f"#{wid}", Input).value = "" if value is None else str(value)
        else:
            query = profile or QueryProfile(name="", model=QueryModel.STUDY, level="STUDY")
            self.query_one("#pf-model", ModelForm).fill(query.model, query.level)
            self.query_one("#pf-keys", TextArea).text = "\n".join(query.keys)
            self.query_one("#pf-extneg", ExtNegForm).fill(query.ext_neg, query.model)
            node_select = self.query_one("#pf-query-node", Select)
            if query.node and query.node in self.node_names:
                node_select.value = query.node
            else:
                node_select.clear()
        if self.error is None:
            self._show_error()

    def on_model_form_changed(self, event: ModelForm.Changed) -> None:
        event.stop()
        self.query_one("#pf-extneg", ExtNegForm).set_model(event.model)

    def form_profile(self):
        """The profile the form describes (raises FormError or ProfileError)."""
        name = self.query_one("#pf-name", Input).value.strip()
        description = self.query_one("#pf-description", Input).value.strip()
        old = None
        if self.editing is not None:
            try:
                old = self.store.get(self.kind, self.editing)
            except ProfileError:
                old = None
        if self.kind == "node":
            network = self.query_one("#pf-network", NetworkForm).network()
            model = self.query_one("#pf-node-model", Select).value
            fields: dict[str, Any] = {
                "model": model if isinstance(model, QueryModel) else None,
                "description": description, "retrieve": self._retrieve_options()}
            return NodeProfile.from_network(name, network, **fields).validated()
        model_form = self.query_one("#pf-model", ModelForm)
        keys = tuple(line.strip() for line in self.query_one("#pf-keys", TextArea).text.splitlines()
                     if line.strip())
        node = self.query_one("#pf-query-node", Select).value
        ext_neg = self.query_one("#pf-extneg", ExtNegForm).ext_neg()
        changes = dict(name=name, model=model_form.model, level=model_form.level or None,
                       keys=keys, ext_neg=ext_neg, description=description,
                       node=node if isinstance(node, str) else None)
        base = old if isinstance(old, QueryProfile) else QueryProfile(name=name)
        profile = replace(base, **changes).validated()
        try:
            profile.identifier()
        except KeyPathError as exc:
            raise ProfileError(f"keys: {exc}") from None
        return profile

    def _retrieve_options(self):
        """The node's retrieve settings from the form (raises ProfileError naming the field)."""
        data: dict[str, Any] = {}
        method = self.query_one("#pf-retrieve-method", Select).value
        if isinstance(method, str):
            data["retrieve"] = method
        for wid, field_name in RETRIEVE_FIELD_OF.items():
            text = self.query_one(f"#{wid}", Input).value.strip()
            if text:
                data[field_name] = int(text) if field_name == "store_port" and \
                    text.lstrip("-").isdigit() else text
        try:
            return retrieve_options_from(data)
        except NetworkError as exc:
            raise ProfileError(exc.render(lambda setting: RETRIEVE_LABEL.get(setting, setting))
                               ) from None

    # -- actions ----------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        in_list = isinstance(self.focused, ProfileList)
        if action == "use" and self.on_use is None:
            return False
        if action in ("use", "duplicate", "rename", "delete", "set_default"):
            if not in_list:
                return False
            return self.selected_name() is not None or None
        if action == "new":
            return in_list
        return True

    def _guard(self, what: str, action: Callable[[], Any]) -> bool:
        try:
            action()
        except (ProfileError, FormError, ValueError) as exc:
            self._show_error(str(exc))
            self.notify(visible(str(exc)), title=what, severity="error", timeout=10)
            return False
        return True

    def action_use(self) -> None:
        name = self.selected_name()
        if name is None or self.on_use is None:
            return
        kind, on_use = self.kind, self.on_use
        self.dismiss()
        on_use(kind, name)

    def action_new(self) -> None:
        self._fill(None, new=True)
        self.query_one("#pf-name", Input).focus()

    def action_save(self) -> None:
        def save() -> None:
            profile = self.form_profile()
            self.store.save(profile, replace=self.editing is not None)
            self.refresh_lists(select=(self.kind, profile.name))
            self.notify(f"Saved {self.kind} profile {visible(profile.name)!r}", timeout=3)

        if self.error is not None:
            self._show_error(f"{self.error}\nFix the file; nothing is saved until then.")
            self.notify(visible(str(self.error)), title="Not saved", severity="error", timeout=10)
            return
        if self._guard("Not saved", save):
            self._list().focus()

    def _ask_name(self, title: str, initial: str, then: Callable[[str], None]) -> None:
        kind = self.kind

        def check(choice: SaveChoice) -> str | None:
            return (f"a {kind} profile {choice.name!r} already exists"
                    if choice.name in self.store.names(kind) else None)

        def done(choice: SaveChoice | None) -> None:
            if choice is not None:
                then(choice.name)

        self.app.push_screen(NameScreen(title, initial, (kind,), check), done)

    def action_duplicate(self) -> None:
        name, kind = self.selected_name(), self.kind
        if name is None:
            return

        def copy(new: str) -> None:
            if self._guard("Not copied", lambda: self.store.duplicate(kind, name, new)):
                self.refresh_lists(select=(kind, new))

        self._ask_name(f"Copy {kind} profile {visible(name)!r} as…", f"{name}-copy", copy)

    def action_rename(self) -> None:
        name, kind = self.selected_name(), self.kind
        if name is None:
            return

        def rename(new: str) -> None:
            if self._guard("Not renamed", lambda: self.store.rename(kind, name, new)):
                self.refresh_lists(select=(kind, new))

        self._ask_name(f"Rename {kind} profile {visible(name)!r} to…", name, rename)

    def action_delete(self) -> None:
        name, kind = self.selected_name(), self.kind
        if name is None:
            return

        def done(ok: bool | None) -> None:
            if ok and self._guard("Not deleted", lambda: self.store.remove(kind, name)):
                self.refresh_lists()
                self.notify(f"Deleted {kind} profile {visible(name)!r}", timeout=3)

        self.app.push_screen(ConfirmScreen(f"Delete the {kind} profile {name!r}?",
                                           "Delete", yes="Delete", no="Keep"), done)

    def action_set_default(self) -> None:
        name, kind = self.selected_name(), self.kind
        if name is None:
            return
        new = None if self.store.default(kind) == name else name
        if self._guard("Default not set", lambda: self.store.set_default(kind, new)):
            self.refresh_lists(select=(kind, name))
            self.notify(f"{visible(name)!r} is {'now' if new else 'no longer'} the default "
                        f"{kind} profile", timeout=3)

    def action_close(self) -> None:
        self.dismiss()





def open_profiles(screen: QueryScreen) -> None:
    screen.app.push_screen(ProfilesScreen(store_of(screen.app),
                                          on_use=partial(use_profile, screen)))
