"""Nearest gallery entries found through a bfloat16 lower bound and confirmed in float32: the same indices as
the float32 search of ``distance.nearest_in_groups``, bit for bit, in less time on a CPU whose bfloat16
matrix products are fast (AVX-512 BF16: about 5x float32's) when the gallery is large.

Rounded bfloat16 products cannot rank, but they can bound. Distances do not change when probes and gallery
are moved by the same vector, so both are first centred on the gallery's mean (embeddings lie far from the
origin and close to each other; the bound is a fraction of their centred norms). For a probe x, a gallery
entry y (centred) and one part, with G float32's x.y and G~ the bfloat16 product (inputs rounded to 8
significant bits, float32 sums, output rounded to 8 bits even if not to nearest),
|G - G~| <= (4 u + u^2 + 2 K 2^-24) sum|x_k y_k| <= 0.0162 |x||y| (u = 2^-8, K <= 4096 channels). So the
float32 formula |x|^2 + |y|^2 - 2 x.y, evaluated with G~ and with |x|^2 lowered by

    slack = ALPHA |x| max|y| + BETA (|x|^2 + max|y|^2) + (BETA + 2 K 2^-24) (|x0|^2 + max|y0|^2) + TINY

(max over the tile's gallery entries; x0, y0 the embeddings before centring, whose squared norms the float32
search rounds) is never above float32's own value, every rounding of both included: ALPHA = 0.04 > 2 x 0.0162,
BETA = 2^-18 covers the roundings of the centring and of the bound's own sums (about 2^-20 of the centred
squared norms), and TINY what flushing subnormal products to zero can lose. Clamping, square roots and the
sum over parts, in the same order as float32's, are monotone, so the bound of the mean distance is never
above the float32 distance either.

Then, per probe and gallery group: the entry with the smallest bound gets its float32 distance tau; every
entry whose bound is <= tau may be the nearest (any other is provably farther than that entry) and gets its
float32 distance; the nearest of those, first index among equals, is what the float32 search returns.

The float32 distances of the candidates come from ``distance._tile`` with the roles turned: the candidates
of 32 probes as rows (16 or more), those probes as columns. Each value is the same sum of the same products;
that the BLAS gives it the same bits in that shape as in the search's tiles is a property of the BLAS (true of
MKL from 16 rows and 2 columns, not for fewer), checked on this machine at first use (``blas_keeps_bits``).
Where it fails, where bfloat16 products are not at least twice as fast (``bfloat16_pays``), for galleries
under FEWEST_GALLERY entries, for non-finite or huge values, and once confirming costs too much (embeddings
whose distances are all alike), the float32 search runs instead.
"""
from __future__ import annotations

import contextlib
import functools
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from . import distance
from .distance import PreparedEmbeddings, _even_split, _tile

ALPHA = 0.04
BETA = 2.0**-18
MAX_CHANNELS = 4096  # the accumulation term of ALPHA's margin holds up to here
# Values up to 2^40: no bfloat16 product or float32 sum of them overflows. Below 2^-126, bfloat16 products
# flush values to zero: with such magnitudes and at most 4096 channels that loses less than 2^-71 per part,
# which the absolute term of the slack, TINY, covers.
LARGEST, TINY = 2.0**40, 2.0**-70
# A float32 confirmation computes at least 16 gallery rows by 32 probes: with fewer rows, or one column, the
# BLAS computes a product another way and its bits can differ.
CONFIRM_ROWS, CONFIRM_PROBES = 16, 32
# Galleries from this size: below it the float32 confirmations of each probe's candidates (at least one per
# gallery group) cost more than the bounds save (measured on 2 cores: 1.3x slower at 10,000 entries, 1.2x
# faster at 28,000).
FEWEST_GALLERY = 16384
# Probes of the first block. If confirming their candidates took more than MOST_CONFIRMING of the time their
# bounds took, the float32 search does the rest: its tiles take about 1.4x the bounds' on 2 cores, so that
# screening would save nothing.
TRIAL_PROBES = 256
MOST_CONFIRMING = 0.4


def screening_available(channels: int) -> bool:
    """Whether screening pays and keeps the float32 bits here for embeddings of ``channels``
    (``blas_keeps_bits`` and ``bfloat16_pays``, each measured once)."""
    return 2 <= channels <= MAX_CHANNELS and blas_keeps_bits(channels) and bfloat16_pays(channels)


@functools.cache
def bfloat16_pays(channels: int) -> bool:
    """Whether a bfloat16 product of a tile's shape takes at most half the float32 one's time here (on a CPU
    with AVX-512 BF16 from 128 channels up; never without it)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(distance.TILE_ROWS, channels, generator=generator)
    y = torch.randn(distance.TILE_COLUMNS, channels, generator=generator)
    with _one_thread():
        return _seconds(torch.mm, x.bfloat16(), y.bfloat16()) * 2 <= _seconds(torch.mm, x, y)


@functools.cache
def blas_keeps_bits(channels: int) -> bool:
    """Whether, on random data, the confirmations' products (16 rows or more by CONFIRM_PROBES columns,
    roles turned) give the float32 search's tile the same bits, and the bound stays below its distances."""
    generator = torch.Generator().manual_seed(0)
    parts, rows, columns = 2, distance.TILE_ROWS, distance.TILE_COLUMNS
    x = torch.randn(parts, rows, channels, generator=generator)
    y = torch.randn(parts, columns, channels, generator=generator)
    y[:, :8] = x[:, :8] + 1e-3 * torch.randn(parts, 8, channels, generator=generator)  # near-zero distances
    x_sq, y_sq = (x * x).sum(2), (y * y).sum(2)
    with _one_thread():  # as the workers run
        buffers = torch.empty(2, rows, columns)
        full = torch.empty(rows, columns)
        _tile(x, y, "euc", x_sq, y_sq, buffers, out=full)
        picks = ([3, 1, 4, 0, 5, 9, 2, 6, 8, 7, 10, 11, 12, 13, 14, 15], list(range(0, columns, 9)),
                 list(range(columns - 300, columns)), list(range(columns)))
        for first, picked in zip((0, 37, rows - CONFIRM_PROBES, 100), picks):
            probes = slice(first, first + CONFIRM_PROBES)
            turned = torch.empty(len(picked), CONFIRM_PROBES)
            for low, high in _even_split(0, len(picked), columns):
                chosen = picked[low:high]
                _tile(y[:, chosen], x[:, probes], "euc", y_sq[:, chosen], x_sq[:, probes], buffers, out=turned[low:high])
            if not torch.equal(turned.T, full[probes][:, picked]):
                return False
        bound = torch.empty(rows, columns)
        centre = y.mean(dim=1)
        x_form = _form(PreparedEmbeddings(x, x_sq, "euc"), centre)
        y_form = _form(PreparedEmbeddings(y, y_sq, "euc"), centre)
        _lower_bound_tile(x_form, y_form, slice(None), slice(None), buffers[0].view(-1),
                          torch.empty(rows * columns, dtype=torch.bfloat16), bound)
        return bool((bound <= full).all())


@contextlib.contextmanager
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _seconds(function, x: torch.Tensor, y: torch.Tensor) -> float:
    """Best time of a few products x @ y.T."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        function(x, y.T)
        best = min(best, time.perf_counter() - start)
    return best


@dataclass(frozen=True)
class _Form:
    """Embeddings as the bound reads them: parts minus the gallery's mean, in bfloat16, with the float32
    squared norms and norms of the centred parts, and the squared norms of the parts themselves."""

    low: torch.Tensor  # [P, N, C] bfloat16
    squared_norms: torch.Tensor  # [P, N] of the centred parts
    norms: torch.Tensor  # [P, N] of the centred parts
    plain_squared_norms: torch.Tensor  # [P, N] of the parts as the float32 search reads them


def _form(embeddings: PreparedEmbeddings, centre: torch.Tensor) -> _Form | None:
    """``embeddings`` centred on ``centre`` [P, C] and made ready for ``_lower_bound_tile``; None unless
    every value is finite and of magnitude at most 2^40, the range the bound holds for.
    Distances do not change with the centre, but the bound is a fraction of the centred norms: around their
    mean, embeddings are far shorter than their distance to the origin."""
    parts = embeddings.parts
    low = torch.empty(parts.shape, dtype=torch.bfloat16)
    squared_norms = torch.empty(parts.shape[:2])
    for start in range(0, parts.shape[1], 4096):  # in pieces: no float32 copy of a whole gallery
        piece = parts[:, start:start + 4096]
        smallest, largest = (float(v) for v in torch.aminmax(piece))  # NaN shows in both
        if not (math.isfinite(smallest) and math.isfinite(largest) and max(-smallest, largest) <= LARGEST):
            return None
        centred = piece - centre[:, None]
        squared_norms[:, start:start + 4096] = (centred * centred).sum(dim=2)
        low[:, start:start + 4096] = centred
    return _Form(low, squared_norms, squared_norms.sqrt(), embeddings.squared_norms)


def _gallery_form(gallery: PreparedEmbeddings) -> tuple[torch.Tensor, _Form | None]:
    """The gallery's mean parts and its form, made once per prepared gallery (it serves every probe set)."""
    if "screening" not in gallery.derived:
        centre = gallery.parts.mean(dim=1)
        gallery.derived["screening"] = centre, _form(gallery, centre)
    return gallery.derived["screening"]


def _lower_bound_tile(x: _Form, y: _Form, rows: slice, columns: slice, squared: torch.Tensor,
                      product: torch.Tensor, out: torch.Tensor) -> None:
    """Write into ``out`` lower bounds of ``distance._tile``'s Euclidean distances between probes ``rows``
    of ``x`` and gallery entries ``columns`` of ``y`` (see the module's docstring); ``squared`` (float32) and
    ``product`` (bfloat16) are flat working arrays of at least rows x columns values."""
    x_low, y_low = x.low[:, rows], y.low[:, columns]
    num_parts, a, b = x_low.shape[0], x_low.shape[1], y_low.shape[1]
    squared, product = squared[:a * b].view(a, b), product[:a * b].view(a, b)
    y_sq = y.squared_norms[:, columns]
    # The float32 search's own rounding, of its uncentred squared norms (its sums of K products included)
    beta_plain = BETA + 2 * x_low.shape[2] * 2.0**-24
    slack = ALPHA * x.norms[:, rows] * y.norms[:, columns].amax(dim=1, keepdim=True) \
        + BETA * (x.squared_norms[:, rows] + y_sq.amax(dim=1, keepdim=True)) \
        + beta_plain * (x.plain_squared_norms[:, rows] + y.plain_squared_norms[:, columns].amax(dim=1, keepdim=True)) \
        + TINY
    lowered = x.squared_norms[:, rows] - slack  # [P, a]
    out.zero_()
    for part in range(num_parts):
        torch.mm(x_low[part], y_low[part].T, out=product)
        torch.add(lowered[part][:, None], y_sq[part][None, :], out=squared)
        out += squared.sub_(product, alpha=2).clamp_(min=0).sqrt_()
    out.div_(num_parts)


def nearest_in_groups(probe: PreparedEmbeddings, gallery: PreparedEmbeddings, bounds: list[int],
                      block_size: int) -> np.ndarray | None:
    """Indices [n_probe, groups] of each probe's nearest entry within each gallery group (from the group's
    start), equal to ``distance.nearest_in_groups(..., k=1)``; None where screening does not apply here (the
    caller then runs the float32 search). Both sets prepared for the Euclidean metric on the CPU; the caller
    keeps galleries under FEWEST_GALLERY entries out, before preparing them."""
    num_probe, num_gallery, channels = probe.parts.shape[1], gallery.parts.shape[1], probe.parts.shape[2]
    if num_probe < CONFIRM_PROBES or not screening_available(channels):
        return None
    centre, gallery_form = _gallery_form(gallery)
    probe_form = _form(probe, centre) if gallery_form is not None else None
    if probe_form is None:
        return None
    p, g = probe.parts, gallery.parts
    p_sq, g_sq = probe.squared_norms, gallery.squared_norms
    groups = list(zip(bounds[:-1], bounds[1:]))
    out = np.empty((num_probe, len(groups)), dtype=np.int64)
    with distance._Workers(p.device) as workers:
        tile_rows, tile_columns = min(distance.TILE_ROWS, num_probe), min(distance.TILE_COLUMNS, num_gallery)
        squared = torch.empty(workers.count, tile_rows * tile_columns)
        products = torch.empty(workers.count, tile_rows * tile_columns, dtype=torch.bfloat16)
        confirm = _Confirmer(p, g, p_sq, g_sq, workers)

        def compute_tile(rows: slice, columns: slice, worker: int, block_out: torch.Tensor) -> None:
            _lower_bound_tile(probe_form, gallery_form, rows, columns, squared[worker], products[worker], block_out)

        # A first block of a few hundred probes tells whether the bounds separate these embeddings.
        blocks = distance.tiled_blocks(num_probe, num_gallery, block_size, workers, compute_tile, None, p.device,
                                       first_block=min(block_size, TRIAL_PROBES))
        starts = torch.tensor(bounds[:-1])
        bounding = confirming = 0.0
        clock = time.perf_counter()
        for start, low in blocks:
            bounding += time.perf_counter() - clock
            clock = time.perf_counter()
            count = len(low)
            shares = workers.row_shares(count)

            def smallest_bounds(share: tuple[int, int]) -> torch.Tensor:
                block = low[share[0]:share[1]]
                return torch.stack([block[:, lo:hi].argmin(dim=1) + lo for lo, hi in groups], dim=1)

            # Round 1: per group, the entry of smallest bound; its float32 distance tau is at least the nearest's.
            first = torch.cat(workers.map(smallest_bounds, shares))  # [R, groups]
            rows = torch.arange(count)[:, None].expand(count, len(groups)).reshape(-1)
            tau = confirm(rows + start, first.reshape(-1)).view(count, len(groups))

            def maybe_nearer(share: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
                block, found = low[share[0]:share[1]], []
                for group, (lo, hi) in enumerate(groups):
                    maybe = block[:, lo:hi] <= tau[share[0]:share[1], group, None]
                    maybe[torch.arange(len(block)), first[share[0]:share[1], group] - lo] = False
                    row, column = maybe.nonzero(as_tuple=True)
                    found.append((row + share[0], column + lo))
                return torch.cat([r for r, _ in found]), torch.cat([c for _, c in found])

            # Round 2: every other entry whose bound is <= tau may be nearer; confirmed in float32 too.
            pairs = workers.map(maybe_nearer, shares)
            row_of, column_of = torch.cat([r for r, _ in pairs]), torch.cat([c for _, c in pairs])
            exact = confirm(row_of + start, column_of)
            row_of, column_of = torch.cat([rows, row_of]), torch.cat([first.reshape(-1), column_of])
            exact = torch.cat([tau.reshape(-1), exact])
            key = row_of * len(groups) + torch.searchsorted(starts, column_of, right=True) - 1
            best = torch.full((count * len(groups),), float("inf")).scatter_reduce(0, key, exact, "amin")
            # The first index among equal float32 distances, as argmin gives.
            winner = torch.where(exact == best[key], column_of, num_gallery)
            nearest = torch.full((count * len(groups),), num_gallery).scatter_reduce(0, key, winner, "amin")
            out[start:start + count] = (nearest.view(count, len(groups)) - starts).numpy()
            confirming += time.perf_counter() - clock
            if confirming > MOST_CONFIRMING * bounding and start + count < num_probe:
                # The bounds separate little here: screening would cost as much as the float32 search.
                rest = distance.nearest_in_groups(_rows(probe, start + count), gallery, bounds, 1, "euc",
                                                  p.device, block_size, screen=False)
                out[start + count:] = np.stack(rest, axis=1)[..., 0]
                break
            clock = time.perf_counter()
    return out


def _rows(embeddings: PreparedEmbeddings, start: int) -> PreparedEmbeddings:
    return PreparedEmbeddings(embeddings.parts[:, start:], embeddings.squared_norms[:, start:], embeddings.metric)


class _Confirmer:
    """Float32 distances of (probe, gallery entry) pairs, bit-identical to the float32 search's.

    Computed by ``distance._tile`` with the roles turned: the candidates of CONFIRM_PROBES probes as rows (at
    least CONFIRM_ROWS), those probes as columns. Each value is the same sum of the same products, and the
    BLAS gives it the same bits in that shape as in the search's tiles (``blas_keeps_bits`` checks).
    """

    def __init__(self, p, g, p_sq, g_sq, workers):
        self.p, self.g, self.p_sq, self.g_sq, self.workers = p, g, p_sq, g_sq, workers
        self.buffers = torch.empty(workers.count, 2, distance.TILE_COLUMNS, CONFIRM_PROBES)

    def __call__(self, probe_rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        """Distances of the pairs (probe_rows[i], columns[i])."""
        num_probe = self.p.shape[1]
        values = torch.empty(len(probe_rows))
        batches = torch.div(probe_rows, CONFIRM_PROBES, rounding_mode="floor")
        order = torch.argsort(batches, stable=True)
        batch_ids, counts = torch.unique_consecutive(batches[order], return_counts=True)

        def confirm(job: tuple[int, torch.Tensor], worker: int) -> None:
            batch, pairs = job
            first = min(batch * CONFIRM_PROBES, num_probe - CONFIRM_PROBES)
            probes = slice(first, first + CONFIRM_PROBES)
            wanted = torch.unique(columns[pairs])  # sorted
            if len(wanted) < CONFIRM_ROWS:  # fewer rows take another way through the BLAS: pad
                wanted = torch.unique(torch.cat([wanted, torch.arange(CONFIRM_ROWS)]))
            found = torch.empty(len(wanted), CONFIRM_PROBES)
            for low, high in _even_split(0, len(wanted), distance.TILE_COLUMNS):  # pieces of 16 or more
                picked = wanted[low:high]
                # index_select copies whole rows (advanced indexing gathers value by value: 3.6x slower)
                _tile(self.g.index_select(1, picked), self.p[:, probes], "euc", self.g_sq.index_select(1, picked),
                      self.p_sq[:, probes], self.buffers[worker], out=found[low:high])
            values[pairs] = found[torch.searchsorted(wanted, columns[pairs]), probe_rows[pairs] - first]

        self.workers.each(zip(batch_ids.tolist(), torch.split(order, counts.tolist())), confirm)
        return values
