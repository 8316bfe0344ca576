"""The CLI's exit codes (README, "Exit codes"): scripts depend on them."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0  # success, also with no matches, or a warning status
    BAD_INPUT = 1  # bad key, unreadable query file, bad profile
    USAGE = 2  # bad options (argparse)
    NETWORK = 3  # association rejected/aborted, unreachable, timed out, broken mid-query
    FAILURE_STATUS = 4  # the SCP answered with a failure status
    CANCELLED = 5  # cancelled (--cancel, Ctrl-C)
    OUTPUT = 6  # results could not be written (folder, disk full, file exists)
    INCOMPLETE = 7  # the SCP stopped at a result limit: more matches exist (try --split auto)
    RETRIEVE_PARTIAL = 8  # --retrieve: some instances failed or did not arrive
    INTERNAL = 70  # findtui itself failed (a bug; the TUI shows the traceback)
