"""The tiled distance computation gives bit-identical distances and protocol results to the untiled one."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gaitrec.evaluation import distance, protocols
from gaitrec.evaluation.protocols import evaluate

torch.set_num_threads(1)


def parts_first(embeddings, metric, device):
    """[N, C, P] -> [P, N, C] as it was before prepared embeddings: the whole array at once."""
    x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32)).to(device)
    if metric == "cos":
        x = torch.nn.functional.normalize(x, p=2, dim=1)
    return x.permute(2, 0, 1).contiguous()


def untiled_blocks(probe, gallery, metric="euc", device=None, block_size=None, reduce=None):
    """The computation before tiling, kept verbatim as the reference: whole [block, gallery] arrays per part,
    each block reduced (nearest indices) as a whole."""
    device = distance.pick_device(device)
    p = parts_first(probe, metric, device)
    g = parts_first(gallery, metric, device)
    num_parts, num_probe, num_gallery = p.shape[0], p.shape[1], g.shape[1]
    block_size = block_size or max(1, distance.DEFAULT_BLOCK_BYTES // (4 * max(num_gallery, 1)))
    if metric == "euc":
        p_sq, g_sq = (p * p).sum(dim=2), (g * g).sum(dim=2)
    for start in range(0, num_probe, block_size):
        x = p[:, start:start + block_size]
        total = torch.zeros(x.shape[1], num_gallery, dtype=torch.float32, device=device)
        for part in range(num_parts):
            similarity = x[part] @ g[part].T
            if metric == "cos":
                total += similarity
            else:
                squared = p_sq[part, start:start + block_size, None] + g_sq[part][None, :]
                squared -= similarity.mul_(2)
                total += squared.clamp_(min=0).sqrt_()
        block = (1 - total / num_parts) if metric == "cos" else total.div_(num_parts)
        yield start, block if reduce is None else reduce(block)


@pytest.fixture
def small_tiles(monkeypatch):
    # many tiles of uneven sizes: at most 16 rows by 40 columns; embeddings prepared 7 at a time
    monkeypatch.setattr(distance, "TILE_ROWS", 16)
    monkeypatch.setattr(distance, "TILE_COLUMNS", 40)
    monkeypatch.setattr(distance, "PREPARE_ROWS", 7)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("metric", ["euc", "cos"])
@pytest.mark.parametrize("block_size", [None, 5, 64])
def test_tiled_distances_are_bit_identical(small_tiles, metric, block_size, threads):
    rng = np.random.default_rng(0)
    probe = rng.standard_normal((50, 64, 3), dtype=np.float32)
    gallery = rng.standard_normal((123, 64, 3), dtype=np.float32)
    torch.set_num_threads(threads)  # two: the tiles are shared out among two single-threaded workers
    try:
        tiled = distance.pairwise_distance(probe, gallery, metric, "cpu", block_size)
        assert torch.get_num_threads() == threads  # the workers' one-thread setting is undone
    finally:
        torch.set_num_threads(1)
    reference = np.concatenate([b.numpy() for _, b in untiled_blocks(probe, gallery, metric, "cpu", block_size)])
    assert tiled.tobytes() == reference.tobytes()


def random_features(rows: list[tuple[str, str, str]], seed: int) -> dict:
    # few channels and coarse values: exact ties among distances do occur, so their order is checked too
    rng = np.random.default_rng(seed)
    emb = rng.integers(-2, 3, size=(len(rows), 6, 2)).astype(np.float32) * 0.5
    labels, types, views = (np.array([r[k] for r in rows]) for k in range(3))
    return {"embeddings": emb, "labels": labels, "types": types, "views": views}


def protocol_features(name: str) -> tuple[dict, dict]:
    from gaitrec.benchmarks import protocol_rules

    if name.startswith("casia-b"):
        types = [f"nm-0{i}" for i in range(1, 7)] + ["bg-01", "bg-02", "cl-01", "cl-02"]
        rows = [(f"{s:03d}", t, v) for s in range(5) for t in types for v in ("000", "090", "180")]
    elif name.startswith("oumvlp"):
        rows = [(f"{s:05d}", t, v) for s in range(8) for t in ("00", "01") for v in ("000", "015", "030")]
    elif name == "casia-e":
        rule = protocol_rules()["casia-e"]
        types = list(rule.gallery) + [t for ts in rule.probes.values() for t in ts]
        rows = [(f"{s:04d}", t, v) for s in range(3) for t in types for v in ("000", "090", "270")]
    elif name == "sustech1k":
        types = ["00-nm", "01-nm", "01-bg", "02-cl", "02-cr", "03-ub", "03-uf", "04-oc", "04-nt"]
        rows = [(f"{s:04d}", t, v) for s in range(7) for t in types for v in ("000", "090")]
    elif name == "grew":
        rows = [(f"{s + 1:05d}", t, "000") for s in range(30) for t in ("01", "02", "02")]
    elif name == "grew-submission":
        rows = [(f"{s + 1:05d}", t, "00") for s in range(25) for t in ("01", "02")]
        rows += [("probe", "03", f"video_{i}") for i in range(6)]
    else:  # gait3d
        rows = [(f"S{s}", f"cam{c}", f"seq{c}") for s in range(12) for c in range(3)]
    return random_features(rows, seed=len(name)), {}


# Every protocol plain; re-ranking reads the same distances, so three protocols cover its paths.
CASES = [(name, False) for name in sorted(protocols.PROTOCOLS)] + [(name, True) for name in ("casia-b", "grew", "gait3d")]


@pytest.mark.parametrize("name, rerank", CASES)
def test_every_protocol_gives_the_untiled_results(small_tiles, monkeypatch, tmp_path, name, rerank):
    features, _ = protocol_features(name)
    probe_set = None
    if name == "gait3d":
        probe_set = tmp_path / "partition.json"
        probe_set.write_text(json.dumps({"PROBE_SET": [f"S{s}-cam0-seq0" for s in range(12)]}))
    for metric in ("euc", "cos"):
        tiled = evaluate(features, name, metric=metric, rerank=rerank, probe_set=probe_set, device="cpu")
        with monkeypatch.context() as patched:
            patched.setattr(distance, "distance_blocks", untiled_blocks)
            # as before prepared galleries: the embeddings themselves, converted again for every probe set
            patched.setattr(protocols._Distances, "prepare", lambda self, gallery: gallery)
            reference = evaluate(features, name, metric=metric, rerank=rerank, probe_set=probe_set, device="cpu")
        assert json.dumps(tiled.to_json(), sort_keys=True) == json.dumps(reference.to_json(), sort_keys=True)


def test_rerank_beyond_the_available_memory_is_refused_before_allocating(monkeypatch):
    from gaitrec.errors import DataError
    from gaitrec.evaluation import rerank

    # OU-MVLP's 133,780 sequences would need about 400 GiB of dense matrices
    assert rerank.rerank_bytes(133_780) > 400 * 2**30
    monkeypatch.setattr(rerank, "available_memory", lambda: 2**20)  # 1 MiB: about 180 sequences fit

    def no_distances(*args, **kwargs):
        raise AssertionError("the joint distances must not be computed")

    monkeypatch.setattr(protocols, "pairwise_distance", no_distances)
    with pytest.raises(DataError, match=r"^re-ranking 90 probe and gallery sequences needs about 0\.0 GiB") as error:
        rerank.check_rerank_size(90, available=90 * 90 * 20)
    assert "re-rank at most about" in str(error.value) and "\n" not in str(error.value)
    big = random_features([(f"{s + 1:05d}", t, "000") for s in range(120) for t in ("01", "02")], seed=0)
    with pytest.raises(DataError, match="re-ranking 240 probe and gallery sequences"):
        evaluate(big, "grew", rerank=True, device="cpu")
    rerank.check_rerank_size(150)  # 150 x 150 x 24 bytes = 0.5 MiB fits


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("metric", ["euc", "cos"])
def test_prepared_gallery_gives_the_indices_of_the_untiled_blocks(small_tiles, monkeypatch, metric, threads):
    # coarse values and repeated gallery entries: exact ties, whose order must be kept
    rng = np.random.default_rng(1)
    gallery = rng.integers(-2, 3, size=(97, 6, 2)).astype(np.float32) * 0.5
    gallery[15:30], gallery[52:70] = gallery[0:15], gallery[34:52]
    probes = [rng.integers(-2, 3, size=(n, 6, 2)).astype(np.float32) * 0.5 for n in (1, 33, 50)]
    bounds = [0, 30, 33, 70, 97]
    prepared = distance.prepare_embeddings(gallery, metric, "cpu")
    torch.set_num_threads(threads)  # two: each block's rows are reduced in two shares
    try:
        found = [(distance.nearest_in_groups(probe, prepared, bounds, k, metric, "cpu", block_size=20),
                  distance.nearest(probe, prepared, k, metric, "cpu", block_size=20))
                 for probe in probes for k in (1, 3)]  # the same prepared gallery for every probe set
    finally:
        torch.set_num_threads(1)
    monkeypatch.setattr(distance, "distance_blocks", untiled_blocks)
    for (groups, nearest), (probe, k) in zip(found, [(probe, k) for probe in probes for k in (1, 3)]):
        expected = distance.nearest_in_groups(probe, gallery, bounds, k, metric, "cpu", block_size=20)
        assert [g.tolist() for g in groups] == [g.tolist() for g in expected]
        assert nearest.tolist() == distance.nearest(probe, gallery, k, metric, "cpu", block_size=20).tolist()


def test_prepared_embeddings_belong_to_their_metric():
    prepared = distance.prepare_embeddings(np.ones((3, 4, 2), dtype=np.float32), "cos", "cpu")
    assert len(prepared) == 3 and prepared.squared_norms is None
    with pytest.raises(ValueError, match="prepared for metric 'cos' used with metric 'euc'"):
        distance.pairwise_distance(np.ones((2, 4, 2), dtype=np.float32), prepared, "euc", "cpu")


def test_a_protocol_prepares_its_gallery_once(monkeypatch):
    features, _ = protocol_features("oumvlp")  # 3 views: three probe sets share one gallery
    calls = []
    original = distance.prepare_embeddings

    def counting(embeddings, metric="euc", device=None):
        calls.append(len(embeddings))
        return original(embeddings, metric, device)

    monkeypatch.setattr(distance, "prepare_embeddings", counting)
    monkeypatch.setattr(protocols, "prepare_embeddings", counting)
    evaluate(features, "oumvlp", device="cpu")
    gallery_size = int(np.sum(features["types"] == "01"))
    assert calls.count(gallery_size) == 1 and len(calls) == 1 + 3  # the gallery once, each view's probes once
