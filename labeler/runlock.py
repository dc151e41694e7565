"""One labeling process per run directory: an advisory lock on `runs/<run-id>/.lock`.

`labeler run` and `labeler resume` hold it for the whole labeling (fcntl.flock, so the kernel drops
it when the process ends, even by SIGKILL: a stale file never blocks a resume). The holder writes its
PID into the file; a second process gets a one-line RunStoreError naming that PID instead of
"database is locked" tracebacks or paying for items twice. The file itself is left in place.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from labeler.errors import RunStoreError

LOCK_NAME = ".lock"


class RunLock:
    """`with RunLock(run_dir):` — or acquire() / release(). Not reentrant."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunStoreError(f"cannot create the run lock {self.path}: {exc.strerror}; check the folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunStoreError(f"cannot lock {self.path}: {exc.strerror}") from None
            who = f"PID {holder}" if holder else "another process (PID not yet written)"
            raise RunStoreError(
                f"{self.path.parent} is in use by another labeler process ({who}); wait for it to end "
                f"or stop it (kill {holder or '<PID>'}), then try again"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no stale PID for the next reader; the lock goes with the close
        os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        data = os.pread(fd, 32, 0)
        return int(data.decode().strip())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[RunLock]:
    with RunLock(run_dir) as lock:
        yield lock
