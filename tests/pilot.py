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


async def run_and_wait(pilot, key: str = "f5"):
    """Press ``key`` (F5: run) and wait until that query has finished; returns the screen."""
    screen = pilot.app.query_screen
    before = screen._run_id
    await pilot.press(key)
    await wait_for(pilot, lambda: screen._run_id > before and not screen.running,
                   what="the query to finish")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    return screen
