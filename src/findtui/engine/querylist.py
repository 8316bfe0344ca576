"""A query list: a CSV file of queries, one a row, its header row naming the keys.

``read_query_list(path)`` reads and validates the whole file before anything is sent:
every header must be a key (a keyword, a tag or a path such as
``ScheduledProcedureStepSequence[0].Modality``), named once; every row must have a value
per key that fits the key's VR. A row of empty cells is a blank line: skipped (it would
match everything). Problems are collected with their line numbers (``QueryListError``); with
``skip_bad`` the bad rows are left out and listed instead.

A query's ``number`` is its row in the list, the header not counted (the first query is
1): blank lines are skipped but keep their number, so a query's number is always its
spreadsheet row minus one.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass

from findtui.engine.files import FileTooLargeError, UnsafeFileError, read_capped
from findtui.engine.keys import KeyPathError, apply_key, parse_key

# A list larger than this is not a list of queries (a wrong file): refused before reading.
MAX_LIST_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ListedQuery:
    number: int  # 1-based row of the list, header not counted
    line: int  # line of the file
    keys: tuple[str, ...]  # "Key=value" for each column of the row

    def apply(self, ds) -> None:
        """Set the row's keys on ``ds`` (a copy of the base identifier)."""
        for key in self.keys:
            apply_key(ds, key)


@dataclass(frozen=True)
class BadRow:
    line: int
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}"


class QueryListError(ValueError):
    """The list cannot be used; ``problems`` name the lines (nothing was sent)."""

    def __init__(self, path: str, problems: list[BadRow] | str, header: bool = False) -> None:
        super().__init__(path, problems)
        self.path = path
        self.problems = problems
        self.header = header  # the header row is bad: no row can be read

    def __str__(self) -> str:
        if isinstance(self.problems, str):
            return f"query list {self.path!r}: {self.problems}"
        shown = self.problems[:20]
        more = len(self.problems) - len(shown)
        if self.header:
            first = (f"query list {self.path!r}: its header row must name keys (keywords such "
                     "as AccessionNumber, tags such as (0010,0020), or paths such as "
                     "Seq[0].Keyword); nothing was sent:")
        else:
            first = (f"query list {self.path!r}: {len(self.problems)} bad row"
                     f"{'' if len(self.problems) == 1 else 's'} (nothing was sent; fix them, "
                     "or give --skip-bad to leave them out):")
        lines = [first]
        lines += [f"  {p}" for p in shown]
        if more:
            lines.append(f"  ... and {more} more")
        return "\n".join(lines)


@dataclass(frozen=True)
class QueryList:
    path: str
    keys: tuple[str, ...]  # the header
    queries: tuple[ListedQuery, ...]
    skipped: tuple[BadRow, ...] = ()  # bad rows left out (skip_bad)


def _dialect(header_line: str) -> str:
    """The delimiter: ',' unless the header only has ';' or tabs (spreadsheet exports)."""
    if "," in header_line:
        return ","
    for sep in (";", "\t"):
        if sep in header_line:
            return sep
    return ","


def read_query_list(path: str | os.PathLike[str], skip_bad: bool = False) -> QueryList:
    """Read and check a query list (raises QueryListError)."""
    name = os.fspath(path)
    try:
        data = read_capped(name, MAX_LIST_BYTES)
    except FileNotFoundError:
        raise QueryListError(name, "no such file") from None
    except (UnsafeFileError, FileTooLargeError) as exc:  # a folder, FIFO or device; too big
        raise QueryListError(name, f"{exc.strerror}: give a CSV file") from None
    except OSError as exc:
        raise QueryListError(name, f"cannot be read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise QueryListError(name, f"line {line} is not UTF-8 text: save the list as CSV "
                                   "UTF-8") from None
    return parse_query_list(text, name, skip_bad)


def parse_query_list(text: str, name: str = "<list>", skip_bad: bool = False) -> QueryList:
    """The checked list in ``text`` (raises QueryListError)."""
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        raise QueryListError(name, "holds NUL bytes: it is not a CSV text file")
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise QueryListError(name, "is empty: the first line must name the keys, e.g. "
                                   "AccessionNumber or PatientID,StudyDate")
    reader = csv.reader(io.StringIO(text), delimiter=_dialect(lines[first]))
    try:
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as exc:
        raise QueryListError(name, f"line {reader.line_num}: not CSV ({exc})") from None
    header_line, header = next((n, r) for n, r in rows if any(c.strip() for c in r))
    keys = [c.strip() for c in header]
    problems = []
    seen: dict[str, int] = {}
    for col, key in enumerate(keys, 1):
        if not key:
            problems.append(BadRow(header_line, f"column {col} has no key name"))
            continue
        if "=" in key:
            problems.append(BadRow(header_line, f"column {col}: {key!r} holds '=': the header "
                                                "names keys only, each row gives the values"))
            continue
        try:
            parsed = parse_key(key)
        except KeyPathError as exc:
            hint = ""
            if key.startswith("(") != key.endswith(")"):
                hint = ' (a tag holds a comma: quote it, "(0010,0020)", or use its keyword)'
            problems.append(BadRow(header_line, f"column {col}: {exc.problem}{hint}"))
            continue
        if parsed.path[-1].vr == "SQ":
            problems.append(BadRow(header_line, f"column {col}: {key} is a sequence; name a "
                                                f"key inside it, e.g. {key}[0].Keyword"))
            continue
        canonical = parsed.path[-1].tag if len(parsed.path) == 1 else key
        if canonical in seen:
            problems.append(BadRow(header_line, f"column {col}: {key} is named twice (also "
                                                f"column {seen[canonical]})"))
        seen[canonical] = col
    if problems:
        raise QueryListError(name, problems, header=True)
    queries, bad = [], []
    body = [(line, row) for line, row in rows if line > header_line]
    for number, (line, row) in enumerate(body, 1):
        if not any(c.strip() for c in row):
            continue  # a blank line (or a row of empty cells) keeps its number
        if len(row) != len(keys):
            bad.append(BadRow(line, f"{len(row)} value{'' if len(row) == 1 else 's'} for "
                                    f"{len(keys)} key{'' if len(keys) == 1 else 's'} "
                                    f"({', '.join(keys)})"))
            continue
        texts = []
        problem = None
        for key, value in zip(keys, row):
            text_key = f"{key}={value.strip()}"
            try:
                parse_key(text_key)
            except KeyPathError as exc:
                problem = f"{key}: {exc.problem}"
                break
            texts.append(text_key)
        if problem is not None:
            bad.append(BadRow(line, problem))
            continue
        queries.append(ListedQuery(number, line, tuple(texts)))
    if bad and not skip_bad:
        raise QueryListError(name, bad)
    if not queries:
        raise QueryListError(name, "has no queries: after the header line, one row of values "
                                   "per query" if not bad else "every row is bad")
    return QueryList(name, tuple(keys), tuple(queries), tuple(bad))


def check_rows(listed: QueryList, base, skip_bad: bool = False, check=None) -> QueryList:
    """``listed`` checked against the query it completes: every row's keys set on (a copy
    of) ``base``, the -k/-f identifier, and ``check(identifier)`` (e.g. that its date can be
    split; raises ValueError) passed. Raises QueryListError naming the bad rows; with
    ``skip_bad`` returns the list without them (in ``skipped``)."""
    import copy
    import dataclasses

    scratch = copy.deepcopy(base)
    bad = []
    for query in listed.queries:
        try:
            if check is not None:
                ds = copy.deepcopy(base)
                query.apply(ds)
                check(ds)
            else:
                query.apply(scratch)
        except ValueError as exc:  # KeyPathError, SplitError, the CLI's UsageError
            bad.append(BadRow(query.line, str(exc)))
    if not bad:
        return listed
    if not skip_bad:
        raise QueryListError(listed.path, bad)
    lines = {b.line for b in bad}
    queries = tuple(q for q in listed.queries if q.line not in lines)
    if not queries:
        raise QueryListError(listed.path, "every row is bad")
    return dataclasses.replace(listed, queries=queries, skipped=tuple(
        sorted((*listed.skipped, *bad), key=lambda b: b.line)))


__all__ = ["BadRow", "ListedQuery", "QueryList", "QueryListError", "check_rows",
           "parse_query_list",
           "read_query_list"]
