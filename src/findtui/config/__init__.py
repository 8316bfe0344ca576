"""Profiles and history, shared by the CLI and the TUI. Headless (no textual, no rich).

paths.py    where the files live (FINDTUI_CONFIG_DIR overrides both)
schema.py   node and query profiles: the model (a node holds engine.network.Network),
            validated with msgspec, errors with file and line
store.py    profiles.toml: read; change one profile at a time under a lock, comments kept
history.py  history.jsonl: every run with every setting, to audit and re-run
"""

from findtui.config.history import HISTORY_LIMIT, History, HistoryEntry
from findtui.config.paths import config_dir, state_dir
from findtui.config.schema import (
    EXT_NEG_FIELDS,
    MODEL_NAMES,
    NODE_FIELDS,
    QUERY_FIELDS,
    NodeProfile,
    ProfileError,
    ProfileExistsError,
    ProfileNotFoundError,
    Profiles,
    QueryProfile,
    find_request,
    parse_profiles,
    parse_profiles_file,
    profile_toml,
    split_level,
)
from findtui.config.store import Store

__all__ = [
    "EXT_NEG_FIELDS", "HISTORY_LIMIT", "History", "HistoryEntry", "MODEL_NAMES", "NODE_FIELDS", "NodeProfile",
    "ProfileError", "ProfileExistsError", "ProfileNotFoundError", "Profiles", "QUERY_FIELDS", "QueryProfile",
    "Store", "config_dir", "find_request", "parse_profiles", "parse_profiles_file", "profile_toml", "split_level",
    "state_dir",
]
