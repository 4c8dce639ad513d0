"""The mean-silhouette template: the baseline every gait model must beat.

A sequence is summarised by the mean of its silhouettes (the gait energy image), cut as the models' input is
cut, and matched by Euclidean distance. It sees the shape of a body and how much its limbs spread, nothing of
the order of the frames: a network that only learns shape does no better than this.
"""
from __future__ import annotations

import numpy as np

from ..data.transforms import BaseSilCuttingTransform


def mean_silhouette(frames: np.ndarray) -> np.ndarray:
    """The template of uint8 silhouettes ``[T, H, W]``: their mean in [0, 1], cut to the models' width
    (64x64 -> 64x44), flattened."""
    return BaseSilCuttingTransform()(np.asarray(frames)).mean(axis=0).ravel()


def template_distances(queries: list[np.ndarray], gallery: list[np.ndarray]) -> np.ndarray:
    """Euclidean distances ``[Q, G]`` between the templates of query and gallery sequences."""
    q = np.stack([mean_silhouette(s) for s in queries])
    g = np.stack([mean_silhouette(s) for s in gallery])
    return np.sqrt(np.maximum((q * q).sum(1)[:, None] + (g * g).sum(1)[None] - 2 * q @ g.T, 0.0))
