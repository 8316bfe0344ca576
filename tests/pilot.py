"""Helpers for Textual Pilot tests (no async pytest plugin needed)."""

from __future__ import annotations

import asyncio
import functools
import time


def sync(test):
    """Run an async test body in its own event loop."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return run


async def wait_for(pilot, predicate, timeout: float = 30.0, what: str = "condition") -> None:
    """Pause the pilot until ``predicate()`` holds; fail (naming ``what``) if it never does."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)
