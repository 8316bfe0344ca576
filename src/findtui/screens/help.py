"""F1 / ?: every key binding of the screen underneath, read from the bindings themselves
(never a hand-kept list): the screen's, each widget's on it, then the app's."""

from __future__ import annotations

import re
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

KEY_NAMES = {"question_mark": "?", "slash": "/", "asterisk": "*", "plus": "+", "minus": "-",
             "escape": "Esc", "enter": "Enter", "backspace": "Backspace", "delete": "Del",
             "tab": "Tab", "space": "Space", "pageup": "PgUp", "pagedown": "PgDn",
             "up": "↑", "down": "↓", "left": "←", "right": "→", "home": "Home", "end": "End"}


def key_label(key: str) -> str:
    """'ctrl+shift+tab' -> 'Ctrl+Shift+Tab', 'f5' -> 'F5', 'question_mark' -> '?'."""
    *modifiers, name = key.split("+")
    upper = re.fullmatch(r"f\d+", name) or (modifiers and len(name) == 1)
    name = KEY_NAMES.get(name, name.upper() if upper else name)
    return "+".join([*(m.capitalize() for m in modifiers), name])


def _title(node: DOMNode) -> str:
    """'QueryResults' -> 'Query results' (a class may say better with HELP_TITLE)."""
    title = getattr(node, "HELP_TITLE", None)
    if title:
        return title
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z][a-z]*|[a-z]+|\d+", type(node).__name__)
    return " ".join([words[0], *(w.lower() if not w.isupper() or len(w) == 1 else w
                                 for w in words[1:])]) if words else type(node).__name__


@dataclass(frozen=True)
class HelpSection:
    title: str
    keys: list[tuple[str, str]]  # (keys, what they do)


def _bindings(node: DOMNode) -> list[tuple[str, str]]:
    """(keys, description) of ``node``'s bindings, keys of one action joined ("F5 / Ctrl+R")."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for key, bindings in node._bindings.key_to_bindings.items():
        for binding in bindings:
            if binding.system:
                continue
            what = binding.description or binding.tooltip or binding.action.replace("_", " ")
            grouped.setdefault((binding.action, what), [])
            label = key_label(key)
            if label not in grouped[(binding.action, what)]:
                grouped[(binding.action, what)].append(label)
    return [(" / ".join(keys), what[:1].upper() + what[1:]) for (_, what), keys in
            grouped.items()]


def help_sections(screen: Screen) -> list[HelpSection]:
    """What F1 lists: the bindings of the focused widget (and its containers), the screen's,
    each other kind of widget's on the screen (findtui's first, then Textual's text fields,
    lists and buttons), then the app's."""
    focused: list[DOMNode] = []
    node = screen.focused
    while node is not None and node is not screen:
        focused.append(node)
        node = node.parent
    sections = [HelpSection(f"{_title(n)} (focused)" if i == 0 else _title(n), _bindings(n))
                for i, n in enumerate(focused)]
    sections.append(HelpSection(_title(screen), _bindings(screen)))
    ours: list[HelpSection] = []
    theirs: list[HelpSection] = []
    seen: set[type] = {type(n) for n in focused}
    for widget in screen.query("*"):
        kind = type(widget)
        if kind in seen:
            continue
        seen.add(kind)
        keys = _bindings(widget)
        if not keys:
            continue
        own = kind.__module__.startswith("findtui.")
        (ours if own else theirs).append(HelpSection(_title(widget), keys))
    sections += ours + theirs
    sections.append(HelpSection("Everywhere", _bindings(screen.app)))
    return [s for s in sections if s.keys]


def help_text(sections: list[HelpSection]) -> Content:
    width = min(20, max((len(keys) for s in sections for keys, _ in s.keys), default=0)) + 2
    parts: list = []
    for section in sections:
        if parts:
            parts.append("\n")
        parts += [(section.title, "bold $accent"), "\n"]
        for keys, what in section.keys:
            parts += [("  " + keys.ljust(width - 1) + " ", "bold"), what, "\n"]
    return Content.assemble(*parts)


class HelpScreen(ModalScreen[None]):
    """The key bindings of the screen it was opened on; Esc, F1, ? or q closes it."""

    BINDINGS = [Binding("escape,f1,question_mark,q", "close", "Close", id="help.close")]

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    #help-dialog {
        width: 72;
        max-width: 100%;
        height: 90%;
        border: round $accent;
        background: $surface;
        padding: 0 1;
    }
    #help-keys {
        height: 1fr;
    }
    #help-hint {
        color: $text-muted;
    }
    """

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self.sections = help_sections(screen)

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog") as dialog:
            dialog.border_title = "Keys"
            with VerticalScroll(id="help-keys"):
                yield Static(help_text(self.sections), id="help-text")
            yield Static("↑↓ PgUp PgDn scroll · Esc, F1 or ? closes · Ctrl+P: every command",
                         id="help-hint")

    def on_mount(self) -> None:
        self.query_one("#help-keys").focus()

    def action_close(self) -> None:
        self.dismiss(None)
