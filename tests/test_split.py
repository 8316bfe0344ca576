"""--split: a query cut on its date key into sub-queries on one association, so that a capped
PACS loses nothing. Against the demo SCP's three caps and a real Orthanc with
LimitFindResults, the split answer is exactly the uncapped peer's; a day still over the
cap is reported (exit 7, the day named); bad input is refused before anything is sent.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
import io
import json
import subprocess
import sys

import pytest

from faultscp import assert_no_traceback, run_findtui
from findtui.config import History
from findtui.demo import DemoSCP
from findtui.demo.scp import DemoData
from findtui.engine.keys import build_identifier
from findtui.engine.models import QueryModel
from findtui.engine.split import (
    DateRange, SplitError, SplitPlan, calendar_ranges, query_range,
)
from findtui.engine.query import FindRequest, Network

import peers

EXIT_OK, EXIT_USAGE, EXIT_CANCELLED, EXIT_INCOMPLETE = 0, 2, 5, 7  # README "Exit codes"
SEED, PATIENTS, CAP = 3, 40, 9
STUDY = ["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=", "-k", "StudyDate="]
D = dt.date


def at(scp, *args: str) -> list[str]:
    return [*args, "-aec", scp.ae_title, scp.address, str(scp.port)]


def uids(csv_text: str, column: str = "StudyInstanceUID") -> list[str]:
    return [row[column] for row in csv.DictReader(io.StringIO(csv_text))]


# --- the sub-ranges ---------------------------------------------------------------------


def test_calendar_ranges():
    whole = DateRange(D(2023, 12, 30), D(2024, 3, 2))
    assert calendar_ranges(whole, "year") == [
        DateRange(D(2023, 12, 30), D(2023, 12, 31)), DateRange(D(2024, 1, 1), D(2024, 3, 2))]
    assert calendar_ranges(whole, "month") == [
        DateRange(D(2023, 12, 30), D(2023, 12, 31)), DateRange(D(2024, 1, 1), D(2024, 1, 31)),
        DateRange(D(2024, 2, 1), D(2024, 2, 29)), DateRange(D(2024, 3, 1), D(2024, 3, 2))]
    weeks = calendar_ranges(whole, "week")  # Monday to Sunday; 2023-12-30 is a Saturday
    assert weeks[0] == DateRange(D(2023, 12, 30), D(2023, 12, 31))
    assert weeks[1] == DateRange(D(2024, 1, 1), D(2024, 1, 7))
    assert weeks[-1] == DateRange(D(2024, 2, 26), D(2024, 3, 2))
    assert all(w.first.weekday() == 0 for w in weeks[1:]) and len(weeks) == 10
    days = calendar_ranges(whole, "day")
    assert len(days) == whole.days == 64 and all(d.first == d.last for d in days)
    for mode in ("day", "week", "month", "year"):  # no gap, no overlap
        parts = calendar_ranges(whole, mode)
        assert parts[0].first == whole.first and parts[-1].last == whole.last
        assert all(b.first - a.last == dt.timedelta(days=1) for a, b in zip(parts, parts[1:]))


def test_bisection_and_the_dicom_values():
    r = DateRange(D(2020, 1, 1), D(2020, 1, 4))
    assert r.halves() == (DateRange(D(2020, 1, 1), D(2020, 1, 2)),
                          DateRange(D(2020, 1, 3), D(2020, 1, 4)))
    assert DateRange(D(2020, 1, 1), D(2020, 1, 3)).halves()[0].dicom() == "20200101-20200102"
    assert DateRange(D(2020, 1, 1), D(2020, 1, 1)).halves() is None
    assert DateRange(D(2020, 1, 1), D(2020, 1, 1)).dicom() == "20200101"


@pytest.mark.parametrize("value, first, last", [
    ("", D(1990, 5, 1), D(2024, 6, 1)),  # no date: earliest .. today
    ("20200101-20201231", D(2020, 1, 1), D(2020, 12, 31)),
    ("20200101-", D(2020, 1, 1), D(2024, 6, 1)),
    ("-20201231", D(1990, 5, 1), D(2020, 12, 31)),
])
def test_open_ranges_are_bounded_by_earliest_and_today(value, first, last):
    ident = build_identifier(["QueryRetrieveLevel=STUDY", f"StudyDate={value}"])
    assert query_range(ident, "StudyDate", D(1990, 5, 1), D(2024, 6, 1)) == DateRange(first, last)


def test_no_date_key_at_all_and_the_worklist_key():
    ident = build_identifier(["QueryRetrieveLevel=STUDY", "PatientID=X"])
    plan = SplitPlan(FindRequest(Network("h", 1), ident, QueryModel.STUDY), "year",
                     D(2020, 1, 1), D(2021, 6, 1))
    subs = list(plan)
    assert [s.identifier.StudyDate for s in subs] == ["20200101-20201231", "20210101-20210601"]
    assert all(s.identifier.StudyInstanceUID == "" for s in subs)  # the unique key is asked
    assert "StudyDate" not in ident  # the request itself is left as it was
    wl = build_identifier(["PatientName=",
                           "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate="
                           "20260301-20260302"])
    plan = SplitPlan(FindRequest(Network("h", 1), wl, QueryModel.WORKLIST), "day")
    dates = [s.identifier.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate
             for s in plan]
    assert dates == ["20260301", "20260302"]


@pytest.mark.parametrize("keys, model, message", [
    (["StudyDate=20200101"], QueryModel.STUDY, "StudyDate=20200101 is a single date"),
    (["StudyDate=20200101\\20200105"], QueryModel.STUDY, "StudyDate holds a list of dates"),
    (["StudyDate=20201231-20200101"], QueryModel.STUDY, "is an empty range"),
    (["QueryRetrieveLevel=SERIES"], QueryModel.STUDY, "this query is at level SERIES"),
    (["QueryRetrieveLevel=PATIENT"], QueryModel.PATIENT, "needs a date key"),
])
def test_what_cannot_be_split(keys, model, message):
    keys = (["QueryRetrieveLevel=STUDY"] if not keys[0].startswith("Query") else []) + keys
    with pytest.raises(SplitError, match=message):
        SplitPlan(FindRequest(Network("h", 1), build_identifier(keys), model), "auto")


# --- against the demo SCP's caps -----------------------------------------------------------


@pytest.fixture(scope="module")
def uncapped():
    with DemoSCP(patients=PATIENTS, seed=SEED) as scp:
        yield scp


@pytest.fixture(scope="module")
def all_uids(uncapped):
    r = run_findtui(at(uncapped, *STUDY, "--output-format", "csv", "--no-history", "-q"))
    assert r.returncode == EXIT_OK
    found = uids(r.out)
    assert len(found) > 4 * CAP
    return found


@pytest.mark.parametrize("style", ["cancel", "failure", "success"])
def test_split_auto_returns_exactly_the_uncapped_answer_on_one_association(style, all_uids,
                                                                         tmp_path):
    extra = ["--max-results", str(CAP)] if style == "success" else []
    with DemoSCP(patients=PATIENTS, seed=SEED, cap=CAP, cap_style=style) as capped:
        plain = run_findtui(at(capped, *STUDY, *extra, "--no-history", "-q"))
        assert plain.returncode == EXIT_INCOMPLETE
        before = (capped.associations, capped.find_requests)
        out = tmp_path / "out.csv"
        r = run_findtui(at(capped, *STUDY, *extra, "--split", "auto", "--output-format", "csv",
                           "--output", str(out), "-w", "-od", str(tmp_path)))
        assert_no_traceback(r)
        assert r.returncode == EXIT_OK, r.err[-3000:]
        found = uids(out.read_text())
        assert sorted(found) == sorted(all_uids)  # every study, each once
        assert capped.associations - before[0] == 1  # one association for every sub-query
        sent = capped.find_requests - before[1]
        assert sent > 3
        assert f"Split into {sent} sub-queries on one association: {len(all_uids)} matches" \
            in r.err
    files = sorted(p.name for p in tmp_path.glob("rsp*.dcm"))  # numbered across the run
    assert files == [f"rsp{i:06d}.dcm" for i in range(1, len(all_uids) + 1)]
    entry = History().entries()[-1]
    assert (entry.outcome, entry.results) == ("success", len(all_uids))


def test_split_by_calendar_on_an_open_range(uncapped, all_uids):
    with DemoSCP(patients=PATIENTS, seed=SEED, cap=CAP) as capped:
        r = run_findtui(at(capped, *STUDY, "-k", "StudyDate=20180101-", "--split", "month",
                           "--output-format", "jsonl", "--no-history"))
        assert r.returncode == EXIT_OK, r.err[-3000:]
        assert capped.associations == 1
        today = dt.date.today()
        months = (today.year - 2018) * 12 + today.month
        assert capped.find_requests == months  # one sub-query a calendar month
    got = [json.loads(line)["0020000D"]["Value"][0] for line in r.out.splitlines()]
    want = run_findtui(at(uncapped, *STUDY, "-k", "StudyDate=20180101-", "--output-format",
                          "csv", "--no-history", "-q"))
    assert sorted(got) == sorted(uids(want.out))


def test_a_day_still_over_the_cap_is_reported_not_hidden():
    data = DemoData(patients=300, seed=SEED)
    busy = collections.Counter(st[3] for st in data.studies).most_common(1)[0]
    day, count = busy
    assert count >= 2
    first = (dt.date(int(day[:4]), int(day[4:6]), int(day[6:])) - dt.timedelta(days=3))
    with DemoSCP(patients=300, seed=SEED, cap=1) as capped:
        r = run_findtui(at(capped, *STUDY, "-k", f"StudyDate={first:%Y%m%d}-{day}",
                           "--split", "auto", "--no-history"))
        assert capped.associations == 1
    assert r.returncode == EXIT_INCOMPLETE, r.err[-3000:]
    iso = f"{day[:4]}-{day[4:6]}-{day[6:]}"
    line = [ln for ln in r.err.splitlines() if ln.startswith("W: Incomplete:")]
    assert len(line) == 1 and f"still incomplete after splitting, on {iso}:" in line[0], r.err


def test_worklist_split_auto_loses_no_item():
    keys = ["-W", "-k", "PatientID=", "-k", "AccessionNumber=", "-k", "RequestedProcedureID=",
            "-k", "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID=",
            "-k", "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate="]
    with DemoSCP(patients=PATIENTS, seed=SEED) as full:
        want = run_findtui(at(full, *keys, "--output-format", "csv", "--no-history", "-q"))
    with DemoSCP(patients=PATIENTS, seed=SEED, cap=12) as capped:
        r = run_findtui(at(capped, *keys, "--split", "auto", "--split-from", "20260101",
                           "--output-format", "csv", "--no-history"))
        assert capped.associations == 1
    assert r.returncode == EXIT_OK, r.err[-3000:]

    def items(text):  # an item with steps on two days comes once per sub-range: its step
        return [tuple(row[:3]) for row in csv.reader(io.StringIO(text))][1:]

    assert len(items(want.out)) > 2 * 12
    assert set(items(r.out)) == set(items(want.out))
    rows = list(csv.reader(io.StringIO(r.out)))[1:]
    assert len(rows) == len({(*row[:3], row[3]) for row in rows})  # no step twice


def test_a_user_cancel_ends_the_split_run(all_uids):
    with DemoSCP(patients=PATIENTS, seed=SEED, cap=CAP) as capped:
        r = run_findtui(at(capped, *STUDY, "--split", "auto", "--cancel", "3", "--no-history"))
        sent = capped.find_requests
    assert r.returncode == EXIT_CANCELLED, r.err[-3000:]
    assert sent == 1 and "Incomplete" not in r.err


def test_quiet_split_prints_nothing(all_uids):
    with DemoSCP(patients=PATIENTS, seed=SEED, cap=CAP) as capped:
        r = run_findtui(at(capped, *STUDY, "--split", "auto", "-q", "--no-history"))
    assert r.returncode == EXIT_OK and r.err == "" and r.out == ""


@pytest.mark.parametrize("args, message", [
    (["-k", "StudyDate=20200101"], "--split: StudyDate=20200101 is a single date"),
    (["-k", "StudyDate=20200101\\20200102"], "--split: StudyDate holds a list of dates"),
    (["-k", "StudyDate=20201231-20200101"], "--split: StudyDate=20201231-20200101 is an empty"),
    (["-k", "QueryRetrieveLevel=SERIES"], "--split needs a date key"),
    (["--split-from", "1970"], "--split-from: '1970' is not a date (YYYYMMDD)"),
])
def test_bad_split_input_is_refused_before_anything_is_sent(uncapped, args, message):
    before = (uncapped.associations, uncapped.find_requests)
    r = run_findtui(at(uncapped, *STUDY, "--split", "auto", *args))
    assert r.returncode == EXIT_USAGE and message in r.err, r.err
    assert len([ln for ln in r.err.splitlines() if ln.strip()]) <= 2  # usage + one line
    assert "Traceback" not in r.err
    assert (uncapped.associations, uncapped.find_requests) == before


def test_split_from_needs_split(uncapped):
    r = run_findtui(at(uncapped, *STUDY, "--split-from", "20200101"))
    assert r.returncode == EXIT_USAGE and "--split-from needs --split" in r.err


# --- against a real Orthanc with LimitFindResults --------------------------------------------


@pytest.mark.parametrize("date", ["", "20120101-", "-20191231", "20110301-20170630"])
def test_split_auto_on_capped_orthanc_returns_the_uncapped_orthancs_studies(
        capped_orthanc, bulk_orthanc, date):
    keys = [*STUDY, "-k", f"StudyDate={date}"]
    want = run_findtui(at(bulk_orthanc, *keys, "--output-format", "csv", "--no-history", "-q"))
    assert want.returncode == EXIT_OK
    expected = uids(want.out)
    assert len(expected) > peers.CAPPED_LIMIT
    capped = run_findtui(at(capped_orthanc, *keys, "--no-history", "-q"))
    assert capped.returncode == EXIT_INCOMPLETE  # without --split, the limit shows
    r = run_findtui(at(capped_orthanc, *keys, "--split", "auto", "--output-format", "csv",
                       "--no-history"), timeout=180)
    assert_no_traceback(r)
    assert r.returncode == EXIT_OK, r.err[-3000:]
    found = uids(r.out)
    assert len(found) == len(set(found)) and set(found) == set(expected)
    assert r.err.count("I: Requesting Association") == 1
    assert r.err.count("I: Association Accepted") == 1


@pytest.mark.parametrize("level, expect", [
    ([], "I: split: {n} sub-queries done, 0 to go, {m} matches"),  # -v: a log line each
    (["-ll", "warning"], "\rsplit: {n} sub-queries done, 0 to go, {m} matches"),  # redrawn
])
def test_progress_on_a_terminal(all_uids, level, expect):
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    with DemoSCP(patients=PATIENTS, seed=SEED, cap=CAP) as capped:
        proc = subprocess.Popen(
            [sys.executable, "-m", "findtui", "--batch",
             *at(capped, *STUDY, "--split", "auto", "--no-history", *level)],
            stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONIOENCODING="utf-8"))
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=60) == EXIT_OK
        sent = capped.find_requests
    os.close(master)
    err = b"".join(chunks).decode("utf-8").replace("\r\n", "\n")
    assert expect.format(n=sent, m=len(all_uids)) in err, err[-2000:]


def test_a_split_run_is_recorded_and_reruns_split(tmp_path):
    """The history keeps --split and --split-from; 'history rerun' splits again, and the
    TUI's F8 re-run too (test_tui_split)."""
    with DemoSCP(patients=PATIENTS, seed=SEED, cap=CAP) as capped:
        r = run_findtui(at(capped, *STUDY, "--split", "auto", "--split-from", "20000101",
                           "-q"))
        assert r.returncode == EXIT_OK, r.err
        entry = History().entries()[-1]
        assert (entry.split, entry.split_from) == ("auto", "20000101")
        listing = subprocess.run([sys.executable, "-m", "findtui", "history"],
                                 capture_output=True, text=True)
        assert "split auto from 20000101" in listing.stdout.splitlines()[-1]
        before = capped.associations
        again = subprocess.run([sys.executable, "-m", "findtui", "history", "rerun", "-1",
                                "--output-format", "csv"], capture_output=True, text=True)
        assert again.returncode == EXIT_OK, again.stderr
        assert "Split into" in again.stderr and capped.associations == before + 1
        assert len(uids(again.stdout)) == entry.results
    plain = History().entries()[-1]
    assert plain.split == "auto"
