"""`findtui --batch --query-list FILE` and/or several `--profile` nodes: a query set.

Every listed query runs against every node (engine.queryset.QuerySetRun: a thread and
an association per node, ``--parallel N`` associations per node). Results are written as
they arrive, each row led by its ``node`` (several nodes) and ``query`` (a list) columns;
with ``--dedupe`` the rows that share the level's unique key are merged, once every node
has answered, and ``node``/``query`` list where each was found. A progress line on stderr
when it is a terminal, a summary line per node, and the worst outcome's exit code.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import time
from contextlib import ExitStack

from findtui.cli.runs import (
    EXIT_CODES, TerminalProgress, incomplete_message, open_writers, record_history,
)
from findtui.cli.exitcodes import ExitCode
from findtui.cli.resolve import RunSpec, hinted
from findtui.cli.signals import cancel_on_sigint

LOG = logging.getLogger("findtui")


def run_query_set(spec: RunSpec, stack: ExitStack) -> int:
    from findtui.engine import output
    from findtui.engine.query import (
        Associated, AssociationFailed, CancelSent, Fault, Final, IdentifierDecodeError, Pending,
    )
    from findtui.engine.queryset import (
        Node, NodeDone, QueryDone, QuerySetRun, Reopened, Tagged, match_key, worst_outcome,
    )
    from findtui.engine.split import SubQueryEnded, unique_key

    nodes = [Node(spec.node_profile, spec.request),
             *(Node(name, request) for name, request in spec.extra_nodes)]
    several = len(nodes) > 1
    queries = spec.query_list.queries if spec.query_list is not None else None
    lead = (("node",) if several else ()) + (("query",) if queries is not None else ())
    columns = keys = None
    if queries:  # the list's keys are columns too, after the -k keys
        from findtui.engine.queryset import job_identifier

        columns = job_identifier(spec.request.identifier, queries[0])
        keys = (*spec.keys, *spec.query_list.keys)
    try:
        rsp_writer, table_writer = open_writers(spec, stack, lead, columns, keys)
    except output.OutputError as exc:
        LOG.error(hinted(str(exc), exc.settings))
        return ExitCode.OUTPUT
    collectors = None
    if spec.retrieve is not None:
        from findtui.cli.retrieve import ItemCollector, prepare_identifier

        for node in nodes:
            prepare_identifier(dataclasses.replace(spec, request=node.request))
        collectors = [ItemCollector(dataclasses.replace(spec, request=n.request))
                      for n in nodes]
    run = QuerySetRun(nodes, queries, spec.parallel, spec.split, _split_from(spec))
    if several:  # the association's own log lines come from the node's threads: say which
        _prefix_thread_logs(stack, {f"findtui-node-{n}": f"[{node.label}] "
                                    for n, node in enumerate(nodes)})
    old_handler = signal.signal(signal.SIGINT, cancel_on_sigint(run.cancel))
    stack.callback(signal.signal, signal.SIGINT, old_handler)
    verbose = LOG.isEnabledFor(logging.INFO)
    unique = unique_key(spec.request.model, spec.request.identifier)
    merged: dict[object, list] = {}  # --dedupe: key -> [response, nodes, queries]
    state = _State()
    total = len(nodes) * len(queries or [None])
    progress = TerminalProgress(log_every=2.0) if total > 1 else None
    if spec.query_list is not None and spec.query_list.skipped:
        LOG.warning(f"--skip-bad: left out {len(spec.query_list.skipped)} bad row(s) of "
                    f"{spec.query_list.path!r}: "
                    + "; ".join(str(b) for b in spec.query_list.skipped[:5])
                    + (" ..." if len(spec.query_list.skipped) > 5 else ""))
    started = time.monotonic()

    def emit(event: Pending, tags) -> None:
        state.written += 1
        if state.output_error is not None:
            return
        try:
            if rsp_writer:
                rsp_writer.write(dataclasses.replace(event, index=state.written))
            if table_writer:
                table_writer.write(event, tags)
        except output.OutputError as exc:
            state.output_error = str(exc)
            LOG.error(f"{hinted(str(exc), exc.settings)}; cancelling the queries")
            run.cancel()
        except IdentifierDecodeError as exc:
            LOG.error(f"{exc}; left out of --output-format")

    def where(node: int, query: int | None) -> str:
        parts = ([nodes[node].label] if several else []) + (
            [f"query {query}"] if query is not None else [])
        return f"[{', '.join(parts)}] " if parts else ""

    events = run.events()
    try:
        for item in events:
            if isinstance(item, Tagged):
                event, at = item.event, where(item.node, item.query)
                if isinstance(event, Pending):
                    state.received += 1
                    if collectors is not None:
                        collectors[item.node].add(event)
                    if verbose:
                        try:
                            LOG.info(_prefixed(at, output.pending_lines(event)))
                        except IdentifierDecodeError as exc:
                            LOG.info(at + next(output.pending_lines(event, False)))
                            LOG.error(f"{at}{exc}")
                    if spec.dedupe:
                        key = match_key(event, unique)
                        held = merged.get(key)
                        if held is None:
                            merged[key] = [event, {item.node}, {item.query}]
                        else:
                            held[1].add(item.node)
                            held[2].add(item.query)
                        continue
                    emit(event, output.RunTags(
                        (nodes[item.node].label,) if several else None,
                        None if queries is None else (item.query,)))
                elif isinstance(event, Final):
                    log = {"failure": LOG.error, "warning": LOG.warning}.get(event.category,
                                                                            LOG.info)
                    for line in output.final_lines(event):
                        log(at + line)
                elif isinstance(event, (AssociationFailed, Fault)):
                    LOG.error(at + hinted(event.message, event.settings))
                elif isinstance(event, CancelSent):
                    LOG.info(f"{at}Sent C-CANCEL after {event.after} responses")
                elif isinstance(event, Associated) and not state.associated:
                    state.associated = True
                    for line in spec.request.ext_neg.describe_accepted(
                            spec.request.model, event.ext_neg_reply):
                        LOG.info(line)
                elif isinstance(event, SubQueryEnded) and event.bisected:
                    LOG.info(f"{at}Sub-query {event.sub.number} incomplete: split in two")
            elif isinstance(item, QueryDone):
                state.done += 1
                if item.summary.outcome.value == "incomplete":
                    state.incomplete += 1
                    LOG.warning(where(item.node, item.query)
                                + incomplete_message(item.summary, spec.split))
                if progress is not None:
                    rate = state.done / max(time.monotonic() - started, 1e-3)
                    progress.show(f"queries {state.done:,}/{total:,}, {state.received:,} "
                                  f"matches, {rate:.0f} queries/s", force=state.done == total)
            elif isinstance(item, Reopened):
                LOG.warning(f"{where(item.node, item.query)}the peer closed the association "
                            f"({item.message}); opening a new one")
            elif isinstance(item, NodeDone):
                if progress is not None:
                    progress.clear()
                _node_line(nodes[item.node].label if several else None, item.summary,
                           queries is not None)
    except KeyboardInterrupt:
        state.interrupted = True
        LOG.error(f"Aborted after {state.received} responses")
    finally:
        events.close()  # at once: an early end stops every node's thread
        if progress is not None:
            progress.clear()
    if spec.dedupe:
        for response, held_nodes, held_queries in merged.values():
            emit(response, output.RunTags(  # nodes in the order given
                tuple(nodes[n].label for n in sorted(held_nodes)) if several else None,
                None if queries is None else tuple(sorted(held_queries))))
        LOG.info(f"--dedupe: {len(merged):,} distinct matches of {state.received:,}")
    if table_writer:
        try:
            table_writer.close()
        except (OSError, output.OutputError) as exc:
            state.output_error = state.output_error or str(exc)
    if state.output_error is not None:
        code = ExitCode.OUTPUT
    elif state.interrupted or run.cancel_requested:
        code = ExitCode.CANCELLED
    else:  # the worst outcome of every node (engine.run's order of severity)
        code = EXIT_CODES[worst_outcome([s.outcome for s in run.summaries])]
    if several:
        LOG.info(f"{len(nodes)} nodes, {_matches(state.received)} in "
                 f"{time.monotonic() - started:.1f} s")
    if rsp_writer and rsp_writer.written:
        LOG.info(f"Wrote {len(rsp_writer.written)} response file(s) to "
                 f"{spec.output_directory!r}")
    retrieved: list = [None] * len(nodes)
    if collectors is not None and state.output_error is None and not state.interrupted \
            and not run.cancel_requested:
        from findtui.cli.retrieve import run_retrieve

        signal.signal(signal.SIGINT, old_handler)
        taken: set[str] = set()  # each item once, from the first node given that holds it
        for n, (node, collector) in enumerate(zip(nodes, collectors)):
            items = [i for i in collector.items if i.label not in taken]
            taken.update(i.label for i in items)
            if items:
                if several:
                    LOG.info(f"[{node.label}] retrieving {len(items)} item(s) it holds "
                             "(and no node given before it)")
                retrieve_code, retrieved[n] = run_retrieve(
                    dataclasses.replace(spec, request=node.request), items)
                code = max(code, retrieve_code)
    if queries is None:  # a list is not in the history: its base query alone is another
        _record(spec, run, nodes, retrieved)
    return code


class _ThreadPrefix(logging.Filter):
    """Puts the node's name in front of the log lines its threads write."""

    def __init__(self, prefixes: dict[str, str]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        prefix = self.prefixes.get(record.threadName)
        if prefix and isinstance(record.msg, str) and record.msg.strip() \
                and not record.msg.startswith(prefix):
            record.msg = prefix + record.msg
        return True


def _prefix_thread_logs(stack: ExitStack, prefixes: dict[str, str]) -> None:
    flt = _ThreadPrefix(prefixes)
    for name in ("findtui", "pynetdicom"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(flt)
            stack.callback(handler.removeFilter, flt)


@dataclasses.dataclass
class _State:
    received: int = 0
    written: int = 0
    done: int = 0
    incomplete: int = 0
    associated: bool = False
    interrupted: bool = False
    output_error: str | None = None


def _split_from(spec: RunSpec):
    if spec.split and spec.split_from:
        from findtui.engine.split import parse_date

        return parse_date(spec.split_from, "--split-from")
    return None


def _prefixed(prefix: str, lines):
    from findtui.engine.sanitize import LogLines

    lines = list(lines)
    if prefix and lines:
        lines[0] = prefix + lines[0]
    return LogLines(lines)


def _matches(n: int) -> str:
    return f"{n:,} match{'' if n == 1 else 'es'}"


def _node_line(label: str | None, summary, listed: bool) -> None:
    """The node's summary line (warning when anything went wrong)."""
    counts = ", ".join(f"{n} {o.value}" for o, n in sorted(summary.outcomes.items()))
    what = (f"{summary.queries} queries ({counts or 'none ended'}"
            + (f", {summary.not_sent} not sent" if summary.not_sent else "") + "), "
            if listed else "")
    line = (f"{label + ': ' if label else ''}{what}{_matches(summary.received)} in "
            f"{summary.elapsed:.1f} s on {summary.associations} association(s): "
            f"{summary.outcome.value}")
    if summary.failures and summary.outcome.value in ("network", "failure"):
        line += f" ({summary.failures[-1]})"
    ok = summary.outcome.value in ("success", "warning")
    (LOG.info if ok else LOG.warning)(line)


def _record(spec: RunSpec, run, nodes, retrieved: list) -> None:
    """One history entry per node: the query, the node's outcome, its retrieve."""
    from findtui.engine.run import RunSummary

    for node, summary, record in zip(nodes, run.summaries, retrieved):
        entry = RunSummary(received=summary.received, associated=summary.associations > 0)
        entry.outcome = summary.outcome
        entry.title = summary.outcome.value.capitalize()
        record_history(dataclasses.replace(spec, request=node.request,
                                           node_profile=node.name), entry, record)
