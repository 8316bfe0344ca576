"""Ctrl-C in a batch run: the first one cancels (C-CANCEL), a second one aborts."""

from __future__ import annotations

import logging

LOG = logging.getLogger("findtui")


def cancel_on_sigint(cancel, before=lambda: None):
    """A SIGINT handler: the first Ctrl-C says so and calls ``cancel`` (C-CANCEL), a
    second one aborts (KeyboardInterrupt)."""
    interrupts = 0

    def on_sigint(signum, frame):
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            raise KeyboardInterrupt
        before()
        LOG.warning("Interrupted: sending C-CANCEL (Ctrl-C again to abort)")
        cancel()

    return on_sigint
