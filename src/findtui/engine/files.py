"""The one safe way to write a file: no-follow opens, atomic replacement, a lock.

- ``open_new(path, overwrite)``: for results (-w files, --output, TUI exports,
  ``profiles export``): never through a symbolic link, never into a FIFO or device,
  never through a hard link (another name of a file that may live elsewhere), never
  over an existing file unless ``overwrite``.
- ``write_new(path, parts)``: the same for a small binary file written at once (a
  response file): a new file, created exclusively, written with os.write.
- ``atomic_write_text(path, text)``: replace a file all at once (temp + fsync + rename).
- ``file_lock(path)``: an exclusive lock on a lock file (filelock: flock here, Windows too).
- ``read_capped(path, limit)``: read a plain file of at most ``limit`` bytes (profiles,
  history, query lists): never a FIFO, a device or /dev/zero, never unbounded.
- ``private_dir(path)``: make a folder (and its missing parents) readable by its owner only.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

LOCK_TIMEOUT = 10.0


class UnsafeFileError(OSError):
    """The path is a link, a special file, or exists (and may not be replaced)."""


class LockTimeout(OSError):
    """Another process holds the lock."""


def open_new(path: str | os.PathLike[str], overwrite: bool = False, *,
             text: bool = True) -> IO:
    """Open ``path`` for writing as a new file (or, with ``overwrite``, an existing plain
    file of its own, truncated). Raises FileExistsError, UnsafeFileError or OSError."""
    path = Path(path)
    flags = (os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    if not overwrite:
        flags |= os.O_EXCL  # also refuses a symlink, even a dangling one
    elif path.is_symlink():
        raise UnsafeFileError(errno.ELOOP, "is a symbolic link; not followed", str(path))
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFileError(errno.ELOOP, "is a symbolic link; not followed",
                                  str(path)) from None
        if exc.errno == errno.ENXIO:  # a FIFO with no reader (O_NONBLOCK): never wait on it
            raise UnsafeFileError(errno.ENXIO, "is not a plain file (a FIFO or a device); "
                                  "not written", str(path)) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(errno.EINVAL, "is not a plain file (a FIFO or a device); "
                                  "not written", str(path))
        if st.st_nlink > 1:
            raise UnsafeFileError(errno.EMLINK, "is a hard link to another file; not "
                                  "overwritten", str(path))
        if overwrite:
            os.ftruncate(fd, 0)
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(fd, True)
        if text:
            return open(fd, "w", encoding="utf-8", newline="", closefd=True)
        return open(fd, "wb", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def write_new(path: str, parts: tuple[bytes, ...], overwrite: bool = False) -> None:
    """Write ``parts`` to ``path`` as :func:`open_new` would, for one small binary file.

    A new file is created exclusively (O_EXCL: never a link, a FIFO or someone else's
    file), so it needs none of open_new's checks; ``overwrite`` takes open_new's way.
    A failed write leaves no partial file. Raises like open_new.
    """
    if overwrite:
        try:
            with open_new(path, True, text=False) as fp:
                for part in parts:
                    fp.write(part)
        except UnsafeFileError:
            raise
        except OSError:
            with suppress(OSError):
                os.unlink(path)
            raise
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o666)
    try:
        for part in parts:
            view = memoryview(part)
            while view:
                view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        with suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` all at once: temp file in the same folder, fsync, rename.

    A symlinked file is written through (the link stays: dotfiles are often links). The
    file keeps its mode; a new one is private (0600).
    """
    target = Path(os.path.realpath(path))
    private_dir(target.parent)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        with suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(tmp, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    with suppress(OSError):  # make the rename itself durable
        dfd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


@contextmanager
def file_lock(path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """An exclusive lock on ``path`` (a lock file that is never replaced)."""
    from filelock import FileLock, Timeout

    private_dir(path.parent)
    lock = FileLock(str(path), timeout=timeout, mode=0o600)
    try:
        lock.acquire()
    except Timeout:
        raise LockTimeout(errno.EAGAIN, f"another findtui has held the lock for {timeout:g} s; "
                          "try again", str(path)) from None
    try:
        yield
    finally:
        lock.release()


class FileTooLargeError(OSError):
    """A file to read is larger than findtui reads (a size limit of its kind)."""


def read_capped(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of a plain file of at most ``limit`` bytes.

    Raises FileNotFoundError, UnsafeFileError (a FIFO, a device, a folder),
    FileTooLargeError, or OSError. Symbolic links are followed (dotfiles often are links).
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(errno.EINVAL, "is not a plain file (a folder, FIFO or "
                                  "device); not read", str(path))
        if st.st_size > limit:
            raise FileTooLargeError(errno.EFBIG, f"is {st.st_size:,} bytes, more than the "
                                    f"{limit:,} findtui reads", str(path))
        chunks, total = [], 0
        while chunk := os.read(fd, 1 << 16):
            total += len(chunk)
            if total > limit:  # grew while read
                raise FileTooLargeError(errno.EFBIG, f"is more than the {limit:,} bytes "
                                        "findtui reads", str(path))
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def private_dir(path: Path) -> Path:
    """``path`` as a folder of the user's own (0700 when findtui creates it)."""
    missing = []
    p = Path(path)
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for folder in reversed(missing):
        with suppress(FileExistsError):
            folder.mkdir(mode=0o700)
    return Path(path)


__all__ = ["FileTooLargeError", "LockTimeout", "UnsafeFileError", "atomic_write_text", "file_lock",
           "open_new", "private_dir", "read_capped", "write_new"]
