"""The test protocols of the gait benchmarks, as OpenGait's evaluator defines them.

Each protocol is a function of the test features (``embeddings`` [N, C, P], ``labels``, ``types``,
``views``) returning a JSON-serialisable dict::

    {"protocol": name, "metric": "euc" | "cos", "results": {figure: value},
     "per_view": {row: {probe view: value}}, ...}

Figures are percentages. Each cell is rounded where OpenGait rounds it; the aggregates are not.
``evaluate`` picks the protocol by name; ``protocol_for_eval_func`` translates an OpenGait config.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import DataError
from ..registry import closest
from .distance import check_metric, nearest, nearest_in_groups, pairwise_distance
from .features import check_features
from .metrics import accuracy_and_map, percent_rounded, rank_k_hits, retrieval_metrics
from .rerank import check_rerank_size, k_reciprocal_rerank

DEFAULT_PROBE_SET = Path(__file__).resolve().parent.parent / "partitions" / "Gait3D.json"

# Single-view gallery protocols: probe types per condition, gallery types (OpenGait's evaluator).
CASIA_B_PROBES = {"NM": ["nm-05", "nm-06"], "BG": ["bg-01", "bg-02"], "CL": ["cl-01", "cl-02"]}
CASIA_B_GALLERY = ["nm-01", "nm-02", "nm-03", "nm-04"]
OUMVLP_PROBES = {"NM": ["00"]}
OUMVLP_GALLERY = ["01"]
CASIA_E_PROBES = {
    condition: [f"{height}-{scene}-{condition.lower()}-{n}" for scene in ("scene2", "scene3", "scene3_s")
                for height in ("H", "L") for n in (1, 2)]
    for condition in ("NM", "BG", "CL")
}
CASIA_E_GALLERY = ["H-scene1-nm-1", "H-scene1-nm-2", "L-scene1-nm-1", "L-scene1-nm-2"]
CASIA_E_EXCLUDED_VIEWS = ("270",)
# SUSTech1K matches these as substrings of the type (e.g. "01-nm" inside "01-nm-..." or "bg" in "02-bg").
SUSTECH1K_PROBES = {
    "Normal": ["01-nm"], "Bag": ["bg"], "Clothing": ["cl"], "Carrying": ["cr"], "Umbrella": ["ub"],
    "Uniform": ["uf"], "Occlusion": ["oc"], "Night": ["nt"], "Overall": ["01", "02", "03", "04"],
}
SUSTECH1K_GALLERY = ["00-nm"]

# Cross-view gallery protocols: one gallery of every view (Yu et al.'s comprehensive study, TPAMI 2022).
CASIA_B_CROSS_PROBES = {"NM": ["nm-01"], "BG": ["bg-01"], "CL": ["cl-01"]}
CASIA_B_CROSS_GALLERY = ["nm-02", "bg-02", "cl-02"]

GREW_GALLERY, GREW_PROBE = ["01"], ["02"]
GREW_SUBMISSION_GALLERY, GREW_SUBMISSION_PROBE = ["01", "02"], ["03"]
GREW_SUBMISSION_RANKS = 20
DEFAULT_RERANK = {"k1": 6, "k2": 6, "lambda_value": 0.3}


# ---------------------------------------------------------------- input checks and selection

def prepare_features(features: dict, where: str = "features") -> dict:
    """Arrays of the expected dtypes, validated (keys, lengths, finite values)."""
    if not isinstance(features, dict):
        raise DataError(f"{where}: expected a dict with embeddings, labels, types, views; "
                         f"got {type(features).__name__}")
    arrays = dict(features)
    if "embeddings" in arrays:
        arrays["embeddings"] = np.asarray(arrays["embeddings"], dtype=np.float32)
    for key in ("labels", "types", "views"):
        if key in arrays:
            arrays[key] = np.asarray(arrays[key]).astype(str)
    check_features(arrays, where)
    if len(arrays["embeddings"]) == 0:
        raise DataError(f"{where}: no embeddings")
    return arrays


def _type_mask(types: np.ndarray, wanted: Sequence[str], substring: bool = False) -> np.ndarray:
    if not substring:
        return np.isin(types, list(wanted))
    return np.any([np.char.find(types, w) >= 0 for w in wanted], axis=0)


def _present(values: np.ndarray, limit: int = 12) -> str:
    unique = sorted(set(values.tolist()))
    shown = ", ".join(unique[:limit])
    return shown + (f", ... ({len(unique)} in all)" if len(unique) > limit else "")


class _Distances:
    """Probe-to-gallery distances or nearest neighbours, plain or re-ranked, with the run's options."""

    def __init__(self, metric: str, rerank: bool, rerank_params: dict | None, device):
        self.metric = check_metric(metric)
        self.rerank = rerank
        self.rerank_params = {**DEFAULT_RERANK, **(rerank_params or {})}
        self.device = device

    def matrix(self, probe: np.ndarray, gallery: np.ndarray) -> np.ndarray:
        if not self.rerank:
            return pairwise_distance(probe, gallery, self.metric, self.device)
        check_rerank_size(len(probe) + len(gallery))  # before the joint distances are computed
        joint = np.concatenate([probe, gallery])
        joint_dist = pairwise_distance(joint, joint, self.metric, self.device)
        return k_reciprocal_rerank(joint_dist, len(probe), **self.rerank_params)

    def nearest(self, probe: np.ndarray, gallery: np.ndarray, k: int) -> np.ndarray:
        if k > len(gallery):
            raise DataError(f"rank-{k} needs at least {k} gallery entries, found {len(gallery)}")
        if not self.rerank:
            return nearest(probe, gallery, k, self.metric, self.device)
        return np.argsort(self.matrix(probe, gallery), axis=1)[:, :k]

    def nearest_in_groups(self, probe: np.ndarray, gallery: np.ndarray, bounds: list[int], k: int) -> list[np.ndarray]:
        if not self.rerank:
            return nearest_in_groups(probe, gallery, bounds, k, self.metric, self.device)
        # Re-ranking works on the joint set of the probes and one group, as a separate comparison.
        return [self.nearest(probe, gallery[low:high], k) for low, high in zip(bounds[:-1], bounds[1:])]


# ---------------------------------------------------------------- generic procedures

def single_view_gallery(
    features: dict,
    probe_types: dict[str, list[str]],
    gallery_types: list[str],
    distances: _Distances,
    num_rank: int = 1,
    excluded_views: Sequence[str] = (),
    substring: bool = False,
    where: str = "protocol",
) -> dict:
    """Rank-k accuracy per (probe view, gallery view), identical views excluded from the averages.

    For each condition, probe view a and gallery view b: the % of probes at a whose k nearest gallery
    entries at b include their subject, rounded to 2 decimals. A probe view's figure is the mean over the
    other views b != a; the condition's figure is the mean over probe views. Probes whose subject has no
    gallery entry at view b count as misses.
    """
    emb, labels, types, views = features["embeddings"], features["labels"], features["types"], features["views"]
    view_list = [str(v) for v in np.unique(views) if v not in excluded_views]
    if len(view_list) < 2:
        raise DataError(f"{where}: needs at least two views to exclude identical-view cases, found {view_list}")
    gallery_mask = _type_mask(types, gallery_types, substring)
    gallery_of_view = {}
    for view in view_list:
        index = np.flatnonzero(gallery_mask & (views == view))
        if len(index) == 0:
            raise DataError(f"{where}: no gallery sequences (types {', '.join(gallery_types)}) at view {view}; "
                             f"every probe view is matched against every gallery view. "
                             f"Types present: {_present(types)}")
        if len(index) < num_rank:
            raise DataError(f"{where}: rank-{num_rank} needs at least {num_rank} gallery sequences at view {view}, "
                             f"found {len(index)}")
        gallery_of_view[view] = index
    # Gallery ordered by view: each view is one contiguous slice of the distance columns.
    gallery_index = np.concatenate([gallery_of_view[v] for v in view_list])
    all_probes = np.any([_type_mask(types, wanted, substring) for wanted in probe_types.values()], axis=0)
    warn_unmatched(labels[all_probes & np.isin(views, view_list)], labels[gallery_index], where)
    bounds = np.cumsum([0] + [len(gallery_of_view[v]) for v in view_list]).tolist()
    gallery_emb = emb[gallery_index]

    num_views = len(view_list)
    results, per_view, matrices, cmc, counts = {}, {}, {}, {}, {}
    for condition, wanted in probe_types.items():
        probe_mask = _type_mask(types, wanted, substring)
        if not probe_mask.any():
            raise DataError(f"{where}: no probe sequences for {condition} (types {', '.join(wanted)}); "
                             f"types present: {_present(types)}")
        accuracy = np.full((num_views, num_views, num_rank), -1.0)
        for a, probe_view in enumerate(view_list):
            probe_index = np.flatnonzero(probe_mask & (views == probe_view))
            if len(probe_index) == 0:
                raise DataError(f"{where}: no {condition} probe sequences (types {', '.join(wanted)}) at view "
                                 f"{probe_view}; views with probes: {_present(views[probe_mask])}")
            nearest_by_view = distances.nearest_in_groups(emb[probe_index], gallery_emb, bounds, num_rank)
            for b, idx in enumerate(nearest_by_view):
                columns = gallery_index[bounds[b]:bounds[b + 1]]
                hits = rank_k_hits(labels[columns][idx], labels[probe_index])
                accuracy[a, b, :] = percent_rounded(hits, len(probe_index))
        counts[condition] = int(probe_mask.sum())
        rank_means = []
        for r in range(num_rank):
            by_probe_view = _exclude_identical_views(accuracy[:, :, r])
            rank_means.append(float(np.mean(by_probe_view)))
            results[f"{condition}-rank{r + 1}"] = rank_means[-1]
            if r == 0:
                per_view[condition] = {v: float(x) for v, x in zip(view_list, by_probe_view)}
        matrices[condition] = {"views": view_list, "accuracy": accuracy[:, :, 0].tolist()}
        if num_rank > 1:
            matrices[condition]["accuracy_by_rank"] = np.moveaxis(accuracy, 2, 0).tolist()
            cmc[condition] = rank_means
    out = {"results": results, "per_view": per_view, "matrix": matrices,
           "counts": {"probes": counts, "gallery": int(len(gallery_index))}}
    if cmc:
        out["cmc"] = cmc
    return out


def warn_unmatched(probe_labels: np.ndarray, gallery_labels: np.ndarray, where: str) -> int:
    """Warn when probes have no gallery sequence of their subject: they can only count as misses, and when
    none has one the table is all zeros (usually probes and gallery from different subject lists)."""
    unmatched = int(np.sum(~np.isin(probe_labels, gallery_labels)))
    if unmatched:
        warnings.warn(f"{where}: {unmatched} of {len(probe_labels)} probe sequences have no gallery sequence of "
                      "their subject and count as misses"
                      + ("; no probe can match, so every figure is 0" if unmatched == len(probe_labels) else ""))
    return unmatched


def _exclude_identical_views(accuracy: np.ndarray) -> np.ndarray:
    """Per probe view (row), the mean over the other gallery views: the diagonal is left out."""
    off_diagonal = accuracy - np.diag(np.diag(accuracy))
    return off_diagonal.sum(axis=1) / (accuracy.shape[1] - 1.0)


def cross_view_gallery(
    features: dict,
    probe_types: dict[str, list[str]],
    gallery_types: list[str],
    distances: _Distances,
    where: str = "protocol",
) -> dict:
    """One gallery of all views; for each probe the gallery entries of its own subject at its own view are
    removed (other subjects at that view stay). Rank-1 and mAP per probe view (rounded to 2 decimals), the
    condition's figure is the mean over probe views.
    """
    emb, labels, types, views = features["embeddings"], features["labels"], features["types"], features["views"]
    view_list = [str(v) for v in np.unique(views)]
    gallery_index = np.flatnonzero(_type_mask(types, gallery_types))
    if len(gallery_index) == 0:
        raise DataError(f"{where}: no gallery sequences (types {', '.join(gallery_types)}); "
                         f"types present: {_present(types)}")
    gallery_emb = emb[gallery_index]
    results, per_view, counts = {}, {}, {}
    for condition, wanted in probe_types.items():
        probe_mask = _type_mask(types, wanted)
        if not probe_mask.any():
            raise DataError(f"{where}: no probe sequences for {condition} (types {', '.join(wanted)}); "
                             f"types present: {_present(types)}")
        rank1, mean_ap = {}, {}
        for view in view_list:
            probe_index = np.flatnonzero(probe_mask & (views == view))
            if len(probe_index) == 0:
                raise DataError(f"{where}: no {condition} probe sequences (types {', '.join(wanted)}) at view {view}; "
                                 f"views with probes: {_present(views[probe_mask])}")
            dist = distances.matrix(emb[probe_index], gallery_emb)
            exclude = ((labels[probe_index][:, None] == labels[gallery_index][None, :])
                       & (views[probe_index][:, None] == views[gallery_index][None, :]))
            acc, m_ap, with_match = accuracy_and_map(dist, labels[probe_index], labels[gallery_index], exclude)
            if with_match == 0:
                raise DataError(f"{where}: no {condition} probe at view {view} has a true match in the gallery "
                                 f"outside its own view, so mAP is undefined")
            rank1[view] = float(np.round(acc * 100, 2))
            mean_ap[view] = float(np.round(m_ap * 100, 2))
        results[f"{condition}-rank1"] = float(np.mean(list(rank1.values())))
        results[f"{condition}-mAP"] = float(np.mean(list(mean_ap.values())))
        per_view[f"{condition}-rank1"] = rank1
        per_view[f"{condition}-mAP"] = mean_ap
        counts[condition] = int(probe_mask.sum())
    return {"results": results, "per_view": per_view,
            "counts": {"probes": counts, "gallery": int(len(gallery_index))}}


# ---------------------------------------------------------------- the protocols

def casia_b(features: dict, distances: _Distances, **_) -> dict:
    """CASIA-B: gallery nm-01..04 of one view, probes NM (nm-05/06), BG, CL; identical views excluded."""
    return single_view_gallery(features, CASIA_B_PROBES, CASIA_B_GALLERY, distances, where="casia-b")


def casia_b_cross_view(features: dict, distances: _Distances, **_) -> dict:
    """CASIA-B cross-view gallery: probes nm-01 / bg-01 / cl-01, gallery nm-02, bg-02, cl-02 of all views."""
    return cross_view_gallery(features, CASIA_B_CROSS_PROBES, CASIA_B_CROSS_GALLERY, distances,
                              where="casia-b-cross-view")


def oumvlp(features: dict, distances: _Distances, **_) -> dict:
    """OU-MVLP: probe type 00, gallery type 01, per view pair, identical views excluded; ``rank1``."""
    out = single_view_gallery(features, OUMVLP_PROBES, OUMVLP_GALLERY, distances, where="oumvlp")
    out["results"] = {"rank1": out["results"]["NM-rank1"]}
    return out


def oumvlp_cross_view(features: dict, distances: _Distances, **_) -> dict:
    """OU-MVLP cross-view gallery: probes 00, gallery 01 of all views; ``rank1`` and ``mAP``."""
    out = cross_view_gallery(features, OUMVLP_PROBES, OUMVLP_GALLERY, distances, where="oumvlp-cross-view")
    out["results"] = {"rank1": out["results"]["NM-rank1"], "mAP": out["results"]["NM-mAP"]}
    return out


def casia_e(features: dict, distances: _Distances, **_) -> dict:
    """CASIA-E: gallery scene1 nm, probes scene2/3 NM, BG, CL; view 270 left out as probe and gallery."""
    return single_view_gallery(features, CASIA_E_PROBES, CASIA_E_GALLERY, distances,
                               excluded_views=CASIA_E_EXCLUDED_VIEWS, where="casia-e")


def sustech1k(features: dict, distances: _Distances, **_) -> dict:
    """SUSTech1K: gallery 00-nm, nine probe conditions matched by substring of the type, rank-1 to rank-5."""
    return single_view_gallery(features, SUSTECH1K_PROBES, SUSTECH1K_GALLERY, distances, num_rank=5,
                               substring=True, where="sustech1k")


def grew(features: dict, distances: _Distances, **_) -> dict:
    """GREW labelled split: gallery type 01, probes type 02, rank-1/5/10/20 (rounded to 2 decimals)."""
    emb, labels, types = features["embeddings"], features["labels"], features["types"]
    probe_index, gallery_index = _split_by_type(types, GREW_PROBE, GREW_GALLERY, "grew")
    warn_unmatched(labels[probe_index], labels[gallery_index], "grew")
    idx = distances.nearest(emb[probe_index], emb[gallery_index], 20)
    hits = rank_k_hits(labels[gallery_index][idx], labels[probe_index])
    curve = percent_rounded(hits, len(probe_index))
    return {"results": {f"rank{k}": float(curve[k - 1]) for k in (1, 5, 10, 20)}, "per_view": {},
            "cmc": {"all": curve.tolist()},
            "counts": {"probes": int(len(probe_index)), "gallery": int(len(gallery_index))}}


def grew_submission_rows(features: dict, distances: _Distances) -> list[tuple[str, list[str]]]:
    """(video id, subjects of the 20 nearest gallery entries) for every unlabelled GREW probe."""
    emb, labels, types, views = features["embeddings"], features["labels"], features["types"], features["views"]
    probe_index, gallery_index = _split_by_type(types, GREW_SUBMISSION_PROBE, GREW_SUBMISSION_GALLERY,
                                                "grew-submission")
    idx = distances.nearest(emb[probe_index], emb[gallery_index], GREW_SUBMISSION_RANKS)
    subjects = labels[gallery_index]
    rows = []
    for video_id, nearest_idx in zip(views[probe_index], idx):
        rows.append((str(video_id), [_subject_number(subjects[j]) for j in nearest_idx]))
    return rows


def _subject_number(label: str) -> str:
    # The GREW server expects subject ids as integers (OpenGait writes int(label): "00012" -> "12").
    try:
        return str(int(label))
    except ValueError:
        raise DataError(f"grew-submission: gallery subject {str(label)!r} is not a number; GREW subject ids are "
                         f"numeric folder names such as 00001") from None


def grew_submission_csv(rows: list[tuple[str, list[str]]]) -> str:
    """The CSV the GREW evaluation server takes: header ``videoId,rank1,...,rank20``, one row per probe."""
    header = "videoId," + ",".join(f"rank{k}" for k in range(1, GREW_SUBMISSION_RANKS + 1))
    lines = [header] + [",".join([video_id, *subjects]) for video_id, subjects in rows]
    return "\n".join(lines) + "\n"


def grew_submission(features: dict, distances: _Distances, **_) -> dict:
    """GREW test server submission: gallery types 01 and 02, probes type 03 (view = video id)."""
    rows = grew_submission_rows(features, distances)
    return {"results": {"probes": len(rows)}, "per_view": {}, "csv": grew_submission_csv(rows)}


def _split_by_type(types, probe_types, gallery_types, where):
    probe_index = np.flatnonzero(np.isin(types, probe_types))
    gallery_index = np.flatnonzero(np.isin(types, gallery_types))
    if len(probe_index) == 0:
        raise DataError(f"{where}: no probe sequences (types {', '.join(probe_types)}); "
                         f"types present: {_present(types)}")
    if len(gallery_index) == 0:
        raise DataError(f"{where}: no gallery sequences (types {', '.join(gallery_types)}); "
                         f"types present: {_present(types)}")
    return probe_index, gallery_index


def load_probe_set(probe_set) -> set[str]:
    """Probe entries ``<subject>-<type>-<view>`` from a list, or from a partition JSON's ``PROBE_SET``."""
    if probe_set is None:
        probe_set = DEFAULT_PROBE_SET
    if isinstance(probe_set, (str, Path)):
        path = Path(probe_set)
        if not path.is_file():
            raise DataError(f"probe set file not found: {path}")
        try:
            partition = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(partition, dict) or "PROBE_SET" not in partition:
            raise DataError(f"{path}: no PROBE_SET list; expected a partition JSON with PROBE_SET entries "
                             f"<subject>-<type>-<view>")
        probe_set = partition["PROBE_SET"]
    entries = {str(x) for x in probe_set}
    if not entries:
        raise DataError("the probe set is empty")
    return entries


def gait3d(features: dict, distances: _Distances, probe_set=None, **_) -> dict:
    """Gait3D: probes from ``PROBE_SET``, every other sequence is gallery; rank-1/5/10, mAP, mINP over
    probes with a true match (the others are skipped)."""
    emb, labels, types, views = features["embeddings"], features["labels"], features["types"], features["views"]
    wanted = load_probe_set(probe_set)
    keys = np.char.add(np.char.add(np.char.add(np.char.add(labels, "-"), types), "-"), views)
    probe_mask = np.isin(keys, list(wanted))
    if not probe_mask.any():
        raise DataError(f"gait3d: none of the {len(wanted)} probe-set entries (e.g. {sorted(wanted)[0]}) is in the "
                         f"features (e.g. {keys[0]}); entries are <subject>-<type>-<view>")
    if probe_mask.all():
        raise DataError("gait3d: every sequence is in the probe set, leaving no gallery")
    gallery_labels = labels[~probe_mask]
    if len(gallery_labels) < 10:
        raise DataError(f"gait3d: rank-10 needs at least 10 gallery sequences, found {len(gallery_labels)}")
    dist = distances.matrix(emb[probe_mask], emb[~probe_mask])
    found = retrieval_metrics(dist, labels[probe_mask], gallery_labels)
    cmc_percent = found["cmc"] * np.float32(100)  # float32, as the Gait3D benchmark reports it
    results = {f"rank{k}": float(cmc_percent[k - 1]) for k in (1, 5, 10)}
    results["mAP"] = found["mAP"] * 100
    results["mINP"] = found["mINP"] * 100
    return {"results": results, "per_view": {}, "cmc": {"all": [float(x) for x in cmc_percent]},
            "counts": {"probes": int(probe_mask.sum()), "evaluated": found["evaluated"],
                       "skipped": found["skipped"], "gallery": int(len(gallery_labels))}}


PROTOCOLS: dict[str, Callable[..., dict]] = {
    "casia-b": casia_b,
    "casia-b-cross-view": casia_b_cross_view,
    "oumvlp": oumvlp,
    "oumvlp-cross-view": oumvlp_cross_view,
    "casia-e": casia_e,
    "sustech1k": sustech1k,
    "grew": grew,
    "grew-submission": grew_submission,
    "gait3d": gait3d,
}


def evaluate(
    features: dict,
    protocol: str,
    metric: str = "euc",
    rerank: bool = False,
    probe_set=None,
    device=None,
    rerank_params: dict | None = None,
) -> dict:
    """Evaluate test features under a named protocol.

    ``features``: ``embeddings`` [N, C, P], ``labels``, ``types``, ``views`` (as ``load_features`` returns).
    ``metric``: "euc" or "cos". ``rerank``: k-reciprocal re-ranking of every probe-to-gallery distance
    (``rerank_params`` overrides k1=6, k2=6, lambda_value=0.3). ``probe_set``: for gait3d, a partition JSON
    path or a list of ``<subject>-<type>-<view>`` entries (default: the packaged Gait3D partition); the
    other protocols select probes by type and ignore it.
    ``device``: where distances are computed; None = CUDA when available.
    """
    if protocol not in PROTOCOLS:
        hint = closest(protocol, PROTOCOLS)
        did_you_mean = f" Did you mean {hint!r}?" if hint else ""
        raise DataError(f"unknown protocol {protocol!r}.{did_you_mean} Known: {', '.join(PROTOCOLS)}")
    unknown = set(rerank_params or {}) - set(DEFAULT_RERANK)
    if unknown:
        raise DataError(f"unknown re-ranking parameter(s) {', '.join(sorted(unknown))}; "
                         f"expected {', '.join(DEFAULT_RERANK)}")
    distances = _Distances(metric, rerank, rerank_params, device)
    arrays = prepare_features(features)
    out = PROTOCOLS[protocol](arrays, distances, probe_set=probe_set)
    head = {"protocol": protocol, "metric": metric, "rerank": bool(rerank)}
    if rerank:
        head["rerank_params"] = distances.rerank_params
    return {**head, **out}


# OpenGait's evaluator_cfg.eval_func names. evaluate_many and compute_ACC_mAP are metric helpers there,
# not eval_funcs.
_INDOOR = {"CASIA-B": "casia-b", "OUMVLP": "oumvlp", "CASIA-E": "casia-e", "SUSTech1K": "sustech1k"}
_INDOOR_CROSS_VIEW = {"CASIA-B": "casia-b-cross-view", "OUMVLP": "oumvlp-cross-view"}
_NOT_SUPPORTED = ("evaluate_CCPG", "evaluate_CCGR_MINI", "HID_submission", "evaluate_segmentation",
                  "evaluate_scoliosis")


def protocol_for_eval_func(eval_func: str, dataset_name: str, cross_view_gallery: bool = False) -> str:
    """The gaitrec protocol for an OpenGait config's ``eval_func``, ``test_dataset_name`` and
    ``cross_view_gallery`` option."""
    if eval_func == "evaluate_indoor_dataset":
        table = _INDOOR_CROSS_VIEW if cross_view_gallery else _INDOOR
        if dataset_name not in table:
            kind = "a cross-view gallery protocol" if cross_view_gallery else "an indoor protocol"
            raise DataError(f"OpenGait's evaluate_indoor_dataset has {kind} for {', '.join(table)}, "
                             f"not for dataset {dataset_name!r}")
        return table[dataset_name]
    if eval_func == "evaluate_real_scene":
        if dataset_name != "GREW":
            raise DataError(f"evaluate_real_scene is supported for GREW only, not for dataset {dataset_name!r}")
        return "grew"
    if eval_func == "GREW_submission":
        return "grew-submission"
    if eval_func in ("evaluate_Gait3D", "evaluate_FreeGait"):  # same procedure, FreeGait with its own probe set
        return "gait3d"
    known = ["evaluate_indoor_dataset", "evaluate_real_scene", "GREW_submission", "evaluate_Gait3D",
             "evaluate_FreeGait"]
    if eval_func in _NOT_SUPPORTED:
        raise DataError(f"OpenGait's {eval_func} has no gaitrec protocol yet; supported: {', '.join(known)}")
    hint = closest(eval_func, known + list(_NOT_SUPPORTED))
    did_you_mean = f" Did you mean {hint!r}?" if hint else ""
    raise DataError(f"unknown eval_func {eval_func!r}.{did_you_mean} Supported: {', '.join(known)}")
