"""The profiles file's schema: node and query profiles, validated with msgspec.

A node profile holds the engine's connection model (engine.network.Network) plus a
name, a default model, a description and its retrieve defaults
(engine.retrieve.RetrieveOptions); its TOML table is the Network's fields (flat, TLS
as a subtable) plus ``model``, ``description`` and the retrieve fields (flat). Every problem is a
``ProfileError`` naming the file and line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import tomlkit
from msgspec import Meta, Struct

from findtui.engine.files import read_capped
from findtui.engine.keys import KeyPathError, build_identifier, dataset_to_keys, parse_key
from findtui.engine.models import ExtendedNegotiation, ExtendedNegotiationError, QueryModel
from findtui.engine.network import FIELDS as NETWORK_FIELDS
from findtui.engine.network import Network, NetworkError, network_from, validation_error
from findtui.engine.query import FindRequest
from findtui.engine.retrieve import RETRIEVE_FIELDS, RetrieveOptions, retrieve_options_from

KINDS = ("node", "query")
NAME_MAX = 64

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
    """A peer: the connection (engine.network.Network), a default model, a description,
    how to retrieve from it by default (engine.retrieve.RetrieveOptions)."""

    @classmethod
    def of(cls, name: str, address: str, port: int, *, model: QueryModel | None = None,
           description: str = "", retrieve: RetrieveOptions | None = None,
           **network: Any) -> NodeProfile:
        """A node profile from the connection's fields given flat (as in the file)."""
        return cls(name=name, network=Network(address, port, **network), model=model,
                   description=description, retrieve=retrieve or RetrieveOptions())

    name: str
    network: Network
    model: QueryModel | None = None  # the model to use with this node when none is given
    description: str = ""
    hide_phi: bool = False  # the TUI masks patient data on screen when this node is used
    retrieve: RetrieveOptions = field(default_factory=RetrieveOptions)

    kind = "node"

    @classmethod
    def from_network(cls, name: str, network: Network, **fields: Any) -> NodeProfile:
        return cls(name=name, network=network, **fields)

    def to_toml(self) -> dict[str, Any]:
        net = self.network.to_dict()
        tls = net.pop("tls", None)
        d: dict[str, Any] = {k: _number(v) for k, v in net.items()}
        if self.model is not None:
            d["model"] = MODEL_NAMES[self.model]
        if self.description:
            d["description"] = self.description
        if self.hide_phi:
            d["hide_phi"] = True
        d.update(self.retrieve.to_dict())
        if tls is not None:
            d["tls"] = tls  # last: a subtable ends the node's own keys
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
    csv_excel_safe: bool = False  # --csv-excel-safe (CSV only)
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
        if self.csv_excel_safe:
            d["csv_excel_safe"] = True
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
    history: bool = True  # [defaults] history = false: runs are not recorded

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
    return FindRequest(network=node.network, identifier=query.identifier(extra_keys),
                       model=query.model, ext_neg=query.ext_neg)


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be 'node' or 'query', not {kind!r}")
    return kind


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
# Types, ranges and unknown fields: msgspec, from the Structs below and engine.network's
# Network; what msgspec says is put in a user's words by network.validation_error, and
# the key path it names is turned into a line of the file.

ModelName = Literal["patient", "study", "psonly", "worklist", "P", "S", "O", "W"]
_PATH = Annotated[str, Meta(min_length=1, pattern=r"^[^\x00]*$")]
_NAME = Annotated[str, Meta(min_length=1, max_length=NAME_MAX)]
_NODE_EXTRA = ("model", "description", "hide_phi")


class _NodeExtra(Struct, forbid_unknown_fields=True):
    model: ModelName | None = None
    description: str = ""
    hide_phi: bool = False


class _QueryTable(Struct, forbid_unknown_fields=True):
    model: ModelName = "patient"
    level: str | None = None
    keys: list[str] = []
    node: _NAME | None = None
    relational_query: bool = False
    dt_matching: bool = False
    fuzzy_names: bool = False
    timezone_adj: bool = False
    enhanced_conversion: bool = False
    output_format: Literal["log", "csv", "json", "jsonl"] = "log"
    output: _PATH | None = None
    write: bool = False
    output_directory: _PATH | None = None
    overwrite: bool = False
    csv_excel_safe: bool = False
    description: str = ""


NODE_FIELDS: tuple[str, ...] = (*NETWORK_FIELDS, *_NODE_EXTRA, *RETRIEVE_FIELDS)
QUERY_FIELDS: tuple[str, ...] = _QueryTable.__struct_fields__


class _Defaults(Struct, forbid_unknown_fields=True):
    node: str | None = None
    query: str | None = None
    history: bool = True  # false: record no runs (history.jsonl holds patient data)


_TAKES = {
    "model": f"one of {', '.join(MODEL_NAMES.values())} (or P, S, O, W)",
    "keys": "an array of strings", "level": "a string", "node": "a node profile name",
    "description": "a string", "output_format": f"one of {', '.join(OUTPUT_FORMATS)}",
    "output": "a non-empty path", "output_directory": "a non-empty path",
    **{k: "true or false" for k in ("write", "overwrite", "csv_excel_safe", "history", "hide_phi",
                                     *EXT_NEG_FIELDS)},
}


def _convert(data: Any, struct: type, where: tuple[str, ...]) -> Any:
    """msgspec.convert, with its complaint as an _Invalid at the key path it names."""
    try:
        return msgspec.convert(data, struct)
    except msgspec.ValidationError as exc:
        err = validation_error(exc, data)
        key = err.setting.split(".")[-1] if err.setting else ""
        problem = str(err)
        if key in _TAKES and "must be" in problem:
            value = data.get(key) if isinstance(data, dict) else None
            problem = f"{key} must be {_TAKES[key]}, not {_short(value)}"
        raise _Invalid(where + tuple(p for p in err.setting.split(".") if p), problem) from None


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


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


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


def _model(value: str) -> QueryModel:
    return next(m for m, n in MODEL_NAMES.items() if value in (n, m.value))


def _node(name: str, table: dict, where: tuple[str, ...]) -> NodeProfile:
    _no_unknown(table, where, NODE_FIELDS)
    for key in ("address", "port"):
        if key not in table:
            raise _Invalid(where, f"[{_dotted(where)}] needs {key!r}")
    if isinstance(table.get("tls"), dict):
        _no_unknown(table["tls"], where + ("tls",), ("ca_file", "cert_file", "key_file", "verify"))
    extra = _convert({k: table[k] for k in _NODE_EXTRA if k in table}, _NodeExtra, where)
    try:
        network = network_from({k: table[k] for k in NETWORK_FIELDS if k in table})
        retrieve = retrieve_options_from({k: table[k] for k in RETRIEVE_FIELDS if k in table})
    except NetworkError as exc:
        raise _Invalid(where + tuple(exc.setting.split(".")), str(exc)) from None
    return NodeProfile(name=name, network=network,
                       model=None if extra.model is None else _model(extra.model),
                       description=extra.description, hide_phi=extra.hide_phi,
                       retrieve=retrieve)


def _query(name: str, table: dict, where: tuple[str, ...]) -> QueryProfile:
    _no_unknown(table, where, QUERY_FIELDS)
    t = _convert(table, _QueryTable, where)
    model = _model(t.model)
    try:
        build_identifier(t.keys)
    except KeyPathError as exc:
        raise _Invalid(where + ("keys",), str(exc), needle=exc.key) from None
    if t.level is not None:
        if not model.levels:
            raise _Invalid(where + ("level",), "the worklist model has no level; remove 'level'")
        if t.level not in model.levels:
            raise _Invalid(where + ("level",), f"level {t.level!r} is not one of "
                                               f"{', '.join(model.levels)} for model "
                                               f"{MODEL_NAMES[model]!r}")
        if split_level(t.keys)[1] is not None:
            raise _Invalid(where + ("level",), "both 'level' and a QueryRetrieveLevel key "
                                               "are given; keep one")
    ext_neg = ExtendedNegotiation(**{attr: getattr(t, key) for key, attr in EXT_NEG_FIELDS.items()})
    try:
        ext_neg.validate(model)
    except ExtendedNegotiationError:
        bad = [k for k, a in EXT_NEG_FIELDS.items() if getattr(ext_neg, a)
               and a in ("relational", "dt_matching", "enhanced_conversion")]
        raise _Invalid(where + (bad[0],), f"{', '.join(bad)} cannot be used with the "
                                          "worklist model") from None
    if t.node is not None:
        _check_name(t.node, where + ("node",))
    if t.csv_excel_safe and t.output_format != "csv":
        raise _Invalid(where + ("csv_excel_safe",), "csv_excel_safe applies to CSV: set "
                                                    'output_format = "csv"')
    return QueryProfile(name=name, model=model, level=t.level, keys=tuple(t.keys), ext_neg=ext_neg,
                        output_format=t.output_format, output=t.output, write=t.write,
                        output_directory=t.output_directory, overwrite=t.overwrite,
                        csv_excel_safe=t.csv_excel_safe, node=t.node, description=t.description)


def _profiles(data: dict) -> Profiles:
    _no_unknown(data, (), ("defaults", "nodes", "queries"))
    nodes: dict[str, NodeProfile] = {}
    queries: dict[str, QueryProfile] = {}
    for name, table in _table(data.get("nodes", {}), ("nodes",)).items():
        where = ("nodes", name)
        nodes[name] = _node(_check_name(name, where), _table(table, where), where)
    for name, table in _table(data.get("queries", {}), ("queries",)).items():
        where = ("queries", name)
        queries[name] = _query(_check_name(name, where), _table(table, where), where)
    defaults_table = _table(data.get("defaults", {}), ("defaults",))
    _no_unknown(defaults_table, ("defaults",), _Defaults.__struct_fields__)
    defaults = _convert(defaults_table, _Defaults, ("defaults",))
    for key, known in (("node", nodes), ("query", queries)):
        value = getattr(defaults, key)
        if value is not None and value not in known:
            raise _Invalid(("defaults", key), f"the default {key} {value!r} is not a "
                                              f"{key} profile in this file")
    return Profiles(nodes, queries, defaults.node, defaults.query, defaults.history)


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


PROFILES_MAX_BYTES = 1 << 20  # a profiles file is a few KB; tomllib is slow on odd input
MAX_KEY_PARTS = 16  # tomllib is quadratic in the parts of a dotted key (40 KB took 24 s)
_DOTS = re.compile(r"""^\s*\[*\s*((?:[^=\[\]"'#]|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')*)""")


def _too_deep(text: str) -> int | None:
    """The first line whose key (or table header) has more than MAX_KEY_PARTS parts."""
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.count(".") < MAX_KEY_PARTS:
            continue
        m = _DOTS.match(line)
        key = re.sub(r'"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'', "q", m.group(1)) if m else ""
        if key.count(".") >= MAX_KEY_PARTS:
            return lineno
    return None


def parse_profiles(text: str, path: str | os.PathLike[str] | None = None) -> Profiles:
    """Parse and validate the text of a profiles file; any problem is a ProfileError.

    Relative TLS file paths are taken relative to the file's folder (never to the
    working directory at run time, where anyone may have planted a CA)."""
    deep = _too_deep(text)
    if deep is not None:
        raise ProfileError(f"not valid here: a key of more than {MAX_KEY_PARTS} dotted parts",
                           path, deep)
    try:
        data = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as exc:
        raise _decode_error(exc, text, path) from None
    except ValueError:  # tomllib lets int() refuse integers of more than 4300 digits
        raise ProfileError("not valid TOML: an integer is too long", path) from None
    except RecursionError:
        raise ProfileError("not valid TOML: arrays or tables nested too deeply", path) from None
    try:
        profiles = _profiles(data)
    except _Invalid as exc:
        raise ProfileError(exc.problem, path, _locate(text, exc.where, exc.needle)) from None
    if path is None:
        return profiles
    base = Path(path).expanduser().absolute().parent
    return dataclasses.replace(profiles, nodes={
        name: dataclasses.replace(node, network=node.network.with_absolute_paths(base))
        for name, node in profiles.nodes.items()})


def _read_text(path: Path) -> str:
    try:
        data = read_capped(path, PROFILES_MAX_BYTES)
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


