"""A contact sheet of SynthGait: a few subjects under each condition from several views, and one
walking cycle, to see at a glance what a model will be trained on."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .dataset import _parameters, render_views, subject_id

GAP = 4  # pixels between tiles


PREVIEW_SUBJECTS = 6  # more rows than this make a sheet too tall to take in at a glance


def preview_sheet(seed: int = 0, size: int = 64, subjects: int = 3,
                  views: Sequence[str] = ("000", "036", "090", "144", "180"),
                  types: Sequence[str] = ("nm-01", "bg-01", "cl-01"), frames: int = 30
                  ) -> tuple[np.ndarray, list[str], list[str]]:
    """The sheet as a uint8 image, its row labels and column labels: one row per (subject, type) with a
    mid-walk frame from each of ``views``, then one row of the first subject's first type walking, seen
    from the side (090, or the first view), with as many evenly spaced frames as there are views.
    At most ``PREVIEW_SUBJECTS`` subjects are drawn."""
    params = _parameters(subjects, frames, size, seed, views, types, False, (240, 320))
    views, types = params["views"], params["types"]
    rows, labels = [], []
    for index in range(min(subjects, PREVIEW_SUBJECTS)):
        for walk_type in types:
            sequences = render_views(seed, index, walk_type, views, frames, size)
            rows.append([_frame(sequences[view], len(sequences[view]) // 2, size) for view in views])
            labels.append(f"{subject_id(index, subjects)} {walk_type}")
    side = "090" if "090" in views else views[0]
    cycle = render_views(seed, 0, types[0], [side], frames, size)[side]
    columns = len(views)
    rows.append([_frame(cycle, t * len(cycle) // columns, size) for t in range(columns)])
    labels.append(f"{subject_id(0, subjects)} {types[0]} {side} walking")

    tile = size + GAP
    sheet = np.full((len(rows) * tile + GAP, columns * tile + GAP), 40, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            sheet[GAP + r * tile:GAP + r * tile + size, GAP + c * tile:GAP + c * tile + size] = image
    return sheet, labels, [f"view {v}" for v in views]


def write_preview(path: str | Path, seed: int = 0, size: int = 64, subjects: int = 3,
                  views: Sequence[str] = ("000", "036", "090", "144", "180"),
                  types: Sequence[str] = ("nm-01", "bg-01", "cl-01"), frames: int = 30) -> Path:
    """Write ``preview_sheet`` as a labelled PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    sheet, labels, column_labels = preview_sheet(seed, size, subjects, views, types, frames)
    tile = size + GAP
    dpi = 100
    width, height = sheet.shape[1] * 2 + 200, sheet.shape[0] * 2 + 60
    figure = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    axes = figure.add_axes((190 / width, 10 / height, sheet.shape[1] * 2 / width, sheet.shape[0] * 2 / height))
    axes.imshow(sheet, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    axes.set_xticks([GAP + c * tile + size / 2 for c in range(len(column_labels))], column_labels)
    axes.xaxis.tick_top()
    axes.set_yticks([GAP + r * tile + size / 2 for r in range(len(labels))], labels)
    axes.tick_params(length=0, labelsize=9)
    shown = min(subjects, PREVIEW_SUBJECTS)
    figure.suptitle(f"SynthGait (seed {seed}, {size}x{size}, {shown} of {subjects} subjects)", y=0.999, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path


def _frame(sequence: np.ndarray, index: int, size: int) -> np.ndarray:
    """Frame ``index`` of a pretreated sequence, or a blank tile if the walk has fewer frames."""
    if index < len(sequence):
        return sequence[index]
    return np.zeros((size, size), np.uint8)
