"""Two training processes on the CPU (``torchrun``, gloo) against one, on the same global batch, and the share
of a training step spent waiting for data.

    python benchmarks/bench_ddp.py [--iterations 40] [--rounds 2] [--skip 5] [--data-iterations 8]

Every setting trains the demo config (``gaitrec/configs/demo/baseline_synthgait.yaml``: batch 8 subjects x 4
sequences x 20 frames of 32x22) on a SynthGait set generated into a temporary folder, through the real command
line (``gaitrec train``, or ``torchrun --nproc_per_node 2 -m gaitrec train``); the figures are medians of the
trainer's own ``time/iteration`` and ``time/data`` (``metrics.jsonl``, rank 0) after ``--skip`` warm-up
iterations:

- one process, 2 threads; one process, 1 thread (the same global batch);
- ``torchrun --nproc_per_node 2``, 1 thread each (each rank takes half the global batch, as the sampler does),
  with per-process batch norm (``sync_BN: false``, the demo's setting) and with ``sync_BN: true``;
- one process, 1 thread, half the batch (8 x 2): what one rank computes, without the distribution;
- two such runs at once, side by side: what the machine gives two processes, without any communication.

It also times gloo's all-reduce of a gradient the size of the model's (demo and baseline models) between two
processes, and data loading against the step for the baseline config (``configs/baseline/baseline.yaml``,
its default ``num_workers`` and 0, on 64x44 SynthGait, batch reduced with ``--data-batch``).

Run it on an otherwise quiet machine: it reports the load average before and after each measurement.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEMO = ROOT / "gaitrec" / "configs" / "demo" / "baseline_synthgait.yaml"
BASELINE = ROOT / "gaitrec" / "configs" / "baseline" / "baseline.yaml"


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def _env(threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(PYTHONPATH=str(ROOT), GAITREC_THREADS=str(threads))
    return env


def _torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
            str(29500 + os.getpid() % 2000)]


def train_run(work: Path, name: str, config: Path, data: Path, iterations: int, threads: int, nproc: int = 1,
              extra: tuple[str, ...] = ()) -> list[dict]:
    """Train ``iterations`` through the command line; the rows of the run's ``metrics.jsonl``."""
    overrides = [f"data_cfg.dataset_root={data}", f"data_cfg.dataset_partition={data / 'partition.json'}",
                 f"trainer_cfg.output_root={work / 'runs'}", f"trainer_cfg.save_name={name}",
                 f"trainer_cfg.total_iter={iterations}", f"trainer_cfg.save_iter={iterations}",
                 "trainer_cfg.log_iter=1", *extra]
    launcher = _torchrun(nproc) if nproc > 1 else [sys.executable]
    cmd = [*launcher, "-m", "gaitrec", "train", str(config), "--no-test", "--quiet"]
    for item in overrides:
        cmd += ["--set", item]
    proc = subprocess.run(cmd, cwd=work, env=_env(threads), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    (metrics,) = (work / "runs").glob(f"*/*/{name}/metrics.jsonl")
    return [json.loads(line) for line in metrics.read_text().splitlines()]


def final_weights(work: Path, name: str, iterations: int) -> dict:
    """The model weights of a run's last checkpoint."""
    import torch

    (path,) = (work / "runs").glob(f"*/*/{name}/checkpoints/{name}-{iterations:05d}.pt")
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def weight_difference(a: dict, b: dict, prefix: str = "") -> float:
    """The largest difference between two sets of weights (those named ``prefix...``), relative to each
    tensor's largest magnitude."""
    return max(float((a[k].float() - b[k].float()).abs().max() / a[k].float().abs().max().clamp(min=1e-12))
               for k in a if k.startswith(prefix))


def medians(rows: list[dict], skip: int) -> dict:
    kept = rows[skip:]
    step = statistics.median(r["time/iteration"] for r in kept)
    data = statistics.median(r["time/data"] for r in kept)
    return {"step": step, "data": data, "share": data / step, "n": len(kept)}


def allreduce_worker(repeats: int) -> None:
    """Under torchrun: time gloo's all-reduce of a flat gradient the size of each model's, rank 0 prints JSON."""
    import torch
    import torch.distributed as dist

    from gaitrec.config import load_config
    from gaitrec.models import create_model

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    figures = {}
    # "bn-stats": what a synchronised batch norm sends, twice forward and twice backward (the BNNeck's 15 x 128
    # channels and a count).
    sizes = [("bn-stats", 15 * 128 + 1)]
    for label, config in (("demo", DEMO), ("baseline", BASELINE)):
        model = create_model(load_config(config)["model_cfg"])
        sizes.append((label, sum(p.numel() for p in model.parameters() if p.requires_grad)))
    for label, numel in sizes:
        grad = torch.randn(numel)
        times = []
        for i in range(repeats + 3):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(grad)
            if i >= 3:
                times.append(time.perf_counter() - start)
        figures[label] = {"parameters": numel, "megabytes": numel * 4 / 2**20,
                          "seconds": statistics.median(times)}
    if dist.get_rank() == 0:
        print(json.dumps(figures))
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=40, help="iterations per demo setting (default 40)")
    parser.add_argument("--rounds", type=int, default=2, help="times each setting runs, in turn (default 2)")
    parser.add_argument("--skip", type=int, default=5, help="warm-up iterations left out of the medians (default 5)")
    parser.add_argument("--data-iterations", type=int, default=8,
                        help="iterations of the baseline config for the data-loading share, the first half left out "
                             "(default 8)")
    parser.add_argument("--data-batch", default="[2, 4]",
                        help="baseline config's batch for the data-loading share (default [2, 4])")
    parser.add_argument("--data-threads", type=int, default=2,
                        help="threads of the baseline config's runs (default 2)")
    parser.add_argument("--allreduce-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.allreduce_worker:
        allreduce_worker(repeats=20)
        return

    from gaitrec.synth import generate_dataset

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        demo_data, baseline_data = work / "synth32", work / "synth64"
        generate_dataset(demo_data, subjects=20, frames=30, size=32, seed=0, progress=False)
        generate_dataset(baseline_data, subjects=20, frames=40, size=64, seed=0, progress=False)
        print(f"cores {os.cpu_count()}, affinity {len(os.sched_getaffinity(0))}")

        settings = [
            ("one process, 2 threads", dict(threads=2)),
            ("one process, 1 thread", dict(threads=1)),
            ("torchrun x2, 1 thread each", dict(threads=1, nproc=2)),
            ("torchrun x2, 1 thread each, sync_BN", dict(threads=1, nproc=2, extra=("trainer_cfg.sync_BN=true",))),
            ("one process, 1 thread, half batch", dict(threads=1, extra=("trainer_cfg.sampler.batch_size=[8, 2]",))),
        ]
        # The settings take turns, round after round, so that a change in the machine's load falls on all.
        rows, kept = {}, {label: [] for label, _ in settings}
        for round_ in range(args.rounds):
            for i, (label, kw) in enumerate(settings):
                before = load()
                trained = train_run(work, f"r{round_}s{i}", DEMO, demo_data, args.iterations, **kw)
                rows.setdefault(label, trained)
                kept[label] += trained[args.skip:]
                got = medians(trained, args.skip)
                print(f"round {round_ + 1} {label:>38}: step {got['step']:.3f} s, data {got['data'] * 1000:.1f} ms; "
                      f"load {before} -> {load()}", flush=True)
        results = {label: medians(kept[label], 0) for label in kept}
        for label, got in results.items():
            print(f"{label:>38}: step {got['step']:.3f} s, data {got['data'] * 1000:.1f} ms ({got['share']:.2%}), "
                  f"median of {got['n']} iterations")

        # What the machine gives two processes at once, without any communication: two independent runs of
        # half the batch side by side. Against the half batch alone, this is the slow-down torchrun cannot avoid.
        half = settings[-1][1]["extra"]
        before = load()
        with ThreadPoolExecutor(2) as pool:
            pair = [pool.submit(train_run, work, f"pair{i}", DEMO, demo_data, args.iterations, threads=1, extra=half)
                    for i in range(2)]
            pair = [medians(run.result(), args.skip)["step"] for run in pair]
        print(f"two one-process runs at once, half the batch and 1 thread each, no communication: step "
              f"{pair[0]:.3f} s and {pair[1]:.3f} s; load {before} -> {load()}", flush=True)

        two = results["torchrun x2, 1 thread each"]["step"]
        print(f"speed-up of torchrun x2 over one process with 2 threads: "
              f"{results['one process, 2 threads']['step'] / two:.2f}x, with 1 thread: "
              f"{results['one process, 1 thread']['step'] / two:.2f}x")
        two_sync = results["torchrun x2, 1 thread each, sync_BN"]["step"]
        print(f"with sync_BN: {results['one process, 2 threads']['step'] / two_sync:.2f}x and "
              f"{results['one process, 1 thread']['step'] / two_sync:.2f}x")

        # The same global batch: the triplet term (computed on the gathered batch, before any batch norm) and
        # the whole loss agree with one process's where the batch norms see the same statistics.
        # (The logged softmax terms are rank 0's half of the batch, so they are not compared.)
        one = rows["one process, 1 thread"]
        one_weights = final_weights(work, "r0s1", args.iterations)
        for i, label in ((2, "torchrun x2, 1 thread each"), (3, "torchrun x2, 1 thread each, sync_BN")):
            diffs = [abs(a["triplet/loss"] - b["triplet/loss"]) / max(abs(a["triplet/loss"]), 1e-12)
                     for a, b in zip(one, rows[label])]
            weights = weight_difference(one_weights, final_weights(work, f"r0s{i}", args.iterations))
            print(f"{label} vs one process: triplet loss relative difference at iteration 1 {diffs[0]:.1e}, "
                  f"largest over {len(diffs)} iterations {max(diffs):.1e}; final weights differ by up to "
                  f"{weights:.1e} of a tensor's largest value")

        # Adam's first steps are about lr x sign(gradient): a gradient component at rounding level moves its
        # weight by a whole step either way. Plain SGD shows how close the two computations themselves are.
        sgd = ("optimizer_cfg.solver=SGD", "optimizer_cfg.lr=0.05")
        steps = 5
        train_run(work, "sgd-one", DEMO, demo_data, steps, threads=1, extra=sgd)
        sgd_one = final_weights(work, "sgd-one", steps)
        for label, extra in (("per-process batch norm", ()), ("sync_BN", ("trainer_cfg.sync_BN=true",))):
            name = f"sgd-two-{len(extra)}"
            train_run(work, name, DEMO, demo_data, steps, threads=1, nproc=2, extra=sgd + extra)
            two = final_weights(work, name, steps)
            print(f"SGD (lr 0.05), {steps} steps, torchrun x2 with {label} vs one process: weights differ by up to "
                  f"{weight_difference(sgd_one, two, 'Backbone'):.1e} (convolutions), "
                  f"{weight_difference(sgd_one, two, 'FCs'):.1e} (FCs), "
                  f"{weight_difference(sgd_one, two, 'BNNecks'):.1e} (BNNecks, running statistics included) "
                  "of a tensor's largest value", flush=True)

        before = load()
        proc = subprocess.run([*_torchrun(2), str(Path(__file__).resolve()), "--allreduce-worker"], cwd=work,
                              env=_env(1), capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"all-reduce timing failed:\n{proc.stderr[-3000:]}")
        for label, fig in json.loads(proc.stdout.strip().splitlines()[-1]).items():
            print(f"gloo all-reduce, 2 processes, {label} ({fig['parameters']} floats, "
                  f"{fig['megabytes']:.1f} MiB): {fig['seconds'] * 1000:.2f} ms (median of 20); "
                  f"load {before} -> {load()}")

        # The baseline config's default num_workers (a worker process prepares the next batch during the
        # step: the step waits only for what is not ready), and num_workers 0 (the loading itself, in the step).
        for workers in (None, 0):
            before = load()
            extra = [f"trainer_cfg.sampler.batch_size={args.data_batch}"]
            if workers is not None:
                extra.append(f"data_cfg.num_workers={workers}")
            base_rows = train_run(work, f"baseline{workers}", BASELINE, baseline_data, args.data_iterations,
                                  threads=args.data_threads, extra=tuple(extra))
            base = medians(base_rows, args.data_iterations // 2)
            print(f"baseline config, num_workers {'default' if workers is None else workers}, batch "
                  f"{args.data_batch} x 30 frames of 64x44, {args.data_threads} thread(s): step {base['step']:.3f} s, "
                  f"data {base['data'] * 1000:.1f} ms ({base['share']:.2%}), median of {base['n']} iterations; "
                  f"load {before} -> {load()}", flush=True)


if __name__ == "__main__":
    main()
