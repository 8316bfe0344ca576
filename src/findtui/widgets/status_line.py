"""The status line: state, matches so far, rate, elapsed; then the final status; the
cursor's row ("37/119") and, filtered, how many rows are shown ("4 shown of 119")."""

from __future__ import annotations

import time

from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Static

from findtui.engine.run import RunSummary
from findtui.engine.settings import form_hint
from findtui.messages import QueryOutcome
from findtui.engine.sanitize import visible

ICONS = {
    "idle": ("·", "$text-muted"),
    "running": ("▶", "$accent"),
    "cancelling": ("■", "$warning"),
    "success": ("✔", "$success"),
    "warning": ("▲", "$warning"),
    "cancel": ("■", "$warning"),
    "failure": ("✖", "$error"),
    "network": ("✖", "$error"),
    "aborted": ("■", "$error"),
    "output": ("✖", "$error"),
    "incomplete": ("▲", "$warning"),
}


def outcome_of(summary: RunSummary) -> QueryOutcome:
    """What the status line shows for a finished run (the engine decided how it ended;
    the TUI adds where in the form to fix it)."""
    return QueryOutcome(str(summary.outcome), summary.title,
                        summary.detail + form_hint(summary.settings))


def _count(n: int) -> str:
    return f"{n:,} match" + ("" if n == 1 else "es")


class StatusLine(Static):
    """One line; ``show_timing`` False leaves out rate and elapsed (deterministic snapshots)."""

    state: reactive[str] = reactive("idle")

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.show_timing = True
        self.matches = 0
        self.started: float | None = None
        self.ended: float | None = None
        self.outcome: QueryOutcome | None = None
        self.shown: int | None = None  # rows shown when a filter is on
        self.row: int | None = None  # the cursor's row in the displayed order (0-based)
        self.extra = ""
        self.marked = 0  # rows marked with Space (R retrieves them)
        self._timer = None
        self._rendered_at = 0.0

    def on_mount(self) -> None:
        self._render_line()

    # -- transitions ------------------------------------------------------

    def start(self) -> None:
        self.state = "running"
        self.matches = 0
        self.started = time.monotonic()
        self.ended = None
        self.outcome = None
        if self._timer is None:
            self._timer = self.set_interval(0.25, self._render_line)
        self._timer.resume()
        self._render_line()

    def set_matches(self, n: int) -> None:
        """Called per batch of rows: redrawn at most every 0.1 s (the timer catches up)."""
        self.matches = n
        if time.monotonic() - self._rendered_at >= 0.1:
            self._render_line()

    def cancelling(self) -> None:
        if self.state == "running":
            self.state = "cancelling"
            self._render_line()

    def finish(self, outcome: QueryOutcome, received: int) -> None:
        self.matches = received
        self.outcome = outcome
        self.state = outcome.category
        self.ended = time.monotonic()
        if self._timer is not None:
            self._timer.pause()
        self._render_line()

    def restore(self, state: str, matches: int, outcome: QueryOutcome | None,
                elapsed: float | None) -> None:
        """Show a saved level's status again (drill-down back)."""
        self.state, self.matches, self.outcome = state, matches, outcome
        self.ended = time.monotonic()
        self.started = None if elapsed is None else self.ended - elapsed
        if self._timer is not None:
            self._timer.pause()
        self._render_line()

    def set_row(self, row: int | None) -> None:
        """The cursor moved (None: no row shown)."""
        if row != self.row:
            self.row = row
            self._render_line()

    def set_marked(self, count: int) -> None:
        if count != self.marked:
            self.marked = count
            self._render_line()

    def set_filter_info(self, shown: int | None, extra: str = "") -> None:
        self.shown = shown
        self.extra = extra
        self._render_line()

    def refresh_line(self) -> None:
        """Render again (how values are shown changed: patient data hidden or not)."""
        self._render_line()

    @property
    def elapsed(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.monotonic()) - self.started

    # -- rendering --------------------------------------------------------

    def _render_line(self) -> None:
        state = self.state
        icon, icon_style = ICONS.get(state, ICONS["idle"])
        parts: list = [(f"{icon} ", f"bold {icon_style}")]
        elapsed = self.elapsed
        timing = self.show_timing and elapsed is not None
        detail = ""  # last: a long one is cut at the edge, not the counts before it
        if state == "idle":
            parts.append("Ready")
            if not self.matches:
                parts.append((" · F5 runs the query", "$text-muted"))
        elif state in ("running", "cancelling"):
            parts.append(("Querying…" if state == "running" else "Cancelling…", "bold"))
            parts.append(f" {_count(self.matches)}")
            if timing:
                rate = self.matches / elapsed if elapsed > 0.2 else 0
                parts.append((f" · {rate:,.0f}/s · {elapsed:.1f} s", "$text-muted"))
        else:
            outcome = self.outcome
            title = outcome.title if outcome else state
            parts.append((visible(title), "bold"))
            parts.append(f" · {_count(self.matches)}")
            if timing:
                parts.append((f" in {elapsed:.1f} s", "$text-muted"))
            if outcome and outcome.detail:
                phi = getattr(self.app, "phi", None)  # a PACS message may name a patient
                detail = visible(phi.text(outcome.detail) if phi is not None else outcome.detail)
        shown = self.matches if self.shown is None else self.shown
        if self.row is not None and shown:
            parts.append(f" · row {min(self.row + 1, shown):,}/{shown:,}")
        if self.shown is not None:
            parts.append((f" · {self.shown:,} shown of {self.matches:,}", "$text-muted"))
        if self.marked:
            parts.append((f" · {self.marked:,} marked (R retrieves)", "bold"))
        if self.extra:
            parts.append((f" · {visible(self.extra)}", "$text-muted"))
        if detail:
            parts += [" · ", detail]
        self._rendered_at = time.monotonic()
        if not self.has_class(f"-{state}"):
            self.set_classes(f"-{state}")
        # One line, fixed size: no layout pass (this runs while 100k rows stream in).
        self.update(Content.assemble(*parts), layout=False)
