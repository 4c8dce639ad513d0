"""Embedding silhouette sequences with a trained model, exactly as ``gaitrec test`` embeds its test set.

``Embedder`` wraps a config and a checkpoint: frames go through the evaluator's frame selection and
transform (``SequenceCollator``), then the model in eval mode, and come out as float32 ``[C, P]``
embeddings. ``model_identity`` names what an embedding means: two embeddings can only be compared when
they come from the same identity.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .errors import DataError
from .config import load_config
from .data.sampler import SequenceCollator
from . import default_model
from .device import pick_device
from .engine.inference import embed_batch, load_trained_model, prepare_for_inference

# Evaluator sampler keys that only decide how many sequences share a batch, not what an embedding holds.
_BATCHING_KEYS = ("batch_size", "type")


def embedding_config(cfg: dict) -> dict:
    """The parts of a run config that decide what an embedding means: the model section, the evaluator's
    frame selection and transform, and the metric embeddings are compared with."""
    ev = cfg["evaluator_cfg"]
    return {
        "model_cfg": cfg["model_cfg"],
        "frames": {k: v for k, v in sorted(ev["sampler"].items()) if k not in _BATCHING_KEYS},
        "transform": ev["transform"],
        "metric": ev["metric"],
    }


def model_identity(cfg: dict, model: torch.nn.Module) -> str:
    """``<model name>-<16 hex digits>``: a SHA-256 over the embedding config (canonical JSON) and every
    tensor of the model's state_dict (name, dtype, shape, bytes, in name order).

    The same checkpoint loaded twice, on any device or memory format, gives the same identity; other
    weights, another architecture or another transform give another.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(embedding_config(cfg), sort_keys=True, default=str).encode())
    target = model.module if hasattr(model, "module") else model
    for name, tensor in sorted(target.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"\0{name}\0{value.dtype}\0{tuple(value.shape)}\0".encode())
        # Bytes through uint8: numpy has no bfloat16, and the identity must not depend on the memory format.
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return f"{cfg['model_cfg']['model']}-{digest.hexdigest()[:16]}"


class Embedder:
    """A trained model ready to embed sequences: ``embed(frames)`` -> float32 ``[C, P]``.

    ``frame_size`` (height, width) is the frame size the model was trained on, when known; frames of another
    size are refused instead of producing embeddings that mean nothing.
    """

    def __init__(self, cfg: dict, checkpoint: str | Path, device: str | torch.device | None = None,
                 frame_size: tuple[int, int] | None = None):
        self.cfg = cfg
        self.checkpoint = Path(checkpoint)
        self.device = pick_device(device)
        self.evaluator_cfg = cfg["evaluator_cfg"]
        # The identity hashes the checkpoint's own weights, before folding changes them for speed.
        self.model = load_trained_model(cfg, checkpoint, self.device, strict=self.evaluator_cfg["restore_ckpt_strict"],
                                        prepare=False)
        self.identity = model_identity(cfg, self.model)
        prepare_for_inference(self.model, self.device)
        self.collator = SequenceCollator(self.evaluator_cfg["sampler"], self.evaluator_cfg["transform"], seed=0)
        batch_size = self.evaluator_cfg["sampler"]["batch_size"]
        self.batch_size = max(1, batch_size if isinstance(batch_size, int) else 1)
        self.metric = self.evaluator_cfg["metric"]
        self.frame_size = tuple(frame_size) if frame_size is not None else None

    @classmethod
    def from_files(cls, config: str | Path, checkpoint: str | Path, device: str | torch.device | None = None,
                   overrides: Iterable[str] = (), frame_size: tuple[int, int] | None = None) -> "Embedder":
        """An embedder from a config file (OpenGait schema, merged over the defaults) and a checkpoint."""
        return cls(load_config(config, overrides), checkpoint, device, frame_size)

    @classmethod
    def default(cls, device: str | torch.device | None = None) -> "Embedder":
        """The model shipped with gaitrec (``gaitrec/configs/default_model.yaml`` + ``gaitrec/weights/default.pt``)."""
        config, weights = default_model.installed_files()
        return cls.from_files(config, weights, device, frame_size=default_model.FRAME_SIZE)

    @property
    def model_config(self) -> dict:
        """What the identity covers besides the weights (stored with a gallery)."""
        return embedding_config(self.cfg)

    def check(self, frames: np.ndarray, where: str = "sequence") -> np.ndarray:
        """Refuse what the model cannot embed meaningfully, naming ``where``; returns the frames."""
        if not isinstance(frames, np.ndarray):
            raise DataError(f"{where}: expected a numpy array of frames, got {type(frames).__name__}")
        if frames.dtype != np.uint8:
            raise DataError(f"{where}: expected uint8 silhouettes (0-255), got {frames.dtype}")
        if frames.ndim != 3:
            raise DataError(f"{where}: expected frames [T, H, W], got shape {tuple(frames.shape)}")
        if frames.shape[0] == 0:
            raise DataError(f"{where}: the sequence has no frames")
        if self.frame_size is not None and tuple(frames.shape[1:]) != self.frame_size:
            raise DataError(f"{where}: frames are {frames.shape[1]}x{frames.shape[2]} but the model takes "
                             f"{self.frame_size[0]}x{self.frame_size[1]} (pretreat to that size)")
        if not frames.any():
            raise DataError(f"{where}: every frame is empty (no silhouette)")
        return frames

    def embed(self, frames: np.ndarray, where: str = "sequence") -> np.ndarray:
        """Float32 embedding ``[C, P]`` of one uint8 sequence ``[T, H, W]``."""
        return self.embed_batch([frames], [where])[0]

    def embed_batch(self, sequences: Sequence[np.ndarray], where: Sequence[str] | None = None,
                    progress: bool = False) -> np.ndarray:
        """Float32 embeddings ``[N, C, P]`` of N sequences, ``batch_size`` (the evaluator's) at a time;
        ``where`` names each sequence in error messages."""
        where = list(where) if where is not None else [f"sequence {i}" for i in range(len(sequences))]
        if len(where) != len(sequences):
            raise DataError(f"{len(sequences)} sequences but {len(where)} names")
        if not len(sequences):
            raise DataError("no sequence to embed")
        for frames, name in zip(sequences, where):
            self.check(frames, name)
        chunks = []
        starts = range(0, len(sequences), self.batch_size)
        for start in tqdm(starts, desc="embed", unit="batch", disable=not progress, dynamic_ncols=True):
            items = [{"frames": frames, "label": 0, "index": i, "iteration": 0, "position": i}
                     for i, frames in enumerate(sequences[start:start + self.batch_size], start)]
            chunks.append(embed_batch(self.model, self.collator(items), self.evaluator_cfg, self.device))
        embeddings = np.concatenate(chunks)
        bad = ~np.isfinite(embeddings).all(axis=(1, 2))
        if bad.any():
            raise FloatingPointError(f"{where[int(np.flatnonzero(bad)[0])]}: the model produced non-finite embeddings")
        return embeddings
