"""The Messages that workers post to the UI thread (one place, typed).

Workers never touch widgets: they post these and the screen's handlers update
the table, status line and log. Every query message carries the ``run_id`` of
the run that produced it, so a message from a superseded run is dropped and
two runs can never feed one table.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from findtui.engine.query import EchoResult, FindRequest, Pending
from findtui.engine.run import RunSummary


class QueryMessage(Message):
    """Base of the messages of one C-FIND run."""

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id


class RowsReceived(QueryMessage):
    """A batch of pending responses (posted every ~50 ms or 500 rows, whichever first).

    ``rows`` are the table cells (already display-safe), ``responses`` the
    pending responses in the same order (raw bytes, for detail and export),
    ``log_lines`` their findscu-style log lines.
    """

    def __init__(self, run_id: int, rows: list[tuple[str, ...]], responses: list[Pending],
                 log_lines: list[str], first_response_at: float | None) -> None:
        super().__init__(run_id)
        self.rows = rows
        self.responses = responses
        self.log_lines = log_lines
        # time.perf_counter() when the run's first response arrived (for the benchmark).
        self.first_response_at = first_response_at


class QueryLog(QueryMessage):
    """Log lines that are not per-response (association, request, final status)."""

    def __init__(self, run_id: int, lines: list[str]) -> None:
        super().__init__(run_id)
        self.lines = lines


class QueryAssociated(QueryMessage):
    """The association is up: the query is now waiting for responses."""


class QueryCancelSent(QueryMessage):
    def __init__(self, run_id: int, after: int) -> None:
        super().__init__(run_id)
        self.after = after


@dataclass(frozen=True)
class QueryOutcome:
    """How a run ended, as the status line shows it.

    category: an engine.run.Outcome value (success, warning, cancel, failure, network, ...)
    """

    category: str
    title: str
    detail: str = ""


class QueryFinished(QueryMessage):
    """The run is over: every RowsReceived of this run was posted before this."""

    def __init__(self, run_id: int, outcome: QueryOutcome, summary: RunSummary) -> None:
        super().__init__(run_id)
        self.outcome = outcome  # as the status line shows it
        self.summary = summary  # the engine's account of the run (for the history)

    @property
    def received(self) -> int:
        return self.summary.received


class RunEnded(Message):
    """A query screen's run is over and shown: the app records it in the history."""

    def __init__(self, request: FindRequest, keys: list[str], summary: RunSummary,
                 split: str | None = None) -> None:
        super().__init__()
        self.request = request
        self.keys = keys
        self.summary = summary
        self.split = split  # the run was split by date (engine.split mode)


class EchoFinished(Message):
    def __init__(self, result: EchoResult, target: str) -> None:
        super().__init__()
        self.result = result
        self.target = target


class ExportFinished(Message):
    """An export worker is done: ``ok`` False means ``text`` is the error."""

    def __init__(self, ok: bool, text: str, download=None) -> None:
        super().__init__()
        self.ok = ok
        self.text = text
        self.download = download  # screens.export.Download: for the browser (findtui serve)
