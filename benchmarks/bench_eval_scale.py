"""Evaluation at OU-MVLP's full size: time and peak memory of `evaluate(..., "oumvlp")` on random features.

    python benchmarks/bench_eval_scale.py [--subjects 5154] [--write]

Random embeddings carry no identity, so the accuracy is chance; what is measured is that a test set of
OU-MVLP's size (133,780 sequences of [256, 16] in OpenGait's recipe) is evaluated in bounded memory.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gaitrec.evaluation.protocols import evaluate  # noqa: E402
from results_md import write_section  # noqa: E402

VIEWS = [f"{a:03d}" for a in [*range(0, 91, 15), *range(180, 271, 15)]]


def make_features(subjects: int, channels: int, parts: int, keep: float, seed: int = 0) -> dict:
    """Every subject x type (00 probe, 01 gallery) x view, a random fraction ``1 - keep`` missing."""
    rng = np.random.default_rng(seed)
    grid = [(f"{s:05d}", t, v) for s in range(1, subjects + 1) for t in ("00", "01") for v in VIEWS]
    chosen = np.flatnonzero(rng.random(len(grid)) < keep)
    labels, types, views = (np.array([grid[i][k] for i in chosen]) for k in range(3))
    embeddings = rng.standard_normal((len(chosen), channels, parts), dtype=np.float32)
    return {"embeddings": embeddings, "labels": labels, "types": types, "views": views}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=5154, help="test subjects (OU-MVLP: 5154)")
    parser.add_argument("--keep", type=float, default=0.928, help="fraction of the subject/type/view grid present")
    parser.add_argument("--write", action="store_true", help="write the section into benchmarks/RESULTS.md")
    args = parser.parse_args()

    start = time.perf_counter()
    features = make_features(args.subjects, 256, 16, args.keep)
    made = time.perf_counter() - start
    gigabytes = features["embeddings"].nbytes / 2**30
    start = time.perf_counter()
    result = evaluate(features, "oumvlp", metric="euc", device="cpu")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    n = len(features["labels"])
    print(f"{n} sequences ({gigabytes:.2f} GB of embeddings, made in {made:.0f} s): evaluated in {seconds:.0f} s, "
          f"peak memory {peak:.2f} GiB, rank-1 {result.figures['rank1']:.3f}% (chance)")
    if args.write:
        write_section("Evaluation at OU-MVLP size (bench_eval_scale.py)", "\n".join([
            f"`python benchmarks/bench_eval_scale.py --write`. {platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), Euclidean distance on the CPU.", "",
            "| sequences | embeddings | evaluation time | peak memory of the process |",
            "|---:|---:|---:|---:|",
            f"| {n:,} ({args.subjects} subjects x 2 types x 14 views, {args.keep:.1%} present) | "
            f"[256, 16] float32, {gigabytes:.2f} GB | {seconds:.0f} s | {peak:.2f} GiB |", "",
            "Random embeddings: the rank-1 is chance and is not the point; the single-view protocol's 14 x 14 "
            "view pairs are computed in probe blocks, so memory stays near the size of the features.",
        ]))


if __name__ == "__main__":
    main()
