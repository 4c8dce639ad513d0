"""Nearest gallery entries found through a bfloat16 lower bound and confirmed in float32: the same indices as
the float32 search of ``distance.nearest_in_groups``, bit for bit, in less time on a CPU whose bfloat16
matrix products are fast (AVX-512 BF16 or AMX: about 5x float32's) when the gallery is large.

Rounded bfloat16 products cannot rank, but they can bound. Distances do not change when probes and gallery
are moved by the same vector, so both are first centred on the gallery's mean (embeddings lie far from the
origin and close to each other; the bound's margins are fractions of their centred norms).

One bfloat16 matrix product per part gives the whole lowered squared distance, with no pass over the tile
for the norms: a probe part x (centred) becomes the row [-2x, Lx, 1, -A x] and a gallery part y the row
[y, 1, Ly, |y|], where Lx and Ly are lowered squared norms, each split exactly into three bfloat16 values
(hence the 1s three times), and A x stands for ALPHA |x|. Their product is

    w = |x|^2 + |y|^2 - 2 x~.y~ - ALPHA |x||y| - (the lowerings of Lx and Ly),

x~ and y~ the inputs rounded to 8 significant bits (relative error u = 2^-8 each), the sums in float32 over
K' terms (K channels and EXTRA more). |2 x.y - 2 x~.y~| <= 2 (2u + u^2) sum|x_k y_k| <= 0.0157 |x||y|, and
ALPHA = 0.018 covers that after ALPHA |x| and |y| are themselves rounded to bfloat16 (0.018 (1 - u)^2 >
0.0158). The lowerings of Lx (and likewise Ly) are

    (BETA + ACCUMULATED) |x|^2 + BETA_PLAIN (1 + ACCUMULATED) |x0|^2 (+ TINY, probe side only)

with x0 the part before centring, whose squared norm the float32 search rounds: BETA = 2^-18 covers the
roundings of the centring and of the bound's own squared norms (about 2^-20 of them), BETA_PLAIN = BETA +
2 K 2^-24 the float32 search's rounding of |x0|^2 + |y0|^2 - 2 x0.y0, ACCUMULATED = 3 K' 2^-24 the float32
accumulation of the product's K' terms (their magnitudes add up to at most 2.03 (|x|^2 + |y|^2) + BETA_PLAIN
(|x0|^2 + |y0|^2) + TINY), and TINY what flushing subnormal values to zero can lose. Lx is rounded down to
float32 before it is split, so w is never above float32's own |x0|^2 + |y0|^2 - 2 x0.y0 for that part.

The product's output is rounded to bfloat16 (faithfully: up by less than 2^-7 w), converted to float32
exactly, its square root taken and the parts summed in float32; a w <= 0 is made NaN, and the pair's
bound is 0. So the sum over parts is at most (1 + 2^-8) (1 + 2^-20) times the sum of the square
roots of the w, which is at most the float32 search's sum over parts (its own roundings, 2^-19 at most,
included): multiplied by SHRINK / parts, SHRINK = 0.9955 < 1 / (1.0040 (1 + 2^-19)), the bound of the mean
distance is never above the float32 distance.

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
import torch.nn.functional as F

from . import distance
from .distance import PreparedEmbeddings, _even_split, _tile

ALPHA = 0.018
BETA = 2.0**-18
SHRINK = 0.9955
EXTRA = 7  # columns after the channels: three pieces of a lowered norm, three 1s and the ALPHA term
MAX_CHANNELS = 4096  # the accumulation terms of the margins hold up to here
# Values up to 2^40: no bfloat16 product or float32 sum of them overflows. Below 2^-126, bfloat16 products
# flush values to zero: with such magnitudes and at most 4096 channels that loses less than 2^-71 per part,
# which the absolute term of the lowering, TINY, covers.
LARGEST, TINY = 2.0**40, 2.0**-70
# A float32 confirmation computes at least 16 gallery rows by 32 probes: with fewer rows, or one column, the
# BLAS computes a product another way and its bits can differ.
CONFIRM_ROWS, CONFIRM_PROBES = 16, 32
# Galleries from this size: below it the float32 confirmations of each probe's candidates (at least one per
# gallery group) cost more than the bounds save (OU-MVLP's protocol on 2 cores: 1.15x slower than the float32
# search with a 10,000-entry gallery, 1.1x faster at 15,600, 1.7x at 134,000).
FEWEST_GALLERY = 16384
# Probes of the first block. If confirming their candidates took more than MOST_CONFIRMING of the time their
# bounds took, the float32 search does the rest: it takes about 2.5x the bounds' time (2 cores, a gallery
# of 34,000), so screening saves time while confirming costs less than 1.5x the bounds; 1.0 leaves room for
# what else the first block costs.
TRIAL_PROBES = 256
MOST_CONFIRMING = 1.0


def screening_available(channels: int) -> bool:
    """Whether screening pays and keeps the float32 bits here for embeddings of ``channels``
    (``blas_keeps_bits`` and ``bfloat16_pays``, each measured once)."""
    return 2 <= channels <= MAX_CHANNELS and blas_keeps_bits(channels) and bfloat16_pays(channels)


@functools.cache
def bfloat16_pays(channels: int) -> bool:
    """Whether a bfloat16 product of a tile's shape (the bound's rows) takes at most half the float32 one's
    time here (on a CPU with AVX-512 BF16 from 128 channels up; never without it)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(distance.TILE_ROWS, _width(channels), generator=generator)
    y = torch.randn(distance.TILE_COLUMNS, _width(channels), generator=generator)
    with _one_thread():
        bfloat16 = _seconds(torch.mm, x.bfloat16(), y.bfloat16())
        return bfloat16 * 2 <= _seconds(torch.mm, x[:, :channels].contiguous(), y[:, :channels].contiguous())


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
        x_form = _form(PreparedEmbeddings(x, x_sq, "euc"), centre, "probe")
        y_form = _form(PreparedEmbeddings(y, y_sq, "euc"), centre, "gallery")
        _lower_bound_tile(x_form, y_form, slice(None), slice(None), buffers.view(-1),
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


def _width(channels: int) -> int:
    """Columns of a bound's rows: the channels and EXTRA more, rounded up to a multiple of 16 (bfloat16
    products run at full speed on such widths)."""
    return -(-(channels + EXTRA) // 16) * 16


def _form(embeddings: PreparedEmbeddings, centre: torch.Tensor, side: str) -> torch.Tensor | None:
    """``embeddings`` centred on ``centre`` [P, C] as the rows [P, N, _width(C)] bfloat16 of the bound's
    products (the module's docstring): [-2x, Lx, 1, -A x] for the "probe" side, [y, 1, Ly, |y|] for the
    "gallery" side. None unless every value is finite and of magnitude at most 2^40, the range the bound
    holds for. Distances do not change with the centre, but the bound's margins are fractions of the centred
    norms: around their mean, embeddings are far shorter than their distance to the origin."""
    parts, plain_squared_norms = embeddings.parts, embeddings.squared_norms
    channels = parts.shape[2]
    accumulated = 3 * _width(channels) * 2.0**-24
    beta_plain = BETA + 2 * channels * 2.0**-24
    rows = torch.zeros(*parts.shape[:2], _width(channels), dtype=torch.bfloat16)
    norm_columns, one_columns = (slice(channels, channels + 3), slice(channels + 3, channels + 6)) \
        if side == "probe" else (slice(channels + 3, channels + 6), slice(channels, channels + 3))
    for start in range(0, parts.shape[1], 4096):  # in pieces: no float32 copy of a whole gallery
        piece, out = parts[:, start:start + 4096], rows[:, start:start + 4096]
        smallest, largest = (float(v) for v in torch.aminmax(piece))  # NaN shows in both
        if not (math.isfinite(smallest) and math.isfinite(largest) and max(-smallest, largest) <= LARGEST):
            return None
        centred = piece - centre[:, None]
        squared_norms = (centred * centred).sum(dim=2)
        lowered = squared_norms.double() * (1 - BETA - accumulated) \
            - beta_plain * (1 + accumulated) * plain_squared_norms[:, start:start + 4096].double()
        if side == "probe":
            lowered -= TINY
            out[..., :channels] = centred.bfloat16().mul_(-2)  # doubling is exact
            out[..., channels + 6] = (ALPHA * squared_norms.sqrt()).bfloat16().neg_()
        else:
            out[..., :channels] = centred
            out[..., channels + 6] = squared_norms.sqrt()
        out[..., norm_columns] = _three_pieces(_rounded_down(lowered))
        out[..., one_columns] = 1
    return rows


def _rounded_down(values: torch.Tensor) -> torch.Tensor:
    """float64 ``values`` as the largest float32 values not above them."""
    nearest = values.float()
    return torch.where(nearest.double() > values, torch.nextafter(nearest, torch.tensor(-math.inf)), nearest)


def _three_pieces(values: torch.Tensor) -> torch.Tensor:
    """float32 ``values`` [...] as three bfloat16 values [..., 3] whose sum is exactly the value: each piece
    rounds (to nearest) what the pieces before it left, 8 of the 24 significant bits at a time."""
    high = values.bfloat16()
    rest = values - high.float()  # exact: high is within a factor of 2 of values
    middle = rest.bfloat16()
    low = (rest - middle.float()).bfloat16()  # what is left has at most 8 significant bits: exact
    return torch.stack([high, middle, low], dim=-1)


def _gallery_form(gallery: PreparedEmbeddings) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The gallery's mean parts and its bound rows, made once per prepared gallery (they serve every probe
    set)."""
    if "screening" not in gallery.derived:
        centre = gallery.parts.mean(dim=1)
        gallery.derived["screening"] = centre, _form(gallery, centre, "gallery")
    return gallery.derived["screening"]


def _lower_bound_tile(x: torch.Tensor, y: torch.Tensor, rows: slice, columns: slice, working: torch.Tensor,
                      product: torch.Tensor, out: torch.Tensor) -> None:
    """Write into ``out`` lower bounds of ``distance._tile``'s Euclidean distances between probes ``rows``
    of the probe rows ``x`` and gallery entries ``columns`` of the gallery rows ``y`` (``_form``; the module's
    docstring has the proof); ``working`` (float32, at least 2 x rows x columns values) and ``product``
    (bfloat16, rows x columns) are flat working arrays."""
    x_rows, y_rows = x[:, rows], y[:, columns]
    num_parts, a, b = x_rows.shape[0], x_rows.shape[1], y_rows.shape[1]
    total, root = working[:2 * a * b].view(2, a, b)
    product = product[:a * b].view(a, b)
    for part in range(num_parts):
        torch.mm(x_rows[part], y_rows[part].T, out=product)  # the lowered squared distances
        # Square roots in float32: exact conversion, no rounding of the root to bfloat16, and a float32 sum
        # (adding bfloat16 values to float32 ones converts them again, slowly: 1.7x the time of these).
        # Values <= 0 become NaN first: torch's float32 square root of 0 or of a negative value runs 15-60x
        # slower here than of a positive value or NaN, and near-duplicate embeddings give many of them.
        if part == 0:
            F.threshold_(total.copy_(product), 0.0, math.nan).sqrt_()
        else:
            total += F.threshold_(root.copy_(product), 0.0, math.nan).sqrt_()
    # A NaN stands for a lowered squared distance <= 0 in some part: that pair's bound is 0.
    torch.mul(total.nan_to_num_(nan=0.0), SHRINK / num_parts, out=out)


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
    probe_form = _form(probe, centre, "probe") if gallery_form is not None else None
    if probe_form is None:
        return None
    p, g = probe.parts, gallery.parts
    p_sq, g_sq = probe.squared_norms, gallery.squared_norms
    groups = list(zip(bounds[:-1], bounds[1:]))
    out = np.empty((num_probe, len(groups)), dtype=np.int64)
    with distance._Workers(p.device) as workers:
        tile_rows, tile_columns = min(distance.TILE_ROWS, num_probe), min(distance.TILE_COLUMNS, num_gallery)
        totals = torch.empty(workers.count, 2 * tile_rows * tile_columns)
        products = torch.empty(workers.count, tile_rows * tile_columns, dtype=torch.bfloat16)
        confirm = _Confirmer(p, g, p_sq, g_sq, workers)

        def compute_tile(rows: slice, columns: slice, worker: int, block_out: torch.Tensor) -> None:
            _lower_bound_tile(probe_form, gallery_form, rows, columns, totals[worker], products[worker], block_out)

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
