"""One writer per index: a lock on a file in the index folder, held while indexing.

An OS lock (flock, or msvcrt on Windows) is released by the kernel when its process dies, so a
killed indexer never leaves the folder locked. The lock file is never deleted: deleting it would
let a second process lock a new file while the first still holds the old one.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from mrl_tui.core.errors import Cancelled

WAITING = "another mrl-tui is indexing this folder; waiting…"
POLL_S = 0.2

if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class WriterLock:
    """`with WriterLock(path).wait(...)` holds it; `try_acquire()` does not wait. Not re-entrant:
    each holder makes its own (two in one process exclude each other too)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free. An `OSError` means it cannot be made (read-only)."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if _try_lock(fd):
            self._fd = fd
            return True
        os.close(fd)
        return False

    def wait(
        self,
        on_wait: Callable[[], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> WriterLock:
        """Block until the lock is ours; `on_wait()` once if it was taken; `Cancelled` if
        `should_stop()` says so meanwhile."""
        told = False
        while not self.try_acquire():
            if not told and on_wait is not None:
                on_wait()
            told = True
            if should_stop is not None and should_stop():
                raise Cancelled("stopped while waiting for another mrl-tui to finish indexing")
            time.sleep(POLL_S)
        return self

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                _unlock(fd)
            finally:
                os.close(fd)

    def __enter__(self) -> WriterLock:
        return self.wait()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
