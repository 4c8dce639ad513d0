"""``features.npz``: the test embeddings and their metadata, the hand-off between testing and evaluation.

Arrays: ``embeddings`` float32 [N, C, P], ``labels`` (subject ids), ``types`` and ``views`` (strings, N
each). Stored without pickled objects, so loading one never executes code.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..data.pickle_io import atomic_write_bytes

FEATURE_KEYS = ("embeddings", "labels", "types", "views")


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
    missing = [k for k in FEATURE_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{where}: missing array(s) {', '.join(missing)}; expected {', '.join(FEATURE_KEYS)}")
    emb = arrays["embeddings"]
    if emb.ndim != 3:
        raise ValueError(f"{where}: embeddings must be [N, C, P], got shape {tuple(emb.shape)}")
    n = emb.shape[0]
    for key in ("labels", "types", "views"):
        if arrays[key].shape != (n,):
            raise ValueError(f"{where}: {key} has shape {tuple(arrays[key].shape)} but there are {n} embeddings")
    if not np.isfinite(emb).all():
        bad = int((~np.isfinite(emb)).any(axis=(1, 2)).sum())
        raise ValueError(f"{where}: {bad} embedding(s) contain NaN or infinity")
    return arrays


def load_features(path: str | Path) -> dict[str, np.ndarray]:
    """Read and validate a features file (no pickled objects allowed)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"features file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except ValueError as err:
        raise ValueError(f"{path}: not a features file without pickled objects ({err})") from None
    except Exception as err:  # zip errors, truncated files
        raise ValueError(f"{path}: unreadable npz ({type(err).__name__}: {err})") from None
    arrays = check_features(arrays, str(path))
    for key in ("labels", "types", "views"):
        arrays[key] = arrays[key].astype(str)
    arrays["embeddings"] = arrays["embeddings"].astype(np.float32, copy=False)
    return arrays
