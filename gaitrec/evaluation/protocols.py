"""The test protocols of the gait benchmarks, as OpenGait's evaluator defines them.

Each protocol is a function of the test features (``embeddings`` [N, C, P], ``labels``, ``types``,
``views``); ``evaluate`` returns what it finds as an ``EvaluationResult`` (``evaluation.result``): named
figures, per-view rows that say which figure is their mean, matrices, curves and counts.

Figures are percentages. Each cell is rounded where OpenGait rounds it; the aggregates are not.
``evaluate`` picks the protocol by name; ``protocol_for_eval_func`` translates an OpenGait config. Which
types are probes and gallery, and which procedure runs, is each benchmark's record in ``gaitrec.benchmarks``.
"""
from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..benchmarks import (BENCHMARKS, EVAL_FUNC_ALIASES, UNSUPPORTED_EVAL_FUNCS, ProtocolRule, benchmark,
                          find_benchmark, protocol_rules)
from ..data.dataset import read_partition
from ..errors import DataError
from ..registry import closest
from .distance import (PreparedEmbeddings, check_metric, nearest, nearest_in_groups, pairwise_distance,
                       prepare_embeddings)
from .features import check_features
from .metrics import accuracy_and_map, percent_rounded, rank_k_hits, retrieval_metrics
from .rerank import check_rerank_size, k_reciprocal_rerank
from .result import EvaluationResult, Row

# The probe and gallery rules live in the benchmark records; these names stay for readers of this module.
_RULES = protocol_rules()
DEFAULT_PROBE_SET = benchmark("Gait3D").partition_path
CASIA_B_PROBES = {c: list(t) for c, t in _RULES["casia-b"].probes.items()}
CASIA_B_GALLERY = list(_RULES["casia-b"].gallery)
SUSTECH1K_PROBES = {c: list(t) for c, t in _RULES["sustech1k"].probes.items()}
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

    def prepare(self, gallery: np.ndarray) -> np.ndarray | PreparedEmbeddings:
        """The gallery made ready once for the many probe sets compared with it; re-ranking works on the
        embeddings themselves (it joins probes and gallery), so they stay as they are."""
        return gallery if self.rerank else prepare_embeddings(gallery, self.metric, self.device)

    def matrix(self, probe: np.ndarray, gallery: np.ndarray | PreparedEmbeddings) -> np.ndarray:
        if not self.rerank:
            return pairwise_distance(probe, gallery, self.metric, self.device)
        check_rerank_size(len(probe) + len(gallery))  # before the joint distances are computed
        joint = np.concatenate([probe, gallery])
        joint_dist = pairwise_distance(joint, joint, self.metric, self.device)
        return k_reciprocal_rerank(joint_dist, len(probe), **self.rerank_params)

    def nearest(self, probe: np.ndarray, gallery: np.ndarray | PreparedEmbeddings, k: int) -> np.ndarray:
        if k > len(gallery):
            raise DataError(f"rank-{k} needs at least {k} gallery entries, found {len(gallery)}")
        if not self.rerank:
            return nearest(probe, gallery, k, self.metric, self.device)
        return np.argsort(self.matrix(probe, gallery), axis=1)[:, :k]

    def nearest_in_groups(self, probe: np.ndarray, gallery: np.ndarray | PreparedEmbeddings, bounds: list[int],
                          k: int) -> list[np.ndarray]:
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
    gallery_emb = distances.prepare(emb[gallery_index])  # once for every probe view and condition

    num_views = len(view_list)
    results, rows, matrices, cmc, counts = {}, [], {}, {}, {}
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
                rows.append(Row(condition, "rank1", f"{condition}-rank1", condition,
                                {v: float(x) for v, x in zip(view_list, by_probe_view)}))
        matrices[condition] = {"views": view_list, "accuracy": accuracy[:, :, 0].tolist()}
        if num_rank > 1:
            matrices[condition]["accuracy_by_rank"] = np.moveaxis(accuracy, 2, 0).tolist()
            cmc[condition] = rank_means
    out = {"results": results, "rows": rows, "matrix": matrices,
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
    gallery_emb = distances.prepare(emb[gallery_index])  # once for every probe view and condition
    results, rows, counts = {}, [], {}
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
        rows.append(Row(condition, "rank1", f"{condition}-rank1", f"{condition}-rank1", rank1))
        rows.append(Row(condition, "mAP", f"{condition}-mAP", f"{condition}-mAP", mean_ap))
        counts[condition] = int(probe_mask.sum())
    return {"results": results, "rows": rows,
            "counts": {"probes": counts, "gallery": int(len(gallery_index))}}


# ---------------------------------------------------------------- the procedures, run by rule

def _single_view(features: dict, distances: _Distances, rule: ProtocolRule, **_) -> dict:
    """Gallery of one view at a time (``single_view_gallery``) under ``rule``."""
    out = single_view_gallery(features, _lists(rule.probes), list(rule.gallery), distances, num_rank=rule.num_rank,
                              excluded_views=rule.excluded_views, substring=rule.substring, where=rule.name)
    return _plain_figures(out) if rule.plain_figures else out


def _cross_view(features: dict, distances: _Distances, rule: ProtocolRule, **_) -> dict:
    """One gallery of all views (``cross_view_gallery``) under ``rule``."""
    out = cross_view_gallery(features, _lists(rule.probes), list(rule.gallery), distances, where=rule.name)
    return _plain_figures(out) if rule.plain_figures else out


def _plain_figures(out: dict) -> dict:
    """Figures of a one-condition protocol named without the condition: ``NM-rank1`` -> ``rank1``."""
    (condition,) = {row.condition for row in out["rows"]}
    plain = {name: name[len(condition) + 1:] for name in out["results"]}
    out["results"] = {plain[name]: value for name, value in out["results"].items()}
    out["rows"] = [replace(row, figure=plain[row.figure]) for row in out["rows"]]
    return out


def _lists(probes) -> dict[str, list[str]]:
    return {condition: list(types) for condition, types in probes.items()}


def grew(features: dict, distances: _Distances, rule: ProtocolRule, **_) -> dict:
    """GREW labelled split: gallery type 01, probes type 02, rank-1/5/10/20 (rounded to 2 decimals)."""
    emb, labels, types = features["embeddings"], features["labels"], features["types"]
    probe_index, gallery_index = _split_by_type(types, rule.probes["all"], rule.gallery, rule.name)
    warn_unmatched(labels[probe_index], labels[gallery_index], rule.name)
    idx = distances.nearest(emb[probe_index], emb[gallery_index], 20)
    hits = rank_k_hits(labels[gallery_index][idx], labels[probe_index])
    curve = percent_rounded(hits, len(probe_index))
    return {"results": {f"rank{k}": float(curve[k - 1]) for k in (1, 5, 10, 20)},
            "cmc": {"all": curve.tolist()},
            "counts": {"probes": int(len(probe_index)), "gallery": int(len(gallery_index))}}


def grew_submission_rows(features: dict, distances: _Distances) -> list[tuple[str, list[str]]]:
    """(video id, subjects of the 20 nearest gallery entries) for every unlabelled GREW probe."""
    emb, labels, types, views = features["embeddings"], features["labels"], features["types"], features["views"]
    rule = _RULES["grew-submission"]
    probe_index, gallery_index = _split_by_type(types, rule.probes["all"], rule.gallery, rule.name)
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


def grew_submission(features: dict, distances: _Distances, rule: ProtocolRule, **_) -> dict:
    """GREW test server submission: gallery types 01 and 02, probes type 03 (view = video id)."""
    rows = grew_submission_rows(features, distances)
    return {"results": {"probes": len(rows)}, "csv": grew_submission_csv(rows),
            "counts": {"probes": len(rows)}}


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
        probe_set = read_partition(probe_set, required=("PROBE_SET",), error=DataError)["PROBE_SET"]
    entries = {str(x) for x in probe_set}
    if not entries:
        raise DataError("the probe set is empty")
    return entries


def gait3d(features: dict, distances: _Distances, rule: ProtocolRule, probe_set=None, **_) -> dict:
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
    return {"results": results, "cmc": {"all": [float(x) for x in cmc_percent]},
            "counts": {"probes": int(probe_mask.sum()), "evaluated": found["evaluated"],
                       "skipped": found["skipped"], "gallery": int(len(gallery_labels))}}


# The procedure each ProtocolRule names.
PROCEDURES: dict[str, Callable[..., dict]] = {
    "single_view": _single_view,
    "cross_view": _cross_view,
    "grew": grew,
    "grew_submission": grew_submission,
    "gait3d": gait3d,
}
PROTOCOLS: dict[str, ProtocolRule] = _RULES  # every protocol name ``evaluate`` accepts


def evaluate(
    features: dict,
    protocol: str,
    metric: str = "euc",
    rerank: bool = False,
    probe_set=None,
    device=None,
    rerank_params: dict | None = None,
) -> EvaluationResult:
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
    rule = PROTOCOLS[protocol]
    out = PROCEDURES[rule.procedure](arrays, distances, rule=rule, probe_set=probe_set)
    # The headline is the first figure a procedure lists: NM-rank1, rank1, or the number of probes.
    return EvaluationResult(protocol=protocol, metric=metric, figures=out["results"],
                            headline=next(iter(out["results"])), rows=out.get("rows", []), rerank=bool(rerank),
                            rerank_params=distances.rerank_params if rerank else None, matrix=out.get("matrix", {}),
                            cmc=out.get("cmc", {}), counts=out.get("counts", {}), csv=out.get("csv"))


def protocol_for_eval_func(eval_func: str, dataset_name: str, cross_view_gallery: bool = False) -> str:
    """The gaitrec protocol for an OpenGait config's ``eval_func``, ``test_dataset_name`` and
    ``cross_view_gallery`` option (``evaluate_many`` and ``compute_ACC_mAP`` are metric helpers in OpenGait,
    not eval_funcs)."""
    wanted = EVAL_FUNC_ALIASES.get(eval_func, eval_func)
    matching = [(b, rule) for b in BENCHMARKS for rule in b.protocols if rule.eval_func == wanted]
    if not matching:
        known = sorted({rule.eval_func for rule in _RULES.values()} | set(EVAL_FUNC_ALIASES))
        if eval_func in UNSUPPORTED_EVAL_FUNCS:
            raise DataError(f"OpenGait's {eval_func} has no gaitrec protocol yet; supported: {', '.join(known)}")
        hint = closest(eval_func, known + list(UNSUPPORTED_EVAL_FUNCS))
        did_you_mean = f" Did you mean {hint!r}?" if hint else ""
        raise DataError(f"unknown eval_func {eval_func!r}.{did_you_mean} Supported: {', '.join(known)}")
    for _, rule in matching:
        if rule.any_dataset:
            return rule.name
    # The cross_view_gallery option chooses only where the eval_func has a cross-view protocol.
    has_cross_view = any(rule.cross_view for _, rule in matching)
    fitting = [(b, rule) for b, rule in matching if rule.cross_view == cross_view_gallery or not has_cross_view]
    bench = find_benchmark(dataset_name)
    for b, rule in fitting:
        if b is bench:
            return rule.name
    kind = ("a cross-view gallery protocol" if cross_view_gallery and has_cross_view
            else "an indoor protocol" if wanted == "evaluate_indoor_dataset" else "a protocol")
    raise DataError(f"OpenGait's {eval_func} has {kind} for {', '.join(b.name for b, _ in fitting)}, "
                     f"not for dataset {dataset_name!r}")
