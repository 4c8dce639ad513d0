"""``gaitrec extract`` speed and quality on rendered street videos with ground truth.

    python benchmarks/bench_extract.py [--frames 200 --runs 3] [--append benchmarks/RESULTS.md]

Speed: frames/s of ``extract_tracks`` (decoding, subtraction, tracking, alignment; no writing) on a
768x576 mp4v street video at 25 fps, median of ``--runs``. Quality: on 240x320 clips of seeds, noise,
drift and walker counts not used for tuning, the mean silhouette IoU (aligned 64x64, against the walker's
visible ground-truth mask), the box IoU, the purity of the tracks and the number of tracks per walker pass.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from results_md import write_section  # noqa: E402
from gaitrec.synth.street import random_walkers, render_street, score_tracks, write_video  # noqa: E402
from gaitrec.video import extract_tracks  # noqa: E402

# (clip seed, walkers, crossing allowed, noise, drift)
QUALITY_CASES = [(101, 2, False, 2.0, 0.03), (102, 3, True, 3.0, 0.05), (103, 4, True, 4.0, 0.08),
                 (104, 3, True, 5.0, 0.10), (105, 5, True, 3.0, 0.05), (106, 2, True, 3.0, 0.15)]


def speed(frames: int, runs: int) -> tuple[float, int]:
    walkers = random_walkers(90, 5, frames, crossing=True)
    clip = render_street(walkers, frames, (576, 768), seed=90)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "street.mp4"
        write_video(path, clip.frames, 25.0)
        del clip
        rates, tracks = [], 0
        for _ in range(runs):
            start = time.perf_counter()
            tracks = len(extract_tracks(path, progress=False))
            rates.append(frames / (time.perf_counter() - start))
    return statistics.median(rates), tracks


def quality(frames: int) -> list[dict]:
    rows = []
    for seed, count, crossing, noise, drift in QUALITY_CASES:
        clip = render_street(random_walkers(seed, count, frames, crossing=crossing), frames, (240, 320),
                             seed=seed, noise=noise, drift=drift)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "street.avi"
            write_video(path, clip.frames, 25.0)
            tracks = extract_tracks(path, progress=False)
        score = score_tracks(tracks, clip)
        seen = [k for k in range(count) if len(clip.visible[k]) >= 20]  # passes long enough to track
        rows.append({"seed": seed, "walkers": count, "crossing": crossing, "noise": noise, "drift": drift,
                     "tracks": len(tracks), "silhouette_iou": score["silhouette_iou"], "box_iou": score["box_iou"],
                     "min_purity": min(score["purity"], default=float("nan")),
                     "per_walker": [score["tracks_per_walker"][k] for k in seen],
                     "unmatched": score["walker_of"].count(-1)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--append", type=Path, default=None, help="add or replace this section in a RESULTS.md")
    args = parser.parse_args()

    load = os.getloadavg()[0]
    rate, tracks = speed(args.frames, args.runs)
    print(f"768x576: {rate:.1f} frames/s (median of {args.runs}), {tracks} tracks, load {load:.1f}")
    rows = quality(150)
    lines = [f"Machine: {platform.machine()}, {os.cpu_count()} CPUs shared with other jobs (load average "
             f"{load:.1f} at the start), one process, OpenCV threads default.", "",
             f"Speed, 768x576 mp4v street video, 5 walkers, {args.frames} frames (25 fps real time): "
             f"**{rate:.0f} frames/s** (median of {args.runs} runs; processed at 384x288).", "",
             "Quality on 240x320 clips, 150 frames, seeds and settings not used for tuning:", "",
             "| seed | walkers | crossing | noise | drift | tracks | silhouette IoU | box IoU | min purity | "
             "tracks per walker | tracks on nobody |", "|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        line = (f"| {r['seed']} | {r['walkers']} | {'yes' if r['crossing'] else 'no'} | {r['noise']:g} | "
                f"{r['drift']:g} | {r['tracks']} | {r['silhouette_iou']:.3f} | {r['box_iou']:.3f} | "
                f"{r['min_purity']:.3f} | {r['per_walker']} | {r['unmatched']} |")
        lines.append(line)
        print(line)
    if args.append:
        write_section("Video extraction (bench_extract.py)", "\n".join(lines), args.append)
        print(f"written to {args.append}")


if __name__ == "__main__":
    main()
