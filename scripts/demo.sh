#!/usr/bin/env bash
# Run the demo: the TUI against the embedded demo SCP. Makes .venv on first use.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/findtui ]; then
    python3 -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check -e .
fi
exec .venv/bin/findtui --demo "$@"
