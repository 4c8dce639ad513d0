"""Writing a SynthGait dataset to disk in CASIA-B's shape.

Every random draw is seeded by its place in the dataset, not by the order of work: a subject by
``(seed, subject)``, a walk by ``(seed, subject, type)``, one camera's recording by ``(seed, subject,
type, view)``, indices taken in the full CASIA-B lists. So the same subject looks the same whatever
``subjects``, ``views`` or ``types`` subset is asked for, and any split of the work gives the same bytes.

Two outputs:
- default: OpenGait's pretreated layout ``<output>/<subject>/<type>/<view>/<view>.pkl``, uint8
  ``[T, size, size]`` 0/255, normalised as the pretreatment of raw data does (``render.pretreat``);
- ``raw=True``: full camera frames ``<output>/<subject>/<type>/<view>/<frame:03d>.png`` (CASIA-B's raw
  layout, walker crossing the frame, empty frames kept), *instead of* the ``.pkl`` files. Raw output is
  the input of a pretreatment step; writing both in one tree would put two layouts under one root.

``<output>/partition.json`` splits the subjects like CASIA-B (first ~60% train, rest test) and
``<output>/synthgait.json``, written last, records the parameters and every file with its size and CRC32,
checked when the dataset is reused. The dataset is written into a temporary directory beside ``output``
and renamed into place when complete, under a lock (``.<output>.lock`` beside it): a second run for the
same directory waits and then reuses the dataset. A directory holding only ``.synthgait-incomplete.json``
is an interrupted run of an older gaitrec and is replaced.
"""
from __future__ import annotations

import json
import shutil
import time
import warnings
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from tqdm import tqdm

from ..data.pickle_io import save_array
from ..files import atomic_write_bytes, building_directory
from ..errors import ConfigError, DataError
from ..locking import OutputLock
from .body import TYPES, VIEWS, Subject, Walk, sample_subject, sample_walk
from .render import camera_placement, centred_placement, pretreat, render_walk
from .walk import body_shape

FORMAT_VERSION = 2
MARKER = "synthgait.json"
IN_PROGRESS = ".synthgait-incomplete.json"
TRAIN_FRACTION = 0.6  # CASIA-B: 74 of 124 subjects train
DEFAULT_SUBJECTS = 50
DEFAULT_FRAMES = 30


def subject_id(index: int, subjects: int) -> str:
    """``001``, ``002``, ... (wider when there are more than 999 subjects)."""
    return f"{index + 1:0{max(3, len(str(subjects)))}d}"


def make_subject(seed: int, index: int) -> Subject:
    return sample_subject(np.random.default_rng([seed, 0, index]))


def make_walk(seed: int, index: int, subject: Subject, walk_type: str) -> Walk:
    return sample_walk(subject, walk_type, np.random.default_rng([seed, 1, index, TYPES.index(walk_type)]))


def recording_rng(seed: int, index: int, walk_type: str, view: str) -> np.random.Generator:
    return np.random.default_rng([seed, 2, index, TYPES.index(walk_type), VIEWS.index(view)])


def render_views(seed: int, index: int, walk_type: str, views: Iterable[str], frames: int, size: int = 64,
                 raw: bool = False, raw_size: tuple[int, int] = (240, 320), artefacts: bool = True,
                 subject: Subject | None = None) -> dict[str, np.ndarray]:
    """The silhouettes of one walk (subject ``index``, 0-based) from each of ``views``: pretreated
    uint8 ``[T', size, size]`` arrays, or with ``raw`` full camera frames ``[frames, *raw_size]``."""
    subject = subject or make_subject(seed, index)
    shape = body_shape(make_walk(seed, index, subject, walk_type), frames)
    body_pixels = int(1.5 * size)  # render above the output size: the bicubic resize then smooths edges
    out = {}
    for view in views:
        if raw:
            placement = camera_placement(shape, view, tuple(raw_size))
        else:
            placement = centred_placement(shape, subject.height, body_pixels)
        images = render_walk(shape, view, placement, recording_rng(seed, index, walk_type, view), artefacts)
        out[view] = images if raw else pretreat(images, size)
    return out


def generate_dataset(output: str | Path, subjects: int = DEFAULT_SUBJECTS, frames: int = DEFAULT_FRAMES,
                     size: int = 64, seed: int = 0, views: Iterable[str | int] | None = None,
                     types: Iterable[str] | None = None, raw: bool = False,
                     raw_size: tuple[int, int] = (240, 320), progress: bool = True) -> dict:
    """Generate SynthGait into ``output`` and return a summary
    ``{subjects, sequences, frames, seconds, output, reused}``.

    ``views`` and ``types`` pick subsets of CASIA-B's 11 views (``"000"``..``"180"``, ints accepted) and
    10 types (``nm-01``..``cl-02``). Refuses a non-empty directory that is not a SynthGait dataset
    (FileExistsError) and a SynthGait dataset made with other parameters (ValueError); returns at once
    when ``output`` already holds this very dataset; restarts a run that was interrupted.
    """
    parameters = _parameters(subjects, frames, size, seed, views, types, raw, raw_size)
    output = Path(output)
    lock = OutputLock(output.parent / f".{output.name}.lock", str(output), wait=True)
    try:
        existing = _check_output(output, parameters)
        if existing is not None:
            return existing
        for stale in output.parent.glob(f".{output.name}.*.tmp"):  # killed runs' leftovers: ours under the lock
            shutil.rmtree(stale, ignore_errors=True)
        # An existing output is empty, or an older gaitrec's interrupted run (checked above): it is replaced.
        with building_directory(output) as temp:
            summary = _generate(temp, parameters, raw_size, progress)
            summary["output"] = str(output)
        return summary
    finally:
        lock.release()


def _generate(output: Path, parameters: dict, raw_size, progress: bool) -> dict:
    """Write the dataset of ``parameters`` into the (new, private) folder ``output``; returns the summary."""
    subjects, frames, size, seed = (parameters[k] for k in ("subjects", "frames", "size", "seed"))
    raw = parameters["raw"]
    start = time.perf_counter()
    ids = [subject_id(i, subjects) for i in range(subjects)]
    sequences = written_frames = 0
    # Files are written by a few threads while the next walk renders: each save waits on fsync, which
    # releases the GIL, so the disk's latency hides behind the rendering instead of adding to it.
    with ThreadPoolExecutor(max_workers=4) as writers:
        pending: list[Future] = []
        for index in tqdm(range(subjects), desc="SynthGait", unit="subject", disable=not progress):
            subject = make_subject(seed, index)
            for walk_type in parameters["types"]:
                rendered = render_views(seed, index, walk_type, parameters["views"], frames, size, raw,
                                        tuple(raw_size), subject=subject)
                for view, images in rendered.items():
                    if not len(images):  # as the pretreatment: a walk without usable frames writes nothing
                        continue
                    folder = output / ids[index] / walk_type / view
                    if raw:
                        pending.append(writers.submit(_write_pngs, folder, images))
                    else:
                        pending.append(writers.submit(save_array, folder / f"{view}.pkl", images))
                    sequences += 1
                    written_frames += len(images)
            pending = _wait_for(pending, keep=64)
        _wait_for(pending, keep=0)

    train = max(1, min(subjects - 1, round(TRAIN_FRACTION * subjects))) if subjects > 1 else subjects
    partition = {"TRAIN_SET": ids[:train], "TEST_SET": ids[train:]}
    atomic_write_bytes(output / "partition.json", json.dumps(partition, indent=1).encode())
    summary = {"subjects": subjects, "sequences": sequences, "frames": written_frames,
               "seconds": round(time.perf_counter() - start, 3), "output": str(output), "reused": False}
    marker = {"format": "SynthGait", "version": FORMAT_VERSION, "parameters": parameters, "summary": summary,
              "files": _file_list(output)}
    atomic_write_bytes(output / MARKER, json.dumps(marker, indent=1).encode())
    return summary


def _parameters(subjects, frames, size, seed, views, types, raw, raw_size) -> dict:
    """Validated generation parameters in JSON form (the marker compares them as such)."""
    for name, value, low in (("subjects", subjects, 1), ("frames", frames, 1), ("size", size, 16), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"SynthGait: {name} must be an integer >= {low}, got {value!r}")
    if size % 2:
        raise ConfigError(f"SynthGait: size must be even (the window is centred), got {size}")
    views = list(VIEWS) if views is None else [f"{int(v):03d}" if str(v).isdigit() else str(v) for v in views]
    unknown = [v for v in views if v not in VIEWS]
    if unknown or not views:
        raise ConfigError(f"SynthGait: unknown views {unknown or views}; choose from {', '.join(VIEWS)}")
    types = list(TYPES) if types is None else [str(t) for t in types]
    unknown = [t for t in types if t not in TYPES]
    if unknown or not types:
        raise ConfigError(f"SynthGait: unknown types {unknown or types}; choose from {', '.join(TYPES)}")
    raw_size = [int(x) for x in raw_size]
    if len(raw_size) != 2 or min(raw_size) < 32:
        raise ConfigError(f"SynthGait: raw_size must be (height, width), each at least 32, got {raw_size}")
    return {"subjects": int(subjects), "frames": int(frames), "size": int(size), "seed": int(seed),
            "views": views, "types": types, "raw": bool(raw), "raw_size": raw_size if raw else None}


def _check_output(output: Path, parameters: dict) -> dict | None:
    """The summary of the dataset already in ``output`` if it is this one; None if ``output`` is free
    (missing, empty, or an interrupted run, which is cleared); raises otherwise."""
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"{output} is a file; SynthGait needs a new or empty directory")
    marker = output / MARKER
    if marker.is_file():
        try:
            recorded = json.loads(marker.read_text())
            same = recorded["version"] == FORMAT_VERSION and recorded["parameters"] == parameters
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(f"{marker} is unreadable; delete {output} or choose another output directory") from None
        if not same:
            differences = {k: (recorded["parameters"].get(k), v) for k, v in parameters.items()
                           if recorded["parameters"].get(k) != v}
            raise ConfigError(f"{output} holds a SynthGait dataset made with other parameters "
                             f"(recorded vs requested: {differences}); choose another output directory or delete it")
        _verify_files(output, recorded.get("files"))
        return dict(recorded["summary"], seconds=0.0, output=str(output), reused=True)
    if not output.is_dir() or not any(output.iterdir()):
        return None
    if not (output / IN_PROGRESS).is_file():
        raise FileExistsError(f"{output} is not empty and is not a SynthGait dataset; refusing to write into it "
                              "(choose a new or empty directory)")
    return None  # an interrupted run of an older gaitrec: replaced once the new dataset is complete


def _file_list(folder: Path) -> dict[str, list[int]]:
    """``{relative path: [size, crc32]}`` of every file under ``folder``."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        files[path.relative_to(folder).as_posix()] = [len(data), zlib.crc32(data)]
    return files


def _verify_files(output: Path, files: dict | None) -> None:
    """A reused dataset must still hold every file its marker lists, with the same size and CRC."""
    if files is None:
        warnings.warn(f"{output}: written by an older gaitrec without a file list; reused unverified")
        return
    for name, (size, crc) in files.items():
        path = output / name
        if not path.is_file():
            raise DataError(f"{path}: missing from the SynthGait dataset in {output}; delete {output} to regenerate it")
        data = path.read_bytes()
        if len(data) != size or zlib.crc32(data) != crc:
            raise DataError(f"{path}: changed or corrupt (size/CRC differ from {output / MARKER}); delete {output} "
                            "to regenerate it")


def _wait_for(pending: list[Future], keep: int) -> list[Future]:
    """Wait until at most ``keep`` writes are in flight (bounding memory), re-raising any write error."""
    while len(pending) > keep:
        pending.pop(0).result()
    return pending


def _write_pngs(folder: Path, images: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for number, image in enumerate(images, start=1):
        path = folder / f"{number:03d}.png"
        if not cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise OSError(f"could not write {path}")
