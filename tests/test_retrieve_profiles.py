"""A node profile's retrieve settings (method, move destination, store port and address,
folder, layout) and retrieves in the history, from the CLI.

Precedence: options on the command line > the query profile (its output_directory) > the
node profile > the defaults; a profile's setting never conflicts with an option given.
The end-to-end runs retrieve from the embedded demo SCP (a real C-GET/C-MOVE SCP,
compared with DCMTK's getscu in test_retrieve.py) and read the files and the history.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

import peers
from findtui.cli import ExitCode
from findtui.cli.options import build_parser
from findtui.cli.resolve import UsageError, resolve_options, retrieve_spec
from findtui.config import HistoryEntry, NodeProfile, QueryProfile, Store
from findtui.config.history import History, RetrieveRecord
from findtui.engine.models import QueryModel
from findtui.engine.retrieve import DEFAULT_LAYOUT, DEFAULT_STORE_PORT, RetrieveOptions

PROFILE_LAYOUT = "{PatientID}/{SOPInstanceUID}.dcm"


def save_node(name="pacs", address="10.0.0.5", port=104, **retrieve) -> NodeProfile:
    node = NodeProfile.of(name, address, port, called_aet="PACS",
                          retrieve=RetrieveOptions(**retrieve))
    Store().save(node)
    return node


def resolved(*argv: str):
    """(the RetrieveSpec, -od) that `findtui --batch ARGV` would run with."""
    args = build_parser().parse_args(["--batch", "-S", "-k", "PatientID=1", *argv])
    resolve_options(args)
    return retrieve_spec(args), args.output_directory


# --- precedence, resolved without a peer --------------------------------------------


def test_the_node_profile_fills_what_the_command_line_leaves_unset(tmp_path):
    save_node(retrieve="move", move_destination="ARCHIVE", store_port=11999,
              store_host="127.0.0.1", retrieve_folder=str(tmp_path / "node"),
              layout=PROFILE_LAYOUT)
    spec, folder = resolved("--profile", "pacs", "--retrieve")
    assert (spec.method, spec.move_destination, spec.store_port, spec.store_host,
            spec.layout) == ("move", "ARCHIVE", 11999, "127.0.0.1", PROFILE_LAYOUT)
    assert folder == str(tmp_path / "node")


def test_options_win_over_the_node_profile(tmp_path):
    save_node(retrieve="move", move_destination="ARCHIVE", store_port=11999,
              retrieve_folder=str(tmp_path / "node"), layout=PROFILE_LAYOUT)
    spec, folder = resolved("--profile", "pacs", "--retrieve", "move", "--move-dest", "OTHER",
                            "--store-port", "12000", "--store-host", "::1", "-od",
                            str(tmp_path / "given"), "--layout", "{SOPInstanceUID}.dcm")
    assert (spec.method, spec.move_destination, spec.store_port, spec.store_host,
            spec.layout) == ("move", "OTHER", 12000, "::1", "{SOPInstanceUID}.dcm")
    assert folder == str(tmp_path / "given")
    # a method given wins, and the profile's C-MOVE settings are then simply unused
    spec, folder = resolved("--profile", "pacs", "--retrieve", "get")
    assert (spec.method, spec.move_destination, spec.layout) == ("get", None, PROFILE_LAYOUT)
    assert folder == str(tmp_path / "node")


def test_without_a_profile_the_defaults():
    spec, folder = resolved("10.0.0.5", "104", "--retrieve")
    assert (spec.method, spec.move_destination, spec.store_port, spec.store_host,
            spec.layout) == ("get", None, DEFAULT_STORE_PORT, "", DEFAULT_LAYOUT)
    assert folder == "."


def test_the_profile_folder_is_for_retrieves_only(tmp_path):
    """Without --retrieve, -od (for -w files) does not come from the node's retrieve folder;
    a query profile's output_directory comes before the node's folder."""
    save_node(retrieve_folder=str(tmp_path / "node"))
    assert resolved("--profile", "pacs") == (None, ".")
    Store().save(QueryProfile("q", model=QueryModel.STUDY, keys=("PatientID=",),
                              output_directory=str(tmp_path / "query")))
    assert resolved("--profile", "pacs", "--query", "q", "--retrieve")[1] == str(
        tmp_path / "query")


def test_conflicts_are_the_options_own():
    save_node(retrieve="get", move_destination="ARCHIVE")
    with pytest.raises(UsageError, match="are for --retrieve move"):
        resolved("--profile", "pacs", "--retrieve", "get", "--store-port", "1234")
    with pytest.raises(UsageError, match="the node profile's retrieve method is get"):
        resolved("--profile", "pacs", "--retrieve", "--store-port", "1234")
    with pytest.raises(UsageError, match="--store-port needs --retrieve"):
        resolved("--profile", "pacs", "--store-port", "1234")


# --- the profile: file, `profiles add` ------------------------------------------------


def findtui(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "findtui", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_profiles_add_saves_the_retrieve_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = findtui("profiles", "add", "pacs", "10.0.0.5", "104", "--retrieve", "move",
                "--move-dest", "ARCHIVE", "--store-port", "11999", "--store-host", "127.0.0.1",
                "--retrieve-folder", "studies", "--layout", PROFILE_LAYOUT)
    assert r.returncode == 0, r.stderr
    assert Store().get_node("pacs").retrieve == RetrieveOptions(
        "move", "ARCHIVE", 11999, "127.0.0.1", str(tmp_path / "studies"), PROFILE_LAYOUT)
    shown = findtui("profiles", "show", "pacs").stdout
    assert 'retrieve = "move"' in shown and "store_port = 11999" in shown
    assert "retrieve: move to ARCHIVE" in findtui("profiles", "list").stdout


@pytest.mark.parametrize("args, message", [
    (["--store-port", "0"], "--store-port must be a TCP port from 1 to 65535, not 0"),
    (["--move-dest", "A" * 17], "--move-dest must be an AE title"),
    (["--layout", "{PatientID}.dcm"], "--layout '{PatientID}.dcm': it must contain "
                                      "{SOPInstanceUID}"),
])
def test_profiles_add_refuses_a_bad_retrieve_setting(args, message):
    r = findtui("profiles", "add", "pacs", "10.0.0.5", "104", *args)
    assert r.returncode == ExitCode.BAD_INPUT
    assert message in r.stderr
    assert Store().load().nodes == {}


@pytest.mark.parametrize("line, message", [
    ('retrieve = "fetch"', "line 4: retrieve must be one of get, move, not 'fetch'"),
    ("store_port = 70000", "line 4: store_port must be a TCP port from 1 to 65535, not 70000"),
    ('layout = "{Nope}/{SOPInstanceUID}"', "line 4: layout '{Nope}/{SOPInstanceUID}': "
                                           "{Nope} is not a placeholder"),
])
def test_a_bad_retrieve_field_in_the_file_names_its_line(line, message):
    store = Store()
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.path.write_text(f'[nodes.pacs]\naddress = "10.0.0.5"\nport = 104\n{line}\n')
    r = findtui("profiles", "list")
    assert r.returncode == ExitCode.BAD_INPUT
    assert message in r.stderr


# --- end to end: the demo SCP, the files, the history ---------------------------------


def uids_at(folder: Path) -> dict[str, str]:
    """relative path -> SOP Instance UID of every file under ``folder``."""
    return {str(p.relative_to(folder)): str(dcmread(p, stop_before_pixels=True).SOPInstanceUID)
            for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def demo():
    from findtui.demo import DemoSCP

    port = peers.free_port()
    with DemoSCP(patients=4, seed=3, move_port=port) as scp:
        scp.store_port = port
        yield scp


def expected_files(demo, patient: str, layout_root: str = "") -> dict[str, str]:
    from findtui.demo.retrieve import instances

    ident = Dataset()
    ident.QueryRetrieveLevel, ident.PatientID = "PATIENT", patient
    return {f"{patient}/{ds.SOPInstanceUID}.dcm": str(ds.SOPInstanceUID)
            for ds in instances(demo.data, ident)}


def test_a_retrieve_with_the_profiles_settings_is_recorded_and_rerun(demo, tmp_path):
    folder = tmp_path / "from-profile"
    save_node("demo", demo.address, demo.port, retrieve="move", store_port=demo.store_port,
              store_host="127.0.0.1", retrieve_folder=str(folder), layout=PROFILE_LAYOUT)
    patient = demo.data.patients[1][1]
    r = findtui("--batch", "--profile", "demo", "-aec", demo.ae_title, "-S", "-k",
                "QueryRetrieveLevel=STUDY", "-k", f"PatientID={patient}", "--retrieve")
    assert r.returncode == ExitCode.OK, r.stderr
    assert "by C-MOVE into" in r.stderr
    expected = expected_files(demo, patient)
    assert uids_at(folder) == expected and expected

    # one history line: the query and its retrieve
    entry = History().entries()[-1]
    assert entry.results >= 1 and entry.node == "demo"
    r_ = entry.retrieve
    assert (r_.method, r_.outcome, r_.written, r_.skipped, r_.folder, r_.layout,
            r_.store_port) == ("move", "success", len(expected), 0, str(folder),
                               PROFILE_LAYOUT, demo.store_port)
    shown = findtui("history").stdout
    assert f"retrieve: C-MOVE success: {len(expected)} written" in shown
    assert str(folder) in shown
    line = json.loads(findtui("history", "--json").stdout.splitlines()[-1])
    assert line["retrieve"]["written"] == len(expected)

    # run again from the history: the same retrieve into the same folder, a cheap resume
    again = findtui("history", "rerun", "-1")
    assert again.returncode == ExitCode.OK, again.stderr
    assert f"0 written (0.0 MB), {len(expected)} already on disk" in again.stderr
    assert History().entries()[-1].retrieve.skipped == len(expected)
    only_query = findtui("history", "rerun", "-1", "--no-retrieve")
    assert only_query.returncode == ExitCode.OK and "Retrieved " not in only_query.stderr
    assert History().entries()[-1].retrieve is None


def test_a_method_given_overrides_the_profiles(demo, tmp_path):
    save_node("demo", demo.address, demo.port, retrieve="move", store_port=demo.store_port,
              retrieve_folder=str(tmp_path / "node"))
    patient = demo.data.patients[0][1]
    r = findtui("--batch", "--profile", "demo", "-aec", demo.ae_title, "-S", "-k",
                "QueryRetrieveLevel=STUDY", "-k", f"PatientID={patient}", "--retrieve", "get",
                "-od", str(tmp_path / "given"), "--layout", PROFILE_LAYOUT)
    assert r.returncode == ExitCode.OK, r.stderr
    assert "by C-GET into" in r.stderr
    assert uids_at(tmp_path / "given") == expected_files(demo, patient)
    assert not (tmp_path / "node").exists()
    assert History().entries()[-1].retrieve.method == "get"


# --- the history file ------------------------------------------------------------------


OLD_LINE = {"time": "2024-06-01T10:12:03+02:00", "address": "10.0.0.5", "port": 4242,
            "calling_aet": "FINDSCU", "called_aet": "ORTHANC", "acse_timeout": 30.0,
            "dimse_timeout": 30.0, "network_timeout": 30.0, "max_pdu": 16382, "tls": None,
            "transfer_syntax": None, "prefer_transfer_syntax": None, "max_results": None,
            "model": "study", "keys": ["QueryRetrieveLevel=STUDY", "PatientID=PID1"],
            "results": 3, "outcome": "success", "status": "Success", "status_code": 0,
            "node": None, "query": None, "ext_neg": [], "source": "cli"}


def test_old_history_lines_load_and_keep_their_format():
    entry = HistoryEntry.from_json(OLD_LINE)
    assert entry.retrieve is None and entry.complete
    assert entry.to_json() == OLD_LINE  # no "retrieve" key added to a run without one
    record = RetrieveRecord("get", "partial", 2, 2, 5, 1, 1, 1234, "/data/x",
                            DEFAULT_LAYOUT, message=None)
    line = {**OLD_LINE, "retrieve": json.loads(json.dumps(msgspec.to_builtins(record)))}
    assert HistoryEntry.from_json(line).retrieve == record
    assert HistoryEntry.from_json(line).to_json() == line
    with pytest.raises(ValueError):
        HistoryEntry.from_json({**OLD_LINE, "retrieve": {"method": "fetch"}})
