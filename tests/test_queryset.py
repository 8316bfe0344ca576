"""Query sets: --query-list (one query a CSV row, all on one association, or --parallel N)
and several --profile nodes at once (a node column, --dedupe, the worst exit code).

Every expectation comes from the peers' own answers to one query at a time (the demo SCP's,
DCMTK findscu's against Orthanc and dcmqrscp), never from the query set's output alone.
Bad lists are refused before anything is sent (the peer's association counter says so).
"""

from __future__ import annotations

import collections
import csv
import io
import json
import os
import subprocess
import sys
from io import BytesIO

import pytest
from pydicom.dataset import Dataset
from pynetdicom.dsutils import decode

import peers
from faultscp import FaultSCP, assert_no_traceback, run_findtui
from findtui.demo import DemoSCP
from findtui.demo.scp import DemoData
from findtui.engine.querylist import QueryListError, parse_query_list

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_NETWORK = 0, 1, 2, 3  # README "Exit codes"
SEED, PATIENTS = 5, 30
STUDY = ["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=", "-k", "StudyDate="]


def at(scp, *args: str) -> list[str]:
    return [*args, "-aec", scp.ae_title, scp.address, str(scp.port)]


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def write_list(tmp_path, text: str, name: str = "list.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "findtui", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def add_node(name: str, peer) -> None:
    r = run_cli("profiles", "add", name, peer.address, str(peer.port), "-aec", peer.ae_title)
    assert r.returncode == 0, r.stderr


# --- the list file ----------------------------------------------------------------------


def test_a_list_is_read_with_its_row_numbers():
    listed = parse_query_list("\ufeffPatientID;StudyDate\nP1;20200101-\n\n;;\nP2;\n", "l.csv")
    assert listed.keys == ("PatientID", "StudyDate")
    # blank rows (also a row of empty cells) are skipped but keep their number
    assert [(q.number, q.line, q.keys) for q in listed.queries] == [
        (1, 2, ("PatientID=P1", "StudyDate=20200101-")), (4, 5, ("PatientID=P2", "StudyDate="))]
    tags = parse_query_list('"(0010,0020)",ScheduledProcedureStepSequence[0].Modality\nX,CT\n')
    assert tags.queries[0].keys == ("(0010,0020)=X",
                                    "ScheduledProcedureStepSequence[0].Modality=CT")


@pytest.mark.parametrize("text, words", [
    ("", "is empty"),
    ("\n \n", "is empty"),
    ("PatientID\n", "has no queries"),
    ("PatientNam\nDOE\n", "line 1: column 1"),
    ('PatientID,"(0010,0020)"\nA,B\n', "(0010,0020) is named twice (also column 1)"),
    ("(0010,0020)\nA,B\n", 'quote it, "(0010,0020)"'),
    ("PatientID,PatientID\nA,B\n", "named twice"),
    ("PatientID,\nA,B\n", "column 2 has no key name"),
    ("PatientID=X\nA\n", "holds '='"),
    ("ReferencedStudySequence\nA\n", "is a sequence"),
    ("PatientID,StudyDate\nA,20200101\nB,2020-01-01\nC\n", "2 bad rows"),
])
def test_bad_lists_name_the_line(text, words):
    with pytest.raises(QueryListError) as info:
        parse_query_list(text, "l.csv")
    assert words in str(info.value)
    assert "l.csv" in str(info.value)


def test_bad_rows_are_listed_with_their_lines_or_skipped():
    text = "PatientID,StudyDate\nA,20200101\nB,2020-01-01\nC\nD,20201301\n"
    with pytest.raises(QueryListError) as info:
        parse_query_list(text, "l.csv")
    message = str(info.value)
    assert "line 3: StudyDate: value '2020-01-01'" in message
    assert "line 4: 1 value for 2 keys" in message
    assert "line 5: StudyDate" in message and "--skip-bad" in message
    listed = parse_query_list(text, "l.csv", skip_bad=True)
    assert [q.number for q in listed.queries] == [1]
    assert [b.line for b in listed.skipped] == [3, 4, 5]


# --- bad input on the command line: nothing sent -----------------------------------------


@pytest.fixture(scope="module")
def demo():
    with DemoSCP(patients=PATIENTS, seed=SEED) as scp:
        yield scp


@pytest.mark.parametrize("text, words", [
    ("PatientNam\nDOE\n", ["list.csv", "line 1", "PatientNam"]),
    ("", ["list.csv", "is empty"]),
    ("PatientID,PatientID\nA,B\n", ["line 1", "named twice"]),
    ("PatientID,StudyDate\nA,2020\n", ["line 2", "StudyDate", "YYYYMMDD"]),
])
def test_a_bad_list_exits_1_and_sends_nothing(demo, tmp_path, text, words):
    before = demo.associations
    r = run_findtui(at(demo, *STUDY, "--query-list", write_list(tmp_path, text)))
    assert_no_traceback(r)
    assert r.returncode == EXIT_BAD_INPUT, r.err
    for word in words:
        assert word in r.err
    assert demo.associations == before


def test_split_on_a_row_whose_date_is_not_a_range_names_the_line(demo, tmp_path):
    path = write_list(tmp_path, "StudyDate\n20200101-20201231\n20210505\n")
    before = demo.associations
    r = run_findtui(at(demo, *STUDY, "--query-list", path, "--split", "month"))
    assert r.returncode == EXIT_BAD_INPUT, r.err
    assert "line 3" in r.err and "single date" in r.err
    assert demo.associations == before


def test_a_missing_list_file_or_node_profile(demo, tmp_path):
    r = run_findtui(at(demo, *STUDY, "--query-list", str(tmp_path / "nope.csv")))
    assert r.returncode == EXIT_BAD_INPUT and "nope.csv" in r.err and "no such file" in r.err
    add_node("one", demo)
    r = run_findtui([*STUDY, "--profile", "one", "--profile", "nosuch"])
    assert r.returncode == EXIT_BAD_INPUT and "nosuch" in r.err, r.err


@pytest.mark.parametrize("args, words", [
    (["--parallel", "2"], "--parallel needs --query-list"),
    (["--skip-bad"], "--skip-bad needs --query-list"),
    (["--dedupe"], "--dedupe needs several --profile nodes or --query-list"),
])
def test_options_that_need_a_list(demo, args, words):
    r = run_findtui(at(demo, *STUDY, *args))
    assert r.returncode == EXIT_USAGE and words in r.err


def test_several_profiles_and_addr_port_do_not_mix(demo):
    add_node("one", demo)
    add_node("two", demo)
    r = run_findtui(at(demo, *STUDY, "--profile", "one", "--profile", "two"))
    assert r.returncode == EXIT_USAGE and "not both" in r.err
    r = run_findtui([*STUDY, "--profile", "one", "--profile", "one"])
    assert r.returncode == EXIT_USAGE and "given twice" in r.err


# --- a list against the demo SCP ------------------------------------------------------


def one_by_one(scp, patient_ids) -> dict[str, list[str]]:
    """StudyInstanceUIDs per PatientID, one findtui query each (the reference)."""
    out = {}
    for pid in patient_ids:
        r = run_findtui(at(scp, *STUDY, "-k", f"PatientID={pid}", "--output-format", "csv",
                           "--no-history", "-q"))
        assert r.returncode == EXIT_OK
        out[pid] = sorted(row["StudyInstanceUID"] for row in rows(r.out))
    return out


@pytest.fixture(scope="module")
def patient_ids():
    data = DemoData(patients=PATIENTS, seed=SEED)
    counts = collections.Counter(data.patients[st[1]][1] for st in data.studies)
    ids = sorted(counts)[:8]
    assert sum(counts[i] for i in ids) > 8
    return ids


@pytest.mark.parametrize("parallel", [None, 3])
def test_a_list_runs_every_row_on_one_association(demo, patient_ids, tmp_path, parallel):
    want = one_by_one(demo, patient_ids)
    text = "PatientID\n" + "".join(f"{p}\n" for p in patient_ids[:4]) + "\n" + "".join(
        f"{p}\n" for p in patient_ids[4:]) + "NOBODY\n"
    before = (demo.associations, demo.find_requests)
    extra = ["--parallel", str(parallel)] if parallel else []
    r = run_findtui(at(demo, *STUDY, "--query-list", write_list(tmp_path, text), *extra,
                       "--output-format", "csv", "--no-history"))
    assert_no_traceback(r)
    assert r.returncode == EXIT_OK, r.err[-3000:]
    assert demo.associations - before[0] == (parallel or 1)
    assert demo.find_requests - before[1] == len(patient_ids) + 1
    got = collections.defaultdict(list)
    header = r.out.splitlines()[0].split(",")
    assert header[0] == "query"
    for row in rows(r.out):
        number = int(row["query"])
        pid = patient_ids[number - 1] if number <= 4 else patient_ids[number - 2]  # row 5: blank
        got[pid].append(row["StudyInstanceUID"])
        assert row["PatientID"] == pid
    assert {p: sorted(u) for p, u in got.items()} == {p: u for p, u in want.items() if u}


def test_json_says_which_query_with_private_elements(demo, patient_ids, tmp_path):
    path = write_list(tmp_path, "PatientID\n" + "\n".join(patient_ids[:3]) + "\n")
    r = run_findtui(at(demo, *STUDY, "--query-list", path, "--output-format", "json", "-q",
                       "--no-history"))
    assert r.returncode == EXIT_OK, r.err
    objects = json.loads(r.out)
    assert objects
    for obj in objects:
        ds = Dataset.from_json(obj)  # still a valid DICOM JSON dataset
        block = ds.private_block(0x0009, "findtui")
        number = block[0x02].value
        assert ds.PatientID == patient_ids[number - 1]
        assert 0x00091001 not in ds  # one node: no node element


def test_skip_bad_runs_the_good_rows_and_lists_the_bad(demo, patient_ids, tmp_path):
    path = write_list(tmp_path, f"PatientID,StudyDate\n{patient_ids[0]},\nX,2020\n"
                                f"{patient_ids[1]},19000101-\n")
    r = run_findtui(at(demo, *STUDY, "--query-list", path, "--skip-bad", "--output-format",
                       "csv", "--no-history"))
    assert r.returncode == EXIT_OK, r.err
    assert "left out 1 bad row" in r.err and "line 3" in r.err
    assert {row["query"] for row in rows(r.out)} <= {"1", "3"}
    assert "1" in {row["query"] for row in rows(r.out)}


def test_a_peer_that_drops_the_association_between_queries(tmp_path):
    """A PACS that closes an association after two queries: the unanswered query is sent
    again on a new association, every query is answered once."""
    def two_then_drop(s):
        for n in range(3):
            ts = s.transfer_syntax
            ds = decode(BytesIO(s.request.data), ts == "1.2.840.10008.1.2", True)
            if n == 2:
                s.close()  # the third query: dropped unanswered
                return
            s.pending({"PatientID": ds.PatientID, "StudyInstanceUID": f"1.2.3.{ds.PatientID}"})
            s.final(0)
            s.read_request()

    with FaultSCP(two_then_drop) as scp:
        path = write_list(tmp_path, "PatientID\n" + "\n".join(str(i) for i in range(1, 6)))
        r = run_findtui(["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=",
                         "--query-list", path, "--output-format", "csv", "--no-history",
                         "-aec", scp.ae_title, scp.address, str(scp.port)])
        assert_no_traceback(r)
        assert r.returncode == EXIT_OK, r.err[-3000:]
        assert scp.associations == 3
    got = sorted((row["query"], row["PatientID"]) for row in rows(r.out))
    assert got == [(str(i), str(i)) for i in range(1, 6)]
    assert r.err.count("opening a new one") == 2


# --- several nodes: real peers ------------------------------------------------------------


def findscu_uids(peer, patient_id: str) -> list[str]:
    return sorted(str(ds.StudyInstanceUID) for ds in peers.find_with_dcmtk(
        peer, ["-S"], ["QueryRetrieveLevel=STUDY", f"PatientID={patient_id}",
                       "StudyInstanceUID"]))


def test_several_nodes_and_a_list_against_orthanc_and_dcmqrscp(orthanc, dcmqrscp, tmp_path):
    add_node("orthanc", orthanc)
    add_node("dcmtk", dcmqrscp)
    pids = [p.patient_id for p in orthanc.patients[:3]]
    want = {(node, pid): findscu_uids(peer, pid)
            for node, peer in (("orthanc", orthanc), ("dcmtk", dcmqrscp)) for pid in pids}
    assert all(want.values())
    path = write_list(tmp_path, "PatientID\n" + "\n".join(pids) + "\n")
    r = run_findtui(["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=",
                     "--profile", "orthanc", "--profile", "dcmtk", "--query-list", path,
                     "--output-format", "csv", "--no-history"], timeout=120)
    assert_no_traceback(r)
    assert r.returncode == EXIT_OK, r.err[-3000:]
    assert r.out.splitlines()[0].startswith("node,query,")
    got = collections.defaultdict(list)
    for row in rows(r.out):
        got[(row["node"], pids[int(row["query"]) - 1])].append(row["StudyInstanceUID"])
    assert {k: sorted(v) for k, v in got.items()} == want
    for node in ("orthanc", "dcmtk"):  # a summary line per node
        assert f"I: {node}: 3 queries (3 success), " in r.err

    r = run_findtui(["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=",
                     "--profile", "orthanc", "--profile", "dcmtk", "--query-list", path,
                     "--dedupe", "--output-format", "csv", "--no-history", "-q"], timeout=120)
    assert r.returncode == EXIT_OK, r.err
    merged = rows(r.out)
    uids = [row["StudyInstanceUID"] for row in merged]
    assert len(uids) == len(set(uids)) == len(set().union(*want.values()))
    for row in merged:  # both hold the same corpus: every study on both, in the order given
        assert row["node"] == "orthanc\\dcmtk"


def test_a_node_that_fails_does_not_stop_the_others(orthanc, dcmqrscp):
    add_node("orthanc", orthanc)
    add_node("dcmtk", dcmqrscp)
    r = run_cli("profiles", "add", "down", "127.0.0.1", str(peers.free_port()))
    assert r.returncode == 0
    pid = orthanc.patients[0].patient_id
    r = run_findtui(["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=",
                     "-k", f"PatientID={pid}", "--profile", "down", "--profile", "orthanc",
                     "--profile", "dcmtk", "--output-format", "csv"], timeout=120)
    assert_no_traceback(r)
    assert r.returncode == EXIT_NETWORK, r.err  # the worst outcome
    got = collections.defaultdict(list)
    for row in rows(r.out):
        got[row["node"]].append(row["StudyInstanceUID"])
    assert sorted(got["orthanc"]) == findscu_uids(orthanc, pid)
    assert sorted(got["dcmtk"]) == findscu_uids(dcmqrscp, pid)
    assert "down" not in got
    assert "W: down: 0 matches" in r.err and "connection refused" in r.err
    from findtui.config import History

    entries = History().entries()  # one history entry per node
    assert sorted(e.node for e in entries[-3:]) == ["dcmtk", "down", "orthanc"]
    assert {e.node: e.outcome for e in entries[-3:]}["down"] == "network"


# --- a query set feeds a retrieve ------------------------------------------------------


@pytest.fixture(scope="module")
def orthanc_get(tmp_path_factory):
    extra = {"DicomAlwaysAllowGet": True}
    with peers.orthanc(tmp_path_factory.mktemp("orthanc-get"), extra_config=extra) as peer:
        yield peer


def test_retrieve_what_a_list_on_two_nodes_found(orthanc_get, dcmqrscp, tmp_path):
    """Each study is fetched once, from the first node (in the order given) that holds it:
    the same instances as DCMTK getscu fetches study by study from that node."""
    from pydicom import dcmread

    add_node("orthanc", orthanc_get)
    add_node("dcmtk", dcmqrscp)
    patients = [p for p in orthanc_get.patients if p.studies][:2]
    path = write_list(tmp_path, "PatientID\n" + "\n".join(p.patient_id for p in patients))
    ours = tmp_path / "ours"
    r = run_findtui(["-S", "-k", "QueryRetrieveLevel=STUDY", "--profile", "orthanc",
                     "--profile", "dcmtk", "--query-list", path, "--retrieve", "get",
                     "-od", str(ours), "--no-history"], timeout=180)
    assert "Traceback" not in r.err
    assert r.returncode == EXIT_OK, r.err[-3000:]
    assert "[orthanc] retrieving" in r.err and "[dcmtk] retrieving" not in r.err
    dcmtk = tmp_path / "dcmtk"
    dcmtk.mkdir()
    getscu = peers.require_binary("getscu", "dcmtk")
    for study in (st for p in patients for st in p.studies):
        d = subprocess.run([getscu, "-S", "-aec", orthanc_get.ae_title, "-od", str(dcmtk),
                            orthanc_get.address, str(orthanc_get.port), "-k",
                            "QueryRetrieveLevel=STUDY", "-k",
                            f"StudyInstanceUID={study.study_instance_uid}"],
                           capture_output=True, text=True, timeout=120)
        assert d.returncode == 0, d.stderr

    def uids(folder):
        return sorted(str(dcmread(f, stop_before_pixels=True).SOPInstanceUID)
                      for f in folder.rglob("*") if f.is_file())

    want = sorted(i.sop_instance_uid for p in patients for st in p.studies
                  for i in st.instances)
    assert uids(ours) == uids(dcmtk) == want


def _stderr_on_a_terminal(args: list[str]) -> str:
    """findtui --batch with its stderr on a pseudo-terminal: what it drew there."""
    import pty

    main, child = pty.openpty()
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "findtui", "--batch", *args],
                            stdout=subprocess.DEVNULL, stderr=child, stdin=subprocess.DEVNULL,
                            env=env)
    os.close(child)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(main)
    return out.decode("utf-8", "replace")


def test_progress_on_a_terminal_and_nothing_with_q(demo, patient_ids, tmp_path):
    path = write_list(tmp_path, "PatientID\n" + "\n".join(patient_ids) + "\n")
    base = at(demo, *STUDY, "--query-list", path, "--no-history")
    drawn = _stderr_on_a_terminal([*base, "-ll", "warning"])
    assert f"queries {len(patient_ids)}/{len(patient_ids)}," in drawn and "\r" in drawn
    assert "matches" in drawn and "queries/s" in drawn
    assert _stderr_on_a_terminal([*base, "-q"]) == ""


def test_ctrl_c_cancels_every_node_and_keeps_the_rows(tmp_path):
    import signal
    import time

    def slow(s):
        ts = s.transfer_syntax
        ds = decode(BytesIO(s.request.data), ts == "1.2.840.10008.1.2", True)
        s.serve([{"PatientID": ds.PatientID, "StudyInstanceUID": f"1.2.3.{ds.PatientID}.{i}"}
                 for i in range(200)], interval=0.02)

    with FaultSCP(slow) as one, FaultSCP(slow) as two:
        for name, scp in (("one", one), ("two", two)):
            r = run_cli("profiles", "add", name, scp.address, str(scp.port), "-aec",
                        scp.ae_title)
            assert r.returncode == 0
        path = write_list(tmp_path, "PatientID\n1\n2\n3\n")
        out = tmp_path / "out.csv"
        env = dict(os.environ, PYTHONIOENCODING="utf-8")
        proc = subprocess.Popen(
            [sys.executable, "-m", "findtui", "--batch", "-S", "-k", "QueryRetrieveLevel=STUDY",
             "-k", "StudyInstanceUID=", "--profile", "one", "--profile", "two", "--query-list",
             path, "--output-format", "csv", "--output", str(out), "--no-history"],
            stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not out.exists() or
                                               out.read_text().count("\n") < 20):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=30)[1]
    assert proc.returncode == 5, err  # cancelled
    assert "Interrupted: sending C-CANCEL" in err and "Traceback" not in err
    kept = rows(out.read_text())
    assert 20 <= len(kept) < 2 * 3 * 200  # what arrived, not everything
    assert {row["node"] for row in kept} <= {"one", "two"}
    assert one.cancels >= 1 and two.cancels >= 1


def test_split_auto_on_several_nodes_one_of_them_capped(tmp_path):
    keys = [*STUDY, "--output-format", "csv", "--no-history"]
    with DemoSCP(patients=PATIENTS, seed=SEED) as full, \
            DemoSCP(patients=PATIENTS, seed=SEED, cap=7) as capped:
        add_node("full", full)
        add_node("capped", capped)
        plain = run_findtui([*keys, "--profile", "full", "--profile", "capped"])
        assert plain.returncode == 7, plain.err  # the worst: incomplete
        assert "[capped] Incomplete: 7 matches arrived" in plain.err
        r = run_findtui([*keys, "--profile", "full", "--profile", "capped", "--split", "auto"])
        assert r.returncode == EXIT_OK, r.err[-3000:]
    got = collections.defaultdict(list)
    for row in rows(r.out):
        got[row["node"]].append(row["StudyInstanceUID"])
    assert len(got["full"]) > 7
    assert sorted(got["capped"]) == sorted(got["full"])  # the same data, nothing lost


def test_a_list_that_is_a_fifo_a_folder_or_huge_is_refused_and_a_link_is_read(tmp_path):
    """Never blocks on a FIFO nor reads without bound (engine.files.read_capped)."""
    from findtui.engine.querylist import MAX_LIST_BYTES, read_query_list

    fifo = tmp_path / "list.fifo"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.csv"
    with open(huge, "wb") as fh:
        fh.truncate(MAX_LIST_BYTES + 1)
    for path, words in ((fifo, "not a plain file"), (tmp_path, "not a plain file"),
                        (huge, "more than")):
        with pytest.raises(QueryListError) as info:
            read_query_list(path)
        assert words in str(info.value) and str(path) in str(info.value)
    real = tmp_path / "real.csv"
    real.write_text("PatientID\nP1\n")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    assert [q.keys for q in read_query_list(link).queries] == [("PatientID=P1",)]


def test_a_peer_that_stalls_every_query_is_given_up_after_three(tmp_path):
    """Each stalled query costs the DIMSE timeout: after three in a row the node is given up
    and the rest of the list is counted as not sent (exit 3), not tried one by one."""
    def stall(s):
        s.hang(30)

    with FaultSCP(stall) as scp:
        path = write_list(tmp_path, "PatientID\n" + "\n".join(str(i) for i in range(1, 9)))
        r = run_findtui(["-S", "-k", "QueryRetrieveLevel=STUDY", "--query-list", path,
                         "-td", "1", "--no-history", "-aec", scp.ae_title, scp.address,
                         str(scp.port)], timeout=60)
        assert_no_traceback(r)
        assert r.returncode == EXIT_NETWORK, r.err[-3000:]
        assert scp.associations == 3
    assert "8 queries (3 network, 5 not sent)" in r.err, r.err[-2000:]
