"""Model zoo speed on CPU: inference frames/s, packed batches, training step time, channels_last and torch.compile.

    python benchmarks/bench_models.py [--quick] [--models Baseline,GaitSet,...] [--write benchmarks/RESULTS.md]

Everything runs fp32 on the CPU with ``torch.set_num_threads(2)`` on random silhouettes (speed does not depend on
the pixels). Times are the best of the repetitions after one warm-up call, so that other work on a shared
machine inflates them as little as possible.

1. Inference: eval mode, one 60-frame sequence per forward (64x44; GLN 128x88), against OpenGait's figures
   measured on the same machine. Packed: 8 sequences of different lengths in one forward with ``seq_lengths``
   against the same 8 sequences one forward each; the embeddings of both must agree.
2. Training step: batch 4 subjects x 4 sequences x 30 frames, forward, the config's losses, backward, SGD step.
3. ``channels_last`` and ``torch.compile`` (the trainer's two switches) against the plain model of the same run.

A model much slower than OpenGait's figure is profiled over one forward: the share of the model's direct
submodule and of the aten operator that take the most time.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from results_md import write_section  # noqa: E402
from gaitrec.device import place_model  # noqa: E402
from gaitrec.config import load_config, loss_entries  # noqa: E402
from gaitrec.losses import build_losses, total_loss  # noqa: E402
from gaitrec.models import create_model  # noqa: E402

THREADS = 2
SEQUENCE_FRAMES = 60
PACKED_LENGTHS = [18, 22, 26, 30, 34, 38, 42, 46]  # 8 sequences, 256 frames
TRAIN_BATCH = (4, 4, 30)  # subjects x sequences per subject x frames
PROFILE_BELOW = 0.5  # profile a model whose frames/s is under this fraction of OpenGait's

TITLE = "Model speed on CPU (bench_models.py)"


@dataclass
class Spec:
    config: str  # under gaitrec/configs/
    height: int = 64
    width: int = 44
    reference_frames_per_s: float | None = None  # OpenGait, this machine, fp32, 2 threads
    reference_train_step_s: float | None = None  # OpenGait, batch 4x4x30


SPECS = {
    "Baseline": Spec("baseline/baseline.yaml", reference_frames_per_s=148, reference_train_step_s=10.4),
    "GaitSet": Spec("gaitset/gaitset.yaml", reference_frames_per_s=521, reference_train_step_s=3.8),
    "GaitPart": Spec("gaitpart/gaitpart.yaml", reference_frames_per_s=440),
    "GLN": Spec("gln/gln_phase2.yaml", 128, 88, reference_frames_per_s=64),
    "GaitGL": Spec("gaitgl/gaitgl.yaml", reference_frames_per_s=139, reference_train_step_s=8.0),
    "GaitBase": Spec("gaitbase/gaitbase_da_casiab.yaml"),
    "DeepGaitV2": Spec("deepgaitv2/DeepGaitV2_casiab.yaml"),
}
DEFAULT_MODELS = ["Baseline", "GaitSet", "GaitPart", "GLN", "GaitGL"]
TRAIN_MODELS = ["Baseline", "GaitSet", "GaitGL"]
VARIANT_MODELS = ["Baseline", "GaitSet", "GaitGL"]


def load(name: str) -> tuple[dict, Spec]:
    import warnings
    spec = SPECS[name]
    with warnings.catch_warnings():  # OpenGait keys gaitrec ignores (GLN's enable_distributed ...)
        warnings.simplefilter("ignore")
        cfg = load_config(ROOT / "gaitrec" / "configs" / spec.config)
    return cfg, spec


def build(cfg: dict, channels_last: bool = False) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(cfg["model_cfg"])
    if channels_last:
        place_model(model, torch.device("cpu"), channels_last=True)  # as the trainer does: parameters only
    return model


def best_time(fn, repeats: int, warmup: bool = True) -> float:
    """Best wall time of ``repeats`` calls, after one warm-up call unless told otherwise."""
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


# ---------------------------------------------------------------------------------------------- inference

def inference_frames_per_s(model: nn.Module, spec: Spec, repeats: int) -> float:
    model.eval()
    sils = torch.rand(1, SEQUENCE_FRAMES, spec.height, spec.width)
    with torch.inference_mode():
        return SEQUENCE_FRAMES / best_time(lambda: model(sils), repeats)


def packed_vs_single(model: nn.Module, spec: Spec, repeats: int, warmup: bool) -> tuple[float, float, float]:
    """(packed frames/s, one-at-a-time frames/s, max |embedding difference|) on the same 8 sequences."""
    model.eval()
    total = sum(PACKED_LENGTHS)
    sils = torch.rand(1, total, spec.height, spec.width)
    starts = [sum(PACKED_LENGTHS[:i]) for i in range(len(PACKED_LENGTHS))]

    def packed():
        return model(sils, seq_lengths=PACKED_LENGTHS)["embeddings"]

    def single():
        return torch.cat([model(sils[:, a:a + n])["embeddings"] for a, n in zip(starts, PACKED_LENGTHS)])

    with torch.inference_mode():
        packed_s = best_time(packed, repeats, warmup)
        single_s = best_time(single, repeats, warmup)
        difference = float((packed() - single()).abs().max())
    return total / packed_s, total / single_s, difference


def profile_forward(model: nn.Module, spec: Spec) -> str:
    """The two direct submodules and the aten operator taking the largest shares of one eval forward."""
    model.eval()
    sils = torch.rand(1, SEQUENCE_FRAMES, spec.height, spec.width)
    module_time: dict[str, float] = {}
    started: dict[str, float] = {}
    handles = []
    for name, child in model.named_children():
        def before(_module, _inputs, name=name):
            started[name] = time.perf_counter()

        def after(_module, _inputs, _output, name=name):
            module_time[name] = module_time.get(name, 0.0) + time.perf_counter() - started[name]
        handles += [child.register_forward_pre_hook(before), child.register_forward_hook(after)]
    with torch.inference_mode():
        model(sils)  # warm-up
        module_time.clear()
        start = time.perf_counter()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            model(sils)
        wall = time.perf_counter() - start
    for handle in handles:
        handle.remove()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    op_total = sum(e.self_cpu_time_total for e in events)
    modules = sorted(module_time, key=module_time.get, reverse=True)[:2]
    shares = [f"{m} ({type(getattr(model, m)).__name__}) {module_time[m] / wall:.0%}" for m in modules]
    return f"{', '.join(shares)}; {events[0].key} {events[0].self_cpu_time_total / op_total:.0%}"


# ------------------------------------------------------------------------------------------------- training

def train_step_s(model: nn.Module, cfg: dict, spec: Spec, repeats: int, forward=None) -> float:
    """Best time of one step: forward on 4x4x30 frames, the config's losses, backward, SGD."""
    subjects, per_subject, frames = TRAIN_BATCH
    model.train()
    forward = model if forward is None else forward  # a compiled module has no truth value
    losses = build_losses(loss_entries(cfg))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    sils = torch.rand(subjects * per_subject, frames, spec.height, spec.width)
    labels = torch.arange(subjects).repeat_interleave(per_subject)

    def step():
        optimizer.zero_grad(set_to_none=True)
        outputs = forward(sils, None)
        loss, _ = total_loss(losses, outputs["training"], labels)
        loss.backward()
        optimizer.step()

    return best_time(step, repeats)


# ------------------------------------------------------------------------------------- compile, channels_last

def compiled_inference(model: nn.Module, spec: Spec, repeats: int) -> tuple[float, float]:
    """(seconds to compile and run the first forward, frames/s afterwards)."""
    model.eval()
    compiled = torch.compile(model)
    sils = torch.rand(1, SEQUENCE_FRAMES, spec.height, spec.width)
    with torch.inference_mode():
        start = time.perf_counter()
        compiled(sils)
        compile_s = time.perf_counter() - start
        return compile_s, SEQUENCE_FRAMES / best_time(lambda: compiled(sils), repeats)


def compiled_training(model: nn.Module, cfg: dict, spec: Spec, repeats: int) -> tuple[float, float]:
    """(seconds to compile and run the first step, step time afterwards)."""
    compiled = torch.compile(model)
    start = time.perf_counter()
    train_step_s(model, cfg, spec, 0, forward=compiled)  # warm-up only: compiles forward and backward
    compile_s = time.perf_counter() - start
    return compile_s, train_step_s(model, cfg, spec, repeats, forward=compiled)


def first_line(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"[:160]


# ---------------------------------------------------------------------------------------------------- report

def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        names = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = names[0].strip() if names else cpu
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads, CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()})")


def ratio(value: float | None, reference: float | None) -> str:
    return f"{value / reference:.2f}x" if value and reference else "-"


def number(value: float | None, fmt: str) -> str:
    return format(value, fmt) if value is not None else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help=f"comma-separated, from {', '.join(SPECS)} (default: {','.join(DEFAULT_MODELS)})")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, no torch.compile")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--compile-budget", type=float, default=180.0,
                        help="seconds of torch.compile work after which further compiles are skipped")
    parser.add_argument("--write", type=Path, default=None, help="replace this script's section of a RESULTS.md")
    args = parser.parse_args()

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in SPECS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(SPECS)}")
    torch.set_num_threads(THREADS)
    repeats = 1 if args.quick else 3
    train_repeats = 1 if args.quick else 2
    load_start = os.getloadavg()[0]
    peak_load = load_start
    run_start = time.perf_counter()

    def note_load():
        nonlocal peak_load
        peak_load = max(peak_load, os.getloadavg()[0])

    def say(message: str):
        print(f"[{time.perf_counter() - run_start:6.1f} s] {message}", flush=True)

    say(machine())
    say(f"load average (1 min) before the run: {load_start:.2f}")

    inference, training = {}, {}
    for name in names:
        cfg, spec = load(name)
        model = build(cfg)
        fps = inference_frames_per_s(model, spec, repeats)
        packed, single, difference = packed_vs_single(model, spec, 1 if args.quick else 2, not args.quick)
        hotspot = ""
        if spec.reference_frames_per_s and fps < PROFILE_BELOW * spec.reference_frames_per_s:
            hotspot = profile_forward(model, spec)
        inference[name] = (spec, fps, packed, single, difference, hotspot)
        say(f"{name}: {fps:.1f} frames/s, packed {packed:.1f} vs one at a time {single:.1f}"
            + (f"; slowest: {hotspot}" if hotspot else ""))
        note_load()
        if name in TRAIN_MODELS:
            training[name] = (spec, train_step_s(model, cfg, spec, train_repeats))
            say(f"{name}: training step {training[name][1]:.2f} s")
            note_load()

    variants = []  # (model, variant, frames/s, plain frames/s, step s, plain step s, note)
    variant_names = [n for n in VARIANT_MODELS if n in names]
    for name in variant_names:
        cfg, spec = load(name)
        model = build(cfg, channels_last=True)
        fps = inference_frames_per_s(model, spec, repeats)
        step = train_step_s(model, cfg, spec, train_repeats) if name in training else None
        variants.append([name, "channels_last", fps, inference[name][1], step, training.get(name, (0, None))[1], []])
        say(f"{name} channels_last: {fps:.1f} frames/s, step {number(step, '.2f')} s")
        note_load()

    if not (args.quick or args.no_compile):
        # A fresh inductor cache, so that the compile times are those of a first run.
        cache = tempfile.mkdtemp(prefix="bench_models_inductor_")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        compiled = {n: [n, "torch.compile", None, inference[n][1], None, training.get(n, (0, None))[1], []]
                    for n in variant_names}
        compile_spent = 0.0
        # Inference of every model first: it is the cheaper compile, and the budget may stop training.
        for part in ("inference", "training"):
            for name in variant_names:
                row = compiled[name]
                if part == "training" and name not in training:
                    continue
                if compile_spent > args.compile_budget:
                    row[6].append(f"{part} not compiled: {args.compile_budget:.0f} s compile budget spent")
                    continue
                cfg, spec = load(name)
                torch._dynamo.reset()
                try:
                    if part == "inference":
                        compile_s, row[2] = compiled_inference(build(cfg), spec, repeats)
                    else:
                        compile_s, row[4] = compiled_training(build(cfg), cfg, spec, train_repeats)
                    row[6].append(f"{part}: compile + first call {compile_s:.0f} s")
                    compile_spent += compile_s
                except Exception as err:  # a failing compile is a result here: it goes in the table
                    row[6].append(f"{part} failed: {first_line(err)}")
                say(f"{name} torch.compile {part}: {'; '.join(row[6])}")
                note_load()
        variants += compiled.values()
        shutil.rmtree(cache, ignore_errors=True)

    elapsed = time.perf_counter() - run_start
    note_load()
    body = report(args, names, inference, training, variants, load_start, peak_load, elapsed)
    print(f"\n## {TITLE}\n\n" + body)
    if args.write:
        write_section(TITLE, body, args.write)
        say(f"wrote its section of {args.write}")


def report(args, names, inference, training, variants, load_start, peak_load, elapsed) -> str:
    command = "python benchmarks/bench_models.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    cpus = os.cpu_count() or 1
    busy = load_start > 0.5 or peak_load > THREADS + 0.5
    lines = [
        f"`{command.strip()}`: {elapsed / 60:.1f} min. {machine()}. fp32, random silhouettes, best of "
        f"{1 if args.quick else 3} inference and {1 if args.quick else 2} training repetitions after a warm-up"
        + (" (packed: one repetition, no warm-up)." if args.quick else " (packed: 2)."),
        "",
        f"Load average (1 min): {load_start:.2f} before the run, {peak_load:.2f} at most during it, on {cpus} CPUs "
        f"(this run itself accounts for up to {THREADS}). "
        + ("**Taken under load**: other processes shared the CPUs, so absolute figures are pessimistic and "
           "ratios within the run are the more reliable numbers." if busy else "The machine was otherwise quiet."),
        "",
        "### Inference, eval mode",
        "",
        f"One {SEQUENCE_FRAMES}-frame sequence per forward. Packed: {len(PACKED_LENGTHS)} sequences of "
        f"{min(PACKED_LENGTHS)}-{max(PACKED_LENGTHS)} frames ({sum(PACKED_LENGTHS)} in all) in one forward with "
        "`seq_lengths`, against the same sequences one forward each; max diff compares their embeddings. "
        f"Slowest: for a model under {PROFILE_BELOW:.0%} of OpenGait's figure, the direct submodule and the "
        "aten operator with the largest share of one forward.",
        "",
        "| model | input | frames/s | OpenGait frames/s | ours / OpenGait | packed frames/s | one-at-a-time frames/s "
        "| packed / one-at-a-time | max diff | slowest |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in names:
        spec, fps, packed, single, difference, hotspot = inference[name]
        lines.append(f"| {name} | {spec.height}x{spec.width} | {fps:.1f} | {number(spec.reference_frames_per_s, '.0f')} "
                     f"| {ratio(fps, spec.reference_frames_per_s)} | {packed:.1f} | {single:.1f} "
                     f"| {packed / single:.2f}x | {difference:.1e} | {hotspot or '-'} |")
    if training:
        subjects, per_subject, frames = TRAIN_BATCH
        lines += [
            "",
            "### Training step",
            "",
            f"Batch {subjects} subjects x {per_subject} sequences x {frames} frames: forward in train mode, the "
            "config's losses (`build_losses`, `total_loss`), backward, SGD (momentum 0.9) step. "
            "Speed ratio: OpenGait's time / ours (above 1 is faster).",
            "",
            "| model | step (s) | OpenGait step (s) | speed vs OpenGait |",
            "|---|---:|---:|---:|",
        ]
        for name, (spec, step) in training.items():
            reference = spec.reference_train_step_s
            lines.append(f"| {name} | {step:.2f} | {number(reference, '.1f')} "
                         f"| {ratio(reference, step) if reference else '-'} |")
    if variants:
        lines += [
            "",
            "### channels_last and torch.compile",
            "",
            "Against the plain model measured above in the same process; ratios above 1 are faster. torch.compile: "
            "default mode (inductor); compile time is the first call, not counted in the figures."
            + (" Not compiled with `--quick` or `--no-compile`." if args.quick or args.no_compile else ""),
            "",
            "| model | variant | frames/s | vs plain | step (s) | vs plain | note |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for name, variant, fps, plain_fps, step, plain_step, note in variants:
            lines.append(f"| {name} | {variant} | {number(fps, '.1f')} | {ratio(fps, plain_fps)} "
                         f"| {number(step, '.2f')} | {ratio(plain_step, step) if step else '-'} "
                         f"| {'; '.join(note) or '-'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
