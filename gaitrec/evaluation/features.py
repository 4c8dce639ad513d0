"""``features.npz``: the test embeddings and their metadata, the hand-off between testing and evaluation.

Arrays: ``embeddings`` float32 [N, C, P], ``labels`` (subject ids), ``types`` and ``views`` (strings, N
each). Stored without pickled objects, so loading one never executes code.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from ..files import atomic_write_bytes
from ..errors import DataError

FEATURE_KEYS = ("embeddings", "labels", "types", "views")
# A deflated member may declare at most this many times its compressed size: real embeddings barely
# compress, a zip bomb's zeros compress a thousandfold.
MAX_INFLATION = 100


def save_features(path: str | Path, embeddings, labels, types, views, overwrite: bool = False) -> Path:
    """Write features atomically; refuses to replace an existing file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite it (pass --overwrite to replace it)")
    arrays = {
        "embeddings": np.asarray(embeddings, dtype=np.float32),
        "labels": np.asarray([str(x) for x in labels]),
        "types": np.asarray([str(x) for x in types]),
        "views": np.asarray([str(x) for x in views]),
    }
    check_features(arrays, str(path))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def check_features(arrays: dict, where: str) -> dict:
    """Embeddings real numbers ``[N, C, P]`` with N, C, P > 0, finite; labels, types, views N strings or ints."""
    missing = [k for k in FEATURE_KEYS if k not in arrays]
    if missing:
        raise DataError(f"{where}: missing array(s) {', '.join(missing)}; expected {', '.join(FEATURE_KEYS)}")
    if not all(isinstance(arrays[k], np.ndarray) for k in FEATURE_KEYS):
        raise DataError(f"{where}: {', '.join(FEATURE_KEYS)} must be numpy arrays")
    emb = arrays["embeddings"]
    if emb.dtype.kind not in "fiu" or emb.dtype.fields is not None:
        raise DataError(f"{where}: embeddings must be real numbers, got dtype {emb.dtype}")
    if emb.ndim != 3 or 0 in emb.shape:
        raise DataError(f"{where}: embeddings must be [N, C, P] with N, C, P > 0, got shape {tuple(emb.shape)}")
    n = emb.shape[0]
    for key in ("labels", "types", "views"):
        if arrays[key].dtype.kind not in "USiu" or arrays[key].dtype.fields is not None:
            raise DataError(f"{where}: {key} must be strings or integers, got dtype {arrays[key].dtype}")
        if arrays[key].shape != (n,):
            raise DataError(f"{where}: {key} has shape {tuple(arrays[key].shape)} but there are {n} embeddings")
    if not np.isfinite(emb).all():
        bad = int((~np.isfinite(emb)).any(axis=(1, 2)).sum())
        raise DataError(f"{where}: {bad} embedding(s) contain NaN or infinity")
    return arrays


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, where: str) -> np.ndarray:
    """One ``.npy`` member: sizes and header checked before anything is inflated or allocated."""
    if member.compress_type == zipfile.ZIP_STORED and member.file_size != member.compress_size:
        raise DataError(f"{where}: member {member.filename} declares {member.file_size} bytes but stores "
                        f"{member.compress_size}")
    if member.file_size > MAX_INFLATION * member.compress_size + 4096:
        raise DataError(f"{where}: member {member.filename} would inflate {member.compress_size} bytes to "
                        f"{member.file_size}; refused")
    with archive.open(member) as f:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(f)
        else:
            raise DataError(f"{where}: member {member.filename} has .npy format version {version}")
        if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biufcUS" or dtype.itemsize == 0:
            raise DataError(f"{where}: {member.filename} holds dtype {dtype}; pickled objects and records are refused")
        header_size = f.tell()
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if nbytes != member.file_size - header_size:
            raise DataError(f"{where}: member {member.filename} declares shape {shape} ({nbytes} bytes) but holds "
                            f"{member.file_size - header_size} bytes")
        data = f.read(nbytes)
    if len(data) != nbytes:
        raise DataError(f"{where}: member {member.filename} is truncated")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, refusing pickled objects, records, zip bombs and shapes the file's bytes
    do not carry (``numpy.load`` allocates what a member declares before reading it)."""
    path = Path(path)
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                if not member.filename.endswith(".npy"):
                    raise DataError(f"{path}: member {member.filename} is not a .npy array")
                arrays[member.filename[:-4]] = _read_member(archive, member, str(path))
    except DataError:
        raise
    except Exception as err:  # a damaged zip raises almost any type (zlib.error, EOFError, ...): all mean "broken"
        raise DataError(f"{path}: unreadable npz ({type(err).__name__}: {err})".splitlines()[0][:500]) from None
    return arrays


def load_features(path: str | Path) -> dict[str, np.ndarray]:
    """Read and validate a features file (no pickled objects allowed)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"features file not found: {path}")
    arrays = check_features(read_npz(path), str(path))
    for key in ("labels", "types", "views"):
        arrays[key] = arrays[key].astype(str)
    arrays["embeddings"] = arrays["embeddings"].astype(np.float32, copy=False)
    return arrays
