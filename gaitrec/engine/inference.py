"""Testing: embed every test sequence once, save ``features.npz``, evaluate with the configured protocol."""
from __future__ import annotations

import functools
import logging
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ..data.dataset import GaitDataset, build_datasets, resolve_partition
from ..data.sampler import InferenceSampler, SequenceCollator, SequenceReader
from ..evaluation.features import save_features
from ..evaluation.result import EvaluationResult
from ..device import place_model
from ..threads import loader_workers
from .distributed import DistContext

log = logging.getLogger("gaitrec")


def interactive() -> bool:
    """Whether progress bars have a terminal to draw on (in a log file each redraw would be a line)."""
    return sys.stderr.isatty()


_CONV = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
_BATCH_NORM = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)


def _as_conv(module: torch.nn.Module) -> torch.nn.Module | None:
    """The convolution itself, or the one inside a one-convolution wrapper (``BasicConv2d.conv``)."""
    if isinstance(module, _CONV):
        return module
    children = list(module.children())
    return children[0] if len(children) == 1 and isinstance(children[0], _CONV) else None


@torch.no_grad()
def _fold(conv: torch.nn.Module, bn: torch.nn.Module) -> bool:
    """Fold an eval-mode batch norm into the convolution whose output it normalises; False if it cannot be."""
    if not bn.track_running_stats or bn.running_mean is None or bn.num_features != conv.out_channels:
        return False
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.affine:
        scale = scale * bn.weight.double()
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    bias = (bias - bn.running_mean.double()) * scale + (bn.bias.double() if bn.affine else 0)
    shape = (-1,) + (1,) * (conv.weight.dim() - 1)
    conv.weight.copy_((conv.weight.double() * scale.reshape(shape)).to(conv.weight.dtype))
    conv.bias = torch.nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
    return True


def fold_batch_norms(model: torch.nn.Module) -> int:
    """Fold every batch norm that directly follows a convolution into that convolution, for inference:
    consecutive (conv, bn) in an ``nn.Sequential`` and the ``conv_bn_pairs`` a module declares. The batch
    norm becomes ``nn.Identity``. The model must be in eval mode (running statistics); returns the count."""
    if model.training:
        raise RuntimeError("fold_batch_norms needs a model in eval mode: training batch norm uses batch statistics")
    folded = 0
    for module in list(model.modules()):
        pairs = list(getattr(type(module), "conv_bn_pairs", ()))
        if isinstance(module, torch.nn.Sequential):
            names = list(module._modules)
            pairs += list(zip(names[:-1], names[1:]))
        for conv_name, bn_name in pairs:
            conv, bn = _as_conv(getattr(module, conv_name)), getattr(module, bn_name)
            if conv is not None and isinstance(bn, _BATCH_NORM) and _fold(conv, bn):
                setattr(module, bn_name, torch.nn.Identity())
                folded += 1
    return folded


def channels_last_applies(model: torch.nn.Module) -> bool:
    """Whether ``model`` has 2D convolutions and no 3D ones: the models channels-last may speed up on the CPU
    (1D convolutions, GaitPart's temporal ones, do not care)."""
    convs = [m for m in model.modules() if isinstance(m, _CONV)]
    return any(isinstance(m, torch.nn.Conv2d) for m in convs) and not any(isinstance(m, torch.nn.Conv3d) for m in convs)


def prepare_for_inference(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model made fast for inference on ``device``, in eval mode, with the same embeddings (to float
    rounding, about 1e-6 relative).

    The rule: batch norms are folded into their convolutions always (fewer passes over the activations, never
    slower). On the CPU a model of 2D convolutions only starts in channels-last memory format (1.2-1.8x faster
    for Baseline, GaitSet, GaitPart, GaitBase, 1.4x for GLN), and ``extract_features`` then keeps whichever format measures faster on the first
    batches of the test (``ForwardPlanChooser``); models with 3D convolutions stay contiguous (channels-last-3d
    measured no faster, 0.96-0.97x). torch.compile stays off: its 4-20 s of compilation, plus a recompilation
    when sequence lengths vary, does not pay back within a test run on the CPU (benchmarks/RESULTS.md).
    Weights change: hash them first."""
    model.eval()
    fold_batch_norms(model)
    return place_model(model, device, channels_last=device.type == "cpu" and channels_last_applies(model))


def load_trained_model(cfg: dict, checkpoint: str | Path, device: torch.device, strict: bool = True,
                       prepare: bool = True) -> torch.nn.Module:
    """The config's model with a checkpoint's weights (gaitrec's or OpenGait's), placed on ``device``, in
    eval mode (batch norm uses its running statistics: the model is ready to embed). ``prepare`` applies
    ``prepare_for_inference``; without it the model keeps the checkpoint's exact weights and modules."""
    from ..models import create_model
    from .checkpoint import load_checkpoint, load_model_weights

    model = create_model(cfg["model_cfg"], init=not strict)  # a strict load replaces every weight
    load_model_weights(model, load_checkpoint(checkpoint), strict=strict, where=str(checkpoint))
    if prepare:
        return prepare_for_inference(model, device)
    return place_model(model, device, cfg["trainer_cfg"]["channels_last"]).eval()


def resolve_test_target(target: str | Path | None, checkpoint: str | Path | None = None,
                        overrides: list[str] | tuple = ()) -> tuple[dict, Path, Path]:
    """What ``gaitrec test`` tests: ``(config, checkpoint, run directory)``.

    ``target`` is a config file or a run directory (holding ``config.yaml`` and ``checkpoints/``), or None
    with a ``checkpoint`` that carries its config (every gaitrec checkpoint does). Without ``checkpoint`` a
    run directory gives its newest checkpoint and a config its ``evaluator_cfg.restore_hint``.
    """
    from ..config import config_from_dict, load_config
    from ..registry import ConfigError
    from .checkpoint import checkpoint_for_hint, list_checkpoints, load_checkpoint, run_dir_of

    checkpoint = Path(checkpoint) if checkpoint else None
    if target is None:
        if checkpoint is None:
            raise ConfigError("nothing to test: give a config, a run directory or --checkpoint PATH")
        saved = checkpoint.parent.parent / "config.yaml"
        stored = load_checkpoint(checkpoint).get("config")
        if isinstance(stored, dict):
            cfg = config_from_dict(stored, overrides, source=f"{checkpoint} (its stored config)", training=False)
        elif saved.is_file():
            cfg = load_config(saved, overrides, training=False)
        else:
            raise ConfigError(f"{checkpoint} holds no config (an OpenGait checkpoint?): give the config too, "
                              f"gaitrec test CONFIG --checkpoint {checkpoint}")
        run_dir = checkpoint.parent.parent if saved.is_file() else run_dir_of(cfg, cfg["evaluator_cfg"]["save_name"])
        return cfg, checkpoint, run_dir
    target = Path(target)
    if target.is_dir():
        saved = target / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"{target} is a directory but not a run directory (no config.yaml): give a run "
                              "directory written by gaitrec train, or a config file")
        cfg = load_config(saved, overrides, training=False)
        if checkpoint is None:
            found = list_checkpoints(target, cfg["trainer_cfg"]["save_name"])
            if not found:
                raise FileNotFoundError(f"{target / 'checkpoints'}: no checkpoint of "
                                        f"{cfg['trainer_cfg']['save_name']!r} to test")
            checkpoint = found[-1][1]
        return cfg, checkpoint, target
    cfg = load_config(target, overrides, training=False)  # testing builds no optimizer
    ev = cfg["evaluator_cfg"]
    run_dir = run_dir_of(cfg, ev["save_name"])
    if checkpoint is None:
        checkpoint = checkpoint_for_hint(run_dir, ev["save_name"], ev["restore_hint"])
        if checkpoint is None:
            raise ConfigError("no checkpoint: pass --checkpoint PATH or set evaluator_cfg.restore_hint")
    return cfg, checkpoint, run_dir


@functools.cache
def reuse_freed_memory() -> bool:
    """Have the C allocator (glibc's malloc) keep freed blocks of up to 1 GiB for reuse; True where it did.

    By default glibc maps every block above 32 MiB (a few MiB at first) afresh from the kernel and unmaps it
    when freed, so each activation of a sequence-sized batch costs page faults and zeroed pages (GaitGL's
    `gaitrec test` on SynthGait: 5.9 s of system time beside 26 s of user time, 0.5 s with reuse; 44 s
    instead of 69 s in all). With reuse the process keeps its peak memory until it ends. Elsewhere (macOS,
    musl) nothing changes."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return False
    if libc is None or not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    limit = 1 << 30
    # M_MMAP_THRESHOLD (-3): blocks under it come from the heap; M_TRIM_THRESHOLD (-1): free heap kept
    return bool(libc.mallopt(-3, limit)) and bool(libc.mallopt(-1, limit))


@torch.no_grad()
def embed_batch(model: torch.nn.Module, batch: dict, evaluator_cfg: dict, device: torch.device) -> np.ndarray:
    """Float32 embeddings [n, c, p] of one batch built by ``SequenceCollator``, with the evaluator's precision
    (fp16 autocast on CUDA when ``enable_float16``); the model must already be in eval mode."""
    use_amp = evaluator_cfg["enable_float16"] and device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.float16) if use_amp else nullcontext():
        out = model(batch["sils"].to(device, non_blocking=True), batch["seq_lengths"])
    return out["embeddings"].float().cpu().numpy()


def single_sequences(batch: dict) -> list[dict]:
    """A batch as one batch per sequence (the embeddings of a sequence do not depend on its neighbours)."""
    if batch["seq_lengths"] is None:
        return [{"sils": batch["sils"][i:i + 1], "seq_lengths": None} for i in range(len(batch["sils"]))]
    packed = batch["sils"].split(list(batch["seq_lengths"]), dim=1)
    return [{"sils": sils, "seq_lengths": None} for sils in packed]


@dataclass(frozen=True)
class ForwardPlan:
    """How the forwards of a test run: the model's memory format, and one forward per batch or per sequence."""
    channels_last: bool
    per_sequence: bool


class ForwardPlanChooser:
    """Measures the candidate plans on the first real batches and keeps the fastest (seconds per frame).

    The work is not wasted: the trial batches are test batches, embedded with the same result whatever the
    plan. Every candidate runs one batch in turn; those more than ``margin`` slower than the best drop out,
    and the rest run until each has ``trials`` batches, a candidate counting by its best trial, so that a burst
    of other work on a shared machine does not decide. The run's first ``warmup`` batches are embedded but not
    timed: they share the cores with the process's start (the data loader's worker starting, the report's
    imports) and measured a GaitSet plan 3.6x slower than it is. The margin is wide (2x) for the same
    reason: GaitGL's 4-sequence batches measured 1.17x slower per frame than single sequences on their first
    batch, and lost, though they are twice as fast once warm. Candidates: channels-last or not for a model of 2D
    convolutions, and, for batches of several sequences, one forward per batch or one per sequence (a large
    batch can be slower per frame on the CPU: its activations no longer fit the caches)."""

    def __init__(self, candidates: list[ForwardPlan], trials: int = 2, margin: float = 2.0, warmup: int = 1):
        self.candidates = list(candidates)
        self.trials = trials
        self.margin = margin
        self.warmup = warmup
        self.seconds_per_frame: dict[ForwardPlan, list[float]] = {c: [] for c in self.candidates}
        self.racing = list(self.candidates)
        self.chosen = self.candidates[0] if len(self.candidates) == 1 else None

    def next_plan(self) -> ForwardPlan:
        """The plan for the next batch: a candidate still to measure, else the chosen one."""
        if self.chosen is not None:
            return self.chosen
        return min(self.racing, key=lambda c: len(self.seconds_per_frame[c]))

    def record(self, plan: ForwardPlan, seconds: float, frames: int) -> None:
        """Note how long ``plan`` took over ``frames`` frames; chooses once the race is decided."""
        if self.chosen is not None:
            return
        if self.warmup > 0:
            self.warmup -= 1
            return
        self.seconds_per_frame[plan].append(seconds / max(1, frames))
        best = {c: min(self.seconds_per_frame[c], default=float("inf")) for c in self.racing}
        if all(self.seconds_per_frame[c] for c in self.racing):
            fastest = min(best.values())
            self.racing = [c for c in self.racing if best[c] <= fastest * self.margin]
        if len(self.racing) == 1 or all(len(self.seconds_per_frame[c]) >= self.trials for c in self.racing):
            self.chosen = min(self.racing, key=best.__getitem__)
            log.debug("forward plan %s (seconds per frame: %s)", self.chosen, self.seconds_per_frame)

    def run(self, model: torch.nn.Module, batch: dict, evaluator_cfg: dict, device: torch.device) -> np.ndarray:
        """Embeddings of ``batch`` under the next plan, timed."""
        plan = self.next_plan()
        set_memory_format(model, plan.channels_last)
        start = time.perf_counter()
        if plan.per_sequence:
            embeddings = np.concatenate([embed_batch(model, one, evaluator_cfg, device)
                                         for one in single_sequences(batch)])
        else:
            embeddings = embed_batch(model, batch, evaluator_cfg, device)
        self.record(plan, time.perf_counter() - start, int(batch["sils"].shape[0] * batch["sils"].shape[1]))
        return embeddings


def set_memory_format(model: torch.nn.Module, channels_last: bool) -> None:
    """Put the 2D convolution weights of ``model`` in channels-last (or back to contiguous), if not already."""
    target = torch.channels_last if channels_last else torch.contiguous_format
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d) and not module.weight.is_contiguous(memory_format=target):
            module.to(memory_format=target)


def forward_plans(model: torch.nn.Module, device: torch.device, batch_size: int) -> list[ForwardPlan]:
    """The plans worth measuring for ``model`` on ``device`` (see ``ForwardPlanChooser``); one on a GPU,
    where the evaluator's batches and the format ``place_model`` gave are kept."""
    current = any(m.weight.is_contiguous(memory_format=torch.channels_last) and not m.weight.is_contiguous()
                  for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    if device.type != "cpu":
        return [ForwardPlan(current, False)]
    formats = [current, not current] if channels_last_applies(model) else [current]
    groupings = [False, True] if batch_size > 1 else [False]
    return [ForwardPlan(f, g) for f in formats for g in groupings]


@torch.no_grad()
def extract_features(model: torch.nn.Module, dataset: GaitDataset, evaluator_cfg: dict, ctx: DistContext,
                     num_workers: int = 0, progress: bool = True, tune: bool = True) -> dict[str, np.ndarray] | None:
    """Embeddings of every sequence of ``dataset`` in dataset order; under distribution each rank embeds a
    disjoint shard and rank 0 returns the whole set (other ranks return None).

    Batches hold sequences of one length where the dataset knows the lengths (stacked, never packed). On the
    CPU with ``tune`` the forwards follow the fastest plan measured on the first batches
    (``ForwardPlanChooser``); without it, one forward per batch in the model's own memory format. On the CPU
    the ``num_workers`` loader processes run only on cores the forwards leave free (``loader_workers``)."""
    if ctx.device.type == "cpu":
        reuse_freed_memory()
        num_workers = loader_workers(num_workers)
    sampler_cfg = evaluator_cfg["sampler"]
    collator = SequenceCollator(sampler_cfg, evaluator_cfg["transform"], seed=0)
    counts = getattr(dataset, "frame_counts", None)
    lengths = collator.frames_used(counts) if counts is not None else None
    sampler = InferenceSampler(len(dataset), sampler_cfg["batch_size"], ctx.rank, ctx.world_size, lengths=lengths)
    loader = torch.utils.data.DataLoader(SequenceReader(dataset), batch_sampler=sampler, collate_fn=collator,
                                         num_workers=num_workers, pin_memory=ctx.device.type == "cuda")
    model.eval()
    plans = forward_plans(model, ctx.device, sampler.batch_size) if tune else []
    chooser = ForwardPlanChooser(plans) if plans else None
    indices, chunks = [], []
    for batch in tqdm(loader, desc="test", disable=not progress or ctx.rank != 0 or not interactive(),
                      dynamic_ncols=True):
        if chooser is not None:
            chunks.append(chooser.run(model, batch, evaluator_cfg, ctx.device))
        else:
            chunks.append(embed_batch(model, batch, evaluator_cfg, ctx.device))
        indices.extend(batch["indices"])
    embeddings = np.concatenate(chunks) if chunks else np.zeros((0, 0, 0), np.float32)
    order = np.asarray(indices, dtype=np.int64)
    if ctx.distributed:
        parts = [None] * ctx.world_size if ctx.rank == 0 else None
        dist.gather_object((order, embeddings), parts, dst=0)
        if ctx.rank != 0:
            return None
        parts = [p for p in parts if len(p[0])]
        order = np.concatenate([p[0] for p in parts])
        embeddings = np.concatenate([p[1] for p in parts])
    if sorted(order.tolist()) != list(range(len(dataset))):
        raise RuntimeError("test features do not cover every sequence exactly once")
    embeddings = embeddings[np.argsort(order)]
    infos = [dataset.info(i) for i in range(len(dataset))]
    return {"embeddings": embeddings, "labels": np.array([s.subject for s in infos]),
            "types": np.array([s.type for s in infos]), "views": np.array([s.view for s in infos])}


def evaluate_config(cfg: dict, features: dict, device: torch.device | None = None) -> EvaluationResult:
    """Run the protocol that ``evaluator_cfg`` names on ``features``; distances on ``device`` (None: CUDA
    when available)."""
    from ..evaluation.protocols import evaluate, protocol_for_eval_func

    ev = cfg["evaluator_cfg"]
    protocol = protocol_for_eval_func(ev["eval_func"], cfg["data_cfg"]["test_dataset_name"]
                                      or cfg["data_cfg"]["dataset_name"], ev["cross_view_gallery"])
    partition = resolve_partition(cfg["data_cfg"]["dataset_partition"], cfg["data_cfg"]["dataset_name"])
    return evaluate(features, protocol, metric=ev["metric"], rerank=ev["rerank"], probe_set=partition,
                    device=device)


def run_test(cfg: dict, model: torch.nn.Module, ctx: DistContext, output_dir: Path, overwrite: bool = False,
             progress: bool = True, test_set: GaitDataset | None = None, checkpoint: str | Path | None = None,
             tune: bool = True) -> EvaluationResult | None:
    """Embed the test set, write ``features.npz`` and the report into ``output_dir``; returns the result on
    rank 0 (None on other ranks). The result names the model and ``checkpoint`` (file name) it came from.
    ``tune``: see ``extract_features``."""
    from ..evaluation.report import write_report

    output_dir = Path(output_dir)
    if ctx.rank == 0 and not overwrite and (output_dir / "features.npz").exists():
        raise FileExistsError(f"{output_dir} already holds test results; choose another --output or pass --overwrite")
    if test_set is None:
        _, test_set = build_datasets(cfg["data_cfg"], train=False)
    features = extract_features(model, test_set, cfg["evaluator_cfg"], ctx,
                                num_workers=cfg["data_cfg"]["num_workers"], progress=progress, tune=tune)
    if features is None:
        return None
    output_dir.mkdir(parents=True, exist_ok=True)
    save_features(output_dir / "features.npz", overwrite=overwrite, **features)
    # --device cpu keeps the distances off the GPU too
    result = evaluate_config(cfg, features, ctx.device)
    result.model = cfg["model_cfg"]["model"]
    if checkpoint is not None:
        result.checkpoint = Path(checkpoint).name
    write_report(result, output_dir, overwrite=overwrite)
    return result
