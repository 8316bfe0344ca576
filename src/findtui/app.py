"""The Textual app, and ``make_app``: the one factory the CLI, the tests and the
benchmark use.

    make_app()                                 empty form
    make_app(request)                          form filled from a FindRequest (CLI options)
    make_app(demo=True)                        embedded demo SCP, form pointed at it
    make_app(request, run_on_start=True)       ...and run the query at once
    make_app(request, profiles=("pacs", None)) the request came from node profile 'pacs'
"""

from __future__ import annotations

import gc
import os
from dataclasses import replace
from pathlib import Path

from textual import on, work
from textual.app import App
from textual.binding import Binding

from findtui.engine.models import QueryModel
from findtui.engine.network import Network
from findtui.engine.query import FindRequest
from findtui.messages import RunEnded
from findtui.screens.commands import ProfileCommands, QueryCommands
from findtui.screens.query import QueryScreen
from findtui.engine.hierarchy import default_keys
from findtui.screens.query_logic import build_request_identifier

# Set to 1 for deterministic screens (snapshots): no elapsed time or rate in the status line.
STATIC_STATUS_ENV = "FINDTUI_STATIC_STATUS"


def _freeze_startup_heap() -> None:
    """Move what start-up made (Textual, pydicom, pynetdicom: ~100k objects) out of
    the garbage collector's sight: a full collection while 100k rows stream in
    then scans only new objects instead of stalling the UI for 100+ ms."""
    gc.collect()
    gc.freeze()


class FindtuiApp(App):
    """A DICOM C-FIND query browser."""

    CSS_PATH = "app.tcss"
    TITLE = "findtui"
    COMMANDS = App.COMMANDS | {QueryCommands, ProfileCommands}
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", id="app.quit", show=False, priority=True),
        Binding("f1,question_mark", "help", "Keys", id="app.help", key_display="f1"),
        # Shown in the palette, not the footer: the query screen's footer is full at 80 columns.
        Binding("f7", "profiles", "Profiles", id="app.profiles", show=False),
        Binding("f8", "history", "History", id="app.history", show=False),
        Binding("ctrl+s", "save_as", "Save as", id="app.save_as", show=False),
        Binding("f12", "retrieve_queue", "Retrieve queue", id="app.retrieve_queue", show=False),
        Binding("ctrl+g", "toggle_phi", "Hide/show patient data", id="app.hide_phi",
                show=False, priority=True),
        Binding("f10", "query_set", "Query set", id="app.query_set", show=False),
    ]

    def __init__(self, request: FindRequest | None = None, *, demo: bool = False,
                 demo_options: dict | None = None, run_on_start: bool = False,
                 profiles: tuple[str | None, str | None] = (None, None),
                 no_history: bool = False, hide_phi: bool = False) -> None:
        super().__init__()
        from findtui.engine.phi import PhiMask

        self.phi = PhiMask(on=hide_phi)  # --hide-phi, Ctrl+G: patient data masked on screen
        self.no_history = no_history  # --no-history: nothing is recorded
        self.initial_request = request
        self.demo_enabled = demo
        self.demo_options = dict(demo_options or {})
        self.demo = None
        self.run_on_start = run_on_start
        self.initial_profiles = profiles  # (node, query) profile names the request came from
        self.show_timing = os.environ.get(STATIC_STATUS_ENV, "") in ("", "0")
        self.export_folder: Path | None = None
        from findtui.screens.retrieve import RetrieveQueue

        self.retrieve_queue = RetrieveQueue()
        self.retrieve_queue.on_finished = self._record_retrieve
        # The retrieve dialog's last settings, per node profile (None: no profile).
        self.retrieve_defaults: dict[str | None, object] = {}

    def on_mount(self) -> None:
        request = self.initial_request
        if self.demo_enabled:
            request = self._start_demo(request)
        self.push_screen(QueryScreen(request, run_on_start=self.run_on_start))
        self.call_after_refresh(_freeze_startup_heap)
        self.call_after_refresh(self._profiles_start)

    def _profiles_start(self) -> None:
        from findtui.screens.form_state import check_store, tracker_of

        problem = check_store(self)  # a corrupt profiles file: say so, start anyway
        tracker = tracker_of(self)
        node, query = self.initial_profiles
        if problem is None and (node or query):  # --profile / --query: the form came from them
            from findtui.config.schema import ProfileError

            try:
                profiles = self.profile_store.load()
                tracker.node = profiles.nodes.get(node) if node else None
                if tracker.node is not None and tracker.node.hide_phi:
                    self.set_hide_phi(True)
                tracker.query = profiles.queries.get(query) if query else None
            except ProfileError:
                pass
        tracker.mark(self.query_screen)  # the form as it starts: nothing unsaved

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("profiles", "history", "save_as", "query_set"):
            return isinstance(self.screen, QueryScreen)
        return True

    def action_help(self) -> None:
        from findtui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
        else:
            self.push_screen(HelpScreen(self.screen))

    def notify(self, message: str, *, title: str = "", **kwargs) -> None:
        """Every notification: patient data masked while PHI is hidden."""
        super().notify(self.phi.text(message), title=self.phi.text(title), **kwargs)

    def action_toggle_phi(self) -> None:
        self.set_hide_phi(not self.phi.on)
        self.notify("Patient names, IDs and birth dates are masked on screen (Ctrl+G shows "
                    "them)" if self.phi.on else "Patient data shown (Ctrl+G hides it)",
                    timeout=3)

    def set_hide_phi(self, on: bool) -> None:
        """Mask (or show) patient data on every screen, now and from now on."""
        if on == self.phi.on:
            return
        self.phi.on = on
        for screen in self.screen_stack:
            changed = getattr(screen, "phi_changed", None)
            if changed is not None:
                changed()

    def action_profiles(self) -> None:
        from findtui.screens.profiles import open_profiles

        open_profiles(self.query_screen)

    def action_history(self) -> None:
        from findtui.screens.history import open_history

        open_history(self.query_screen)

    def action_save_as(self) -> None:
        from findtui.screens.profiles import save_form_as

        save_form_as(self.query_screen)

    def action_query_set(self) -> None:
        from findtui.screens.queryset import open_query_set

        open_query_set(self.query_screen)

    # -- retrieve -------------------------------------------------------------

    def _retrieve_node(self, network: Network):
        """The node profile loaded in the form, if ``network`` is that node (its address,
        port and called AE: a timeout changed in the form keeps its retrieve settings)."""
        from findtui.screens.form_state import tracker_of

        node = tracker_of(self).node
        if node is None:
            return None
        n = node.network
        same = (n.address, n.port, n.called_aet) == (network.address, network.port,
                                                     network.called_aet)
        return node if same else None

    def retrieve_settings(self, network: Network):
        """The retrieve dialog's defaults for rows from ``network``: the last ones used with
        the same node profile this session, else that node profile's, else ours."""
        from findtui.screens.retrieve import RetrieveSettings

        node = self._retrieve_node(network)
        last = self.retrieve_defaults.get(node.name if node else None)
        if last is not None:
            return last
        folder = str(self.export_folder or Path.cwd())
        return RetrieveSettings.of(node.retrieve if node else None, folder)

    def queue_retrieves(self, settings, network: Network, model: QueryModel, items,
                        titles=None) -> None:
        """Add a job per item to the queue, start the worker, show the queue."""
        from findtui.screens.form_state import tracker_of
        from findtui.screens.retrieve import RetrieveScreen

        node = self._retrieve_node(network)
        self.retrieve_defaults[node.name if node else None] = settings
        added = self.retrieve_queue.add(settings, network, model, items, titles)
        profile = tracker_of(self).node
        on_demo = self.demo is not None and (network.address, network.port) == (
            self.demo.address, self.demo.port)
        for task in added:  # for the history: the node profile only if exactly its network
            task.node = profile.name if profile is not None and profile.network == network \
                else None
            task.demo = on_demo
        self.start_retrieves()
        self.notify(f"{len(added)} retrieve job(s) queued (F12 shows the queue)", timeout=3)
        if not isinstance(self.screen, RetrieveScreen):
            self.push_screen(RetrieveScreen(self.retrieve_queue))

    def start_retrieves(self) -> None:
        """Run the queue's waiting jobs in a worker thread (one at a time)."""
        if not any(w.group == "retrieve" and not w.is_finished for w in self.workers):
            self._run_retrieves()

    @work(thread=True, group="retrieve", exit_on_error=False)
    def _run_retrieves(self) -> None:
        while self.retrieve_queue.run_next() is not None:
            pass

    def action_retrieve_queue(self) -> None:
        from findtui.screens.retrieve import RetrieveScreen

        if isinstance(self.screen, RetrieveScreen):
            self.pop_screen()
        else:
            self.push_screen(RetrieveScreen(self.retrieve_queue))

    def _record_retrieve(self, task, summary) -> None:
        """A retrieve job has ended (on the worker thread): a line in the history."""
        from findtui.screens.history import record_retrieve

        record_retrieve(self, task, summary)

    @on(RunEnded)
    def _record_run(self, message: RunEnded) -> None:
        from findtui.screens.history import record_run

        record_run(self.query_screen, message)

    def demo_network(self, network: Network) -> Network:
        """``network`` pointed at the demo SCP (started now if it is not running): a history
        entry of the demo SCP re-runs there, whatever port the demo had then."""
        if self.demo is None:
            from findtui.demo import DemoSCP

            self.demo = DemoSCP(**self.demo_options).start()
        return network.replace(address=self.demo.address, port=self.demo.port,
                               called_aet=self.demo.ae_title, tls=None)

    def _start_demo(self, request: FindRequest | None) -> FindRequest:
        from findtui.demo import DemoSCP

        self.demo = DemoSCP(**self.demo_options).start()
        demo = self.demo
        if request is None:
            network = Network(address=demo.address, port=demo.port, called_aet=demo.ae_title)
            return FindRequest(network=network, model=QueryModel.STUDY,
                               identifier=build_request_identifier(
                                   QueryModel.STUDY, "STUDY",
                                   default_keys(QueryModel.STUDY, "STUDY")))
        return replace(request, network=self.demo_network(request.network))

    @property
    def query_screen(self) -> QueryScreen:
        for screen in self.screen_stack:
            if isinstance(screen, QueryScreen):
                return screen
        raise LookupError("no query screen")

    def _stop_everything(self) -> None:
        try:
            screen = self.query_screen
        except LookupError:
            screen = None
        if screen is not None:
            screen.cancel_query()
        for task in self.retrieve_queue.tasks:
            self.retrieve_queue.cancel(task)
        if self.demo is not None:
            self.demo.stop()
            self.demo = None

    async def action_quit(self) -> None:
        from findtui.screens.dialogs import ConfirmScreen
        from findtui.screens.form_state import tracker_of

        try:
            edits = tracker_of(self).unsaved_profile_edits(self.query_screen)
        except Exception:  # noqa: BLE001 - never let the check stop a quit
            edits = []
        if edits and not isinstance(self.screen, ConfirmScreen):
            def done(ok: bool | None) -> None:
                if ok:
                    self._stop_everything()
                    self.exit()

            self.push_screen(ConfirmScreen(
                f"The form has changes not saved to the {' and the '.join(edits)} "
                "(Ctrl+S saves).", "Quit without saving?", yes="Quit", no="Stay"), done)
            return
        self._stop_everything()
        self.exit()

    def on_unmount(self) -> None:
        self._stop_everything()
        # Let the collector have this app's objects again (tests run many apps).
        gc.unfreeze()


def make_app(request: FindRequest | None = None, *, demo: bool = False,
             demo_options: dict | None = None, run_on_start: bool = False,
             profiles: tuple[str | None, str | None] = (None, None),
             no_history: bool = False, hide_phi: bool = False) -> FindtuiApp:
    """The app: the CLI's ``findtui`` / ``findtui addr port -k ...`` / ``findtui --demo``;
    ``hide_phi``: patient data masked on screen from the start (--hide-phi)."""
    return FindtuiApp(request, demo=demo, demo_options=demo_options, run_on_start=run_on_start,
                      profiles=profiles, no_history=no_history, hide_phi=hide_phi)
