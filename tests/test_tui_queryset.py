"""The query set screen (F10, 80x24): the form's query on several nodes at once and for a
pasted list of values, results merged with a Node and a Query column, a status per node;
Dedupe merges a match held by several nodes. Expectations come from each node answering
the queries one at a time (engine.query.run_find)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys

import pytest

from findtui.app import make_app
from findtui.demo import DemoSCP
from findtui.engine.keys import build_identifier
from findtui.engine.query import Network, Pending, run_find
from findtui.screens.queryset import FORM_NODE, QuerySetScreen
from findtui.widgets.results_table import ResultsTable

from pilot import sync, wait_for  # noqa: E402

SIZE = (80, 24)
PATIENTS = ["PAT00001", "PAT00003", "PAT00007"]


def add_node(name: str, scp) -> None:
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    r = subprocess.run([sys.executable, "-m", "findtui", "profiles", "add", name, scp.address,
                        str(scp.port), "-aec", scp.ae_title], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 0, r.stderr


def direct(scp, request, pid: str) -> list[str]:
    ident = build_identifier(["QueryRetrieveLevel=STUDY", "StudyInstanceUID=",
                              f"PatientID={pid}"])
    net = Network(scp.address, scp.port, called_aet=scp.ae_title)
    events = run_find(dataclasses.replace(request, network=net, identifier=ident))
    return sorted(str(e.identifier.StudyInstanceUID) for e in events if isinstance(e, Pending))


async def fill(pilot, screen, key: str, values: list[str], pick: list[str],
               dedupe: bool = False) -> None:
    nodes = screen.query_one("#qs-nodes")
    for value in pick:
        nodes.select(value)
    screen.query_one("#qs-key").value = key
    screen.query_one("#qs-values").text = "\n".join(values) + "\n"
    screen.query_one("#qs-dedupe").value = dedupe
    await pilot.pause()


@sync
async def test_several_nodes_and_a_pasted_list(tmp_path):
    with DemoSCP(patients=20, seed=4) as other:
        add_node("other", other)
        app = make_app(demo=True, demo_options={"patients": 20, "seed": 4}, no_history=True)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f10")
            await wait_for(pilot, lambda: isinstance(app.screen, QuerySetScreen),
                           what="the query set screen")
            screen = app.screen
            nodes = screen.query_one("#qs-nodes")
            # picked or not reads without colour: a box with or without its X
            assert "[x]" in nodes.render_line(0).text and "[ ]" in nodes.render_line(1).text
            # the form's own node is picked already; add the profile's
            await fill(pilot, screen, "PatientID", PATIENTS, ["other"])
            await pilot.press("f5")
            await wait_for(pilot, lambda: screen.run is None and screen.nodes, what="the end")
            table = screen.query_one(ResultsTable)
            assert table.column_labels[:2] == ["Node", "Query"]
            cols = list(table.columns)
            uid = cols.index("StudyInstanceUID")
            got: dict = {}
            for n in range(table.total_count):
                row = table.get_row(n)
                got.setdefault((row[0], PATIENTS[int(row[1]) - 1]), []).append(row[uid])
            request = screen.request
            form_label = screen.nodes[0].label
            want = {}
            for label, scp in ((form_label, app.demo), ("other", other)):
                for pid in PATIENTS:
                    uids = await asyncio.to_thread(direct, scp, request, pid)
                    if uids:
                        want[(label, pid)] = uids
            assert {k: sorted(v) for k, v in got.items()} == want
            assert [n.state for n in screen.nodes] == ["success", "success"]
            assert all(n.done == len(PATIENTS) for n in screen.nodes)
            status = str(screen.query_one("#qs-node-status").render())
            assert "other: 3/3 queries" in status and "success" in status

            # Dedupe: both demos hold the same data (same seed): each study once, both nodes
            screen.query_one("#qs-form").display = True
            await fill(pilot, screen, "PatientID", PATIENTS, [], dedupe=True)
            await pilot.press("f5")
            await wait_for(pilot, lambda: screen.run is None, what="the end")
            uids = [table.get_row(n)[uid] for n in range(table.total_count)]
            assert len(uids) == len(set(uids)) == len({u for v in want.values() for u in v})
            assert {table.get_row(n)[0] for n in range(table.total_count)} == {
                f"{form_label}\\other"}

            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, QuerySetScreen),
                           what="back to the query screen")


@sync
async def test_bad_input_is_said_and_nothing_runs():
    app = make_app(demo=True, demo_options={"patients": 5, "seed": 4}, no_history=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f10")
        await wait_for(pilot, lambda: isinstance(app.screen, QuerySetScreen), what="screen")
        screen = app.screen
        before = app.demo.associations
        await fill(pilot, screen, "", ["PAT00001"], [])
        await pilot.press("f5")
        await pilot.pause()
        assert screen.run is None and app.demo.associations == before
        assert any("name the key" in str(n.message) for n in app._notifications)
        await fill(pilot, screen, "StudyDate", ["2020"], [])
        await pilot.press("f5")
        await pilot.pause()
        assert screen.run is None and app.demo.associations == before
        assert any("line 2" in str(n.message) and "StudyDate" in str(n.message)
                   for n in app._notifications)


SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


@pytest.mark.parametrize("size", SIZES)
def test_query_set_snapshot(snap_compare, size):
    """Two node profiles (demo SCPs of the same seed), three PatientIDs pasted, after the
    run: the Node and Query columns, a status line per node."""
    with DemoSCP(patients=20, seed=4) as north, DemoSCP(patients=20, seed=4) as south:
        add_node("north", north)
        add_node("south", south)
        app = make_app(demo=True, demo_options={"patients": 20, "seed": 4}, no_history=True)
        app.show_timing = False

        async def run_before(pilot):
            await pilot.press("f10")
            await wait_for(pilot, lambda: isinstance(app.screen, QuerySetScreen), what="screen")
            screen = app.screen
            nodes = screen.query_one("#qs-nodes")
            nodes.replace_option_prompt("form", "this form: FINDTUI-DEMO@127.0.0.1:11112")
            nodes.deselect(FORM_NODE)
            await fill(pilot, screen, "PatientID", PATIENTS, ["north", "south"])
            await pilot.press("f5")
            await wait_for(pilot, lambda: screen.run is None and screen.nodes, what="the end")
            screen.query_one(ResultsTable).sort_by(0)  # arrival order differs run to run
            await pilot.pause()

        assert snap_compare(app, terminal_size=size, run_before=run_before)
