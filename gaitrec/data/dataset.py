"""Datasets list sequences; they do not sample or transform.

A sequence is one walk of one subject under one condition (type) seen from one camera (view). Its frames
come from a *source* (``data.layout``): the OpenGait ``.pkl`` layout (``PklSource``) or the packed store
(``data.store``); ``open_source`` picks the one a root holds.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..benchmarks import PARTITION_DIR, benchmarks_with, find_benchmark  # noqa: F401 (PARTITION_DIR re-exported)
from ..config import DataConfig, read_section
from ..errors import DataError
from ..registry import ConfigError
from .layout import PklSource, SequenceInfo, SequenceSource  # noqa: F401 (re-exported)
from .store import StoreSource, is_store


def open_source(root: str | Path, data_in_use=None) -> SequenceSource:
    """The sequence source for a dataset root: a packed store if the root is one, else the ``.pkl`` layout."""
    root = Path(root)
    if is_store(root):
        return StoreSource(root)
    return PklSource(root, data_in_use)


def resolve_partition(path: str | Path | None, dataset_name: str | None = None) -> Path | None:
    """The partition file to use.

    An existing path is used as given. OpenGait configs name partitions by their place in OpenGait's tree
    (``./datasets/CASIA-B/CASIA-B.json``); when that path does not exist here, the file of the same name
    shipped with gaitrec is used. With no path, a known benchmark gets its shipped partition (OpenGait's
    defaults name CASIA-B's), anything else has none.
    """
    if path:
        path = Path(path)
        if path.is_file():
            return path
        shipped = PARTITION_DIR / path.name
        if shipped.is_file():
            return shipped
        raise ConfigError(f"dataset partition not found: {path}")
    bench = find_benchmark(dataset_name)
    return None if bench is None else bench.partition_path


def read_partition(path: str | Path, required: Sequence[str] = ("TRAIN_SET", "TEST_SET"),
                   error: type[ValueError] = ConfigError) -> dict[str, list[str]]:
    """A partition JSON: ``{"TRAIN_SET": [...], "TEST_SET": [...]}`` (Gait3D adds ``PROBE_SET``).

    ``required`` lists the keys that must hold lists; problems raise ``error`` (ConfigError for a config's
    partition, DataError where the file is evaluation data) naming the file.
    """
    path = Path(path)
    what = "probe set file" if required == ("PROBE_SET",) else "dataset partition"
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise error(f"{path}: not valid JSON ({err})") from None
    except UnicodeDecodeError as err:
        raise error(f"{path}: not a text file ({err})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object with {', '.join(required)} lists")
    for key in required:
        if not isinstance(data.get(key), list):
            if key == "PROBE_SET":
                raise error(f"{path}: no PROBE_SET list; expected a partition JSON with PROBE_SET entries "
                            "<subject>-<type>-<view>")
            raise error(f"{path}: missing list {key}")
    return {k: [str(s) for s in v] for k, v in data.items() if isinstance(v, list)}


def check_sequence_header(shape: tuple[int, ...], dtype: np.dtype, where: str) -> None:
    """A sequence must declare a non-empty [T, H, W] array of a numeric dtype (checked without its frames)."""
    if len(shape) != 3 or min(shape) == 0:
        raise DataError(f"{where}: expected frames [T, H, W] with T, H, W > 0, got shape {tuple(shape)}")
    if dtype.kind not in "biuf":
        raise DataError(f"{where}: expected uint8 silhouettes, got dtype {dtype}")


def check_sequence(frames: np.ndarray, where: str) -> np.ndarray:
    """Silhouettes as uint8 ``[T, H, W]``; raises DataError naming ``where`` for anything else.

    uint8 is the format. Other forms some pretreatment scripts write are converted explicitly, with a
    warning naming the file: bool (True -> 255), integers within 0..255, floats within 0..1 (scaled by 255)
    or within 0..255 (rounded). NaN, infinity, negative or larger values are refused.
    """
    check_sequence_header(frames.shape, frames.dtype, where)
    if frames.dtype == np.uint8:
        return frames
    if frames.dtype.kind == "b":
        warnings.warn(f"{where}: bool silhouettes converted to uint8 0/255")
        return frames.astype(np.uint8) * np.uint8(255)
    if frames.dtype.kind == "f" and not np.isfinite(frames).all():
        raise DataError(f"{where}: silhouettes contain NaN or infinity")
    low, high = frames.min(), frames.max()
    if low < 0 or high > 255:
        raise DataError(f"{where}: {frames.dtype} silhouettes range {low}..{high}, outside 0..255")
    if frames.dtype.kind == "f" and high <= 1:
        warnings.warn(f"{where}: {frames.dtype} silhouettes within 0..1 converted to uint8 (x255)")
        return np.rint(frames * 255).astype(np.uint8)
    warnings.warn(f"{where}: {frames.dtype} silhouettes converted to uint8")
    return np.rint(frames).astype(np.uint8)


class GaitDataset:
    """The sequences of some subjects of a source, with integer labels for training.

    ``labels`` index the sorted subject list of this dataset (training classes); ``subject`` strings are
    kept for evaluation. ``cache`` keeps loaded frames in memory. ``skip_bad`` checks every sequence once
    at construction and drops unreadable or empty ones with a warning naming each.
    """

    def __init__(self, source: SequenceSource, subjects: Sequence[str] | None = None, cache: bool = False,
                 skip_bad: bool = False, name: str = "dataset"):
        self.source = source
        wanted = None if subjects is None else set(subjects)
        self.indices = [i for i, s in enumerate(source.sequences) if wanted is None or s.subject in wanted]
        if not self.indices:
            raise ConfigError(f"{name}: no sequence on disk belongs to the partition's subjects")
        self.cache = cache
        self._cache: dict[int, np.ndarray] = {}
        self._frame_counts: dict[int, int] = {}  # from the headers, where the source has them
        for folder in getattr(source, "empty_folders", []):
            if not skip_bad:
                raise DataError(f"{folder}: sequence folder holds no .pkl file "
                                 "(set data_cfg.skip_bad_sequences: true to skip such sequences)")
            warnings.warn(f"{folder}: empty sequence folder skipped")
        self._check_headers(skip_bad)
        if skip_bad:
            self._drop_bad()
        self.relabel()

    def _check_headers(self, skip_bad: bool) -> None:
        """Every sequence's declared shape and dtype, at start: a truncated file stops the run now, not hours later."""
        header = getattr(self.source, "header", None)
        if header is None:
            return
        kept, bad = [], []
        for i in self.indices:
            where = self.source.sequences[i].location
            try:
                shape, dtype = header(i)
                check_sequence_header(shape, dtype, where)
                self._frame_counts[i] = int(shape[0])
                kept.append(i)
            except DataError as err:
                bad.append(str(err))
                if skip_bad:
                    warnings.warn(f"skipped: {err}")
        if bad and not skip_bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise DataError(f"{bad[0]}{more}; fix or remove such files, or set data_cfg.skip_bad_sequences: true "
                            "to skip them")
        if not kept:
            raise DataError("every sequence of the dataset is unreadable or empty")
        self.indices = kept

    def relabel(self) -> None:
        """Subjects and integer labels of the sequences this dataset holds (after any filtering)."""
        self.subjects = sorted({self.info(i).subject for i in range(len(self))})
        label_of = {s: k for k, s in enumerate(self.subjects)}
        self.labels = np.array([label_of[self.info(i).subject] for i in range(len(self))], dtype=np.int64)

    def _drop_bad(self):
        kept = []
        for i in self.indices:
            try:
                frames = check_sequence(self.source.load(i), self.source.sequences[i].location)
            except ValueError as err:
                warnings.warn(f"skipped: {err}")
                continue
            if self.cache:
                self._cache[i] = frames
            kept.append(i)
        if not kept:
            raise DataError("every sequence of the dataset is unreadable or empty")
        self.indices = kept

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def frame_counts(self) -> list[int] | None:
        """Frames of each sequence, known without reading them (from the files' headers), or None."""
        if not all(i in self._frame_counts for i in self.indices):
            return None
        return [self._frame_counts[i] for i in self.indices]

    def info(self, i: int) -> SequenceInfo:
        return self.source.sequences[self.indices[i]]

    def frames(self, i: int) -> np.ndarray:
        """uint8 frames [T, H, W] of sequence ``i``."""
        key = self.indices[i]
        if key in self._cache:
            return self._cache[key]
        frames = check_sequence(self.source.load(key), self.source.sequences[key].location)
        if self.cache:
            self._cache[key] = frames
        return frames


def build_datasets(data_cfg: dict, train: bool = True, test: bool = True) -> tuple[GaitDataset | None, GaitDataset | None]:
    """Train and test datasets from ``data_cfg``; without a partition every subject goes in both."""
    data = read_section(DataConfig, data_cfg)
    source = open_source(data.dataset_root, data.data_in_use)
    partition_file = resolve_partition(data.dataset_partition, data.dataset_name)
    partition = read_partition(partition_file) if partition_file else None
    if partition is None and train and test:
        warnings.warn("no dataset_partition: every subject is in both the train and the test set")
    if partition is not None:
        for key, wanted in (("TRAIN_SET", train), ("TEST_SET", test)):
            if wanted:
                check_partition_matches(source, partition[key], key, partition_file, data)
    common = dict(cache=data.cache, skip_bad=data.skip_bad_sequences)
    train_set = test_set = None
    if train:
        train_set = GaitDataset(source, partition["TRAIN_SET"] if partition else None, name="train set", **common)
    if test:
        test_set = GaitDataset(source, partition["TEST_SET"] if partition else None, name="test set", **common)
        if data.remove_no_gallery:
            remove_probes_without_gallery(test_set, data.test_dataset_name or data.dataset_name)
    return train_set, test_set


def check_partition_matches(source: SequenceSource, subjects: Sequence[str], key: str, partition_file: Path,
                            data: DataConfig) -> None:
    """Some sequence on disk must belong to the partition's ``key`` subjects, else say which partition was
    used and why (a benchmark config's partition applied to another dataset is the usual cause)."""
    wanted = set(subjects)
    if any(s.subject in wanted for s in source.sequences):
        return
    configured = data.dataset_partition
    origin = (f"data_cfg.dataset_partition: {configured}" if configured
              else f"the default partition of data_cfg.dataset_name {data.dataset_name!r}")
    message = (f"{key} of the partition {partition_file} ({origin}) names no subject of the "
               f"{len({s.subject for s in source.sequences})} found under {data.dataset_root}")
    own = Path(data.dataset_root) / "partition.json"
    if own.is_file() and own.resolve() != Path(partition_file).resolve():
        message += (f"; the dataset has its own partition: pass --set data_cfg.dataset_partition={own}")
    else:
        message += "; set data_cfg.dataset_partition to this dataset's partition JSON"
    raise ConfigError(message)


def remove_probes_without_gallery(dataset: GaitDataset, dataset_name: str) -> int:
    """Drop test sequences of subjects that have no gallery sequence; returns how many were dropped.

    Without this, such probes stay in the test set and count as misses (OpenGait's OU-MVLP figures).
    """
    bench = find_benchmark(dataset_name)
    if bench is None or not bench.gallery_types:
        applies = ", ".join(b.name for b in benchmarks_with("gallery_types"))
        raise ConfigError(f"data_cfg.remove_no_gallery applies to {applies} only, not {dataset_name!r}")
    gallery = bench.gallery_types
    with_gallery = {dataset.info(i).subject for i in range(len(dataset)) if dataset.info(i).type in gallery}
    kept = [key for i, key in enumerate(dataset.indices) if dataset.info(i).subject in with_gallery]
    dropped = len(dataset.indices) - len(kept)
    if not kept:
        raise DataError("remove_no_gallery: no test subject has a gallery sequence")
    dataset.indices = kept
    dataset.relabel()
    if dropped:
        warnings.warn(f"remove_no_gallery: dropped {dropped} test sequence(s) of subjects without a gallery sequence")
    return dropped
