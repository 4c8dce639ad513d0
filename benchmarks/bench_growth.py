"""How time and peak memory grow with sequence length, batch size and gallery size.

    python benchmarks/bench_growth.py [--write]

Inference: the demo config's Baseline (random weights, prepared as `gaitrec test` prepares it) on random
64x44 silhouettes. Evaluation: `nearest` (rank-1 over a gallery, as the protocols call it) for 1000 probes of
[256, 16]. Each point runs in a fresh interpreter so that its peak memory is its own: the figure is the
growth of the process's peak resident memory over what it held once the model and the inputs were made.
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
GALLERY = [1000, 4000, 16000]


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
        from gaitrec.evaluation.distance import nearest

        rng = np.random.default_rng(0)
        probe = rng.standard_normal((a, 256, 16), dtype=np.float32)
        gallery = rng.standard_normal((b, 256, 16), dtype=np.float32)

        def run():
            nearest(probe, gallery, 1, "euc", "cpu")
    before = resident_bytes()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": min(times), "memory": max(0, peak - before)}


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
    lines += ["", "| probes | gallery | rank-1 search (s) | pairs/s | peak memory growth (MiB) | features (MiB) |",
              "|---:|---:|---:|---:|---:|---:|"]
    for gallery in GALLERY:
        r = measure("evaluation", 1000, gallery)
        features = (1000 + gallery) * 256 * 16 * 4
        lines.append(f"| 1000 | {gallery:,} | {r['seconds']:.2f} | {1000 * gallery / r['seconds']:,.0f} | "
                     f"{r['memory'] / 2**20:.0f} | {features / 2**20:.0f} |")
        print(lines[-1], flush=True)
    load_after = os.getloadavg()[0]
    import torch

    body = "\n".join([
        f"`python benchmarks/bench_growth.py --write`: best of 3 per point, each point in a fresh interpreter. "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}; load average (1 min) {load_before:.2f} before and "
        f"{load_after:.2f} after, on 2 CPUs shared with other jobs.", "",
        "Inference: the demo config's Baseline (64x44 input, prepared as `gaitrec test` prepares it); sequences "
        "of one batch are packed into one forward.", "", *lines[:2 + len(INFERENCE)], "",
        "Evaluation: rank-1 search (`nearest`) of 1000 probes over the gallery, [256, 16] float32 features; "
        "the memory growth is the features' parts-first copy, the probe-block of distances and the tile buffers, so it grows with the features and not with probes x gallery.",
        "", *lines[2 + len(INFERENCE) + 1:]])
    if args.write:
        from results_md import write_section

        write_section("Growth with sequence length, batch and gallery (bench_growth.py)", body)
    print(body)


if __name__ == "__main__":
    main()
