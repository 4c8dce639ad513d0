"""Testing: embed every test sequence once, save ``features.npz``, evaluate with the configured protocol."""
from __future__ import annotations

import logging
import sys
from contextlib import nullcontext
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


def prepare_for_inference(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model made fast for inference on ``device``, in eval mode, with the same embeddings (to float
    rounding, about 1e-6 relative): batch norms folded into their convolutions everywhere, and on the CPU
    channels-last memory format for a model of 2D convolutions only (1.5-1.7x faster there, measured in
    benchmarks/RESULTS.md; 3D convolutions gain nothing from it). torch.compile stays off: its 5-20 s of
    compilation does not pay back within one test run on the CPU. Weights change: hash them first."""
    model.eval()
    fold_batch_norms(model)
    convs = [m for m in model.modules() if isinstance(m, _CONV)]
    only_2d = bool(convs) and not any(isinstance(m, torch.nn.Conv3d) for m in convs)
    return place_model(model, device, channels_last=device.type == "cpu" and only_2d)


def load_trained_model(cfg: dict, checkpoint: str | Path, device: torch.device, strict: bool = True,
                       prepare: bool = True) -> torch.nn.Module:
    """The config's model with a checkpoint's weights (gaitrec's or OpenGait's), placed on ``device``, in
    eval mode (batch norm uses its running statistics: the model is ready to embed). ``prepare`` applies
    ``prepare_for_inference``; without it the model keeps the checkpoint's exact weights and modules."""
    from ..models import create_model
    from .checkpoint import load_checkpoint, load_model_weights

    model = create_model(cfg["model_cfg"])
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
            cfg = config_from_dict(stored, overrides, source=f"{checkpoint} (its stored config)")
        elif saved.is_file():
            cfg = load_config(saved, overrides)
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
        cfg = load_config(saved, overrides)
        if checkpoint is None:
            found = list_checkpoints(target, cfg["trainer_cfg"]["save_name"])
            if not found:
                raise FileNotFoundError(f"{target / 'checkpoints'}: no checkpoint of "
                                        f"{cfg['trainer_cfg']['save_name']!r} to test")
            checkpoint = found[-1][1]
        return cfg, checkpoint, target
    cfg = load_config(target, overrides)
    ev = cfg["evaluator_cfg"]
    run_dir = run_dir_of(cfg, ev["save_name"])
    if checkpoint is None:
        checkpoint = checkpoint_for_hint(run_dir, ev["save_name"], ev["restore_hint"])
        if checkpoint is None:
            raise ConfigError("no checkpoint: pass --checkpoint PATH or set evaluator_cfg.restore_hint")
    return cfg, checkpoint, run_dir


@torch.no_grad()
def embed_batch(model: torch.nn.Module, batch: dict, evaluator_cfg: dict, device: torch.device) -> np.ndarray:
    """Float32 embeddings [n, c, p] of one batch built by ``SequenceCollator``, with the evaluator's precision
    (fp16 autocast on CUDA when ``enable_float16``); the model must already be in eval mode."""
    use_amp = evaluator_cfg["enable_float16"] and device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.float16) if use_amp else nullcontext():
        out = model(batch["sils"].to(device, non_blocking=True), batch["seq_lengths"])
    return out["embeddings"].float().cpu().numpy()


@torch.no_grad()
def extract_features(model: torch.nn.Module, dataset: GaitDataset, evaluator_cfg: dict, ctx: DistContext,
                     num_workers: int = 0, progress: bool = True) -> dict[str, np.ndarray] | None:
    """Embeddings of every sequence of ``dataset`` in dataset order; under distribution each rank embeds a
    disjoint shard and rank 0 returns the whole set (other ranks return None)."""
    sampler_cfg = evaluator_cfg["sampler"]
    sampler = InferenceSampler(len(dataset), sampler_cfg["batch_size"], ctx.rank, ctx.world_size)
    collator = SequenceCollator(sampler_cfg, evaluator_cfg["transform"], seed=0)
    loader = torch.utils.data.DataLoader(SequenceReader(dataset), batch_sampler=sampler, collate_fn=collator,
                                         num_workers=num_workers, pin_memory=ctx.device.type == "cuda")
    model.eval()
    indices, chunks = [], []
    for batch in tqdm(loader, desc="test", disable=not progress or ctx.rank != 0 or not interactive(),
                      dynamic_ncols=True):
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
             progress: bool = True, test_set: GaitDataset | None = None, checkpoint: str | Path | None = None
             ) -> EvaluationResult | None:
    """Embed the test set, write ``features.npz`` and the report into ``output_dir``; returns the result on
    rank 0 (None on other ranks). The result names the model and ``checkpoint`` (file name) it came from."""
    from ..evaluation.report import write_report

    output_dir = Path(output_dir)
    if ctx.rank == 0 and not overwrite and (output_dir / "features.npz").exists():
        raise FileExistsError(f"{output_dir} already holds test results; choose another --output or pass --overwrite")
    if test_set is None:
        _, test_set = build_datasets(cfg["data_cfg"], train=False)
    features = extract_features(model, test_set, cfg["evaluator_cfg"], ctx,
                                num_workers=cfg["data_cfg"]["num_workers"], progress=progress)
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
