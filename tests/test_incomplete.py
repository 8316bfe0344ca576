"""Incomplete answers are never silent: a PACS that caps its answers (the three ways real ones
do, played by the demo SCP's caps, and a real Orthanc with LimitFindResults) gives exit 7,
a line with the number of matches and why more exist, and history outcome "incomplete".
"""

from __future__ import annotations

import json

import pytest

from faultscp import assert_no_traceback, run_findtui
from findtui.config import History
from findtui.demo import DemoSCP
from findtui.demo.scp import CAP_FAILURE_COMMENT

import peers

CAP = 7
STUDY = ["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=", "-k", "StudyDate="]
EXIT_OK, EXIT_CANCELLED, EXIT_INCOMPLETE = 0, 5, 7  # README "Exit codes": literal on purpose


@pytest.fixture(scope="module")
def demo_caps():
    """One demo SCP per cap style, each holding more than CAP studies."""
    scps = {style: DemoSCP(patients=20, seed=3, cap=CAP, cap_style=style).start()
            for style in ("cancel", "failure", "success")}
    try:
        yield scps
    finally:
        for scp in scps.values():
            scp.stop()


def at(scp, *args: str) -> list[str]:
    return [*args, "-aec", scp.ae_title, scp.address, str(scp.port)]


def incomplete_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("W: Incomplete: ")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


@pytest.mark.parametrize("style, extra, matches, why", [
    ("cancel", [], CAP, "Cancel (0xFE00) though no C-CANCEL was sent"),
    ("failure", [], 0, f"refused the query as too broad (Failure: Out of Resources: "
                       f"{CAP_FAILURE_COMMENT!r})"),
    ("success", ["--max-results", str(CAP)], CAP, f"{CAP} is the node's result limit"),
])
def test_each_cap_style_is_incomplete_exit_7(demo_caps, style, extra, matches, why, tmp_path):
    out = tmp_path / "out.csv"
    r = run_findtui(at(demo_caps[style], *STUDY, *extra, "--output-format", "csv",
                       "--output", str(out)))
    assert_no_traceback(r)
    assert r.returncode == EXIT_INCOMPLETE, r.err[-3000:]
    line = incomplete_line(r.err)
    assert f"Incomplete: {matches} match" in line and why in line, line
    assert "--split auto" in line
    assert len(out.read_text().splitlines()) == 1 + matches  # every match that came is kept
    entry = History().entries()[-1]
    assert (entry.outcome, entry.results) == ("incomplete", matches)


def test_the_success_style_is_only_seen_with_the_nodes_max_results(demo_caps):
    """A PACS that stops at N with Success says nothing: only the configured limit tells."""
    r = run_findtui(at(demo_caps["success"], *STUDY, "--no-history"))
    assert r.returncode == EXIT_OK and "Incomplete" not in r.err


def test_max_results_from_the_node_profile(demo_caps, findtui_config_dir):
    scp = demo_caps["success"]
    (findtui_config_dir / "profiles.toml").write_text(
        f'[nodes.capped]\naddress = "{scp.address}"\nport = {scp.port}\n'
        f'called_aet = "{scp.ae_title}"\nmax_results = {CAP}\n')
    r = run_findtui(["--profile", "capped", *STUDY, "--no-history"])
    assert r.returncode == EXIT_INCOMPLETE, r.err[-3000:]
    assert f"Incomplete: {CAP} matches" in incomplete_line(r.err)


@pytest.mark.parametrize("style", ["cancel", "failure", "success"])
def test_a_query_under_the_cap_is_complete(demo_caps, style):
    # one patient's studies: fewer than the cap
    r = run_findtui(at(demo_caps[style], *STUDY, "-k", "PatientID=PAT00001", "--max-results",
                       str(CAP), "--no-history"))
    assert r.returncode == EXIT_OK, r.err[-3000:]
    assert "Incomplete" not in r.err


def test_a_user_cancel_stays_a_cancel(demo_caps):
    r = run_findtui(at(demo_caps["cancel"], *STUDY, "--cancel", "2", "--max-results", str(CAP)))
    assert r.returncode == EXIT_CANCELLED, r.err[-3000:]
    assert "Incomplete" not in r.err
    assert History().entries()[-1].outcome == "cancel"


def test_quiet_prints_nothing_but_exits_7(demo_caps):
    r = run_findtui(at(demo_caps["cancel"], *STUDY, "-q", "--no-history"))
    assert r.returncode == EXIT_INCOMPLETE and r.err == "" and r.out == ""


def test_max_results_is_checked_like_every_setting(demo_caps):
    r = run_findtui(at(demo_caps["cancel"], *STUDY, "--max-results", "0"))
    assert r.returncode == 2 and "--max-results must be a number of matches" in r.err, r.err


def test_demo_scp_cap_options():
    from findtui.demo.scp import main

    with pytest.raises(SystemExit) as exc:
        main(["--cap", "0"])
    assert exc.value.code == 2


def test_capped_orthanc_is_incomplete_exit_7(capped_orthanc):
    r = run_findtui(at(capped_orthanc, *STUDY, "--output-format", "jsonl"))
    assert_no_traceback(r)
    assert r.returncode == EXIT_INCOMPLETE, r.err[-3000:]
    assert len(r.out.splitlines()) == peers.CAPPED_LIMIT
    line = incomplete_line(r.err)
    assert f"{peers.CAPPED_LIMIT} matches arrived" in line and "0xFE00" in line
    assert History().entries()[-1].outcome == "incomplete"
    assert json.loads(r.out.splitlines()[0])  # the matches are written as usual


def test_capped_orthanc_under_its_limit_is_complete(capped_orthanc):
    # 2010-01-01..2010-04-30 holds 8 bulk studies, fewer than the limit
    r = run_findtui(at(capped_orthanc, *STUDY, "-k", "StudyDate=20100101-20100430",
                       "--no-history"))
    assert r.returncode == EXIT_OK, r.err[-3000:]
