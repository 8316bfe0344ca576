"""`findtui --batch`: one C-FIND headless, findscu's log on stderr, results where asked.

The run's outcome comes from engine.run.RunSummary; this module only maps it to an
exit code (EXIT_CODES, documented in the README) and words it for a terminal.
"""

from __future__ import annotations

import logging
import signal
import sys
from contextlib import ExitStack
from pathlib import Path

from findtui.cli.exitcodes import ExitCode
from findtui.cli.resolve import RunSpec, hinted
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
}


def exit_code(summary: RunSummary) -> ExitCode:
    return EXIT_CODES[summary.outcome or Outcome.ABORTED]


def run_batch(spec: RunSpec) -> int:
    from findtui.engine.sanitize import make_log_output_safe, warnings_to_log

    # Peer data never reaches the terminal raw; tracebacks only with -d.
    make_log_output_safe(tracebacks=LOG.isEnabledFor(logging.DEBUG))
    with ExitStack() as stack:
        stack.enter_context(warnings_to_log(LOG))  # pydicom's warnings about peer data
        if spec.demo:
            spec = _on_demo(spec, stack)
        return _run(spec, stack)


def _on_demo(spec: RunSpec, stack: ExitStack) -> RunSpec:
    """A history entry of the demo SCP: start one (its port is new every time)."""
    import dataclasses

    from findtui.demo import DemoSCP

    demo = stack.enter_context(DemoSCP())
    request = spec.request
    network = request.network.replace(address=demo.address, port=demo.port,
                                       called_aet=demo.ae_title)
    LOG.info(f"Started the embedded demo SCP on {demo.address}:{demo.port}")
    return dataclasses.replace(spec, request=dataclasses.replace(request, network=network))


def _run(spec: RunSpec, stack: ExitStack) -> int:
    from findtui.engine import output
    from findtui.engine.sanitize import LogLines
    from findtui.engine.query import (
        Associated, CancelSent, Fault, Final, FindQuery, IdentifierDecodeError, Pending,
        AssociationFailed,
    )

    request = spec.request
    verbose = LOG.isEnabledFor(logging.INFO)
    rsp_writer = None
    if spec.write:
        rsp_writer = output.ResponseFileWriter(spec.output_directory,
                                               request.model.sop_class_uid, spec.overwrite)
    table_writer = None
    try:
        if rsp_writer:
            rsp_writer.check()
        if spec.output_format != "log":
            stream = sys.stdout
            if spec.output:
                stream = output.open_output(spec.output, spec.overwrite)
                # After a full disk, closing retries the failed flush: not an error twice.
                stack.callback(output.close_quietly, stream)
            table_writer = output.make_writer(
                spec.output_format, stream, output.table_columns(request.identifier, spec.keys),
                excel_safe=spec.csv_excel_safe)
    except output.OutputError as exc:
        LOG.error(hinted(str(exc), exc.settings))
        return ExitCode.OUTPUT

    query = FindQuery(request)
    interrupts = 0

    def on_sigint(signum, frame):
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            raise KeyboardInterrupt
        LOG.warning("Interrupted: sending C-CANCEL (Ctrl-C again to abort)")
        query.cancel()

    old_handler = signal.signal(signal.SIGINT, on_sigint)
    stack.callback(signal.signal, signal.SIGINT, old_handler)

    summary = RunSummary()
    try:
        for event in query.events():
            summary.feed(event)
            if isinstance(event, Pending):
                if summary.output_error is None:
                    try:
                        if rsp_writer:
                            rsp_writer.write(event)
                        if table_writer:
                            table_writer.write(event)
                    except output.OutputError as exc:
                        summary.output_failed(str(exc))
                        LOG.error(f"{hinted(str(exc), exc.settings)}; cancelling the query")
                        query.cancel()
                    except IdentifierDecodeError as exc:
                        LOG.error(f"{exc}; left out of --output-format")
                if verbose:
                    try:  # a response's lines in one record: one write, one flush
                        LOG.info(LogLines(output.pending_lines(event)))
                    except IdentifierDecodeError as exc:
                        LOG.info(next(output.pending_lines(event, with_identifier=False)))
                        if not table_writer:  # else already said above
                            kept = "; kept as received in -w files" if rsp_writer else ""
                            LOG.error(f"{exc}{kept}")
            elif isinstance(event, Associated):
                for line in request.ext_neg.describe_accepted(request.model,
                                                              event.ext_neg_reply):
                    LOG.info(line)
            elif isinstance(event, CancelSent):
                LOG.info(f"Sent C-CANCEL after {event.after} responses")
            elif isinstance(event, Final):
                log = {"failure": LOG.error, "warning": LOG.warning}.get(event.category, LOG.info)
                lines = list(output.final_lines(event))
                if event.settings and lines and lines[-1].startswith("What to try"):
                    lines[-1] = hinted(lines[-1], event.settings)
                for line in lines:
                    log(line)
            elif isinstance(event, (AssociationFailed, Fault)):
                LOG.error(hinted(event.message, event.settings))
    except KeyboardInterrupt:
        summary.interrupted()
        LOG.error(f"Aborted after {summary.received} responses")
    finally:
        if table_writer:
            try:
                table_writer.close()
            except OSError:
                pass
    summary.finish()
    record_history(spec, summary)
    if rsp_writer and rsp_writer.written:
        LOG.info(f"Wrote {len(rsp_writer.written)} response file(s) to "
                 f"{str(Path(spec.output_directory))!r}")
    stale = rsp_writer.stale() if rsp_writer and spec.overwrite else []
    if stale:
        LOG.warning(f"{len(stale)} older response file(s) ({stale[0]}…{stale[-1]}) of an earlier "
                    f"run are still in {str(Path(spec.output_directory))!r}: they are not "
                    "results of this query")
    return exit_code(summary)


def record_history(spec: RunSpec, summary: RunSummary) -> None:
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
            keys=None if spec.file else spec.keys, source="cli", demo=spec.demo))
    except Exception as exc:  # noqa: BLE001 - any failure here is only worth a warning
        LOG.warning(f"The run was not recorded in the history: {exc}")
