"""Writing files safely: a reader sees the old content or the complete new one, and a power cut cannot undo a
finished write. Every module that writes results, checkpoints, galleries or datasets goes through here.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file so that readers see either the old content or the complete new one, never a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~current_umask())  # mkstemp creates 0600; outputs follow the umask
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_directory(path.parent)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.filename is None:  # a full disk's error names no file: name it
            raise type(err)(err.errno, err.strerror or str(err), str(path)) from None
        raise


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_directory(folder: str | Path) -> None:
    """Make a rename inside ``folder`` durable: without it a power cut can undo the rename."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def building_directory(output: str | Path) -> Iterator[Path]:
    """A private temporary directory beside ``output`` (following the umask) to build a whole dataset in: when
    the block ends it replaces ``output`` (which must be absent, empty or disposable) in one rename, made
    durable; when the block fails it is removed. Readers never see a half-built ``output``."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp"))
    os.chmod(temp, 0o777 & ~current_umask())  # mkdtemp creates 0700
    try:
        yield temp
        if output.exists():
            shutil.rmtree(output)
        os.replace(temp, output)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    fsync_directory(output.parent)
