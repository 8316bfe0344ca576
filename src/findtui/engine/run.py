"""A run's events -> one summary and one outcome, for the CLI, the TUI and the history.

``RunSummary.feed(event)`` is the only place that decides how a C-FIND ended. The
CLI maps ``summary.outcome`` to its exit code, the TUI to its status line, the
history records it; none of them looks at events to decide again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from findtui.engine.query import (
    Associated,
    AssociationFailed,
    CancelSent,
    Event,
    Fault,
    Final,
    FindRequest,
    Pending,
)


class Outcome(enum.StrEnum):
    """How a run ended (the history's ``outcome`` values)."""

    SUCCESS = "success"  # final status Success, also with no matches
    WARNING = "warning"  # a warning final status
    FAILURE = "failure"  # a failure final status
    CANCEL = "cancel"  # a C-CANCEL was asked for: confirmed, or the peer then aborted
    NETWORK = "network"  # no association, or the association broke during the query
    ABORTED = "aborted"  # we aborted at once (a second Ctrl-C) or the run ended with no status
    OUTPUT = "output"  # results could not be written, so the query was cancelled
    INCOMPLETE = "incomplete"  # the peer stopped at a result limit: more matches exist


# A failure status whose Error Comment says one of these (any case) refused the query as too
# broad (dcm4chee style): more matches exist than the SCP will return.
TOO_BROAD_PHRASES = ("too many", "too broad", "too large", "refine", "exceed", "max number",
                     "maximum number")


def incomplete_reason(final: Final, received: int, max_results: int | None) -> str | None:
    """Why a final status means more matches exist than arrived, or None.

    Three ways a PACS caps what one C-FIND returns: a Cancel (0xFE00) nobody asked for
    (Orthanc's LimitFindResults), exactly the node's configured result limit with a
    success or warning status, a failure whose comment says the query is too broad.
    """
    if final.cancel_requested:
        return None  # we stopped it: fewer matches is what was asked for
    if final.status == 0xFE00:
        return ("the SCP ended the query with Cancel (0xFE00) though no C-CANCEL was sent: "
                "it stops at a result limit (e.g. Orthanc's LimitFindResults)")
    if final.category in ("success", "warning") and max_results and received == max_results:
        return (f"{received:,} is the node's result limit (max results), where the SCP "
                "stops")
    if final.category == "failure":
        comment = (final.error_comment or "").lower()
        if any(phrase in comment for phrase in TOO_BROAD_PHRASES):
            return (f"the SCP refused the query as too broad ({final.name}: "
                    f"{final.error_comment!r})")
    return None


FAILED_TITLES = {
    "rejected": "Association rejected",
    "unreachable": "Cannot connect",
    "timeout": "Timed out",
    "aborted": "Association aborted",
    "tls": "TLS error",
    "no-context": "No presentation context",
}
FAULT_TITLES = {
    "aborted": "Connection lost",
    "timeout": "Timed out",
    "cancel-timeout": "Cancel (aborted)",
    "protocol": "Protocol error",
}


@dataclass
class RunSummary:
    """What a run did so far; ``outcome`` is None until it has ended."""

    received: int = 0
    associated: bool = False
    cancel_sent: bool = False
    ended_by: Final | AssociationFailed | Fault | None = None
    outcome: Outcome | None = None
    title: str = ""  # a short name of how it ended: 'Success', 'Connection lost', ...
    detail: str = ""  # the engine's message, error comment, offending element
    settings: tuple[str, ...] = field(default=())  # the settings to check, if any
    status_code: int | None = None
    output_error: str | None = None  # results could not be written (the query was cancelled)
    was_interrupted: bool = False  # stopped at once (a second Ctrl-C)
    max_results: int | None = None  # the node's result limit (Network.max_results)
    incomplete: str | None = None  # why more matches exist than arrived (Outcome.INCOMPLETE)

    @classmethod
    def of(cls, request: FindRequest) -> RunSummary:
        """An empty summary of a run of ``request`` (its node's result limit)."""
        return cls(max_results=request.network.max_results)

    def feed(self, event: Event) -> None:
        if isinstance(event, Pending):
            self.received += 1
        elif isinstance(event, Associated):
            self.associated = True
        elif isinstance(event, CancelSent):
            self.cancel_sent = True
        elif isinstance(event, Final):
            self.ended_by = event
            self.status_code = event.status
            self.title = event.name
            detail = event.error_comment or ""
            if event.offending_element:
                tags = ", ".join(f"({t >> 16:04X},{t & 0xFFFF:04X})"
                                 for t in event.offending_element)
                detail = f"{detail} · offending {tags}".strip(" ·")
            self.detail = detail
            self.settings = event.settings
            self.outcome = Outcome(event.category)
            self.incomplete = incomplete_reason(event, self.received, self.max_results)
            if self.incomplete is not None:
                self.outcome, self.title = Outcome.INCOMPLETE, "Incomplete"
                self.detail, self.settings = self.incomplete, ("split",)
        elif isinstance(event, AssociationFailed):
            self.ended_by = event
            self.title = FAILED_TITLES.get(event.kind, "Failed")
            self.detail, self.settings = event.message, event.settings
            self.outcome = Outcome.NETWORK
        elif isinstance(event, Fault):
            self.ended_by = event
            self.title = FAULT_TITLES.get(event.kind, "Failed")
            self.detail, self.settings = event.message, event.settings
            # A peer that aborts (or times out) after we asked to cancel ended a cancelled run.
            cancelled = event.cancel_requested or event.kind == "cancel-timeout"
            self.outcome = Outcome.CANCEL if cancelled else Outcome.NETWORK

    def split_ended(self, parts: list[RunSummary], unresolved: list[str]) -> None:
        """A split run's sub-queries ended (``parts``, in order); ``unresolved``: the date
        ranges still incomplete that could not be split further. Unless the run itself
        broke (a fault, fed here), it ends as its worst sub-query; a sub-query that came
        back incomplete and was split counts only through its halves."""
        if self.outcome is not None or not parts:
            return
        final = [p for p in parts if p.outcome is not Outcome.INCOMPLETE]
        worst = max(final or parts, key=lambda p: _SEVERITY.get(p.outcome, 0))
        self.ended_by, self.status_code = worst.ended_by, worst.status_code
        self.outcome, self.title, self.detail = worst.outcome, worst.title, worst.detail
        self.settings = worst.settings
        if unresolved and _SEVERITY[worst.outcome] <= _SEVERITY[Outcome.INCOMPLETE]:
            days = ", ".join(unresolved[:5]) + (f" and {len(unresolved) - 5} more"
                                                if len(unresolved) > 5 else "")
            self.incomplete = (f"still incomplete after splitting, on {days}: the SCP's limit "
                               "is reached within that range")
            self.outcome, self.title = Outcome.INCOMPLETE, "Incomplete"
            self.detail, self.settings = self.incomplete, ()
            self.ended_by = next((p.ended_by for p in parts
                                  if p.outcome is Outcome.INCOMPLETE), worst.ended_by)
            self.status_code = getattr(self.ended_by, "status", None)

    def interrupted(self) -> None:
        """The run was stopped at once (a second Ctrl-C): aborted, rows kept."""
        self.was_interrupted = True

    def output_failed(self, message: str) -> None:
        """Results could not be written; the query is being cancelled because of it."""
        self.output_error = message

    def crashed(self, message: str) -> None:
        """A bug or an unexpected library error ended the run."""
        self.outcome = Outcome.FAILURE
        self.title = "Error"
        self.detail = message

    def finish(self) -> RunSummary:
        """Call once the events are exhausted: a run with no end is 'aborted'."""
        if self.output_error is not None:
            self.outcome, self.title = Outcome.OUTPUT, "Results not written"
            self.detail, self.settings = self.output_error, ()
        elif self.was_interrupted:
            self.outcome, self.title = Outcome.ABORTED, "Aborted"
            self.detail = f"aborted after {self.received} responses"
        elif self.outcome is None:
            self.outcome = Outcome.ABORTED
            self.title = "No final status"
            self.detail = "the query ended without one"
        return self

    @property
    def status(self) -> str:
        """The history's ``status``: the status name, or what went wrong."""
        if isinstance(self.ended_by, Final):
            return self.ended_by.name
        if self.outcome is Outcome.OUTPUT or self.ended_by is None:
            return self.title
        return self.detail


# Which sub-query outcome a split run takes as its own: the worst.
_SEVERITY = {Outcome.SUCCESS: 0, Outcome.WARNING: 1, Outcome.INCOMPLETE: 2, Outcome.FAILURE: 3,
             Outcome.CANCEL: 4, Outcome.ABORTED: 5, Outcome.OUTPUT: 6, Outcome.NETWORK: 7}


def summarize(events, max_results: int | None = None) -> RunSummary:
    """Feed every event (e.g. a recorded sequence) and finish."""
    summary = RunSummary(max_results=max_results)
    for event in events:
        summary.feed(event)
    return summary.finish()


__all__ = ["FAILED_TITLES", "FAULT_TITLES", "TOO_BROAD_PHRASES", "Outcome", "RunSummary",
           "incomplete_reason", "summarize"]
