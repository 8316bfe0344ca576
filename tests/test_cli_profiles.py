"""`findtui profiles ...`, `--profile`, `--query` and the history, end to end against the demo SCP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from findtui.cli import ExitCode, main
from findtui.demo import DemoSCP
from findtui.config.history import History
from findtui.config.store import Store


@pytest.fixture(scope="module")
def demo():
    with DemoSCP(patients=20, seed=7) as scp:
        yield scp


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m findtui` as a user runs it, with this test's FINDTUI_CONFIG_DIR."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "findtui", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def profiles(capsys, *args: str) -> tuple[int, str, str]:
    """`findtui profiles ARGS` in process: (exit code, stdout, stderr)."""
    try:
        code = main(["profiles", *args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def jsonl_rows(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def patient_ids(rows: list[dict]) -> set[str]:
    return {row["00100020"]["Value"][0] for row in rows}


# --- the example ------------------------------------------------------


def test_the_example_command_with_a_profile(demo, capsys):
    code, out, _ = profiles(capsys, "add", "orthanc", demo.address, str(demo.port),
                            "-aec", "ORTHANC", "-aet", "MYSCU")
    assert code == 0 and "Saved node profile 'orthanc'" in out
    example = ["--profile", "orthanc", "--batch", "-q", "--output-format", "jsonl", "-S",
               "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=PID1",
               "-k", "StudyInstanceUID="]
    r = run_cli(*example)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == ""  # the demo has no PID1
    # the same command with an ID the demo has: rows from the demo, so the profile was used
    r = run_cli(*example[:-4], "-k", "PatientID=PAT00001", "-k", "StudyInstanceUID=")
    assert r.returncode == 0, r.stderr
    rows = jsonl_rows(r.stdout)
    assert rows and patient_ids(rows) == {"PAT00001"}
    assert all(row["00080052"]["Value"] == ["STUDY"] for row in rows)
    last = History().entries()[-1]
    assert (last.node, last.address, last.port) == ("orthanc", demo.address, demo.port)
    assert (last.calling_aet, last.called_aet) == ("MYSCU", "ORTHANC")
    assert (last.results, last.status, last.outcome) == (len(rows), "Success", "success")
    assert last.keys == ("QueryRetrieveLevel=STUDY", "PatientID=PAT00001", "StudyInstanceUID=")


def test_command_line_overrides_the_profile(demo, capsys):
    # a profile pointing at a port nobody listens on, with AE titles we then override
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead_port = s.getsockname()[1]
    s.close()
    profiles(capsys, "add", "dead", "127.0.0.1", str(dead_port), "-aet", "FROMPROFILE",
             "-aec", "PROFILE-SCP", "-ta", "2", "-tn", "2")
    keys = ["-P", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=PAT00002"]
    r = run_cli("--profile", "dead", "--batch", "-q", *keys)
    assert r.returncode == ExitCode.NETWORK
    assert History().entries()[-1].outcome == "network"
    r = run_cli("--profile", "dead", "--batch", "-q", "--output-format", "jsonl", demo.address,
                str(demo.port), "-aet", "FROMCLI", *keys)
    assert r.returncode == 0, r.stderr
    assert patient_ids(jsonl_rows(r.stdout)) == {"PAT00002"}
    last = History().entries()[-1]
    assert (last.port, last.calling_aet, last.called_aet, last.node) == (
        demo.port, "FROMCLI", "PROFILE-SCP", "dead")


def test_query_profile_with_its_node_and_key_overrides(demo, capsys):
    assert profiles(capsys, "add", "demo", demo.address, str(demo.port))[0] == 0
    code, out, err = profiles(capsys, "add-query", "by-patient", "-S",
                              "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=PAT00001",
                              "-k", "StudyInstanceUID=", "--output-format", "csv",
                              "--node", "demo")
    assert code == 0, err
    saved = Store().get_query("by-patient")
    assert saved.level == "STUDY" and saved.keys == ("PatientID=PAT00001", "StudyInstanceUID=")
    # the saved query as it is: its node, model, keys and output format
    r = run_cli("--query", "by-patient", "--batch", "-q")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "QueryRetrieveLevel,PatientID,StudyInstanceUID"
    assert len(lines) > 1 and all(line.startswith("STUDY,PAT00001,") for line in lines[1:])
    # -k overrides a saved key and adds one; --output-format overrides the saved one
    r = run_cli("--query", "by-patient", "--batch", "-q", "--output-format", "jsonl",
                "-k", "PatientID=PAT00003", "-k", "StudyDate=")
    assert r.returncode == 0, r.stderr
    rows = jsonl_rows(r.stdout)
    assert rows and patient_ids(rows) == {"PAT00003"}
    assert all("00080020" in row for row in rows)
    last = History().entries()[-1]
    assert (last.query, last.node, last.results) == ("by-patient", "demo", len(rows))
    assert last.keys[-2:] == ("PatientID=PAT00003", "StudyDate=")


def test_default_node_makes_addr_port_optional(demo, capsys):
    profiles(capsys, "add", "demo", demo.address, str(demo.port))
    args = ["--batch", "-q", "--output-format", "jsonl", "-P", "-k", "QueryRetrieveLevel=PATIENT",
            "-k", "PatientID=PAT00004"]
    r = run_cli(*args)
    assert r.returncode == ExitCode.USAGE and "--profile NAME" in r.stderr
    assert profiles(capsys, "default", "demo")[0] == 0
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert patient_ids(jsonl_rows(r.stdout)) == {"PAT00004"}


def test_missing_profiles_are_bad_input(demo):
    r = run_cli("--profile", "nope", "--batch", "-k", "PatientID=")
    assert r.returncode == ExitCode.BAD_INPUT
    assert "no node profile 'nope'" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("--query", "nope", "--batch")
    assert r.returncode == ExitCode.BAD_INPUT and "no query profile 'nope'" in r.stderr


# --- the history --------------------------------------------------------------


def test_history_command_lists_runs(demo, capsys):
    r = run_cli("--batch", "-q", "-P", demo.address, str(demo.port),
                "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=PAT0000*")
    assert r.returncode == 0
    r = run_cli("--batch", "-q", "-P", demo.address, str(demo.port), "-k", "PatinetName=X")
    assert r.returncode == ExitCode.BAD_INPUT  # never sent: not a run
    assert main(["history"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    assert f"{demo.address}:{demo.port}" in out[0] and "9 results" in out[0]
    assert "Success" in out[0] and "PatientID=PAT0000*" in out[0]
    assert main(["history", "--json"]) == 0
    entry = json.loads(capsys.readouterr().out)
    assert entry["results"] == 9 and entry["model"] == "patient" and entry["source"] == "cli"


def test_history_that_cannot_be_written_never_fails_the_query(demo, findtui_config_dir):
    (findtui_config_dir / "history.jsonl").mkdir()  # appending to it fails
    args = ["--batch", "-P", demo.address, str(demo.port), "-k", "QueryRetrieveLevel=PATIENT",
            "-k", "PatientID=PAT00001"]
    r = run_cli(*args)
    assert r.returncode == 0
    assert "W: The run was not recorded in the history" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("-q", *args)
    assert (r.returncode, r.stderr) == (0, "")


def test_history_stays_bounded(demo, findtui_config_dir):
    from findtui.config.history import HISTORY_LIMIT

    line = json.dumps({"time": "2024-01-01T00:00:00+00:00", "address": "h", "port": 1,
                       "called_aet": "A", "calling_aet": "B", "model": "patient", "keys": [],
                       "results": 0, "outcome": "success", "status": "Success"})
    (findtui_config_dir / "history.jsonl").write_text(f"{line}\n" * HISTORY_LIMIT)
    r = run_cli("--batch", "-q", "-P", demo.address, str(demo.port),
                "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=PAT00001")
    assert r.returncode == 0
    entries = History().entries()
    assert len((findtui_config_dir / "history.jsonl").read_text().splitlines()) == HISTORY_LIMIT
    assert entries[-1].port == demo.port and entries[0].port == 1


# --- findtui profiles ---------------------------------------------------------


def test_list_show_rename_duplicate_remove(capsys):
    code, out, _ = profiles(capsys, "list")
    assert code == 0 and "No profiles" in out
    profiles(capsys, "add", "pacs", "10.0.0.5", "104", "-aec", "PACS", "-S", "--tls",
             "--tls-ca", "ca.pem", "--transfer-syntax", "explicit", "--description", "main")
    profiles(capsys, "add-query", "ct", "-S", "-k", "QueryRetrieveLevel=STUDY",
             "-k", "ModalitiesInStudy=CT", "--fuzzy-names", "--node", "pacs")
    profiles(capsys, "default", "pacs")
    code, out, _ = profiles(capsys, "list")
    assert code == 0
    assert "* pacs" in out and "10.0.0.5:104" in out and "FINDSCU -> PACS" in out
    assert "ct" in out and "ModalitiesInStudy=CT" in out and "node: pacs" in out
    code, out, _ = profiles(capsys, "show", "pacs")
    assert code == 0
    assert out.startswith("# the default node profile\n\n[nodes.pacs]\n")
    assert 'called_aet = "PACS"' in out and 'transfer_syntax = "explicit"' in out
    # saved as an absolute path: a later run from another folder uses the same file
    assert f'[nodes.pacs.tls]\nca_file = "{Path.cwd() / "ca.pem"}"\nverify = true' in out
    code, out, _ = profiles(capsys, "show", "ct")
    assert "[queries.ct]" in out and "fuzzy_names = true" in out and 'level = "STUDY"' in out
    assert profiles(capsys, "rename", "pacs", "main-pacs")[0] == 0
    assert Store().get_query("ct").node == "main-pacs"
    assert Store().default("node") == "main-pacs"
    assert profiles(capsys, "duplicate", "ct", "ct2")[0] == 0
    assert profiles(capsys, "remove", "ct")[0] == 0
    assert list(Store().queries()) == ["ct2"]
    code, _, err = profiles(capsys, "remove", "ct")
    assert code == ExitCode.BAD_INPUT and "no node profile 'ct'" in err
    # a node and a query of the same name: the command asks which
    profiles(capsys, "add", "ct2", "h", "1")
    code, _, err = profiles(capsys, "show", "ct2")
    assert code == ExitCode.USAGE and "--node or --query" in err
    code, out, _ = profiles(capsys, "show", "ct2", "--query")
    assert code == 0 and "[queries.ct2]" in out


def test_add_rejects_bad_values_and_existing_names(capsys, findtui_config_dir):
    code, _, err = profiles(capsys, "add", "x", "h", "70000")
    assert code == ExitCode.BAD_INPUT and "port must be an integer from 1 to 65535, not 70000" in err
    code, _, err = profiles(capsys, "add", "x", "h", "104", "-aec", "A" * 17)
    assert code == ExitCode.BAD_INPUT and "-aec must be an AE title: 1 to 16" in err
    code, _, err = profiles(capsys, "add", "x", "h", "104", "--tls-ca", "ca.pem")
    assert code == ExitCode.USAGE and "need --tls" in err
    code, _, err = profiles(capsys, "add-query", "q", "-W", "-k", "PatientName=",
                            "--relational-query")
    assert code == ExitCode.BAD_INPUT and "worklist" in err
    code, _, err = profiles(capsys, "add-query", "q", "-k", "PatinetName=")
    assert code == ExitCode.BAD_INPUT and "did you mean PatientName" in err
    assert not (findtui_config_dir / "profiles.toml").exists()
    assert profiles(capsys, "add", "x", "h", "104")[0] == 0
    code, _, err = profiles(capsys, "add", "x", "other", "105")
    assert code == ExitCode.BAD_INPUT and "already exists" in err and "--replace" in err
    assert Store().get_node("x").network.address == "h"
    assert profiles(capsys, "add", "x", "other", "105", "--replace")[0] == 0
    assert Store().get_node("x").network.address == "other"
    assert profiles(capsys, "bogus")[0] == ExitCode.USAGE


def test_add_query_from_a_query_file(capsys, tmp_path):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.Modality = "MR"
    ds.SeriesInstanceUID = ""
    ds.save_as(tmp_path / "q.dcm", implicit_vr=True, little_endian=True)
    code, _, err = profiles(capsys, "add-query", "mr", "-S", "-f", str(tmp_path / "q.dcm"),
                            "-k", "Modality=CT")
    assert code == 0, err
    query = Store().get_query("mr")
    assert query.level == "SERIES"
    assert set(query.keys) == {"Modality=CT", "SeriesInstanceUID="}


@pytest.mark.parametrize("body", [
    '# mine\n[nodes.a]\naddress = "h"\nport = 104\n\n[nodes.b]\naddress = "h"\nport = \n',
    '# mine\n[nodes.a]\naddress = "h"\nport = 104\n\n[nodes.b]\naddress = "h"\nprot = 104\n',
])
def test_corrupt_file_error_names_file_and_line_and_is_left_alone(capsys, findtui_config_dir,
                                                                  body):
    path = findtui_config_dir / "profiles.toml"
    path.write_text(body)
    for args in (["list"], ["show", "a"], ["add", "c", "h", "1"], ["remove", "a"],
                 ["add-query", "q", "-k", "PatientID="], ["default", "a"], ["export"],
                 ["rename", "a", "z"]):
        code, out, err = profiles(capsys, *args)
        assert code == ExitCode.BAD_INPUT, args
        assert f"{path}, line 8" in err, (args, err)
    assert path.read_text() == body
    r = run_cli("--profile", "a", "--batch", "-k", "PatientID=")
    assert r.returncode == ExitCode.BAD_INPUT
    assert f"{path}, line 8" in r.stderr and "Traceback" not in r.stderr
    assert path.read_text() == body


def test_export_and_import(capsys, tmp_path, monkeypatch):
    profiles(capsys, "add", "a", "h", "104")
    profiles(capsys, "add-query", "q", "-k", "PatientID=", "--node", "a")
    code, text, _ = profiles(capsys, "export")
    assert code == 0 and "[nodes.a]" in text and "[queries.q]" in text
    out = tmp_path / "export.toml"
    assert profiles(capsys, "export", str(out))[0] == 0
    assert out.read_text() == text
    code, _, err = profiles(capsys, "export", str(out))
    assert code == ExitCode.BAD_INPUT and "--overwrite" in err
    assert profiles(capsys, "export", str(out), "--overwrite")[0] == 0

    monkeypatch.setenv("FINDTUI_CONFIG_DIR", str(tmp_path / "other"))
    profiles(capsys, "add", "mine", "h2", "11112")
    code, out_text, _ = profiles(capsys, "import", str(out))
    assert code == 0 and "node 'a'" in out_text and "query 'q'" in out_text
    assert set(Store().nodes()) == {"mine", "a"} and set(Store().queries()) == {"q"}
    before = Store().path.read_bytes()
    code, _, err = profiles(capsys, "import", str(out))
    assert code == ExitCode.BAD_INPUT and "already exist" in err and "--replace" in err
    assert Store().path.read_bytes() == before
    assert profiles(capsys, "import", str(out), "--replace")[0] == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[nodes.x]\naddress = 1\nport = 1\n")
    code, _, err = profiles(capsys, "import", str(bad))
    assert code == ExitCode.BAD_INPUT and f"{bad}, line 2" in err
    code, _, err = profiles(capsys, "import", str(tmp_path / "missing.toml"))
    assert code == ExitCode.BAD_INPUT and "no such file" in err


def test_path_command(capsys, findtui_config_dir):
    code, out, _ = profiles(capsys, "path")
    assert code == 0
    assert out.splitlines() == [f"profiles: {findtui_config_dir / 'profiles.toml'}",
                                f"history: {findtui_config_dir / 'history.jsonl'}"]
    assert Path(findtui_config_dir).exists()


def test_history_rerun_runs_an_entry_again(demo, capsys):
    r = run_cli("--batch", "-q", "-P", demo.address, str(demo.port), "-aet", "ME",
                "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=PAT0000*", "-k", "PatientName=")
    assert r.returncode == 0
    assert main(["history"]) == 0
    assert capsys.readouterr().out.lstrip().startswith("1  ")  # numbered for rerun
    r = run_cli("history", "rerun", "1", "-q", "--output-format", "csv")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "QueryRetrieveLevel,PatientID,PatientName" and len(lines) == 10
    first, again = History().entries()
    assert again.network == first.network and again.network.calling_aet == "ME"
    assert again.keys == first.keys
    r = run_cli("history", "rerun", "7")
    assert r.returncode == ExitCode.BAD_INPUT and "no entry 7" in r.stderr


def test_history_rerun_of_a_demo_run_starts_the_demo_scp(capsys):
    """The demo SCP's port is new at every start: a demo entry re-runs on a new demo SCP
    (re-running it on the recorded port failed)."""
    from findtui.config import HistoryEntry
    from findtui.engine.keys import build_identifier
    from findtui.engine.models import QueryModel
    from findtui.engine.network import Network
    from findtui.engine.query import Final, FindRequest
    from findtui.engine.run import summarize

    gone = Network("127.0.0.1", 9, called_aet="FINDTUI-DEMO")  # nothing listens there
    request = FindRequest(gone, build_identifier(["QueryRetrieveLevel=STUDY", "PatientName=",
                                                  "StudyInstanceUID="]), QueryModel.STUDY)
    History().append(HistoryEntry.from_run(request, summarize([Final(0)]), source="tui",
                                           demo=True))
    assert main(["history"]) == 0
    assert "demo SCP" in capsys.readouterr().out
    r = run_cli("history", "rerun", "-1", "-q", "--output-format", "jsonl")
    assert r.returncode == 0, r.stderr
    assert len(jsonl_rows(r.stdout)) > 0
    assert History().entries()[-1].demo is True


def test_history_rerun_refuses_an_entry_without_every_setting(findtui_config_dir):
    line = json.dumps({"time": "2024-01-01T00:00:00+00:00", "address": "h", "port": 1,
                       "called_aet": "A", "calling_aet": "B", "model": "patient", "keys": [],
                       "results": 0, "outcome": "success", "status": "Success"})
    (findtui_config_dir / "history.jsonl").write_text(f"{line}\n")
    r = run_cli("history", "rerun", "1")
    assert r.returncode == ExitCode.BAD_INPUT
    assert "cannot be re-run exactly" in r.stderr and "Traceback" not in r.stderr


# --- files that cost bounded time and memory; history that can be switched off -----------


def test_profile_import_of_a_huge_or_endless_file_is_a_clear_error(tmp_path):
    deep = tmp_path / "deep.toml"  # tomllib is quadratic in dotted key parts: 40 KB took 24 s
    deep.write_text("a" + ".a" * 20000 + " = 1\n")
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    big = tmp_path / "big.toml"
    big.write_text("# x\n" * 400_000)
    for path, words in ((deep, "more than 16 dotted parts"), (Path("/dev/zero"), "not a plain file"),
                        (fifo, "not a plain file"), (big, "more than the 1,048,576")):
        r = run_cli("profiles", "import", str(path), timeout=30)
        assert r.returncode == ExitCode.BAD_INPUT, (path, r.stderr)
        assert words in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_history_file_that_is_not_a_plain_file_is_said_never_read(findtui_config_dir):
    os.mkfifo(findtui_config_dir / "history.jsonl")
    r = run_cli("history", timeout=30)
    assert r.returncode == ExitCode.BAD_INPUT and "not a plain file" in r.stderr


def test_history_can_be_switched_off_and_cleared(demo, findtui_config_dir):
    args = ["--batch", "-q", "-P", demo.address, str(demo.port),
            "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=PAT00001"]
    assert run_cli(*args, "--no-history").returncode == 0
    assert History().entries() == []
    env_off = subprocess.run([sys.executable, "-m", "findtui", *args], capture_output=True,
                             text=True, env={**os.environ, "FINDTUI_NO_HISTORY": "1"})
    assert env_off.returncode == 0 and History().entries() == []
    (findtui_config_dir / "profiles.toml").write_text("[defaults]\nhistory = false\n")
    assert run_cli(*args).returncode == 0 and History().entries() == []
    (findtui_config_dir / "profiles.toml").write_text("[defaults]\nhistory = true\n")
    assert run_cli(*args).returncode == 0 and len(History().entries()) == 1
    r = run_cli("history", "clear")
    assert r.returncode == 0 and History().entries() == []


def test_config_and_state_folders_are_private(tmp_path, monkeypatch, demo):
    home = tmp_path / "home"
    monkeypatch.setenv("FINDTUI_CONFIG_DIR", str(home / "findtui"))
    r = run_cli("--batch", "-q", "-P", demo.address, str(demo.port),
                "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=PAT00001")
    assert r.returncode == 0
    assert (home / "findtui").stat().st_mode & 0o777 == 0o700
    assert (home / "findtui" / "history.jsonl").stat().st_mode & 0o777 == 0o600
