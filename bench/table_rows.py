"""Stream rows into the ResultsTable headless and print one JSON line of figures.

A thread worker posts batches of rows (as the query worker does); the UI thread
appends each batch with `add_rows`. A 10 ms interval timer records how late it
fires: that lateness is the longest event-loop stall a user would feel.

    python bench/table_rows.py [--rows 100000] [--batch 1000] [--rate 50000]
                               [--sorted] [--filter TEXT]

`--rate` paces the stream in rows per second (0: as fast as the thread can post);
a paced stream lets frames interleave with appends, as with a real peer.
Wall-clock figures (first_row_ms, total_ms, max_stall_ms: the latter includes
GC pauses and OS scheduling) depend on machine load; the *_cpu_* figures are
CPU time of the UI thread and do not.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import time

from textual import work
from textual.app import App, ComposeResult
from textual.message import Message

from findtui.widgets.results_table import ResultsTable

COLUMNS = [
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "StudyDate",
    "StudyDescription",
    "ModalitiesInStudy",
    "AccessionNumber",
    "StudyInstanceUID",
]
MODALITIES = ["CT", "MR", "US", "CR", "DX", "MG", "PT", "NM"]


def make_rows(count: int) -> list[tuple[str, ...]]:
    """Deterministic study-level rows, roughly the size of real ones."""
    return [
        (
            f"PATIENT^{i % 9973:04d}^{'ABCDEFGH'[i % 8]}",
            f"{(i * 7919) % 1_000_003:07d}",
            f"19{(i % 80) + 20}0{(i % 9) + 1}{(i % 28) + 1:02d}",
            f"2024{(i % 12) + 1:02d}{(i % 28) + 1:02d}",
            f"Study description {i % 311}",
            MODALITIES[i % 8],
            f"ACC{i:08d}",
            f"1.2.826.0.1.3680043.8.498.{i}.{(i * 31) % 100_000}",
        )
        for i in range(count)
    ]


class TimedTable(ResultsTable):
    """Counts frames and the CPU time spent painting and merging."""

    frames = 0
    paint_s = 0.0
    paint_max_s = 0.0
    merge_s = 0.0
    merge_max_s = 0.0

    def render_lines(self, crop):  # type: ignore[no-untyped-def]
        t0 = time.thread_time()
        try:
            return super().render_lines(crop)
        finally:
            spent = time.thread_time() - t0
            TimedTable.frames += 1
            TimedTable.paint_s += spent
            TimedTable.paint_max_s = max(TimedTable.paint_max_s, spent)

    def _merge_pending(self) -> None:
        t0 = time.thread_time()
        super()._merge_pending()
        spent = time.thread_time() - t0
        TimedTable.merge_s += spent
        TimedTable.merge_max_s = max(TimedTable.merge_max_s, spent)


class Batch(Message):
    def __init__(self, rows: list[tuple[str, ...]]) -> None:
        super().__init__()
        self.rows = rows


class BenchApp(App[None]):
    def __init__(
        self, rows: list[tuple[str, ...]], batch: int, rate: int, sort: bool, filter_text: str
    ):
        super().__init__()
        self.rate = rate
        self.all_rows = rows
        self.batch = batch
        self.sort = sort
        self.filter_text = filter_text
        self.done = asyncio.Event()
        self.start = 0.0
        self.first_row_ms: float | None = None
        self.total_ms = 0.0
        self.add_rows_s: list[float] = []
        self.max_stall = 0.0
        self.last_tick = 0.0
        self.render_s = 0.0

    def compose(self) -> ComposeResult:
        yield TimedTable(COLUMNS)

    def on_mount(self) -> None:
        table = self.query_one(ResultsTable)
        table.focus()
        if self.sort:
            table.sort_by(0)
        if self.filter_text:
            table.set_filter(self.filter_text)
        self.last_tick = time.perf_counter()
        self.set_interval(0.01, self.tick)
        self.start = time.perf_counter()
        self.stream()

    def tick(self) -> None:
        now = time.perf_counter()
        if not self.done.is_set():
            self.max_stall = max(self.max_stall, now - self.last_tick - 0.01)
        self.last_tick = now

    @work(thread=True)
    def stream(self) -> None:
        rows, size = self.all_rows, self.batch
        start = time.perf_counter()
        for offset in range(0, len(rows), size):
            if self.rate:
                delay = start + offset / self.rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            self.post_message(Batch(rows[offset : offset + size]))

    def on_batch(self, message: Batch) -> None:
        table = self.query_one(ResultsTable)
        cpu = time.thread_time()
        table.add_rows(message.rows)
        self.add_rows_s.append(time.thread_time() - cpu)
        after = time.perf_counter()
        if self.first_row_ms is None:
            self.first_row_ms = (after - self.start) * 1000
        if table.total_count == len(self.all_rows):
            self.total_ms = (after - self.start) * 1000
            self.done.set()


async def run(args: argparse.Namespace) -> dict[str, object]:
    rows = make_rows(args.rows)
    # The fixture's 100k fresh tuples would make the first full GC pass part of the
    # stream; real rows arrive a batch at a time and are untracked as they go.
    gc.collect()
    app = BenchApp(rows, args.batch, args.rate, args.sorted, args.filter)
    async with app.run_test(size=(80, 24)) as pilot:
        await asyncio.wait_for(app.done.wait(), timeout=120)
        await pilot.pause()
        table = app.query_one(ResultsTable)
        displayed = table.displayed_count
        frames, paint_ms = TimedTable.frames, TimedTable.paint_s * 1000
        merge_ms, merge_max_ms = TimedTable.merge_s * 1000, TimedTable.merge_max_s * 1000
        paint_max_ms = TimedTable.paint_max_s * 1000
        # Interactive operations on the full table (CPU time of the UI thread).
        t0 = time.thread_time()
        table.sort_by(3, reverse=True)
        sort_ms = (time.thread_time() - t0) * 1000
        t0 = time.thread_time()
        table.set_filter("acc0001")
        filter_ms = (time.thread_time() - t0) * 1000
        t0 = time.thread_time()
        table.set_filter("")
        unfilter_ms = (time.thread_time() - t0) * 1000
        await pilot.press("end")
        t0 = time.thread_time()
        for y in range(24):
            table.render_line(y)
        render_24_lines_ms = (time.thread_time() - t0) * 1000
        await pilot.pause()
    return {
        "rows": args.rows,
        "rate": args.rate,
        "batch": args.batch,
        "sorted": args.sorted,
        "filter": args.filter,
        "displayed": displayed,
        "first_row_ms": round(app.first_row_ms or 0.0, 1),
        "total_ms": round(app.total_ms, 1),
        "max_stall_ms": round(app.max_stall * 1000, 1),
        # CPU time (thread_time) of the UI thread, insensitive to other load:
        "add_rows_cpu_total_ms": round(sum(app.add_rows_s) * 1000, 1),
        "add_rows_cpu_max_ms": round(max(app.add_rows_s) * 1000, 2),
        "merge_cpu_total_ms": round(merge_ms, 1),
        "merge_cpu_max_ms": round(merge_max_ms, 2),
        "frames": frames,
        "paint_cpu_total_ms": round(paint_ms, 1),
        "paint_cpu_max_ms": round(paint_max_ms, 2),
        "sort_cpu_ms": round(sort_ms, 1),
        "filter_cpu_ms": round(filter_ms, 1),
        "unfilter_cpu_ms": round(unfilter_ms, 1),
        "render_24_lines_cpu_ms": round(render_24_lines_ms, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=0, help="rows per second (0: unpaced)")
    parser.add_argument("--sorted", action="store_true", help="sort by column 0 while streaming")
    parser.add_argument("--filter", default="", help="filter while streaming")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
