"""Evaluation at OU-MVLP's full size: time and peak memory of `evaluate(..., "oumvlp")` on random features,
against the time the machine's own matrix multiply needs for the same products.

    python benchmarks/bench_eval_scale.py [--subjects 5154] [--write]

The matrix-multiply limit: the probe-by-gallery products of every part (the floating-point work of the
distances) done with nothing else, as float32 `torch.mm` into a preallocated output: in the tiles the evaluation uses
(single-threaded workers taking the next tile when free, and all threads on each tile) and as one
[probe block, gallery] product per part; the fastest of the three is the limit. Both are timed in wall-clock
and in CPU time of the process: on a machine shared with other jobs the wall-clock time also counts the
time the process waited for a core, the CPU time only the work done.

Embeddings are structured like a trained model's by default (a common offset, identity and view in a few
dimensions, noise: rank-1 near OU-MVLP's published figures) or isotropic random (`--random`: no identity, all
distances alike). The default evaluation (bfloat16 screening, float32 confirmation) and the float32 search
alone are both timed, and their figures must agree.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gaitrec.evaluation.protocols import evaluate  # noqa: E402
from results_md import write_section  # noqa: E402

VIEWS = [f"{a:03d}" for a in [*range(0, 91, 15), *range(180, 271, 15)]]
OUMVLP_SUBJECTS = 5154  # OU-MVLP's test subjects
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
    timings, cpu_timings = [], []
    for variant in ("tiles, a thread each", "tiles", "blocks"):
        start, cpu_start = time.perf_counter(), time.process_time()
        for view in VIEWS:
            probe = torch.as_tensor(emb[(types == "00") & (views == view)]).permute(2, 0, 1).contiguous()
            if variant.startswith("tiles"):
                # The evaluation's own tiling (distance.tiled_blocks), each tile doing the products alone.
                def products(rows: slice, columns: slice, worker: int, out: torch.Tensor) -> None:
                    for part in range(parts):
                        torch.mm(probe[part, rows], gallery[part, columns].T, out=out)

                block_rows = max(1, distance.DEFAULT_BLOCK_BYTES // (4 * num_gallery))
                count = 1 if variant == "tiles" else None  # one worker with all the threads
                with distance._Workers(torch.device("cpu"), count) as workers:
                    for _ in distance.tiled_blocks(probe.shape[1], num_gallery, block_rows, workers, products, None,
                                                   torch.device("cpu")):
                        pass
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
    parser.add_argument("--subjects", type=int, default=OUMVLP_SUBJECTS, help="test subjects (OU-MVLP: 5154)")
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
        # A smaller run (gaitrec bench --quick) has a section of its own: it must not replace the full-size figures.
        size = "OU-MVLP size" if args.subjects == OUMVLP_SUBJECTS else f"{args.subjects} subjects"
        write_section(f"Evaluation at {size} (bench_eval_scale.py)" + (", random embeddings" if args.random else ""),
                      "\n".join(section_lines(args, n, gigabytes, seconds, search, limit, cpu_seconds, cpu_search,
                                              cpu_limit, peak, result.figures["rank1"], load_before, load_after)))


def section_lines(args, n, gigabytes, seconds, search, limit, cpu_seconds, cpu_search, cpu_limit, peak, rank1,
                  load_before, load_after) -> list[str]:
    """The RESULTS.md section of one run."""
    kind = "random" if args.random else "structured"
    return [
        f"`python benchmarks/bench_eval_scale.py --subjects {args.subjects} --repeats {args.repeats}"
        f"{' --random' if args.random else ''} --write` (medians of {args.repeats} alternating runs). "
        f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} "
        f"threads), Euclidean distance on the CPU. Load average (1 min) {load_before:.2f} before, "
        f"{load_after:.2f} after.", "",
        "| sequences | embeddings | evaluation (default) | float32 search alone | matrix products alone "
        "| evaluation / products | float32 search / products | CPU time: evaluation / products | peak memory |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {n:,} ({args.subjects} subjects x 2 types x 14 views, {args.keep:.1%} present) | {kind}, [256, 16] "
        f"float32, {gigabytes:.2f} GB | {seconds:.1f} s | {search:.1f} s | {limit:.1f} s | {seconds / limit:.2f}x "
        f"| {search / limit:.2f}x | {cpu_seconds:.1f} s / {cpu_limit:.1f} s = {cpu_seconds / cpu_limit:.2f}x "
        f"| {peak:.2f} GiB |", "",
        "Evaluation (default): `evaluate(features, \"oumvlp\")`, nearest neighbours screened by bfloat16 lower "
        "bounds and confirmed in float32 (gaitrec/evaluation/screening.py). Float32 search alone: the same "
        "with screening off; both give identical figures (checked in the run). Matrix products alone: the "
        "float32 probe-by-gallery products of every part with nothing else (the fastest of: the evaluation's "
        "tiles shared among single-threaded workers, the same tiles with all threads, one product per probe "
        "block), the machine's float32 limit for this computation. The CPU time (of the whole process) counts "
        "only the work done; the wall-clock time also counts the time the process waited for a core on a "
        "machine shared with other jobs.", "",
        f"Rank-1 {rank1:.2f}%. " + ("Random embeddings: no identity, all distances alike (the screening's worst "
                                     "case: it hands over to the float32 search after a first block)."
                                     if args.random else
                                     "Structured embeddings: a common offset, identity and view in a few "
                                     "dimensions, and noise, as a trained model's (see make_features)."),
    ]


if __name__ == "__main__":
    main()
