"""SynthGait speed: rendering frames per second, and the wall time of a demo-sized dataset on disk.

    python benchmarks/bench_synth.py [--subjects 45 --frames 30 --size 64] [--no-dataset]
        [--append benchmarks/RESULTS.md]

Rendering covers everything but the files: kinematics, projection, rasterising, defects, pretreatment.
The dataset run is ``generate_dataset`` end to end into a temporary directory (one ``.pkl`` per sequence,
each written atomically with an fsync).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from results_md import write_section  # noqa: E402
from gaitrec.synth import TYPES, VIEWS, generate_dataset  # noqa: E402
from gaitrec.synth.dataset import make_subject, render_views  # noqa: E402


def render_rate(size: int, frames: int, subjects: int = 2) -> tuple[float, int]:
    """Frames per second of ``render_views`` over every type and view of a few subjects."""
    total = 0
    start = time.perf_counter()
    for index in range(subjects):
        subject = make_subject(0, index)
        for walk_type in TYPES:
            total += frames * len(VIEWS)
            render_views(0, index, walk_type, VIEWS, frames, size, subject=subject)
    return total / (time.perf_counter() - start), total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=45)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--no-dataset", action="store_true", help="only measure rendering")
    parser.add_argument("--append", type=Path, default=None, help="add or replace this section in a RESULTS.md")
    args = parser.parse_args()

    lines = [f"Machine: {platform.machine()}, {os.cpu_count()} CPUs shared with other jobs, one process. "
             f"{args.frames} frames per sequence, all 11 views x 10 types.", "",
             "| output | rendered frames/s (no disk) |", "|---|---:|"]
    for size in (32, 64):
        rate, count = render_rate(size, args.frames)
        lines.append(f"| {size}x{size} | {rate:,.0f} |")
        print(f"render {size}x{size}: {rate:,.0f} frames/s ({count} frames)")
    if not args.no_dataset:
        with tempfile.TemporaryDirectory() as folder:
            summary = generate_dataset(Path(folder) / "synthgait", subjects=args.subjects, frames=args.frames,
                                       size=args.size, progress=False)
        line = (f"Dataset on disk, {args.subjects} subjects x {args.frames} frames at {args.size}x{args.size}: "
                f"{summary['sequences']} sequences, {summary['frames']} frames in {summary['seconds']:.1f} s "
                f"({summary['frames'] / summary['seconds']:,.0f} frames/s).")
        lines += ["", line]
        print(line)
    if args.append:
        write_section("SynthGait generation (bench_synth.py)", "\n".join(lines), args.append)
        print(f"written to {args.append}")


if __name__ == "__main__":
    main()
