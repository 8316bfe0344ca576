"""The command palette: the query screen's actions, profiles, history, each saved profile."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from findtui.config.schema import ProfileError
from findtui.engine.sanitize import visible
from findtui.screens.form_state import store_of
from findtui.screens.profiles import open_profiles, save_form_as, use_profile
from findtui.screens.query import QueryScreen


class CommandListProvider(Provider):
    """A palette provider over a list of (name, callback, help) from ``_commands()``."""

    def _commands(self) -> list[tuple[str, object, str]]:
        raise NotImplementedError

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)

    async def discover(self) -> Hits:
        for name, callback, help_text in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)


class QueryCommands(CommandListProvider):
    """Command palette entries for the query screen's actions."""

    def _commands(self) -> list[tuple[str, object, str]]:
        screen = self.screen
        if not isinstance(screen, QueryScreen):
            return []
        return screen.palette_commands()


class ProfileCommands(CommandListProvider):
    """Command palette entries: profiles, save as, history, and each saved profile."""

    def _commands(self) -> list[tuple[str, object, str]]:
        screen = self.screen
        if not isinstance(screen, QueryScreen):
            return []
        app = screen.app
        commands: list[tuple[str, object, str]] = [
            ("Profiles…", partial(open_profiles, screen), "Saved nodes and queries (F7)"),
            ("Save current form as…", partial(save_form_as, screen),
             "A node or a query profile (Ctrl+S)"),
            ("History…", partial(app.run_action, "history"), "Re-run or load a past query (F8)"),
            ("Query set: several nodes, a list of values…", partial(app.run_action, "query_set"),
             "The form's query on several nodes at once and/or for each value of a list (F10)"),
        ]
        try:
            profiles = store_of(app).load()
        except ProfileError:
            return commands
        for kind in ("node", "query"):
            for name in profiles.of(kind):
                commands.append((f"Use {kind}: {visible(name)}",
                                 partial(use_profile, screen, kind, name),
                                 f"Load the saved {kind} profile into the form"))
        return commands
