"""Benchmark: query sets (#11) against the reference clients, in the same run.

Three parts, each client's matches counted, --repeat runs in alternating order, medians:

* **list**: 1,000 single-patient study queries (PatientID BK000000…, two studies each)
  against Orthanc holding the 10,000 bulk studies (cached under bench/out/), and against
  the embedded demo SCP (1,000 patients; a peer that answers in microseconds, so that the
  clients' own costs show):
  ``findtui --batch --query-list`` (one association; and ``--parallel 4``) against a
  shell loop of 1,000 DCMTK ``findscu -X`` calls (one folder per query, counted);
* **nodes**: three Orthancs (copies of the same storage), every study of each:
  ``findtui`` on each node alone, then with the three ``--profile`` at once; the ratio is
  the three-node wall over the slowest single node (with the CPU time, as the three
  answers are decoded by one process);
* **split**: Orthanc with ``LimitFindResults: 100`` and the same storage uncapped,
  ``StudyDate=20200101-20221231``: the uncapped query against ``--split auto`` on the
  capped one (the same StudyInstanceUIDs required), sub-queries counted.

Output files go to /dev/shm; a temporary FINDTUI_CONFIG_DIR keeps the user's profiles and
history out of it.

    .venv/bin/python bench/queryset.py [--repeat 5] [--queries 1000]

Prints progress on stderr and one JSON object on stdout (last line).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ["FINDTUI_CONFIG_DIR"] = tempfile.mkdtemp(prefix="findtui-bench-")
sys.path.insert(0, str(ROOT / "tests"))

import peers  # noqa: E402

PY = sys.executable
STUDY_KEYS = ["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=",
              "-k", "StudyDate=", "-k", "PatientID="]


def timed(cmd: list[str] | str, shell: bool = False) -> tuple[float, float, str]:
    """(wall s, CPU s of the children, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="replace",
                       shell=shell)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"benchmark command failed ({r.returncode}): {cmd}\n"
                         f"{r.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, r.stdout


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def alternate(clients: dict, repeat: int, label: str, count) -> dict:
    """Run every client ``repeat`` times in alternating order; ``count(name, stdout)``
    returns its matches (checked equal to the first run's)."""
    walls = {c: [] for c in clients}
    cpus = {c: [] for c in clients}
    counts: dict[str, int] = {}
    order = list(clients)
    for i in range(repeat):
        for name in (order if i % 2 == 0 else order[::-1]):
            prepare, cmd, shell = clients[name]
            if prepare:
                prepare()
            wall, cpu, out = timed(cmd, shell)
            got = count(name, out)
            if counts.setdefault(name, got) != got:
                raise SystemExit(f"{name}: {got} matches, first run {counts[name]}")
            walls[name].append(wall)
            cpus[name].append(cpu)
            print(f"[{label}] run {i + 1}/{repeat} {name}: {wall:.2f} s (CPU {cpu:.2f} s, "
                  f"{got} matches)", file=sys.stderr)
    return {"matches": counts,
            "median_wall_s": {c: round(statistics.median(w), 3) for c, w in walls.items()},
            "median_cpu_s": {c: round(statistics.median(w), 3) for c, w in cpus.items()},
            "all_walls_s": {c: [round(x, 3) for x in w] for c, w in walls.items()}}


def add_profile(name: str, peer) -> None:
    subprocess.run([PY, "-m", "findtui", "profiles", "add", name, peer.address,
                    str(peer.port), "-aec", peer.ae_title, "--replace"], check=True,
                   capture_output=True)


def bench_list(orthanc, queries: int, repeat: int, out: Path, label: str = "list",
               pid=lambda i: f"BK{i:06d}") -> dict:
    pids = [pid(i) for i in range(queries)]
    listing = out / "patients.csv"
    listing.write_text("PatientID\n" + "\n".join(pids) + "\n")
    plain = out / "patients.txt"
    plain.write_text("\n".join(pids) + "\n")
    dcmtk_dir = out / "dcmtk"

    def fresh_dcmtk() -> None:
        shutil.rmtree(dcmtk_dir, ignore_errors=True)
        for pid in pids:
            (dcmtk_dir / pid).mkdir(parents=True)

    loop = (f"while read p; do findscu -q -X -od {dcmtk_dir}/$p -S -aec {orthanc.ae_title} "
            f"-k QueryRetrieveLevel=STUDY -k StudyInstanceUID -k StudyDate -k PatientID=$p "
            f"{orthanc.address} {orthanc.port} || exit 1; done < {plain}")
    ft = [PY, "-m", "findtui", "--batch", *STUDY_KEYS, "-aec", orthanc.ae_title,
          orthanc.address, str(orthanc.port), "--query-list", str(listing), "-q",
          "--output-format", "csv", "--no-history"]
    clients = {
        "dcmtk_findscu_loop": (fresh_dcmtk, loop, True),
        "findtui_query_list": (None, ft, False),
        "findtui_parallel_4": (None, [*ft, "--parallel", "4"], False),
    }

    def count(name: str, stdout: str) -> int:
        if name.startswith("dcmtk"):
            return sum(len(list(d.iterdir())) for d in dcmtk_dir.iterdir())
        rows = csv_rows(stdout)
        assert all(r["PatientID"] == pids[int(r["query"]) - 1] for r in rows)
        return len(rows)

    result = alternate(clients, repeat, label, count)
    m = result["median_wall_s"]
    result["ratio_vs_dcmtk_loop"] = {c: round(m[c] / m["dcmtk_findscu_loop"], 3)
                                     for c in m if c.startswith("findtui")}
    result["parallel_4_gain"] = round(m["findtui_query_list"] / m["findtui_parallel_4"], 2)
    result["queries"] = queries
    return result


def bench_nodes(nodes: list, repeat: int) -> dict:
    for i, peer in enumerate(nodes, 1):
        add_profile(f"node{i}", peer)
    base = [PY, "-m", "findtui", "--batch", *STUDY_KEYS, "-q", "--output-format", "csv",
            "--no-history"]
    clients = {f"findtui_node{i}": (None, [*base, "--profile", f"node{i}"], False)
               for i in range(1, len(nodes) + 1)}
    clients["findtui_3_nodes"] = (None, [*base, *(a for i in range(1, len(nodes) + 1)
                                                  for a in ("--profile", f"node{i}"))], False)
    first = nodes[0]
    clients["dcmtk_findscu_node1"] = (None, [
        "findscu", "-q", "-S", "-aec", first.ae_title, "-k", "QueryRetrieveLevel=STUDY",
        "-k", "StudyInstanceUID", "-k", "StudyDate", "-k", "PatientID", first.address,
        str(first.port)], False)

    def count(name: str, stdout: str) -> int:
        return len(csv_rows(stdout)) if name.startswith("findtui") else 0

    result = alternate(clients, repeat, "nodes", count)
    m = result["median_wall_s"]
    slowest = max(m[f"findtui_node{i}"] for i in range(1, len(nodes) + 1))
    result["ratio_3_nodes_vs_slowest_node"] = round(m["findtui_3_nodes"] / slowest, 2)
    result["ratio_node1_vs_dcmtk"] = round(m["findtui_node1"] / m["dcmtk_findscu_node1"], 2)
    return result


def bench_split(uncapped, capped, repeat: int) -> dict:
    keys = ["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=",
            "-k", "StudyDate=20200101-20221231", "--output-format", "csv", "--no-history"]

    def at(peer):
        return ["-aec", peer.ae_title, peer.address, str(peer.port)]

    clients = {
        "findtui_uncapped": (None, [PY, "-m", "findtui", "--batch", *keys, "-q",
                                    *at(uncapped)], False),
        "findtui_capped_split_auto": (None, [PY, "-m", "findtui", "--batch", *keys, "-q",
                                             "--split", "auto", *at(capped)], False),
    }
    seen: dict[str, set] = {}

    def count(name: str, stdout: str) -> int:
        uids = [r["StudyInstanceUID"] for r in csv_rows(stdout)]
        seen[name] = set(uids)
        return len(uids)

    result = alternate(clients, repeat, "split", count)
    if seen["findtui_uncapped"] != seen["findtui_capped_split_auto"]:
        raise SystemExit("--split auto on the capped Orthanc did not return the uncapped "
                         "answer")
    log = subprocess.run([PY, "-m", "findtui", "--batch", *keys, "-v", "--split", "auto",
                          *at(capped)], capture_output=True, text=True).stderr
    sent = re.search(r"Split into (\d+) sub-queries", log)
    m = result["median_wall_s"]
    result["sub_queries"] = int(sent.group(1)) if sent else None
    result["ratio_split_vs_uncapped"] = round(
        m["findtui_capped_split_auto"] / m["findtui_uncapped"], 2)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--studies", type=int, default=10_000)
    ap.add_argument("--limit", type=int, default=100, help="the capped Orthanc's limit")
    ap.add_argument("--out", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir()
                    else Path(tempfile.gettempdir()))
    ap.add_argument("--cache", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--skip", action="append", default=[], choices=["list", "nodes", "split"])
    args = ap.parse_args()
    if not shutil.which("findscu"):
        raise SystemExit("findscu not found: install Debian 'dcmtk' (bash .ci/install)")
    result: dict = {"repeat": args.repeat, "load_avg_start": os.getloadavg(),
                    "cpus": os.cpu_count(), "studies_per_node": args.studies}
    args.cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out, prefix="findtui-bench-qs-") as tmp, \
            ExitStack() as stack:
        tmp = Path(tmp)
        cache = args.cache / f"orthanc-bulk-{args.studies}"
        first = stack.enter_context(peers.orthanc_with_bulk_studies(args.studies, args.cache))
        if "list" not in args.skip:
            result["list"] = bench_list(first, args.queries, args.repeat, tmp)
            from findtui.demo import DemoSCP

            with DemoSCP(patients=args.queries, seed=1) as demo:
                result["list_demo"] = bench_list(demo, args.queries, args.repeat, tmp,
                                                 "list-demo", lambda i: f"PAT{i + 1:05d}")

        def copy(name: str, extra: dict | None = None):
            storage = tmp / name
            shutil.copytree(cache, storage)
            return stack.enter_context(peers.orthanc(None, data=None, worklist=None,
                                                     storage_dir=storage, extra_config=extra))

        if "nodes" not in args.skip:
            result["nodes"] = bench_nodes([first, copy("node2"), copy("node3")], args.repeat)
        if "split" not in args.skip:
            capped = copy("capped", {"LimitFindResults": args.limit,
                                     "LimitFindInstances": args.limit})
            result["split"] = bench_split(first, capped, args.repeat)
            result["split"]["limit"] = args.limit
    result["load_avg_end"] = os.getloadavg()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
