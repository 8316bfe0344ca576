"""Benchmark: stream N C-FIND matches into the TUI, against the same query in --batch.

    python bench/tui_stream.py --rows 10000 --repeat 3      # medians of 3 alternated runs
    python bench/tui_stream.py --rows 100000
    python bench/tui_stream.py --rows 100000 --profile      # pyinstrument, UI thread
    BENCH_DEBUG=1 python bench/tui_stream.py ...            # print each stall > 50 ms, each GC > 10 ms

The demo SCP runs in its own process (``findtui demo-scp --studies N``), so
neither run shares a GIL with it. The same Study Root STUDY query, same keys,
is run by:

* the TUI, headless (``App.run_test``, every frame rendered), timing:
  first_row_ms   first response received by the query thread -> row in the table
                 and painted (the frame after it was added)
  total_s        Run -> final status, with every row in the table
  max_stall_ms   the longest event-loop stall during the stream, measured by a
                 5 ms asyncio sleeper measuring its own lateness (wall clock)
  max_busy_ms    the most CPU the event-loop thread itself used within one such
                 stall: the part of a stall that is the app's own work, not the
                 OS running other processes
  peak_rss_mb    peak RSS of this process after the first run (the TUI; the SCP is
                 another process)
  ui_thread_cpu_s / process_cpu_s   CPU used by the event loop / the whole TUI process
* ``python -m findtui --batch -q -S ...`` in a subprocess (wall clock, which
  includes interpreter start-up: ``batch_startup_s`` estimates that part;
  ``batch_cpu_s`` is its CPU time).

The SCP, the TUI and the batch client share this machine's cores: on a small or
busy machine (see ``cpus`` and ``load_avg_1min`` in the output) the TUI's extra
CPU (decoding every identifier for the table, drawing) slows the SCP too, and
stalls include time the OS did not run the process at all. Use --repeat.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Benchmarks never touch the user's real profiles or history (subprocesses inherit this).
os.environ["FINDTUI_CONFIG_DIR"] = tempfile.mkdtemp(prefix="findtui-bench-")
sys.path.insert(0, str(ROOT / "src"))

from findtui.app import make_app  # noqa: E402
from findtui.engine.keys import build_identifier  # noqa: E402
from findtui.engine.models import QueryModel  # noqa: E402
from findtui.engine.query import FindRequest, Network  # noqa: E402
from findtui.engine.hierarchy import default_keys  # noqa: E402
from findtui.widgets.results_table import ResultsTable  # noqa: E402

KEYS = ["QueryRetrieveLevel=STUDY", *default_keys(QueryModel.STUDY, "STUDY")]
AE_TITLE = "FINDTUI-DEMO"
BATCH_CPU: list[float] = []


def start_demo(rows: int, patients: int) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "findtui", "demo-scp", "--port", "0", "--studies", str(rows),
         "--patients", str(patients), "--aet", AE_TITLE],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    line = proc.stdout.readline()
    m = re.search(r"listening on [\d.]+:(\d+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"demo SCP did not start: {line!r}")
    return proc, int(m.group(1))


def run_batch(port: int) -> float:
    cmd = [sys.executable, "-m", "findtui", "--batch", "-q", "-S", "-aec", AE_TITLE,
           "127.0.0.1", str(port)]
    for key in KEYS:
        cmd += ["-k", key]
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    BATCH_CPU.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return time.perf_counter() - start


def batch_startup() -> float:
    """Interpreter start + the imports of a batch run (no query)."""
    code = ("import findtui.cli, findtui.engine.query, findtui.engine.output, "
            "findtui.engine.keys")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    return time.perf_counter() - start


async def run_tui(port: int, rows: int, size: tuple[int, int], profile: bool) -> dict:
    request = FindRequest(network=Network("127.0.0.1", port, called_aet=AE_TITLE),
                          identifier=build_identifier(KEYS), model=QueryModel.STUDY)
    app = make_app(request)
    profiler = None
    async with app.run_test(size=size) as pilot:
        await pilot.pause(0.5)  # start-up done (incl. the one-off gc.freeze), then measure
        screen = app.query_screen
        table = screen.query_one(ResultsTable)
        stalls: list[float] = []
        busy: list[float] = []  # event-loop thread CPU within each sleep: our own work
        streaming = True

        async def sleeper() -> None:
            while streaming:
                t0 = time.perf_counter()
                c0 = time.thread_time()
                p0 = time.process_time()
                await asyncio.sleep(0.005)
                late = time.perf_counter() - t0 - 0.005
                cpu = time.thread_time() - c0
                proc_cpu = time.process_time() - p0
                stalls.append(late)
                busy.append(cpu)
                if late > 0.05 and os.environ.get("BENCH_DEBUG"):
                    print(f"stall {late*1000:.0f} ms at {t0 - t_start:.2f} s, "
                          f"UI thread CPU {cpu*1000:.0f} ms, process CPU {proc_cpu*1000:.0f} ms",
                          file=sys.stderr)

        t_start = time.perf_counter()
        stall_task = asyncio.create_task(sleeper())
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(async_mode="disabled")
            profiler.start()
        t_run = time.perf_counter()
        ui_cpu0, proc_cpu0 = time.thread_time(), time.process_time()
        screen.action_run()
        while "finished" not in screen.timings:
            await asyncio.sleep(0.01)
        t_done = time.perf_counter()
        ui_cpu, proc_cpu = time.thread_time() - ui_cpu0, time.process_time() - proc_cpu0
        streaming = False
        await stall_task
        if profiler is not None:
            profiler.stop()
        await pilot.pause()
        timings = dict(screen.timings)
        shown = table.total_count
        status = screen.query_one("#status").state
    if profiler is not None:
        out = ROOT / "bench" / "out"
        out.mkdir(exist_ok=True)
        path = out / f"tui_stream_{rows}.html"
        path.write_text(profiler.output_html())
        print(f"profile: {path}", file=sys.stderr)
        print(profiler.output_text(unicode=True, color=False, show_all=False)[:6000],
              file=sys.stderr)
    first = timings.get("first_response", 0.0)
    return {
        "rows_in_table": shown,
        "status": status,
        "first_row_ms": round((timings["first_row_painted"] - first) * 1000, 1),
        "first_row_added_ms": round((timings["first_row"] - first) * 1000, 1),
        "associated_ms": round((timings.get("associated", t_run) - t_run) * 1000, 1),
        "total_s": round(t_done - t_run, 3),
        "ui_thread_cpu_s": round(ui_cpu, 2),
        "process_cpu_s": round(proc_cpu, 2),
        "max_stall_ms": round(max(stalls, default=0.0) * 1000, 1),
        "p99_stall_ms": round(sorted(stalls)[int(len(stalls) * 0.99)] * 1000, 1) if stalls else 0,
        "max_busy_ms": round(max(busy, default=0.0) * 1000, 1),
    }


def _trace_gc() -> None:
    import gc
    import threading

    starts = {}

    def callback(phase, info):
        if phase == "start":
            starts[threading.get_ident()] = time.perf_counter()
        else:
            took = time.perf_counter() - starts.pop(threading.get_ident(), time.perf_counter())
            if took > 0.01:
                print(f"gc gen{info['generation']} {took * 1000:.0f} ms in "
                      f"{threading.current_thread().name}", file=sys.stderr)

    gc.callbacks.append(callback)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="matches (demo studies)")
    parser.add_argument("--size", default="120x40", help="terminal size WxH (default 120x40)")
    parser.add_argument("--profile", action="store_true", help="pyinstrument the TUI run")
    parser.add_argument("--repeat", type=int, default=1,
                        help="alternate TUI and batch runs N times; report medians")
    args = parser.parse_args()
    if os.environ.get("BENCH_DEBUG"):
        _trace_gc()
    width, height = (int(v) for v in args.size.lower().split("x"))
    patients = max(1, min(args.rows, 5_000))
    proc, port = start_demo(args.rows, patients)
    tuis, batches = [], []
    try:
        for _ in range(args.repeat):
            # Alternate, so a busy machine hurts both runs alike.
            tuis.append(asyncio.run(run_tui(port, args.rows, (width, height), args.profile)))
            if len(tuis) == 1:  # one session's peak (later runs reuse the freed memory)
                rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            batches.append(run_batch(port))
        startup_s = batch_startup()
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    def median(values):
        values = sorted(values)
        return values[len(values) // 2]

    tui = {key: median([t[key] for t in tuis]) if isinstance(tuis[0][key], (int, float))
           else tuis[-1][key] for key in tuis[0]}
    batch_s = median(batches)
    result = {
        "rows": args.rows,
        "runs": args.repeat,
        **tui,
        "batch_s": round(batch_s, 3),
        "batch_startup_s": round(startup_s, 3),
        "batch_cpu_s": round(median(BATCH_CPU), 2),
        "total_ratio_vs_batch": round(tui["total_s"] / batch_s, 3),
        "total_ratio_vs_batch_query_only": round(tui["total_s"] / max(1e-6, batch_s - startup_s),
                                                 3),
        "peak_rss_mb": round(rss_mb, 1),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "all_runs": {"tui_total_s": [t["total_s"] for t in tuis],
                     "max_stall_ms": [t["max_stall_ms"] for t in tuis],
                     "max_busy_ms": [t["max_busy_ms"] for t in tuis],
                     "first_row_ms": [t["first_row_ms"] for t in tuis],
                     "batch_s": [round(b, 3) for b in batches]},
        "targets_100k": {"first_row_ms": 200, "max_stall_ms": 50, "total_ratio_vs_batch": 1.25,
                         "peak_rss_mb": 400},
    }
    print(json.dumps(result))
    return 0 if all(t["rows_in_table"] == args.rows for t in tuis) else 1


if __name__ == "__main__":
    raise SystemExit(main())
