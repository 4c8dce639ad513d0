"""A contact sheet of SynthGait: a few subjects under each condition from several views, and one
walking cycle, to see at a glance what a model will be trained on."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .dataset import render_views

GAP = 4  # pixels between tiles


def write_preview(path: str | Path, seed: int = 0, size: int = 64, subjects: int = 3,
                  views: Sequence[str] = ("000", "036", "090", "144", "180"),
                  types: Sequence[str] = ("nm-01", "bg-01", "cl-01"), frames: int = 30) -> Path:
    """Write a PNG: one row per (subject, type) with one frame from each of ``views``, then a row
    with every third frame of the first subject's ``nm-01`` walk seen from the side (090)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    rows, labels = [], []
    for index in range(subjects):
        for walk_type in types:
            sequences = render_views(seed, index, walk_type, views, frames, size)
            rows.append([_frame(sequences[view], frames // 3, size) for view in views])
            labels.append(f"{index + 1:03d} {walk_type}")
    cycle = render_views(seed, 0, types[0], ["090"], frames, size)["090"]
    columns = max(len(views), 8)
    rows.append([_frame(cycle, t, size) for t in range(0, 3 * columns, 3)][:columns])
    labels.append(f"001 {types[0]} 090 walking")

    tile = size + GAP
    sheet = np.full((len(rows) * tile + GAP, columns * tile + GAP), 40, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            sheet[GAP + r * tile:GAP + r * tile + size, GAP + c * tile:GAP + c * tile + size] = image

    dpi = 100
    figure = plt.figure(figsize=((sheet.shape[1] * 2 + 200) / dpi, (sheet.shape[0] * 2 + 60) / dpi), dpi=dpi)
    axes = figure.add_axes((190 / (sheet.shape[1] * 2 + 200), 10 / (sheet.shape[0] * 2 + 60),
                            sheet.shape[1] * 2 / (sheet.shape[1] * 2 + 200), sheet.shape[0] * 2 / (sheet.shape[0] * 2 + 60)))
    axes.imshow(sheet, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    axes.set_xticks([GAP + c * tile + size / 2 for c in range(len(views))], [f"view {v}" for v in views])
    axes.xaxis.tick_top()
    axes.set_yticks([GAP + r * tile + size / 2 for r in range(len(rows))], labels)
    axes.tick_params(length=0, labelsize=9)
    figure.suptitle(f"SynthGait (seed {seed}, {size}x{size})", y=0.999, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path


def _frame(sequence: np.ndarray, index: int, size: int) -> np.ndarray:
    """Frame ``index`` of a pretreated sequence, or a blank tile if the walk has fewer frames."""
    if index < len(sequence):
        return sequence[index]
    return np.zeros((size, size), np.uint8)
