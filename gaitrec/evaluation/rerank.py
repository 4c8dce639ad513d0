"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding",
CVPR 2017), with the conventions of OpenGait's HID submission so that the re-ranked figures agree with it:
each column of the joint distance is divided by its maximum, and the neighbour encodings V and the Jaccard
distance are stored in float16.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError


def _reciprocal_neighbours(ranking: np.ndarray, i: int, k: int) -> np.ndarray:
    """Entries among the k+1 nearest of ``i`` that also have ``i`` among their own k+1 nearest."""
    forward = ranking[i, :k + 1]
    backward = ranking[forward, :k + 1]
    return forward[(backward == i).any(axis=1)]


def k_reciprocal_rerank(
    joint_distance: np.ndarray,
    num_probe: int,
    k1: int = 6,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> np.ndarray:
    """Re-ranked probe-to-gallery distances [num_probe, N - num_probe].

    ``joint_distance`` is the [N, N] distance among probes (first ``num_probe`` rows/columns) and gallery
    together. The result mixes the Jaccard distance of the k-reciprocal neighbour sets (weight
    1 - lambda) with the original distance (weight lambda).
    """
    dist = np.asarray(joint_distance)
    n = dist.shape[0]
    if dist.ndim != 2 or dist.shape[1] != n:
        raise DataError(f"re-ranking needs a square joint distance matrix, got shape {dist.shape}")
    if not 0 < num_probe < n:
        raise DataError(f"re-ranking needs at least one probe and one gallery entry (probes {num_probe} of {n})")
    if min(k1, k2) < 1:
        raise DataError(f"k1 and k2 must be at least 1, got k1={k1}, k2={k2}")
    column_max = dist.max(axis=0)
    column_max[column_max == 0] = 1  # a column of zeros stays zeros instead of becoming NaN
    dist = np.transpose(dist / column_max)
    ranking = np.argsort(dist, axis=1).astype(np.int32)  # default kind, as OpenGait (order of exact ties)

    # V[i]: weights exp(-d) over the expanded k-reciprocal set of i, normalised to sum 1.
    encoding = np.zeros((n, n), dtype=np.float16)
    half_k1 = int(np.around(k1 / 2))
    for i in range(n):
        reciprocal = _reciprocal_neighbours(ranking, i, k1)
        expanded = [reciprocal]
        for candidate in reciprocal:
            theirs = _reciprocal_neighbours(ranking, candidate, half_k1)
            # Add a neighbour's own reciprocal set when it mostly agrees with i's (the 2/3 rule of the paper).
            if len(np.intersect1d(theirs, reciprocal)) > 2 / 3 * len(theirs):
                expanded.append(theirs)
        members = np.unique(np.concatenate(expanded))
        weight = np.exp(-dist[i, members])
        encoding[i, members] = weight / np.sum(weight)
    probe_dist = dist[:num_probe]

    if k2 != 1:  # local query expansion: average the encodings of the k2 nearest
        expanded_encoding = np.zeros_like(encoding)
        for start in range(0, n, 256):
            rows = ranking[start:start + 256, :k2]
            expanded_encoding[start:start + 256] = np.mean(encoding[rows], axis=1)
        encoding = expanded_encoding
    del ranking

    # Inverted index: for every column, the rows where the encoding is non-zero.
    columns, rows = np.nonzero(encoding.T)
    splits = np.searchsorted(columns, np.arange(1, n))
    rows_of_column = np.split(rows, splits)

    jaccard = np.zeros((num_probe, n), dtype=np.float16)
    for i in range(num_probe):
        shared = np.zeros(n, dtype=np.float16)  # sum over columns of min(V[i], V[j]), for every j
        for column in np.nonzero(encoding[i])[0]:
            others = rows_of_column[column]
            shared[others] = shared[others] + np.minimum(encoding[i, column], encoding[others, column])
        jaccard[i] = 1 - shared / (2 - shared)

    final = jaccard * (1 - lambda_value) + probe_dist * lambda_value
    return final[:, num_probe:]
