"""One exclusive lock per output (a run directory, a generated dataset): ``flock`` on a lock file that names its
holder, released when the holder closes it or dies, so a killed process never leaves a stale lock."""
from __future__ import annotations

import fcntl
import os
import socket
import warnings
from pathlib import Path

from .errors import RunError


class OutputLock:
    """Hold ``lock_file`` exclusively. When another process holds it: wait for it (``wait=True``, with a warning
    naming the holder) or raise RunError naming the holder (pid and host) and ``what`` it protects."""

    def __init__(self, lock_file: str | Path, what: str, wait: bool = False, remove: bool = False):
        lock_file = Path(lock_file)
        if remove and wait:
            raise ValueError("a removed lock file cannot be waited for: a waiter would hold the unlinked one")
        self.path, self.remove = lock_file, remove
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        self.fd: int | None = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self.fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            if not wait:
                os.close(self.fd)
                raise RunError(f"{what} is in use by {holder}; wait for it to finish") from None
            warnings.warn(f"{what} is being written by {holder}; waiting for it")
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()} on host {socket.gethostname()}".encode(), 0)

    def release(self) -> None:
        """Release the lock; with ``remove``, delete the lock file first (for outputs that should leave none)."""
        if self.fd is not None:
            if self.remove:
                self.path.unlink(missing_ok=True)
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing releases the flock
            self.fd = None
