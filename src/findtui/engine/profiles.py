"""Saved node and query profiles, and the run history: one store shared by the CLI and the TUI.

Files (one function each resolves the location; ``FINDTUI_CONFIG_DIR`` overrides both,
which is how the tests keep a developer's own profiles out)::

    config_dir()/profiles.toml   node and query profiles, human-editable TOML (README, "Profiles")
    state_dir()/history.jsonl    the run history: one JSON object a line, oldest first,
                                 the last HISTORY_LIMIT runs

``config_dir()`` is ``$FINDTUI_CONFIG_DIR`` or platformdirs' user config dir;
``state_dir()`` is ``$FINDTUI_CONFIG_DIR`` (the same folder, a separate file) or
platformdirs' user state dir.

API
---
``Store(config_dir=None, state_dir=None)`` -- every call reads the file afresh, so two
instances (a TUI and a CLI) always see each other's saves:

- ``.path``, ``.load() -> Profiles`` (``.nodes``, ``.queries``: dicts in file order;
  ``.default_node``, ``.default_query``)
- ``.nodes()``, ``.queries()``, ``.get_node(name)``, ``.get_query(name)``
- ``.get(kind, name)``, ``.names(kind)``, ``.default(kind)``; kind is ``"node"`` or ``"query"``
- ``.save(profile, replace=True)`` (a NodeProfile or a QueryProfile),
  ``.remove(kind, name)``, ``.rename(kind, old, new)``, ``.duplicate(kind, name, new)``,
  ``.set_default(kind, name_or_None)``
- ``.export_text() -> str``, ``.import_file(path, replace=False) -> list[(kind, name)]``;
  ``profile_toml(profile)`` renders one profile
- ``.history -> History``

``History(path=None, limit=HISTORY_LIMIT)``: ``.append(entry)``, ``.entries()`` (oldest
first), ``.clear()``, ``.path``. ``HistoryEntry.from_run(request, results=..., last_event=...,
node=..., query=..., source=...)`` builds an entry from a FindRequest and the run's
terminal event; ``entry.find_request(node_profile=None)`` rebuilds the request to re-run it.

Frozen dataclasses (edit with ``dataclasses.replace``; ``.validated()`` checks one as if
read from the file): ``NodeProfile`` (``.network()``, ``.transfer_syntaxes()``,
``NodeProfile.from_network(name, network, **fields)``), ``QueryProfile``
(``.identifier_keys()``, ``.identifier(extra_keys)``, ``QueryProfile.from_request(name,
request, **fields)``: the TUI's "save current form as"), ``HistoryEntry``.
``find_request(query, node, extra_keys=())`` makes the FindRequest of a query on a node.
``parse_profiles(text, path=None) -> Profiles`` validates a whole file's text;
``Profiles.get(kind, name, path)``; ``split_level(keys)``; ``MODEL_NAMES`` (the TOML names
of the models); ``EXT_NEG_FIELDS`` (TOML/CLI flag name -> ExtendedNegotiation attribute).

Every problem is a ``ProfileError`` (``.path``, ``.line``, ``.problem``; str() is one line
naming the file and line), or its subclasses ``ProfileNotFoundError`` and
``ProfileExistsError``. Saves run under an exclusive ``flock`` on ``<file>.lock``,
re-read the file inside the lock and apply only the one change, so concurrent saves from
two processes lose nothing. A file that does not parse or validate is never written, and
neither is a result that is not exactly the profiles wanted (tomlkit on an unusual layout).
Writes are atomic: a temporary file in the same folder, fsync, ``os.replace``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import re
import stat
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
import tomlkit

from findtui.engine.keys import KeyPathError, build_identifier, dataset_to_keys, parse_key
from findtui.engine.models import (
    TRANSFER_SYNTAX_NAMES,
    ExtendedNegotiation,
    ExtendedNegotiationError,
    QueryModel,
    transfer_syntaxes,
)
from findtui.engine.query import (
    AssociationFailed,
    Fault,
    Final,
    FindRequest,
    Network,
    TLSOptions,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: saves are atomic but not serialised
    fcntl = None  # type: ignore[assignment]

ENV_VAR = "FINDTUI_CONFIG_DIR"
PROFILES_FILE = "profiles.toml"
HISTORY_FILE = "history.jsonl"
HISTORY_LIMIT = 500
LOCK_TIMEOUT = 10.0
KINDS = ("node", "query")
NAME_MAX = 64
AE_MAX = 16
MAX_TIMEOUT = 86400  # seconds

NEW_FILE_HEADER = (
    "# findtui profiles: [nodes.NAME] are peers, [queries.NAME] are saved queries.\n"
    "# The format is described in findtui's README (\"Profiles\"). findtui keeps your\n"
    "# comments when it saves this file.\n"
)

MODEL_NAMES = {
    QueryModel.PATIENT: "patient",
    QueryModel.STUDY: "study",
    QueryModel.PSONLY: "psonly",
    QueryModel.WORKLIST: "worklist",
}
OUTPUT_FORMATS = ("log", "csv", "json", "jsonl")
# TOML field -> ExtendedNegotiation attribute; the fields are the CLI flags' names.
EXT_NEG_FIELDS = {flag.removeprefix("--").replace("-", "_"): attr
                  for attr, _, flag in ExtendedNegotiation.NAMES}


# --- locations ----------------------------------------------------------------


def _override() -> Path | None:
    value = os.environ.get(ENV_VAR)
    return Path(value).expanduser() if value else None


def config_dir() -> Path:
    """Where profiles.toml lives: $FINDTUI_CONFIG_DIR, else the user config dir."""
    return _override() or platformdirs.user_config_path("findtui", appauthor=False)


def state_dir() -> Path:
    """Where history.jsonl lives: $FINDTUI_CONFIG_DIR, else the user state dir."""
    return _override() or platformdirs.user_state_path("findtui", appauthor=False)


_config_dir, _state_dir = config_dir, state_dir  # for Store, whose arguments shadow them


# --- errors -------------------------------------------------------------------


class ProfileError(Exception):
    """A profile problem; str() names the file and line when known."""

    def __init__(self, problem: str, path: str | os.PathLike[str] | None = None,
                 line: int | None = None, column: int | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path = None if path is None else Path(path)
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = str(self.path) if self.path is not None else ""
        if self.line is not None:
            where += f"{', ' if where else ''}line {self.line}"
            if self.column is not None:
                where += f", column {self.column}"
        return f"{where}: {self.problem}" if where else self.problem


class ProfileNotFoundError(ProfileError):
    pass


class ProfileExistsError(ProfileError):
    pass


class _Invalid(Exception):
    """A validation problem at a TOML key path; turned into a ProfileError with a line."""

    def __init__(self, where: tuple[str, ...], problem: str, needle: str | None = None) -> None:
        super().__init__(problem)
        self.where = where
        self.problem = problem
        self.needle = needle  # text to look for from the key's line on (an array element)


def _dotted(where: Sequence[str]) -> str:
    return ".".join(p if re.fullmatch(r"[A-Za-z0-9_-]+", p) else json.dumps(p) for p in where)


# --- profiles -----------------------------------------------------------------


@dataclass(frozen=True)
class NodeProfile:
    """A peer: where and how to reach it (findscu's network options), TLS, default model."""

    name: str
    address: str
    port: int
    calling_aet: str = "FINDSCU"
    called_aet: str = "ANY-SCP"
    acse_timeout: float = 30.0
    dimse_timeout: float = 30.0
    network_timeout: float = 30.0
    max_pdu: int = 16382
    tls: TLSOptions | None = None
    model: QueryModel | None = None  # the model to use with this node when none is given
    transfer_syntax: str | None = None  # propose only this one (implicit|explicit|deflated|big)
    prefer_transfer_syntax: str | None = None  # propose all four, this one first
    description: str = ""

    kind = "node"

    def network(self) -> Network:
        tls = None
        if self.tls is not None:
            tls = TLSOptions(ca_file=_expand(self.tls.ca_file), cert_file=_expand(self.tls.cert_file),
                             key_file=_expand(self.tls.key_file), verify=self.tls.verify)
        return Network(address=self.address, port=self.port, calling_aet=self.calling_aet,
                       called_aet=self.called_aet, acse_timeout=float(self.acse_timeout),
                       dimse_timeout=float(self.dimse_timeout),
                       network_timeout=float(self.network_timeout), max_pdu=self.max_pdu, tls=tls)

    def transfer_syntaxes(self):
        if self.transfer_syntax:
            return transfer_syntaxes(self.transfer_syntax, only=True)
        return transfer_syntaxes(self.prefer_transfer_syntax)

    @classmethod
    def from_network(cls, name: str, network: Network, **fields: Any) -> NodeProfile:
        return cls(name=name, address=network.address, port=network.port,
                   calling_aet=network.calling_aet, called_aet=network.called_aet,
                   acse_timeout=network.acse_timeout, dimse_timeout=network.dimse_timeout,
                   network_timeout=network.network_timeout, max_pdu=network.max_pdu,
                   tls=network.tls, **fields)

    def to_toml(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "address": self.address, "port": self.port,
            "calling_aet": self.calling_aet, "called_aet": self.called_aet,
            "acse_timeout": _number(self.acse_timeout),
            "dimse_timeout": _number(self.dimse_timeout),
            "network_timeout": _number(self.network_timeout),
            "max_pdu": self.max_pdu,
        }
        if self.model is not None:
            d["model"] = MODEL_NAMES[self.model]
        if self.transfer_syntax:
            d["transfer_syntax"] = self.transfer_syntax
        if self.prefer_transfer_syntax:
            d["prefer_transfer_syntax"] = self.prefer_transfer_syntax
        if self.description:
            d["description"] = self.description
        if self.tls is not None:
            tls: dict[str, Any] = {}
            for key in ("ca_file", "cert_file", "key_file"):
                if getattr(self.tls, key):
                    tls[key] = getattr(self.tls, key)
            tls["verify"] = self.tls.verify
            d["tls"] = tls
        return d

    def validated(self) -> NodeProfile:
        """Self, checked as if read from a file (raises ProfileError)."""
        return _validated(self)


@dataclass(frozen=True)
class QueryProfile:
    """A saved query: model, level, -k keys, extended negotiation, output options, node."""

    name: str
    model: QueryModel = QueryModel.PATIENT
    level: str | None = None  # QueryRetrieveLevel; sent first, before the keys
    keys: tuple[str, ...] = ()  # the -k syntax
    ext_neg: ExtendedNegotiation = field(default_factory=ExtendedNegotiation)
    output_format: str = "log"
    output: str | None = None
    write: bool = False
    output_directory: str | None = None
    overwrite: bool = False
    node: str | None = None  # default node profile for this query
    description: str = ""

    kind = "query"

    def identifier_keys(self) -> list[str]:
        """The keys to build the identifier from: the level first, then the keys."""
        level = [f"QueryRetrieveLevel={self.level}"] if self.level else []
        return level + list(self.keys)

    def identifier(self, extra_keys: Sequence[str] = ()):
        """The request identifier; ``extra_keys`` add to or override the saved keys."""
        return build_identifier([*self.identifier_keys(), *extra_keys])

    @classmethod
    def from_request(cls, name: str, request: FindRequest, **fields: Any) -> QueryProfile:
        """A query profile from a request (the TUI's "save current form as")."""
        keys = dataset_to_keys(request.identifier)
        fields.setdefault("level", None)
        if request.model is not QueryModel.WORKLIST:
            keys, level = split_level(keys)
            fields["level"] = level or fields["level"]
        return cls(name=name, model=request.model, keys=tuple(keys), ext_neg=request.ext_neg,
                   **fields)

    def to_toml(self) -> dict[str, Any]:
        d: dict[str, Any] = {"model": MODEL_NAMES[self.model]}
        if self.level:
            d["level"] = self.level
        d["keys"] = list(self.keys)
        if self.node:
            d["node"] = self.node
        for key, attr in EXT_NEG_FIELDS.items():
            if getattr(self.ext_neg, attr):
                d[key] = True
        if self.output_format != "log":
            d["output_format"] = self.output_format
        if self.output:
            d["output"] = self.output
        if self.write:
            d["write"] = True
        if self.output_directory:
            d["output_directory"] = self.output_directory
        if self.overwrite:
            d["overwrite"] = True
        if self.description:
            d["description"] = self.description
        return d

    def validated(self) -> QueryProfile:
        return _validated(self)


Profile = NodeProfile | QueryProfile
_SECTIONS = {"node": "nodes", "query": "queries"}


@dataclass(frozen=True)
class Profiles:
    """A validated snapshot of profiles.toml."""

    nodes: dict[str, NodeProfile] = field(default_factory=dict)
    queries: dict[str, QueryProfile] = field(default_factory=dict)
    default_node: str | None = None
    default_query: str | None = None

    def of(self, kind: str) -> dict[str, Profile]:
        return self.nodes if _kind(kind) == "node" else self.queries  # type: ignore[return-value]

    def default(self, kind: str) -> str | None:
        return self.default_node if _kind(kind) == "node" else self.default_query

    def get(self, kind: str, name: str, path: str | os.PathLike[str] | None = None) -> Profile:
        """The profile, or a ProfileNotFoundError listing the known names."""
        found = self.of(kind).get(name)
        if found is None:
            known = list(self.of(kind))
            hint = f"; known: {', '.join(known)}" if known else f"; there are no {kind} profiles"
            raise ProfileNotFoundError(f"no {kind} profile {name!r}{hint}", path)
        return found


def profile_toml(profile: Profile, default: bool = False) -> str:
    """One profile as the TOML it is saved as (``findtui profiles show``)."""
    doc = tomlkit.document()
    if default:
        doc.add(tomlkit.comment(f"the default {profile.kind} profile"))
    section = tomlkit.table(is_super_table=True)
    section[profile.name] = _toml_item(profile.to_toml())
    doc[_SECTIONS[profile.kind]] = section
    return tomlkit.dumps(doc)


def find_request(query: QueryProfile, node: NodeProfile,
                 extra_keys: Sequence[str] = ()) -> FindRequest:
    """The FindRequest a query profile makes against a node profile (keys may raise KeyPathError)."""
    return FindRequest(network=node.network(), identifier=query.identifier(extra_keys),
                       model=query.model, ext_neg=query.ext_neg,
                       transfer_syntaxes=node.transfer_syntaxes())


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be 'node' or 'query', not {kind!r}")
    return kind


def _expand(path: str | None) -> str | None:
    return os.path.expanduser(path) if path else path


def _number(x: float) -> int | float:
    return int(x) if isinstance(x, float) and x.is_integer() else x


def split_level(keys: Sequence[str]) -> tuple[list[str], str | None]:
    """(keys without ``QueryRetrieveLevel=X``, X or None): how a query profile keeps its
    level apart from its keys. The last such key wins."""
    rest, level = [], None
    for key in keys:
        try:
            parsed = parse_key(key)
        except KeyPathError:
            rest.append(key)
            continue
        if len(parsed.path) == 1 and parsed.path[0].tag == 0x00080052 and parsed.value:
            level = parsed.value
        else:
            rest.append(key)
    return rest, level


# --- validation ---------------------------------------------------------------

_NODE_FIELDS = ("address", "port", "calling_aet", "called_aet", "acse_timeout", "dimse_timeout",
                "network_timeout", "max_pdu", "model", "transfer_syntax",
                "prefer_transfer_syntax", "description", "tls")
_TLS_FIELDS = ("ca_file", "cert_file", "key_file", "verify")
_QUERY_FIELDS = ("model", "level", "keys", "node", *EXT_NEG_FIELDS, "output_format", "output",
                 "write", "output_directory", "overwrite", "description")
_DEFAULTS_FIELDS = ("node", "query")
_TOP_FIELDS = ("defaults", "nodes", "queries")


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _no_unknown(table: dict, where: tuple[str, ...], allowed: Sequence[str]) -> None:
    unknown = [k for k in table if k not in allowed]
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        place = f"[{_dotted(where)}]" if where else "the top level"
        raise _Invalid(where + (unknown[0],),
                       f"unknown field{'s' if len(unknown) > 1 else ''} {names} in {place} "
                       f"(known: {', '.join(allowed)})")


def _table(value: Any, where: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise _Invalid(where, f"{_dotted(where)} must be a table, not {_type_name(value)}")
    return value


def _field(table: dict, where: tuple[str, ...], key: str, types: tuple[type, ...],
           what: str, default: Any = None, required: bool = False) -> Any:
    if key not in table:
        if required:
            raise _Invalid(where, f"[{_dotted(where)}] needs {key!r}")
        return default
    value = table[key]
    # bool is an int to Python, never to a user
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise _Invalid(where + (key,), f"{key} must be {what}, not {_type_name(value)} "
                                       f"({_short(value)})")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_name(name: str, where: tuple[str, ...]) -> str:
    if not name or name != name.strip():
        raise _Invalid(where, f"profile name {name!r} must be non-empty, without leading or "
                              "trailing spaces")
    if len(name) > NAME_MAX:
        raise _Invalid(where, f"profile name {_short(name)} is longer than {NAME_MAX} characters")
    if any(not ch.isprintable() for ch in name):
        raise _Invalid(where, f"profile name {name!r} has control characters")
    return name


def _check_ae(value: str, key: str, where: tuple[str, ...]) -> str:
    if not value.strip():
        raise _Invalid(where + (key,), f"{key} must not be empty")
    if len(value) > AE_MAX:
        raise _Invalid(where + (key,), f"{key} {value!r} is longer than {AE_MAX} characters")
    if not all(" " <= ch <= "~" for ch in value) or "\\" in value:
        raise _Invalid(where + (key,), f"{key} {value!r} must be printable ASCII without '\\'")
    return value


def _check_model(value: str, where: tuple[str, ...]) -> QueryModel:
    for model, name in MODEL_NAMES.items():
        if value in (name, model.value):
            return model
    raise _Invalid(where + ("model",), f"model {value!r} is not one of "
                                       f"{', '.join(MODEL_NAMES.values())} (or P, S, O, W)")


def _check_path(value: str, key: str, where: tuple[str, ...]) -> str:
    if not value or "\0" in value:
        raise _Invalid(where + (key,), f"{key} must be a non-empty path")
    return value


def _node(name: str, table: dict, where: tuple[str, ...]) -> NodeProfile:
    _no_unknown(table, where, _NODE_FIELDS)
    address = _field(table, where, "address", (str,), "a host name or IP address", required=True)
    if not address or len(address) > 253 or any(ch.isspace() or not ch.isprintable()
                                                 for ch in address):
        raise _Invalid(where + ("address",), f"address {_short(address)} is not a host name "
                                             "or IP address")
    port = _field(table, where, "port", (int,), "an integer", required=True)
    if not 1 <= port <= 65535:
        raise _Invalid(where + ("port",), f"port {_short(port)} is out of range (1-65535)")
    kw: dict[str, Any] = {}
    for key in ("calling_aet", "called_aet"):
        value = _field(table, where, key, (str,), "a string")
        if value is not None:
            kw[key] = _check_ae(value, key, where)
    for key in ("acse_timeout", "dimse_timeout", "network_timeout"):
        value = _field(table, where, key, (int, float), "a number of seconds")
        if value is not None:
            # compared before float(): a huge integer does not fit a float
            if not (0 < value <= MAX_TIMEOUT) or not math.isfinite(value):
                raise _Invalid(where + (key,), f"{key} must be more than 0 and at most "
                                               f"{MAX_TIMEOUT} seconds, not {_short(value)}")
            kw[key] = float(value)
    max_pdu = _field(table, where, "max_pdu", (int,), "an integer")
    if max_pdu is not None:
        if not 0 <= max_pdu <= 0xFFFFFFFF:
            raise _Invalid(where + ("max_pdu",), f"max_pdu {_short(max_pdu)} is out of range "
                                                 "(0 = unlimited, up to 4294967295)")
        kw["max_pdu"] = max_pdu
    model = _field(table, where, "model", (str,), "a string")
    if model is not None:
        kw["model"] = _check_model(model, where)
    for key in ("transfer_syntax", "prefer_transfer_syntax"):
        value = _field(table, where, key, (str,), "a string")
        if value is not None:
            if value not in TRANSFER_SYNTAX_NAMES:
                raise _Invalid(where + (key,), f"{key} {value!r} is not one of "
                                               f"{', '.join(TRANSFER_SYNTAX_NAMES)}")
            kw[key] = value
    if "transfer_syntax" in kw and "prefer_transfer_syntax" in kw:
        raise _Invalid(where + ("prefer_transfer_syntax",),
                       "give transfer_syntax or prefer_transfer_syntax, not both")
    kw["description"] = _field(table, where, "description", (str,), "a string", "")
    if "tls" in table:
        tw = where + ("tls",)
        tls = _table(table["tls"], tw)
        _no_unknown(tls, tw, _TLS_FIELDS)
        files = {}
        for key in ("ca_file", "cert_file", "key_file"):
            value = _field(tls, tw, key, (str,), "a file path")
            files[key] = None if value is None else _check_path(value, key, tw)
        verify = _field(tls, tw, "verify", (bool,), "true or false", True)
        if files["key_file"] and not files["cert_file"]:
            raise _Invalid(tw + ("key_file",), "key_file needs cert_file")
        kw["tls"] = TLSOptions(verify=verify, **files)
    return NodeProfile(name=name, address=address, port=port, **kw)


def _query(name: str, table: dict, where: tuple[str, ...]) -> QueryProfile:
    _no_unknown(table, where, _QUERY_FIELDS)
    kw: dict[str, Any] = {}
    model = _field(table, where, "model", (str,), "a string")
    kw["model"] = QueryModel.PATIENT if model is None else _check_model(model, where)
    keys = _field(table, where, "keys", (list,), "an array of strings", [])
    for i, key in enumerate(keys):
        if not isinstance(key, str):
            raise _Invalid(where + ("keys",), f"keys[{i}] must be a string, not "
                                              f"{_type_name(key)} ({_short(key)})")
    try:
        build_identifier(keys)
    except KeyPathError as exc:
        raise _Invalid(where + ("keys",), str(exc), needle=exc.key) from None
    kw["keys"] = tuple(keys)
    level = _field(table, where, "level", (str,), "a string")
    if level is not None:
        levels = kw["model"].levels
        if not levels:
            raise _Invalid(where + ("level",), "the worklist model has no level; remove 'level'")
        if level not in levels:
            raise _Invalid(where + ("level",), f"level {level!r} is not one of "
                                               f"{', '.join(levels)} for model "
                                               f"{MODEL_NAMES[kw['model']]!r}")
        if split_level(keys)[1] is not None:
            raise _Invalid(where + ("level",), "both 'level' and a QueryRetrieveLevel key "
                                               "are given; keep one")
        kw["level"] = level
    flags = {}
    for key, attr in EXT_NEG_FIELDS.items():
        flags[attr] = _field(table, where, key, (bool,), "true or false", False)
    kw["ext_neg"] = ExtendedNegotiation(**flags)
    try:
        kw["ext_neg"].validate(kw["model"])
    except ExtendedNegotiationError:
        bad = [k for k, a in EXT_NEG_FIELDS.items() if flags[a]
               and a in ("relational", "dt_matching", "enhanced_conversion")]
        raise _Invalid(where + (bad[0],), f"{', '.join(bad)} cannot be used with the "
                                          "worklist model") from None
    fmt = _field(table, where, "output_format", (str,), "a string", "log")
    if fmt not in OUTPUT_FORMATS:
        raise _Invalid(where + ("output_format",), f"output_format {fmt!r} is not one of "
                                                   f"{', '.join(OUTPUT_FORMATS)}")
    kw["output_format"] = fmt
    for key in ("output", "output_directory"):
        value = _field(table, where, key, (str,), "a path")
        kw[key] = None if value is None else _check_path(value, key, where)
    for key in ("write", "overwrite"):
        kw[key] = _field(table, where, key, (bool,), "true or false", False)
    node = _field(table, where, "node", (str,), "a node profile name")
    kw["node"] = None if node is None else _check_name(node, where + ("node",))
    kw["description"] = _field(table, where, "description", (str,), "a string", "")
    return QueryProfile(name=name, **kw)


def _profiles(data: dict) -> Profiles:
    _no_unknown(data, (), _TOP_FIELDS)
    nodes: dict[str, NodeProfile] = {}
    queries: dict[str, QueryProfile] = {}
    for name, table in _table(data.get("nodes", {}), ("nodes",)).items():
        where = ("nodes", name)
        nodes[name] = _node(_check_name(name, where), _table(table, where), where)
    for name, table in _table(data.get("queries", {}), ("queries",)).items():
        where = ("queries", name)
        queries[name] = _query(_check_name(name, where), _table(table, where), where)
    defaults = _table(data.get("defaults", {}), ("defaults",))
    _no_unknown(defaults, ("defaults",), _DEFAULTS_FIELDS)
    chosen = {}
    for key, known in (("node", nodes), ("query", queries)):
        value = _field(defaults, ("defaults",), key, (str,), "a profile name")
        if value is not None and value not in known:
            raise _Invalid(("defaults", key), f"the default {key} {value!r} is not a "
                                              f"{key} profile in this file")
        chosen[key] = value
    return Profiles(nodes, queries, chosen["node"], chosen["query"])


def _validated(profile: Profile) -> Profile:
    where = (_SECTIONS[profile.kind], profile.name)
    try:
        _check_name(profile.name, where)
        make = _node if profile.kind == "node" else _query
        return make(profile.name, profile.to_toml(), where)
    except _Invalid as exc:
        raise ProfileError(f"[{_dotted(exc.where[:2])}]: {exc.problem}") from None


# --- locating a key path in the text, for the line of an error ----------------

_KEY_TOKEN = r'"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|[A-Za-z0-9_-]+'
_KEY_PATH = rf"(?:{_KEY_TOKEN})(?:\s*\.\s*(?:{_KEY_TOKEN}))*"
_HEADER_RE = re.compile(rf"^\s*\[\[?\s*({_KEY_PATH})\s*\]\]?")
_ASSIGN_RE = re.compile(rf"^\s*({_KEY_PATH})\s*=")


def _split_key_path(text: str) -> tuple[str, ...]:
    parts = []
    for m in re.finditer(_KEY_TOKEN, text):
        token = m.group(0)
        if token[0] in "\"'":
            try:
                token = tomllib.loads(f"k = {token}")["k"]
            except tomllib.TOMLDecodeError:
                token = token[1:-1]
        parts.append(token)
    return tuple(parts)


def _locate(text: str, where: tuple[str, ...], needle: str | None = None) -> int | None:
    """The 1-based line that defines ``where`` (or its nearest defined parent), or with
    ``needle``, the first line from there on that holds it (as a TOML string)."""
    line = _locate_key(text, where)
    if line is not None and needle is not None:
        forms = {json.dumps(needle, ensure_ascii=False), f"'{needle}'"}
        for lineno, content in enumerate(text.splitlines()[line - 1:], line):
            if any(form in content for form in forms):
                return lineno
    return line


def _locate_key(text: str, where: tuple[str, ...]) -> int | None:
    best: tuple[int, int] | None = None  # (depth, line)
    table: tuple[str, ...] = ()
    in_multiline = False
    for lineno, line in enumerate(text.splitlines(), 1):
        if in_multiline:
            if line.count('"""') % 2 or line.count("'''") % 2:
                in_multiline = False
            continue
        full = None
        if m := _HEADER_RE.match(line):
            table = _split_key_path(m.group(1))
            full = table
        elif m := _ASSIGN_RE.match(line):
            full = table + _split_key_path(m.group(1))
            rest = line[m.end():]
            if rest.count('"""') % 2 or rest.count("'''") % 2:
                in_multiline = True
        if full and where[:len(full)] == full and (best is None or len(full) > best[0]):
            best = (len(full), lineno)
    return best[1] if best else None


# --- parsing ------------------------------------------------------------------

_AT_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_AT_END_RE = re.compile(r"\s*\(at end of document\)\s*$")


def _decode_error(exc: tomllib.TOMLDecodeError, text: str, path) -> ProfileError:
    message = str(getattr(exc, "msg", "")) or str(exc)
    line = getattr(exc, "lineno", None)
    column = getattr(exc, "colno", None)
    if line is None:
        if m := _AT_RE.search(message):
            line, column = int(m.group(1)), int(m.group(2))
        elif _AT_END_RE.search(message):
            line = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
    message = _AT_END_RE.sub("", _AT_RE.sub("", message))
    return ProfileError(f"not valid TOML: {message}", path, line, column)


def parse_profiles(text: str, path: str | os.PathLike[str] | None = None) -> Profiles:
    """Parse and validate the text of a profiles file; any problem is a ProfileError."""
    try:
        data = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        raise _decode_error(exc, text, path) from None
    except ValueError:  # tomllib lets int() refuse integers of more than 4300 digits
        raise ProfileError("not valid TOML: an integer is too long", path) from None
    except RecursionError:
        raise ProfileError("not valid TOML: arrays or tables nested too deeply", path) from None
    try:
        return _profiles(data)
    except _Invalid as exc:
        raise ProfileError(exc.problem, path, _locate(text, exc.where, exc.needle)) from None


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ProfileError(f"cannot read: {exc.strerror or exc}", path) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ProfileError(f"not UTF-8 text (byte 0x{data[exc.start]:02X})", path, line) from None


def parse_profiles_file(path: str | os.PathLike[str]) -> Profiles:
    """Read and validate a profiles file (e.g. one to import); a missing file is an error."""
    path = Path(path)
    if not path.exists():
        raise ProfileError("no such file", path)
    return parse_profiles(_read_text(path), path)


# --- files: lock, atomic write ------------------------------------------------


@contextmanager
def file_lock(path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """An exclusive flock on ``path`` (a lock file that is never replaced)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if fcntl is not None:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ProfileError(f"another findtui has held the lock {path} for "
                                           f"{timeout:g} s; try again") from None
                    time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # releases the lock


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` all at once: temp file in the same folder, fsync, rename.

    A symlinked file is written through (the link stays). The file keeps its mode; a new
    one is private (0600).
    """
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        with suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(tmp, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    with suppress(OSError):  # make the rename itself durable
        dfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


# --- the store ----------------------------------------------------------------


def _toml_item(value: Any) -> Any:
    if isinstance(value, dict):
        t = tomlkit.table()
        for k, v in value.items():
            t[k] = _toml_item(v)
        return t
    if isinstance(value, list):
        arr = tomlkit.array()
        arr.extend(value)
        if len(value) > 1:
            arr.multiline(True)
        return arr
    return value


def _new_table(data: dict[str, Any]) -> Any:
    """A new profile table, followed by a blank line like a hand-written one."""
    table = _toml_item(data)
    last = table
    while len(last) and isinstance(last.value.body[-1][1], tomlkit.items.Table):
        last = last.value.body[-1][1]
    last.add(tomlkit.nl())
    return table


def _unwrap(value: Any) -> Any:
    return value.unwrap() if hasattr(value, "unwrap") else value


def _update_table(table: Any, data: dict[str, Any]) -> None:
    """Make ``table`` hold ``data``, touching only what changed (so comments stay)."""
    for key in [k for k in table if k not in data]:
        del table[key]
    for key, value in data.items():
        if isinstance(value, dict) and key in table and isinstance(_unwrap(table[key]), dict) \
                and hasattr(table[key], "items"):
            _update_table(table[key], value)
        elif key not in table or _unwrap(table[key]) != value \
                or type(_unwrap(table[key])) is not type(value):
            table[key] = _toml_item(value)


def _section(doc: Any, name: str) -> Any:
    if name not in doc:
        doc[name] = tomlkit.table(is_super_table=True)
    return doc[name]


class Store:
    """profiles.toml (and the history next to it in state_dir); see the module docstring."""

    def __init__(self, config_dir: str | os.PathLike[str] | None = None,
                 state_dir: str | os.PathLike[str] | None = None) -> None:
        # Without arguments: the standard locations; with config_dir only: both files there.
        self.config_dir = Path(config_dir) if config_dir is not None else _config_dir()
        if state_dir is not None:
            self.state_dir = Path(state_dir)
        else:
            self.state_dir = self.config_dir if config_dir is not None else _state_dir()
        self.path = self.config_dir / PROFILES_FILE
        self.lock_path = self.config_dir / (PROFILES_FILE + ".lock")

    @property
    def history(self) -> History:
        return History(self.state_dir / HISTORY_FILE)

    # reading

    def load(self) -> Profiles:
        return parse_profiles(_read_text(self.path), self.path)

    def nodes(self) -> dict[str, NodeProfile]:
        return self.load().nodes

    def queries(self) -> dict[str, QueryProfile]:
        return self.load().queries

    def names(self, kind: str) -> list[str]:
        return list(self.load().of(kind))

    def get(self, kind: str, name: str) -> Profile:
        return self.load().get(kind, name, self.path)

    def get_node(self, name: str) -> NodeProfile:
        return self.get("node", name)  # type: ignore[return-value]

    def get_query(self, name: str) -> QueryProfile:
        return self.get("query", name)  # type: ignore[return-value]

    def default(self, kind: str) -> str | None:
        return self.load().default(kind)


    # writing

    def _modify(self, plan: Callable[[Profiles], tuple[Profiles, Edit]]) -> Profiles:
        """Re-read under the lock, apply one change, check it, write atomically.

        ``plan(current)`` returns the profiles wanted afterwards and the edit of the
        tomlkit document that makes them, called with ``in_place=True`` (keep the
        profile's own comments) and, if the result is not exactly what is wanted (tomlkit
        and an unusual layout, e.g. inline tables), with ``in_place=False`` (write the
        profile's table afresh). Nothing is written unless the result is right.
        """
        with file_lock(self.lock_path):
            text = _read_text(self.path)
            current = parse_profiles(text, self.path)  # a bad file is never written over
            want, edit = plan(current)
            if want == current:
                return current
            new_text = None
            for in_place in (True, False):
                try:
                    doc = tomlkit.parse(text if text.strip() else NEW_FILE_HEADER)
                    edit(doc, in_place)
                    candidate = tomlkit.dumps(doc)
                    if parse_profiles(candidate, self.path) == want:
                        new_text = candidate
                        break
                except Exception:  # noqa: BLE001 - tomlkit refusing this layout: next way
                    continue
            if new_text is None:
                raise ProfileError("findtui cannot make this change in this file's layout "
                                   "without changing other entries; write each profile as a "
                                   "[nodes.NAME] or [queries.NAME] table", self.path)
            try:
                atomic_write_text(self.path, new_text)
            except OSError as exc:
                raise ProfileError(f"cannot save: {exc.strerror or exc}", self.path) from None
            return want

    def save(self, profile: Profile, replace: bool = True) -> Profile:
        """Add or update a profile; with replace=False an existing name is an error."""
        profile = _validated(profile)
        kind, name = profile.kind, profile.name

        def plan(current: Profiles) -> tuple[Profiles, Edit]:
            exists = name in current.of(kind)
            if exists and not replace:
                raise ProfileExistsError(f"a {kind} profile {name!r} already exists", self.path)

            def edit(doc, in_place: bool) -> None:
                _put_table(doc, kind, name, profile.to_toml(), in_place and exists)

            return _changed(current, kind, {**current.of(kind), name: profile}), edit

        self._modify(plan)
        return profile

    def save_node(self, node: NodeProfile, replace: bool = True) -> NodeProfile:
        return self.save(node, replace)  # type: ignore[return-value]

    def save_query(self, query: QueryProfile, replace: bool = True) -> QueryProfile:
        return self.save(query, replace)  # type: ignore[return-value]

    def remove(self, kind: str, name: str) -> None:
        """Delete a profile (and the default pointing at it)."""
        section = _SECTIONS[_kind(kind)]

        def plan(current: Profiles) -> tuple[Profiles, Edit]:
            current.get(kind, name, self.path)  # raises if there is none
            is_default = current.default(kind) == name

            def edit(doc, in_place: bool) -> None:
                del doc[section][name]
                if is_default:
                    _drop_default(doc, kind)

            rest = {k: v for k, v in current.of(kind).items() if k != name}
            return _changed(current, kind, rest, None if is_default else ...), edit

        self._modify(plan)

    def rename(self, kind: str, old: str, new: str) -> None:
        """Rename a profile, keeping its comments; defaults and queries' nodes follow."""
        section = _SECTIONS[_kind(kind)]
        _validate_new_name(new)

        def plan(current: Profiles) -> tuple[Profiles, Edit]:
            known = current.of(kind)
            current.get(kind, old, self.path)  # raises if there is none
            if new == old:
                return current, lambda doc, in_place: None
            if new in known:
                raise ProfileExistsError(f"a {kind} profile {new!r} already exists", self.path)
            renamed = dataclasses.replace(known[old], name=new)
            follow = [q for q in current.queries.values() if kind == "node" and q.node == old]

            def edit(doc, in_place: bool) -> None:
                table = doc[section][old]
                del doc[section][old]
                if in_place:
                    doc[section][new] = table
                else:
                    _put_table(doc, kind, new, renamed.to_toml(), False)
                if current.default(kind) == old:
                    doc["defaults"][kind] = new
                for query in follow:
                    doc["queries"][query.name]["node"] = new

            profiles = {(new if k == old else k): (renamed if k == old else v)
                        for k, v in known.items()}
            want = _changed(current, kind, profiles,
                            new if current.default(kind) == old else ...)
            if follow:
                want = dataclasses.replace(want, queries={
                    **want.queries,
                    **{q.name: dataclasses.replace(q, node=new) for q in follow}})
            return want, edit

        self._modify(plan)

    def duplicate(self, kind: str, name: str, new: str) -> Profile:
        copy = dataclasses.replace(self.get(kind, name), name=new)
        return self.save(copy, replace=False)

    def set_default(self, kind: str, name: str | None) -> None:
        """Make ``name`` the default node or query profile (None: no default)."""
        _kind(kind)

        def plan(current: Profiles) -> tuple[Profiles, Edit]:
            if name is not None:
                current.get(kind, name, self.path)  # raises if there is none

            def edit(doc, in_place: bool) -> None:
                if name is None:
                    _drop_default(doc, kind)
                else:
                    _set_default(doc, kind, name)

            return _changed(current, kind, current.of(kind), name), edit

        self._modify(plan)

    # export / import

    def export_text(self) -> str:
        """The whole profiles file as it is (comments included), checked first."""
        text = _read_text(self.path)
        parse_profiles(text, self.path)
        return text if text.strip() else NEW_FILE_HEADER

    def import_file(self, path: str | os.PathLike[str], replace: bool = False) -> list[tuple[str, str]]:
        """Add the profiles of another profiles file; names already here are an error
        unless ``replace``. Defaults are taken only where this store has none."""
        incoming = parse_profiles_file(path)
        imported = [(kind, name) for kind in KINDS for name in incoming.of(kind)]

        def plan(current: Profiles) -> tuple[Profiles, Edit]:
            clashes = [f"{kind} {name!r}" for kind, name in imported
                       if name in current.of(kind)]
            if clashes and not replace:
                raise ProfileExistsError(f"already exist: {', '.join(clashes)} (use --replace "
                                         "to overwrite them)", self.path)
            want = current
            defaults = {}
            for kind in KINDS:
                if incoming.default(kind) and not current.default(kind):
                    defaults[kind] = incoming.default(kind)
                want = _changed(want, kind, {**current.of(kind), **incoming.of(kind)},
                                defaults.get(kind, ...))

            def edit(doc, in_place: bool) -> None:
                for kind, name in imported:
                    _put_table(doc, kind, name, incoming.of(kind)[name].to_toml(),
                               in_place and name in current.of(kind))
                for kind, name in defaults.items():
                    _set_default(doc, kind, name)

            return want, edit

        self._modify(plan)
        return imported


Edit = Callable[[Any, bool], None]


def _changed(profiles: Profiles, kind: str, table: dict, default: Any = ...) -> Profiles:
    """``profiles`` with the ``kind`` profiles replaced (and its default, unless ...)."""
    field_name = "nodes" if kind == "node" else "queries"
    changes: dict[str, Any] = {field_name: table}
    if default is not ...:
        changes[f"default_{kind}"] = default
    return dataclasses.replace(profiles, **changes)


def _put_table(doc: Any, kind: str, name: str, data: dict[str, Any], in_place: bool) -> None:
    """Write a profile's table: edited in place (comments stay), or afresh."""
    tables = _section(doc, _SECTIONS[kind])
    if in_place:
        _update_table(tables[name], data)
        return
    if name in tables:
        del tables[name]
    tables[name] = _new_table(data)


def _set_default(doc: Any, kind: str, name: str) -> None:
    if "defaults" not in doc:
        doc["defaults"] = tomlkit.table()
    doc["defaults"][kind] = name


def _drop_default(doc: Any, kind: str) -> None:
    if "defaults" in doc and kind in doc["defaults"]:
        del doc["defaults"][kind]
        if not doc["defaults"]:
            del doc["defaults"]


def _validate_new_name(name: str) -> None:
    try:
        _check_name(name, ())
    except _Invalid as exc:
        raise ProfileError(exc.problem) from None


# --- history ------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryEntry:
    """One run: when, against what, which keys, how many results, how it ended."""

    time: str  # ISO 8601, local time with its UTC offset
    address: str
    port: int
    called_aet: str
    calling_aet: str
    model: QueryModel
    keys: tuple[str, ...]
    results: int
    outcome: str  # success|warning|cancel|failure|network|aborted
    status: str  # 'Success', 'Failure: Unable to Process', or what went wrong
    status_code: int | None = None
    node: str | None = None  # the node profile used, if any
    query: str | None = None  # the query profile used, if any
    ext_neg: tuple[str, ...] = ()  # ExtendedNegotiation attribute names that were asked
    source: str = "cli"  # cli|tui

    @classmethod
    def from_run(cls, request: FindRequest, *, results: int, last_event: Any = None,
                 node: str | None = None, query: str | None = None, source: str = "cli",
                 keys: Sequence[str] | None = None,
                 when: _dt.datetime | None = None) -> HistoryEntry:
        """``last_event``: the run's Final, AssociationFailed or Fault; None if it was aborted.
        ``keys``: the keys as the user gave them (their order is the column order); by
        default, the request identifier's keys."""
        code = None
        if isinstance(last_event, Final):
            outcome, status, code = last_event.category, last_event.name, last_event.status
        elif isinstance(last_event, AssociationFailed | Fault):
            outcome, status = "network", last_event.message
            if isinstance(last_event, Fault) and last_event.kind == "cancel-timeout":
                outcome = "cancel"
        else:
            outcome, status = "aborted", "Aborted"
        net = request.network
        when = when or _dt.datetime.now().astimezone()
        return cls(time=when.isoformat(timespec="seconds"), address=net.address, port=net.port,
                   called_aet=net.called_aet, calling_aet=net.calling_aet, model=request.model,
                   keys=tuple(dataset_to_keys(request.identifier) if keys is None else keys),
                   results=results,
                   outcome=outcome, status=status, status_code=code, node=node, query=query,
                   ext_neg=tuple(a for a, _, _ in ExtendedNegotiation.NAMES
                                 if getattr(request.ext_neg, a)),
                   source=source)

    def find_request(self, node: NodeProfile | None = None) -> FindRequest:
        """The request to run this entry again (through ``node``'s settings when given)."""
        if node is not None:
            network, syntaxes = node.network(), node.transfer_syntaxes()
        else:
            network = Network(self.address, self.port, calling_aet=self.calling_aet,
                              called_aet=self.called_aet)
            syntaxes = transfer_syntaxes()
        return FindRequest(network=network, identifier=build_identifier(list(self.keys)),
                           model=self.model,
                           ext_neg=ExtendedNegotiation(**{a: True for a in self.ext_neg}),
                           transfer_syntaxes=syntaxes)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = MODEL_NAMES[self.model]
        d["keys"] = list(self.keys)
        d["ext_neg"] = list(self.ext_neg)
        return d

    @classmethod
    def from_json(cls, data: Any) -> HistoryEntry:
        """Raises ValueError for anything that is not an entry."""
        if not isinstance(data, dict):
            raise ValueError("not an object")
        names = {f.name for f in dataclasses.fields(cls)}
        if set(data) - names:
            raise ValueError(f"unknown fields {sorted(set(data) - names)}")
        try:
            model = next(m for m, n in MODEL_NAMES.items() if n == data["model"])
            keys = tuple(data["keys"])
            ext = tuple(data.get("ext_neg", ()))
            entry = cls(**{**data, "model": model, "keys": keys, "ext_neg": ext})
        except (KeyError, TypeError, StopIteration) as exc:
            raise ValueError(f"bad history entry: {exc}") from None
        checks = [(entry.time, str), (entry.address, str), (entry.port, int),
                  (entry.called_aet, str), (entry.calling_aet, str), (entry.results, int),
                  (entry.outcome, str), (entry.status, str), (entry.source, str),
                  (entry.status_code, (int, type(None))), (entry.node, (str, type(None))),
                  (entry.query, (str, type(None)))]
        if not all(isinstance(v, t) and not isinstance(v, bool) for v, t in checks) \
                or not all(isinstance(k, str) for k in keys) \
                or not all(a in EXT_NEG_FIELDS.values() for a in ext):
            raise ValueError("bad history entry: wrong types")
        return entry


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
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
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
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
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
