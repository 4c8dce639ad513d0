"""Training-iteration time of the demo's model with torch's default thread count against the count that
``gaitrec.threads.choose_threads`` picks, while other processes keep cores busy.

    python benchmarks/bench_threads.py [--busy 2] [--iterations 20]

``--busy N`` starts N processes that spin on a core for the length of the measurement (the situation of a
shared machine); each setting runs one warm-up iteration, then the mean of ``--iterations`` is reported.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from gaitrec.config import load_config, loss_entries  # noqa: E402
from gaitrec.demo import DEMO_CONFIG  # noqa: E402
from gaitrec.device import place_model  # noqa: E402
from gaitrec.losses import build_losses, total_loss  # noqa: E402
from gaitrec.models import create_model  # noqa: E402
from gaitrec.threads import choose_threads, usable_cores  # noqa: E402


def iteration_seconds(threads: int, iterations: int) -> float:
    """Mean seconds of a demo training iteration (8 x 4 sequences of 20 frames at 32x32) on ``threads``."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = load_config(DEMO_CONFIG)
    model = place_model(create_model(cfg["model_cfg"]), torch.device("cpu"), channels_last=True).train()
    losses = build_losses(loss_entries(cfg))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sils = torch.rand(32, 20, 32, 22)
    labels = torch.arange(8).repeat_interleave(4)
    times = []
    for i in range(iterations + 1):
        start = time.perf_counter()
        loss, _ = total_loss(losses, model(sils)["training"], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i:  # the first iteration warms up allocators and kernels
            times.append(time.perf_counter() - start)
    return sum(times) / len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy", type=int, default=2, help="spinning processes to start (default 2)")
    parser.add_argument("--iterations", type=int, default=20, help="timed iterations per setting (default 20)")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    spinners = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(args.busy)]
    try:
        time.sleep(65)  # let the 1-minute load average see the spinners, as it would on a busy machine
        chosen = choose_threads({})
        print(f"usable cores {usable_cores()}, {args.busy} busy processes, load average {os.getloadavg()[0]:.2f}")
        for label, threads in (("torch default", default_threads), ("chosen", chosen)):
            print(f"{label:>13}: {threads} thread(s), {iteration_seconds(threads, args.iterations):.3f} s/iteration")
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
