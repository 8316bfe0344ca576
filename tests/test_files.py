"""Files: -w never writes outside its folder nor overwrites silently; a read-only
folder or a full disk is a clear error (exit 6) that keeps what was written.

A full disk is a real one where the tests run as root (a 64 KB tmpfs mounted
for the test, and unmounted after it); RLIMIT_FSIZE (EFBIG) and engine-level
fakes simulate one everywhere.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import UID

from faultscp import FaultSCP, assert_no_traceback, run_findtui
from findtui.cli import ExitCode
from findtui.engine import output
from findtui.engine.query import Pending

KEYS = ["-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=", "-k", "PatientComments="]


def big(i: int, size: int = 6000) -> dict:
    return {"PatientID": f"P{i}", "PatientComments": "x" * size}


def serve(n: int = 40, size: int = 6000, interval: float = 0.0):
    return lambda s: s.serve([big(i, size) for i in range(n)], interval=interval)


def run(scp, *args, verbose=False, **kw):
    level = [] if verbose or "-q" in args else ["-ll", "warning"]
    return run_findtui([*level, *args, scp.address, str(scp.port), *KEYS], **kw)


def rsp_ids(folder: Path) -> list[str]:
    files = sorted(folder.glob("rsp*.dcm"))
    assert [f.name for f in files] == [f"rsp{i:06d}.dcm" for i in range(1, len(files) + 1)]
    return [str(dcmread(f).PatientID) for f in files]  # every kept file is complete


def csv_ids(path: Path) -> list[str]:
    text = path.read_text()
    complete = text[:text.rfind("\n") + 1]  # a row cut by the full disk is not a row
    return [row["PatientID"] for row in csv.DictReader(io.StringIO(complete))]


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "64k", readonly: bool = False):
    """A tmpfs of ``size`` mounted at ``path`` for the test (root only), then unmounted."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root (the RLIMIT_FSIZE tests cover a full disk)")
    path.mkdir()
    opts = f"size={size},mode=0777" + (",ro" if readonly else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _limit_file_size(limit: int):
    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a core dump
    return preexec


# --------------------------------------------------------------------------
# Full disk
# --------------------------------------------------------------------------


def test_full_disk_rsp_files_tmpfs(tmp_path):
    with tmpfs(tmp_path / "small") as small, FaultSCP(serve()) as scp:
        r = run(scp, "-w", "-od", str(small), "--output-format", "csv",
                "--output", str(tmp_path / "out.csv"), verbose=True)
        ids = rsp_ids(small)
    assert r.returncode == ExitCode.OUTPUT, r.err[-3000:]
    assert_no_traceback(r)
    line = next(x for x in r.error_lines() if "No space left on device" in x)
    assert "free some space or choose another folder (-od)" in line
    assert 2 <= len(ids) < 40 and ids == [f"P{i}" for i in range(len(ids))]
    assert csv_ids(tmp_path / "out.csv") == ids  # nothing lost, nothing half-written
    assert scp.cancels == 1 and "0xFE00 (Cancel)" in r.err  # the query was cancelled


def test_full_disk_csv_output_tmpfs(tmp_path):
    with tmpfs(tmp_path / "small", size="16k") as small, FaultSCP(serve()) as scp:
        r = run(scp, "--output-format", "csv", "--output", str(small / "out.csv"))
        ids = csv_ids(small / "out.csv")
    assert r.returncode == ExitCode.OUTPUT, r.err[-3000:]
    assert_no_traceback(r)
    assert any("No space left on device" in x for x in r.error_lines())
    assert len(ids) >= 1 and ids == [f"P{i}" for i in range(len(ids))]


def test_file_size_limit_rsp_files(tmp_path):
    """Unprivileged 'disk full': response i is ~i KB, files are limited to 3.5 KB."""
    def script(s):
        s.serve([{"PatientID": f"P{i}", "PatientComments": "y" * (1000 * (i + 1))}
                 for i in range(10)])

    (tmp_path / "rsp").mkdir()
    with FaultSCP(script) as scp:
        r = run(scp, "-w", "-od", str(tmp_path / "rsp"), "--output-format", "jsonl",
                preexec_fn=_limit_file_size(3500))  # stdout is a pipe: not limited
    assert r.returncode == ExitCode.OUTPUT, r.err[-3000:]
    assert_no_traceback(r)
    assert any("rsp000004.dcm" in x and "File too large" in x for x in r.error_lines())
    assert rsp_ids(tmp_path / "rsp") == ["P0", "P1", "P2"]  # the cut rsp000004.dcm is removed
    assert len(r.out.splitlines()) == 3


def test_file_size_limit_csv_output(tmp_path):
    with FaultSCP(serve(size=1000)) as scp:
        r = run(scp, "--output-format", "csv", "--output", str(tmp_path / "out.csv"),
                preexec_fn=_limit_file_size(5000))
    assert r.returncode == ExitCode.OUTPUT, r.err[-3000:]
    assert_no_traceback(r)
    assert any("cannot write" in x and "File too large" in x for x in r.error_lines())
    ids = csv_ids(tmp_path / "out.csv")
    assert 1 <= len(ids) <= 5 and ids == [f"P{i}" for i in range(len(ids))]


def _pending(i: int) -> Pending:
    raw = b"\x10\x00\x20\x00LO\x02\x00" + f"P{i}".encode()
    return Pending(i, 0xFF00, raw, UID("1.2.840.10008.1.2.1"))


def test_engine_disk_full_keeps_earlier_files_and_removes_the_cut_one(tmp_path, monkeypatch):
    writer = output.ResponseFileWriter(tmp_path, "1.2.840.10008.5.1.4.1.2.1.1")
    writer.write(_pending(1))
    real_write = os.write

    def full(fd, data):  # the disk fills up 10 bytes into the next file in tmp_path
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path)):
            real_write(fd, bytes(data[:10]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(output.files.os, "write", full)
    with pytest.raises(output.OutputError, match="No space left on device; free some space"):
        writer.write(_pending(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rsp000001.dcm"]
    assert dcmread(tmp_path / "rsp000001.dcm").PatientID == "P1"


def test_stream_writers_flush_when_no_further_response_is_waiting():
    """One flush (a write to the pipe or file) per burst of responses, not per row: the
    last response of a burst (more=False) and close() flush; those before it do not."""
    class Counting(io.StringIO):
        flushes = 0

        def flush(self):
            self.flushes += 1
            return super().flush()

    for make in (lambda s: output.CsvWriter(s, ["PatientID"]),
                 lambda s: output.JsonWriter(s, lines=True),
                 lambda s: output.JsonWriter(s, lines=False)):
        stream = Counting()
        writer = make(stream)
        before = stream.flushes
        for i in range(1, 4):
            response = _pending(i)
            response.more = i < 3
            writer.write(response)
            assert stream.flushes == before + (i == 3), i
        assert "P3" in stream.getvalue()
        writer.close()
        assert stream.flushes == before + 2


def test_engine_stream_writers_turn_os_errors_into_output_errors():
    class FullStream(io.StringIO):
        name = "/mnt/full/out.csv"

        def flush(self):
            if self.getvalue().count("\n") > 2:
                raise OSError(errno.ENOSPC, "No space left on device")

    writer = output.CsvWriter(FullStream(), ["PatientID"])
    writer.write(_pending(1))
    with pytest.raises(output.OutputError, match="'/mnt/full/out.csv': No space left"):
        writer.write(_pending(2))

    class ClosedPipe(io.StringIO):
        def flush(self):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    with pytest.raises(BrokenPipeError):  # `| head` stays a quiet exit 0 in the CLI
        output.JsonWriter(ClosedPipe(), lines=False)


# --------------------------------------------------------------------------
# Read-only folder
# --------------------------------------------------------------------------


@contextlib.contextmanager
def readonly_folder(tmp_path: Path):
    if os.geteuid() == 0:  # root ignores permissions: a read-only file system then
        with tmpfs(tmp_path / "ro", readonly=True) as folder:
            yield folder
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)


def test_read_only_folder_is_refused_before_querying(tmp_path):
    with readonly_folder(tmp_path) as folder, FaultSCP(serve(3)) as scp:
        r = run(scp, "-w", "-od", str(folder))
    assert r.returncode == ExitCode.OUTPUT
    assert_no_traceback(r)
    assert any("is not writable; choose another (-od)" in x for x in r.error_lines())
    assert scp.associations == 0


def test_folder_turning_read_only_mid_query_keeps_what_was_written(tmp_path):
    with tmpfs(tmp_path / "fs", size="1m") as folder, \
            FaultSCP(serve(40, size=10, interval=0.3)) as scp:
        proc = subprocess.Popen(
            [os.environ.get("PYTHON", __import__("sys").executable), "-m", "findtui", "--batch",
             "-w", "-od", str(folder), scp.address, str(scp.port), *KEYS],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not (folder / "rsp000003.dcm").exists():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        while subprocess.run(["mount", "-o", "remount,ro", str(folder)],
                             capture_output=True).returncode:  # busy while a file is open
            assert time.monotonic() < deadline
            time.sleep(0.01)
        _, err = proc.communicate(timeout=30)
        ids = rsp_ids(folder)
    err = err.decode()
    assert proc.returncode == ExitCode.OUTPUT, err
    assert "Traceback" not in err
    assert "Read-only file system; the file system is read-only" in err
    assert len(ids) >= 3 and ids == [f"P{i}" for i in range(len(ids))]


# --------------------------------------------------------------------------
# Never outside the folder, never overwritten silently
# --------------------------------------------------------------------------


@pytest.fixture
def victim(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    path = outside / "precious.dcm"
    path.write_bytes(b"precious")
    (tmp_path / "rsp").mkdir()
    return path


@pytest.mark.parametrize("overwrite", [False, True])
def test_symlink_in_folder_is_never_followed(tmp_path, victim, overwrite):
    (tmp_path / "rsp" / "rsp000001.dcm").symlink_to(victim)
    (tmp_path / "rsp" / "rsp000002.dcm").symlink_to(victim.parent / "new.dcm")  # dangling
    with FaultSCP(serve(3, size=10)) as scp:
        r = run(scp, "-w", "-od", str(tmp_path / "rsp"), *(["--overwrite"] if overwrite else []))
    assert r.returncode == ExitCode.OUTPUT, r.err[-3000:]
    assert_no_traceback(r)
    assert victim.read_bytes() == b"precious"
    assert sorted(p.name for p in victim.parent.iterdir()) == ["precious.dcm"]
    expected = "is a symbolic link; not followed" if overwrite else "already holds 2 response"
    assert any(expected in x for x in r.error_lines()), r.err[-3000:]


def test_hard_link_is_not_overwritten(tmp_path, victim):
    os.link(victim, tmp_path / "rsp" / "rsp000001.dcm")
    with FaultSCP(serve(3, size=10)) as scp:
        r = run(scp, "-w", "-od", str(tmp_path / "rsp"), "--overwrite")
    assert r.returncode == ExitCode.OUTPUT
    assert victim.read_bytes() == b"precious"
    assert any("is a hard link to another file; not overwritten" in x for x in r.error_lines())


def test_overwrite_replaces_only_its_own_files(tmp_path):
    folder = tmp_path / "rsp"
    folder.mkdir()
    (folder / "rsp000001.dcm").write_bytes(b"old")
    (folder / "notes.txt").write_text("mine")
    with FaultSCP(serve(2, size=10)) as scp:
        r = run(scp, "-q", "-w", "-od", str(folder), "--overwrite")
    assert r.returncode == ExitCode.OK, r.err[-3000:]
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "rsp000001.dcm",
                                                         "rsp000002.dcm"]
    assert rsp_ids(folder) == ["P0", "P1"]


def test_output_file_symlink_is_not_followed(tmp_path, victim):
    link = tmp_path / "out.csv"
    link.symlink_to(victim.parent / "created.csv")  # dangling: open("x") must not create it
    with FaultSCP(serve(2, size=10)) as scp:
        r = run(scp, "--output-format", "csv", "--output", str(link))
    assert r.returncode == ExitCode.OUTPUT
    assert not (victim.parent / "created.csv").exists()


def test_output_overwrite_never_writes_through_a_symlink(tmp_path, victim):
    """--overwrite replaces a file of its own; a link is refused, its target untouched."""
    link = tmp_path / "out.csv"
    link.symlink_to(victim)
    with FaultSCP(serve(2, size=10)) as scp:
        r = run(scp, "--output-format", "csv", "--output", str(link), "--overwrite")
    assert r.returncode == ExitCode.OUTPUT, r.err[-3000:]
    assert_no_traceback(r)
    assert victim.read_bytes() == b"precious" and link.is_symlink()
    assert any("symbolic link; not followed" in x for x in r.error_lines())


def test_output_into_a_fifo_is_refused_not_blocked(tmp_path):
    fifo = tmp_path / "out.csv"
    os.mkfifo(fifo)
    with FaultSCP(serve(2, size=10)) as scp:
        r = run(scp, "--output-format", "csv", "--output", str(fifo), "--overwrite",
                timeout=30)
    assert r.returncode == ExitCode.OUTPUT, r.err[-3000:]
    assert any("not a plain file" in x for x in r.error_lines())


def test_overwrite_says_when_an_earlier_larger_run_left_files(tmp_path):
    folder = tmp_path / "rsp"
    folder.mkdir()
    for i in range(1, 6):
        (folder / f"rsp{i:06d}.dcm").write_bytes(b"old")
    with FaultSCP(serve(2, size=10)) as scp:
        r = run(scp, "-w", "-od", str(folder), "--overwrite")
    assert r.returncode == ExitCode.OK, r.err[-3000:]
    assert any("3 older response file(s) (rsp000003.dcm…rsp000005.dcm)" in line
               and "not results of this query" in line for line in r.err.splitlines())


def test_rsp_fifo_with_overwrite_is_refused_not_blocked(tmp_path):
    folder = tmp_path / "rsp"
    folder.mkdir()
    os.mkfifo(folder / "rsp000001.dcm")
    with FaultSCP(serve(2, size=10)) as scp:
        r = run(scp, "-w", "-od", str(folder), "--overwrite", timeout=30)
    assert r.returncode == ExitCode.OUTPUT, r.err[-3000:]
    assert any("not a plain file" in x for x in r.error_lines())


def test_output_hard_link_with_overwrite_is_refused(tmp_path, victim):
    os.link(victim, tmp_path / "out.csv")
    with FaultSCP(serve(2, size=10)) as scp:
        r = run(scp, "--output-format", "csv", "--output", str(tmp_path / "out.csv"),
                "--overwrite")
    assert r.returncode == ExitCode.OUTPUT
    assert victim.read_bytes() == b"precious"


def test_output_folder_and_od_file_get_the_right_words(tmp_path):
    with FaultSCP(serve(2, size=10)) as scp:
        as_dir = run(scp, "--output-format", "csv", "--output", str(tmp_path), "--overwrite")
        (tmp_path / "afile").write_text("x")
        od_file = run(scp, "-w", "-od", str(tmp_path / "afile"))
    assert as_dir.returncode == ExitCode.OUTPUT
    assert any("is a folder: give a file name" in x for x in as_dir.error_lines())
    assert od_file.returncode == ExitCode.OUTPUT
    assert any("is a file, not a folder" in x for x in od_file.error_lines())


def test_profiles_export_never_follows_a_dangling_symlink(tmp_path):
    link = tmp_path / "export.toml"
    link.symlink_to(tmp_path / "created-elsewhere.toml")
    r = subprocess.run([sys.executable, "-m", "findtui", "profiles", "export", str(link)],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert r.returncode == 1, r.stderr
    assert not (tmp_path / "created-elsewhere.toml").exists()
