"""history.jsonl: every run (CLI and TUI), with every setting it ran with, to audit and re-run."""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
from msgspec import Struct

from findtui.config.paths import HISTORY_FILE, state_dir
from findtui.config.schema import EXT_NEG_FIELDS, MODEL_NAMES
from findtui.engine.files import atomic_write_text, file_lock, private_dir, read_capped
from findtui.engine.keys import build_identifier, dataset_to_keys
from findtui.engine.models import ExtendedNegotiation, QueryModel
from findtui.engine.network import FIELDS as NETWORK_FIELDS
from findtui.engine.network import Network, NetworkError, network_from
from findtui.engine.query import FindRequest
from findtui.engine.run import RunSummary

HISTORY_LIMIT = 500
HISTORY_MAX_BYTES = 16 << 20  # 500 runs are well under 2 MB
# Set (to anything but '' or 0) to record no history; also --no-history, [defaults] history.
NO_HISTORY_ENV = "FINDTUI_NO_HISTORY"


def history_wanted(no_history_option: bool = False, profiles=None) -> bool:
    """Whether runs are recorded: not with --no-history, FINDTUI_NO_HISTORY, nor with
    ``history = false`` in the profiles file's [defaults]."""
    if no_history_option or os.environ.get(NO_HISTORY_ENV, "") not in ("", "0"):
        return False
    return profiles is None or profiles.history


class RetrieveRecord(Struct, frozen=True, forbid_unknown_fields=True):
    """How a retrieve after the query (or a TUI retrieve job) went, and every setting it
    ran with (to run it again): a history line's ``retrieve`` object."""

    method: Literal["get", "move"]
    outcome: str  # engine.retrieve.RetrieveSummary.outcome: success|partial|failure|cancel|network|output
    items: int  # matches to retrieve
    done: int  # items that ended with a final status
    written: int  # instances written
    skipped: int  # instances already on disk
    failed: int  # failed sub-operations
    bytes: int
    folder: str | None  # absolute; None: moved to another AE, nothing written here
    layout: str
    move_destination: str | None = None
    store_port: int | None = None  # C-MOVE to us
    store_host: str = ""
    message: str | None = None  # what ended it early (a fault), if anything

    @classmethod
    def of(cls, request, summary) -> RetrieveRecord:
        """From an engine.retrieve RetrieveRequest and the RetrieveSummary of its run."""
        to_us = request.method == "get" or request.moves_to_us
        fault = summary.fault
        return cls(method=request.method, outcome=summary.outcome,
                   items=summary.items or len(request.items), done=len(summary.done),
                   written=summary.written, skipped=summary.skipped, failed=summary.failed,
                   bytes=summary.bytes,
                   folder=os.path.abspath(os.path.expanduser(request.directory)) if to_us
                   else None,
                   layout=request.layout,
                   move_destination=request.move_destination if request.method == "move"
                   else None,
                   store_port=request.store_port if request.moves_to_us else None,
                   store_host=request.store_host if request.moves_to_us else "",
                   message=fault.message if fault is not None else None)

    def describe(self) -> str:
        """One line: 'C-GET success: 12 written (3.4 MB), 0 already on disk, 0 failed; 2/2
        items into /data/x'."""
        from findtui.engine.retrieve import megabytes

        if self.folder is None:
            text = (f"C-MOVE to {self.move_destination} {self.outcome}: {self.done}/{self.items} "
                    f"item(s), {self.failed} failed")
        else:
            text = (f"C-{self.method.upper()} {self.outcome}: {self.written} written "
                    f"({megabytes(self.bytes)}), {self.skipped} already on disk, {self.failed} "
                    f"failed; {self.done}/{self.items} item(s) into {self.folder}")
        return text + (f"; {self.message}" if self.message and self.outcome != "success"
                       else "")


class _Record(Struct, forbid_unknown_fields=True):
    """A history line's own fields (the connection's fields sit beside them, flat)."""

    time: str
    model: Literal["patient", "study", "psonly", "worklist"]
    keys: list[str]
    results: int
    outcome: str
    status: str
    status_code: int | None = None
    node: str | None = None
    query: str | None = None
    ext_neg: list[str] = []
    source: str = "cli"
    demo: bool = False
    drill: int = 0
    retrieve: RetrieveRecord | None = None
    split: Literal["auto", "day", "week", "month", "year"] | None = None
    split_from: str | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """One run: when, every setting it ran with, which keys, how many results, how it ended.

    Its JSON is flat: the connection's fields (address, port, AE titles, timeouts,
    max_pdu, tls, transfer syntaxes; engine.network.Network) beside the run's own.
    Entries written before every setting was recorded load with ``complete`` False:
    they can be loaded into a form, not re-run as they ran.
    """

    time: str  # ISO 8601, local time with its UTC offset
    network: Network
    model: QueryModel
    keys: tuple[str, ...]
    results: int
    outcome: str  # engine.run.Outcome: success|warning|cancel|failure|network|aborted|output|incomplete
    status: str  # 'Success', 'Failure: Unable to Process', or what went wrong
    status_code: int | None = None
    node: str | None = None  # the node profile used, if any
    query: str | None = None  # the query profile used, if any
    ext_neg: tuple[str, ...] = ()  # ExtendedNegotiation attribute names that were asked
    source: str = "cli"  # cli|tui
    demo: bool = False  # ran against the embedded demo SCP (its port changes every start)
    drill: int = 0  # a TUI drill-down sub-query, this many levels below the query run
    complete: bool = True  # False: an old entry without TLS, timeouts, PDU, transfer syntaxes
    retrieve: RetrieveRecord | None = None  # the retrieve that followed the query, if any
    split: str | None = None  # --split MODE (engine.split): the query ran split by date
    split_from: str | None = None  # --split-from YYYYMMDD

    @classmethod
    def from_run(cls, request: FindRequest, summary: RunSummary, *, node: str | None = None,
                 query: str | None = None, source: str = "cli", demo: bool = False,
                 keys: Sequence[str] | None = None, drill: int = 0,
                 when: _dt.datetime | None = None,
                 retrieve: RetrieveRecord | None = None, split: str | None = None,
                 split_from: str | None = None) -> HistoryEntry:
        """``keys``: the keys as the user gave them (their order is the column order); by
        default, the request identifier's keys."""
        when = when or _dt.datetime.now().astimezone()
        return cls(time=when.isoformat(timespec="seconds"), network=request.network,
                   model=request.model,
                   keys=tuple(dataset_to_keys(request.identifier) if keys is None else keys),
                   results=summary.received, outcome=str(summary.outcome or "aborted"),
                   status=summary.status, status_code=summary.status_code, node=node,
                   query=query,
                   ext_neg=tuple(a for a, _, _ in ExtendedNegotiation.NAMES
                                 if getattr(request.ext_neg, a)),
                   source=source, demo=demo, drill=drill, retrieve=retrieve, split=split,
                   split_from=split_from if split else None)

    @property
    def address(self) -> str:
        return self.network.address

    @property
    def port(self) -> int:
        return self.network.port

    @property
    def called_aet(self) -> str:
        return self.network.called_aet

    @property
    def calling_aet(self) -> str:
        return self.network.calling_aet

    def find_request(self, network: Network | None = None) -> FindRequest:
        """The request to run this entry again: exactly as it ran, or on ``network``
        (the demo SCP's new address, a node profile's settings)."""
        return FindRequest(network=network or self.network,
                           identifier=build_identifier(list(self.keys)), model=self.model,
                           ext_neg=ExtendedNegotiation(**{a: True for a in self.ext_neg}))

    def to_json(self) -> dict[str, Any]:
        # Every setting, unset ones as null: a script sees TLS off as "tls": null.
        d: dict[str, Any] = {"time": self.time, **msgspec.to_builtins(self.network),
                             "model": MODEL_NAMES[self.model], "keys": list(self.keys),
                             "results": self.results, "outcome": self.outcome,
                             "status": self.status, "status_code": self.status_code,
                             "node": self.node, "query": self.query,
                             "ext_neg": list(self.ext_neg), "source": self.source}
        if self.demo:
            d["demo"] = True
        if self.drill:
            d["drill"] = self.drill
        if self.retrieve is not None:  # absent, not null: lines without a retrieve unchanged
            d["retrieve"] = msgspec.to_builtins(self.retrieve)
        if self.split:  # likewise: absent unless the query ran split
            d["split"] = self.split
            if self.split_from:
                d["split_from"] = self.split_from
        return d

    @classmethod
    def from_json(cls, data: Any) -> HistoryEntry:
        """Raises ValueError for anything that is not an entry."""
        if not isinstance(data, dict):
            raise ValueError("not an object")
        net = {k: v for k, v in data.items() if k in NETWORK_FIELDS}
        own = {k: v for k, v in data.items() if k not in NETWORK_FIELDS}
        try:
            record = msgspec.convert(own, _Record)
            network = network_from(net)
        except (msgspec.ValidationError, NetworkError) as exc:
            raise ValueError(f"bad history entry: {exc}") from None
        if not all(a in EXT_NEG_FIELDS.values() for a in record.ext_neg):
            raise ValueError("bad history entry: unknown extended negotiation")
        return cls(time=record.time, network=network,
                   model=next(m for m, n in MODEL_NAMES.items() if n == record.model),
                   keys=tuple(record.keys), results=record.results, outcome=record.outcome,
                   status=record.status, status_code=record.status_code, node=record.node,
                   query=record.query, ext_neg=tuple(record.ext_neg), source=record.source,
                   demo=record.demo, drill=record.drill, complete="acse_timeout" in net,
                   retrieve=record.retrieve, split=record.split,
                   split_from=record.split_from)


class History:
    """history.jsonl: one JSON object a line, oldest first, at most ``limit`` entries.

    Appends run under a lock; past the limit the file is rewritten atomically with the
    newest entries. Lines that do not parse (e.g. hand-edited) are skipped and dropped at
    the next rewrite.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None,
                 limit: int = HISTORY_LIMIT) -> None:
        self.path = Path(path) if path is not None else state_dir() / HISTORY_FILE
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.limit = limit

    def _lines(self) -> list[str]:
        """The file's lines (raises OSError for a file that is not a plain file or is larger
        than HISTORY_MAX_BYTES: say so, never read without bound)."""
        try:
            data = read_capped(self.path, HISTORY_MAX_BYTES)
        except FileNotFoundError:
            return []
        text = data.decode("utf-8", errors="replace")
        return [line for line in text.splitlines() if line.strip()]

    def entries(self) -> list[HistoryEntry]:
        out = []
        for line in self._lines():
            try:
                out.append(HistoryEntry.from_json(json.loads(line)))
            except (ValueError, RecursionError):
                continue
        return out[-self.limit:]

    def append(self, entry: HistoryEntry) -> None:
        """Record a run (raises OSError or ProfileError if the file cannot be written)."""
        line = json.dumps(entry.to_json(), ensure_ascii=False)
        with file_lock(self.lock_path):
            lines = self._lines()
            if len(lines) + 1 > self.limit:
                kept = [ln for ln in lines if _valid_line(ln)][-(self.limit - 1):] \
                    if self.limit > 1 else []
                atomic_write_text(self.path, "".join(f"{ln}\n" for ln in [*kept, line]))
            else:
                private_dir(self.path.parent)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                             | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0),
                             0o600)
                with os.fdopen(fd, "a", encoding="utf-8") as f:
                    if f.tell() and not self.path.read_bytes().endswith(b"\n"):
                        f.write("\n")  # a torn last line stays a line of its own
                    f.write(line + "\n")
                    f.flush()
                    os.fsync(f.fileno())

    def clear(self) -> None:
        with file_lock(self.lock_path):
            atomic_write_text(self.path, "")


def _valid_line(line: str) -> bool:
    try:
        HistoryEntry.from_json(json.loads(line))
    except (ValueError, RecursionError):
        return False
    return True

