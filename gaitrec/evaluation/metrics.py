"""Rank-k accuracy, average precision and inverse negative penalty on arrays, as OpenGait computes them.

The arithmetic follows OpenGait step by step (integer hit counts times 100 divided by the probe count,
float32 CMC for the Gait3D-style protocols) so that the figures agree with its evaluator to the last digit.
Rankings use NumPy's default sort on the same arrays OpenGait sorts, so exactly equal distances (they do
occur among float32 values) come out in the order they come out in OpenGait with the same NumPy build.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError


def rank_k_hits(nearest_labels: np.ndarray, probe_labels: np.ndarray) -> np.ndarray:
    """Hit counts [k]: entry r is the number of probes whose r+1 nearest gallery entries hold their subject.

    ``nearest_labels`` [n_probe, k] are the subjects of each probe's nearest gallery entries, nearest first.
    """
    same = np.asarray(nearest_labels) == np.asarray(probe_labels)[:, None]
    return (np.cumsum(same, axis=1) > 0).sum(axis=0)


def percent_rounded(hits, num_probes: int) -> np.ndarray:
    """OpenGait's per-cell figure: hits * 100 / probes, rounded to 2 decimals."""
    if num_probes == 0:
        raise DataError("no probes: a rank-k accuracy over an empty probe set is undefined")
    return np.round(np.asarray(hits) * 100 / num_probes, 2)


def average_precision(matches: np.ndarray) -> float:
    """Mean of the precision at each true match; ``matches`` are 0/1 flags in ranked order.

    >>> average_precision(np.array([1, 0, 1, 0]))  # (1/1 + 2/3) / 2
    0.8333333333333333
    """
    matches = np.asarray(matches).astype(np.int64)
    num_relevant = matches.sum()
    if num_relevant == 0:
        raise DataError("average precision is undefined without a true match")
    precision = np.cumsum(matches) / np.arange(1.0, len(matches) + 1)
    return float((precision * matches).sum() / num_relevant)


def inverse_negative_penalty(matches: np.ndarray) -> float:
    """INP (Ye et al., 2021): number of true matches / rank of the last true match."""
    matches = np.asarray(matches).astype(np.int64)
    positions = np.flatnonzero(matches)
    if len(positions) == 0:
        raise DataError("INP is undefined without a true match")
    last = positions[-1]
    return float(matches.sum() / (last + 1.0))


def ranked_matches(dist: np.ndarray, probe_labels, gallery_labels, exclude: np.ndarray | None = None):
    """Per probe, the 0/1 match flags of the gallery in ranked order, with excluded entries removed.

    ``exclude`` [n_probe, n_gallery] marks gallery entries that do not take part for that probe.
    Yields one 1-D int array per probe.
    """
    dist = np.asarray(dist)
    gallery_labels = np.asarray(gallery_labels)
    for i, label in enumerate(np.asarray(probe_labels)):
        row = dist[i]
        labels = gallery_labels
        if exclude is not None:
            keep = ~exclude[i]
            row, labels = row[keep], labels[keep]
        order = np.argsort(row)  # default kind, as OpenGait: decides the order of exact ties
        yield (labels[order] == label).astype(np.int32)


def accuracy_and_map(dist, probe_labels, gallery_labels, exclude=None) -> tuple[float, float, int]:
    """Rank-1 accuracy over all probes and mAP over probes with a true match (fractions, not %).

    Returns ``(accuracy, mean_ap, probes_with_match)``; mean_ap is NaN when no probe has a match.
    """
    first_hits, aps = [], []
    for i, matches in enumerate(ranked_matches(dist, probe_labels, gallery_labels, exclude)):
        if len(matches) == 0:
            raise DataError(f"probe {i} has no gallery entry left after excluding identical-view cases")
        first_hits.append(int(matches[0]))
        if matches.any():
            aps.append(average_precision(matches))
    mean_ap = float(np.mean(aps)) if aps else float("nan")
    return float(np.mean(first_hits)), mean_ap, len(aps)


def retrieval_metrics(dist, probe_labels, gallery_labels, max_rank: int = 50) -> dict:
    """CMC, mAP and mINP over the probes that have a true match in the gallery; the others are skipped.

    ``cmc`` is float32 [min(max_rank, n_gallery)] (fractions), as the Gait3D benchmark computes it.
    """
    max_rank = min(max_rank, np.asarray(dist).shape[1])
    curves, aps, inps = [], [], []
    for matches in ranked_matches(dist, probe_labels, gallery_labels):
        if not matches.any():
            continue
        curves.append((np.cumsum(matches) > 0)[:max_rank])
        aps.append(average_precision(matches))
        inps.append(inverse_negative_penalty(matches))
    if not curves:
        raise DataError("no probe has a true match in the gallery: probe and gallery subjects are disjoint")
    cmc = np.asarray(curves).astype(np.float32).sum(axis=0) / np.float32(len(curves))
    return {
        "cmc": cmc,
        "mAP": float(np.mean(aps)),
        "mINP": float(np.mean(inps)),
        "evaluated": len(curves),
        "skipped": int(np.asarray(dist).shape[0] - len(curves)),
    }
