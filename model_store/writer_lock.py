"""One writer per gallery folder, across processes: an advisory ``flock`` on ``<folder>/writer.lock``.

A gallery's changes and its start-up cleanup of leftovers delete and replace files that another
process, mid-change, may be about to name in ``gallery.json``. Each change holds this lock while it
writes; a process that loads a gallery cleans up only if it can take the lock at once (and lets it
go after); a read-only folder (a read replica's mount) is never cleaned up. The lock dies with its
process, kill -9 included, so a crash never leaves a folder locked. ``flock`` is per open file, so
two ``Gallery`` objects on one folder in one process exclude each other too.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

LOCK_FILE = "writer.lock"


class WriterLock:
    def __init__(self, directory: Path):
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, wait_s: float = 0.0) -> bool:
        """Take the lock, waiting up to ``wait_s`` for its holder (a loader's cleanup holds it for
        moments): False when another holder keeps it, or the folder cannot hold a lock file."""
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return False
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                os.close(fd)
                return False
            except OSError:
                os.close(fd)
                return False
            self._fd = fd
            return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
