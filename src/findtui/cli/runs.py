"""What every batch run shares, single query or query set (cli.batch, cli.queryset): the
exit code of an outcome (EXIT_CODES, documented in the README), the output writers, the
incomplete line, the history line.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import ExitStack

from findtui.cli.exitcodes import ExitCode
from findtui.cli.resolve import RunSpec
from findtui.engine.run import Outcome, RunSummary

LOG = logging.getLogger("findtui")


EXIT_CODES: dict[Outcome, ExitCode] = {
    Outcome.SUCCESS: ExitCode.OK,
    Outcome.WARNING: ExitCode.OK,
    Outcome.FAILURE: ExitCode.FAILURE_STATUS,
    Outcome.CANCEL: ExitCode.CANCELLED,
    Outcome.ABORTED: ExitCode.CANCELLED,
    Outcome.NETWORK: ExitCode.NETWORK,
    Outcome.OUTPUT: ExitCode.OUTPUT,
    Outcome.INCOMPLETE: ExitCode.INCOMPLETE,
}


def exit_code(summary: RunSummary) -> ExitCode:
    return EXIT_CODES[summary.outcome or Outcome.ABORTED]


def open_writers(spec: RunSpec, stack: ExitStack, lead: tuple[str, ...] = (),
                 identifier=None, keys: tuple[str, ...] | None = None):
    """The -w writer and the --output-format writer (each None when not asked for);
    raises OutputError. ``lead``: a query set's leading CSV columns (node, query);
    ``identifier``/``keys``: what the columns come from (default: the request's)."""
    from findtui.engine import output

    request = spec.request
    rsp_writer = table_writer = None
    if spec.write:
        rsp_writer = output.ResponseFileWriter(spec.output_directory,
                                               request.model.sop_class_uid, spec.overwrite)
        rsp_writer.check()
    if spec.output_format != "log":
        stream = sys.stdout
        if spec.output:
            stream = output.open_output(spec.output, spec.overwrite)
            # After a full disk, closing retries the failed flush: not an error twice.
            stack.callback(output.close_quietly, stream)
        table_writer = output.make_writer(
            spec.output_format, stream,
            output.table_columns(request.identifier if identifier is None else identifier,
                                 spec.keys if keys is None else keys),
            excel_safe=spec.csv_excel_safe, lead=lead)
    return rsp_writer, table_writer


def incomplete_message(summary: RunSummary, split: str | None = None) -> str:
    """The one line that says a run's answer is incomplete, and what to do."""
    if split == "auto":
        todo = "narrow the query there (more keys)"
    elif split:
        todo = "re-run with --split auto (it splits down to a day)"
    else:
        todo = "re-run with --split auto to split the query by date"
    return (f"Incomplete: {summary.received:,} match{'' if summary.received == 1 else 'es'} "
            f"arrived, but more exist: {summary.incomplete}; {todo}")


def record_history(spec: RunSpec, summary: RunSummary, retrieved=None) -> None:
    """Add the run to the history; a history that cannot be written never fails the query."""
    try:
        from findtui.config.history import History, HistoryEntry, history_wanted
        from findtui.config.schema import ProfileError
        from findtui.config.store import Store

        try:
            profiles = Store().load()
        except ProfileError:
            profiles = None  # a broken profiles file is reported elsewhere; keep recording
        if not history_wanted(spec.no_history, profiles):
            return
        History().append(HistoryEntry.from_run(
            spec.request, summary, node=spec.node_profile, query=spec.query_profile,
            keys=None if spec.file else spec.keys, source="cli", demo=spec.demo,
            retrieve=retrieved, split=spec.split, split_from=spec.split_from))
    except Exception as exc:  # noqa: BLE001 - any failure here is only worth a warning
        LOG.warning(f"The run was not recorded in the history: {exc}")


class TerminalProgress:
    """Progress on stderr when it is a terminal, never under -q: one line redrawn, or, when
    the log is -v, a log line (at most one every ``log_every`` seconds)."""

    def __init__(self, log_every: float = 0.0) -> None:
        self.live = sys.stderr.isatty() and LOG.isEnabledFor(logging.ERROR)
        self.redraw = self.live and not LOG.isEnabledFor(logging.INFO)
        self.log_every = log_every
        self.last = 0.0
        self.drawn = False

    def show(self, text: str, force: bool = False) -> None:
        """``force``: the last figures, shown whatever the time since the previous ones."""
        if not self.live:
            return
        now = time.monotonic()
        if not force and now - self.last < (0.1 if self.redraw else self.log_every):
            return
        self.last = now
        if self.redraw:
            sys.stderr.write(f"\r{text}\x1b[K")
            sys.stderr.flush()
            self.drawn = True
        else:
            LOG.info(text)

    def clear(self) -> None:
        """Erase the redrawn line (before other lines are written)."""
        if self.drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.drawn = False

    def close(self) -> None:
        """Keep the redrawn line, end it."""
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.drawn = False
