"""Probe-to-gallery distances over part-based embeddings [N, C, P], as OpenGait computes them.

Euclidean: per part p, sqrt(relu(|x_p|^2 + |y_p|^2 - 2 x_p.y_p)), averaged over the P parts.
Cosine: each part vector L2-normalised over C, distance = 1 - mean over parts of x_p.y_p.

Probes are processed in blocks so that only a [block, gallery] slice of the matrix exists at a time: an
OU-MVLP-sized test set (130,000 x 256 x 16 float32, 2 GiB) never needs its full 68 GB distance matrix. A
gallery compared with many probe sets is laid out for the computation once (``prepare_embeddings``).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterator

import numpy as np
import torch

from ..device import pick_device
from ..errors import DataError
import torch.nn.functional as F

METRICS = ("euc", "cos")

# Bytes of distance values one probe block may hold; temporaries are about three times this.
DEFAULT_BLOCK_BYTES = 256 * 2**20


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise DataError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    return metric


class _Workers:
    """Threads for the distance computation. On the CPU, one per intra-op thread, each running its
    operations with one thread of its own: splitting every small operation across threads instead costs a
    synchronisation per operation, which on a machine shared with other jobs made the evaluation 10-20x
    slower than its matrix products. Elsewhere, or with ``count`` 1, the caller's thread alone (with all
    of torch's threads)."""

    def __init__(self, device: torch.device, count: int | None = None):
        self.count = count or (torch.get_num_threads() if device.type == "cpu" else 1)
        # Each worker thread sets its own thread count: a new thread's OpenMP count is the process's initial
        # one, so the BLAS would otherwise run every worker's products on all cores (oversubscribed).
        self.pool = ThreadPoolExecutor(self.count, initializer=torch.set_num_threads, initargs=(1,)) \
            if self.count > 1 else None

    def map(self, function: Callable, items) -> list:
        """``function`` over ``items``, each item taken by the next free worker."""
        if self.pool is None:
            return [function(item) for item in items]
        torch.set_num_threads(1)
        try:
            return list(self.pool.map(function, items))
        finally:
            torch.set_num_threads(self.count)

    def each(self, items, work: Callable) -> None:
        """``work(item, worker)`` for every item, each worker taking the next item when it is free: on a machine
        shared with other jobs a fixed share would leave the others waiting for whichever worker was paused
        longest."""
        remaining, claim = iter(items), threading.Lock()

        def run(worker: int) -> None:
            while True:
                with claim:
                    item = next(remaining, None)
                if item is None:
                    return
                work(item, worker)

        self.map(run, range(self.count))

    def row_shares(self, count: int) -> list[tuple[int, int]]:
        """Rows ``0:count`` in one nearly even share per worker."""
        return _even_split(0, count, -(-count // self.count))

    def __enter__(self) -> "_Workers":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown()


@dataclass(frozen=True)
class PreparedEmbeddings:
    """Embeddings in the layout the distance computation reads: parts first, normalised for cosine, with
    their squared norms for Euclidean. A gallery compared with many probe sets (one per view and condition)
    is prepared once instead of being copied and reduced again for every set."""

    parts: torch.Tensor  # [P, N, C] float32
    squared_norms: torch.Tensor | None  # [P, N], Euclidean only
    metric: str
    derived: dict = field(default_factory=dict, repr=False, compare=False)  # other forms, made when first needed

    def __len__(self) -> int:
        return self.parts.shape[1]


# Embeddings prepared at a time: 64 x 256 x 16 float32 (1 MiB) stays in the cache while its parts are copied
# out one after another, where a permutation of the whole array reads all of it again for every part.
PREPARE_ROWS = 64


def prepare_embeddings(embeddings, metric: str = "euc", device: str | torch.device | None = None) -> PreparedEmbeddings:
    """``embeddings`` [N, C, P] made ready for ``distance_blocks`` and the functions built on it, on ``device``."""
    check_metric(metric)
    device = pick_device(device)
    x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    if x.ndim != 3:
        raise DataError(f"embeddings must be [N, C, P], got shape {tuple(x.shape)}")
    num, channels, num_parts = x.shape
    parts = torch.empty(num_parts, num, channels, dtype=torch.float32, device=device)
    squared_norms = torch.empty(num_parts, num, dtype=torch.float32, device=device) if metric == "euc" else None

    def prepare(start: int) -> None:
        # Each embedding by itself, with the operations it always had: the values do not depend on the chunks.
        chunk = x[start:start + PREPARE_ROWS].to(device)
        if metric == "cos":
            chunk = F.normalize(chunk, p=2, dim=1)  # over C
        chunk_parts = parts[:, start:start + PREPARE_ROWS]
        chunk_parts.copy_(chunk.permute(2, 0, 1))
        if squared_norms is not None:
            squared_norms[:, start:start + PREPARE_ROWS] = (chunk_parts * chunk_parts).sum(dim=2)

    with _Workers(device) as workers:
        workers.map(prepare, range(0, num, PREPARE_ROWS))
    return PreparedEmbeddings(parts, squared_norms, metric)


def _prepared(embeddings, metric: str, device: torch.device) -> PreparedEmbeddings:
    if not isinstance(embeddings, PreparedEmbeddings):
        return prepare_embeddings(embeddings, metric, device)
    if embeddings.metric != metric:
        raise ValueError(f"embeddings prepared for metric {embeddings.metric!r} used with metric {metric!r}")
    if embeddings.parts.device != device:
        norms = embeddings.squared_norms
        return PreparedEmbeddings(embeddings.parts.to(device), None if norms is None else norms.to(device), metric)
    return embeddings


def distance_blocks(
    probe,
    gallery,
    metric: str = "euc",
    device: str | torch.device | None = None,
    block_size: int | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, dist)`` with ``dist`` the float32 [block, n_gallery] distances of probes ``start:...``.

    ``probe`` and ``gallery`` are [N, C, P] arrays or ``PreparedEmbeddings`` (prepared for ``metric``).
    The tensors live on ``device``; callers reduce each block (top-k, argmin) before asking for the next.
    ``reduce``, when given, maps rows of distances to what the caller keeps (e.g. the nearest indices, one
    row per probe); the worker threads apply it to their shares of each block's rows and ``dist`` is its
    result for the whole block instead of the distances.
    """
    check_metric(metric)
    device = pick_device(device)
    probe, gallery = _prepared(probe, metric, device), _prepared(gallery, metric, device)
    p, g = probe.parts, gallery.parts  # [P, Q, C], [P, G, C]
    if p.shape[0] != g.shape[0] or p.shape[2] != g.shape[2]:
        raise DataError(
            f"probe embeddings [{p.shape[1]}, {p.shape[2]}, {p.shape[0]}] and gallery embeddings "
            f"[{g.shape[1]}, {g.shape[2]}, {g.shape[0]}] differ in channels or parts"
        )
    p_sq, g_sq = probe.squared_norms, gallery.squared_norms  # [P, Q], [P, G] or None
    num_probe, num_gallery = p.shape[1], g.shape[1]
    if block_size is None:
        block_size = _block_rows(num_gallery)
    with _Workers(device) as workers:
        # Working buffers of one tile per worker, allocated once: a fresh allocation per tile costs page faults.
        buffers = torch.empty(workers.count, 2, min(TILE_ROWS, num_probe), min(TILE_COLUMNS, num_gallery),
                              dtype=torch.float32, device=device)

        def compute_tile(rows: slice, columns: slice, worker: int, out: torch.Tensor) -> None:
            _tile(p[:, rows], g[:, columns], metric, None if p_sq is None else p_sq[:, rows],
                  None if g_sq is None else g_sq[:, columns], buffers[worker], out=out)

        yield from tiled_blocks(num_probe, num_gallery, block_size, workers, compute_tile, reduce, device)


def _block_rows(num_gallery: int) -> int:
    """Probe rows per block: DEFAULT_BLOCK_BYTES of float32 values."""
    return max(1, DEFAULT_BLOCK_BYTES // (4 * max(num_gallery, 1)))


def tiled_blocks(num_probe: int, num_gallery: int, block_size: int, workers: _Workers, compute_tile: Callable,
                 reduce: Callable | None, device: torch.device,
                 first_block: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Blocks of ``block_size`` probe rows (the first of ``first_block``) by the whole gallery, each filled
    tile by tile by the workers: ``compute_tile(rows, columns, worker, out)`` writes the [rows, columns]
    values into ``out``. Yields ``(start, block)``, or ``(start, reduce(rows of block))`` as
    ``distance_blocks`` describes; a block's array is reused for the next one."""
    first_block = first_block or block_size
    # One array for every block (each is used up before the next is asked for): a fresh 256 MiB array per
    # block costs its pages again.
    storage = torch.empty(min(max(first_block, block_size), num_probe), num_gallery, dtype=torch.float32,
                          device=device)
    for start in [0, *range(first_block, num_probe, block_size)] if num_probe else []:
        stop = min(start + (first_block if start == 0 else block_size), num_probe)
        block = storage[:stop - start]
        # Tiles small enough to stay in the CPU's cache across the parts: the per-part arithmetic then
        # costs little beside the matrix products instead of streaming a [block, gallery] array through
        # memory five times per part. Every value is computed by the same operations in the same order
        # as without tiles, so the distances (and every ranking) are bit-identical.
        tiles = [(slice(row, row_stop), slice(column, column_stop))
                 for row, row_stop in _even_split(start, stop, TILE_ROWS)
                 for column, column_stop in _even_split(0, num_gallery, TILE_COLUMNS)]
        workers.each(tiles, lambda tile, worker: compute_tile(
            *tile, worker, block[tile[0].start - start:tile[0].stop - start, tile[1]]))
        if reduce is None:
            yield start, block
        else:
            # Rows are independent: reducing shares of them gives what reducing the whole block gives.
            shares = workers.row_shares(stop - start)
            yield start, torch.cat(workers.map(lambda share: reduce(block[share[0]:share[1]]), shares))


# Tile of the distance computation: 256 x 512 float32 is 512 kB, a few of which fit the L2 cache (with 256
# rows the products also run faster per value than with 128 x 1024).
TILE_ROWS = 256
TILE_COLUMNS = 512


def _even_split(start: int, stop: int, most: int) -> list[tuple[int, int]]:
    """``[start, stop)`` in pieces of at most ``most`` and nearly equal length: no sliver of a few columns,
    whose matrix product a BLAS may compute with another kernel than the rest."""
    count = max(1, -(-(stop - start) // most))
    bounds = [start + (stop - start) * i // count for i in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _tile(x: torch.Tensor, y: torch.Tensor, metric: str, x_sq: torch.Tensor | None, y_sq: torch.Tensor | None,
          buffers: torch.Tensor, out: torch.Tensor) -> None:
    """Write into ``out`` [a, b] the distances between parts-first probes x [P, a, C] and gallery entries
    y [P, b, C], with two contiguous [a, b] working arrays carved from the front of ``buffers``."""
    num_parts, a, b = x.shape[0], x.shape[1], y.shape[1]
    similarity, squared = (flat.view(a, b) for flat in buffers.view(2, -1)[:, :a * b])
    out.zero_()
    # Parts are added one after another, in OpenGait's order, so the float32 sums agree with its own.
    for part in range(num_parts):
        torch.mm(x[part], y[part].T, out=similarity)
        if metric == "cos":
            out += similarity
        else:
            # |x|^2 + |y|^2 - 2 x.y, in OpenGait's order of operations; subtracting with alpha=2 gives the
            # same float32 values as doubling first (doubling is exact) with one pass over the tile less.
            torch.add(x_sq[part][:, None], y_sq[part][None, :], out=squared)
            out += squared.sub_(similarity, alpha=2).clamp_(min=0).sqrt_()
    out.div_(num_parts)
    if metric == "cos":
        out.neg_().add_(1)  # 1 - mean: negation is exact, so the value is that of 1 - total / num_parts


def pairwise_distance(
    probe,
    gallery,
    metric: str = "euc",
    device: str | torch.device | None = None,
    block_size: int | None = None,
) -> np.ndarray:
    """The full float32 [n_probe, n_gallery] distance matrix, computed block by block."""
    out = np.empty((len(probe), len(gallery)), dtype=np.float32)
    for start, block in distance_blocks(probe, gallery, metric, device, block_size):
        out[start:start + block.shape[0]] = block.cpu().numpy()
    return out


def nearest(
    probe,
    gallery,
    k: int = 1,
    metric: str = "euc",
    device: str | torch.device | None = None,
    block_size: int | None = None,
) -> np.ndarray:
    """Indices [n_probe, k] of each probe's k nearest gallery entries, nearest first."""
    if k > len(gallery):
        raise DataError(f"asked for the {k} nearest gallery entries but the gallery has only {len(gallery)}")
    out = np.empty((len(probe), k), dtype=np.int64)
    smallest = partial(_smallest, k=k)
    for start, indices in distance_blocks(probe, gallery, metric, device, block_size, reduce=smallest):
        out[start:start + len(indices)] = indices.cpu().numpy()
    return out


def nearest_in_groups(
    probe,
    gallery,
    bounds: list[int],
    k: int = 1,
    metric: str = "euc",
    device: str | torch.device | None = None,
    block_size: int | None = None,
    screen: bool = True,
) -> list[np.ndarray]:
    """For gallery groups ``gallery[bounds[i]:bounds[i + 1]]`` (e.g. one per view), the indices [n_probe, k]
    of each probe's k nearest entries within each group, counted from the group's start.

    One pass over the whole gallery instead of one call per group: fewer, larger matrix products. The
    nearest entry (k = 1, Euclidean, on the CPU) is found through bfloat16 lower bounds confirmed in float32
    where that pays and keeps every index (``screening``); ``screen=False`` runs the float32 search.
    """
    sizes = np.diff(bounds)
    if len(sizes) == 0 or sizes.min() < k:
        raise DataError(f"every gallery group needs at least {k} entries, got sizes {sizes.tolist()}")
    device = pick_device(device)
    from . import screening  # imports this module

    if screen and k == 1 and metric == "euc" and device.type == "cpu" and len(gallery) >= screening.FEWEST_GALLERY:
        probe, gallery = _prepared(probe, metric, device), _prepared(gallery, metric, device)
        found = screening.nearest_in_groups(probe, gallery, bounds, block_size or _block_rows(len(gallery)))
        if found is not None:
            return [found[:, group, None] for group in range(len(sizes))]

    def smallest_in_groups(dist: torch.Tensor) -> torch.Tensor:  # [rows, groups, k]
        return torch.stack([_smallest(dist[:, low:high], k) for low, high in zip(bounds[:-1], bounds[1:])], dim=1)

    out = np.empty((len(probe), len(sizes), k), dtype=np.int64)
    for start, indices in distance_blocks(probe, gallery, metric, device, block_size, reduce=smallest_in_groups):
        out[start:start + len(indices)] = indices.cpu().numpy()
    return [out[:, group] for group in range(len(sizes))]


def _smallest(dist: torch.Tensor, k: int) -> torch.Tensor:
    if k == 1:
        return dist.argmin(dim=1, keepdim=True)  # first index among equal minima
    return torch.topk(dist, k, dim=1, largest=False, sorted=True).indices


def reference_distance(probe, gallery, metric: str = "euc") -> np.ndarray:
    """The definition written out directly in float64 NumPy, without blocks: slow, for tests and benchmarks."""
    check_metric(metric)
    x = np.asarray(probe, dtype=np.float64)
    y = np.asarray(gallery, dtype=np.float64)
    if metric == "cos":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
        return 1 - np.einsum("qcp,gcp->qgp", x, y).mean(axis=2)
    diff = x[:, None, :, :] - y[None, :, :, :]  # [Q, G, C, P]
    return np.sqrt((diff**2).sum(axis=2)).mean(axis=2)
