"""Benchmark: findtui --retrieve (C-GET and C-MOVE) against DCMTK getscu/movescu, same run.

Orthanc is loaded with 40 patients x 5 CT instances (256 KB each, 200 instances) and
one large study of 200 instances. Clients, each run --repeat times in alternating order:

* ``findtui --batch -P -k QueryRetrieveLevel=PATIENT --query-list patients.csv
  --retrieve get`` (the 40 PatientIDs from a list: one association for the queries, one
  for the 40 patient items) against a shell loop of ``getscu`` per patient;
  the same with ``--retrieve move`` against a loop of ``movescu`` per patient; each also
  with ``--parallel 4`` (the 40 queries over 4 associations);
* the large study: ``findtui ... --retrieve get|move`` against one ``getscu``/``movescu``.

Every client's instances are counted on disk (files written to /dev/shm); the median
wall time, instances/s and MB/s are reported with ratios to the DCMTK reference (run
with TCP_NODELAY=1, its fastest setting). A temporary config dir keeps the benchmark out
of the user's history.

    .venv/bin/python bench/retrieve.py [--repeat 5]

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
os.environ["FINDTUI_CONFIG_DIR"] = tempfile.mkdtemp(prefix="findtui-bench-")
sys.path.insert(0, str(ROOT / "tests"))

import peers  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian  # noqa: E402

CT = "1.2.840.10008.5.1.4.1.1.2"
ROWS, COLS = 256, 512  # 256 KB of 16-bit pixels
LARGE_STUDY = peers.det_uid("bench-retrieve-large-study")


def _ct(patient: str, study: str, series: str, n: int) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = peers.det_uid("bench-retrieve", study, n)
    ds.PatientID, ds.PatientName = patient, f"RETRIEVE^{patient}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.StudyDate, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "20240101", "CT", 1, n + 1
    ds.Rows, ds.Columns = ROWS, COLS
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    ds.PixelData = bytes((n + i) & 0xFF for i in range(256)) * (ROWS * COLS * 2 // 256)
    ds.file_meta = peers._file_meta(CT, ds.SOPInstanceUID)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def datasets():
    for p in range(40):
        pid = f"RB{p:03d}"
        study = peers.det_uid("bench-retrieve-study", p)
        series = peers.det_uid("bench-retrieve-series", p)
        for n in range(5):
            yield _ct(pid, study, series, n)
    series = peers.det_uid("bench-retrieve-large-series")
    for n in range(200):
        yield _ct("RBLARGE", LARGE_STUDY, series, n)


# DCMTK as Debian builds it leaves Nagle's algorithm on unless TCP_NODELAY is set: each
# C-STORE then waits ~40 ms for a delayed ACK (11 s instead of 1.5 s for 200 instances).
# The reference runs at its best.
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def count(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir()
                    else Path(tempfile.gettempdir()))
    args = ap.parse_args()
    ours, dcmtk_port = peers.free_ports(2)
    extra = {"DicomAlwaysAllowGet": True, "DicomAlwaysAllowMove": True,
             "DicomModalities": {"findtui": ["FINDTUI", "127.0.0.1", ours],
                                 "movescu": ["MOVESCU", "127.0.0.1", dcmtk_port]}}
    py = sys.executable
    getscu = peers.require_binary("getscu", "dcmtk")
    movescu = peers.require_binary("movescu", "dcmtk")
    with peers.orthanc(data=None, worklist=None, extra_config=extra) as o:
        t = time.perf_counter()
        loaded = o.upload(datasets())
        print(f"[orthanc] loaded {loaded} instances in {time.perf_counter() - t:.1f} s",
              file=sys.stderr)
        net = [o.address, str(o.port)]
        patients = [f"RB{p:03d}" for p in range(40)]
        ft = [py, "-m", "findtui", "--batch", "-q", "-aet", "FINDTUI", "-aec", o.ae_title]
        move_opts = ["--store-port", str(ours), "--store-host", "127.0.0.1"]
        dcmtk_get = [getscu, "-q", "-aet", "MOVESCU", "-aec", o.ae_title]
        dcmtk_move = [movescu, "-q", "-aet", "MOVESCU", "-aem", "MOVESCU", "-aec", o.ae_title,
                      "--port", str(dcmtk_port)]

        def loop(base: list[str], level_keys: list[list[str]]):
            def run(folder: Path):
                for keys in level_keys:
                    subprocess.run([*base, "-od", str(folder), *net, *keys], check=True,
                                   capture_output=True, env=DCMTK_ENV)
            return run

        def one(cmd: list[str]):
            def run(folder: Path):
                r = subprocess.run([*cmd, "-od", str(folder)], capture_output=True, text=True,
                                   env=DCMTK_ENV)
                if r.returncode:
                    raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
            return run

        per_patient = [["-P", "-k", "QueryRetrieveLevel=PATIENT", "-k", f"PatientID={p}"]
                       for p in patients]
        listing = Path(tempfile.mkdtemp(prefix="findtui-bench-list-", dir=args.out)) / "p.csv"
        listing.write_text("PatientID\n" + "\n".join(patients) + "\n")
        from_list = ["-P", *net, "-k", "QueryRetrieveLevel=PATIENT", "--query-list",
                     str(listing)]
        large = ["-S", "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={LARGE_STUDY}"]
        cases = {
            "patients_get": (200, {
                "findtui": one([*ft, *from_list, "--retrieve", "get"]),
                "findtui_parallel_4": one([*ft, *from_list, "--parallel", "4", "--retrieve",
                                           "get"]),
                "dcmtk_loop": loop(dcmtk_get, per_patient)}),
            "patients_move": (200, {
                "findtui": one([*ft, *from_list, "--retrieve", "move", *move_opts]),
                "findtui_parallel_4": one([*ft, *from_list, "--parallel", "4", "--retrieve",
                                           "move", *move_opts]),
                "dcmtk_loop": loop(dcmtk_move, per_patient)}),
            "large_study_get": (200, {
                "findtui": one([*ft, *net, *large, "--retrieve", "get"]),
                "dcmtk": one([*dcmtk_get, *net, *large])}),
            "large_study_move": (200, {
                "findtui": one([*ft, *net, *large, "--retrieve", "move", *move_opts]),
                "dcmtk": one([*dcmtk_move, *net, *large])}),
        }
        results = {}
        for case, (expected, clients) in cases.items():
            walls: dict[str, list[float]] = {c: [] for c in clients}
            sizes: dict[str, int] = {}
            order = list(clients)
            for i in range(args.repeat):
                for client in (order if i % 2 == 0 else order[::-1]):
                    folder = Path(tempfile.mkdtemp(prefix="findtui-bench-rt-", dir=args.out))
                    try:
                        t = time.perf_counter()
                        clients[client](folder)
                        wall = time.perf_counter() - t
                        n, size = count(folder)
                    finally:
                        shutil.rmtree(folder, ignore_errors=True)
                    if n != expected:
                        raise SystemExit(f"{case} {client}: {n} of {expected} instances")
                    walls[client].append(wall)
                    sizes[client] = size
                    print(f"[{case}] run {i + 1}/{args.repeat} {client}: {wall:.2f} s",
                          file=sys.stderr)
            median = {c: round(statistics.median(w), 3) for c, w in walls.items()}
            ref = median["dcmtk_loop" if "dcmtk_loop" in median else "dcmtk"]
            results[case] = {
                "instances": expected,
                "median_wall_s": median,
                "ratio_vs_dcmtk": {c: round(v / ref, 2) for c, v in median.items()},
                "instances_per_s": {c: round(expected / v, 1) for c, v in median.items()},
                "mb_per_s": {c: round(sizes[c] / 1e6 / v, 1) for c, v in median.items()},
                "all_walls_s": {c: [round(x, 3) for x in w] for c, w in walls.items()},
            }
    print(json.dumps({"repeat": args.repeat, "load_avg_1min": os.getloadavg()[0],
                      "cpus": os.cpu_count(), "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
