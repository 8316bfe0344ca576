"""A query set: one or many queries (a query list) against one or several nodes at once.

``QuerySetRun(nodes, queries)`` runs every query against every node. Each node has its
own threads (``parallel`` associations, default one) that take the node's queries one
after the other on one association (``FindQuery.events(identifiers)``); an association
the peer drops is opened again and the query it dropped before any answer is sent again
(once). A node that cannot be reached, or keeps dropping, ends; the other nodes go on.

``events()`` (the consumer's thread) yields every engine event wrapped in ``Tagged``
(which node, which query), ``QueryDone`` when a query ended (its own RunSummary) and
``NodeDone`` when a node's last thread ended (its ``NodeSummary``). With a split mode,
each query runs as a ``SplitRun`` (its sub-queries on one association).

``match_key`` names what makes two matches the same (``--dedupe``).
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from pydicom.dataset import Dataset

from findtui.engine.query import (
    AssociationFailed,
    Fault,
    Final,
    FindQuery,
    FindRequest,
    IdentifierDecodeError,
    Pending,
    QuerySent,
)
from findtui.engine.querylist import ListedQuery
from findtui.engine.run import _SEVERITY, Outcome, RunSummary

# Failures in a row after which a node is given up (its queries left are not sent): a
# query the association broke under (a stall, an abort), or an association on which no
# query ended. A PACS that stalls every query must not cost a timeout per listed query.
MAX_FAILURES_IN_A_ROW = 3
# Events go to the consumer in batches (a response that more follow at once waits for
# them, up to BATCH): one queue hand-over per batch, not per response. A worker waits
# when QUEUE_SIZE batches are waiting.
BATCH = 256
QUEUE_SIZE = 256


@dataclass(frozen=True)
class Node:
    name: str | None  # the node profile's name (None: addr port on the command line)
    request: FindRequest  # its identifier is the base of every query (-k, -f)

    @property
    def label(self) -> str:
        net = self.request.network
        return self.name or f"{net.called_aet}@{net.address}:{net.port}"


@dataclass(frozen=True)
class Tagged:
    node: int  # index in QuerySetRun.nodes
    query: int | None  # the listed query's number; None without a list
    event: object  # an engine event (or a split run's SubQueryStarted/SubQueryEnded)


@dataclass(frozen=True)
class QueryDone:
    node: int
    query: int | None
    summary: RunSummary


@dataclass(frozen=True)
class Reopened:
    """The peer dropped the association between queries: a new one is opened."""

    node: int
    query: int | None  # the query sent again, if one was dropped unanswered
    message: str


@dataclass
class NodeSummary:
    queries: int  # queries planned for the node
    outcomes: Counter = field(default_factory=Counter)  # Outcome -> queries
    received: int = 0
    associations: int = 0
    failures: list[str] = field(default_factory=list)  # why associations failed or broke
    not_sent: int = 0  # queries never sent (the node could not be reached any more)
    elapsed: float = 0.0

    @property
    def outcome(self) -> Outcome:
        """The worst outcome of its queries; a query not sent counts as a network failure."""
        outcomes = list(self.outcomes)
        if self.not_sent or not outcomes:
            outcomes.append(Outcome.NETWORK)
        return worst_outcome(outcomes)


@dataclass(frozen=True)
class NodeDone:
    node: int
    summary: NodeSummary


@dataclass
class _Job:
    query: ListedQuery | None
    identifier: Dataset
    retried: bool = False

    @property
    def number(self) -> int | None:
        return None if self.query is None else self.query.number


def job_identifier(base: Dataset, query: ListedQuery | None) -> Dataset:
    """The identifier of a listed query: the base (-k, -f) with the row's keys set."""
    if query is None:
        return base
    ds = copy.deepcopy(base)
    query.apply(ds)
    return ds


class QuerySetRun:
    """Every query against every node; ``events()`` in one thread, ``cancel()`` from any."""

    def __init__(self, nodes: Sequence[Node], queries: Sequence[ListedQuery] | None = None,
                 parallel: int = 1, split: str | None = None, split_from=None) -> None:
        self.nodes = list(nodes)
        self.queries = list(queries) if queries is not None else None
        self.parallel = max(1, parallel)
        self.split = split
        self.split_from = split_from
        self.summaries = [NodeSummary(len(self.queries or [None])) for _ in self.nodes]
        self._out: queue.Queue = queue.Queue(QUEUE_SIZE)
        self._cancel = threading.Event()
        self._closed = threading.Event()
        self._running: set = set()  # FindQuery / SplitRun objects in flight
        self._lock = threading.Lock()
        self._local = threading.local()  # each worker's batch not handed over yet

    # --- control ---------------------------------------------------------------

    def cancel(self) -> None:
        self._cancel.set()
        with self._lock:
            running = list(self._running)
        for query in running:
            query.cancel()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def _put(self, item, flush: bool = True) -> None:
        """Hand ``item`` to the consumer, with the worker's batch; ``flush`` False: it may
        wait for the next items (a response that more responses follow at once)."""
        batch = getattr(self._local, "batch", None)
        if batch is None:
            batch = self._local.batch = []
        batch.append(item)
        if not flush and len(batch) < BATCH:
            return
        self._local.batch = []
        while not self._closed.is_set():
            try:
                self._out.put(batch, timeout=0.1)
                return
            except queue.Full:
                continue

    def _track(self, query, add: bool) -> None:
        with self._lock:
            (self._running.add if add else self._running.discard)(query)
        if add and self._cancel.is_set():
            query.cancel()

    # --- consumer --------------------------------------------------------------

    def events(self) -> Iterator[Tagged | QueryDone | NodeDone | Reopened]:
        threads = []
        for n, node in enumerate(self.nodes):
            jobs: queue.SimpleQueue = queue.SimpleQueue()
            base = node.request.identifier
            for q in self.queries or [None]:
                jobs.put(_Job(q, job_identifier(base, q)))
            count = min(self.parallel, len(self.queries or [None]))
            state = _NodeState(count, time.monotonic())
            for _ in range(count):
                threads.append(threading.Thread(
                    target=self._worker, args=(n, node, jobs, state), daemon=True,
                    name=f"findtui-node-{n}"))
        for t in threads:
            t.start()
        alive = len(threads)
        try:
            while alive:
                batch = self._out.get()
                last = len(batch) - 1
                for i, item in enumerate(batch):
                    if item is None:
                        alive -= 1
                        continue
                    if isinstance(item, Tagged) and isinstance(item.event, Pending):
                        item.event.more = i < last or not self._out.empty()
                    yield item
        finally:
            if alive:  # the consumer stopped early: stop the workers too
                self.cancel()
            self._closed.set()
            # A node that does not answer its C-CANCEL is left to the process's exit (the
            # threads are daemons): the consumer has stopped, nothing of it is lost.
            deadline = time.monotonic() + (3.0 if alive else 30.0)
            for t in threads:
                t.join(timeout=max(0.0, deadline - time.monotonic()))

    # --- workers ---------------------------------------------------------------

    def _worker(self, n: int, node: Node, jobs: queue.SimpleQueue, state: _NodeState) -> None:
        try:
            if self.split:
                self._split_worker(n, node, jobs)
            else:
                self._find_worker(n, node, jobs)
        except Exception as exc:  # noqa: BLE001 - a bug must not hang the consumer
            with self._lock:
                self.summaries[n].failures.append(f"internal error: {exc!r}")
        finally:
            with state.lock:
                state.workers -= 1
                last = state.workers == 0
            if last:
                summary = self.summaries[n]
                while True:
                    try:
                        jobs.get_nowait()
                    except queue.Empty:
                        break
                    summary.not_sent += 1
                summary.elapsed = time.monotonic() - state.started
                self._put(NodeDone(n, summary))
            self._put(None)

    def _take(self, jobs: queue.SimpleQueue) -> _Job | None:
        if self._cancel.is_set():
            return None
        try:
            return jobs.get_nowait()
        except queue.Empty:
            return None

    def _query_done(self, n: int, job: _Job, part: RunSummary) -> None:
        part.finish()
        summary = self.summaries[n]
        with self._lock:
            summary.outcomes[part.outcome] += 1
            summary.received += part.received
        self._put(QueryDone(n, job.number, part))

    def _find_worker(self, n: int, node: Node, jobs: queue.SimpleQueue) -> None:
        summary = self.summaries[n]
        failing = 0
        carry: _Job | None = None  # a query the peer dropped unanswered: sent again
        while not self._cancel.is_set():
            if carry is None:
                carry = self._take(jobs)
                if carry is None:
                    return
            first, carry = carry, None
            job: _Job | None = None
            part: RunSummary | None = None
            done_here = 0

            def identifiers() -> Iterator[Dataset]:
                nonlocal job, part, first
                while True:
                    nxt = first or self._take(jobs)
                    first = None
                    if nxt is None:
                        return
                    job, part = nxt, RunSummary.of(node.request)
                    part.associated = True
                    yield nxt.identifier

            query = FindQuery(node.request)
            self._track(query, True)
            with self._lock:
                summary.associations += 1
            events = query.events(identifiers())
            try:
                for event in events:
                    if isinstance(event, QuerySent):
                        continue
                    if isinstance(event, AssociationFailed):
                        with self._lock:
                            summary.failures.append(event.message)
                        self._put(Tagged(n, None, event))
                        if first is not None:
                            jobs.put(first)  # not sent: left for another thread or not_sent
                        return
                    if job is None or part is None:  # Associated: before any query
                        self._put(Tagged(n, None, event))
                        continue
                    if isinstance(event, Fault) and part.received == 0 and not job.retried \
                            and done_here > 0 and not self._cancel.is_set():
                        job.retried = True
                        carry = job
                        self._put(Reopened(n, job.number, event.message))
                        job = part = None
                        continue
                    part.feed(event)
                    self._put(Tagged(n, job.number, event),
                              flush=not (isinstance(event, Pending) and event.more))
                    if isinstance(event, (Final, Fault)):
                        if isinstance(event, Fault):
                            with self._lock:
                                summary.failures.append(event.message)
                        failing = failing + 1 if isinstance(event, Fault) else 0
                        self._query_done(n, job, part)
                        done_here += 1
                        job = part = None
                        if failing >= MAX_FAILURES_IN_A_ROW:
                            break
            finally:
                events.close()
                self._track(query, False)
            if job is not None and part is not None:  # ended with no status (cancel)
                self._query_done(n, job, part)
            if not done_here:
                failing += 1
            if failing >= MAX_FAILURES_IN_A_ROW:
                return

    def _split_worker(self, n: int, node: Node, jobs: queue.SimpleQueue) -> None:
        import dataclasses

        from findtui.engine.split import EARLIEST, SplitPlan, SplitRun

        summary = self.summaries[n]
        while (job := self._take(jobs)) is not None:
            request = dataclasses.replace(node.request, identifier=job.identifier)
            run = SplitRun(SplitPlan(request, self.split, self.split_from or EARLIEST))
            self._track(run, True)
            with self._lock:
                summary.associations += 1
            try:
                for event in run.events():
                    self._put(Tagged(n, job.number, event),
                              flush=not (isinstance(event, Pending) and event.more))
                    if isinstance(event, (AssociationFailed, Fault)):
                        with self._lock:
                            summary.failures.append(event.message)
            finally:
                self._track(run, False)
            self._query_done(n, job, run.finish())
            if isinstance(run.summary.ended_by, AssociationFailed):
                return


@dataclass
class _NodeState:
    workers: int
    started: float
    lock: threading.Lock = field(default_factory=threading.Lock)


def match_key(event: Pending, unique: str | None) -> object:
    """What makes two matches the same: the level's unique key's value, else the
    identifier's bytes (a worklist item, or a match without the key)."""
    if unique is not None:
        try:
            value = event.identifier.get(unique)
        except IdentifierDecodeError:
            value = None
        if value not in (None, ""):
            return str(value).strip()
    return event.raw


def worst_outcome(outcomes) -> Outcome:
    return max(outcomes, key=lambda o: _SEVERITY.get(o, 0))


__all__ = ["Node", "NodeDone", "NodeSummary", "QueryDone", "QuerySetRun", "Reopened",
           "Tagged", "job_identifier", "match_key", "worst_outcome"]
