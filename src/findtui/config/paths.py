"""Where profiles.toml and history.jsonl live: one function each (tests patch the env var)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

ENV_VAR = "FINDTUI_CONFIG_DIR"
PROFILES_FILE = "profiles.toml"
HISTORY_FILE = "history.jsonl"


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


