"""The TUI against misbehaving peers (issue 5): hostile values shown escaped and
visible (table, detail screen, log pane, status line), and the query path under
faults (rejected, refused, aborted, timed out): a one-line status, the rows
received before the fault kept, no crash.

Peers are loopback only, on free ports, started and stopped by each test: a
pynetdicom SCP (tests/faultscp.pynetdicom_scp) and the raw-socket FaultSCP.
"""

from __future__ import annotations

import re
import socket

import pytest
from pydicom.dataset import Dataset
from textual.widgets import Log, Tree

from faultscp import REJECTIONS, FaultSCP, pynetdicom_scp
from findtui.app import make_app
from findtui.engine.keys import build_identifier
from findtui.engine.models import QueryModel
from findtui.engine.query import FindRequest, Network
from findtui.screens.detail import DetailScreen
from findtui.widgets.results_table import ResultsTable
from findtui.widgets.status_line import StatusLine

# pydicom warns about the hostile values (raw, in pytest's summary): the TUI never shows those.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

from pilot import run_and_wait, sync, wait_for  # noqa: E402

SIZE = (80, 24)
ESC, BEL = "\x1b", "\x07"
HOSTILE = (
    f"A{ESC}[31mRED{ESC}[0m{BEL}"                 # CSI colours, BEL
    f"{ESC}]0;pwned{BEL}"                        # OSC 0: window title
    f"{ESC}]52;c;ZWNobw=={BEL}"                  # OSC 52: clipboard write
    "\x9b2J\x85"                                 # C1: CSI, NEL
    "\x00\x7f\x08\r\n"                            # C0, DEL
    "[bold red]markup[/bold red][link=https://e.vil]click[/link]"  # Rich markup
    "\u202eevil\u202c\u200b"                      # bidi override, zero width
)
# Nothing of this may reach the screen raw.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")
VISIBLE_FORMS = ["A␛[31mRED␛[0m␇", "␛]0;pwned␇", "␛]52;c;ZWNobw==␇", "<U+009B>2J<U+0085>",
                 "␀␡␈␍␊[bold red]markup[/bold red][link=https://e.vil]click[/link]",
                 "<U+202E>evil<U+202C><U+200B>"]
KEYS = ["QueryRetrieveLevel=PATIENT", "PatientName=", "PatientID=", "PatientComments="]






def app_for(address: str, port: int, called: str = "ANY-SCP", **network):
    request = FindRequest(network=Network(address, port, called_aet=called, **network),
                          model=QueryModel.PATIENT, identifier=build_identifier(KEYS))
    app = make_app(request)
    app.show_timing = False
    return app



def lines_of(widget) -> list[str]:
    """What a line-API widget (table, tree, log) puts on the screen, line by line."""
    return [widget.render_line(y).text for y in range(widget.size.height)]


def assert_safe(text: str, where: str) -> None:
    """No unsafe character in any line of ``text`` (lines joined with LF by the test)."""
    for line in text.split("\n"):
        found = UNSAFE.search(line)
        assert found is None, \
            f"raw {found.group()!r} in the {where}: {line[:found.start() + 20]!r}"


def status_text(screen) -> str:
    return str(screen.query_one(StatusLine).render())


# --- hostile values -----------------------------------------------------------------


def hostile_responses(event):
    for i in range(2):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.QueryRetrieveLevel = "PATIENT"
        ds.PatientName = HOSTILE if i == 0 else "[bold red]RED[/bold red]\x9b2J"
        ds.PatientID = f"P{i}"
        ds.PatientComments = HOSTILE if i == 0 else "[link=https://e.vil]L[/link]\u202eX"
        yield 0xFF00, ds
    status = Dataset()
    status.Status = 0xC000
    status.ErrorComment = HOSTILE[:60]
    yield status, None


FORMULAS = [('=HYPERLINK("https://e.vil","x")', "-2+3"), ("@SUM(A1:A2)", "+1"),
            ("Doe^John", "plain")]


def formula_responses(event):
    for i, (name, comments) in enumerate(FORMULAS):
        ds = Dataset()
        ds.QueryRetrieveLevel = "PATIENT"
        ds.PatientName = name
        ds.PatientID = f"P{i}"
        ds.PatientComments = comments
        yield 0xFF00, ds
    yield 0x0000, None


@sync
async def test_csv_export_offers_excel_safe_cells(tmp_path):
    import csv

    from textual.widgets import Checkbox, Input

    from findtui.screens.export import ExportScreen

    with pynetdicom_scp(formula_responses, ae_title="FORMULAS") as (address, port):
        app = app_for(address, port, "FORMULAS")
        async with app.run_test(size=(80, 24)) as pilot:
            await run_and_wait(pilot)
            for name, safe in (("as-is.csv", False), ("safe.csv", True)):
                await pilot.press("f6")
                await pilot.pause()
                dialog = app.screen
                assert isinstance(dialog, ExportScreen)
                box = dialog.query_one("#export-excel-safe", Checkbox)
                assert not box.display  # rsp*.dcm: no such choice
                dialog.query_one("#export-kind").query("RadioButton")[1].value = True  # CSV
                await pilot.pause()
                assert box.display and box.value is False  # offered, off by default
                box.value = safe
                dialog.query_one("#export-folder", Input).value = str(tmp_path)
                dialog.query_one("#export-file", Input).value = name
                dialog.query_one("#export-file", Input).focus()
                await pilot.press("enter")
                await wait_for(pilot, lambda: any(
                    f"as CSV to {tmp_path / name}" in n.message for n in app._notifications),
                    what=f"{name} written")
                await pilot.pause()
            await app.workers.wait_for_complete()

    def cells(name):
        with open(tmp_path / name, newline="", encoding="utf-8") as fp:
            return [(r["PatientName"], r["PatientComments"]) for r in csv.DictReader(fp)]

    assert cells("as-is.csv") == FORMULAS
    assert cells("safe.csv") == [("'" + FORMULAS[0][0], "'-2+3"), ("'@SUM(A1:A2)", "'+1"),
                                 ("Doe^John", "plain")]


@sync
async def test_hostile_values_are_shown_escaped_in_table_detail_and_log():
    with pynetdicom_scp(hostile_responses, ae_title="HOSTILE") as (address, port):
        app = app_for(address, port, "HOSTILE")
        async with app.run_test(size=(200, 40)) as pilot:
            screen = await run_and_wait(pilot)
            table = screen.query_one(ResultsTable)
            assert table.total_count == 2  # the rows before the failure status stay
            # The cells: every control escaped, markup as typed.
            for n in range(2):
                for cell in table.get_row(n):
                    assert_safe(cell, "table cells")
            comments = table.get_row(0)[list(table.columns).index("PatientComments")]
            for form in VISIBLE_FORMS:
                assert form in comments, form
            shown = "\n".join(lines_of(table))
            assert_safe(shown, "table")
            # (the columns are narrower than the values: row 2 has short ones)
            assert "A␛[31mRED␛[0m␇␛]0;pwned␇" in shown
            assert "[bold red]RED[/bold red]<U+009B>2J" in shown
            assert "[link=https://e.vil]L[/link]<U+202E>X" in shown
            # The status line: one line, the failure and its (escaped) comment.
            status = status_text(screen)
            assert_safe(status, "status line")
            assert "\n" not in status and "Failure" in status and "A␛[31mRED" in status
            # The whole screen, as a screenshot: no control character anywhere.
            assert_safe(app.export_screenshot(), "screenshot")
            # The log pane.
            await pilot.press("f3")
            await pilot.pause()
            log = screen.query_one("#log", Log)
            assert_safe("\n".join(log.lines), "log")
            assert any("A␛[31mRED" in line for line in log.lines)
            assert_safe("\n".join(lines_of(log)), "log pane")
            # The detail screen.
            await pilot.press("f3")
            table.focus()
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, DetailScreen)
            tree = app.screen.query_one(Tree)
            detail = "\n".join(lines_of(tree))
            assert_safe(detail, "detail screen")
            assert "A␛[31mRED␛[0m␇␛]0;pwned␇" in detail
            assert "[bold red]markup[/bold red][link=https://e.vil]click[/link]" in detail
            assert_safe(app.export_screenshot(), "detail screenshot")


def hostile_bytes_script(s):
    """Raw C1 bytes in a Latin-1 value, a hostile SpecificCharacterSet, a hostile comment."""
    latin1 = HOSTILE.replace("\u202e", "").replace("\u202c", "").replace("\u200b", "")
    s.pending(s.element(0x00080005, "CS", b"ISO_IR 100")
              + s.element(0x00100010, "PN", latin1.encode("latin-1"))
              + s.element(0x00100020, "LO", b"P1"))
    s.pending(s.element(0x00080005, "CS", f"ISO_IR {ESC}]0;cs{BEL}".encode())
              + s.element(0x00100020, "LO", b"P2"))
    s.final(0xA700, comment=HOSTILE.encode("utf-8")[:64])
    s.finish()


@sync
async def test_raw_c1_bytes_and_a_hostile_character_set_stay_visible():
    with FaultSCP(hostile_bytes_script) as scp:
        app = app_for(scp.address, scp.port)
        async with app.run_test(size=(160, 30)) as pilot:
            screen = await run_and_wait(pilot)
            table = screen.query_one(ResultsTable)
            assert table.total_count == 2
            assert_safe("\n".join(lines_of(table)), "table")
            name = table.get_row(0)[list(table.columns).index("PatientName")]
            assert "<U+009B>2J<U+0085>" in name and "[bold red]markup" in name
            assert_safe(status_text(screen), "status line")
            assert_safe("\n".join(screen.query_one("#log", Log).lines), "log")
            assert_safe(app.export_screenshot(), "screenshot")
            for n in app._notifications:
                assert_safe(f"{n.title} {n.message}", "notification")
        assert not scp.errors


# --- faults -----------------------------------------------------------------------


def pendings(n: int) -> list[dict]:
    return [{"QueryRetrieveLevel": "PATIENT", "PatientName": f"DOE^{i}", "PatientID": f"P{i}",
             "PatientComments": ""} for i in range(n)]


def abort_after_3(s):
    for ds in pendings(3):
        s.pending(ds)
    s.abort()


def hang_after_2(s):
    for ds in pendings(2):
        s.pending(ds)
    s.hang(30)


def close_mid_pdu(s):
    for ds in pendings(2):
        s.pending(ds)
    s.raw(b"\x04\x00\x00\x00\x01\x00\x00\x00")  # a P-DATA-TF header promising 256 bytes
    s.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("case,rows,title", [
    ("abort", 3, "Connection lost"),
    ("hang", 2, "Timed out"),
    ("close", 2, "Connection lost"),
    ("rejected", 0, "Association rejected"),
    ("refused", 0, "Cannot connect"),
])
@sync
async def test_faults_give_a_one_line_status_and_keep_the_rows(case, rows, title):
    scripts = {"abort": abort_after_3, "hang": hang_after_2, "close": close_mid_pdu}
    if case == "refused":
        scp = None
        address, port = "127.0.0.1", free_port()
    else:
        scp = FaultSCP(scripts.get(case),
                       reject=REJECTIONS["permanent-user-called-aet"] if case == "rejected"
                       else None).start()
        address, port = scp.address, scp.port
    try:
        app = app_for(address, port, dimse_timeout=1, acse_timeout=5, network_timeout=5)
        async with app.run_test(size=SIZE) as pilot:
            screen = await run_and_wait(pilot)
            assert app.is_running
            table = screen.query_one(ResultsTable)
            assert table.total_count == rows
            assert [table.get_row(n)[1] for n in range(rows)] == [f"P{i}" for i in range(rows)]
            status = status_text(screen)
            assert "\n" not in status and len(status) < 400
            assert screen.query_one(StatusLine).state == "network", status
            assert title in status
            assert f"{rows} match" in status
            # What happened, in the log pane and a notification too.
            assert any(line.startswith("E: ") for line in screen.query_one("#log", Log).lines)
            assert any(n.severity == "error" for n in app._notifications)
            # The user can go on: the form is there to fix things.
            if rows == 0:
                assert screen.form_visible
    finally:
        if scp is not None:
            scp.stop()
