"""`findtui --batch ... --retrieve get|move -od DIR`: fetch what the query matched.

The query runs first (its outputs as asked); its matches become retrieve items (one per
unique key, engine.retrieve.item_from_match), then one association retrieves them all.
A progress line on stderr when it is a terminal (nothing under -q), a summary line,
and an exit code (README, "Exit codes").
"""

from __future__ import annotations

import logging
import signal
import sys
import time

from findtui.cli.exitcodes import ExitCode
from findtui.cli.resolve import RunSpec, hinted
from findtui.cli.signals import cancel_on_sigint

LOG = logging.getLogger("findtui")

RETRIEVE_EXIT_CODES = {
    "success": ExitCode.OK,
    "partial": ExitCode.RETRIEVE_PARTIAL,
    "failure": ExitCode.FAILURE_STATUS,
    "cancel": ExitCode.CANCELLED,
    "network": ExitCode.NETWORK,
    "output": ExitCode.OUTPUT,
}


def prepare_identifier(spec: RunSpec) -> None:
    """Add the unique keys the retrieve needs to the query's return keys (said in the log)."""
    from findtui.engine.hierarchy import LEVEL_UNIQUE_KEY, request_level
    from findtui.engine.retrieve import retrieve_keys

    ds = spec.request.identifier
    level = request_level(ds) or "PATIENT"
    if level not in LEVEL_UNIQUE_KEY:
        return  # the matches say so, one by one (ItemCollector)
    added = [k for k in retrieve_keys(spec.request.model, level) if k not in ds]
    for keyword in added:
        setattr(ds, keyword, "")
    if added:
        LOG.info(f"Added {', '.join(added)} to the return keys: the retrieve names each "
                 "match by it")


class ItemCollector:
    """The query's matches as retrieve items, as they arrive (one per unique key); a match
    that cannot be retrieved is said once."""

    def __init__(self, spec: RunSpec) -> None:
        from findtui.engine.hierarchy import request_level
        from findtui.engine.retrieve import ItemList

        self._list = ItemList(spec.request.model,
                              request_level(spec.request.identifier) or "PATIENT")
        self.problems = 0

    @property
    def items(self) -> list:
        return self._list.items

    def add(self, response) -> None:
        from findtui.engine.query import IdentifierDecodeError
        from findtui.engine.retrieve import RetrieveError

        try:
            self._list.add(response.identifier)
        except (RetrieveError, IdentifierDecodeError) as exc:
            self.problems += 1
            if self.problems == 1:
                LOG.warning(f"response {response.index} cannot be retrieved: {exc}")


class Progress:
    """One line on stderr, redrawn in place (only on a terminal, never under -q)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.last = 0.0
        self.width = 0

    def show(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        from findtui.engine.sanitize import visible

        line = visible(text)[:119]
        sys.stderr.write("\r" + line + " " * max(0, self.width - len(line)))
        sys.stderr.flush()
        self.width = len(line)

    def clear(self) -> None:
        if self.enabled and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0


def run_retrieve(spec: RunSpec, items: list):
    """Retrieve ``items``: (the exit code, a config.history.RetrieveRecord of the run)."""
    from findtui.config.history import RetrieveRecord
    from findtui.engine.retrieve import (
        AssociationFailed, ItemDone, ItemProgress, ItemStarted, RetrieveFault, RetrieveJob,
        RetrieveRequest, RetrieveSummary, megabytes,
    )

    rs = spec.retrieve
    assert rs is not None
    request = RetrieveRequest(
        network=spec.request.network, model=spec.request.model, method=rs.method,
        items=tuple(items), directory=spec.output_directory, layout=rs.layout,
        move_destination=rs.move_destination, store_port=rs.store_port,
        store_host=rs.store_host)
    if not items:
        LOG.info("Nothing to retrieve: the query matched nothing")
        return ExitCode.OK, RetrieveRecord.of(request, RetrieveSummary())
    where = (f"to {request.destination}" if rs.method == "move" and not request.moves_to_us
             else f"into {spec.output_directory!r}")
    LOG.info(f"Retrieving {len(items)} {items[0].level.lower()}(s) by C-{rs.method.upper()} "
             f"{where}")
    job = RetrieveJob(request)
    summary = RetrieveSummary()
    progress = Progress(sys.stderr.isatty() and LOG.isEnabledFor(logging.INFO))
    old = signal.signal(signal.SIGINT, cancel_on_sigint(job.cancel, progress.clear))
    started = time.monotonic()
    total = len(items)
    try:
        for event in job.events():
            summary.feed(event)
            if isinstance(event, ItemStarted):
                progress.show(f"Retrieving {event.index}/{total} {event.item.label}", True)
            elif isinstance(event, ItemProgress):
                done = summary.written + summary.skipped  # this item's included
                rate = summary.bytes / max(time.monotonic() - started, 1e-3)
                left = "" if event.remaining is None else f", {event.remaining} left in item"
                progress.show(f"Retrieving {event.index}/{total}: {done} instance(s), "
                              f"{megabytes(summary.bytes)}, {rate / 1e6:.1f} MB/s{left}")
            elif isinstance(event, ItemDone):
                progress.clear()
                _log_item(event, total)
            elif isinstance(event, (RetrieveFault, AssociationFailed)):
                progress.clear()
                LOG.error(hinted(event.message, event.settings))
    except KeyboardInterrupt:
        progress.clear()
        summary.cancel_requested = True
        LOG.error("Aborted")
    finally:
        signal.signal(signal.SIGINT, old)
        progress.clear()
    summary.cancel_requested = summary.cancel_requested or job.cancel_requested
    elapsed = time.monotonic() - started
    outcome = summary.outcome
    line = (f"Retrieved {summary.written + summary.skipped} instance(s) of "
            f"{len(summary.done)}/{total} item(s) in {elapsed:.1f} s: {summary.written} "
            f"written ({megabytes(summary.bytes)}), {summary.skipped} already on disk, "
            f"{summary.failed} failed")
    if rs.method == "move" and not request.moves_to_us:
        done = sum(d.completed for d in summary.done)
        line = (f"Moved {done} instance(s) of {len(summary.done)}/{total} item(s) to "
                f"{request.destination} in {elapsed:.1f} s, {summary.failed} failed")
    (LOG.info if outcome == "success" else LOG.warning)(f"{line} ({outcome})")
    return RETRIEVE_EXIT_CODES[outcome], RetrieveRecord.of(request, summary)


def _log_item(done, total: int) -> None:
    what = f"Item {done.index}/{total} {done.item.label}: {done.name} (0x{done.status:04X})"
    counts = (f"{done.completed} completed, {done.failed} failed, {done.warning} warning; "
              f"{done.written} written, {done.skipped} already on disk")
    log = LOG.info if done.category == "success" else LOG.warning
    log(f"{what}: {counts}")
    if done.error_comment:
        log(f"Error Comment: {done.error_comment}")
    mismatch = done.mismatch()
    if mismatch:
        LOG.warning(f"Item {done.index}: {mismatch}")
    if done.advice and done.category != "success":
        log(f"What to try: {done.advice}")
