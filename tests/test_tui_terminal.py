"""The CLI -> TUI path in a real terminal: ``python -m findtui ...`` in tmux.

Each test starts its own tmux server (a socket of its own, ``tmux -L``, no
user config), runs findtui in a 100x30 pane exactly as a user types it,
sends keys with ``tmux send-keys`` and reads the screen with ``tmux
capture-pane``, polling until what it expects is on screen (or failing with
the screen in the message). The command line in the pane writes findtui's
exit status to a file when findtui ends (tmux's own ``pane_dead_status`` was
seen to miss an exit), and the pane is kept (``remain-on-exit``), so the last
screen can still be read.

Nothing here imports findtui: the tests hold whatever its modules become.
The app's stderr is never redirected (Textual draws on it).

The DICOM peer is ``findtui demo-scp --port 0`` in a subprocess; what it
holds is read from its own banner and from ``findtui --batch`` against it,
never hard-coded.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

LOCALHOST = "127.0.0.1"
DEADLINE = 30.0  # s to wait for something to show up on screen (startup included)
WIDTH, HEIGHT = 100, 30

_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+) \((\d+) patients, (\d+) studies\)")
_MATCHES = re.compile(r"Success\W+(\d+) match")


# --------------------------------------------------------------------------
# tmux
# --------------------------------------------------------------------------


class Terminal:
    """One tmux server with one session running one command."""

    def __init__(self, workdir: Path) -> None:
        tmux = shutil.which("tmux")
        if tmux is None:
            pytest.fail("tmux is not installed: apt-get install -y tmux", pytrace=False)
        self.tmux = tmux
        self.socket = f"findtui-test-{os.getpid()}-{uuid.uuid4().hex[:10]}"
        self.session = "findtui"
        self.conf = workdir / "tmux.conf"
        self.status_file = workdir / "findtui.status"
        self.conf.write_text(
            "set -g default-shell /bin/sh\n"
            "set -g remain-on-exit on\n"  # keep the pane (and its screen) when findtui exits
            "set -g status off\n"  # all 30 lines are findtui's
            "set -sg escape-time 0\n"
        )
        self.started = False
        self.socket_path = ""

    def _tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, LANG="C.UTF-8")
        env.pop("TMUX", None)
        return subprocess.run([self.tmux, "-u", "-L", self.socket, "-f", str(self.conf), *args],
                              capture_output=True, text=True, timeout=30, check=check, env=env)

    def start(self, args: list[str], env: dict[str, str]) -> None:
        """Run ``python -m findtui ARGS`` in the pane, with these variables set."""
        findtui = " ".join([
            "env", *(shlex.quote(f"{k}={v}") for k, v in env.items()),
            shlex.quote(sys.executable), "-m", "findtui", *map(shlex.quote, args),
        ])
        status = shlex.quote(str(self.status_file))
        command = f"{findtui}; echo $? > {status}.tmp && mv {status}.tmp {status}"
        self.started = True
        self._tmux("new-session", "-d", "-x", str(WIDTH), "-y", str(HEIGHT),
                   "-s", self.session, command)
        self.socket_path = self._tmux("display-message", "-p", "#{socket_path}").stdout.strip()

    def kill(self) -> None:
        """Stop the tmux server (and findtui, if still running) and remove its socket."""
        if self.started:
            self._tmux("kill-server", check=False)
            self.started = False
            if self.socket_path:
                with contextlib.suppress(OSError):
                    os.unlink(self.socket_path)

    def screen(self, scrollback: bool = False) -> str:
        """The visible screen (with ``scrollback``, the lines scrolled off it too)."""
        r = self._tmux("capture-pane", "-p", *(["-S", "-"] if scrollback else []),
                       "-t", self.session, check=False)
        return r.stdout if r.returncode == 0 else f"(no pane: {r.stderr.strip()})"

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.session, *keys)

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", self.session, "-l", text)

    def exit_status(self) -> int | None:
        """The findtui process's exit status, or None while it runs."""
        try:
            return int(self.status_file.read_text())
        except FileNotFoundError:
            return None

    def wait_for(self, predicate: Callable[[str], bool], what: str,
                 timeout: float = DEADLINE) -> str:
        """Poll the screen until ``predicate(screen)`` holds on a settled screen (two
        captures in a row alike: Textual may draw a screen in several writes); fail
        with the screen if it never does."""
        deadline = time.monotonic() + timeout
        previous = None
        while True:
            text = self.screen()
            if predicate(text) and text == previous:
                return text
            previous = text
            if time.monotonic() > deadline:
                status = self.exit_status()
                ended = "" if status is None else f" (findtui exited with status {status})"
                pytest.fail(f"never saw {what} on the terminal{ended}; the screen:\n{text}",
                            pytrace=False)
            time.sleep(0.15)

    def wait_for_text(self, *texts: str, timeout: float = DEADLINE) -> str:
        return self.wait_for(lambda s: all(t in s for t in texts),
                             " and ".join(repr(t) for t in texts), timeout)

    def wait_for_exit(self, timeout: float = DEADLINE) -> int:
        deadline = time.monotonic() + timeout
        while (status := self.exit_status()) is None:
            if time.monotonic() > deadline:
                pytest.fail(f"findtui did not exit; the screen:\n{self.screen()}", pytrace=False)
            time.sleep(0.1)
        return status


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(tmp_path)
    try:
        yield term
    finally:
        term.kill()


@pytest.fixture
def app_env(findtui_config_dir: Path) -> dict[str, str]:
    """The variables findtui gets in the pane: the test's own config dir (the tmux
    server's environment is not relied on), and the import path if one is set."""
    assert os.environ["FINDTUI_CONFIG_DIR"] == str(findtui_config_dir)
    env = {"FINDTUI_CONFIG_DIR": str(findtui_config_dir), "LANG": "C.UTF-8",
           "PYTHONIOENCODING": "utf-8"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def quit_app(term: Terminal) -> None:
    """Ctrl+Q; findtui must end, with status 0."""
    term.keys("C-q")
    status = term.wait_for_exit()
    # What findtui printed as it ended (a crash's traceback would be there, and
    # findtui exits 0 even then) is still in the kept pane.
    term.wait_for(lambda s: True, "the screen after findtui ended")
    screen = term.screen(scrollback=True)
    assert status == 0, f"findtui exited with status {status}; the screen:\n{screen}"
    assert "Traceback" not in screen and "Error" not in screen, screen


# --------------------------------------------------------------------------
# A demo SCP of our own, and what it holds (asked through the batch CLI)
# --------------------------------------------------------------------------


def run_cli(args: list[str], timeout: float = 90) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "findtui", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def demo_scp(*args: str) -> Iterator[tuple[int, int]]:
    """``findtui demo-scp --port 0 ARGS``; yields (port, number of studies); stopped on exit."""
    proc = subprocess.Popen([sys.executable, "-m", "findtui", "demo-scp", "--port", "0", *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = _LISTENING.search(line)
        if match is None:
            proc.kill()
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"demo-scp did not report where it listens: {line!r} {err[-2000:]}")
        yield int(match.group(1)), int(match.group(3))
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=30)


def batch_rows(port: int, *keys: str) -> list[dict[str, str]]:
    """The study-level rows the peer gives ``findtui --batch -S`` for these keys."""
    r = run_cli(["--batch", "-q", "--output-format", "csv", LOCALHOST, str(port), "-S",
                 "-k", "QueryRetrieveLevel=STUDY", *[a for k in keys for a in ("-k", k)]])
    assert r.returncode == 0, r.stderr
    return list(csv.DictReader(io.StringIO(r.stdout)))


def match_count(screen: str) -> int | None:
    found = _MATCHES.search(screen)
    return int(found.group(1)) if found else None


def open_network_settings(term: Terminal) -> str:
    """The Network tab, through the command palette (Ctrl+P, "Network settings")."""
    term.keys("C-p")
    term.wait_for_text("Search")
    term.type("Network settings")
    term.wait_for_text("Network settings")
    term.keys("Enter")
    return term.wait_for_text("Address", "Port", "Called AE")


def line_with(screen: str, *texts: str) -> str | None:
    return next((line for line in screen.splitlines() if all(t in line for t in texts)), None)


# --------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------


def test_no_arguments_opens_the_empty_form_and_ctrl_q_quits(terminal, app_env):
    terminal.start([], app_env)
    screen = terminal.wait_for_text("Run (F5)", "Ready")
    assert terminal.exit_status() is None
    # Empty: no peer in the form.
    screen = open_network_settings(terminal)
    address = line_with(screen, "Address")
    assert address is not None and LOCALHOST not in address, screen
    quit_app(terminal)


def test_demo_opens_on_the_demo_scp_and_f5_shows_its_rows(terminal, app_env):
    # What the demo holds, with the demo's defaults: asked of `findtui demo-scp`.
    with demo_scp() as (port, studies):
        rows = batch_rows(port, "PatientID=", "StudyDescription=")
    assert len(rows) == studies > 0
    first = rows[0]

    terminal.start(["--demo"], app_env)
    terminal.wait_for_text("Run (F5)", "Ready")
    assert match_count(terminal.screen()) is None
    terminal.keys("F5")
    screen = terminal.wait_for(lambda s: match_count(s) is not None, "the status line's matches")
    assert match_count(screen) == studies, screen
    assert line_with(screen, first["PatientID"], first["StudyDescription"]), \
        f"the first match {first} is not on screen:\n{screen}"
    quit_app(terminal)


def test_address_port_and_keys_open_the_filled_form_and_f5_runs_it(terminal, app_env):
    with demo_scp("--patients", "5", "--seed", "3") as (port, _):
        expected = batch_rows(port, "PatientID=PAT00002", "PatientName=")
        assert expected and {r["PatientID"] for r in expected} == {"PAT00002"}
        assert len(batch_rows(port, "PatientID=")) > len(expected)  # the key filters

        terminal.start([LOCALHOST, str(port), "-S", "-aec", "FROMCLI",
                        "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=PAT00002",
                        "-k", "PatientName="], app_env)
        # The called AE title, in the breadcrumb; the status line ready.
        screen = terminal.wait_for_text("FROMCLI", "Ready")
        if "PatientID=PAT00002" not in screen:  # the form may start hidden
            terminal.keys("F2")
            screen = terminal.wait_for_text("PatientID=PAT00002")
        assert match_count(screen) is None

        screen = open_network_settings(terminal)
        assert line_with(screen, "Address", LOCALHOST), screen
        assert line_with(screen, "Port", str(port)), screen
        assert line_with(screen, "Called AE", "FROMCLI"), screen

        terminal.keys("F5")
        screen = terminal.wait_for(lambda s: match_count(s) is not None,
                                   "the status line's matches")
        assert match_count(screen) == len(expected), screen
        name = expected[0]["PatientName"].split("^")[0]
        table = [line for line in screen.splitlines() if "PAT0000" in line and "=" not in line]
        assert len(table) == len(expected), screen
        assert all("PAT00002" in line and name in line for line in table), screen
        quit_app(terminal)


def test_profile_opens_the_form_on_the_saved_node(terminal, app_env):
    with demo_scp("--patients", "4", "--seed", "11") as (port, studies):
        # -S: the node's default model, so that F5 asks for studies.
        r = run_cli(["profiles", "add", "lab-pacs", LOCALHOST, str(port), "-aec", "LABPACS",
                     "-S"])
        assert r.returncode == 0, r.stderr

        terminal.start(["--profile", "lab-pacs"], app_env)
        # The node's called AE title and model, in the breadcrumb.
        screen = terminal.wait_for_text("LABPACS", "Study Root", "Ready")
        screen = open_network_settings(terminal)
        assert line_with(screen, "Address", LOCALHOST), screen
        assert line_with(screen, "Port", str(port)), screen
        assert line_with(screen, "Called AE", "LABPACS"), screen

        terminal.keys("F5")  # the default study query, against the saved node
        screen = terminal.wait_for(lambda s: match_count(s) is not None,
                                   "the status line's matches")
        assert match_count(screen) == studies, screen
        quit_app(terminal)


@pytest.mark.parametrize("tty", [None, "stdin", "stdout"],
                         ids=["pipes", "stdin-tty-only", "stdout-tty-only"])
def test_tui_without_a_terminal_is_a_usage_error(tty, tmp_path):
    """stdin or stdout not a terminal: exit 2, a one-line reason naming --batch."""
    import pty

    master, slave = pty.openpty()
    try:
        streams = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
        if tty:
            streams[tty] = slave
        env = dict(os.environ, PYTHONIOENCODING="utf-8")
        proc = subprocess.Popen([sys.executable, "-m", "findtui"], stderr=subprocess.PIPE,
                                env=env, cwd=tmp_path, **streams)
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        os.close(master)
        os.close(slave)
    err = err.decode("utf-8")
    assert proc.returncode == 2, err
    assert "Traceback" not in err, err
    reason = [line for line in err.splitlines() if "terminal" in line]
    assert len(reason) == 1, err
    assert "needs a terminal" in reason[0] and "--batch" in reason[0], err
