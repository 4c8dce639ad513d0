"""Showing an evaluation result: a console table, and a report folder (JSON, markdown, heatmaps, CMC curve).

Works on the ``EvaluationResult`` ``protocols.evaluate`` returns; figures are printed with 2 decimals, as
papers do.
"""
from __future__ import annotations

import io
import json
import re
import threading
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


def import_drawing_in_background() -> threading.Thread:
    """Start importing the plotting modules in a daemon thread, so that the report's figures need not wait
    for them (about 0.3 s, most of it Python that runs while the forwards of a test run compute)."""
    def load():
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401

    thread = threading.Thread(target=load, name="import-matplotlib", daemon=True)
    thread.start()
    return thread


def _png(figure) -> bytes:
    # A figure with its own Agg canvas: no pyplot, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return buffer.getvalue()


def heatmap_png(condition: str, views: list[str], accuracy, title: str = "") -> bytes:
    """Probe view x gallery view rank-1 accuracy as a PNG (see ``heatmap_figure``)."""
    return _png(heatmap_figure(condition, views, accuracy, title))


def heatmap_figure(condition: str, views: list[str], accuracy, title: str = ""):
    """Probe view x gallery view rank-1 accuracy as a matplotlib Figure. The identical-view diagonal,
    which the protocols leave out of every mean, is drawn grey with no number."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    accuracy = np.asarray(accuracy, dtype=float)
    diagonal = np.eye(len(views), dtype=bool)
    size = 1.6 + 0.55 * len(views)
    figure = Figure(figsize=(size + 1.2, size + 0.4))
    axes = figure.add_subplot()
    cmap = colormaps["viridis"].with_extremes(bad="lightgrey")
    image = axes.imshow(np.ma.masked_array(accuracy, diagonal), vmin=0, vmax=100, cmap=cmap)
    axes.set_xticks(range(len(views)), views, rotation=90 if len(views) > 8 else 0)
    axes.set_yticks(range(len(views)), views)
    axes.set_xlabel("gallery view (grey: same view, excluded from the means)")
    axes.set_ylabel("probe view")
    axes.set_title(f"{title}\n{condition} rank-1 (%)".strip(), fontsize=9)
    if len(views) <= 16:
        for (i, j), value in np.ndenumerate(accuracy):
            if i != j:
                axes.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                          color="white" if value < 60 else "black")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    return figure


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
