"""Benchmark: findtui --batch against the reference clients, in the same run.

Peers: (a) Orthanc loaded with 10,000 studies (cached under bench/out/), (b) the
embedded demo SCP with 100k studies. Query: STUDY level, Study Root, 7 return
keys. Clients: DCMTK findscu -q and -X (a file per response), pynetdicom findscu
-q, findtui --batch -q, -w, csv, json, jsonl and its -v log. Every client's
matches are counted (files, rows, log lines; a quiet client by one run with its
log), the order alternates between runs, and the median wall and CPU times of
--repeat runs are reported, as ratios against DCMTK's findscu (-q) and, for the
outputs, against DCMTK's findscu -X.

    .venv/bin/python bench/batch.py [--orthanc-studies 10000] [--demo-studies 100000]

Prints progress on stderr and one JSON object on stdout (last line).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Benchmarks never touch the user's real profiles or history (subprocesses inherit this).
os.environ["FINDTUI_CONFIG_DIR"] = tempfile.mkdtemp(prefix="findtui-bench-")
sys.path.insert(0, str(ROOT / "tests"))

import peers  # noqa: E402

from findtui.demo import DemoSCP  # noqa: E402

KEYS = [
    "QueryRetrieveLevel=STUDY", "PatientName=", "PatientID=", "StudyDate=",
    "StudyInstanceUID=", "AccessionNumber=", "ModalitiesInStudy=", "StudyDescription=",
]


def clients(address: str, port: int, aet: str, out: Path) -> dict[str, tuple[list[str], str]]:
    """Each client: its command, and how its output is counted ('files:DIR', 'lines',
    'json', 'log' (its -v log on stderr), 'quiet' (verified by a counting run instead)."""
    k = [a for key in KEYS for a in ("-k", key)]
    py = sys.executable
    ft = [py, "-m", "findtui", "--batch", "-S", "-aec", aet, address, str(port), *k]
    return {
        "dcmtk_findscu": (["findscu", "-q", "-S", "-aec", aet, address, str(port), *k], "quiet"),
        # DCMTK's counterpart of -w and of every output: a file per response
        "dcmtk_findscu_X": (["findscu", "-q", "-X", "-od", str(out / "dcmtk"), "-S", "-aec",
                             aet, address, str(port), *k], f"files:{out / 'dcmtk'}"),
        "pynetdicom_findscu": ([py, "-m", "pynetdicom", "findscu", "-q", "-S", "-aec", aet,
                                address, str(port), *k], "quiet"),
        "findtui": ([*ft, "-q"], "quiet"),
        "findtui_w": ([*ft, "-q", "-w", "-od", str(out / "rsp"), "--overwrite"],
                      f"files:{out / 'rsp'}"),
        "findtui_csv": ([*ft, "-q", "--output-format", "csv"], "csv"),
        "findtui_json": ([*ft, "-q", "--output-format", "json"], "json"),
        "findtui_jsonl": ([*ft, "-q", "--output-format", "jsonl"], "lines"),
        "findtui_v_log": ([*ft, "-v"], "log"),
    }


def run_client(cmd: list[str], how: str) -> tuple[float, float, int | None]:
    """(wall s, CPU s of the process, matches it received or None when it prints none)."""
    if how.startswith("files:"):
        folder = Path(how[6:])
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="replace")
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode != 0:
        raise SystemExit(f"benchmark command failed ({r.returncode}): {' '.join(cmd)}\n"
                         f"{r.stderr[-2000:]}")
    if how.startswith("files:"):
        count = sum(1 for _ in Path(how[6:]).iterdir())
    elif how == "lines":
        count = len(r.stdout.splitlines())
    elif how == "csv":
        count = len(r.stdout.splitlines()) - 1
    elif how == "json":
        count = len(json.loads(r.stdout))
    elif how == "log":
        count = pending_lines(r.stderr)
    else:
        count = None
    return wall, cpu, count


def verify_quiet(cmd: list[str]) -> int:
    """A quiet client's count, from the same client run once with its -v log."""
    verbose = [("-v" if a == "-q" else a) for a in cmd]
    r = subprocess.run(verbose, capture_output=True, encoding="utf-8", errors="replace")
    return pending_lines(r.stdout + r.stderr)


def pending_lines(text: str) -> int:
    """Pending responses in a -v log: DCMTK 'Find Response: N (Pending)', pynetdicom and
    findtui 'Find SCP Response: N - 0xFF00 (Pending)'."""
    return len(re.findall(r"Find (?:SCP )?Response: \d+ (?:- 0xFF0[01] )?\(Pending", text))


def measure(name: str, address: str, port: int, aet: str, repeat: int, out_root: Path) -> dict:
    with tempfile.TemporaryDirectory(dir=out_root) as tmp:
        cmds = clients(address, port, aet, Path(tmp))
        r = subprocess.run(cmds["findtui_jsonl"][0], capture_output=True, text=True, check=True)
        matches = len(r.stdout.splitlines())
        for client, (cmd, how) in cmds.items():
            if how == "quiet":
                got = verify_quiet(cmd)
                if got != matches:
                    raise SystemExit(f"{client} received {got} of {matches} matches")
        walls: dict[str, list[float]] = {c: [] for c in cmds}
        cpus: dict[str, list[float]] = {c: [] for c in cmds}
        order = list(cmds)
        for i in range(repeat):
            # alternating order, so that drift and caches hit every client alike
            for client in (order if i % 2 == 0 else order[::-1]):
                cmd, how = cmds[client]
                wall, cpu, count = run_client(cmd, how)
                if count is not None and count != matches:
                    raise SystemExit(f"{client} received {count} of {matches} matches")
                walls[client].append(wall)
                cpus[client].append(cpu)
                print(f"[{name}] run {i + 1}/{repeat} {client}: {wall:.2f} s "
                      f"(CPU {cpu:.2f} s)", file=sys.stderr)
    median = {c: round(statistics.median(w), 3) for c, w in walls.items()}
    cpu = {c: round(statistics.median(w), 3) for c, w in cpus.items()}
    base, files = median["dcmtk_findscu"], median["dcmtk_findscu_X"]
    ratios = {c: round(v / base, 2) for c, v in median.items()}
    # outputs against DCMTK writing a file per response (-X)
    outputs = {c: round(median[c] / files, 2) for c in median
               if c.startswith("findtui_")}
    return {
        "matches": matches,
        "median_wall_s": median,
        "median_cpu_s": cpu,
        "ratio_vs_dcmtk": ratios,
        "outputs_vs_dcmtk_X": outputs,
        "cpu_ratio_vs_dcmtk": round(cpu["findtui"] / max(cpu["dcmtk_findscu"], 1e-3), 2),
        "speedup_vs_pynetdicom": {c: round(median["pynetdicom_findscu"] / v, 2)
                                  for c, v in median.items() if c.startswith("findtui")},
        "all_walls_s": {c: [round(x, 3) for x in w] for c, w in walls.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orthanc-studies", type=int, default=10_000)
    ap.add_argument("--demo-studies", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir()
                    else Path(tempfile.gettempdir()),
                    help="where the clients write their files (default: /dev/shm, a RAM "
                         "folder: disk noise on 10k small files is larger than the effect)")
    ap.add_argument("--cache", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--skip-orthanc", action="store_true")
    ap.add_argument("--skip-demo", action="store_true")
    args = ap.parse_args()
    for tool in ("findscu",):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: install Debian 'dcmtk' (bash .ci/install)")

    result: dict = {"repeat": args.repeat, "keys": KEYS, "load_avg": os.getloadavg(),
                    "cpus": os.cpu_count()}
    if not args.skip_orthanc:
        args.cache.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with peers.orthanc_with_bulk_studies(args.orthanc_studies, args.cache) as orthanc:
            print(f"[orthanc] ready with {args.orthanc_studies} studies in "
                  f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
            result["orthanc"] = measure("orthanc", orthanc.address, orthanc.port,
                                        orthanc.ae_title, args.repeat, args.out)
    if not args.skip_demo:
        with DemoSCP(studies=args.demo_studies, seed=1) as demo:
            result["demo"] = measure("demo", demo.address, demo.port, "FINDTUI-DEMO",
                                     args.repeat, args.out)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
