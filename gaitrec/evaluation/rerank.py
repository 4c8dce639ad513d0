"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal Encoding",
CVPR 2017), with the conventions of OpenGait's HID submission so that the re-ranked figures agree with it:
each column of the joint distance is divided by its maximum, and the neighbour encodings V and the Jaccard
distance are stored in float16.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import DataError

# Bytes per entry of the N x N joint matrix that re-ranking holds at its peak: the float32 distances, their
# normalised float32 copy, the int64 argsort and its int32 ranking, two float16 neighbour encodings.
BYTES_PER_PAIR = 4 + 4 + 8 + 4 + 2 + 2


def rerank_bytes(num_sequences: int) -> int:
    """Estimated peak memory of ``k_reciprocal_rerank`` on ``num_sequences`` probes and gallery together."""
    return BYTES_PER_PAIR * num_sequences * num_sequences


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_rerank_size(num_sequences: int, available: int | None = None) -> None:
    """Refuse, before anything is allocated, a re-ranking whose dense N x N matrices would not fit in the
    available memory (re-ranking is dense by construction: every sequence's neighbours among all others)."""
    available = available_memory() if available is None else available
    needed = rerank_bytes(num_sequences)
    if available is not None and needed > 0.8 * available:
        largest = int((0.8 * available / BYTES_PER_PAIR) ** 0.5)
        raise DataError(f"re-ranking {num_sequences:,} probe and gallery sequences needs about "
                        f"{needed / 2**30:,.1f} GiB (dense {num_sequences:,} x {num_sequences:,} matrices) but "
                        f"{available / 2**30:,.1f} GiB is available; re-rank at most about {largest:,} sequences "
                        "at a time here, or evaluate without --rerank")


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
    check_rerank_size(n)
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
