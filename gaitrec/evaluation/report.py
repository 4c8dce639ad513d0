"""Showing an evaluation result: a console table, and a report folder (JSON, markdown, heatmaps, CMC curve).

Works on the ``EvaluationResult`` ``protocols.evaluate`` returns; figures are printed with 2 decimals, as
papers do.
"""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np

from ..files import atomic_write_bytes
from .result import EvaluationResult


def _table(result: EvaluationResult) -> tuple[list[str], list[tuple[str, list[float | None], float]]]:
    """Views (columns) and rows (label, value per view, mean) of the per-view table; none without rows."""
    views = sorted({v for row in result.rows for v in row.per_view})
    rows = [(row.label, [row.per_view.get(v) for v in views], result.row_mean(row)) for row in result.rows]
    return views, rows


def _title(result: EvaluationResult) -> str:
    rerank = ", re-ranked" if result.rerank else ""
    return f"{result.protocol} (metric {result.metric}{rerank})"


def _number(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def print_table(result: EvaluationResult) -> str:
    """A console table: per condition the value at every probe view and the mean; figures in %."""
    lines = [_title(result)]
    views, rows = _table(result)
    if rows:
        lines.append("per probe view, identical views excluded (%)" if result.matrix else "per probe view (%)")
        name_width = max(len("condition"), *(len(name) for name, _, _ in rows))
        width = max(6, *(len(v) for v in views))
        lines.append("  ".join(["condition".ljust(name_width), *(v.rjust(width) for v in views), "mean".rjust(width)]))
        for name, values, mean in rows:
            cells = [_number(x).rjust(width) for x in values]
            lines.append("  ".join([name.ljust(name_width), *cells, _number(mean).rjust(width)]))
    figures = result.figures
    shown = {row.figure for row in result.rows}
    # Rank-k figures of the rank-1 rows (SUSTech1K reports rank-1 to rank-5) as one small table.
    ranks = {}
    for row in result.rows:
        stem = row.figure[:-1] if row.measure == "rank1" and row.figure.endswith("rank1") else None
        found = [k for k in range(2, 51) if stem is not None and f"{stem}{k}" in figures]
        if found:
            ranks[row.label] = {1: row.figure, **{k: f"{stem}{k}" for k in found}}
            shown |= set(ranks[row.label].values())
    if ranks:
        columns = list(max(ranks.values(), key=len))
        name_width = max(len("condition"), *(len(name) for name in ranks))
        lines += ["", "rank-k (%)", "  ".join(["condition".ljust(name_width), *(f"R{k}".rjust(6) for k in columns)])]
        for name, names in ranks.items():
            cells = [_number(figures.get(names[k]) if k in names else None).rjust(6) for k in columns]
            lines.append("  ".join([name.ljust(name_width), *cells]))
    remaining = {k: v for k, v in figures.items() if k not in shown or not rows}
    if remaining:
        if rows:
            lines.append("")
        key_width = max(len(k) for k in remaining)
        for key, value in remaining.items():
            text = _number(value) if isinstance(value, float) else str(value)
            lines.append(f"{key.ljust(key_width)}  {text}")
    return "\n".join(lines)


def markdown_table(result: EvaluationResult) -> str:
    """The table as papers print it: views as columns, conditions as rows, mean last."""
    lines = [f"## {_title(result)}", ""]
    views, rows = _table(result)
    if rows:
        lines.append("| | " + " | ".join(views) + " | mean |")
        lines.append("|---|" + "---:|" * (len(views) + 1))
        for name, values, mean in rows:
            lines.append(f"| {name} | " + " | ".join(_number(x) for x in values) + f" | {_number(mean)} |")
        lines.append("")
    figures = result.figures
    if figures:
        lines.append("| " + " | ".join(figures) + " |")
        lines.append("|" + "---:|" * len(figures))
        lines.append("| " + " | ".join(_number(v) if isinstance(v, float) else str(v) for v in figures.values()) + " |")
    return "\n".join(lines) + "\n"


REPORTED_DECIMALS = 2  # every benchmark's figures are reported as percentages with 2 decimals


def rounded(result: dict, decimals: int = REPORTED_DECIMALS) -> dict:
    """``result`` with every float rounded to the precision the protocols report: a mean of rounded cells
    is 37.5, not 37.501999999999995."""
    def walk(value):
        if isinstance(value, float):
            return round(value, decimals)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(result)


def _png(figure) -> bytes:
    # A figure with its own Agg canvas: no pyplot, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return buffer.getvalue()


class _Canvas:
    """A white BGR image with anti-aliased OpenCV text on it, keeping the texts written (for the tests)."""

    def __init__(self, height: int, width: int):
        self.image = np.full((height, width, 3), 255, np.uint8)
        self.texts: list[str] = []

    @staticmethod
    def size(text: str, scale: float) -> tuple[int, int]:
        """Width and height (descenders included) of ``text`` in pixels."""
        import cv2

        (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        return width, height + baseline

    def text(self, text: str, x: int, y: int, scale: float, colour=(0, 0, 0), align: str = "left",
             upright: bool = True) -> None:
        """``text`` with the top of its box at ``y`` and its left edge, centre or right edge (``align``) at
        ``x``; read bottom to top unless ``upright`` (the turned box placed the same way)."""
        import cv2

        self.texts.append(text)
        (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        mask = np.zeros((height + baseline + 2, width + 2), np.uint8)
        cv2.putText(mask, text, (1, height + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 1, cv2.LINE_AA)
        if not upright:
            mask = np.rot90(mask)
        top, left = y, x - {"left": 0, "centre": mask.shape[1] // 2, "right": mask.shape[1]}[align]
        region = self.image[max(0, top):top + mask.shape[0], max(0, left):left + mask.shape[1]]
        alpha = mask[max(0, -top):, max(0, -left):][:region.shape[0], :region.shape[1], None] / 255.0
        region[:] = (region * (1 - alpha) + np.array(colour) * alpha).round().astype(np.uint8)


def heatmap_png(condition: str, views: list[str], accuracy, title: str = "") -> bytes:
    """Probe view x gallery view rank-1 accuracy as a PNG (see ``heatmap_image``)."""
    import cv2

    return cv2.imencode(".png", heatmap_image(condition, views, accuracy, title).image)[1].tobytes()


def heatmap_image(condition: str, views: list[str], accuracy, title: str = "") -> _Canvas:
    """Probe view x gallery view rank-1 accuracy drawn with OpenCV (a 5 ms figure; matplotlib took 0.15-0.25 s
    and 0.3 s more to import): cells in viridis from 0 to 100%, numbers on them up to 16 views, a colour bar.
    The identical-view diagonal, which the protocols leave out of every mean, is grey with no number."""
    import cv2

    accuracy = np.asarray(accuracy, dtype=float)
    n = len(views)
    cell = 40 if n <= 16 else max(6, 640 // n)
    tick, small = 0.45, 0.4
    lines = [line for line in (title, f"{condition} rank-1 (%)") if line]
    x_label, y_label = "gallery view (grey: same view, excluded from the means)", "probe view"
    turned = n > 8  # gallery views written bottom to top, as they would not fit side by side
    label_width = max(_Canvas.size(v, tick)[0] for v in views)
    line_height = _Canvas.size("Ag", tick)[1] + 4
    left = 12 + line_height + 8 + label_width + 6
    top = 12 + line_height * len(lines) + 8
    grid = cell * n
    bar_left = left + grid + 16
    right = bar_left + 14 + 6 + _Canvas.size("100", small)[0] + 12
    below = top + grid + 6 + (label_width if turned else line_height) + 8
    height = below + line_height + 10
    x_label_width = _Canvas.size(x_label, small)[0]
    width = max(right, left + x_label_width + 12,
                *(_Canvas.size(line, tick)[0] + 24 for line in lines))
    canvas = _Canvas(height, width)

    valid = ~np.eye(n, dtype=bool) & np.isfinite(accuracy)
    levels = np.clip(np.nan_to_num(accuracy) * 2.55, 0, 255).round().astype(np.uint8)
    colours = cv2.applyColorMap(levels, cv2.COLORMAP_VIRIDIS)  # [n, n, 3] BGR
    colours[~valid] = 211  # light grey
    canvas.image[top:top + grid, left:left + grid] = np.repeat(np.repeat(colours, cell, 0), cell, 1)
    if n <= 16:
        for i, j in zip(*np.nonzero(valid)):
            value = accuracy[i, j]
            canvas.text(f"{value:.0f}", left + j * cell + cell // 2, top + i * cell + cell // 2 - 6, small,
                        (255, 255, 255) if value < 60 else (0, 0, 0), "centre")
    step = -(-line_height // cell)  # with cells narrower than a line of text, every step-th view is named
    for k, view in list(enumerate(views))[::step]:
        canvas.text(view, left - 6, top + k * cell + cell // 2 - line_height // 2, tick, align="right")
        canvas.text(view, left + k * cell + cell // 2, top + grid + 6, tick, align="centre", upright=not turned)
    centre = min(max(left + grid // 2, 12 + x_label_width // 2), width - 12 - x_label_width // 2)
    canvas.text(x_label, centre, below, small, align="centre")
    canvas.text(y_label, 12, top + grid // 2 - _Canvas.size(y_label, small)[0] // 2, small, upright=False)
    for k, line in enumerate(lines):
        canvas.text(line, width // 2, 12 + k * line_height, tick, align="centre")
    # Colour bar: 100% at the top.
    ramp = cv2.applyColorMap(np.linspace(255, 0, grid).round().astype(np.uint8)[:, None], cv2.COLORMAP_VIRIDIS)
    canvas.image[top:top + grid, bar_left:bar_left + 14] = ramp
    for value in range(0, 101, 20):
        y = top + round((100 - value) / 100 * (grid - 1))
        canvas.image[y, bar_left + 14:bar_left + 18] = 0
        canvas.text(str(value), bar_left + 20, y - 6, small)
    return canvas


def report_title(result: EvaluationResult) -> str:
    """What a figure shows: the model and checkpoint where the result names them, the protocol and metric."""
    source = " ".join(str(x) for x in (result.model, result.checkpoint) if x)
    return " | ".join(part for part in (source, _title(result)) if part)


def cmc_png(curves: dict[str, list[float]], title: str = "") -> bytes:
    """Rank-k accuracy against k, one line per series."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot()
    for name, values in curves.items():
        ranks = np.arange(1, len(values) + 1)
        axes.plot(ranks, values, marker="o" if len(values) <= 20 else None, markersize=3, label=name)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("rank")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(f"{title} CMC".strip())
    axes.grid(True, alpha=0.3)
    if len(curves) > 1:
        axes.legend(fontsize=8)
    return _png(figure)


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def write_report(result: EvaluationResult, out_dir, overwrite: bool = False) -> list[Path]:
    """Write ``results.json``, ``results.md``, one heatmap PNG per condition, ``cmc.png`` where ranks are
    available and ``submission.csv`` for a submission protocol. Returns the files written.

    Refuses to replace an existing ``results.json`` unless ``overwrite``; every file is written atomically.
    """
    out_dir = Path(out_dir)
    json_path = out_dir / "results.json"
    if json_path.exists() and not overwrite:
        raise FileExistsError(f"{json_path} exists; refusing to overwrite it (pass --overwrite to replace it)")
    outputs: dict[Path, bytes] = {}
    stored = rounded({k: v for k, v in result.to_json().items() if k != "csv"})
    if result.csv is not None:
        outputs[out_dir / "submission.csv"] = result.csv.encode()
        stored["submission"] = "submission.csv"
    try:
        text = json.dumps(stored, indent=2, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"result is not JSON-serialisable ({err})") from None
    outputs[json_path] = (text + "\n").encode()
    outputs[out_dir / "results.md"] = markdown_table(result).encode()
    title = report_title(result)
    for condition, cell in result.matrix.items():
        outputs[out_dir / f"heatmap_{_file_name(condition)}.png"] = heatmap_png(
            condition, cell["views"], cell["accuracy"], title)
    if result.cmc:
        outputs[out_dir / "cmc.png"] = cmc_png(result.cmc, title)
    # results.json last: a report folder with results.json is complete.
    for path in sorted(outputs, key=lambda p: p == json_path):
        atomic_write_bytes(path, outputs[path])
    return sorted(outputs)
