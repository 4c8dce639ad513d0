"""What is in a pretreated dataset: counts, frame statistics, gaps against the protocol and the partition.

Works on any source ``open_source`` opens (the ``.pkl`` layout or a packed store). ``dataset_info`` returns
plain data, ``format_info`` turns it into console lines, ``write_contact_sheet`` draws a few frames of a
few random sequences to eyeball the alignment.
"""
from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from tqdm import tqdm

from ..benchmarks import benchmarks_with, find_benchmark
from ..errors import DataError
from .dataset import check_sequence, open_source, read_partition

# Types and views every subject should have, for the benchmarks with a full subject x type x view grid.
GRIDS: dict[str, tuple[list[str], list[str]]] = {b.name: (list(b.types), list(b.views))
                                                 for b in benchmarks_with("types")}
SHORT_SEQUENCE = 5  # fewer frames than this is worth a look (OpenGait warns at pretreatment)


def _guess_protocol(partition_path: Path | None, types: set[str], views: set[str]) -> str | None:
    """A dataset whose grid to check: named by the partition file, else the one whose grid holds the data."""
    named = find_benchmark(partition_path.stem) if partition_path is not None else None
    if named is not None and named.name in GRIDS:
        return named.name
    for name, (expected_types, expected_views) in GRIDS.items():
        if types <= set(expected_types) and views <= set(expected_views):
            return name
    return None


def dataset_info(root: str | Path, partition: str | Path | Mapping[str, Sequence[str]] | None = None,
                 protocol_types: Sequence[str] | None = None, protocol_views: Sequence[str] | None = None,
                 dataset: str | None = None, progress: bool = False) -> dict:
    """Summary of a pretreated dataset.

    Missing subject/type/view combinations are checked against ``protocol_types`` x ``protocol_views``
    when given, else the grid of ``dataset`` (or of the dataset the partition file is named after, or of a
    known dataset whose grid holds every type and view on disk): the benchmarks with ``types`` and ``views``. ``partition`` (a JSON
    path or a dict with TRAIN_SET/TEST_SET) adds subjects on disk outside it and partition subjects absent
    from disk. Frame counts of a ``.pkl`` dataset need every file read.
    """
    source = open_source(root)
    sequences = source.sequences
    kind = "store" if hasattr(source, "frame_count") else "pkl"
    frame_counts, shapes, bad = [], Counter(), []
    for i in tqdm(range(len(sequences)), desc="reading", unit="seq", disable=not progress):
        if kind == "store":
            frame_counts.append(source.frame_count(i))
            shapes[source.frame_shape(i)] += 1
            continue
        try:
            frames = check_sequence(source.load(i), sequences[i].location)
        except DataError as err:  # reported per file below; the summary covers the readable sequences
            bad.append(str(err))
            frame_counts.append(0)
            continue
        frame_counts.append(int(frames.shape[0]))
        shapes[tuple(int(x) for x in frames.shape[1:])] += 1
    counts = np.array(frame_counts, dtype=np.int64)
    subjects = sorted({s.subject for s in sequences})
    types = Counter(s.type for s in sequences)
    views = Counter(s.view for s in sequences)
    warnings_: list[str] = []

    partition_path = None
    if isinstance(partition, (str, Path)):
        partition_path = Path(partition)
        partition = read_partition(partition_path)

    if protocol_types is None and protocol_views is None:
        name = dataset or _guess_protocol(partition_path, set(types), set(views))
        if name is not None:
            bench = find_benchmark(name)
            if bench is None or bench.name not in GRIDS:
                raise DataError(f"no type/view grid known for dataset {name!r}: known {', '.join(GRIDS)}")
            name = bench.name
            protocol_types, protocol_views = GRIDS[name]
    else:
        name = dataset
    missing = None
    if protocol_types is not None or protocol_views is not None:
        expected_types = sorted(protocol_types) if protocol_types is not None else sorted(types)
        expected_views = sorted(protocol_views) if protocol_views is not None else sorted(views)
        present = {(s.subject, s.type, s.view) for s in sequences}
        missing = [f"{s}/{t}/{v}" for s in subjects for t in expected_types for v in expected_views
                   if (s, t, v) not in present]
        unexpected = sorted(set(types) - set(expected_types)) + sorted(set(views) - set(expected_views))
        if unexpected:
            warnings_.append(f"types/views outside the protocol: {', '.join(unexpected)}")
        if missing:
            warnings_.append(f"{len(missing)} subject/type/view combinations missing")

    partition_report = None
    if partition is not None:
        on_disk = set(subjects)
        listed = set().union(*(set(partition.get(k, [])) for k in ("TRAIN_SET", "TEST_SET")))
        partition_report = {
            "path": None if partition_path is None else str(partition_path),
            "not_in_partition": sorted(on_disk - listed),
            "missing_on_disk": {k: sorted(set(partition.get(k, [])) - on_disk) for k in ("TRAIN_SET", "TEST_SET")},
            "on_disk": {k: len(set(partition.get(k, [])) & on_disk) for k in ("TRAIN_SET", "TEST_SET")},
        }
        if partition_report["not_in_partition"]:
            warnings_.append(f"{len(partition_report['not_in_partition'])} subjects on disk are in no partition set")
        for key, absent in partition_report["missing_on_disk"].items():
            if absent:
                warnings_.append(f"{len(absent)} {key} subjects of the partition are missing on disk")

    if bad:
        warnings_.append(f"{len(bad)} unusable sequence file(s): training refuses them unless "
                         "data_cfg.skip_bad_sequences is true")
    short = [f"{s.subject}/{s.type}/{s.view}" for s, n in zip(sequences, frame_counts) if n < SHORT_SEQUENCE]
    if short:
        warnings_.append(f"{len(short)} sequences have fewer than {SHORT_SEQUENCE} frames")
    return {
        "root": str(root), "format": kind, "protocol": name,
        "subjects": len(subjects), "sequences": len(sequences),
        "per_type": dict(sorted(types.items())), "per_view": dict(sorted(views.items())),
        "frames": {"total": int(counts.sum()), "min": int(counts.min()), "mean": float(counts.mean()),
                   "max": int(counts.max())},
        "frame_shapes": {"x".join(map(str, shape)): n for shape, n in sorted(shapes.items())},
        "short_sequences": short, "bad_sequences": bad,
        "expected": None if missing is None else {"types": expected_types, "views": expected_views},
        "missing": missing, "partition": partition_report, "warnings": warnings_,
    }


def verify_dataset(root: str | Path, progress: bool = False) -> dict:
    """Read and check every sequence of a dataset: a store's CRCs (index, each sequence, whole file), or
    every ``.pkl`` file of the pkl layout (safe unpickling, silhouette shape, dtype and values).

    Returns ``{"root", "format", "sequences", "bad": [message, ...]}``; raises DataError when the dataset
    cannot be opened at all.
    """
    from . import store

    if store.is_store(root):
        source = store.StoreSource(root)  # the index's checksum and layout are checked here
        bad = store.verify_store(root, progress=progress)
        return {"root": str(root), "format": "store", "sequences": len(source), "bad": bad}
    source = open_source(root)
    bad = [f"{folder}: sequence folder holds no .pkl file" for folder in getattr(source, "empty_folders", [])]
    for i in tqdm(range(len(source.sequences)), desc="verify", unit="seq", disable=not progress):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # conversions are fine here; only unusable files are reported
                check_sequence(source.load(i), source.sequences[i].location)
        except DataError as err:
            bad.append(str(err))
    return {"root": str(root), "format": "pkl", "sequences": len(source.sequences), "bad": bad}


def format_info(info: dict, limit: int = 10) -> str:
    """``dataset_info`` as console lines."""
    def listing(items: Sequence[str]) -> str:
        shown = ", ".join(items[:limit])
        return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")

    frames = info["frames"]
    lines = [
        f"{info['root']} [{info['format']}]: {info['subjects']} subjects, {info['sequences']} sequences, "
        f"{frames['total']} frames",
        f"frames per sequence: min {frames['min']}, mean {frames['mean']:.1f}, max {frames['max']}",
        "frame sizes: " + ", ".join(f"{k} ({n})" for k, n in info["frame_shapes"].items()),
        "per type: " + ", ".join(f"{k} {n}" for k, n in info["per_type"].items()),
        "per view: " + ", ".join(f"{k} {n}" for k, n in info["per_view"].items()),
    ]
    if info["missing"] is not None:
        grid = f"{info['protocol']} grid" if info["protocol"] else "the given types x views"
        lines.append(f"missing against {grid}: {len(info['missing'])}"
                     + (f" ({listing(info['missing'])})" if info["missing"] else ""))
    partition = info["partition"]
    if partition is not None:
        lines.append("partition: " + ", ".join(f"{k} {n} subjects on disk" for k, n in partition["on_disk"].items()))
        if partition["not_in_partition"]:
            lines.append(f"  on disk, in no partition set: {listing(partition['not_in_partition'])}")
        for key, absent in partition["missing_on_disk"].items():
            if absent:
                lines.append(f"  {key} subjects missing on disk: {listing(absent)}")
    lines += [f"bad sequence: {b}" for b in info.get("bad_sequences", [])]
    if info["short_sequences"]:
        lines.append(f"fewer than {SHORT_SEQUENCE} frames: {listing(info['short_sequences'])}")
    lines += [f"warning: {w}" for w in info["warnings"]]
    return "\n".join(lines)


def write_contact_sheet(root: str | Path, png_path: str | Path, n: int = 8, seed: int = 0,
                        frames_per_sequence: int = 6) -> Path:
    """Draw ``frames_per_sequence`` evenly spaced frames of ``n`` random sequences, one row each, to a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    source = open_source(root)
    rng = np.random.default_rng(seed)
    picks = sorted(rng.choice(len(source.sequences), size=min(n, len(source.sequences)), replace=False))
    figure = Figure(figsize=(1.2 * frames_per_sequence, 1.3 * len(picks)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(picks), frames_per_sequence, squeeze=False)
    for row, index in enumerate(picks):
        frames = source.load(int(index))
        info = source.sequences[index]
        chosen = np.unique(np.linspace(0, len(frames) - 1, frames_per_sequence).round().astype(int)) \
            if len(frames) else []
        for col in range(frames_per_sequence):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(chosen):
                ax.imshow(frames[chosen[col]], cmap="gray", vmin=0, vmax=255)
                ax.set_title(f"frame {chosen[col]}", fontsize=6)
        axes[row, 0].set_ylabel(f"{info.subject}/{info.type}/{info.view}\n{len(frames)} frames", fontsize=6)
    figure.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png_path)
    return png_path
