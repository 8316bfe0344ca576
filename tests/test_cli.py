"""The --batch CLI against the embedded demo SCP: log format, outputs, exit codes, -w files."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from pydicom import dcmread

from findtui.cli import ExitCode, main
from findtui.demo import DemoSCP

STUDY_KEYS = [
    "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=", "-k", "PatientID=",
    "-k", "StudyDate=", "-k", "StudyInstanceUID=", "-k", "ModalitiesInStudy=",
]


@pytest.fixture(scope="module")
def demo():
    with DemoSCP(patients=20, seed=7) as scp:
        yield scp


@pytest.fixture(scope="module")
def study_count(demo):
    """How many studies the demo holds, counted by DCMTK-free means: our engine."""
    from pydicom.dataset import Dataset

    from findtui.engine.models import QueryModel
    from findtui.engine.query import FindRequest, Network, Pending, run_find

    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ""
    events = list(run_find(FindRequest(Network(demo.address, demo.port), ds, QueryModel.STUDY)))
    return sum(isinstance(e, Pending) for e in events)


def run_cli(args, cwd=None, timeout=60):
    """Run `python -m findtui` as a user would; returns CompletedProcess."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "findtui", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env=env)


def test_verbose_log_matches_findscu_format(demo, study_count):
    r = run_cli(["--batch", "-S", demo.address, str(demo.port), *STUDY_KEYS])
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == "I: Requesting Association"
    assert "I: Association Accepted" in lines
    assert "I: Sending Find Request: MsgID 1" in lines
    assert "I: # Request Identifier" in lines
    assert any(line.startswith("I: (0008,0052) CS [STUDY]") for line in lines)
    assert "I: Find SCP Response: 1 - 0xFF00 (Pending)" in lines
    assert f"I: Find SCP Response: {study_count} - 0xFF00 (Pending)" in lines
    assert f"I: Find SCP Response: {study_count + 1} - 0xFF00 (Pending)" not in lines
    assert lines.count("I: # Response Identifier") == study_count
    assert "I: Find SCP Result: 0x0000 (Success)" in lines
    assert lines[-1] == "I: Releasing Association"
    assert r.stdout == ""


def test_quiet_prints_nothing(demo):
    r = run_cli(["--batch", "-q", "-S", demo.address, str(demo.port), *STUDY_KEYS])
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


@pytest.mark.parametrize("level", ["critical", "fatal", "error", "warning", "warn", "info",
                                   "debug", "trace"])
def test_every_log_level_is_accepted(demo, level):
    r = run_cli(["--batch", "-ll", level, "-P", demo.address, str(demo.port),
                 "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=NOPE"])
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert ("Find SCP Result: 0x0000 (Success)" in r.stderr) == (level in ("info", "debug",
                                                                           "trace"))


def test_csv_has_requested_keys_in_order(demo, study_count):
    r = run_cli(["--batch", "-q", "-S", demo.address, str(demo.port), "--output-format", "csv",
                 "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=",
                 "-k", "PatientName=", "-k", "ModalitiesInStudy="])
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0] == ["QueryRetrieveLevel", "StudyInstanceUID", "PatientName",
                       "ModalitiesInStudy"]
    assert len(rows) == study_count + 1
    assert all(row[0] == "STUDY" and row[1] for row in rows[1:])
    # multi-valued ModalitiesInStudy is joined with a backslash
    assert any("\\" in row[3] for row in rows[1:])


def test_json_and_jsonl_are_the_dicom_json_model(demo, study_count):
    r = run_cli(["--batch", "-q", "-S", demo.address, str(demo.port), "--output-format",
                 "json", *STUDY_KEYS])
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert len(data) == study_count
    assert data[0]["00080052"] == {"vr": "CS", "Value": ["STUDY"]}
    assert "Alphabetic" in data[0]["00100010"]["Value"][0]
    r = run_cli(["--batch", "-q", "-S", demo.address, str(demo.port), "--output-format",
                 "jsonl", *STUDY_KEYS])
    lines = r.stdout.splitlines()
    assert [json.loads(line) for line in lines] == data


def test_output_file_not_overwritten(demo, tmp_path):
    out = tmp_path / "r.csv"
    out.write_text("precious")
    args = ["--batch", "-q", "-S", demo.address, str(demo.port), "--output-format", "csv",
            "--output", str(out), *STUDY_KEYS]
    r = run_cli(args)
    assert r.returncode == ExitCode.OUTPUT
    assert out.read_text() == "precious"
    r = run_cli([*args, "--overwrite"])
    assert r.returncode == 0
    assert out.read_text().startswith("QueryRetrieveLevel,")


def test_write_rsp_files(demo, tmp_path, study_count):
    r = run_cli(["--batch", "-q", "-w", "-od", str(tmp_path), "-S", demo.address,
                 str(demo.port), *STUDY_KEYS])
    assert r.returncode == 0, r.stderr
    files = sorted(tmp_path.glob("rsp*.dcm"))
    assert [f.name for f in files] == [f"rsp{i:06d}.dcm" for i in range(1, study_count + 1)]
    ds = dcmread(files[0])
    assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.2.2.1"
    assert ds.QueryRetrieveLevel == "STUDY"
    assert ds.StudyInstanceUID


def test_write_never_overwrites(demo, tmp_path):
    (tmp_path / "rsp000001.dcm").write_bytes(b"keep me")
    args = ["--batch", "-w", "-od", str(tmp_path), "-S", demo.address, str(demo.port),
            *STUDY_KEYS]
    r = run_cli(args)
    assert r.returncode == ExitCode.OUTPUT
    assert "--overwrite" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "rsp000001.dcm").read_bytes() == b"keep me"
    assert not (tmp_path / "rsp000002.dcm").exists()
    assert run_cli([*args, "-q", "--overwrite"]).returncode == 0
    assert dcmread(tmp_path / "rsp000001.dcm").QueryRetrieveLevel == "STUDY"


def test_missing_output_directory(demo, tmp_path):
    r = run_cli(["--batch", "-w", "-od", str(tmp_path / "nope"), "-S", demo.address,
                 str(demo.port), *STUDY_KEYS])
    assert r.returncode == ExitCode.OUTPUT
    assert "does not exist" in r.stderr


def test_cancel_after_n():
    with DemoSCP(patients=20, seed=7, delay_per_response=0.05) as slow:
        r = run_cli(["--batch", "-S", slow.address, str(slow.port), "--cancel", "2",
                     *STUDY_KEYS])
    assert r.returncode == ExitCode.CANCELLED, r.stderr
    assert "Sent C-CANCEL after 2 responses" in r.stderr
    assert "Find SCP Result: 0xFE00 (Cancel)" in r.stderr


def test_bad_key_is_exit_1_with_suggestion(demo):
    r = run_cli(["--batch", "-S", demo.address, str(demo.port), "-k", "PatinetName=X"])
    assert r.returncode == ExitCode.BAD_INPUT
    assert "PatientName" in r.stderr and "Traceback" not in r.stderr


def test_unreadable_query_file_is_exit_1(demo, tmp_path):
    r = run_cli(["--batch", "-S", demo.address, str(demo.port), "-f", str(tmp_path / "q.dcm")])
    assert r.returncode == ExitCode.BAD_INPUT
    assert "q.dcm" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args", [
    [],  # neither -k nor -f
    ["-W", "--relational-query", "-k", "PatientName="],
    ["-W", "--dt-matching", "-k", "PatientName="],
    ["-W", "--enhanced-conversion", "-k", "PatientName="],
    ["-P", "-S", "-k", "PatientName="],
])
def test_usage_errors_are_exit_2(demo, args):
    r = run_cli(["--batch", demo.address, str(demo.port), *args])
    assert r.returncode == ExitCode.USAGE
    assert "usage:" in r.stderr


def test_connection_refused_is_exit_3(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = run_cli(["--batch", "127.0.0.1", str(port), "-k", "PatientName="])
    assert r.returncode == ExitCode.NETWORK
    assert "connection refused" in r.stderr and "Traceback" not in r.stderr


def test_failure_status_is_exit_4(demo):
    r = run_cli(["--batch", "-S", demo.address, str(demo.port), "-k", "QueryRetrieveLevel=BOGUS"])
    assert r.returncode == ExitCode.FAILURE_STATUS, r.stderr
    assert "E: Find SCP Result: 0x" in r.stderr


def test_no_acceptable_transfer_syntax_is_exit_3():
    with DemoSCP(patients=2, transfer_syntaxes=["1.2.840.10008.1.2.2"]) as scp:
        r = run_cli(["--batch", "--transfer-syntax", "implicit", "-S", scp.address,
                     str(scp.port), *STUDY_KEYS])
    assert r.returncode == ExitCode.NETWORK, r.stderr
    assert "--transfer-syntax" in r.stderr and "Traceback" not in r.stderr


def test_extended_negotiation_bytes_and_report(demo):
    r = run_cli(["--batch", "-S", "--relational-query", "--fuzzy-names", demo.address,
                 str(demo.port), *STUDY_KEYS])
    assert r.returncode == 0, r.stderr
    assert demo.received_ext_neg["1.2.840.10008.5.1.4.1.2.2.1"] == b"\x01\x00\x01\x00\x00"
    assert "Extended negotiation: relational queries: accepted" in r.stderr


def test_worklist_extended_negotiation_bytes(demo):
    r = run_cli(["--batch", "-q", "-W", "--timezone-adj", demo.address, str(demo.port),
                 "-k", "PatientName="])
    assert r.returncode == 0, r.stderr
    assert demo.received_ext_neg["1.2.840.10008.5.1.4.31"] == b"\x01\x01\x00\x01"


@pytest.mark.parametrize("name,uid", [
    ("implicit", "1.2.840.10008.1.2"),
    ("explicit", "1.2.840.10008.1.2.1"),
    ("deflated", "1.2.840.10008.1.2.1.99"),
    ("big", "1.2.840.10008.1.2.2"),
])
def test_transfer_syntax_only(demo, tmp_path, name, uid):
    r = run_cli(["--batch", "-q", "-w", "-od", str(tmp_path), "--transfer-syntax", name, "-S",
                 demo.address, str(demo.port), *STUDY_KEYS])
    assert r.returncode == 0, r.stderr
    assert demo.last_transfer_syntax == uid
    ds = dcmread(tmp_path / "rsp000001.dcm")
    assert ds.file_meta.TransferSyntaxUID == uid
    assert ds.QueryRetrieveLevel == "STUDY" and ds.PatientName


def test_ctrl_c_cancels_and_keeps_rows(tmp_path):
    with DemoSCP(patients=20, delay_per_response=0.2) as slow:
        proc = subprocess.Popen(
            [sys.executable, "-m", "findtui", "--batch", "-S", "-w", "-od", str(tmp_path),
             "--output-format", "jsonl", "--output", str(tmp_path / "out.jsonl"),
             slow.address, str(slow.port), *STUDY_KEYS],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not (tmp_path / "rsp000003.dcm").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.CANCELLED, err
    assert "Traceback" not in err
    assert "0xFE00 (Cancel)" in err
    files = sorted(tmp_path.glob("rsp*.dcm"))
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(files) >= 3 and len(lines) == len(files)


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "findtui" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    r = run_cli(["--help"])
    assert r.returncode == 0
    for opt in ["-aet", "-aec", "-ta", "-td", "-tn", "-pdu", "-P", "-S", "-O", "-W", "-k", "-f",
                "--relational-query", "--dt-matching", "--fuzzy-names", "--timezone-adj",
                "--enhanced-conversion", "-w", "--output-format", "--batch", "--cancel",
                "--tls", "--tls-ca", "--tls-cert", "--tls-key"]:
        assert f" {opt}" in r.stdout, opt


def test_reader_closing_the_pipe_early_is_quiet():
    """`findtui --batch ... | head -2`: exit 0, no traceback from any thread."""
    with DemoSCP(studies=3000, seed=7) as big:
        cmd = (f"{sys.executable} -m findtui --batch -S --output-format csv {big.address} "
               f"{big.port} -k QueryRetrieveLevel=STUDY -k PatientName= | head -2")
        r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True,
                           text=True, timeout=120)
    assert r.stdout.splitlines()[0] == "QueryRetrieveLevel,PatientName"
    assert len(r.stdout.splitlines()) == 2
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "Error" not in r.stderr, r.stderr


def test_a_tui_that_crashes_does_not_exit_0(monkeypatch):
    """Textual shows a crash's traceback and ends; a script must not read success."""
    import findtui.app
    import findtui.cli

    class Crashed:
        return_code = 1

        def run(self):
            return None

    monkeypatch.setattr(findtui.app, "make_app", lambda *a, **kw: Crashed())
    # main() configures logging for the process: not for the tests that run after this one
    monkeypatch.setattr(findtui.cli, "setup_logging", lambda *a, **kw: None)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert findtui.cli.main([]) == ExitCode.INTERNAL == 70
    Crashed.return_code = 0
    assert findtui.cli.main([]) == ExitCode.OK
