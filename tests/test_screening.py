"""The bfloat16 screening of the nearest-neighbour search: the same indices as the float32 search, a lower
bound that never exceeds the float32 distance, and a float32 search wherever the bound cannot be trusted."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gaitrec.evaluation import screening
from gaitrec.evaluation.distance import PreparedEmbeddings, _tile, nearest_in_groups, prepare_embeddings
from gaitrec.evaluation.protocols import evaluate


@pytest.fixture
def small_galleries_screened(monkeypatch):
    """Screening for galleries of any size (it is kept for large ones), with a short trial block."""
    monkeypatch.setattr(screening, "FEWEST_GALLERY", 0)
    monkeypatch.setattr(screening, "TRIAL_PROBES", 64)
    monkeypatch.setattr(screening, "MOST_CONFIRMING", float("inf"))  # never hand over: test the screened path
    monkeypatch.setattr(screening, "bfloat16_pays", lambda channels: True)  # small channels are slower in bf16
    confirmations = []
    real = screening._Confirmer.__call__

    def counted(self, rows, columns):
        confirmations.append(len(rows))
        return real(self, rows, columns)

    monkeypatch.setattr(screening._Confirmer, "__call__", counted)
    return confirmations


def trained_like(subjects: int, views: int, channels: int, parts: int, noise: float, seed: int = 0):
    """Embeddings of subjects x views with a common offset, identity and view in a few dimensions, and noise:
    (gallery ordered by view, group bounds, probes of view 1, the probes' subjects)."""
    rng = np.random.default_rng(seed)
    width = channels * parts
    identity = rng.standard_normal((16, width)) / 4
    pose = rng.standard_normal((4, width)) / 2
    offset = 5 * rng.standard_normal(width)
    people = rng.standard_normal((subjects, 16))
    angles = rng.standard_normal((views, 4))

    def embed(who, view):
        values = offset + people[who] @ identity + angles[view] @ pose + noise * rng.standard_normal((len(who), width))
        return values.reshape(-1, channels, parts).astype(np.float32)

    gallery = np.concatenate([embed(np.arange(subjects), v) for v in range(views)])
    who = rng.integers(0, subjects, 3 * subjects)
    return gallery, [subjects * v for v in range(views + 1)], embed(who, 1), who


@pytest.mark.parametrize("noise", [0.2, 1.0, 3.0])  # from well separated to mostly wrong neighbours
def test_screened_nearest_equals_the_float32_search(small_galleries_screened, noise):
    gallery, bounds, probe, _ = trained_like(subjects=60, views=3, channels=32, parts=4, noise=noise)
    gallery[1] = gallery[0]  # exact ties: the first index wins in both searches
    gallery[61] = gallery[60]
    probe[5] = gallery[0]
    prepared = prepare_embeddings(gallery)
    plain = nearest_in_groups(probe, prepared, bounds, screen=False)
    screened = nearest_in_groups(probe, prepared, bounds)
    for a, b in zip(plain, screened):
        np.testing.assert_array_equal(a, b)
    assert screening.blas_keeps_bits(32)
    assert small_galleries_screened, "the screened path did not run"
    assert screened[0][5, 0] == 0


def test_screened_evaluation_gives_the_same_table(small_galleries_screened):
    gallery, bounds, _, _ = trained_like(subjects=40, views=4, channels=16, parts=4, noise=1.5, seed=3)
    probes = trained_like(subjects=40, views=4, channels=16, parts=4, noise=1.5, seed=3)[0]
    subjects = np.tile(np.arange(40), 4)
    views = np.repeat([f"{v * 30:03d}" for v in range(4)], 40)
    features = {"embeddings": np.concatenate([gallery, probes]),
                "labels": np.concatenate([subjects, subjects]).astype(str),
                "types": np.array(["01"] * 160 + ["00"] * 160), "views": np.concatenate([views, views])}
    screened = evaluate(features, "oumvlp", metric="euc", device="cpu")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(screening, "FEWEST_GALLERY", float("inf"))
        plain = evaluate(features, "oumvlp", metric="euc", device="cpu")
    assert screened.to_json() == plain.to_json()
    assert small_galleries_screened, "the screened path did not run"


def lower_bound_and_exact(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The bound and the float32 distances of every probe x [a, C, P] to every gallery entry y [b, C, P]."""
    px, py = prepare_embeddings(x), prepare_embeddings(y)
    a, b = len(x), len(y)
    exact = torch.empty(a, b)
    _tile(px.parts, py.parts, "euc", px.squared_norms, py.squared_norms, torch.empty(2, a, b), out=exact)
    centre = py.parts.mean(dim=1)
    bound = torch.empty(a, b)
    screening._lower_bound_tile(screening._form(px, centre, "probe"), screening._form(py, centre, "gallery"),
                                slice(None), slice(None),
                                torch.empty(2 * a * b), torch.empty(a * b, dtype=torch.bfloat16), bound)
    return bound, exact


@pytest.mark.parametrize("case", ["near duplicates", "far from the origin", "parts of unequal scale", "tiny values",
                                  "large values", "sparse", "bfloat16 roundings that add up",
                                  "probes far longer than the gallery, one part"])
def test_lower_bound_never_exceeds_the_float32_distance(case):
    rng = np.random.default_rng(7)
    y = rng.standard_normal((96, 64, 4)).astype(np.float32)
    if case == "near duplicates":
        x = y[:48] + 1e-4 * rng.standard_normal((48, 64, 4)).astype(np.float32)
    elif case == "far from the origin":
        y = y + 1e3
        x = y[:48] + rng.standard_normal((48, 64, 4)).astype(np.float32)
    elif case == "parts of unequal scale":
        y = y * np.array([1e-3, 1.0, 1e3, 1e-6], dtype=np.float32)
        x = y[:48] * 0.9
    elif case == "tiny values":
        y = y * np.float32(1e-36)  # subnormal once squared, and after centring
        x = y[:48] + np.float32(1e-40)
    elif case == "large values":
        y = y * np.float32(2.0**36)
        x = -y[:48]
    elif case == "probes far longer than the gallery, one part":
        # Squared distances far above |x||y|: the bfloat16 rounding of the product's output (up to 2^-8 of
        # it) exceeds the ALPHA margin, and only SHRINK covers it; one part, so no averaging over parts.
        y = rng.standard_normal((96, 64, 1)).astype(np.float32)
        x = 10 * rng.standard_normal((48, 64, 1)).astype(np.float32)
    elif case == "bfloat16 roundings that add up":
        # Every value just below the midpoint between two bfloat16 values, all rounded down: the product's
        # error is close to the worst case that ALPHA covers (the gallery's mean is exactly 0).
        y = np.where(np.arange(96)[:, None, None] % 2, 1.0039, -1.0039) * np.ones((96, 64, 4))
        x = 1.1054 / 1.0039 * y[:48]
    else:
        y[np.abs(y) < 1.5] = 0
        x = np.where(rng.random(y[:48].shape) < 0.5, y[:48], 0).astype(np.float32)
    bound, exact = lower_bound_and_exact(x.astype(np.float32), y.astype(np.float32))
    assert bool((bound <= exact).all()), float((bound - exact).max())
    assert bool(torch.isfinite(bound).all())


def test_the_bound_is_close_for_embeddings_of_a_trained_model():
    # Far from the origin and in few dimensions, as a model's embeddings are: centring keeps the bound
    # within a few percent, which is what makes screening pay.
    gallery, _, probe, _ = trained_like(subjects=50, views=2, channels=64, parts=4, noise=1.0)
    bound, exact = lower_bound_and_exact(probe[:40], gallery)
    assert float(((exact - bound) / exact).median()) < 0.05


def test_screening_declines_values_the_bound_does_not_cover(small_galleries_screened):
    gallery, bounds, probe, _ = trained_like(subjects=40, views=2, channels=16, parts=2, noise=1.0)
    for bad in (np.nan, np.inf, 2.0**41):
        spoiled = gallery.copy()
        spoiled[3, 2, 1] = bad
        prepared = prepare_embeddings(spoiled)
        assert screening.nearest_in_groups(prepare_embeddings(probe), prepared, bounds, 64) is None
    # ... and the search still answers, in float32
    spoiled = gallery.copy()
    spoiled[3, 2, 1] = 2.0**41
    plain = nearest_in_groups(probe, prepare_embeddings(spoiled), bounds, screen=False)
    for a, b in zip(plain, nearest_in_groups(probe, prepare_embeddings(spoiled), bounds)):
        np.testing.assert_array_equal(a, b)


def test_the_blas_check_compares_the_shapes_the_screening_uses(monkeypatch):
    # The confirmation shapes (at least 16 rows, CONFIRM_PROBES columns) against the search's tile: on this
    # machine's BLAS they agree; with a product of one column (another kernel) they would not.
    assert screening.CONFIRM_ROWS >= 16 and screening.CONFIRM_PROBES >= 2
    assert screening.blas_keeps_bits(48)
    monkeypatch.setattr(screening, "CONFIRM_PROBES", 1)
    screening.blas_keeps_bits.cache_clear()
    try:
        assert not screening.blas_keeps_bits(48)
    finally:
        monkeypatch.undo()
        screening.blas_keeps_bits.cache_clear()
    assert not screening.screening_available(1)
    assert not screening.screening_available(screening.MAX_CHANNELS + 1)
    probe = PreparedEmbeddings(torch.zeros(1, 4, 8), torch.zeros(1, 4), "euc")
    assert screening.nearest_in_groups(probe, probe, [0, 4], 64) is None  # too few probes to confirm in


def test_lowered_norms_are_split_exactly_and_rounded_down():
    rng = np.random.default_rng(3)
    exact = torch.tensor(rng.standard_normal(4000) * 2.0 ** rng.integers(-100, 90, 4000), dtype=torch.float64)
    rounded = screening._rounded_down(exact)
    assert rounded.dtype == torch.float32 and bool((rounded.double() <= exact).all())
    assert bool((exact - rounded.double() < exact.abs() * 2.0**-23).all())  # within one float32 step
    pieces = screening._three_pieces(rounded)
    assert pieces.dtype == torch.bfloat16
    total = pieces.double().sum(dim=-1)
    assert torch.equal(total, rounded.double())
