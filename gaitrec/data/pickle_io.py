"""Reading and writing OpenGait's ``.pkl`` sequence files without ever executing code from them.

OpenGait stores each sequence as a pickled numpy array. A pickle can name any importable callable, so a
plain ``pickle.load`` on a downloaded dataset runs whatever the file asks for. Even numpy's own
reconstruction functions are weapons when called with crafted arguments (an object dtype with its flags
cleared, a declared shape of 93 GiB, a codec name that is not a codec). So ``load_array`` never hands the
file's arguments to numpy: each global numpy's pickles use is replaced by a stand-in that accepts exactly
the arguments numpy writes for a plain numeric array and builds that array itself, only after checking that
the declared shape matches the bytes the file actually carries.
"""
from __future__ import annotations

import functools
import io
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..files import atomic_write_bytes

MAX_NDIM = 8
# Plain numeric dtypes a sequence file may hold: bool, signed/unsigned integers and floats up to 8 bytes.
_NUMERIC_CODES = {"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something other than a plain numeric numpy array."""


class _Dtype:
    """Stands in for ``numpy.dtype(code, align, copy)``; becomes a real dtype once its state is checked."""

    def __init__(self, code, align=False, copy=True, *rest):
        if rest or not isinstance(code, str) or code not in _NUMERIC_CODES:
            raise UnsafePickleError(f"dtype {code!r} is not a plain numeric type (bool, int, uint, float)")
        if not isinstance(align, bool) or not isinstance(copy, bool):
            raise UnsafePickleError("dtype arguments are not numpy's")
        self.code, self.byteorder = code, None

    def __setstate__(self, state):
        # numpy writes (3, byteorder, subarray, names, fields, elsize, alignment, flags) with the four middle
        # entries None and -1, -1, 0 for a plain type: anything else would redefine the type (fields, objects).
        if (not isinstance(state, tuple) or len(state) != 8 or state[0] not in (3, 4)
                or state[1] not in ("<", ">", "|", "=") or state[2:] != (None, None, None, -1, -1, 0)):
            raise UnsafePickleError(f"dtype state {state!r} is not that of a plain numeric type")
        if self.byteorder is not None:
            raise UnsafePickleError("dtype state set twice")
        self.byteorder = state[1]

    def real(self) -> np.dtype:
        order = self.byteorder if self.byteorder in ("<", ">") else "="
        dtype = np.dtype(self.code).newbyteorder(order)
        assert dtype.kind in "biuf" and dtype.fields is None and not dtype.hasobject
        return dtype


def _check_shape(shape, dtype: np.dtype, nbytes: int) -> tuple[int, ...]:
    """A shape must be a short tuple of non-negative ints whose size is exactly the bytes the file carries."""
    if (not isinstance(shape, tuple) or len(shape) > MAX_NDIM
            or not all(type(n) is int and n >= 0 for n in shape)):
        raise UnsafePickleError(f"array shape {shape!r} is not a tuple of at most {MAX_NDIM} non-negative ints")
    expected = math.prod(shape) * dtype.itemsize
    if expected != nbytes:
        raise UnsafePickleError(f"array of shape {shape} and dtype {dtype} needs {expected} bytes, the file holds "
                                f"{nbytes}")
    return shape


@dataclass
class ArrayHeader:
    """What a sequence file declares, checked against the bytes it carries (``read_header``)."""
    shape: tuple[int, ...]
    dtype: np.dtype


class _Array:
    """Stands in for ``_reconstruct(ndarray, (0,), b'b')``; ``__setstate__`` receives the real content."""

    def __init__(self, headers_only: bool, cls, shape, code, *rest):
        if cls is not _NDARRAY or shape != (0,) or code not in (b"b", "b") or rest:
            raise UnsafePickleError("array reconstruction arguments are not numpy's")
        self.headers_only = headers_only
        self.array: np.ndarray | None = None
        self.header: ArrayHeader | None = None

    def __setstate__(self, state):
        if self.header is not None:
            raise UnsafePickleError("array state set twice")
        if not isinstance(state, tuple) or len(state) != 5 or state[0] != 1:
            raise UnsafePickleError("array state is not numpy's (version, shape, dtype, fortran, data)")
        _, shape, dtype, fortran, data = state
        if not isinstance(dtype, _Dtype) or dtype.byteorder is None or not isinstance(fortran, bool):
            raise UnsafePickleError("array state does not hold a checked dtype")
        if not isinstance(data, (bytes, bytearray)):
            raise UnsafePickleError(f"array data is a {type(data).__name__}, not raw bytes (object arrays are refused)")
        self._build(data, dtype.real(), shape, "F" if fortran else "C")

    def _build(self, data, dtype: np.dtype, shape, order: str) -> None:
        shape = _check_shape(shape, dtype, len(data))
        self.header = ArrayHeader(shape, dtype)
        if not self.headers_only:
            flat = np.frombuffer(data, dtype=dtype)
            self.array = flat.reshape(shape, order=order).astype(dtype.newbyteorder("="), copy=True)


def _frombuffer(headers_only: bool, buffer, dtype, shape, order, *rest):
    """Stands in for numpy's protocol-5 ``_frombuffer(buffer, dtype, shape, order)``."""
    if rest or not isinstance(dtype, _Dtype) or dtype.byteorder is None or order not in ("C", "F"):
        raise UnsafePickleError("array arguments are not numpy's")
    if isinstance(buffer, pickle.PickleBuffer):
        buffer = bytes(buffer)
    if not isinstance(buffer, (bytes, bytearray)):
        raise UnsafePickleError(f"array data is a {type(buffer).__name__}, not raw bytes")
    result = _Array.__new__(_Array)
    result.headers_only, result.array, result.header = headers_only, None, None
    result._build(buffer, dtype.real(), shape, order)
    return result


def _latin1(text, encoding="utf-8", *rest):
    """Stands in for ``_codecs.encode``: protocol 2 stores an array's bytes as a latin-1 string, nothing else."""
    if rest or encoding != "latin1" or not isinstance(text, str):
        raise UnsafePickleError(f"_codecs.encode is allowed only as numpy uses it (latin1), not {encoding!r}")
    return text.encode("latin1")


def _empty_bytes(*args):
    """Stands in for ``bytes()``: protocol 2 writes an empty array's data as a call without arguments."""
    if args:
        raise UnsafePickleError("bytes() is allowed only without arguments, as pickle writes b''")
    return b""


class _NotCallable:
    """``numpy.ndarray`` may only be named as the class to reconstruct, never called (it allocates freely)."""

    def __call__(self, *args, **kwargs):
        raise UnsafePickleError("calls numpy.ndarray directly; only numpy's array reconstruction is accepted")


_NDARRAY = _NotCallable()

# The globals numpy 1.x and 2.x pickles of ndarrays refer to (protocols 2 to 5), each mapped to its stand-in.
_STAND_INS = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Dtype,
    ("numpy.core.multiarray", "_reconstruct"): _Array,
    ("numpy._core.multiarray", "_reconstruct"): _Array,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}
_NEED_MODE = {_Array, _frombuffer}  # stand-ins told whether to build the array or only check its header


class _ArrayUnpickler(pickle.Unpickler):
    def __init__(self, file, headers_only: bool):
        super().__init__(file, buffers=())
        self.headers_only = headers_only

    def find_class(self, module: str, name: str):
        if (module, name) not in _STAND_INS:
            raise UnsafePickleError(f"refuses to load {module}.{name}: only numpy arrays are accepted")
        stand_in = _STAND_INS[(module, name)]
        if stand_in in _NEED_MODE:
            return functools.partial(stand_in, self.headers_only)
        return stand_in

    def persistent_load(self, pid):
        raise UnsafePickleError("persistent ids are not accepted")


def _unpickle(path: Path, headers_only: bool = False) -> _Array:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from None
    try:
        result = _ArrayUnpickler(io.BytesIO(data), headers_only).load()
    except UnsafePickleError as err:
        raise DataError(f"{path}: unsafe pickle, {err}") from None
    except Exception as err:  # a malformed pickle raises almost any type; all mean "this file is broken"
        raise DataError(f"{path}: corrupt or unreadable pickle ({type(err).__name__}: {err})"[:500]) from None
    if not isinstance(result, _Array) or result.header is None:
        kind = "an unfinished array" if isinstance(result, _Array) else type(result).__name__
        if isinstance(result, (list, tuple, dict, str, int, float)) or result is None:
            kind = type(result).__name__
        raise DataError(f"{path}: expected a numpy array, found {kind}")
    return result


def load_array(path: str | Path) -> np.ndarray:
    """Load one plain numeric numpy array (bool, int, uint or float) from an OpenGait ``.pkl`` file.

    Raises DataError (a ValueError) naming the file when it is corrupt, holds something other than such an
    array (objects, structured or string dtypes), declares more data than it carries, or names anything
    beyond numpy's array reconstruction. Nothing is allocated before the declared shape is checked against
    the file's bytes.
    """
    path = Path(path)
    return _unpickle(path).array


def read_header(path: str | Path) -> ArrayHeader:
    """Shape and dtype of the array in a ``.pkl`` file, checked as ``load_array`` does, without building it."""
    return _unpickle(Path(path), headers_only=True).header


def save_array(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an OpenGait-readable pickle, atomically (temporary file, fsync, rename)."""
    buffer = io.BytesIO()
    pickle.dump(np.ascontiguousarray(array), buffer, protocol=4)
    atomic_write_bytes(path, buffer.getvalue())
