"""profiles.toml: read, and change one profile at a time under a lock, keeping comments.

Every call reads the file afresh, so two processes (a TUI and a CLI) see each other's
saves. Saves run under an exclusive lock on ``<file>.lock``, re-read the file inside
the lock and apply only the one change, so concurrent saves lose nothing. A file that
does not parse or validate is never written, and neither is a result that is not
exactly the profiles wanted (tomlkit on an unusual layout). Writes are atomic.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tomlkit

from findtui.config.history import History
from findtui.config.paths import HISTORY_FILE, PROFILES_FILE
from findtui.config.paths import config_dir as _config_dir
from findtui.config.paths import state_dir as _state_dir
from findtui.config.schema import (
    KINDS,
    NEW_FILE_HEADER,
    NodeProfile,
    Profile,
    ProfileError,
    ProfileExistsError,
    Profiles,
    QueryProfile,
    _check_name,
    _Invalid,
    _kind,
    _read_text,
    _SECTIONS,
    _toml_item,
    _validated,
    parse_profiles,
    parse_profiles_file,
)
from findtui.engine.files import LockTimeout, atomic_write_text, file_lock

# --- the store ----------------------------------------------------------------


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
        with _locked(self.lock_path):
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
        """Add or update a profile; with replace=False an existing name is an error.

        A node's relative TLS paths are taken relative to the profiles file's folder, and
        saved so (absolute), as they are read."""
        profile = _validated(profile)
        if isinstance(profile, NodeProfile):
            profile = dataclasses.replace(
                profile, network=profile.network.with_absolute_paths(self.config_dir.absolute()))
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


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        with file_lock(path):
            yield
    except LockTimeout as exc:
        raise ProfileError(f"{exc.strerror} ({exc.filename})") from None


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


