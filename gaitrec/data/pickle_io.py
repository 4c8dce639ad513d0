"""Reading and writing OpenGait's ``.pkl`` sequence files without ever executing code from them.

OpenGait stores each sequence as a pickled numpy array. A pickle can name any importable callable, so a
plain ``pickle.load`` on a downloaded dataset runs whatever the file asks for. ``load_array`` accepts only
the handful of globals numpy itself uses to rebuild an array and rejects everything else.
"""
from __future__ import annotations

import io
import os
import pickle
import tempfile
from pathlib import Path

import numpy as np

# The globals numpy 1.x and 2.x pickles of ndarrays refer to (protocols 2 to 5).
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # protocol 2 stores the array's bytes as a latin-1 string
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something other than a numpy array."""


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafePickleError(f"refuses to load {module}.{name}: only numpy arrays are accepted")
        return super().find_class(module, name)


def load_array(path: str | Path) -> np.ndarray:
    """Load one numpy array from an OpenGait ``.pkl`` file, refusing any other content.

    Raises ValueError naming the file when it is corrupt, holds something other than an array, or
    tries to import anything beyond numpy's array reconstruction.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = _ArrayUnpickler(f).load()
    except UnsafePickleError as err:
        raise ValueError(f"{path}: unsafe pickle, {err}") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, IndexError) as err:
        raise ValueError(f"{path}: corrupt or unreadable pickle ({type(err).__name__}: {err})") from None
    if not isinstance(data, np.ndarray):
        raise ValueError(f"{path}: expected a numpy array, found {type(data).__name__}")
    return data


def save_array(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an OpenGait-readable pickle, atomically (temporary file, fsync, rename)."""
    buffer = io.BytesIO()
    pickle.dump(np.ascontiguousarray(array), buffer, protocol=4)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file so that readers see either the old content or the complete new one, never a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
