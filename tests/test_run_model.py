"""One run model: every event sequence gives one outcome, and the CLI's exit code, the TUI's
status line and the history entry all say the same of it (they all read engine.run).

Also: the connection model is validated by one set of rules wherever the settings come
from (a profile, the command line, the TUI's form, a history line).
"""

from __future__ import annotations

import json

import pytest
from pydicom.uid import ImplicitVRLittleEndian

from findtui.cli import ExitCode, exit_code
from findtui.cli.resolve import option_message
from findtui.config import HistoryEntry, ProfileError, parse_profiles
from findtui.engine.keys import build_identifier
from findtui.engine.models import QueryModel
from findtui.engine.network import Network, NetworkError, TLSOptions, network_from
from findtui.engine.query import (
    Associated,
    AssociationFailed,
    CancelSent,
    Fault,
    Final,
    FindRequest,
    Pending,
)
from findtui.engine.run import Outcome, RunSummary
from findtui.widgets.status_line import outcome_of

ASSOC = Associated(ImplicitVRLittleEndian, None, None, 16382)


def pending(i: int) -> Pending:
    return Pending(index=i, status=0xFF00, raw=b"", transfer_syntax=ImplicitVRLittleEndian)


def pendings(n: int) -> list[Pending]:
    return [pending(i) for i in range(1, n + 1)]


# (name, events, what happened after the events (None, "interrupt", "output"),
#  outcome, exit code, rows)
CASES = [
    ("success", [ASSOC, *pendings(3), Final(0x0000)], None, Outcome.SUCCESS, 0, 3),
    ("no matches", [ASSOC, Final(0x0000)], None, Outcome.SUCCESS, 0, 0),
    ("warning final status", [ASSOC, *pendings(2), Final(0xB000)], None, Outcome.WARNING, 0, 2),
    ("failure after pendings", [ASSOC, *pendings(4), Final(0xC000, "cannot parse PatientID")], None,
     Outcome.FAILURE, 4, 4),
    ("failure at once", [ASSOC, Final(0xA900)], None, Outcome.FAILURE, 4, 0),
    ("cancel confirmed", [ASSOC, *pendings(2), CancelSent(2), Final(0xFE00, cancel_requested=True)],
     None, Outcome.CANCEL, 5, 2),
    ("Ctrl-C then the peer aborts", [ASSOC, *pendings(2), CancelSent(2),
                                     Fault("aborted", "the peer aborted", cancel_requested=True)],
     None, Outcome.CANCEL, 5, 2),
    ("Ctrl-C, peer aborts before the cancel went out",
     [ASSOC, pending(1), Fault("aborted", "the peer aborted", cancel_requested=True)],
     None, Outcome.CANCEL, 5, 1),
    ("cancel then timeout (peer ignores C-CANCEL)",
     [ASSOC, *pendings(3), CancelSent(3), Fault("cancel-timeout", "no final status",
                                                cancel_requested=True)],
     None, Outcome.CANCEL, 5, 3),
    ("cancel then DIMSE timeout", [ASSOC, pending(1), CancelSent(1),
                                   Fault("timeout", "no response", ("dimse_timeout",),
                                         cancel_requested=True)],
     None, Outcome.CANCEL, 5, 1),
    ("peer aborts mid-query", [ASSOC, *pendings(5), Fault("aborted", "the peer aborted")], None,
     Outcome.NETWORK, 3, 5),
    ("DIMSE timeout", [ASSOC, Fault("timeout", "no response", ("dimse_timeout",))], None,
     Outcome.NETWORK, 3, 0),
    ("rejected", [AssociationFailed("rejected", "rejected", ("called_aet",))], None,
     Outcome.NETWORK, 3, 0),
    ("second Ctrl-C", [ASSOC, *pendings(2), CancelSent(2)], "interrupt", Outcome.ABORTED, 5, 2),
    ("no final status", [ASSOC, pending(1)], None, Outcome.ABORTED, 5, 1),
    ("output failed, query cancelled", [ASSOC, *pendings(2), CancelSent(2),
                                        Final(0xFE00, cancel_requested=True)],
     "output", Outcome.OUTPUT, 6, 2),
]

# The peer stopped at a result limit: incomplete, exit 7 (the last column: the node's
# max_results, None when not configured).
INCOMPLETE_CASES = [
    ("unsolicited cancel (Orthanc's LimitFindResults)", [ASSOC, *pendings(3), Final(0xFE00)],
     None, Outcome.INCOMPLETE, 7, 3, None),
    ("unsolicited cancel, no matches", [ASSOC, Final(0xFE00)], None, Outcome.INCOMPLETE, 7, 0,
     None),
    ("exactly the node's max_results", [ASSOC, *pendings(3), Final(0x0000)], None,
     Outcome.INCOMPLETE, 7, 3, 3),
    ("max_results with a warning status", [ASSOC, *pendings(3), Final(0xB000)], None,
     Outcome.INCOMPLETE, 7, 3, 3),
    ("fewer than max_results", [ASSOC, *pendings(2), Final(0x0000)], None, Outcome.SUCCESS, 0, 2,
     3),
    ("more than max_results (the limit is not the peer's)", [ASSOC, *pendings(4), Final(0x0000)],
     None, Outcome.SUCCESS, 0, 4, 3),
    ("failure: too many matches (dcm4chee)",
     [ASSOC, Final(0xA700, "Too many matches, refine your query")], None,
     Outcome.INCOMPLETE, 7, 0, None),
    ("failure: query too broad, after pendings",
     [ASSOC, *pendings(2), Final(0xC001, "QUERY TOO BROAD")], None, Outcome.INCOMPLETE, 7, 2, None),
    ("failure: another comment stays a failure", [ASSOC, Final(0xA700, "Out of memory")], None,
     Outcome.FAILURE, 4, 0, None),
    ("max_results reached, but the user cancelled",
     [ASSOC, *pendings(3), CancelSent(3), Final(0xFE00, cancel_requested=True)], None,
     Outcome.CANCEL, 5, 3, 3),
    ("cancel sent, the peer ignored it and ended at max_results",
     [ASSOC, *pendings(3), CancelSent(2), Final(0x0000, cancel_requested=True)], None,
     Outcome.SUCCESS, 0, 3, 3),
]


@pytest.mark.parametrize("events, after, outcome, code, rows, max_results",
                         [(*c[1:], None) for c in CASES] + [c[1:] for c in INCOMPLETE_CASES],
                         ids=[c[0] for c in CASES + INCOMPLETE_CASES])
def test_cli_tui_and_history_agree_on_every_run(events, after, outcome, code, rows, max_results):
    request = FindRequest(Network("h", 104, max_results=max_results),
                          build_identifier(["PatientID="]), QueryModel.STUDY)
    summary = RunSummary.of(request)
    for event in events:
        summary.feed(event)
    if after == "interrupt":
        summary.interrupted()
    elif after == "output":
        summary.output_failed("cannot write 'x': No space left on device")
    summary.finish()
    assert summary.outcome is outcome and summary.received == rows
    # the CLI's exit code, the TUI's status line, the history entry
    assert exit_code(summary) == ExitCode(code)
    shown = outcome_of(summary)
    assert shown.category == outcome.value and shown.title
    if outcome is Outcome.INCOMPLETE:  # says why it believes more exist, everywhere
        assert shown.title == "Incomplete" and summary.incomplete in shown.detail
        from findtui.cli.batch import incomplete_message

        line = incomplete_message(summary)
        assert f"{rows:,} match" in line and "--split auto" in line
    entry = HistoryEntry.from_run(request, summary, source="tui")
    assert entry.outcome == outcome.value and entry.results == rows
    again = HistoryEntry.from_json(json.loads(json.dumps(entry.to_json())))
    assert again.outcome == outcome.value and again.network.max_results == max_results


def test_the_tui_points_at_the_form_and_the_cli_at_the_options():
    summary = RunSummary()
    summary.feed(AssociationFailed("rejected", "the SCP is not called 'X': check the called "
                                   "AE title", ("called_aet",)))
    summary.finish()
    assert outcome_of(summary).detail.endswith("(Network tab, Called AE)")
    from findtui.cli.resolve import hinted

    assert hinted(summary.detail, summary.settings).endswith("(-aec)")
    assert "-aec" not in summary.detail  # the engine's own words name no flag


# --- one connection model, one set of rules ------------------------------------------

BAD = [
    ({"calling_aet": "X" * 17}, "calling_aet", "-aet", "Calling AE"),
    ({"called_aet": "A\\B"}, "called_aet", "-aec", "Called AE"),
    ({"acse_timeout": 0}, "acse_timeout", "-ta", "ACSE timeout"),
    ({"max_pdu": -1}, "max_pdu", "-pdu", "Max PDU"),
    ({"port": 70000}, "port", "port", "Port"),
    ({"max_results": 0}, "max_results", "--max-results", "max_results"),
]


@pytest.mark.parametrize("change, setting, flag, label", BAD,
                         ids=[b[1] for b in BAD])
def test_one_rule_for_profiles_command_line_and_form(change, setting, flag, label):
    data = {"address": "h", "port": 104, **change}
    with pytest.raises(NetworkError) as err:
        network_from(data)
    assert err.value.setting == setting
    assert flag in option_message(err.value)  # the CLI names the option
    text = "\n".join(f"{k} = {json.dumps(v)}" for k, v in data.items())
    with pytest.raises(ProfileError, match=setting):  # the profiles file, same rule
        parse_profiles(f"[nodes.a]\n{text}\n")
    with pytest.raises(NetworkError):  # the form's text fields, same rule
        network_from({k: str(v) for k, v in data.items()}, strings=True)


def test_a_network_round_trips_through_every_store():
    net = Network("pacs", 11112, "ME", "PACS", 5.0, 6.0, 7.0, 0,
                  TLSOptions("ca.pem", "c.pem", "k.pem", False), None, "explicit")
    assert network_from(net.to_dict()) == net
    assert network_from({k: str(v) for k, v in net.to_dict().items() if k != "tls"}
                        | {"tls": net.to_dict()["tls"]}, strings=True) == net
    assert net.validated() is not None
