"""`findtui --batch`: one C-FIND headless, findscu's log on stderr, results where asked.

The run's outcome comes from engine.run.RunSummary; this module only maps it to an
exit code (EXIT_CODES, documented in the README) and words it for a terminal.
"""

from __future__ import annotations

import logging
import signal
from contextlib import ExitStack
from pathlib import Path

from findtui.cli.exitcodes import ExitCode
from findtui.cli.runs import (  # noqa: F401 - EXIT_CODES, exit_code: findtui.cli's API
    EXIT_CODES, TerminalProgress, exit_code, incomplete_message, open_writers, record_history,
)
from findtui.cli.resolve import RunSpec, hinted
from findtui.cli.signals import cancel_on_sigint
from findtui.engine.run import Outcome, RunSummary, incomplete_reason

LOG = logging.getLogger("findtui")


def run_batch(spec: RunSpec) -> int:
    from findtui.engine.sanitize import make_log_output_safe, warnings_to_log

    # Peer data never reaches the terminal raw; tracebacks only with -d.
    make_log_output_safe(tracebacks=LOG.isEnabledFor(logging.DEBUG))
    with ExitStack() as stack:
        stack.enter_context(warnings_to_log(LOG))  # pydicom's warnings about peer data
        if spec.demo:
            spec = _on_demo(spec, stack)
        if spec.query_list is not None or spec.extra_nodes:
            from findtui.cli.queryset import run_query_set

            return run_query_set(spec, stack)
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
    try:
        rsp_writer, table_writer = open_writers(spec, stack)
    except output.OutputError as exc:
        LOG.error(hinted(str(exc), exc.settings))
        return ExitCode.OUTPUT

    collector = None
    if spec.retrieve is not None:
        from findtui.cli.retrieve import ItemCollector, prepare_identifier

        prepare_identifier(spec)
        collector = ItemCollector(spec)
    split = None
    if spec.split:
        from findtui.cli.resolve import split_plan
        from findtui.engine.split import SplitRun, SubQueryEnded, SubQueryStarted

        split = SplitRun(split_plan(spec))
        query, summary, events = split, split.summary, split.events()
    else:
        query = FindQuery(request)
        summary = RunSummary.of(request)
        events = query.events()
    progress = TerminalProgress() if split is not None else None
    old_handler = signal.signal(signal.SIGINT, cancel_on_sigint(query.cancel))
    stack.callback(signal.signal, signal.SIGINT, old_handler)

    try:
        for event in events:
            if split is None:
                summary.feed(event)
            if isinstance(event, Pending):
                if collector is not None:
                    collector.add(event)
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
                if split is not None and event.category == "failure" \
                        and incomplete_reason(event, 0, None):
                    log = LOG.warning  # a refusal as too broad: the range is split further
                lines = list(output.final_lines(event))
                if event.settings and lines and lines[-1].startswith("What to try"):
                    lines[-1] = hinted(lines[-1], event.settings)
                for line in lines:
                    log(line)
            elif isinstance(event, (AssociationFailed, Fault)):
                LOG.error(hinted(event.message, event.settings))
            elif split is not None and isinstance(event, SubQueryStarted):
                sub = event.sub
                what = (f"{split.plan.key}={sub.range.dicom()}" if sub.range is not None
                        else "the query as given")
                LOG.info(f"Sub-query {sub.number}: {what}")
            elif split is not None and isinstance(event, SubQueryEnded):
                part = event.summary
                again = f", {event.duplicates} already received" if event.duplicates else ""
                more = "; incomplete, split in two" if event.bisected else ""
                LOG.info(f"Sub-query {event.sub.number} ended: {part.title}, "
                         f"{part.received} matches{again}{more}")
                progress.show(f"split: {event.sub.number} sub-queries done, {event.left} to "
                              f"go, {summary.received:,} matches", force=not event.left)
    except KeyboardInterrupt:
        summary.interrupted()
        LOG.error(f"Aborted after {summary.received} responses")
    finally:
        events.close()  # at once: an early end (`| head`) aborts the association now
        if progress is not None:
            progress.close()
        if table_writer:
            try:
                table_writer.close()
            except OSError:
                pass
    if split is not None:
        split.finish()
        LOG.info(f"Split into {split.plan.sent} sub-queries on one association: "
                 f"{summary.received} matches"
                 + (f" ({split.duplicates} received again, left out)" if split.duplicates
                    else ""))
    else:
        summary.finish()
    if summary.outcome is Outcome.INCOMPLETE:
        LOG.warning(incomplete_message(summary, spec.split))
    if rsp_writer and rsp_writer.written:
        LOG.info(f"Wrote {len(rsp_writer.written)} response file(s) to "
                 f"{str(Path(spec.output_directory))!r}")
    stale = rsp_writer.stale() if rsp_writer and spec.overwrite else []
    if stale:
        LOG.warning(f"{len(stale)} older response file(s) ({stale[0]}…{stale[-1]}) of an earlier "
                    f"run are still in {str(Path(spec.output_directory))!r}: they are not "
                    "results of this query")
    code = exit_code(summary)
    retrieved = None
    if collector is not None and summary.outcome in (Outcome.SUCCESS, Outcome.WARNING,
                                                     Outcome.INCOMPLETE):
        from findtui.cli.retrieve import run_retrieve

        signal.signal(signal.SIGINT, old_handler)
        retrieve_code, retrieved = run_retrieve(spec, collector.items)
        code = max(code, retrieve_code)
    record_history(spec, summary, retrieved)  # one line: the query and its retrieve
    return code
