"""The query form's state as the profiles and history see it: which profiles it came
from, and whether it was edited since (asked about before loading over it, and on quit).

``FormTracker`` keeps what the form held when a profile (or history entry) was last
loaded or saved, separately for the network part (a node profile) and the query part
(a query profile). It reads the form's widgets; it never imports a screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.widgets import Checkbox, Input

from findtui.config.schema import NodeProfile, ProfileError, QueryProfile
from findtui.config.store import Store
from findtui.engine.keys import KeyPathError
from findtui.engine.query import FindRequest
from findtui.engine.sanitize import visible
from findtui.widgets.key_editor import KeyEditor
from findtui.widgets.model_form import ExtNegForm, ModelForm
from findtui.widgets.network_form import NetworkForm

if TYPE_CHECKING:
    from textual.screen import Screen as QueryScreen  # any screen holding the query form


def network_state(screen: QueryScreen) -> tuple:
    """What the Network tab holds (raw field values: a bad value is a change too)."""
    form = screen.query_one(NetworkForm)
    return (tuple((w.id, w.value) for w in form.query(Input))
            + tuple((c.id, c.value) for c in form.query(Checkbox)))


def query_state(screen: QueryScreen) -> tuple:
    """What the Query tab holds: model, level, keys (and a key typed, not yet added)."""
    model_form = screen.query_one(ModelForm)
    return (model_form.model, model_form.level, tuple(screen.query_one(KeyEditor).keys),
            screen.query_one("#key-input", Input).value, screen.query_one(ExtNegForm).ext_neg())


@dataclass
class FormTracker:
    """The profiles in the form, and the form as they left it."""

    node: NodeProfile | None = None
    query: QueryProfile | None = None
    network_baseline: tuple | None = None
    query_baseline: tuple | None = None

    def mark(self, screen: QueryScreen, network: bool = True, query: bool = True) -> None:
        if network:
            self.network_baseline = network_state(screen)
        if query:
            self.query_baseline = query_state(screen)

    def network_edited(self, screen: QueryScreen) -> bool:
        return self.network_baseline is not None and network_state(screen) != self.network_baseline

    def query_edited(self, screen: QueryScreen) -> bool:
        return self.query_baseline is not None and query_state(screen) != self.query_baseline

    def unsaved_profile_edits(self, screen: QueryScreen) -> list[str]:
        """The loaded/saved profiles the form no longer matches (asked about on quit)."""
        out = []
        if self.node is not None and self.network_edited(screen):
            out.append(f"node profile {self.node.name!r}")
        if self.query is not None and self.query_edited(screen):
            out.append(f"query profile {self.query.name!r}")
        return out

    def names_for(self, request: FindRequest) -> tuple[str | None, str | None]:
        """The node and query profile names a run used (None where the form was changed)."""
        node = query = None
        if self.node is not None and self.node.network == request.network:
            node = self.node.name
        q = self.query
        if q is not None and q.model is request.model and q.ext_neg == request.ext_neg:
            try:
                if q.identifier() == request.identifier:
                    query = q.name
            except KeyPathError:
                pass
        return node, query


def tracker_of(app) -> FormTracker:
    tracker = getattr(app, "form_tracker", None)
    if tracker is None:
        tracker = app.form_tracker = FormTracker()
    return tracker


def store_of(app) -> Store:
    """The app's Store (locations resolved once, when the app first needs them)."""
    store = getattr(app, "profile_store", None)
    if store is None:
        store = app.profile_store = Store()
    return store


def check_store(app) -> ProfileError | None:
    """At start-up: a profiles file that does not load is reported, never written over."""
    try:
        store_of(app).load()
    except ProfileError as exc:
        app.notify(visible(str(exc)) + "\nProfiles are read-only until the file is fixed.",
                   title="Profiles file not loaded", severity="error", timeout=20, markup=False)
        return exc
    return None
