"""How time and peak memory grow with sequence length, batch size and gallery size.

    python benchmarks/bench_growth.py [--write]

Inference: the demo config's Baseline (random weights, prepared as `gaitrec test` prepares it) on random
64x44 silhouettes. Evaluation: the OU-MVLP protocol (`evaluate(features, "oumvlp")`, as `gaitrec test` runs
it) on structured [256, 16] embeddings of bench_eval_scale.py, probe and gallery sets of about the same size
(the bfloat16 screening applies from 16,384 gallery entries). Each point runs in a fresh interpreter so that
its peak memory is its own: the figure is the growth of the process's peak resident memory over what it held
once the model and the inputs were made.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

INFERENCE = [(30, 1), (60, 1), (120, 1), (240, 1), (30, 4), (30, 16)]  # (frames per sequence, sequences per batch)
GALLERY = [1000, 4000, 16000, 32000]  # about this many gallery sequences (and as many probes)


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def point(kind: str, a: int, b: int) -> dict:
    """One measurement in this process: seconds (best of 3) and peak memory growth in bytes."""
    import numpy as np
    import torch

    if kind == "inference":
        from gaitrec.config import load_config
        from gaitrec.engine.inference import prepare_for_inference
        from gaitrec.models import create_model

        cfg = load_config(ROOT / "gaitrec/configs/demo/baseline_synthgait.yaml")
        model = prepare_for_inference(create_model(cfg["model_cfg"]), torch.device("cpu"))
        x = (torch.rand(1, a * b, 64, 44) > 0.5).float()

        def run():
            with torch.no_grad():
                model(x, [a] * b)
    else:
        from bench_eval_scale import VIEWS, make_features
        from gaitrec.evaluation.protocols import evaluate

        keep = 0.928
        features = make_features(max(2, round(b / (len(VIEWS) * keep))), 256, 16, keep)

        def run():
            evaluate(features, "oumvlp", metric="euc", device="cpu")
    before = resident_bytes()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sizes = {} if kind == "inference" else {"probes": int((features["types"] == "00").sum()),
                                             "gallery": int((features["types"] == "01").sum())}
    return {"seconds": min(times), "memory": max(0, peak - before), **sizes}


def measure(kind: str, a: int, b: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, __file__, "--point", kind, str(a), str(b)], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the section into benchmarks/RESULTS.md")
    parser.add_argument("--point", nargs=3, metavar=("KIND", "A", "B"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.point:
        print(json.dumps(point(args.point[0], int(args.point[1]), int(args.point[2]))))
        return
    load_before = os.getloadavg()[0]
    lines = ["| frames per sequence | sequences per batch | forward (s) | frames/s | peak memory growth (MiB) |",
             "|---:|---:|---:|---:|---:|"]
    for frames, batch in INFERENCE:
        r = measure("inference", frames, batch)
        lines.append(f"| {frames} | {batch} | {r['seconds']:.3f} | {frames * batch / r['seconds']:,.0f} | "
                     f"{r['memory'] / 2**20:.0f} |")
        print(lines[-1], flush=True)
    lines += ["", "| probes | gallery | evaluation (s) | pairs/s | peak memory growth (MiB) | features (MiB) |",
              "|---:|---:|---:|---:|---:|---:|"]
    for gallery in GALLERY:
        r = measure("evaluation", 0, gallery)
        features = (r["probes"] + r["gallery"]) * 256 * 16 * 4
        lines.append(f"| {r['probes']:,} | {r['gallery']:,} | {r['seconds']:.2f} | "
                     f"{r['probes'] * r['gallery'] / r['seconds']:,.0f} | {r['memory'] / 2**20:.0f} | "
                     f"{features / 2**20:.0f} |")
        print(lines[-1], flush=True)
    load_after = os.getloadavg()[0]
    import torch

    body = "\n".join([
        f"`python benchmarks/bench_growth.py --write`: best of 3 per point, each point in a fresh interpreter. "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}; load average (1 min) {load_before:.2f} before and "
        f"{load_after:.2f} after.", "",
        "Inference: the demo config's Baseline (64x44 input, prepared as `gaitrec test` prepares it); sequences "
        "of one batch are packed into one forward.", "", *lines[:2 + len(INFERENCE)], "",
        "Evaluation: `evaluate(features, \"oumvlp\")` (rank-1 per probe view and gallery view) on structured "
        "[256, 16] float32 embeddings (bench_eval_scale.py), as many probes as gallery entries; from 16,384 "
        "gallery entries the nearest neighbours are screened by bfloat16 bounds (gaitrec/evaluation/screening.py). "
        "The memory growth is the features' parts-first copies (and the bound rows where screening runs), the "
        "probe block of distances and the tile buffers: it grows with the features, not with probes x gallery.",
        "", *lines[2 + len(INFERENCE) + 1:]])
    if args.write:
        from results_md import write_section

        write_section("Growth with sequence length, batch and gallery (bench_growth.py)", body)
    print(body)


if __name__ == "__main__":
    main()
