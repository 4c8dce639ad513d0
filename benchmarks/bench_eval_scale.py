"""Evaluation at OU-MVLP's full size: time and peak memory of `evaluate(..., "oumvlp")` on random features,
against the time the machine's own matrix multiply needs for the same products.

    python benchmarks/bench_eval_scale.py [--subjects 5154] [--write]

The matrix-multiply limit: the probe-by-gallery products of every part (the floating-point work of the
distances) done with nothing else, as float32 `torch.mm` into a preallocated output: in the tiles the evaluation uses
(single-threaded workers taking the next tile when free, and all threads on each tile) and as one
[probe block, gallery] product per part; the fastest of the three is the limit. Both are timed in wall-clock
and in CPU time of the process: on a machine shared with other jobs the wall-clock time also counts the
time the process waited for a core, the CPU time only the work done.

Random embeddings carry no identity, so the accuracy is chance; what is measured is that a test set of
OU-MVLP's size (133,780 sequences of [256, 16] in OpenGait's recipe) is evaluated in bounded memory.
"""
from __future__ import annotations

import argparse
import contextlib
from concurrent.futures import ThreadPoolExecutor
import os
import platform
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gaitrec.evaluation.protocols import evaluate  # noqa: E402
from results_md import write_section  # noqa: E402

VIEWS = [f"{a:03d}" for a in [*range(0, 91, 15), *range(180, 271, 15)]]
STRUCTURED_NOISE = 2.5  # per-sequence noise of the structured embeddings, per value (rank-1 near 85%)


def make_features(subjects: int, channels: int, parts: int, keep: float, seed: int = 0,
                  structured: bool = True) -> dict:
    """Every subject x type (00 probe, 01 gallery) x view, a random fraction ``1 - keep`` missing.

    Structured (the default), the embeddings look like a trained model's: a common offset, the subject's
    point in a 64-dimensional identity space and the view's in an 8-dimensional one, each mapped into the
    [channels x parts] space by a fixed random matrix, plus per-sequence noise; rank-1 comes out near
    OU-MVLP's published figures. Otherwise every value is drawn independently (isotropic Gaussian): no
    identity, and all distances alike, the worst case for the bfloat16 screening."""
    rng = np.random.default_rng(seed)
    grid = [(s, t, v) for s in range(subjects) for t in ("00", "01") for v in range(len(VIEWS))]
    chosen = np.flatnonzero(rng.random(len(grid)) < keep)
    subject, kind, view = (np.array([grid[i][k] for i in chosen]) for k in range(3))
    width = channels * parts
    if structured:
        identity = rng.standard_normal((64, width), dtype=np.float32) / 8
        pose = rng.standard_normal((8, width), dtype=np.float32) / np.sqrt(8)
        offset = 3 * rng.standard_normal(width, dtype=np.float32)
        people = rng.standard_normal((subjects, 64), dtype=np.float32)
        angles = rng.standard_normal((len(VIEWS), 8), dtype=np.float32)
        embeddings = np.empty((len(chosen), width), dtype=np.float32)
        for start in range(0, len(chosen), 4096):  # in pieces: bounded temporaries
            piece = slice(start, start + 4096)
            embeddings[piece] = offset + people[subject[piece]] @ identity + angles[view[piece]] @ pose \
                + STRUCTURED_NOISE * rng.standard_normal((len(subject[piece]), width), dtype=np.float32)
        embeddings = embeddings.reshape(-1, channels, parts)
    else:
        embeddings = rng.standard_normal((len(chosen), channels, parts), dtype=np.float32)
    return {"embeddings": embeddings, "labels": np.array([f"{s + 1:05d}" for s in subject]), "types": kind,
            "views": np.array(VIEWS)[view]}


def matmul_limit(features: dict) -> tuple[float, float]:
    """Seconds (wall-clock, CPU) of float32 matrix products alone for the oumvlp protocol's distances, each
    the smallest over the three ways of computing them (see the docstring)."""
    from gaitrec.evaluation import distance

    emb, types, views = features["embeddings"], features["types"], features["views"]
    gallery = torch.as_tensor(emb[types == "01"]).permute(2, 0, 1).contiguous()  # [P, G, C]
    parts, num_gallery = gallery.shape[0], gallery.shape[1]
    threads = torch.get_num_threads()
    timings, cpu_timings = [], []
    for variant in ("tiles, a thread each", "tiles", "blocks"):
        start, cpu_start = time.perf_counter(), time.process_time()
        for view in VIEWS:
            probe = torch.as_tensor(emb[(types == "00") & (views == view)]).permute(2, 0, 1).contiguous()
            if variant.startswith("tiles"):
                tiles = [(row, row_stop, column, column_stop)
                         for row, row_stop in distance._even_split(0, probe.shape[1], distance.TILE_ROWS)
                         for column, column_stop in distance._even_split(0, num_gallery, distance.TILE_COLUMNS)]
                workers = threads if variant == "tiles, a thread each" else 1
                remaining, claim = iter(tiles), threading.Lock()

                def products(worker: int) -> None:
                    out = torch.empty(distance.TILE_ROWS, distance.TILE_COLUMNS)
                    while True:
                        with claim:
                            next_tile = next(remaining, None)
                        if next_tile is None:
                            return
                        row, row_stop, column, column_stop = next_tile
                        tile = out[:row_stop - row, :column_stop - column]
                        for part in range(parts):
                            torch.mm(probe[part, row:row_stop], gallery[part, column:column_stop].T, out=tile)

                if workers == 1:
                    products(0)
                else:
                    torch.set_num_threads(1)
                    with ThreadPoolExecutor(workers) as pool:
                        list(pool.map(products, range(workers)))
                    torch.set_num_threads(threads)
            else:
                rows = max(1, distance.DEFAULT_BLOCK_BYTES // (4 * num_gallery))
                out = torch.empty(rows, num_gallery)
                for row in range(0, probe.shape[1], rows):
                    x = probe[:, row:row + rows]
                    for part in range(parts):
                        torch.mm(x[part], gallery[part].T, out=out[:x.shape[1]])
        timings.append(time.perf_counter() - start)
        cpu_timings.append(time.process_time() - cpu_start)
    return min(timings), min(cpu_timings)


@contextlib.contextmanager
def float32_search_only():
    """Evaluation without the bfloat16 screening (gaitrec/evaluation/screening.py), for comparison."""
    from gaitrec.evaluation import screening

    saved = screening.FEWEST_GALLERY
    screening.FEWEST_GALLERY = float("inf")
    try:
        yield
    finally:
        screening.FEWEST_GALLERY = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=5154, help="test subjects (OU-MVLP: 5154)")
    parser.add_argument("--keep", type=float, default=0.928, help="fraction of the subject/type/view grid present")
    parser.add_argument("--repeats", type=int, default=1, help="alternating repetitions (medians are quoted)")
    parser.add_argument("--random", action="store_true",
                        help="isotropic random embeddings instead of structured ones (see make_features)")
    parser.add_argument("--write", action="store_true", help="write the section into benchmarks/RESULTS.md")
    args = parser.parse_args()

    start = time.perf_counter()
    features = make_features(args.subjects, 256, 16, args.keep, structured=not args.random)
    made = time.perf_counter() - start
    gigabytes = features["embeddings"].nbytes / 2**30
    load_before = os.getloadavg()[0]
    evaluations, limits, cpu_evaluations, cpu_limits, searches, cpu_searches = [], [], [], [], [], []
    for _ in range(args.repeats):  # alternating, so that a change of load hits all three
        start, cpu_start = time.perf_counter(), time.process_time()
        result = evaluate(features, "oumvlp", metric="euc", device="cpu")
        evaluations.append(time.perf_counter() - start)
        cpu_evaluations.append(time.process_time() - cpu_start)
        with float32_search_only():
            start, cpu_start = time.perf_counter(), time.process_time()
            reference = evaluate(features, "oumvlp", metric="euc", device="cpu")
            searches.append(time.perf_counter() - start)
            cpu_searches.append(time.process_time() - cpu_start)
        if reference.to_json() != result.to_json():
            sys.exit("the screened evaluation differs from the float32 search: a bug")
        wall, cpu = matmul_limit(features)
        limits.append(wall)
        cpu_limits.append(cpu)
    seconds, limit = statistics.median(evaluations), statistics.median(limits)
    cpu_seconds, cpu_limit = statistics.median(cpu_evaluations), statistics.median(cpu_limits)
    search, cpu_search = statistics.median(searches), statistics.median(cpu_searches)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    load_after = os.getloadavg()[0]
    n = len(features["labels"])
    kind = "random" if args.random else "structured"
    print(f"{n} {kind} sequences ({gigabytes:.2f} GB of embeddings, made in {made:.0f} s): evaluated in "
          f"{seconds:.1f} s (float32 search {search:.1f} s), matrix products alone {limit:.1f} s "
          f"({seconds / limit:.2f}x; float32 search {search / limit:.2f}x); CPU time {cpu_seconds:.1f} s "
          f"({cpu_search:.1f} s) against {cpu_limit:.1f} s ({cpu_seconds / cpu_limit:.2f}x; "
          f"{cpu_search / cpu_limit:.2f}x); peak memory {peak:.2f} GiB, rank-1 {result.figures['rank1']:.2f}%, "
          f"identical figures; load {load_before:.2f} -> {load_after:.2f}")
    if args.write:
        write_section("Evaluation at OU-MVLP size (bench_eval_scale.py)", "\n".join([
            f"`python benchmarks/bench_eval_scale.py --subjects {args.subjects} --repeats {args.repeats} --write` "
            f"(medians of {args.repeats} alternating runs). {platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), Euclidean distance on the CPU. "
            f"Load average (1 min) {load_before:.2f} before, {load_after:.2f} after.", "",
            "| sequences | embeddings | evaluation time | matrix products alone | evaluation / products "
            "| CPU time: evaluation / products | peak memory of the process |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {n:,} ({args.subjects} subjects x 2 types x 14 views, {args.keep:.1%} present) | "
            f"[256, 16] float32, {gigabytes:.2f} GB | {seconds:.1f} s | {limit:.1f} s | {seconds / limit:.2f}x "
            f"| {cpu_seconds:.1f} s / {cpu_limit:.1f} s = {cpu_seconds / cpu_limit:.2f}x | {peak:.2f} GiB |", "",
            "Matrix products alone: the float32 probe-by-gallery products of every part with nothing else (the "
            "fastest of: the evaluation's tiles shared among single-threaded workers, the same tiles with all "
            "threads, one product per probe block), the machine's limit for this computation. The CPU time "
            "(of the whole process) counts only the work done; the wall-clock time also counts the time the "
            "process waited for a core on a machine shared with other jobs.", "",
            "Random embeddings: the rank-1 is chance and is not the point; the single-view protocol's 14 x 14 "
            "view pairs are computed in probe blocks, so memory stays near the size of the features.",
        ]))


if __name__ == "__main__":
    main()
