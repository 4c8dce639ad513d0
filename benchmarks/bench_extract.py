"""``gaitrec extract`` speed and quality on rendered street videos with ground truth.

    python benchmarks/bench_extract.py [--frames 200 --runs 3] [--append benchmarks/RESULTS.md]

Speed: frames/s of ``extract_tracks`` (decoding, subtraction, tracking, alignment; no writing) on a
768x576 mp4v street video at 25 fps, median of ``--runs``. Quality: on 240x320 clips of five kinds of
scene (``scene``), seeds not used for tuning: the mean silhouette IoU (aligned 64x64, against the walker's
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
from gaitrec.synth.street import Walker, random_walkers, render_street, score_tracks, write_video  # noqa: E402
from gaitrec.video import extract_tracks  # noqa: E402

SCENES = ("separate", "crossing", "group", "mixed", "drift", "light step")
SEEDS = range(500, 505)  # not used for tuning (that was subjects of seed 7, clips 1-3)


def scene(kind: str, seed: int) -> tuple[list[Walker], float, float]:
    """Walkers, sensor noise and brightness drift of one test clip of ``kind``:
    separate: three passes in one direction, far enough apart never to overlap;
    crossing: two walkers in opposite directions meeting mid-frame;
    group: two or three people entering together in one direction, a metre or so apart in depth;
    mixed: four or five walkers, random directions, depths and entry times (``random_walkers``);
    drift: as separate, with a strong brightness drift (30%);
    light step: as separate, with the left half of the frame 30% darker from the middle frame on."""
    rng = np.random.default_rng([seed, 7])
    noise, drift = float(rng.uniform(2, 6)), float(rng.uniform(0, 0.12))
    view = float(rng.choice([270, 90]))
    if kind in ("separate", "drift", "light step"):
        walkers = [Walker(seed, k, 45 * k - 20, view, float(rng.uniform(5.5, 9.5)), walk_seed=seed) for k in range(3)]
        drift = 0.3 if kind == "drift" else drift
    elif kind == "crossing":
        depth = float(rng.uniform(5.5, 8.5))
        walkers = [Walker(seed, 0, 0, 270, depth, walk_seed=seed),
                   Walker(seed, 1, int(rng.integers(0, 20)), 90, depth + float(rng.uniform(-1.5, 1.5)), walk_seed=seed)]
    elif kind == "group":
        depth = float(rng.uniform(5.5, 8.5))
        walkers = [Walker(seed, k, int(rng.integers(0, 8)), view, depth + float(rng.uniform(-1.2, 1.2)), walk_seed=seed)
                   for k in range(int(rng.integers(2, 4)))]
    else:
        walkers = random_walkers(seed, int(rng.integers(4, 6)), 150)
    return walkers, noise, drift


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


def quality(frames: int = 150) -> dict[str, dict]:
    """Per scene kind, over SEEDS: mean silhouette and box IoU, mean and minimum track purity, and how
    many walker passes (visible at least 20 frames) got exactly one track, none, or several."""
    table = {}
    for kind in SCENES:
        rows = {"silhouette_iou": [], "box_iou": [], "purity": [], "one": 0, "none": 0, "several": 0,
                "passes": 0, "nobody": 0}
        for seed in SEEDS:
            walkers, noise, drift = scene(kind, seed)
            clip = render_street(walkers, frames, (240, 320), seed=seed, noise=noise, drift=drift)
            if kind == "light step":
                darker = clip.frames[frames // 2:, :, : clip.frames.shape[2] // 2].astype(np.float32) * 0.7
                clip.frames[frames // 2:, :, : clip.frames.shape[2] // 2] = darker.astype(np.uint8)
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "street.avi"
                write_video(path, clip.frames, 25.0)
                tracks = extract_tracks(path, progress=False)
            score = score_tracks(tracks, clip)
            rows["silhouette_iou"].append(score["silhouette_iou"])
            rows["box_iou"].append(score["box_iou"])
            rows["purity"] += score["purity"]
            rows["nobody"] += score["walker_of"].count(-1)
            for k in range(len(walkers)):
                if len(clip.visible[k]) < 20:
                    continue
                count = score["tracks_per_walker"][k]
                rows["passes"] += 1
                rows["one" if count == 1 else "none" if count == 0 else "several"] += 1
        table[kind] = rows
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--append", type=Path, default=None, help="add or replace this section in a RESULTS.md")
    args = parser.parse_args()

    load = os.getloadavg()[0]
    rate, tracks = speed(args.frames, args.runs)
    print(f"768x576: {rate:.1f} frames/s (median of {args.runs}), {tracks} tracks, load {load:.1f}")
    table = quality()
    lines = [f"Machine: {platform.machine()}, {os.cpu_count()} CPUs shared with other jobs (load average "
             f"{load:.1f} at the start), one process, OpenCV threads default.", "",
             f"Speed, 768x576 mp4v street video, 5 walkers, {args.frames} frames (25 fps real time): "
             f"**{rate:.0f} frames/s** (median of {args.runs} runs; processed at 384x288).", "",
             f"Quality on 240x320 clips of 150 frames, {len(SEEDS)} clips per scene (seeds {SEEDS.start}-"
             f"{SEEDS.stop - 1}, none used for tuning; sensor noise 2-6 grey levels, brightness drift 0-12% "
             "unless said). Silhouette IoU: aligned 64x64 silhouette against the walker's aligned visible "
             "mask; purity: share of a track's frames on its walker; passes: walkers visible 20+ frames.", "",
             "| scene | silhouette IoU | box IoU | purity mean / min | passes with 1 track | with none | "
             "with several | tracks on nobody |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, r in table.items():
        purity = r["purity"] or [float("nan")]
        line = (f"| {kind} | {np.mean(r['silhouette_iou']):.3f} | {np.mean(r['box_iou']):.3f} | "
                f"{np.mean(purity):.3f} / {np.min(purity):.3f} | {r['one']}/{r['passes']} | {r['none']} | "
                f"{r['several']} | {r['nobody']} |")
        lines.append(line)
        print(line)
    if args.append:
        write_section("Video extraction (bench_extract.py)", "\n".join(lines), args.append)
        print(f"written to {args.append}")


if __name__ == "__main__":
    main()
