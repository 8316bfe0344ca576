"""The TUI and a capped PACS (the demo SCP's caps, 80x24): an incomplete answer shows as such
in the status line with a banner offering to split; F9 (or the palette) re-runs the query
split by date on one association and gets every match, each once."""

from __future__ import annotations

import asyncio

import pytest

from findtui.app import make_app
from findtui.engine.hierarchy import request_level
from findtui.engine.query import Network, Pending, run_find
from findtui.widgets.results_table import ResultsTable
from findtui.widgets.status_line import StatusLine

from pilot import run_and_wait, sync, wait_for  # noqa: E402

SIZE = (80, 24)
CAP = 9


def uncapped_uids(request, demo) -> list[str]:
    """The same query against the same data, uncapped (a demo SCP of our own)."""
    from findtui.demo import DemoSCP
    import dataclasses

    with DemoSCP(patients=40, seed=3) as full:
        net = Network(full.address, full.port, called_aet=full.ae_title)
        events = run_find(dataclasses.replace(request, network=net))
        return [str(e.identifier.StudyInstanceUID) for e in events if isinstance(e, Pending)]


@pytest.mark.parametrize("style", ["cancel", "failure"])
@sync
async def test_incomplete_banner_and_f9_split(style):
    app = make_app(demo=True, demo_options={"patients": 40, "seed": 3, "cap": CAP,
                                             "cap_style": style}, no_history=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.query_screen
        banner = screen.query_one("#incomplete-banner")
        assert not banner.display
        await run_and_wait(pilot, "f5")
        status = screen.query_one(StatusLine)
        assert status.state == "incomplete"
        assert "Incomplete" in str(status.render())
        assert banner.display and "F9" in str(banner.render())
        assert screen.check_action("split", ()) is True
        assert any(name == "Re-run split by date" for name, _, _ in screen.palette_commands())
        request = screen._level.request
        assert request_level(request.identifier) == "STUDY"
        before = app.demo.associations
        await run_and_wait(pilot, "f9")
        assert status.state == "success", str(status.render())
        assert not banner.display and screen.check_action("split", ()) is False
        assert app.demo.associations == before + 1  # every sub-query on one association
        expected = await asyncio.to_thread(uncapped_uids, request, app.demo)
        table = screen.query_one(ResultsTable)
        i = list(table.columns).index("StudyInstanceUID")
        shown = [table.get_row(n)[i] for n in range(table.total_count)]
        assert sorted(shown) == sorted(expected) and len(expected) > CAP
        log = "\n".join(str(line) for line in screen.query_one("#log").lines)
        assert "Sub-query 2:" in log


@sync
async def test_a_complete_answer_offers_no_split():
    app = make_app(demo=True, demo_options={"patients": 3, "seed": 3, "cap": 50},
                   no_history=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.query_screen
        await run_and_wait(pilot, "f5")
        assert screen.query_one(StatusLine).state == "success"
        assert not screen.query_one("#incomplete-banner").display
        assert screen.check_action("split", ()) is False
        assert not any(name == "Re-run split by date" for name, _, _ in
                       screen.palette_commands())


@sync
async def test_a_split_run_is_recorded_and_f8_runs_it_split_again():
    from findtui.config.store import Store

    app = make_app(demo=True, demo_options={"patients": 40, "seed": 3, "cap": CAP})
    async with app.run_test(size=SIZE) as pilot:
        screen = app.query_screen
        await run_and_wait(pilot, "f5")
        await run_and_wait(pilot, "f9")
        total = screen.query_one(ResultsTable).total_count
        history = Store().history
        await wait_for(pilot, lambda: len(history.entries()) == 2, what="two history entries")
        plain, split = history.entries()
        assert plain.split is None and plain.outcome == "incomplete"
        assert split.split == "auto" and split.results == total > CAP
        before = app.demo.associations
        await pilot.press("f8")
        await pilot.pause()
        await pilot.press("r")  # the last entry: the split run
        await wait_for(pilot, lambda: len(history.entries()) == 3, what="the re-run")
        assert history.entries()[2].split == "auto"
        assert screen.query_one(StatusLine).state == "success"
        assert screen.query_one(ResultsTable).total_count == total
        assert app.demo.associations == before + 1
