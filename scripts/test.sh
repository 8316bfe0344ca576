#!/usr/bin/env bash
# Run the tests: installs what they need (Debian dcmtk, orthanc, tmux; .venv with
# the [test] extra), then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash .ci/install
exec .venv/bin/python -m pytest "$@"
