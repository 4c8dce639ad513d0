"""Unlabelled adaptation: fine-tune a trained model on a user's own footage, tracks standing in for identities.

A model trained elsewhere (the shipped one has only seen synthetic people) meets other cameras, other masks
and other people. Tracked footage carries some labels for free:

- windows of one track show one person: positives;
- tracks visible at the same moment in one video show different people: negatives;
- tracks at different moments may be one person whose track broke in two: neither. They are never pushed
  apart, which a plain "every other track is someone else" labelling would do.

``adapt`` runs the config's triplet loss on batches of a few tracks seen together, several windows each,
with negatives restricted to co-occurring tracks (``TripletLoss(negatives=...)``), through the config's
training frame sampling and augmentations. Batch norm runs in training mode, so its statistics move to the
new footage too. The result is a checkpoint like the shipped weights file (model weights, config,
iteration) plus what the adaptation did; its weights differ, so its model identity and its galleries are
new ones.

    tracks = load_footage(["tracks/"])                # directories written by `gaitrec extract`, or videos
    state = adapt(cfg, load_checkpoint("base.pt"), tracks, iterations=300)
    save_checkpoint("adapted.pt", state)
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from .config import load_config, loss_entries
from .data.dataset import check_sequence
from .data.pickle_io import load_array
from .data.sampler import SequenceCollator
from .device import pick_device, place_model
from .errors import ConfigError, DataError, RunError
from .losses import TripletLoss
from .models import create_model
from .engine.checkpoint import load_checkpoint, load_model_weights
from .engine.trainer import build_optimizer, fix_batchnorm, set_seed

ITERATIONS = 300
LEARNING_RATE = 1e-4  # a tenth of the shipped model's training rate: adapt, do not retrain
TRACKS_PER_BATCH = 8
WINDOWS_PER_TRACK = 2
WINDOW = 30  # silhouettes per window (3 s at 10 fps); the training sampler then draws its frames from it
LOSS_SPAN = 20  # iterations averaged for the loss reported at the start and at the end (one batch is noisy)


@dataclass
class FootageTrack:
    """One tracked person: aligned silhouettes and the video frames they span."""

    frames: np.ndarray  # uint8 [T, H, W]
    first_frame: int
    last_frame: int
    video: str  # tracks are compared in time only within one video
    name: str  # how messages name it

    def overlaps(self, other: "FootageTrack") -> bool:
        """Visible at the same moment of the same video."""
        return (self.video == other.video and self.first_frame <= other.last_frame
                and other.first_frame <= self.last_frame)


def read_extraction(directory: str | Path) -> list[FootageTrack]:
    """The tracks of a directory written by ``gaitrec extract`` (``tracks.json`` and one ``.pkl`` per track)."""
    directory = Path(directory)
    index = directory / "tracks.json"
    if not index.is_file():
        raise DataError(f"{directory}: not an extraction written by gaitrec extract (no tracks.json)")
    try:
        listing = json.loads(index.read_text(encoding="utf-8"))
        records = listing["tracks"]
        spans = [(str(r["id"]), int(r["first_frame"]), int(r["last_frame"])) for r in records]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise DataError(f"{index}: unreadable track list ({type(err).__name__}: {err})") from None
    tracks = []
    for name, first, last in spans:
        if not name.isdigit():
            raise DataError(f"{index}: track id {name!r} is not a number")
        path = directory / name / "video" / "000" / f"{name}.pkl"
        where = f"{directory} track {name}"
        tracks.append(FootageTrack(check_sequence(load_array(path), where), first, last, str(directory), where))
    return tracks


def tracks_of_video(video: str | Path, progress: bool = False) -> list[FootageTrack]:
    """The tracks of a video, extracted with the default options (as ``gaitrec extract`` does)."""
    from .video import extract_tracks

    return [FootageTrack(t.silhouettes, t.first_frame, t.last_frame, str(video), f"{video} track {t.id}")
            for t in extract_tracks(str(video), progress=progress) if len(t.aligned)]


def load_footage(sources: Sequence[str | Path], progress: bool = False) -> list[FootageTrack]:
    """Every track of ``sources``: directories written by ``gaitrec extract``, or videos (file or folder of
    frame images), extracted here with the default options."""
    from .sources import is_video

    tracks = []
    for source in sources:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"source not found: {path}")
        if path.is_dir() and (path / "tracks.json").exists():
            tracks += read_extraction(path)
        elif is_video(path):
            tracks += tracks_of_video(path, progress)
        else:
            raise DataError(f"{path}: neither an extraction written by gaitrec extract (no tracks.json) nor a video")
    return tracks


def co_occurring(tracks: Sequence[FootageTrack]) -> np.ndarray:
    """bool ``[N, N]``: tracks i and j are visible at the same moment of one video, so they are two people
    (the pseudo-labels' negatives). False on the diagonal."""
    n = len(tracks)
    together = np.array([[i != j and a.overlaps(b) for j, b in enumerate(tracks)] for i, a in enumerate(tracks)],
                        dtype=bool)
    return together.reshape(n, n)


class PseudoIdentityBatches:
    """Batches of ``tracks_per_batch`` tracks x ``windows_per_track`` windows, keyed by (seed, iteration).

    Each batch starts from a track that has someone beside it in time and takes the tracks visible with it
    first, so that most anchors find negatives; other tracks fill the batch (negatives only where they too
    overlap). A window is a random stretch of ``window`` consecutive silhouettes (the whole track if shorter).
    """

    def __init__(self, tracks: Sequence[FootageTrack], negatives: np.ndarray, tracks_per_batch: int,
                 windows_per_track: int, window: int, seed: int = 0):
        self.tracks, self.negatives = tracks, negatives
        self.with_negatives = np.flatnonzero(negatives.any(1))
        self.tracks_per_batch = min(tracks_per_batch, len(tracks))
        self.windows_per_track, self.window, self.seed = windows_per_track, window, seed

    def draw(self, iteration: int) -> tuple[list[dict], np.ndarray]:
        """Collator items (frames, label = track index) and the track index of each item."""
        rng = np.random.default_rng([self.seed, iteration, 3])
        anchor = int(rng.choice(self.with_negatives))
        beside = rng.permutation(np.flatnonzero(self.negatives[anchor])).tolist()
        others = [int(t) for t in rng.permutation(len(self.tracks)) if t != anchor and t not in beside]
        chosen = ([anchor] + beside + others)[: self.tracks_per_batch]
        items = []
        for track in chosen:
            frames = self.tracks[track].frames
            length = min(self.window, len(frames))
            for _ in range(self.windows_per_track):
                start = int(rng.integers(0, len(frames) - length + 1))
                items.append({"frames": frames[start:start + length], "label": track, "index": track,
                              "iteration": iteration, "position": len(items)})
        return items, np.array([item["label"] for item in items])


def triplet_loss_of(cfg: dict) -> tuple[str, TripletLoss]:
    """The config's triplet loss (its log prefix and the loss with its margin): adaptation has no classes for
    the cross-entropy head, only the metric the model was trained with."""
    for entry in loss_entries(cfg):
        if entry.get("type") == "TripletLoss":
            return entry.get("log_prefix", "TripletLoss"), TripletLoss(margin=float(entry.get("margin", 0.2)))
    raise ConfigError(f"model {cfg['model_cfg']['model']}: its config has no TripletLoss in loss_cfg; "
                      "adaptation fine-tunes that loss's embeddings")


def check_footage(tracks: Sequence[FootageTrack], frame_size: tuple[int, int] | None = None) -> np.ndarray:
    """Refuse footage that cannot form pseudo-identities; returns the negatives (``co_occurring``)."""
    if not tracks:
        raise DataError("no tracks to adapt on: the footage holds no tracked person")
    sizes = {t.frames.shape[1:] for t in tracks}
    if len(sizes) > 1:
        raise DataError(f"tracks of different frame sizes ({', '.join(f'{h}x{w}' for h, w in sorted(sizes))}); "
                        "extract every video with one --img-size")
    size = next(iter(sizes))
    if frame_size is not None and tuple(size) != tuple(frame_size):
        raise DataError(f"{tracks[0].name}: silhouettes are {size[0]}x{size[1]} but the model takes "
                        f"{frame_size[0]}x{frame_size[1]} (extract with --img-size {frame_size[0]})")
    negatives = co_occurring(tracks)
    if not negatives.any():
        raise DataError(f"{len(tracks)} track(s) but no two of them visible at the same moment of one video: "
                        "adaptation needs people seen together (its only certain negatives); give busier or "
                        "longer footage")
    return negatives


def batch_loss(model: torch.nn.Module, collator: SequenceCollator, items: list[dict], owners: np.ndarray,
               negatives: np.ndarray, prefix: str, loss_fn: TripletLoss, device: torch.device
               ) -> tuple[torch.Tensor, dict]:
    """The masked triplet loss of one batch: positives share a track, negatives are co-occurring tracks."""
    batch = collator(items)
    outputs = model(batch["sils"].to(device), batch["seq_lengths"])
    pair_negatives = torch.from_numpy(negatives[owners[:, None], owners[None, :]]).to(device)
    labels = torch.from_numpy(owners).to(device)
    return loss_fn(outputs["training"][prefix]["embeddings"], labels, negatives=pair_negatives)


def _as_tracks(sources, progress: bool) -> list[FootageTrack]:
    sources = list(sources)
    return sources if all(isinstance(s, FootageTrack) for s in sources) else load_footage(sources, progress)


def adapt(cfg: dict, weights: dict, sources: Sequence[str | Path] | Sequence[FootageTrack],
          iterations: int = ITERATIONS, lr: float = LEARNING_RATE, seed: int = 0,
          tracks_per_batch: int = TRACKS_PER_BATCH, windows_per_track: int = WINDOWS_PER_TRACK,
          window: int = WINDOW, device: str | torch.device | None = None,
          frame_size: tuple[int, int] | None = None, progress: bool = True) -> dict:
    """Adapt the model of run config ``cfg`` with ``weights`` (a checkpoint dict) to the tracks of ``sources``
    (extraction directories or videos, or ``FootageTrack``s already read); returns the adapted checkpoint
    ``{"model", "iteration", "config", "adaptation"}`` (``save_checkpoint`` writes it).

    ``frame_size``: the silhouette size the model takes, when known; other sizes are refused.
    """
    for name, value, low in (("iterations", iterations, 1), ("tracks_per_batch", tracks_per_batch, 2),
                             ("windows_per_track", windows_per_track, 2), ("window", window, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ConfigError(f"learning rate must be a positive number, got {lr!r}")
    tracks = _as_tracks(sources, progress)
    negatives = check_footage(tracks, frame_size)
    prefix, loss_fn = triplet_loss_of(cfg)
    device = pick_device(device)
    set_seed(seed)

    model = create_model(cfg["model_cfg"])
    load_model_weights(model, weights, strict=True, where="the base model's checkpoint")
    place_model(model, device, cfg["trainer_cfg"]["channels_last"])
    base_identity = _identity(cfg, model)
    optimizer = build_optimizer(model, {"solver": "Adam", "lr": lr})
    trainer = cfg["trainer_cfg"]
    collator = SequenceCollator(trainer["sampler"], trainer["transform"], seed=seed)  # training frames + augmentation
    batches = PseudoIdentityBatches(tracks, negatives, tracks_per_batch, windows_per_track, window, seed)

    model.train()
    if trainer["fix_BN"]:
        fix_batchnorm(model)
    history = []
    bar = tqdm(range(1, iterations + 1), desc="adapt", unit="it", disable=not progress, dynamic_ncols=True)
    for iteration in bar:
        items, owners = batches.draw(iteration)
        loss, info = batch_loss(model, collator, items, owners, negatives, prefix, loss_fn, device)
        if not torch.isfinite(loss):
            raise RunError(f"non-finite loss at adaptation iteration {iteration}; try a lower learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(float(info["loss"]))
        bar.set_postfix(loss=f"{history[-1]:.3f}")
    bar.close()

    model.eval()
    base_iteration = weights.get("iteration", 0)
    base_iteration = base_iteration if isinstance(base_iteration, int) else 0
    return {
        "model": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "iteration": base_iteration + iterations,
        "config": cfg,
        "adaptation": {
            "base_identity": base_identity, "identity": _identity(cfg, model),
            "sources": sorted({t.video for t in tracks}), "tracks": len(tracks),
            "co_occurring_pairs": int(negatives.sum()) // 2, "iterations": iterations, "lr": float(lr),
            "seed": seed, "tracks_per_batch": tracks_per_batch, "windows_per_track": windows_per_track,
            "window": window, "loss_start": float(np.mean(history[:LOSS_SPAN])),
            "loss_end": float(np.mean(history[-LOSS_SPAN:])),
        },
    }


def pseudo_identity_loss(cfg: dict, weights: dict, tracks: Sequence[FootageTrack], batches: int = 8,
                         seed: int = 12345, tracks_per_batch: int = TRACKS_PER_BATCH,
                         windows_per_track: int = WINDOWS_PER_TRACK, window: int = WINDOW) -> float:
    """Mean masked triplet loss of ``weights`` on ``batches`` fixed batches of ``tracks``, in eval mode with the
    evaluator's transform (no augmentation): how well the model separates the footage's pseudo-identities."""
    negatives = check_footage(tracks)
    prefix, loss_fn = triplet_loss_of(cfg)
    model = create_model(cfg["model_cfg"])
    load_model_weights(model, weights, strict=True, where="checkpoint")
    model.eval()
    collator = SequenceCollator(cfg["trainer_cfg"]["sampler"], cfg["evaluator_cfg"]["transform"], seed=seed)
    drawn = PseudoIdentityBatches(tracks, negatives, tracks_per_batch, windows_per_track, window, seed)
    with torch.no_grad():
        losses = [float(batch_loss(model, collator, *drawn.draw(i), negatives, prefix, loss_fn,
                                   torch.device("cpu"))[0]) for i in range(batches)]
    return float(np.mean(losses))


def base_model(config: str | Path | None = None, checkpoint: str | Path | None = None,
               overrides: Sequence[str] = ()) -> tuple[dict, dict, tuple[int, int] | None]:
    """(run config, checkpoint dict, frame size or None) of the model to adapt: ``config`` + ``checkpoint``,
    or the shipped model when both are None."""
    from .default_model import FRAME_SIZE, installed_files

    if config is None and checkpoint is None:
        config, checkpoint = installed_files()
        return load_config(config), load_checkpoint(checkpoint), FRAME_SIZE
    if config is None or checkpoint is None:
        raise ConfigError("--config and --checkpoint go together: give both, or neither for the default model")
    return load_config(config, overrides), load_checkpoint(checkpoint), None


def _identity(cfg: dict, model: torch.nn.Module) -> str:
    from .embed import model_identity

    return model_identity(cfg, model)
