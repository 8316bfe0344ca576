"""Benchmark: findtui --batch against the reference clients, in the same run.

Peers: (a) Orthanc loaded with 10,000 studies (cached under bench/out/), (b) the
embedded demo SCP with 100k studies. Query: STUDY level, Study Root, 7 return
keys. Clients: findtui --batch -q, with -w, with --output-format jsonl;
pynetdicom findscu -q; DCMTK findscu -q. Each is run --repeat times; the
median wall time is reported, and ratios against DCMTK's findscu.

    .venv/bin/python bench/batch.py [--orthanc-studies 10000] [--demo-studies 100000]

Prints progress on stderr and one JSON object on stdout (last line).
"""

from __future__ import annotations

import argparse
import json
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


def clients(address: str, port: int, aet: str, outdir: Path) -> dict[str, list[str]]:
    k = [a for key in KEYS for a in ("-k", key)]
    py = sys.executable
    return {
        "dcmtk_findscu": ["findscu", "-q", "-S", "-aec", aet, address, str(port), *k],
        # DCMTK's counterpart of -w: extract each response to a file
        "dcmtk_findscu_X": ["findscu", "-q", "-X", "-od", str(outdir / "dcmtk"), "-S", "-aec",
                            aet, address, str(port), *k],
        "pynetdicom_findscu": [py, "-m", "pynetdicom", "findscu", "-q", "-S", "-aec", aet,
                               address, str(port), *k],
        "findtui": [py, "-m", "findtui", "--batch", "-q", "-S", "-aec", aet, address,
                    str(port), *k],
        "findtui_w": [py, "-m", "findtui", "--batch", "-q", "-w", "-od", str(outdir),
                      "--overwrite", "-S", "-aec", aet, address, str(port), *k],
        "findtui_jsonl": [py, "-m", "findtui", "--batch", "-q", "--output-format", "jsonl",
                          "-S", "-aec", aet, address, str(port), *k],
    }


def time_command(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"benchmark command failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
    return wall


def count_matches(address: str, port: int, aet: str) -> int:
    k = [a for key in KEYS for a in ("-k", key)]
    r = subprocess.run([sys.executable, "-m", "findtui", "--batch", "-q", "-S", "-aec", aet,
                        "--output-format", "jsonl", address, str(port), *k],
                       capture_output=True, text=True, check=True)
    return len(r.stdout.splitlines())


def measure(name: str, address: str, port: int, aet: str, repeat: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "dcmtk").mkdir()
        cmds = clients(address, port, aet, Path(tmp))
        matches = count_matches(address, port, aet)
        walls: dict[str, list[float]] = {c: [] for c in cmds}
        for i in range(repeat):
            for client, cmd in cmds.items():  # interleaved, so drift hits all alike
                walls[client].append(time_command(cmd))
                print(f"[{name}] run {i + 1}/{repeat} {client}: {walls[client][-1]:.2f} s",
                      file=sys.stderr)
    median = {c: round(statistics.median(w), 3) for c, w in walls.items()}
    base = median["dcmtk_findscu"]
    ratios = {c: round(v / base, 2) for c, v in median.items()}
    # files against files: -w compared with DCMTK's -X
    ratios["findtui_w_vs_dcmtk_X"] = round(median["findtui_w"] / median["dcmtk_findscu_X"], 2)
    return {
        "matches": matches,
        "median_wall_s": median,
        "ratio_vs_dcmtk": ratios,
        "speedup_vs_pynetdicom": {c: round(median["pynetdicom_findscu"] / v, 2)
                                  for c, v in median.items() if c.startswith("findtui")},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orthanc-studies", type=int, default=10_000)
    ap.add_argument("--demo-studies", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--skip-orthanc", action="store_true")
    ap.add_argument("--skip-demo", action="store_true")
    args = ap.parse_args()
    for tool in ("findscu",):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: install Debian 'dcmtk' (bash .ci/install)")

    result: dict = {"repeat": args.repeat, "keys": KEYS}
    if not args.skip_orthanc:
        args.cache.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with peers.orthanc_with_bulk_studies(args.orthanc_studies, args.cache) as orthanc:
            print(f"[orthanc] ready with {args.orthanc_studies} studies in "
                  f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
            result["orthanc"] = measure("orthanc", orthanc.address, orthanc.port,
                                        orthanc.ae_title, args.repeat)
    if not args.skip_demo:
        with DemoSCP(studies=args.demo_studies, seed=1) as demo:
            result["demo"] = measure("demo", demo.address, demo.port, "FINDTUI-DEMO",
                                     args.repeat)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
