"""The small modal dialogs: yes/no, a profile name, and the helpers that use them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from findtui.widgets.toggles import RadioButton, RadioSet

from findtui.engine.sanitize import visible

DIALOG_CSS = """
    align: center middle;
    & .dialog {
        width: 64;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $accent;
        border-title-color: $accent;
        border-title-style: bold;
        background: $surface;
        padding: 0 1;
    }
    & .dialog .button-row {
        margin-top: 1;
        align-horizontal: right;
    }
"""


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; y / n, Enter on a button, Esc is no."""

    DEFAULT_CSS = "ConfirmScreen {" + DIALOG_CSS + "}"

    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, text: str, question: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.text, self.question, self.yes, self.no = text, question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog", classes="dialog") as dialog:
            dialog.border_title = self.question
            yield Static(Text(self.text), id="confirm-text")
            with Horizontal(classes="button-row"):
                yield Button(f"{self.yes} (y)", id="confirm-yes", variant="error", compact=True)
                yield Button(f"{self.no} (n)", id="confirm-no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")


@dataclass(frozen=True)
class SaveChoice:
    kind: str
    name: str


class NameScreen(ModalScreen[SaveChoice | None]):
    """Ask for a profile name (and, for "save as", which kind); Enter saves, Esc cancels."""

    DEFAULT_CSS = "NameScreen {" + DIALOG_CSS + """
        & #name-kind { width: 1fr; height: auto; margin-bottom: 1; }
        & #name-error { height: auto; margin-top: 1; color: $text-error; text-style: bold; }
        & Input { width: 1fr; }
    }"""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="name.cancel")]

    def __init__(self, title: str, name: str = "", kinds: tuple[str, ...] = ("node",),
                 check: Callable[[SaveChoice], str | None] | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.initial = name
        self.kinds = kinds
        self.check = check

    def compose(self) -> ComposeResult:
        with Vertical(id="name-dialog", classes="dialog") as dialog:
            dialog.border_title = self.title_text
            if len(self.kinds) > 1:
                with RadioSet(id="name-kind", compact=True):
                    yield RadioButton("Node profile (the Network tab)", value=True, name="node",
                                      compact=True)
                    yield RadioButton("Query profile (model, level, keys)", name="query",
                                      compact=True)
            with Horizontal(classes="form-row"):
                yield Label("Name", classes="form-label")
                yield Input(self.initial, id="name-input", compact=True, max_length=64)
            yield Static(id="name-error")
            with Horizontal(classes="button-row"):
                yield Button("Save", id="name-ok", variant="primary", compact=True)
                yield Button("Cancel", id="name-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#name-error").display = False
        self.query_one("#name-input", Input).focus()

    def _kind(self) -> str:
        if len(self.kinds) == 1:
            return self.kinds[0]
        pressed = self.query_one("#name-kind", RadioSet).pressed_button
        return pressed.name if pressed is not None and pressed.name else self.kinds[0]

    @on(Input.Submitted, "#name-input")
    @on(Button.Pressed, "#name-ok")
    def _ok(self, event) -> None:
        event.stop()
        choice = SaveChoice(self._kind(), self.query_one("#name-input", Input).value.strip())
        error = "give a name" if not choice.name else (self.check(choice) if self.check else None)
        if error:
            message = self.query_one("#name-error", Static)
            message.update(Text(visible(error)))
            message.display = True
            self.app.bell()
            return
        self.dismiss(choice)

    @on(Button.Pressed, "#name-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


def confirm_then(screen, what: list[str], action: Callable[[], None]) -> None:
    """Run ``action`` now, or after the user agrees to drop the edits in ``what``."""
    if not what:
        action()
        return

    def done(ok: bool | None) -> None:
        if ok:
            action()

    screen.app.push_screen(ConfirmScreen(
        f"The form has unsaved changes to the {' and the '.join(what)}.",
        "Discard them?", yes="Discard", no="Keep editing"), done)


def notify_error(app, exc: Exception, title: str) -> None:
    app.notify(visible(str(exc)), title=title, severity="error", timeout=10, markup=False)
