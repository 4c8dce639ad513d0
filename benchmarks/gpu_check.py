"""GPU check: the CUDA paths of gaitrec, run once on a machine with a GPU and recorded in RESULTS.md.

    bash benchmarks/gpu_check.sh [--quick] [--models Baseline,GaitSet] [--write PATH | --no-write] [--json PATH]
    bash benchmarks/gpu_check.sh --dry-run    # every step on the CPU at tiny sizes; writes nothing unless asked
    bash benchmarks/gpu_check.sh --smoke      # one model, the fastest subset of the dry run (the test runs it)

Steps, each guarded (a failure is recorded with its traceback summary and the next step runs) and each with
its share of the time budget (full: under 9 minutes on an H100, --quick: under 5):

1. Correctness: for each model at its config's size, the CUDA forward in fp32 (TF32 off) equals the CPU
   forward on the same weights and silhouettes, eval mode, stacked and packed (``seq_lengths``) batches.
2. Training: ``gaitrec.engine.trainer.train`` on a small SynthGait, fp16 autocast + GradScaler and bf16
   autocast; the loss is finite and falls, fp16 steps are not all skipped, the checkpoint reloads.
3. Two processes against one (NCCL; gloo in a dry run): the final weights agree.
4. Inference throughput, fp32 and fp16 autocast, batches of 30-frame sequences; channels_last and
   torch.compile for Baseline and GaitSet.
5. A CASIA-B-sized test set (5,485 sequences of about 80 frames, in memory) through ``extract_features`` and
   the casia-b protocol, timed end to end, against OpenGait's published test times.

Exit status: 0 when every check passed and no step failed, 1 otherwise (2: bad arguments).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_models import SPECS, load  # noqa: E402
from results_md import RESULTS, write_section  # noqa: E402
from gaitrec.data.dataset import GaitDataset, SequenceInfo, read_partition, resolve_partition  # noqa: E402
from gaitrec.data.transforms import build_transform  # noqa: E402
from gaitrec.engine.checkpoint import checkpoint_path, load_checkpoint, load_model_weights  # noqa: E402
from gaitrec.engine.distributed import DistContext  # noqa: E402
from gaitrec.device import place_model  # noqa: E402
from gaitrec.engine.inference import evaluate_config, extract_features  # noqa: E402
from gaitrec.models import create_model  # noqa: E402
from gaitrec.synth.body import TYPES, VIEWS  # noqa: E402
from gaitrec.synth.dataset import generate_dataset, render_views  # noqa: E402

TITLE = "GPU check (gpu_check.py)"
SEED_MODELS = ["Baseline", "GaitSet", "GaitPart", "GLN", "GaitGL"]
EXTRA_MODELS = ["GaitBase", "DeepGaitV2"]  # after the seed models: the time budget cuts these first
VARIANT_MODELS = ["Baseline", "GaitSet"]
# OpenGait's published CASIA-B test times (5,485 sequences, two GTX 1080 Ti), seconds.
OPENGAIT_TEST_S = {"Baseline": 12, "GaitSet": 13, "GaitPart": 56, "GLN": 47, "GaitGL": 38}
CASIA_B_TEST_SEQUENCES = 5485
STRICT_FP32_TOLERANCE = 1e-4  # max |cuda - cpu| / max |cpu| with TF32 off
DDP_TOLERANCE = 1e-3  # per tensor, max |two - one| / max |one|, after the same steps


@dataclass
class Sizes:
    """How much work each step does in one mode."""
    name: str
    models: list[str]
    check_batch: int  # step 1: sequences per stacked batch
    check_frames: int
    train_steps: int
    train_batch: list[int]  # [subjects, sequences per subject]
    train_frames: int
    synth_subjects: int
    synth_frames: int
    throughput_batches: list[int]
    throughput_frames: int
    repeats: int
    compile_models: list[str]
    ddp: bool
    ddp_steps: int
    casia_subjects: int | None  # None: CASIA-B's 50 test subjects
    casia_views: list[str]
    casia_frames: int
    budgets: dict[str, float]  # seconds per step


def sizes_for(mode: str) -> Sizes:
    all_models = SEED_MODELS + EXTRA_MODELS
    if mode == "full":
        return Sizes("full", all_models, 4, 30, 40, [4, 4], 30, 8, 40, [1, 4, 16, 64], 30, 10, VARIANT_MODELS,
                     True, 8, None, list(VIEWS), 80,
                     {"correctness": 40, "training": 150, "ddp": 50, "throughput": 140, "casia-b": 100})
    if mode == "quick":
        return Sizes("quick", all_models, 4, 30, 24, [4, 4], 30, 8, 40, [1, 4, 16, 64], 30, 4, [],
                     True, 6, None, list(VIEWS), 80,
                     {"correctness": 30, "training": 85, "ddp": 40, "throughput": 50, "casia-b": 55})
    if mode == "dry":
        # no torch.compile: on a CPU it compiles C++ for a minute or more, longer than the rest of the run
        return Sizes("dry", all_models, 2, 4, 3, [2, 2], 4, 4, 8, [1, 2], 4, 1, [],
                     True, 2, 2, ["000", "090"], 4,
                     {"correctness": 30, "training": 45, "ddp": 60, "throughput": 30, "casia-b": 20})
    if mode == "smoke":  # GaitSet: the cheapest seed model to train on a CPU
        return Sizes("smoke", ["GaitSet"], 2, 3, 2, [2, 2], 3, 4, 6, [1], 3, 1, [],
                     False, 2, 2, ["000", "090"], 3,
                     {"correctness": 30, "training": 60, "ddp": 10, "throughput": 30, "casia-b": 30})
    raise ValueError(mode)


# ------------------------------------------------------------------------------------------------ bookkeeping

class StepTimeout(BaseException):
    """Not an Exception: the guards that record a model's failure and go on must not swallow it."""


@dataclass
class Report:
    """Everything a run found: per-step markdown, checks, failures."""
    sections: dict[str, list[str]] = field(default_factory=dict)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    data: dict = field(default_factory=dict)

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        self.checks.append((name, bool(passed), detail))
        print(f"  [{'pass' if passed else 'FAIL'}] {name}" + (f": {detail}" if detail else ""), flush=True)
        return bool(passed)

    @property
    def ok(self) -> bool:
        return not self.failures and all(passed for _, passed, _ in self.checks)


class Clock:
    """Seconds left in a step's budget."""

    def __init__(self, budget: float):
        self.budget = budget
        self.start = time.perf_counter()

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


@contextlib.contextmanager
def hard_limit(seconds: float):
    """Raise StepTimeout in the main thread after ``seconds`` (a step stuck in Python code cannot hold the run)."""
    def expire(_signum, _frame):
        raise StepTimeout(f"step over its hard limit of {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1.0))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def traceback_summary(err: BaseException, frames: int = 4) -> str:
    """The error and the last few frames, one line each."""
    stack = traceback.extract_tb(err.__traceback__)[-frames:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack))
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {message[:300]} (at {where})"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def fmt(value, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


@contextlib.contextmanager
def tf32(convolutions: bool, matmuls: bool = False):
    """TF32 for cuDNN convolutions and for matmuls on or off. Strict fp32: both off; PyTorch's defaults:
    convolutions on, matmuls off."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = convolutions, matmuls
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    return torch.autocast(device.type, dtype=dtype)


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b| (b the reference)."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def quietly_load(name: str, overrides=()) -> dict:
    from gaitrec.config import load_config

    with warnings.catch_warnings():  # OpenGait keys gaitrec ignores (GLN's enable_distributed ...)
        warnings.simplefilter("ignore")
        if overrides:
            return load_config(ROOT / "gaitrec" / "configs" / SPECS[name].config, list(overrides))
        return load(name)[0]


def build_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return create_model(quietly_load(name)["model_cfg"])


# ------------------------------------------------------------------------------------------------------ data

class Run:
    """What the steps share: the device, the sizes, a scratch directory and the data made once."""

    def __init__(self, device: torch.device, sizes: Sizes, scratch: Path, report: Report):
        self.device, self.sizes, self.scratch, self.report = device, sizes, scratch, report
        self._pools: dict[tuple[int, int], list[np.ndarray]] = {}
        self._datasets: dict[int, Path] = {}

    def silhouettes(self, size: int, frames: int, count: int = 22) -> list[np.ndarray]:
        """SynthGait sequences rendered in memory: uint8 ``[T, size, size]`` (T <= frames), ``count`` of them
        (subjects x views), reused by every step that needs input frames."""
        key = (size, frames)
        if key not in self._pools:
            pool, index = [], 0
            while len(pool) < count:
                for seq in render_views(0, index, "nm-01", VIEWS, frames, size).values():
                    if len(seq):
                        pool.append(seq)
                index += 1
            self._pools[key] = pool[:count]
        return self._pools[key]

    def model_input(self, name: str, sequences: int, frames: int, seed: int = 0) -> torch.Tensor:
        """``[sequences, frames, h, w]`` float silhouettes at the model's size, cut as the configs' transform."""
        spec = SPECS[name]
        pool = self.silhouettes(spec.height, max(frames, 8))
        cut = build_transform([{"type": "BaseSilCuttingTransform"}])
        rng = np.random.default_rng(seed)
        batch = []
        for _ in range(sequences):
            seq = pool[int(rng.integers(len(pool)))]
            batch.append(cut(seq[np.arange(frames) % len(seq)]))
        out = torch.from_numpy(np.stack(batch)).float()
        assert out.shape[-2:] == (spec.height, spec.width), out.shape
        return out

    def synthgait(self, size: int) -> Path:
        """A small SynthGait on disk for training (generated once per size)."""
        if size not in self._datasets:
            root = self.scratch / f"synthgait-{size}"
            generate_dataset(root, subjects=self.sizes.synth_subjects, frames=self.sizes.synth_frames, size=size,
                             views=["000", "054", "090", "126"], types=["nm-01", "nm-02", "bg-01", "cl-01"],
                             progress=False)
            self._datasets[size] = root
        return self._datasets[size]


# ------------------------------------------------------------------------------------------ 1. correctness

def step_correctness(run: Run, clock: Clock) -> list[str]:
    device, sizes = run.device, run.sizes
    lines = [f"Eval-mode embeddings of the same weights and SynthGait silhouettes on the CPU (reference) and on "
             f"{device}: a stacked batch of {sizes.check_batch} x {sizes.check_frames} frames and a packed batch "
             f"(3 sequences of different lengths, `seq_lengths`). Max relative difference = max |device - cpu| / "
             f"max |cpu|; strict fp32 (TF32 off) must be under {STRICT_FP32_TOLERANCE:g}; the TF32 column "
             "(PyTorch's defaults: TF32 in cuDNN convolutions, not in matmuls) is for information.", "",
             "| model | input | stacked, strict fp32 | packed, strict fp32 | stacked, TF32 | pass |",
             "|---|---|---:|---:|---:|---|"]
    for name in sizes.models:
        spec = SPECS[name]
        if clock.left() < 3:
            lines.append(f"| {name} | {spec.height}x{spec.width} | - | - | - | skipped: step time budget spent |")
            continue
        model = build_model(name).eval()
        stacked = run.model_input(name, sizes.check_batch, sizes.check_frames, seed=1)
        lengths = [sizes.check_frames, max(2, sizes.check_frames // 2), sizes.check_frames + 3]
        packed = torch.cat([s[:n] for s, n in zip(run.model_input(name, 3, max(lengths), seed=2), lengths)])[None]
        with torch.no_grad():
            ref = model(stacked)["embeddings"]
            ref_packed = model(packed, lengths)["embeddings"]
            on_device = copy.deepcopy(model).to(run.device)
            with tf32(False):
                strict = relative_difference(on_device(stacked.to(device))["embeddings"], ref)
                strict_packed = relative_difference(on_device(packed.to(device), lengths)["embeddings"], ref_packed)
            with tf32(True, False):
                loose = relative_difference(on_device(stacked.to(device))["embeddings"], ref)
        passed = run.report.check(f"correctness {name}", strict < STRICT_FP32_TOLERANCE
                                  and strict_packed < STRICT_FP32_TOLERANCE,
                                  f"strict {strict:.2e}, packed {strict_packed:.2e}, tf32 {loose:.2e}")
        lines.append(f"| {name} | {spec.height}x{spec.width} | {strict:.2e} | {strict_packed:.2e} | {loose:.2e} "
                     f"| {'yes' if passed else '**no**'} |")
        del on_device
    return lines


# -------------------------------------------------------------------------------------------- 2. training

def training_overrides(run: Run, name: str, save_name: str, data: Path, steps: int, batch: list[int]) -> list[str]:
    """``--set``-style overrides that turn a shipped CASIA-B config into a short run on SynthGait."""
    workers = 2 if run.device.type == "cuda" else 0
    return [f"data_cfg.dataset_root={data}", f"data_cfg.dataset_partition={data / 'partition.json'}",
            "data_cfg.dataset_name=SynthGait", f"data_cfg.num_workers={workers}",
            f"trainer_cfg.output_root={run.scratch / 'runs'}", f"trainer_cfg.save_name={save_name}",
            f"trainer_cfg.total_iter={steps}", f"trainer_cfg.save_iter={steps}", f"trainer_cfg.log_iter={steps}",
            "trainer_cfg.with_test=false", "trainer_cfg.restore_hint=0", "trainer_cfg.keep_checkpoints=0",
            f"trainer_cfg.sampler.batch_size=[{batch[0]}, {batch[1]}]",
            f"trainer_cfg.sampler.frames_num_fixed={run.sizes.train_frames}"]  # every config here samples fixed_*


def train_one(run: Run, name: str, precision: str) -> dict:
    """Train ``name`` for a few steps in ``precision`` and check the run; returns the table row's numbers."""
    from gaitrec.engine.trainer import set_seed, train

    sizes, device = run.sizes, run.device
    data = run.synthgait(SPECS[name].height)
    save_name = f"{name}-{precision}"
    overrides = training_overrides(run, name, save_name, data, sizes.train_steps, sizes.train_batch)
    overrides.append("trainer_cfg.enable_float16=true")
    if precision == "bf16":
        overrides.append("trainer_cfg.amp_dtype=bfloat16")
    cfg = quietly_load(name, overrides)
    reset_peak(device)
    result = train(cfg, device=str(device), progress=False, test_at_end=False)
    sync(device)
    peak = peak_mib(device)
    history = result["history"]
    losses = [h["loss"] for h in history]
    times = [h["time/iteration"] for h in history][2:] or [h["time/iteration"] for h in history]
    log_text = (result["run_dir"] / "train.log").read_text()
    skipped = log_text.count("fp16 gradients overflowed, step skipped")
    window = min(5, len(losses) // 2) or 1
    first, last = float(np.mean(losses[:window])), float(np.mean(losses[-window:]))
    # The triplet loss averages over its non-zero terms, so its value can stay flat while learning separates
    # more triplets; fewer active triplets counts as falling too.
    active = [[h[k] for h in history] for k in history[0] if k.endswith("/loss_num")] if history else []
    separating = any(np.mean(a[-window:]) < np.mean(a[:window]) for a in active)

    path = checkpoint_path(result["run_dir"], save_name, sizes.train_steps)
    state = load_checkpoint(path)
    reloaded = create_model(cfg["model_cfg"])
    load_model_weights(reloaded, state, strict=True, where=str(path))
    set_seed(cfg["trainer_cfg"]["seed"])  # the trainer's seed: the initial weights
    initial = create_model(cfg["model_cfg"]).state_dict()
    changed = any(not torch.equal(v, initial[k]) for k, v in reloaded.state_dict().items() if v.is_floating_point())
    reloaded.to(device).eval()
    with torch.no_grad():
        embeddings = reloaded(run.model_input(name, 2, sizes.train_frames).to(device))["embeddings"]
    reload_ok = changed and bool(torch.isfinite(embeddings).all())

    label = f"training {name} {precision}"
    finite = run.report.check(f"{label}: loss finite", all(np.isfinite(losses)) and len(losses) == sizes.train_steps,
                              f"{len(losses)} steps")
    if sizes.train_steps >= 20:
        falls = run.report.check(f"{label}: loss falls", last < first or separating,
                                 f"{first:.4g} -> {last:.4g}" + ("" if last < first else
                                                                 "; fewer active triplets" if separating else ""))
    else:
        falls = None  # too few steps to ask
    not_stuck = run.report.check(f"{label}: steps not all skipped", skipped <= sizes.train_steps // 2,
                                 f"{skipped} of {sizes.train_steps} skipped")
    reload_ok = run.report.check(f"{label}: checkpoint reloads", reload_ok,
                                 "weights changed from the initial ones, strict reload, finite embeddings")
    del reloaded
    return {"model": name, "precision": precision, "steps": len(losses), "first": first, "last": last,
            "falls": falls, "skipped": skipped, "step_ms": 1000 * statistics.median(times), "peak_mib": peak,
            "ok": finite and falls is not False and not_stuck and reload_ok}


def step_training(run: Run, clock: Clock) -> list[str]:
    sizes = run.sizes
    p, k = sizes.train_batch
    lines = [f"`gaitrec.engine.trainer.train` on the shipped CASIA-B configs with overrides: SynthGait "
             f"({sizes.synth_subjects} subjects, 4 types x 4 views, {sizes.synth_frames} frames; 64x64, GLN 128x128), "
             f"batch [{p}, {k}] x {sizes.train_frames} frames, {sizes.train_steps} steps, the config's optimizer "
             "and losses. fp16: `enable_float16: true` (autocast + GradScaler); bf16: `amp_dtype: bfloat16`. "
             "Loss: mean of the first and of the last 5 steps. Step: median wall time per iteration (data "
             "included) after 2 warm-up steps. Peak: `torch.cuda.max_memory_allocated` over the run.", "",
             "| model | precision | loss first -> last | skipped steps | step (ms) | peak memory (MiB) | pass |",
             "|---|---|---|---:|---:|---:|---|"]
    # fp16 autocast on a CPU is tens of times slower than fp32 (175 s for one Baseline step here): a dry run
    # trains in bf16 only; tests/test_engine.py covers the GradScaler path on the CPU at toy sizes.
    precisions = ("fp16", "bf16") if run.device.type == "cuda" else ("bf16",)
    if run.device.type != "cuda":
        lines[0] += " On the CPU only bf16 runs: fp16 autocast there is too slow for a dry run."
    for name in sizes.models:
        for precision in precisions:
            if clock.left() < 8:
                lines.append(f"| {name} | {precision} | - | - | - | - | skipped: step time budget spent |")
                continue
            try:
                row = train_one(run, name, precision)
            except Exception as err:
                summary = traceback_summary(err)
                run.report.check(f"training {name} {precision}", False, summary)
                lines.append(f"| {name} | {precision} | - | - | - | - | **failed**: {summary} |")
                continue
            lines.append(f"| {name} | {precision} | {row['first']:.4g} -> {row['last']:.4g} | {row['skipped']} "
                         f"| {row['step_ms']:.1f} | {fmt(row['peak_mib'], '.0f')} "
                         f"| {'yes' if row['ok'] else '**no**'} |")
            run.report.data.setdefault("training", []).append(row)
    return lines


# ----------------------------------------------------------------------------- 3. two processes against one

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def step_ddp(run: Run, clock: Clock) -> list[str]:
    device, sizes = run.device, run.sizes
    if not sizes.ddp:
        return [f"skipped: not run with --{sizes.name}"]
    if device.type == "cuda" and torch.cuda.device_count() < 2:
        run.report.data["ddp"] = "skipped: one GPU"
        return [f"skipped: one GPU ({torch.cuda.device_count()} visible)"]
    backend = "nccl" if device.type == "cuda" else "gloo"
    data = run.synthgait(64)
    batch = [4, 4] if device.type == "cuda" else [2, 2]
    python_path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": python_path,
           "NVIDIA_TF32_OVERRIDE": "0",  # strict fp32 in both runs, so that only the summation order differs
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "GAITREC_DIST_BACKEND": backend}

    def args(save_name: str) -> list[str]:
        # Triplet loss only: it reads the FC output, before any BatchNorm, so one global batch and two local
        # halves give the same gradients (the test suite's gloo check does the same). fp32: no GradScaler.
        sets = training_overrides(run, "Baseline", save_name, data, sizes.ddp_steps, batch) + [
            "loss_cfg=[{type: TripletLoss, margin: 0.2, log_prefix: triplet}]", "trainer_cfg.enable_float16=false",
            "trainer_cfg.find_unused_parameters=true", "trainer_cfg.sync_BN=false", "data_cfg.num_workers=0"]
        out = ["train", str(ROOT / "gaitrec" / "configs" / SPECS["Baseline"].config), "--no-test", "--quiet",
               "--device", device.type]
        for s in sets:
            out += ["--set", s]
        return out

    timeout = max(clock.left() / 2 - 5, 10)
    one = subprocess.run([sys.executable, "-m", "gaitrec", *args("ddp-one")], cwd=run.scratch, env=env,
                         capture_output=True, text=True, timeout=timeout)
    if one.returncode != 0:
        raise RuntimeError(f"one-process run failed: {one.stderr.strip()[-600:]}")
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          str(free_port()), "-m", "gaitrec", *args("ddp-two")], cwd=run.scratch, env=env,
                         capture_output=True, text=True, timeout=max(clock.left() - 5, 10))
    if two.returncode != 0:
        raise RuntimeError(f"two-process run failed: {two.stderr.strip()[-600:]}")
    run_root = run.scratch / "runs" / "SynthGait" / "Baseline"
    states = [load_checkpoint(checkpoint_path(run_root / n, n, sizes.ddp_steps))["model"]
              for n in ("ddp-one", "ddp-two")]
    params = dict(create_model(quietly_load("Baseline")["model_cfg"]).named_parameters())
    worst_name, worst = "", 0.0
    for key in params:
        diff = relative_difference(states[1][key], states[0][key])
        if diff > worst:
            worst_name, worst = key, diff
    from gaitrec.engine.trainer import set_seed

    set_seed(quietly_load("Baseline")["trainer_cfg"]["seed"])  # the trainer's seed: the initial weights
    initial = create_model(quietly_load("Baseline")["model_cfg"]).state_dict()
    moved = max(relative_difference(states[0][k], initial[k]) for k in params)
    passed = run.report.check(f"two processes ({backend}) vs one: final weights", worst < DDP_TOLERANCE and moved > 0,
                              f"max relative difference {worst:.2e} ({worst_name}); training moved the weights "
                              f"by {moved:.2e}")
    return [f"Baseline (shipped config, triplet loss only), {sizes.ddp_steps} SGD steps on global batch "
            f"[{batch[0]}, {batch[1]}] x {sizes.train_frames} frames, fp32 with TF32 off "
            f"(`NVIDIA_TF32_OVERRIDE=0`): `python -m gaitrec train` against `python -m torch.distributed.run "
            f"--nproc_per_node 2 -m gaitrec train` ({backend}). Final weights: max over parameters of "
            f"max |two - one| / max |one| = {worst:.2e} ({worst_name}); tolerance {DDP_TOLERANCE:g}: "
            f"{'pass' if passed else '**fail**'}."]


# ------------------------------------------------------------------------------------------- 4. throughput

def time_forward(model, sils: torch.Tensor, device: torch.device, precision: str, repeats: int) -> float:
    """Best seconds per forward after warm-up calls (two; one in a dry run, where timings are no point)."""
    with torch.inference_mode(), autocast(device, precision):
        for _ in range(2 if repeats > 1 else 1):
            model(sils)
        sync(device)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            model(sils)
            sync(device)
            best = min(best, time.perf_counter() - start)
    return best


def measure(model, run: Run, name: str, batch: int, precision: str) -> tuple[float | None, float | None, str]:
    """(frames/s, peak MiB, note) of one cell; an out-of-memory batch is a result, not a failure."""
    frames = run.sizes.throughput_frames
    sils = run.model_input(name, batch, frames).to(run.device)
    reset_peak(run.device)
    try:
        seconds = time_forward(model, sils, run.device, precision, run.sizes.repeats)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None, None, "out of memory"
    return batch * frames / seconds, peak_mib(run.device), ""


def step_throughput(run: Run, clock: Clock) -> list[str]:
    sizes, device = run.sizes, run.device
    batches = sizes.throughput_batches
    precisions = ["fp32", "fp16"] if device.type == "cuda" else ["fp32", "bf16"]
    lines = [f"Eval mode, `torch.inference_mode`, random batches of {sizes.throughput_frames}-frame sequences "
             f"(SynthGait silhouettes), best of {sizes.repeats} after {2 if sizes.repeats > 1 else 1} warm-up "
             f"call(s); fp32 with PyTorch's defaults (cuDNN TF32 on), {precisions[1]} = autocast. Cells: frames/s "
             "(peak memory, MiB). OpenGait's recorded speeds are CPU figures (see \"Model speed on CPU\"); "
             "there is no GPU figure of OpenGait to compare with.", "",
             "| model | input | precision | " + " | ".join(f"batch {b}" for b in batches) + " |",
             "|---|---|---|" + "---:|" * len(batches)]
    results = {}
    variant_names = [n for n in VARIANT_MODELS if n in sizes.models]
    reserve = 0.4 * clock.budget if variant_names else 0.0  # the variants' share, kept from the main table
    for name in sizes.models:
        spec = SPECS[name]
        if clock.left() < 5 + reserve:
            lines.append(f"| {name} | {spec.height}x{spec.width} | - | skipped: step time budget spent |")
            continue
        model = build_model(name).to(device).eval()
        for precision in precisions:
            cells = []
            for batch in batches:
                fps, peak, note = measure(model, run, name, batch, precision)
                results[(name, precision, batch)] = fps
                cells.append(note or f"{fps:,.0f} ({fmt(peak, '.0f')})")
            lines.append(f"| {name} | {spec.height}x{spec.width} | {precision} | " + " | ".join(cells) + " |")
        del model

    variant_batch = batches[min(2, len(batches) - 1)]
    variant_lines = ["", "### channels_last and torch.compile", "",
                     f"Batch {variant_batch} x {sizes.throughput_frames} frames, frames/s; ratio against the plain "
                     "model of the table above. channels_last: the parameters of every convolution, as "
                     "`trainer_cfg.channels_last` does. torch.compile: default mode; the compile time is the first "
                     "call and is not in the figure.", "",
                     "| model | precision | variant | frames/s | vs plain | note |", "|---|---|---|---:|---:|---|"]
    for name in variant_names:
        for variant in ("channels_last", "torch.compile"):
            if variant == "torch.compile" and name not in sizes.compile_models:
                variant_lines.append(f"| {name} | - | {variant} | - | - | not run in this mode |")
                continue
            if clock.left() < (40 if variant == "torch.compile" and device.type == "cuda" else 5):
                variant_lines.append(f"| {name} | - | {variant} | - | - | skipped: step time budget spent |")
                continue
            model = build_model(name).eval()
            note = ""
            if variant == "channels_last":
                forward = place_model(model, device, channels_last=True)
            else:
                torch._dynamo.reset()
                forward = torch.compile(model.to(device))
                sils = run.model_input(name, variant_batch, sizes.throughput_frames).to(device)
                start = time.perf_counter()
                try:
                    with torch.inference_mode():
                        forward(sils)
                        with autocast(device, precisions[1]):
                            forward(sils)
                    sync(device)
                except Exception as err:  # a compiler that cannot build here is a result, not a broken check
                    variant_lines.append(f"| {name} | - | {variant} | - | - | failed: {traceback_summary(err, 2)} |")
                    continue
                note = f"compile + first calls {time.perf_counter() - start:.0f} s"
            for precision in precisions:
                fps, peak, oom = measure(forward, run, name, variant_batch, precision)
                plain = results.get((name, precision, variant_batch))
                ratio = f"{fps / plain:.2f}x" if fps and plain else "-"
                variant_lines.append(f"| {name} | {precision} | {variant} | {fmt(fps, ',.0f')} | {ratio} "
                                     f"| {oom or note or '-'} |")
            del model, forward
    return lines + variant_lines


# --------------------------------------------------------------------------------------- 5. CASIA-B-sized test

class InMemorySource:
    """CASIA-B's test layout (subjects x 10 types x views) over a pool of rendered sequences: sequence i
    shows pool[i % len(pool)], so 5,485 sequences cost the memory of the pool only."""

    def __init__(self, pool: list[np.ndarray], subjects: list[str], views: list[str], drop: int = 0, seed: int = 0):
        self.pool = pool
        keys = [(s, t, v) for s in subjects for t in TYPES for v in views]
        self.dropped = drop
        if drop:
            missing = set(np.random.default_rng(seed).choice(len(keys), drop, replace=False).tolist())
            keys = [key for i, key in enumerate(keys) if i not in missing]
        self.sequences = [SequenceInfo(s, t, v, f"memory:{i}") for i, (s, t, v) in enumerate(keys)]

    def load(self, index: int) -> np.ndarray:
        return self.pool[index % len(self.pool)]


def casia_b_test_set(run: Run, size: int) -> GaitDataset:
    sizes = run.sizes
    subjects = read_partition(resolve_partition(None, "CASIA-B"))["TEST_SET"]
    if sizes.casia_subjects is not None:
        subjects = subjects[:sizes.casia_subjects]
    full = len(subjects) * len(TYPES) * len(sizes.casia_views)
    drop = full - CASIA_B_TEST_SEQUENCES if full > CASIA_B_TEST_SEQUENCES else 0
    pool = run.silhouettes(size, sizes.casia_frames, count=44)
    return GaitDataset(InMemorySource(pool, subjects, sizes.casia_views, drop), name="CASIA-B-sized test set")


def step_casia_b(run: Run, clock: Clock) -> list[str]:
    device, sizes = run.device, run.sizes
    ctx = DistContext(0, 1, 0, device)
    workers = min(4, (os.cpu_count() or 1) // 2) if device.type == "cuda" else 0
    lines = []
    rows = ["| model | precision | sequences | frames | embed (s) | evaluate (s) | total (s) | OpenGait (s) "
            "| NM / BG / CL rank-1 (random weights) |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    described = False
    for name in sizes.models:
        if clock.left() < (20 if device.type == "cuda" else 5):  # one model's test set takes 10-30 s on a GPU
            rows.append(f"| {name} | - | - | - | - | - | - | {fmt(OPENGAIT_TEST_S.get(name), 'd')} "
                        "| skipped: step time budget spent |")
            continue
        cfg = quietly_load(name)
        dataset = casia_b_test_set(run, SPECS[name].height)
        frames = sum(len(dataset.frames(i)) for i in range(len(dataset)))
        if not described:
            lines = [f"{len(dataset):,} sequences ({len(set(dataset.info(i).subject for i in range(len(dataset))))} "
                     f"test subjects of CASIA-B's partition x 10 types x {len(sizes.casia_views)} views"
                     + (f", {dataset.source.dropped} dropped at random as CASIA-B's missing ones"
                        if dataset.source.dropped else "")
                     + f"), SynthGait silhouettes of up to {sizes.casia_frames} frames held in memory, through "
                     f"`extract_features` (the config's evaluator sampler, transform and `enable_float16`; "
                     f"{workers} loader workers) and the config's protocol (`evaluate_config`: casia-b, distances "
                     f"on {device.type}). Randomly initialised weights: the rank-1 figures are chance, the "
                     "times are the point. OpenGait: its published test times on two GTX 1080 Ti.", ""]
            described = True
        model = build_model(name)
        place_model(model, device, cfg["trainer_cfg"].get("channels_last", False))
        start = time.perf_counter()
        features = extract_features(model, dataset, cfg["evaluator_cfg"], ctx, num_workers=workers, progress=False)
        sync(device)
        embedded = time.perf_counter()
        result = evaluate_config(cfg, features, device)
        done = time.perf_counter()
        scores = result.figures
        precision = "fp16" if cfg["evaluator_cfg"].get("enable_float16") and device.type == "cuda" else "fp32"
        run.report.check(f"casia-b-sized test {name}", len(features["embeddings"]) == len(dataset)
                         and {"NM-rank1", "BG-rank1", "CL-rank1"} <= set(scores),
                         f"{len(dataset)} sequences embedded and evaluated in {done - start:.1f} s")
        rows.append(f"| {name} | {precision} | {len(dataset):,} | {frames:,} | {embedded - start:.1f} "
                    f"| {done - embedded:.1f} | {done - start:.1f} | {fmt(OPENGAIT_TEST_S.get(name), 'd')} "
                    f"| {scores['NM-rank1']:.1f} / {scores['BG-rank1']:.1f} / {scores['CL-rank1']:.1f} |")
        del model, features
    return lines + rows


# ------------------------------------------------------------------------------------------------------ main

STEPS = [("correctness", "1. CUDA forward equals CPU forward (fp32)", step_correctness),
         ("training", "2. Training with mixed precision", step_training),
         ("ddp", "3. Two processes against one", step_ddp),
         ("throughput", "4. Inference throughput", step_throughput),
         ("casia-b", "5. CASIA-B-sized test", step_casia_b)]


def environment(device: torch.device) -> str:
    parts = []
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        parts.append(f"{props.name} (compute capability {props.major}.{props.minor}, "
                     f"{props.total_memory / 2**30:.1f} GiB), {torch.cuda.device_count()} GPU(s) visible")
        parts.append(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    else:
        parts.append(f"CPU only ({platform.processor() or platform.machine()})")
        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    parts.append(f"Python {platform.python_version()}, {os.cpu_count()} CPUs")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    parts.append(datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") + (f", commit {commit}" if commit else ""))
    return "; ".join(parts)


def render(report: Report, command: str, env: str, mode: str, elapsed: float) -> str:
    failed = [(n, d) for n, p, d in report.checks if not p]
    lines = [f"`{command}`: {elapsed / 60:.1f} min, mode {mode}. {env}.", "",
             f"**Checks: {len(report.checks) - len(failed)} passed, {len(failed)} failed; "
             f"{len(report.failures)} step(s) failed** (exit status {0 if report.ok else 1})."]
    if mode in ("dry", "smoke"):
        lines += ["", "A dry run on the CPU: the reference and the device are the same CPU, sizes are tiny; it shows "
                  "that the code paths run, not how the GPU behaves."]
    for key, title, _ in STEPS:
        lines += ["", f"### {title}", ""]
        if key in report.failures:
            lines.append(f"**Step failed**: {report.failures[key]}")
        lines += report.sections.get(key, ["not run"] if key not in report.failures else [])
    if failed:
        lines += ["", "### Failed checks", ""] + [f"- {n}: {d}" for n, d in failed]
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="example: bash benchmarks/gpu_check.sh --quick --json /tmp/gpu_check.json")
    parser.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda; cpu means a dry run)")
    parser.add_argument("--quick", action="store_true", help="under 5 minutes on an H100 (default: full, under 9)")
    parser.add_argument("--dry-run", action="store_true", help="every step on the CPU at tiny sizes")
    parser.add_argument("--smoke", action="store_true", help="the dry run's fastest subset: Baseline only, no torchrun")
    parser.add_argument("--models", default=None, help=f"comma-separated, from {', '.join(SPECS)} "
                        "(default: all of them, the seed models first)")
    parser.add_argument("--steps", default=None, help=f"comma-separated, from {', '.join(k for k, _, _ in STEPS)} "
                        "(default: all)")
    parser.add_argument("--write", type=Path, nargs="?", const=RESULTS, default=None,
                        help=f"write the section into this RESULTS.md (default on CUDA: {RESULTS.relative_to(ROOT)}; "
                        "a dry run writes nothing unless given)")
    parser.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--json", type=Path, default=None, help="also write the checks and numbers as JSON here")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every step's time budget")
    args = parser.parse_args(argv)
    if args.dry_run or args.smoke:
        if args.device not in (None, "cpu"):
            parser.error("--dry-run and --smoke run on the CPU; leave out --device")
        args.device = "cpu"
    args.device = args.device or "cuda"
    if args.models:
        args.models = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in args.models if m not in SPECS]
        if unknown:
            parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(SPECS)}")
    known_steps = [k for k, _, _ in STEPS]
    args.steps = [s.strip() for s in args.steps.split(",")] if args.steps else known_steps
    if set(args.steps) - set(known_steps):
        parser.error(f"unknown step(s) {', '.join(sorted(set(args.steps) - set(known_steps)))}; "
                     f"known: {', '.join(known_steps)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: CUDA is not available to torch {torch.__version__} (built for CUDA "
              f"{torch.version.cuda}); run with --dry-run to check the code on the CPU", file=sys.stderr)
        return 3
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", 0)
    mode = "smoke" if args.smoke else "dry" if device.type == "cpu" else "quick" if args.quick else "full"
    sizes = sizes_for(mode)
    if args.models:
        sizes.models = args.models
    if device.type == "cpu":
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    write = None if args.no_write else args.write or (RESULTS if device.type == "cuda" else None)
    command = "bash benchmarks/gpu_check.sh " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                                    else sys.argv[1:]))
    start = time.perf_counter()
    env = environment(device)
    print(f"gpu_check ({mode}): {env}", flush=True)
    report = Report()

    def publish():
        body = render(report, command.strip(), env, mode, time.perf_counter() - start)
        if write:
            write_section(TITLE, body, write)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"mode": mode, "environment": env, "ok": report.ok,
                                             "checks": report.checks, "failures": report.failures,
                                             "data": report.data}, indent=1, default=str))
        return body

    # An overrun in one step comes out of the later ones: the whole run keeps to the sum of the shares.
    total_budget = sum(sizes.budgets[key] for key in args.steps) * args.budget_scale
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as scratch:
        run = Run(device, sizes, Path(scratch), report)
        for key, title, fn in STEPS:
            if key not in args.steps:
                report.sections[key] = ["not asked for (--steps)"]
                continue
            budget = min(sizes.budgets[key] * args.budget_scale, total_budget - (time.perf_counter() - start))
            if budget < 5:
                report.sections[key] = ["skipped: the run's time budget was spent by the steps before"]
                continue
            print(f"[{time.perf_counter() - start:6.1f} s] {title} (budget {budget:.0f} s)", flush=True)
            clock = Clock(budget)
            try:
                with hard_limit(budget * 1.5 + 30):
                    report.sections[key] = fn(run, clock)
            except (Exception, StepTimeout) as err:  # recorded; the next step still runs
                report.failures[key] = traceback_summary(err)
                print(f"  step failed: {report.failures[key]}", flush=True)
                traceback.print_exc()
            finally:
                if "torch._dynamo" in sys.modules:  # importing it costs seconds; only a compile needs a reset
                    torch._dynamo.reset()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            publish()  # after every step: a run cut short still leaves what it measured
    body = publish()
    print(f"\n## {TITLE}\n\n{body}")
    if write:
        print(f"wrote its section of {write}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
