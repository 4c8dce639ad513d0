"""Read speed of a training-like sampler from OpenGait ``.pkl`` files and from the packed store.

The sampler picks a random sequence and copies a random 30-frame clip out of it, as a training loader does.
The dataset is synthetic and CASIA-B shaped but scaled down: by default 10 subjects x 110 sequences
(CASIA-B has 124 subjects) of 60-100 random 64 x 64 frames, about 0.36 GB per format instead of 9 GB.
Two measurements per format: *warm*, files already in the page cache (the best case for ``.pkl``), and
*cold*, after asking the kernel to drop the files from the cache (``posix_fadvise``), as when a dataset
is bigger than memory.

    python benchmarks/bench_store.py [--subjects 10] [--seconds 4] [--cold-reads 400] [--write-results]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from results_md import write_section  # noqa: E402
from gaitrec.data.dataset import PklSource  # noqa: E402
from gaitrec.data.pickle_io import save_array  # noqa: E402
from gaitrec.data.store import StoreSource, pack  # noqa: E402

CLIP = 30
SECTION = "Packed store vs .pkl (bench_store.py)"
TYPES = [f"nm-{i:02d}" for i in range(1, 7)] + ["bg-01", "bg-02", "cl-01", "cl-02"]
VIEWS = [f"{a:03d}" for a in range(0, 181, 18)]


def make_dataset(root: Path, subjects: int, seed: int = 0) -> tuple[int, int]:
    rng = np.random.default_rng(seed)
    sequences = frames = 0
    for s in range(subjects):
        for type_ in TYPES:
            for view in VIEWS:
                length = int(rng.integers(60, 101))
                save_array(root / f"{s + 1:03d}" / type_ / view / f"{view}.pkl",
                           rng.integers(0, 256, (length, 64, 64), dtype=np.uint8))
                sequences += 1
                frames += length
    return sequences, frames


def draws(count: int, seed: int) -> np.ndarray:
    """Random (sequence, clip start fraction) pairs drawn up front, so the timed loop measures reads only."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.random(count), rng.random(count)], axis=1).tolist()


def read_clip(source, draw, copy: bool = True) -> np.ndarray:
    which, where = draw
    frames = source.load(int(which * len(source.sequences)))
    start = int(where * max(1, len(frames) - CLIP + 1))
    clip = frames[start: start + CLIP]  # [30, 64, 64]
    return np.array(clip) if copy else clip  # a batch needs the pixels copied once, whatever the source


def warm_rate(source, seconds: float, copy: bool, seed: int = 1) -> float:
    for i in range(len(source.sequences)):  # bring everything into the page cache
        source.load(i).sum()
    batch = draws(1000, seed)
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for draw in batch:
            read_clip(source, draw, copy)
        count += len(batch)
    return count / elapsed


def drop_from_cache(paths) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def cold_rate(make_source, paths, reads: int, seed: int = 2) -> tuple[float, float]:
    """(seconds to open the source, sequences/s of the reads after it), files dropped from the cache first."""
    batch = draws(reads, seed)
    drop_from_cache(paths)
    start = time.perf_counter()
    source = make_source()  # lists the folders / reads the index
    opened = time.perf_counter()
    for draw in batch:
        read_clip(source, draw)
    return opened - start, reads / (time.perf_counter() - opened)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=4.0, help="per warm measurement")
    parser.add_argument("--cold-reads", type=int, default=400)
    parser.add_argument("--workdir", type=Path, default=None, help="where to build the data (default: a temp dir)")
    parser.add_argument("--write-results", action="store_true", help="write the section into benchmarks/RESULTS.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench_store.") as tmp:
        pkl_root, store_root = Path(tmp) / "pkl", Path(tmp) / "store"
        start = time.perf_counter()
        sequences, frames = make_dataset(pkl_root, args.subjects)
        generate_s = time.perf_counter() - start
        start = time.perf_counter()
        pack(pkl_root, store_root, progress=False)
        pack_s = time.perf_counter() - start
        size_gb = (store_root / "frames.u8").stat().st_size / 1e9
        print(f"{sequences} sequences, {frames} frames, {size_gb:.2f} GB; generated in {generate_s:.1f} s, "
              f"packed in {pack_s:.1f} s", flush=True)

        pkl_files = sorted(str(p) for p in pkl_root.rglob("*.pkl"))
        store_files = [str(store_root / "frames.u8"), str(store_root / "store.json")]
        cold_pkl = cold_rate(lambda: PklSource(pkl_root), pkl_files, args.cold_reads)
        cold_store = cold_rate(lambda: StoreSource(store_root), store_files, args.cold_reads)
        pkl, store = PklSource(pkl_root), StoreSource(store_root)
        rows = [("warm, sequence access (no pixel copy)", warm_rate(pkl, args.seconds, False),
                 warm_rate(store, args.seconds, False)),
                ("warm, access + clip copied out", warm_rate(pkl, args.seconds, True),
                 warm_rate(store, args.seconds, True))]

    (open_pkl, cold_pkl), (open_store, cold_store) = cold_pkl, cold_store
    rows.append((f"cold ({args.cold_reads} reads), access + clip copied out", cold_pkl, cold_store))
    print(f"opening, cold: pkl {open_pkl:.3f} s, store {open_store:.3f} s")
    for name, p, s in rows:
        print(f"{name}: pkl {p:,.0f} seq/s, store {s:,.0f} seq/s, x{s / p:.1f}")
    text = "\n".join([
        f"Training-like sampler (random sequence, random {CLIP}-frame clip), one process. Synthetic "
        f"CASIA-B-shaped data scaled down to {args.subjects} subjects x 110 sequences, 60-100 random 64x64 frames "
        f"each ({sequences} sequences, {frames} frames, {size_gb:.2f} GB; full CASIA-B would be about 9 GB). "
        f"Packing took {pack_s:.1f} s. Cold: files dropped from the page cache with posix_fadvise first. "
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.2f} at the end), "
        "local ext4 disk.", "",
        "| read | .pkl sequences/s | store sequences/s | store / pkl |",
        "|---|---:|---:|---:|",
        *[f"| {name} | {p:,.0f} | {s:,.0f} | {s / p:.1f}x |" for name, p, s in rows], "",
        f"Opening the source with a cold cache: .pkl (listing {sequences} folders) {open_pkl:.3f} s, "
        f"store (reading and checking the index) {open_store:.3f} s. The virtual disk here reads about 0.4-1.6 "
        "GB/s after the drop and is latency-bound for small random reads.", "",
        "Access: `load(i)` and the clip slice, with the random draws made before the timed loop; the store hands "
        "out a view into its memory map, a .pkl costs an open, a read of the whole file and the unpickling copies. "
        "Copying the clip out (123 kB, as building a batch must) takes about 12 us at this machine's memory "
        "bandwidth and bounds the store there, so the ratio with the copy included is about 5x, while sequence "
        "access alone is over 10x. Cold, the store asks for one readahead of the whole sequence (madvise "
        "WILLNEED) instead of letting page faults read it in small synchronous windows; without that request "
        "it was 0.7x the .pkl cold.", "",
    ])
    if args.write_results:
        write_section(SECTION, text)
        print("written to benchmarks/RESULTS.md")


if __name__ == "__main__":
    main()
