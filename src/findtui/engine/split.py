"""Split a query on its date key into sub-queries, so that a PACS's result limit loses nothing.

``SplitPlan`` turns a request into date sub-ranges: ``day``, ``week`` (Monday to Sunday),
``month`` and ``year`` cut the range on calendar boundaries; ``auto`` sends the query as
given first and bisects any range that comes back incomplete (engine.run decides that),
down to one day. ``SplitRun`` sends every sub-query on one association (``FindQuery``
with several identifiers), drops the matches already received (the level's unique key),
and keeps one ``RunSummary`` for the whole run.

The date key is StudyDate (STUDY level) or, for the worklist,
ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate. Its value must be
empty (no key: the whole range), a range ``A-B``, or an open range ``A-``/``-B``; open ends
are bounded by ``earliest`` (default 1970-01-01) and today.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from pydicom.dataset import Dataset

from findtui.engine.hierarchy import LEVEL_UNIQUE_KEY, request_level
from findtui.engine.keys import apply_key
from findtui.engine.models import QueryModel
from findtui.engine.query import (
    AssociationFailed,
    Event,
    Fault,
    Final,
    FindQuery,
    FindRequest,
    IdentifierDecodeError,
    Pending,
    QuerySent,
)
from findtui.engine.run import Outcome, RunSummary

SPLIT_MODES = ("auto", "day", "week", "month", "year")
EARLIEST = _dt.date(1970, 1, 1)
STUDY_DATE = "StudyDate"
WORKLIST_DATE = "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate"
_DA = re.compile(r"^\d{8}$")


class SplitError(ValueError):
    """A query that cannot be split (nothing is sent); the message names the key or option."""


@dataclass(frozen=True, order=True)
class DateRange:
    first: _dt.date
    last: _dt.date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def dicom(self) -> str:
        """The DA matching value: one date, or a closed range."""
        if self.first == self.last:
            return f"{self.first:%Y%m%d}"
        return f"{self.first:%Y%m%d}-{self.last:%Y%m%d}"

    def __str__(self) -> str:
        if self.first == self.last:
            return self.first.isoformat()
        return f"{self.first.isoformat()}..{self.last.isoformat()}"

    def halves(self) -> tuple[DateRange, DateRange] | None:
        """The two halves of the range, None for a single day."""
        if self.first == self.last:
            return None
        mid = self.first + _dt.timedelta(days=(self.days - 1) // 2)
        return DateRange(self.first, mid), DateRange(mid + _dt.timedelta(days=1), self.last)


def parse_date(text: str, what: str) -> _dt.date:
    """A DA value YYYYMMDD (raises SplitError naming ``what``)."""
    if not _DA.match(text):
        raise SplitError(f"{what}: {text!r} is not a date (YYYYMMDD)")
    try:
        return _dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise SplitError(f"{what}: {text!r} is not a date (YYYYMMDD)") from None


def date_key(model: QueryModel, identifier: Dataset) -> str:
    """The key a query is split on (raises SplitError when the query has none)."""
    if model is QueryModel.WORKLIST:
        return WORKLIST_DATE
    level = request_level(identifier)
    if level != "STUDY":
        raise SplitError(f"--split needs a date key: StudyDate at QueryRetrieveLevel=STUDY "
                         f"(or the worklist's ScheduledProcedureStepStartDate); this query is "
                         f"at level {level or 'none'}")
    return STUDY_DATE


def _key_value(identifier: Dataset, key: str) -> str:
    if key == STUDY_DATE:
        elem = identifier.get("StudyDate")
        value = elem
    else:
        seq = identifier.get("ScheduledProcedureStepSequence")
        value = seq[0].get("ScheduledProcedureStepStartDate") if seq else None
    if value is None:
        return ""
    if not isinstance(value, str):  # a list of dates
        value = "\\".join(str(v) for v in value)
    return value.strip()


def query_range(identifier: Dataset, key: str, earliest: _dt.date = EARLIEST,
                today: _dt.date | None = None) -> DateRange:
    """The date range the query covers, open ends bounded (raises SplitError)."""
    today = today or _dt.date.today()
    value = _key_value(identifier, key)
    if "\\" in value:
        raise SplitError(f"--split: {key} holds a list of dates ({value}), not a range: give "
                         "a range (A-B), an open range (A- or -B), or no date")
    if not value:
        first, last = earliest, today
    elif "-" not in value:
        parse_date(value, key)
        raise SplitError(f"--split: {key}={value} is a single date, not a range: nothing to "
                         "split; give a range (A-B), an open range (A- or -B), or no date")
    else:
        start, _, end = value.partition("-")
        first = parse_date(start.strip(), key) if start.strip() else earliest
        last = parse_date(end.strip(), key) if end.strip() else today
    if first > last:
        raise SplitError(f"--split: {key}={value or '(empty)'} is an empty range: "
                         f"{first:%Y%m%d} is after {last:%Y%m%d}")
    return DateRange(first, last)


def calendar_ranges(whole: DateRange, mode: str) -> list[DateRange]:
    """``whole`` cut on day, week (Monday to Sunday), month or year boundaries."""
    if mode not in SPLIT_MODES or mode == "auto":
        raise ValueError(f"not a calendar split: {mode!r}")
    out = []
    first = whole.first
    while first <= whole.last:
        if mode == "day":
            end = first
        elif mode == "week":
            end = first + _dt.timedelta(days=6 - first.weekday())
        elif mode == "month":
            nxt = _dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
            end = nxt - _dt.timedelta(days=1)
        else:
            end = _dt.date(first.year, 12, 31)
        end = min(end, whole.last)
        out.append(DateRange(first, end))
        first = end + _dt.timedelta(days=1)
    return out


# What tells two worklist items apart (a worklist has no unique key): asked for, and a match
# is identified by its identifier's bytes.
WORKLIST_IDENTITY = ("AccessionNumber", "RequestedProcedureID",
                     "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID")


def unique_key(model: QueryModel, identifier: Dataset) -> str | None:
    """The keyword that identifies a match (None for the worklist: its identifier's bytes)."""
    if model is QueryModel.WORKLIST:
        return None
    return LEVEL_UNIQUE_KEY.get(request_level(identifier) or "")


def _has_key(ds: Dataset, path: str) -> bool:
    if "." not in path:
        return path in ds
    seq, _, key = path.partition("[0].")
    items = ds.get(seq.split("[")[0])
    return bool(items) and key in items[0]


@dataclass
class SubQuery:
    number: int  # 1-based, in the order sent
    range: DateRange | None  # None: the query as given (auto's first try)
    identifier: Dataset


@dataclass(frozen=True)
class SubQueryStarted:
    """An event: the next sub-query is being sent."""

    sub: SubQuery


@dataclass(frozen=True)
class SubQueryEnded:
    """An event: a sub-query ended; ``bisected`` its range is being split further."""

    sub: SubQuery
    summary: RunSummary
    duplicates: int
    bisected: bool
    left: int  # sub-queries still planned


@dataclass
class SplitPlan:
    """The sub-queries of a request; ``ended(sub, incomplete)`` steers auto's bisection."""

    request: FindRequest
    mode: str
    earliest: _dt.date = EARLIEST
    today: _dt.date | None = None
    key: str = field(init=False)
    whole: DateRange = field(init=False)

    def __post_init__(self) -> None:
        if self.mode not in SPLIT_MODES:
            raise SplitError(f"--split takes one of {', '.join(SPLIT_MODES)}, not {self.mode!r}")
        self.key = date_key(self.request.model, self.request.identifier)
        self.whole = query_range(self.request.identifier, self.key, self.earliest, self.today)
        self.unique = unique_key(self.request.model, self.request.identifier)
        self.sent = 0
        self.unresolved: list[DateRange] = []  # single days (or calendar ranges) incomplete
        if self.mode == "auto":
            self._todo: list[DateRange | None] = [None]
        else:
            self._todo = list(reversed(calendar_ranges(self.whole, self.mode)))

    @property
    def left(self) -> int:
        return len(self._todo)

    def identifier(self, rng: DateRange | None) -> Dataset:
        ds = copy.deepcopy(self.request.identifier)
        if rng is not None:
            apply_key(ds, f"{self.key}={rng.dicom()}")
        wanted = (self.unique,) if self.unique else WORKLIST_IDENTITY
        for key in wanted:  # asked for, to drop the matches seen already
            if not _has_key(ds, key):
                apply_key(ds, f"{key}=")
        return ds

    def __iter__(self) -> Iterator[SubQuery]:
        while self._todo:
            rng = self._todo.pop()
            self.sent += 1
            yield SubQuery(self.sent, rng, self.identifier(rng))

    def ended(self, sub: SubQuery, incomplete: bool) -> bool:
        """Record how ``sub`` ended; True when its range is split further."""
        if not incomplete:
            return False
        rng = self.whole if sub.range is None else sub.range
        halves = rng.halves() if self.mode == "auto" else None
        if halves is None:
            self.unresolved.append(rng)
            return False
        self._todo.extend(reversed(halves))  # depth first, oldest first
        return True


class SplitRun:
    """A split query on one association: ``events()`` yields the engine's events (only new
    matches, numbered across the run) plus SubQueryStarted/SubQueryEnded; ``summary`` is
    the whole run's (its outcome the worst of the sub-queries')."""

    def __init__(self, plan: SplitPlan) -> None:
        self.plan = plan
        self.query = FindQuery(plan.request)
        self.summary = RunSummary.of(plan.request)
        self.parts: list[RunSummary] = []
        self.duplicates = 0
        self._seen: set = set()

    def cancel(self) -> None:
        self.query.cancel()

    def _is_new(self, event: Pending) -> bool:
        """Whether a match was not received before (and remember it).

        A level's match is identified by its unique key; a worklist item by its scheduled
        steps (AccessionNumber, RequestedProcedureID, ScheduledProcedureStepID), as sequence
        matching returns an item with only the steps in the range asked: an item is new when
        one of its steps is; else (no such values) by its identifier's bytes.
        """
        try:
            ds = event.identifier
        except IdentifierDecodeError:
            ds = None
        ids: set = set()
        if ds is not None and self.plan.unique is not None:
            value = ds.get(self.plan.unique)
            if value not in (None, ""):
                ids = {str(value).strip()}
        elif ds is not None:
            item = (str(ds.get("AccessionNumber", "")), str(ds.get("RequestedProcedureID", "")))
            ids = {(*item, str(step.get("ScheduledProcedureStepID", "")))
                   for step in ds.get("ScheduledProcedureStepSequence") or ()}
            if all(not any(i) for i in ids):
                ids = set()
        ids = ids or {event.raw}
        if ids <= self._seen:
            return False
        self._seen |= ids
        return True

    def events(self) -> Iterator[Event | SubQueryStarted | SubQueryEnded]:
        plan = self.plan
        subs = iter(plan)

        def identifiers() -> Iterator[Dataset]:
            for sub in subs:
                self._started = sub
                yield sub.identifier

        with contextlib.closing(self.query.events(identifiers())) as events:
            yield from self._events(events, plan)

    def _events(self, events: Iterator[Event], plan: SplitPlan
                ) -> Iterator[Event | SubQueryStarted | SubQueryEnded]:
        part: RunSummary | None = None
        duplicates = 0
        for event in events:
            if isinstance(event, QuerySent):
                part, duplicates = RunSummary.of(plan.request), 0
                part.associated = True
                yield SubQueryStarted(self._started)
                continue
            if isinstance(event, Pending):
                assert part is not None
                part.feed(event)
                if not self._is_new(event):
                    duplicates += 1
                    self.duplicates += 1
                    continue
                event = replace(event, index=self.summary.received + 1)
                self.summary.feed(event)
                yield event
                continue
            if part is not None:
                part.feed(event)
            if not isinstance(event, Final):
                self.summary.feed(event)
            yield event
            if part is not None and isinstance(event, (Final, Fault)):
                part.finish()
                self.parts.append(part)
                bisected = isinstance(event, Final) and plan.ended(
                    self._started, part.outcome is Outcome.INCOMPLETE)
                yield SubQueryEnded(self._started, part, duplicates, bisected, plan.left)
                part = None
            elif isinstance(event, AssociationFailed):
                break

    def finish(self) -> RunSummary:
        """The whole run's summary, once ``events()`` is exhausted."""
        self.summary.split_ended(self.parts, [str(r) for r in self.plan.unresolved])
        return self.summary.finish()


__all__ = ["EARLIEST", "SPLIT_MODES", "DateRange", "SplitError", "SplitPlan", "SplitRun",
           "SubQuery", "SubQueryEnded", "SubQueryStarted", "calendar_ranges", "date_key",
           "parse_date", "query_range"]
