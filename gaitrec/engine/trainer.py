"""Training: one readable loop. Data, model, losses and optimizer come from the config; checkpoints,
inference and logging are small helpers called from the loop."""
from __future__ import annotations

import copy
import json
import logging
import math
import random
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from ..config import dump, loss_entries, torch_class
from ..data.dataset import GaitDataset, build_datasets
from ..data.sampler import SequenceCollator, SequenceReader, build_train_sampler
from ..device import place_model
from ..files import atomic_write_bytes
from ..errors import DataError, RunError
from ..evaluation.result import EvaluationResult
from ..locking import OutputLock
from ..losses import build_losses, total_loss
from ..models import create_model
from ..registry import ConfigError
from . import distributed as dist_utils
from .checkpoint import (checkpoint_for_hint, checkpoint_path, list_checkpoints, load_checkpoint, load_model_weights,
                         prune_checkpoints, run_dir_of, save_checkpoint)
from .inference import interactive, run_test

log = logging.getLogger("gaitrec")


class NonFiniteLossError(RunError, FloatingPointError):
    """The loss became NaN or infinite (a learning rate too high, bad data); a FloatingPointError as before."""


@dataclass
class TrainingRun:
    """What one training holds once everything is built: the loop and its helpers take this, not a dozen
    arguments. ``cfg`` is the validated config (every key of the typed sections present)."""
    cfg: dict
    ctx: dist_utils.DistContext
    run_dir: Path
    train_set: GaitDataset
    test_set: GaitDataset | None
    model: nn.Module
    losses: dict[str, nn.Module]  # by log prefix
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None  # fp16 autocast only
    use_amp: bool
    amp_dtype: torch.dtype | None
    start: int = 0  # the iteration the run restored, 0 for a fresh one

    @property
    def trainer_cfg(self) -> dict:
        return self.cfg["trainer_cfg"]


def config_for_run(cfg: dict) -> dict:
    """``cfg`` with its paths absolute (dataset root, the partition file actually used, output root), so that
    the copy a run stores (``config.yaml``, each checkpoint's ``config``) tests the run from any directory."""
    from ..data.dataset import resolve_partition

    cfg = copy.deepcopy(cfg)
    data = cfg["data_cfg"]
    data["dataset_root"] = str(Path(data["dataset_root"]).resolve())
    partition = resolve_partition(data["dataset_partition"], data["dataset_name"])
    if partition is not None:
        data["dataset_partition"] = str(Path(partition).resolve())
    cfg["trainer_cfg"]["output_root"] = str(Path(cfg["trainer_cfg"]["output_root"]).resolve())
    for section in ("trainer_cfg", "evaluator_cfg"):
        if isinstance(cfg[section]["restore_hint"], str):
            cfg[section]["restore_hint"] = str(Path(cfg[section]["restore_hint"]).resolve())
    return cfg


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup_logging(run_dir: Path | None, filename: str, rank: int = 0) -> None:
    """Log to ``run_dir/filename`` (not with ``run_dir`` None) and to the console (through tqdm so the bar
    stays intact)."""
    log.setLevel(logging.INFO)
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    if rank != 0:
        log.addHandler(logging.NullHandler())
        return
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(run_dir / filename)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(file_handler)

    class TqdmHandler(logging.Handler):
        def emit(self, record):
            tqdm.write(self.format(record))

    log.addHandler(TqdmHandler())
    log.propagate = False


def build_optimizer(model: nn.Module, optimizer_cfg: dict) -> torch.optim.Optimizer:
    cfg = dict(optimizer_cfg)
    solver = torch_class(torch.optim, cfg.pop("solver"), torch.optim.Optimizer, "optimizer_cfg.solver")
    return solver(filter(lambda p: p.requires_grad, model.parameters()), **cfg)


def build_scheduler(optimizer, scheduler_cfg: dict):
    cfg = dict(scheduler_cfg)
    scheduler = torch_class(torch.optim.lr_scheduler, cfg.pop("scheduler"), torch.optim.lr_scheduler.LRScheduler,
                            "scheduler_cfg.scheduler")
    return scheduler(optimizer, **cfg)


def amp_settings(enable: bool, device: torch.device, amp_dtype: str | None) -> tuple[bool, torch.dtype | None]:
    """(use autocast, dtype). Default: fp16 + GradScaler on CUDA, off on CPU (where only an explicit
    ``amp_dtype`` turns it on: bfloat16, or float16 with a GradScaler as on GPUs)."""
    if not enable:
        return False, None
    if amp_dtype is None:
        if device.type != "cuda":
            log.info("enable_float16 is ignored on CPU (set trainer_cfg.amp_dtype: bfloat16 to use bf16 autocast)")
            return False, None
        amp_dtype = "float16"
    return True, {"float16": torch.float16, "bfloat16": torch.bfloat16}[amp_dtype]


def check_class_num(model: nn.Module, num_classes: int) -> None:
    """A classifier head smaller than the number of training subjects would index out of range."""
    for module in model.modules():
        class_num = getattr(module, "class_num", None)
        if isinstance(class_num, int) and class_num < num_classes:
            raise ConfigError(f"model_cfg: the classifier has class_num {class_num} but the train set has "
                              f"{num_classes} subjects; set SeparateBNNecks.class_num (or the model's class_num) "
                              f"to {num_classes}")


def random_state(device: torch.device) -> dict:
    """The generators a training step draws from: the CPU's (sampling, and dropout on the CPU) and, on a GPU,
    the device's (dropout there, e.g. GLN's)."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_random_state(state: dict, device: torch.device) -> None:
    """Put back what ``random_state`` saved; a GPU's generator only where it was saved and a GPU trains."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def restore(run: TrainingRun, resume: bool) -> tuple[int, dict | None, list[str]]:
    """Restore ``run``'s model, optimizer, scheduler and scaler per ``restore_hint`` (or the newest intact
    checkpoint with ``resume``).

    Returns (start iteration, the sizes the run's log files had when the restored checkpoint was written or
    None, lines for the log).
    """
    trainer, run_dir = run.trainer_cfg, run.run_dir
    hint = trainer["restore_hint"]
    state = None
    if resume:
        found = list_checkpoints(run_dir, trainer["save_name"])
        for iteration, candidate in reversed(found):  # newest intact one: a crash can leave a damaged newest
            try:
                state = load_checkpoint(candidate)
                hint, path = iteration, candidate
                break
            except DataError as err:
                warnings.warn(f"resume: skipping {err}")
        if state is None:
            if found:
                raise RunError(f"resume: no intact checkpoint in {run_dir / 'checkpoints'} "
                               f"({len(found)} found, all unreadable)")
            return 0, None, [f"resume: no checkpoint in {run_dir / 'checkpoints'}, starting fresh"]
    if hint == 0:
        return 0, None, []
    if state is None:
        path = checkpoint_for_hint(run_dir, trainer["save_name"], hint)
        state = load_checkpoint(path)
    strict = trainer["restore_ckpt_strict"]
    load_model_weights(run.model, state, strict=strict, where=str(path))
    same_run = isinstance(hint, int)
    if not trainer["optimizer_reset"] and "optimizer" in state:
        run.optimizer.load_state_dict(state["optimizer"])
    if not trainer["scheduler_reset"] and "scheduler" in state:
        run.scheduler.load_state_dict(state["scheduler"])
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    if same_run and "rng" in state:
        try:
            set_random_state(state["rng"], run.ctx.device)
        except (KeyError, TypeError, RuntimeError) as err:
            raise DataError(f"{path}: corrupt RNG state ({type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''})") from None
    iteration = int(state.get("iteration", 0)) if same_run else 0
    log_sizes = state.get("log_sizes") if same_run and isinstance(state.get("log_sizes"), dict) else None
    return iteration, log_sizes, [f"restored {path} (iteration {int(state.get('iteration', 0))}, strict={strict})"]


def check_run_dir_owned(run_dir: Path, trainer_cfg: dict, resume: bool) -> None:
    """A run writes only into a run directory it owns: a fresh run (including fine-tuning from a file) into one
    without checkpoints; ``restore_hint: N`` only when no later checkpoint of that run would be overwritten."""
    found = list_checkpoints(run_dir, trainer_cfg["save_name"])
    if resume or not found:
        return
    hint = trainer_cfg["restore_hint"]
    later = [p.name for i, p in found if not (isinstance(hint, int) and hint > 0 and i <= hint)]
    if later:
        what = f"restore_hint {hint}" if isinstance(hint, int) and hint > 0 else "a fresh run"
        raise RunError(f"{run_dir} already holds checkpoints of a run named {trainer_cfg['save_name']!r} "
                       f"({', '.join(later[-3:])}); {what} would overwrite them: continue that run with --resume, "
                       "or choose another trainer_cfg.save_name")


def lock_run_dir(run_dir: Path) -> OutputLock:
    """The run directory's lock (``<run_dir>/.lock``), held while training: a second training is refused."""
    return OutputLock(run_dir / ".lock", f"{run_dir} (another training; choose another trainer_cfg.save_name)")


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete the temporary files of writes killed midway (``.<name>.<random>.tmp``); the lock makes them stale."""
    for path in run_dir.rglob(".*.tmp"):
        if path.is_file():
            path.unlink()


def truncate_run_logs(run_dir: Path, start: int, log_sizes: dict | None) -> None:
    """After a resume from iteration ``start``, drop what the crashed run logged after that checkpoint, so the
    replayed iterations are not recorded twice. Without recorded sizes (older checkpoints), metrics rows are
    filtered by iteration."""
    for name in ("train.log", "metrics.jsonl"):
        path = run_dir / name
        if not path.is_file():
            continue
        if start == 0:
            continue
        size = None if log_sizes is None else log_sizes.get(name)
        if isinstance(size, int) and 0 <= size <= path.stat().st_size:
            with open(path, "r+b") as f:
                f.truncate(size)
        elif name == "metrics.jsonl":
            kept = []
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True):
                try:
                    if int(json.loads(line)["iteration"]) <= start:
                        kept.append(line)
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line of a killed run
            atomic_write_bytes(path, "".join(kept).encode("utf-8"))


def fix_batchnorm(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def train(cfg: dict, device: str | None = None, resume: bool = False, progress: bool = True,
          test_at_end: bool = True) -> dict:
    """Train the model of ``cfg``; returns ``{"run_dir", "iteration", "history", "test"}``.

    Everything that can refuse the run (config, dataset, model, the run directory's ownership, the
    checkpoint to restore) is checked before anything is written, so a refused run leaves an existing run
    directory as it was. The run directory is locked while training.
    """
    ctx = dist_utils.init(device)
    cfg = config_for_run(cfg)
    trainer = cfg["trainer_cfg"]
    run_dir = run_dir_of(cfg)
    setup_logging(None, "train.log", ctx.rank)  # console only until the run directory is ours
    set_seed(trainer["seed"] + ctx.rank)
    check_run_dir_owned(run_dir, trainer, resume)

    # The test set is listed (and, with data_cfg.cache, loaded) once, not at every test during training.
    train_set, test_set = build_datasets(cfg["data_cfg"], test=trainer["with_test"] or test_at_end)
    model = create_model(cfg["model_cfg"])
    check_class_num(model, len(train_set.subjects))
    place_model(model, ctx.device, trainer["channels_last"])
    losses = build_losses(loss_entries(cfg))
    optimizer = build_optimizer(model, cfg["optimizer_cfg"])
    scheduler = build_scheduler(optimizer, cfg["scheduler_cfg"])
    use_amp, amp_dtype = amp_settings(trainer["enable_float16"], ctx.device, trainer["amp_dtype"])
    scaler = torch.amp.GradScaler(ctx.device.type) if use_amp and amp_dtype == torch.float16 else None
    run = TrainingRun(cfg, ctx, run_dir, train_set, test_set, model, losses, optimizer, scheduler, scaler, use_amp,
                      amp_dtype)
    build_train_sampler(trainer["sampler"], train_set.labels)  # refuses a batch larger than the train set allows

    lock = lock_run_dir(run_dir) if ctx.rank == 0 else None  # creates the run directory: nothing was refused
    try:
        run.start, log_sizes, notes = restore(run, resume)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    if ctx.rank == 0:
        remove_stale_temporaries(run_dir)
        truncate_run_logs(run_dir, run.start, log_sizes)
        atomic_write_bytes(run_dir / "config.yaml", dump(cfg).encode("utf-8"))
    setup_logging(run_dir, "train.log", ctx.rank)
    log.info("run directory %s, device %s, %d process(es), %d CPU thread(s)", run_dir, ctx.device, ctx.world_size,
             torch.get_num_threads())
    for note in notes:
        log.info("%s", note)
    try:
        return _train_loop(run, progress, test_at_end)
    finally:
        if lock is not None:
            lock.release()


def _train_loop(run: TrainingRun, progress: bool, test_at_end: bool) -> dict:
    ctx, trainer, optimizer, scheduler, scaler = run.ctx, run.trainer_cfg, run.optimizer, run.scheduler, run.scaler
    model = run.model = dist_utils.wrap_model(run.model, ctx, trainer)
    forward = torch.compile(model) if trainer["compile"] else model

    sampler_cfg = trainer["sampler"]
    sampler = build_train_sampler(sampler_cfg, run.train_set.labels, seed=trainer["seed"], start_iteration=run.start,
                                  rank=ctx.rank, world_size=ctx.world_size)
    collator = SequenceCollator(sampler_cfg, trainer["transform"], seed=trainer["seed"])
    workers = run.cfg["data_cfg"]["num_workers"]
    # Pinned batches on CUDA: the non_blocking copies below then overlap the GPU's work instead of staging
    # through pageable memory synchronously.
    loader = torch.utils.data.DataLoader(SequenceReader(run.train_set), batch_sampler=sampler, collate_fn=collator,
                                         num_workers=workers, persistent_workers=workers > 0,
                                         pin_memory=ctx.device.type == "cuda")
    monitor = Monitor(run, progress)
    gather = dist_utils.all_gather_with_grad if ctx.distributed else None

    total_iter = trainer["total_iter"]
    model.train()
    if trainer["fix_BN"]:
        fix_batchnorm(model)
    iteration = run.start
    data_start = time.perf_counter()
    for batch in loader:
        if iteration >= total_iter:
            break
        data_time = time.perf_counter() - data_start
        sils = batch["sils"].to(ctx.device, non_blocking=True)
        labels = batch["labels"].to(ctx.device, non_blocking=True)
        with torch.autocast(ctx.device.type, dtype=run.amp_dtype) if run.use_amp else nullcontext():
            outputs = forward(sils, batch["seq_lengths"])
        # The loss terms run in fp32 whatever the autocast: distances and softmax are precision-sensitive.
        loss, logged = total_loss(run.losses, outputs["training"], labels, gather, ctx.world_size)
        iteration += 1
        skipped = False
        optimizer.zero_grad(set_to_none=True)
        if not math.isfinite(logged["loss"]):
            if not trainer["skip_nonfinite"]:
                raise NonFiniteLossError(f"non-finite loss at iteration {iteration}: {logged} "
                                         "(set trainer_cfg.skip_nonfinite: true to skip such steps)")
            log.warning("iteration %d: non-finite loss, step skipped", iteration)
            skipped = True
        elif scaler is not None:
            scaler.scale(loss).backward()
            scale_before = scaler.get_scale()
            scaler.step(optimizer)
            scaler.update()
            if scaler.get_scale() < scale_before:  # overflow: the step was skipped and the scale backed off
                log.info("iteration %d: fp16 gradients overflowed, step skipped (scale now %g)", iteration,
                         scaler.get_scale())
                skipped = True
        else:
            loss.backward()
            optimizer.step()
        # The schedule counts the optimizer's steps, as OpenGait's does: a skipped step (an fp16 overflow, a
        # non-finite loss) moves no milestone, and torch warns of a scheduler step before any optimizer step.
        if not skipped:
            scheduler.step()

        logged.update({"lr": optimizer.param_groups[0]["lr"], "time/iteration": time.perf_counter() - data_start,
                       "time/data": data_time})
        monitor.log(iteration, logged, sils)
        if iteration % trainer["save_iter"] == 0 or iteration == total_iter:
            saved = save_training_state(run, iteration, monitor.log_sizes())
            if trainer["with_test"] and iteration < total_iter:
                result = test_during_training(run, iteration, monitor.writer)
                monitor.keep_best(result, saved, iteration)
        data_start = time.perf_counter()
    monitor.close_bar()

    test_result = None
    if test_at_end:
        test_result = test_during_training(run, iteration, monitor.writer)
        monitor.keep_best(test_result, checkpoint_path(run.run_dir, trainer["save_name"], iteration), iteration)
    monitor.close()
    return {"run_dir": run.run_dir, "iteration": iteration, "history": monitor.history, "test": test_result}


def format_duration(seconds: float) -> str:
    """``42s``, ``7m05s``, ``3h02m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Monitor:
    """Where a run reports: progress bar, log file, ``metrics.jsonl``, TensorBoard, best checkpoint (rank 0)."""

    def __init__(self, run: TrainingRun, progress: bool):
        self.run_dir, self.ctx, self.cfg, self.start = run.run_dir, run.ctx, run.trainer_cfg, run.start
        self.main = run.ctx.rank == 0
        self.writer = dist_utils.summary_writer(self.run_dir, run.ctx,
                                                purge_step=self.start + 1 if self.start else None)
        # A bar only on a terminal: in a log file tqdm's redraws become hundreds of lines; there the log line
        # every log_iter iterations (with its ETA) is the progress report.
        self.bar = tqdm(total=self.cfg["total_iter"], initial=self.start, desc="train",
                        disable=not (progress and self.main and interactive()), dynamic_ncols=True)
        self.interval_seconds: list[float] = []  # iteration times since the last log line
        self.history: list[dict] = []
        self.best: float | None = None
        self.metrics = open(self.run_dir / "metrics.jsonl", "a") if self.main else None

    def log(self, iteration: int, logged: dict, sils: torch.Tensor) -> None:
        self.history.append({"iteration": iteration, **logged})
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{logged['loss']:.3f}")
        if not self.main:
            return
        try:
            self.metrics.write(json.dumps({"iteration": iteration, **logged}) + "\n")
        except OSError as err:  # a full disk: name the file
            raise OSError(err.errno, err.strerror, str(self.run_dir / "metrics.jsonl")) from None
        for key, value in logged.items():
            self.writer.add_scalar(key if "/" in key else f"train/{key}", value, iteration)
        if iteration == self.start + 1 or iteration % self.cfg["save_iter"] == 0:
            frames = sils.detach().reshape(-1, 1, *sils.shape[-2:])[:16].float().cpu()
            self.writer.add_images("input/silhouettes", frames, iteration)
        self.interval_seconds.append(logged["time/iteration"])
        total = self.cfg["total_iter"]
        if iteration % self.cfg["log_iter"] == 0 or iteration == total:
            self.metrics.flush()
            # One slow or fast iteration says little: the line reports the mean since the previous line.
            mean = sum(self.interval_seconds) / len(self.interval_seconds)
            shown = {**logged, "time/iteration": mean}
            log.info("iteration %d/%d: %s (time/iteration: mean of the last %d; eta %s)", iteration, total,
                     ", ".join(f"{k}={v:.4g}" for k, v in shown.items()), len(self.interval_seconds),
                     format_duration(mean * (total - iteration)))
            self.interval_seconds = []

    def log_sizes(self) -> dict | None:
        """Sizes of ``train.log`` and ``metrics.jsonl`` with everything logged so far flushed."""
        if not self.main:
            return None
        self.metrics.flush()
        for handler in log.handlers:
            handler.flush()
        return {name: (self.run_dir / name).stat().st_size for name in ("train.log", "metrics.jsonl")
                if (self.run_dir / name).is_file()}

    def keep_best(self, result: EvaluationResult | None, checkpoint: Path, iteration: int) -> None:
        """Copy ``checkpoint`` to ``<save_name>-best.pt`` when ``best_metric`` improved (``headline``: the
        protocol's headline figure)."""
        metric = self.cfg["best_metric"]
        if not (self.main and metric and result):
            return
        if metric == "headline":
            metric = result.headline
        if metric not in result.figures:
            raise ConfigError(f"trainer_cfg.best_metric {metric!r} is not a result of this protocol "
                              f"(it has: headline, {', '.join(result.figures)})")
        value = float(result.figures[metric])
        if self.best is None or value > self.best:
            self.best = value
            best = checkpoint.parent / f"{self.cfg['save_name']}-best.pt"
            atomic_write_bytes(best, checkpoint.read_bytes())
            log.info("new best %s = %.2f at iteration %d: %s", metric, value, iteration, best)

    def close_bar(self) -> None:
        self.bar.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.metrics is not None:
            self.metrics.close()


def save_training_state(run: TrainingRun, iteration: int, log_sizes: dict | None = None) -> Path:
    """Write this iteration's checkpoint (rank 0 writes; every rank gets the path). ``log_sizes``: the sizes of
    the run's log files now, so that a resume from this checkpoint can cut what a crashed run logged later."""
    trainer = run.trainer_cfg
    path = checkpoint_path(run.run_dir, trainer["save_name"], iteration)
    if run.ctx.rank != 0:
        return path
    target = run.model.module if hasattr(run.model, "module") else run.model
    state = {
        "model": target.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else {},
        "iteration": iteration,
        "rng": random_state(run.ctx.device),
        "config": run.cfg,
        "log_sizes": log_sizes,
    }
    save_checkpoint(path, state)
    prune_checkpoints(run.run_dir, trainer["save_name"], trainer["keep_checkpoints"])
    log.info("saved %s", path)
    return path


def test_during_training(run: TrainingRun, iteration: int, writer) -> EvaluationResult | None:
    """Test the current weights, log the results, and return them (rank 0; None elsewhere)."""
    model, run_dir = run.model, run.run_dir
    was_training = model.training
    result = run_test(run.cfg, model, run.ctx, output_dir=run_dir / "test" / f"{iteration:05d}", overwrite=True,
                      progress=False, test_set=run.test_set,
                      checkpoint=checkpoint_path(run_dir, run.trainer_cfg["save_name"], iteration))
    if was_training:
        model.train()
        if run.trainer_cfg["fix_BN"]:
            fix_batchnorm(model)
    if result is not None:
        scores = result.figures
        log.info("test at iteration %d: %s", iteration,
                 ", ".join(f"{k}={v:.2f}" for k, v in scores.items() if isinstance(v, (int, float))))
        if writer is not None:
            for key, value in scores.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    writer.add_scalar(f"test/{key}", value, iteration)
    return result
