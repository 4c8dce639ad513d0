"""Distance throughput: the blocked torch implementation against the direct NumPy formula, in one run.

    python benchmarks/bench_distance.py [--probes 2000 --gallery 2000 --channels 256 --parts 16]
        [--device cpu|cuda] [--append benchmarks/RESULTS.md]

Throughput is probe-gallery pairs per second (C x P embeddings). The reference materialises every
difference vector, so it runs on a small slice and is checked against the blocked result there.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gaitrec.device import pick_device  # noqa: E402
from gaitrec.evaluation.distance import pairwise_distance, reference_distance  # noqa: E402
from results_md import write_section  # noqa: E402


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=2000)
    parser.add_argument("--gallery", type=int, default=2000)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--parts", type=int, default=16)
    parser.add_argument("--reference-probes", type=int, default=40)
    parser.add_argument("--reference-gallery", type=int, default=100)
    parser.add_argument("--device", default=None)
    parser.add_argument("--append", type=Path, default=None, help="add a section to this RESULTS.md")
    args = parser.parse_args()

    device = pick_device(args.device)
    rng = np.random.default_rng(0)
    probe = rng.normal(size=(args.probes, args.channels, args.parts)).astype(np.float32)
    gallery = rng.normal(size=(args.gallery, args.channels, args.parts)).astype(np.float32)
    small_p, small_g = probe[:args.reference_probes], gallery[:args.reference_gallery]

    rows = []
    for metric in ("euc", "cos"):
        pairwise_distance(small_p, small_g, metric, device)  # warm-up
        blocked_s, blocked = timed(lambda: pairwise_distance(probe, gallery, metric, device))
        reference_s, reference = timed(lambda: reference_distance(small_p, small_g, metric), repeats=1)
        error = float(np.abs(blocked[:len(small_p), :len(small_g)] - reference).max())
        blocked_rate = probe.shape[0] * gallery.shape[0] / blocked_s
        reference_rate = small_p.shape[0] * small_g.shape[0] / reference_s
        rows.append((metric, blocked_s, blocked_rate, reference_s, reference_rate, error))

    header = (f"{args.probes} x {args.gallery} embeddings [{args.channels}, {args.parts}], device {device}, "
              f"torch {torch.__version__} ({torch.get_num_threads()} threads), {platform.machine()}, "
              f"{os.cpu_count()} CPUs")
    table = ["| metric | blocked (s) | blocked pairs/s | reference slice (s) | reference pairs/s | speed-up "
             "| max abs diff |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for metric, b_s, b_rate, r_s, r_rate, err in rows:
        table.append(f"| {metric} | {b_s:.3f} | {b_rate:,.0f} | {r_s:.3f} | {r_rate:,.0f} "
                     f"| {b_rate / r_rate:,.0f}x | {err:.1e} |")
    text = "\n".join([header, "", *table])
    print(text)
    if args.append:
        write_section("Evaluation distance (bench_distance.py)", text + (
            f"\n\nReference: the direct float64 NumPy formula on a {args.reference_probes} x "
            f"{args.reference_gallery} slice; max abs diff compares the two there. Best of 3 runs; on a machine "
            f"shared with other jobs the timings vary by up to 3x between runs.\n"), args.append)


if __name__ == "__main__":
    main()
