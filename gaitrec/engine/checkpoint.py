"""Checkpoints: written atomically, read without executing code, compatible with OpenGait's files.

gaitrec saves ``{"model", "optimizer", "scheduler", "scaler", "iteration", "rng", "config", "checksum"}``;
OpenGait saves the first four keys with the same meaning, and bare state_dicts (with or without DDP's
``module.`` prefix) are accepted too. ``checksum`` covers every tensor's bytes (and the iteration), so a
flipped byte inside a weight is refused on loading; files without one (OpenGait's) load unchecked.
"""
from __future__ import annotations

import io
import logging
import os
import pickle
import re
import zlib
from pathlib import Path

import torch

from ..files import atomic_write_bytes
from ..errors import DataError

CHECKSUM_KIND = "crc32-tensors-1"
log = logging.getLogger("gaitrec")


def checkpoint_path(run_dir: Path, save_name: str, iteration: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"{save_name}-{iteration:05d}.pt"


def tensor_checksum(state) -> int:
    """CRC32 over every tensor of a nested state (its key path, dtype, shape and bytes) and its ``iteration``."""
    crc = 0

    def visit(node, where: str):
        nonlocal crc
        if isinstance(node, torch.Tensor):
            t = node.detach().cpu().contiguous()
            crc = zlib.crc32(f"{where}|{t.dtype}|{tuple(t.shape)}".encode(), crc)
            if t.numel():
                crc = zlib.crc32(t.reshape(-1).view(torch.uint8).numpy(), crc)
        elif isinstance(node, dict):
            for key in sorted(node, key=repr):
                if key != "checksum":
                    visit(node[key], f"{where}/{key!r}")
        elif isinstance(node, (list, tuple)):
            for i, item in enumerate(node):
                visit(item, f"{where}/{i}")

    visit(state, "")
    if isinstance(state, dict) and isinstance(state.get("iteration"), int):
        crc = zlib.crc32(f"iteration={state['iteration']}".encode(), crc)
    return crc


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Serialise to memory, then temporary file + fsync + rename: a crash never leaves a torn checkpoint."""
    state = {**state, "checksum": {"kind": CHECKSUM_KIND, "value": tensor_checksum(state)}}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def load_checkpoint(path: str | Path) -> dict:
    """Load with ``weights_only=True`` and verify the tensor checksum when the file has one.

    Raises DataError naming the file when it is empty, truncated, corrupt, fails its checksum or needs code
    to unpickle (such a file is not a safe checkpoint; it is never retried without ``weights_only``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message advises loading with weights_only=False, i.e. running the file's code: never repeat it.
        found = [line.strip() for line in str(err).splitlines() if "Unsupported global" in line]
        detail = f" ({found[0]})" if found else ""
        raise DataError(f"{path}: not a safe checkpoint, it asks to run code when loaded{detail}") from None
    except Exception as err:  # zip/pickle/storage errors of a truncated or damaged file
        first_line = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: corrupt or truncated checkpoint ({type(err).__name__}: {first_line})") from None
    if not isinstance(state, dict):
        raise DataError(f"{path}: expected a dict, found {type(state).__name__}")
    stored = state.get("checksum")
    if stored is None:
        log.debug("%s: no checksum (not written by gaitrec), loaded unchecked", path)
    elif not isinstance(stored, dict) or stored.get("kind") != CHECKSUM_KIND:
        raise DataError(f"{path}: unknown checksum {stored!r}")
    elif stored.get("value") != tensor_checksum(state):
        raise DataError(f"{path}: corrupt checkpoint, its tensors do not match their checksum")
    return state


def model_state(state: dict) -> dict[str, torch.Tensor]:
    """The model's state_dict from a checkpoint dict or a bare state_dict, without DDP's ``module.`` prefix."""
    weights = state["model"] if isinstance(state.get("model"), dict) else \
        {k: v for k, v in state.items() if k != "checksum"}  # a bare state_dict saved by save_checkpoint
    if weights and all(k.startswith("module.") for k in weights):
        weights = {k[len("module."):]: v for k, v in weights.items()}
    return weights


def load_model_weights(model: torch.nn.Module, state: dict, strict: bool = True, where: str = "checkpoint"):
    """Load weights; on a strict mismatch the error lists the missing and unexpected names briefly."""
    weights = model_state(state)
    target = model.module if hasattr(model, "module") else model
    own = target.state_dict()
    reshaped = [k for k, v in weights.items() if k in own and own[k].shape != v.shape]
    if strict:
        missing, unexpected = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
        if missing or unexpected or reshaped:
            parts = []
            if missing:
                parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:3])})")
            if unexpected:
                parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})")
            if reshaped:
                parts.append(f"other shapes {len(reshaped)} (e.g. {reshaped[0]}: {tuple(weights[reshaped[0]].shape)} "
                             f"in the file, {tuple(own[reshaped[0]].shape)} in the model)")
            raise DataError(f"{where} does not match the model: {'; '.join(parts)}. "
                             "Use restore_ckpt_strict: false to load the matching part only")
    if reshaped:
        # Stage-to-stage loading (e.g. a new classifier size): keep only tensors whose shapes agree.
        logging.getLogger("gaitrec").info("%s: %d tensor(s) with other shapes not loaded: %s", where,
                                          len(reshaped), ", ".join(reshaped[:5]))
        weights = {k: v for k, v in weights.items() if k not in reshaped}
    return target.load_state_dict(weights, strict=strict)


def list_checkpoints(run_dir: Path, save_name: str) -> list[tuple[int, Path]]:
    """(iteration, path) of this run's checkpoints, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    pattern = re.compile(re.escape(save_name) + r"-(\d+)\.pt$")
    found = []
    if folder.is_dir():
        for p in folder.iterdir():
            m = pattern.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
    return sorted(found)


def prune_checkpoints(run_dir: Path, save_name: str, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints (``keep`` <= 0 keeps all)."""
    if keep <= 0:
        return
    for _, path in list_checkpoints(run_dir, save_name)[:-keep]:
        os.unlink(path)


def run_dir_of(cfg: dict, save_name: str | None = None) -> Path:
    """``<output_root>/<dataset>/<model>/<save_name>``, OpenGait's layout."""
    trainer = cfg["trainer_cfg"]
    return (Path(trainer.get("output_root", "output")) / cfg["data_cfg"]["dataset_name"]
            / cfg["model_cfg"]["model"] / (save_name or trainer["save_name"]))


def checkpoint_for_hint(run_dir: Path, save_name: str, hint: int | str) -> Path | None:
    """The checkpoint a ``restore_hint`` names: an iteration of this run (``<save_name>-<iter>.pt`` in
    ``run_dir``) or a file path; None for 0 (nothing to restore)."""
    if isinstance(hint, str):
        return Path(hint)
    return checkpoint_path(run_dir, save_name, hint) if hint > 0 else None
