"""Samplers choose which sequences form a batch; ``SequenceCollator`` chooses their frames.

Randomness is keyed by (seed, iteration): batch i of a run is the same whether the run went straight
through, was resumed at i, or loads its data in any number of worker processes. Under distributed
training every rank draws the same global batch and keeps its own interleaved share of it, so the global
batch is the one the config asks for (OpenGait's convention).
"""
from __future__ import annotations

import itertools
import math
from typing import Iterator, Sequence

import numpy as np
import torch

from ..config import SamplerConfig, read_section
from ..registry import SAMPLERS, ConfigError
from .dataset import GaitDataset
from .transforms import build_transform

# Item ids travel from the sampler to the dataset wrapper: (iteration, position in the global batch, index).
ItemId = tuple[int, int, int]


def _batch_error(batch_size, pair: bool) -> str | None:
    if pair:
        if not (isinstance(batch_size, list) and len(batch_size) == 2
                and all(type(b) is int and b > 0 for b in batch_size)):
            return f"batch_size must be [subjects, sequences per subject], got {batch_size!r}"
    elif not (type(batch_size) is int and batch_size > 0):
        return f"batch_size must be a positive integer, got {batch_size!r}"
    return None


class GlobalBatches:
    """Training samplers draw the global batch of each iteration from (seed, iteration) alone, and each process
    takes every ``world_size``-th item of it: identical batches whatever the number of processes or a resume.
    Items are ``(iteration, position in the global batch, sequence index)``."""

    iteration: int
    rank: int
    world_size: int

    def global_batch(self, iteration: int) -> list[int]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[ItemId]]:
        while True:
            it = self.iteration
            batch = self.global_batch(it)
            self.iteration += 1
            yield [(it, pos, idx) for pos, idx in enumerate(batch)][self.rank::self.world_size]


@SAMPLERS.register()
class TripletSampler(GlobalBatches):
    """Infinite P x K batches: P distinct subjects, K sequences each (with replacement if a subject has fewer)."""

    stage = "train"

    @staticmethod
    def batch_size_error(batch_size) -> str | None:
        """Why ``batch_size`` does not fit this sampler (None: it does)."""
        return _batch_error(batch_size, pair=True)

    def __init__(self, labels: np.ndarray, batch_size: list[int], seed: int = 0, batch_shuffle: bool = False,
                 start_iteration: int = 0, rank: int = 0, world_size: int = 1):
        self.subjects, self.K = batch_size
        self.by_label = [np.flatnonzero(labels == lab) for lab in np.unique(labels)]
        if self.subjects > len(self.by_label):
            raise ConfigError(f"trainer_cfg.sampler.batch_size asks for {self.subjects} subjects per batch but the "
                              f"train set has {len(self.by_label)}")
        self.seed, self.batch_shuffle = seed, batch_shuffle
        self.iteration = start_iteration
        self.rank, self.world_size = rank, world_size
        if (self.subjects * self.K) % world_size:
            raise ConfigError(f"the global batch {self.subjects}x{self.K} does not split evenly over {world_size} processes")

    def global_batch(self, iteration: int) -> list[int]:
        rng = np.random.default_rng([self.seed, iteration, 0])
        chosen = rng.choice(len(self.by_label), self.subjects, replace=False)
        batch = []
        for s in chosen:
            pool = self.by_label[s]
            batch.extend(rng.choice(pool, self.K, replace=len(pool) < self.K).tolist())
        if self.batch_shuffle:
            batch = [batch[i] for i in rng.permutation(len(batch))]
        return batch



@SAMPLERS.register()
class CommonSampler(GlobalBatches):
    """Infinite batches of ``batch_size`` sequences drawn uniformly, with replacement, from the whole train
    set, with no subject structure (OpenGait's CommonSampler, for losses that need no P x K batch)."""

    stage = "train"

    @staticmethod
    def batch_size_error(batch_size) -> str | None:
        return _batch_error(batch_size, pair=False)

    def __init__(self, labels: np.ndarray, batch_size: int, seed: int = 0, batch_shuffle: bool = False,
                 start_iteration: int = 0, rank: int = 0, world_size: int = 1):
        self.num_sequences, self.batch_size = len(labels), batch_size
        self.seed, self.iteration = seed, start_iteration
        self.rank, self.world_size = rank, world_size
        if batch_size % world_size:
            raise ConfigError(f"the global batch of {batch_size} does not split evenly over {world_size} processes")

    def global_batch(self, iteration: int) -> list[int]:
        rng = np.random.default_rng([self.seed, iteration, 0])
        return rng.integers(0, self.num_sequences, self.batch_size).tolist()


@SAMPLERS.register()
class BilateralSampler:
    """Epochs over the train set in shuffled order, P x K sequences per batch (no subject structure), each
    sequence in the batch twice: the two copies get their own frames and augmentation, the two views a
    contrastive loss compares (OpenGait's BilateralSampler, GaitSSB: Fan et al., T-PAMI 2023).

    The last partial batch of an epoch is dropped; the next epoch has its own order.
    """

    stage = "train"

    @staticmethod
    def batch_size_error(batch_size) -> str | None:
        return _batch_error(batch_size, pair=True)

    def __init__(self, labels: np.ndarray, batch_size: list[int], seed: int = 0, batch_shuffle: bool = False,
                 start_iteration: int = 0, rank: int = 0, world_size: int = 1):
        self.num_sequences = len(labels)
        self.batch_size = batch_size[0] * batch_size[1]
        if self.batch_size > self.num_sequences:
            raise ConfigError(f"trainer_cfg.sampler.batch_size asks for {self.batch_size} sequences per batch but "
                              f"the train set has {self.num_sequences}")
        if self.batch_size % world_size:
            raise ConfigError(f"the global batch of {self.batch_size} does not split evenly over {world_size} "
                              "processes")
        self.batches_per_epoch = self.num_sequences // self.batch_size
        self.seed, self.iteration = seed, start_iteration
        self.rank, self.world_size = rank, world_size

    def global_batch(self, iteration: int) -> list[int]:
        epoch, step = divmod(iteration, self.batches_per_epoch)
        order = np.random.default_rng([self.seed, epoch, 2]).permutation(self.num_sequences)
        return order[step * self.batch_size:(step + 1) * self.batch_size].tolist()

    def __iter__(self) -> Iterator[list[ItemId]]:
        while True:
            it = self.iteration
            batch = self.global_batch(it)
            self.iteration += 1
            share = [(it, pos, idx) for pos, idx in enumerate(batch)][self.rank::self.world_size]
            # The second copy sits at its own positions, so the collator draws other frames for it.
            yield share + [(it, pos + self.batch_size, idx) for _, pos, idx in share]


def build_train_sampler(sampler_cfg: dict, labels: np.ndarray, seed: int = 0, start_iteration: int = 0,
                        rank: int = 0, world_size: int = 1):
    """The training sampler ``sampler_cfg["type"]`` names, built from its config keys."""
    cls = SAMPLERS.get(sampler_cfg.get("type", "TripletSampler"))
    return cls(labels, sampler_cfg["batch_size"], seed=seed, batch_shuffle=sampler_cfg.get("batch_shuffle", False),
               start_iteration=start_iteration, rank=rank, world_size=world_size)


@SAMPLERS.register()
class InferenceSampler:
    """Every sequence once, ``batch_size`` at a time; under distribution each rank takes a contiguous,
    disjoint shard (no padding duplicates). With ``lengths`` (the frames each sequence gives the model) a batch
    holds sequences of one length only, shortest first, so that they stack into ``[n, s, h, w]`` instead of
    being packed; otherwise batches follow dataset order."""

    stage = "test"

    @staticmethod
    def batch_size_error(batch_size) -> str | None:
        return _batch_error(batch_size, pair=False)

    def __init__(self, num_sequences: int, batch_size: int, rank: int = 0, world_size: int = 1,
                 lengths: Sequence[int] | None = None):
        per_rank = math.ceil(num_sequences / world_size)
        self.indices = list(range(rank * per_rank, min(num_sequences, (rank + 1) * per_rank)))
        self.batch_size = batch_size
        if lengths is not None and len(lengths) != num_sequences:
            raise ValueError(f"{len(lengths)} lengths for {num_sequences} sequences")
        self.batches = []
        groups = itertools.groupby(sorted(self.indices, key=lambda i: lengths[i]), key=lambda i: lengths[i]) \
            if lengths is not None else [(None, self.indices)]
        for _, group in groups:
            group = list(group)
            self.batches += [group[start:start + batch_size] for start in range(0, len(group), batch_size)]

    def __iter__(self) -> Iterator[list[ItemId]]:
        for batch in self.batches:
            # The position is the sequence's index: the same frames whatever the batching or the rank.
            yield [(0, idx, idx) for idx in batch]

    def __len__(self) -> int:
        return len(self.batches)


class SequenceReader(torch.utils.data.Dataset):
    """Map-style view of a GaitDataset addressed by sampler item ids; returns raw uint8 frames."""

    def __init__(self, dataset: GaitDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: ItemId) -> dict:
        iteration, position, index = item
        return {"frames": self.dataset.frames(index), "label": int(self.dataset.labels[index]), "index": index,
                "iteration": iteration, "position": position}


class SequenceCollator:
    """Samples frames per sequence, applies the transform and builds the model's input.

    ``sample_type`` is ``<fixed|unfixed|all>_<ordered|unordered>`` as in OpenGait: ``fixed`` draws
    ``frames_num_fixed`` frames, ``unfixed`` a count in [frames_num_min, frames_num_max] per sequence,
    ``all`` keeps every frame (the first ``frames_all_limit`` if set). Ordered draws a contiguous clip
    (``frames_skip_num`` extra frames, of which ``frames_num`` are kept in order); unordered draws frames
    at random, with replacement when the sequence is too short. Equal-length sequences are stacked
    ``[n, s, h, w]``; otherwise they are packed ``[1, sum(s), h, w]`` with ``seq_lengths``.
    """

    def __init__(self, sampler_cfg: dict, transform_cfg, seed: int = 0):
        settings = read_section(SamplerConfig, sampler_cfg)  # absent keys: the dataclass defaults
        mode, order = settings.sample_type.split("_")
        self.mode, self.ordered = mode, order == "ordered"
        self.frames_num_fixed = settings.frames_num_fixed
        self.frames_num_min = settings.frames_num_min
        self.frames_num_max = settings.frames_num_max
        self.frames_skip_num = settings.frames_skip_num
        self.frames_all_limit = settings.frames_all_limit
        self.transform = build_transform(transform_cfg)
        self.seed = seed

    def frame_indices(self, length: int, rng: np.random.Generator) -> np.ndarray:
        if self.mode == "all":
            indices = np.arange(length)
            if 0 < self.frames_all_limit < length:
                indices = indices[: self.frames_all_limit]
            return indices
        count = (self.frames_num_fixed if self.mode == "fixed"
                 else int(rng.integers(self.frames_num_min, self.frames_num_max + 1)))
        if not self.ordered:
            return rng.choice(length, count, replace=length < count)
        window = count + self.frames_skip_num
        order = np.tile(np.arange(length), math.ceil(window / length))  # loop short sequences
        start = int(rng.integers(0, len(order) - window + 1))
        picked = np.sort(rng.choice(window, count, replace=False))
        return order[start + picked]

    def frames_used(self, frame_counts: Sequence[int]) -> list[int] | None:
        """How many frames the model gets from sequences of these lengths, where that is fixed in advance
        (``all`` keeps every frame up to the limit); None when it is drawn at random per batch."""
        if self.mode == "all":
            return [min(n, self.frames_all_limit) if self.frames_all_limit > 0 else n for n in frame_counts]
        if self.mode == "fixed":
            return [self.frames_num_fixed] * len(frame_counts)
        return None

    def __call__(self, items: list[dict]) -> dict:
        sequences = []
        for item in items:
            # Keyed by the item's place in the global batch: the same frames whichever rank or worker draws it.
            rng = np.random.default_rng([self.seed, item["iteration"], item["position"], 1])
            frames = item["frames"]
            sequences.append(self.transform(frames[self.frame_indices(len(frames), rng)], rng))
        lengths = [len(s) for s in sequences]
        if len(set(lengths)) == 1:
            sils, seq_lengths = torch.from_numpy(np.stack(sequences)), None
        else:
            sils, seq_lengths = torch.from_numpy(np.concatenate(sequences))[None], lengths
        return {
            "sils": sils.float(),
            "seq_lengths": seq_lengths,
            "labels": torch.tensor([item["label"] for item in items], dtype=torch.long),
            "indices": [item["index"] for item in items],
        }
