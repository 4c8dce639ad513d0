"""Raw silhouette PNGs -> one uint8 array [T, img_size, img_size] per sequence, as OpenGait prepares them.

Every frame of a sequence (PNG files in sorted name order, ``gei.png`` ignored) is read as 8-bit grayscale
and aligned (``align_frame``): dropped when its pixel sum is at most 10000; rows cropped to the foreground;
resized with bicubic interpolation to height ``img_size`` keeping the aspect ratio; centred on the column
that splits the foreground mass in two; cut to ``img_size`` columns. GREW frames are already aligned and
are kept as read. A sequence without a valid frame is skipped and reported, one with fewer than 5 gets a
warning. The output is byte-identical to OpenGait's ``datasets/pretreatment.py``.

Raw layouts, mapped to (subject, type, view) without an intermediate rearranged copy:

- CASIA-B, Gait3D: ``<subject>/<type>/<view>/*.png`` (the last three folders above each frame).
- OU-MVLP: ``Silhouette_<view>-<seq>/<subject>/*.png`` -> (subject, seq, view).
- GREW: ``train/<subject>/<sequence>/`` -> (``<subject>train``, ``00``, sequence);
  ``test/gallery/<subject>/<sequence>/`` -> (subject, ``01``, ``02``, ... per subject in sorted folder
  order, sequence); ``test/probe/<sequence>/`` -> (``probe``, ``03``, sequence); ``distractor/`` unused.

Output: OpenGait's layout ``<out>/<subject>/<type>/<view>/<view>.pkl``, each file written atomically so
that an existing file means a finished sequence and a re-run resumes; or a packed store
(``gaitrec.data.store``), built from a ``.pkl`` staging folder beside it once every sequence is done.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import re
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import DataError
from ..benchmarks import benchmark, benchmarks_with
from .pickle_io import save_array

log = logging.getLogger(__name__)

MIN_FRAMES = 5  # fewer valid frames than this gets a warning, as in OpenGait
EMPTY_FRAME_SUM = 10000  # a frame whose pixel sum is at most this has no silhouette (about 40 white pixels)

SequenceKey = tuple[str, str, str]  # (subject, type, view)


def dataset_name(name: str) -> str:
    """The canonical name of a benchmark pretreatment knows (one with a ``raw_layout``) for a spelling like
    ``casia-b``."""
    try:
        return benchmark(name, among=benchmarks_with("raw_layout")).name
    except ValueError as err:
        raise DataError(str(err)) from None


# --------------------------------------------------------------------------------------------- one frame
def align_frame(frame: np.ndarray, img_size: int = 64) -> tuple[np.ndarray | None, str | None]:
    """Align one grayscale uint8 frame [H, W]: returns ``(frame [img_size, img_size], None)`` or
    ``(None, reason)`` when the frame is dropped."""
    if int(frame.sum(dtype=np.int64)) <= EMPTY_FRAME_SUM:
        return None, "no data"
    rows = np.flatnonzero(frame.any(axis=1))
    frame = frame[rows[0]: rows[-1] + 1]
    height, width = frame.shape
    # Width from the ratio computed first, as OpenGait does (int() truncates).
    new_width = int(img_size * (width / height))
    if new_width == 0:
        return None, "too narrow"
    frame = cv2.resize(frame, (new_width, img_size), interpolation=cv2.INTER_CUBIC)

    # Centre: the first column where the cumulative column mass passes half of the total.
    column_mass = frame.sum(axis=0, dtype=np.int64).cumsum()
    past_half = np.flatnonzero(2 * column_mass > column_mass[-1])
    if past_half.size == 0 or past_half[0] == 0:
        return None, "no centre"
    centre = int(past_half[0])

    half = img_size // 2
    left, right = centre - half, centre + half
    if left <= 0 or right >= frame.shape[1]:
        padding = np.zeros((img_size, half), dtype=np.uint8)
        frame = np.concatenate([padding, frame, padding], axis=1)
        left, right = left + half, right + half
    return np.ascontiguousarray(frame[:, left:right], dtype=np.uint8), None


# ------------------------------------------------------------------------------------------ one sequence
@dataclass
class SequenceResult:
    key: SequenceKey
    frames: np.ndarray | None  # [T, H, W] uint8, None when no frame was valid
    dropped: Counter = field(default_factory=Counter)  # reason -> frames
    problem: str | None = None  # why the sequence could not be built at all


def process_sequence(key: SequenceKey, frame_paths: list[Path], img_size: int = 64,
                     align: bool = True) -> SequenceResult:
    """Read and align the frames of one sequence (frames in sorted name order)."""
    kept, dropped = [], Counter()
    for path in sorted(frame_paths, key=lambda p: p.name):
        frame = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if frame is None:
            log.warning("%s: unreadable image, frame dropped", path)
            dropped["unreadable"] += 1
            continue
        if align:
            frame, reason = align_frame(frame, img_size)
            if frame is None:
                log.debug("%s: frame dropped (%s)", path, reason)
                dropped[reason] += 1
                continue
        kept.append(frame.astype(np.uint8, copy=False))
    if not kept:
        return SequenceResult(key, None, dropped)
    shapes = {f.shape for f in kept}
    if len(shapes) > 1:
        return SequenceResult(key, None, dropped, problem="frames of different sizes "
                              + ", ".join(f"{h}x{w}" for h, w in sorted(shapes)))
    return SequenceResult(key, np.stack(kept), dropped)


def output_file(output_root: Path, key: SequenceKey) -> Path:
    """OpenGait's file for a sequence: ``<out>/<subject>/<type>/<view>/<view>.pkl``."""
    subject, type_, view = key
    return output_root / subject / type_ / view / f"{view}.pkl"


def _pretreat_one(job) -> tuple[SequenceKey, int, Counter, str | None]:
    """Pool task: build one sequence and write its file. Returns (key, frames written, dropped, problem)."""
    key, frame_paths, output_root, img_size, align = job
    result = process_sequence(key, frame_paths, img_size, align)
    if result.frames is None:
        return key, 0, result.dropped, result.problem
    target = output_file(output_root, key)
    for stale in target.parent.glob(f".{target.name}.*.tmp"):  # left by an interrupted run
        stale.unlink()
    save_array(target, result.frames)
    return key, len(result.frames), result.dropped, None


# ------------------------------------------------------------------------------------------ raw layouts
def _png_files(folder: Path):
    return (p for p in folder.iterdir() if p.is_file() and p.suffix == ".png" and p.name != "gei.png")


def _list_nested(root: Path) -> dict[SequenceKey, list[Path]]:
    """Frames grouped by the last three folders above them (CASIA-B, Gait3D)."""
    groups: dict[SequenceKey, list[Path]] = defaultdict(list)
    parents: dict[SequenceKey, Path] = {}
    for path in root.rglob("*.png"):
        if path.name == "gei.png" or not path.is_file():
            continue
        parts = path.relative_to(root).parts
        if len(parts) < 4:
            raise DataError(f"{path}: expected frames at <subject>/<type>/<view>/<frame>.png under {root}")
        key = (parts[-4], parts[-3], parts[-2])
        if parents.setdefault(key, path.parent) != path.parent:
            raise DataError(f"sequence {'/'.join(key)} found in two folders, {parents[key]} and {path.parent}: "
                             "pretreat each copy separately")
        groups[key].append(path)
    return groups


def _list_oumvlp(root: Path) -> dict[SequenceKey, list[Path]]:
    groups: dict[SequenceKey, list[Path]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        match = re.fullmatch(r"Silhouette_([^-]+)-(.+)", folder.name)
        if match is None:
            raise DataError(f"{folder}: OU-MVLP raw folders are named Silhouette_<view>-<seq>")
        view, seq = match.groups()
        for subject in sorted(p for p in folder.iterdir() if p.is_dir()):
            frames = list(_png_files(subject))
            if frames:
                groups[(subject.name, seq, view)] = frames
    return groups


def _list_grew(root: Path) -> dict[SequenceKey, list[Path]]:
    train, gallery, probe = root / "train", root / "test" / "gallery", root / "test" / "probe"
    if not (train.is_dir() or gallery.is_dir() or probe.is_dir()):
        raise DataError(f"{root}: no GREW train/, test/gallery/ or test/probe/ folder")
    groups: dict[SequenceKey, list[Path]] = {}

    def add(key, folder):
        frames = list(_png_files(folder))
        if frames:
            groups[key] = frames

    def subfolders(folder):
        return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    for subject in subfolders(train):
        for sequence in subfolders(subject):
            add((subject.name + "train", "00", sequence.name), sequence)
    for subject in subfolders(gallery):
        # Gallery sequences are numbered per subject, in sorted folder order.
        for number, sequence in enumerate(subfolders(subject), start=1):
            add((subject.name, f"{number:02d}", sequence.name), sequence)
    for sequence in subfolders(probe):
        add(("probe", "03", sequence.name), sequence)
    return groups


# Benchmark.raw_layout -> the function that lists a raw dataset in that layout.
RAW_LAYOUTS = {"nested": _list_nested, "oumvlp": _list_oumvlp, "grew": _list_grew}


def list_raw_sequences(input_root: str | Path, dataset: str = "CASIA-B") -> dict[SequenceKey, list[Path]]:
    """The frames of every sequence of a raw dataset, keyed by (subject, type, view)."""
    root = Path(input_root)
    if not root.is_dir():
        raise DataError(f"raw dataset folder not found: {root}")
    layout = benchmark(dataset_name(dataset)).raw_layout
    return RAW_LAYOUTS[layout](root)


# ------------------------------------------------------------------------------------------ whole dataset
def pretreat(input_root: str | Path, output_root: str | Path, dataset: str = "CASIA-B", img_size: int = 64,
             workers: int | None = None, output_format: str = "pkl", progress: bool = True) -> dict:
    """Pretreat a raw dataset into ``.pkl`` files or a packed store; returns a summary (see ``format_summary``).

    Sequences whose output file already exists are not redone, so an interrupted run resumes. ``workers``
    processes work in parallel (default: the free cores, see ``gaitrec.threads``; 0 or 1 runs in this
    process).
    """
    from . import store

    dataset = dataset_name(dataset)
    input_root, output_root = Path(input_root), Path(output_root)
    if output_format not in ("pkl", "store"):
        raise DataError(f"output format {output_format!r}: choose pkl or store")
    if img_size <= 0 or img_size % 2:
        raise DataError(f"img_size {img_size}: must be a positive even number of pixels")
    if output_format == "store":
        if output_root.exists() and any(output_root.iterdir()):
            raise FileExistsError(f"{output_root} already exists and is not empty: remove it or choose another "
                                  "output folder")
        pkl_root = output_root.with_name(output_root.name + ".partial-pkl")
    else:
        if store.is_store(output_root):
            raise DataError(f"{output_root} is a packed store: write .pkl output to another folder")
        pkl_root = output_root

    sequences = list_raw_sequences(input_root, dataset)
    if not sequences:
        raise DataError(f"no PNG frames found under {input_root} in the {dataset} raw layout")
    done = [k for k in sequences if output_file(pkl_root, k).is_file()]
    done_set = set(done)
    align = not benchmark(dataset).aligned
    jobs = [(k, sequences[k], pkl_root, img_size, align) for k in sorted(sequences) if k not in done_set]

    summary = {
        "dataset": dataset, "input": str(input_root), "output": str(output_root), "format": output_format,
        "sequences": len(sequences), "already_done": len(done), "written": 0, "frames_written": 0,
        "frames_dropped": Counter(), "skipped": [], "short": [],
    }
    if workers is None:
        from ..threads import choose_threads

        workers = choose_threads()
    bar = tqdm(total=len(jobs), desc=f"pretreat {dataset}", unit="seq", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        with multiprocessing.Pool(min(workers, len(jobs))) as pool:
            for outcome in pool.imap_unordered(_pretreat_one, jobs, chunksize=4):
                _record(summary, *outcome)
                bar.update()
    else:
        for job in jobs:
            _record(summary, *_pretreat_one(job))
            bar.update()
    bar.close()
    summary["frames_dropped"] = dict(summary["frames_dropped"])
    summary["skipped"].sort(key=lambda s: s["sequence"])
    summary["short"].sort(key=lambda s: s["sequence"])

    if output_format == "store":
        if summary["written"] + summary["already_done"] == 0:
            raise DataError(f"no sequence of {input_root} has a valid frame: nothing to pack")
        store.pack(pkl_root, output_root, progress=progress)
        shutil.rmtree(pkl_root)
    return summary


def _record(summary: dict, key: SequenceKey, frames: int, dropped: Counter, problem: str | None) -> None:
    name = "/".join(key)
    summary["frames_dropped"].update(dropped)
    if frames == 0:
        if problem is None:
            reasons = ", ".join(f"{n} {r}" for r, n in sorted(dropped.items())) or "no frames"
            problem = f"no valid frame ({reasons})"
        summary["skipped"].append({"sequence": name, "reason": problem})
        log.warning("sequence %s skipped: %s", name, problem)
        return
    summary["written"] += 1
    summary["frames_written"] += frames
    if frames < MIN_FRAMES:
        summary["short"].append({"sequence": name, "frames": frames})
        log.warning("sequence %s has only %d valid frames (fewer than %d)", name, frames, MIN_FRAMES)


def format_summary(summary: dict, limit: int = 20) -> str:
    """The summary of ``pretreat`` as console lines."""
    lines = [
        f"{summary['dataset']}: {summary['sequences']} sequences in {summary['input']}",
        f"written {summary['written']} sequences ({summary['frames_written']} frames) to {summary['output']} "
        f"[{summary['format']}], {summary['already_done']} already done, {len(summary['skipped'])} skipped",
    ]
    if summary["frames_dropped"]:
        lines.append("frames dropped: " + ", ".join(f"{n} {r}" for r, n in sorted(summary["frames_dropped"].items())))
    for title, entries, describe in (
            ("skipped", summary["skipped"], lambda s: s["reason"]),
            (f"fewer than {MIN_FRAMES} frames", summary["short"], lambda s: f"{s['frames']} frames")):
        if entries:
            lines.append(f"{title} ({len(entries)}):")
            lines += [f"  {s['sequence']}: {describe(s)}" for s in entries[:limit]]
            if len(entries) > limit:
                lines.append(f"  ... and {len(entries) - limit} more")
    return "\n".join(lines)
