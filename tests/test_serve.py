"""`findtui serve`: the TUI in a real headless browser (Debian's chromium, driven by
Playwright), a demo query run from the page, exports delivered as browser downloads;
and what `serve` says about where it listens."""

from __future__ import annotations

import csv
import io
import os
import shlex
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

import peers
from findtui.cli.serve import app_command, build_serve_parser, is_loopback

CHROMIUM = "/usr/bin/chromium"

# The page keeps its xterm.js Terminal in a closure: catch it when textual-serve's page
# script assigns it (`this.terminal = new Terminal(...)`), then read the screen from the
# terminal's own buffer — the text the browser shows, whichever renderer draws it.
CATCH_TERMINAL = """
Object.defineProperty(Object.prototype, 'terminal', {
  configurable: true,
  set(value) {
    Object.defineProperty(this, 'terminal',
      {value, writable: true, configurable: true, enumerable: true});
    if (value && value.buffer && typeof value.write === 'function') {
      window.__findtuiTerminal = value;
    }
  },
});
window.__screenText = () => {
  const term = window.__findtuiTerminal;
  if (!term) return '';
  const buffer = term.buffer.active, lines = [];
  for (let y = 0; y < term.rows; y++) {
    const line = buffer.getLine(buffer.viewportY + y);
    lines.push(line ? line.translateToString(true) : '');
  }
  return lines.join('\\n');
};
"""


def _serve(*options: str, port: int, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "findtui", "serve", "--port", str(port), *options],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own group: the tab's app processes stop with it


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture
def served_demo(tmp_path: Path) -> Iterator[str]:
    """`findtui serve --demo` on a free loopback port; its URL."""
    peers.require_python_module("textual_serve", "textual-serve")
    log = tmp_path / "serve.log"
    for _ in range(3):
        port = peers.free_port()
        proc = _serve("--demo", port=port, log=log)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            if peers._port_open("127.0.0.1", port):
                try:
                    yield f"http://127.0.0.1:{port}/"
                finally:
                    _stop(proc)
                return
            time.sleep(0.1)
        _stop(proc)  # died (the port was taken meanwhile) or never listened: another port
    pytest.fail(f"findtui serve did not start:\n{log.read_text(errors='replace')}")


@pytest.fixture
def browser():
    peers.require_binary(CHROMIUM, "chromium")
    peers.require_python_module("playwright", "playwright")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Playwright's own browser builds are not used: Debian's chromium, as root.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def _screen(page) -> str:
    return page.evaluate("window.__screenText()")


def _wait_for_text(page, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = _screen(page)
        if text in screen:
            return screen
        time.sleep(0.1)
    pytest.fail(f"{text!r} never appeared in the browser; the screen:\n{_screen(page)}")


def _export(page, downloads: list, keys: list[str], shows: str):
    """F6, ``keys`` in the dialog, then (once the dialog ``shows`` that) Enter in the name
    field; the download the browser receives."""
    before = len(downloads)
    page.keyboard.press("F6")
    _wait_for_text(page, "Export results")
    for key in keys:
        page.keyboard.press(key)
        page.wait_for_timeout(150)  # one key at a time, as a user types
    _wait_for_text(page, shows)
    for key in ("Tab", "Tab", "Enter"):  # to the rows, to the name, export
        page.keyboard.press(key)
        page.wait_for_timeout(150)
    deadline = time.monotonic() + 30
    while len(downloads) == before and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert len(downloads) > before, f"no download; the screen:\n{_screen(page)}"
    _wait_for_text(page, "Sent ")
    return downloads[-1]


def test_served_in_a_browser_runs_the_demo_query_and_exports_as_downloads(served_demo, browser):
    context = browser.new_context(viewport={"width": 1200, "height": 800},
                                  accept_downloads=True)
    downloads: list = []
    # textual-serve opens each download in a new tab
    context.on("page", lambda tab: tab.on("download", lambda d: downloads.append(d)))
    page = context.new_page()
    page.add_init_script(CATCH_TERMINAL)
    page.goto(served_demo)
    screen = _wait_for_text(page, "FINDTUI-DEMO")  # the app, opened on its own demo SCP
    assert "Study Root" in screen
    page.locator(".xterm-helper-textarea").focus()
    page.keyboard.press("F5")
    screen = _wait_for_text(page, "✔ Success")
    assert "119 matches" in screen
    assert "White, Jessica" in screen and "PAT00001" in screen  # rows, in the browser

    # CSV: the second kind (its Excel-safe choice appears)
    csv_download = _export(page, downloads, ["ArrowDown", "Enter"], shows="Excel-safe")
    assert csv_download.suggested_filename == "findtui-results.csv"
    rows = list(csv.reader(io.StringIO(Path(csv_download.path()).read_text("utf-8"))))
    assert rows[0][:2] == ["PatientName", "PatientID"]
    assert len(rows) == 1 + 119
    assert rows[1][:2] == ["White^Jessica", "PAT00001"]

    # rsp*.dcm: one ZIP of the files -w would write
    zip_download = _export(page, downloads, [], shows="findtui-responses.zip")
    assert zip_download.suggested_filename == "findtui-responses.zip"
    with zipfile.ZipFile(zip_download.path()) as archive:
        names = archive.namelist()
        assert len(names) == 119 and names[0] == "rsp000001.dcm"
        ds = dcmread(io.BytesIO(archive.read(names[0])))
    assert ds.PatientID == "PAT00001"
    assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.2.2.1"
    context.close()


def test_serve_elsewhere_than_loopback_warns_that_there_is_no_authentication():
    # 192.0.2.1 (TEST-NET-1) is no address of this machine: the warning, then a clear error.
    port = peers.free_port()
    result = subprocess.run(
        [sys.executable, "-m", "findtui", "serve", "--host", "192.0.2.1", "--port", str(port)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "WARNING" in result.stderr and "no authentication" in result.stderr
    assert "reverse proxy" in result.stderr
    assert "cannot listen on 192.0.2.1" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_on_a_port_in_use_says_so(tmp_path: Path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "findtui", "serve", "--port", str(port)],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "choose another --port" in result.stderr
    assert "WARNING" not in result.stderr  # loopback: nothing to warn about
    assert "Traceback" not in result.stderr


def test_each_tab_runs_this_python_with_the_served_options():
    args = build_serve_parser().parse_args(["--demo", "--profile", "my pacs", "--no-history"])
    assert shlex.split(app_command(args)) == [
        sys.executable, "-m", "findtui", "--demo", "--profile", "my pacs", "--no-history"]
    assert build_serve_parser().parse_args([]).host == "127.0.0.1"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5")


def test_serve_with_an_unknown_profile_says_so_before_serving():
    result = subprocess.run(
        [sys.executable, "-m", "findtui", "serve", "--port", str(peers.free_port()),
         "--profile", "nope"], capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert "no node profile 'nope'" in result.stderr
    assert "open http" not in result.stderr and "Traceback" not in result.stderr
