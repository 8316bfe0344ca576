"""The command palette providers' shared part."""

from __future__ import annotations

from textual.command import DiscoveryHit, Hit, Hits, Provider


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
