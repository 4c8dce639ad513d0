"""Evaluation specified on constructed features whose figures can be worked out by hand."""
import json

import numpy as np
import pytest

from gaitrec.evaluation import distance, metrics, protocols, report
from gaitrec.evaluation.protocols import evaluate, protocol_for_eval_func
from gaitrec.evaluation.result import EvaluationResult, Row
from gaitrec.evaluation.rerank import k_reciprocal_rerank

CASIA_B_TYPES = [f"nm-0{i}" for i in range(1, 7)] + ["bg-01", "bg-02", "cl-01", "cl-02"]


def features(rows, dims=None, parts=2):
    """rows: (label, type, view, code). An int code is a one-hot channel, a float is a 1-D position."""
    dims = dims or 1 + max(c for *_, c in rows if isinstance(c, int))
    emb = np.zeros((len(rows), dims, parts), dtype=np.float32)
    for i, (*_, code) in enumerate(rows):
        if isinstance(code, int):
            emb[i, code, :] = 1.0
        else:
            emb[i, 0, :] = code
    columns = list(zip(*[r[:3] for r in rows]))
    return {"embeddings": emb, "labels": np.array(columns[0]), "types": np.array(columns[1]),
            "views": np.array(columns[2])}


def casia_b_perfect(subjects=3, views=("000", "090", "180")):
    return features([(f"{s:03d}", t, v, s) for s in range(subjects) for t in CASIA_B_TYPES for v in views])


# ------------------------------------------------------------------ distance

@pytest.mark.parametrize("metric", ["euc", "cos"])
@pytest.mark.parametrize("block_size", [1, 3, None])
def test_blocked_distance_equals_direct_formula(metric, block_size):
    rng = np.random.default_rng(0)
    probe, gallery = rng.normal(size=(11, 8, 3)), rng.normal(size=(7, 8, 3))
    blocked = distance.pairwise_distance(probe, gallery, metric, device="cpu", block_size=block_size)
    assert blocked.shape == (11, 7) and blocked.dtype == np.float32
    np.testing.assert_allclose(blocked, distance.reference_distance(probe, gallery, metric), atol=2e-5)


def test_euclidean_is_mean_over_parts_by_hand():
    probe = np.array([[[3.0, 0.0], [0.0, 1.0]]])  # [1, C=2, P=2]: part 0 = (3, 0), part 1 = (0, 1)
    gallery = np.array([[[0.0, 0.0], [4.0, 1.0]]])  # part 0 = (0, 4), part 1 = (0, 1)
    # part 0: |(3,-4)| = 5, part 1: 0 -> mean 2.5
    assert distance.pairwise_distance(probe, gallery, "euc", "cpu")[0, 0] == pytest.approx(2.5)


def test_cosine_distance_by_hand():
    probe = np.array([[[2.0], [0.0]]])  # one part, direction (1, 0)
    gallery = np.array([[[5.0], [0.0]], [[0.0], [3.0]], [[-1.0], [0.0]]])  # same, orthogonal, opposite
    np.testing.assert_allclose(distance.pairwise_distance(probe, gallery, "cos", "cpu")[0], [0, 1, 2], atol=1e-6)


def test_nearest_returns_k_nearest_in_order():
    probe = np.array([[[0.0]]])
    gallery = np.array([[[3.0]], [[1.0]], [[2.0]], [[-0.5]]])
    assert distance.nearest(probe, gallery, 3, device="cpu", block_size=1).tolist() == [[3, 1, 2]]


# ------------------------------------------------------------------ CASIA-B and its relatives

def test_perfect_features_give_100_on_casia_b():
    result = evaluate(casia_b_perfect(), "casia-b", device="cpu")
    assert result["results"] == {"NM-rank1": 100.0, "BG-rank1": 100.0, "CL-rank1": 100.0}
    assert result["per_view"]["BG"] == {"000": 100.0, "090": 100.0, "180": 100.0}
    assert result["matrix"]["CL"]["views"] == ["000", "090", "180"]
    assert np.all(np.array(result["matrix"]["CL"]["accuracy"]) == 100)
    json.dumps(result.to_json(), allow_nan=False)


def test_every_protocol_returns_one_shape_whose_rows_name_their_figure():
    single = evaluate(casia_b_perfect(), "casia-b", device="cpu")
    cross = evaluate(casia_b_perfect(), "casia-b-cross-view", device="cpu")
    rows = [(s, t, v, i) for i, s in enumerate(["002", "004"]) for t in ("00", "01") for v in ("000", "090")]
    ou = evaluate(features(rows), "oumvlp", device="cpu")
    grew_result = evaluate(grew_features(25, 1), "grew", device="cpu")
    assert [(r.condition, r.measure, r.figure, r.label) for r in single.rows[:1]] == [("NM", "rank1", "NM-rank1", "NM")]
    assert [(r.measure, r.figure, r.label) for r in cross.rows[:2]] == [("rank1", "NM-rank1", "NM-rank1"),
                                                                        ("mAP", "NM-mAP", "NM-mAP")]
    # OU-MVLP names its one figure rank1; its row says so instead of leaving the reader to guess.
    assert [(r.condition, r.figure) for r in ou.rows] == [("NM", "rank1")] and ou.row_mean(ou.rows[0]) == 100.0
    assert (single.headline, cross.headline, ou.headline, grew_result.headline) == ("NM-rank1", "NM-rank1",
                                                                                      "rank1", "rank1")
    assert grew_result.rows == [] and grew_result.to_json()["per_view"] == {}
    for result in (single, cross, ou, grew_result):
        data = json.loads(json.dumps(result.to_json(), allow_nan=False))
        assert EvaluationResult.from_json(data) == result
        assert data["results"][data["headline"]] == result.figures[result.headline]


def test_identical_views_are_excluded():
    # At its own view a subject looks like itself; at the other view it looks like the other subject.
    # Cells: same view 100 %, other view 0 %. With the diagonal the figure would be 50; without it, 0.
    code = {("000", "000"): 0, ("001", "000"): 1, ("000", "090"): 1, ("001", "090"): 0}
    rows = [(s, t, v, code[s, v]) for s in ("000", "001") for t in CASIA_B_TYPES for v in ("000", "090")]
    result = evaluate(features(rows), "casia-b", device="cpu")
    assert result["matrix"]["NM"]["accuracy"] == [[100.0, 0.0], [0.0, 100.0]]
    assert result["results"]["NM-rank1"] == 0.0
    assert result["per_view"]["NM"] == {"000": 0.0, "090": 0.0}


def test_oumvlp_probe_without_gallery_at_that_view_is_a_miss():
    rows = [(s, t, v, i) for i, s in enumerate(["002", "004", "006"]) for t in ("00", "01") for v in ("000", "090")]
    rows = [r for r in rows if not (r[0] == "006" and r[1] == "01" and r[2] == "090")]
    result = evaluate(features(rows), "oumvlp", device="cpu")
    # probe view 000 vs gallery 090: 2 of 3 probes found, 66.666.. rounded to 66.67 as OpenGait rounds cells
    assert result["matrix"]["NM"]["accuracy"] == [[100.0, 66.67], [100.0, 66.67]]  # diagonal left out below
    assert result["results"] == {"rank1": (66.67 + 100.0) / 2}


def test_casia_e_leaves_out_view_270():
    rows = [(f"{s:03d}", t, v, s) for s in range(3) for v in ("000", "090", "270")
            for t in ["H-scene1-nm-1", "H-scene2-nm-1", "H-scene2-bg-1", "H-scene2-cl-1"]]
    result = evaluate(features(rows), "casia-e", device="cpu")
    assert result["matrix"]["NM"]["views"] == ["000", "090"]
    assert result["results"] == {"NM-rank1": 100.0, "BG-rank1": 100.0, "CL-rank1": 100.0}


def test_sustech1k_matches_types_by_substring_and_reports_rank5():
    types = ["00-nm", "01-nm", "01-bg", "02-cl", "02-cr", "03-ub", "03-uf", "04-oc", "04-nt"]
    rows = [(f"{s:04d}", t, v, s) for s in range(6) for t in types for v in ("000", "090")]
    result = evaluate(features(rows), "sustech1k", device="cpu")
    assert set(result["per_view"]) == set(protocols.SUSTECH1K_PROBES)
    assert result["results"]["Overall-rank1"] == 100.0 and result["results"]["Night-rank5"] == 100.0
    assert result["counts"]["probes"]["Overall"] == 6 * 8 * 2  # every type except 00-nm contains 01..04
    assert result["cmc"]["Bag"] == [100.0] * 5


def test_cross_view_gallery_removes_own_subject_at_own_view_only():
    # Probe A at view 000; gallery: A at 000 (removed), B at 000 (kept, nearest), A at 090.
    dist = np.array([[0.0, 1.0, 2.0]])
    exclude = np.array([[True, False, False]])
    accuracy, mean_ap, with_match = metrics.accuracy_and_map(dist, np.array(["A"]), np.array(["A", "B", "A"]), exclude)
    assert (accuracy, mean_ap, with_match) == (0.0, 0.5, 1)


def test_cross_view_perfect_features():
    result = evaluate(casia_b_perfect(), "casia-b-cross-view", device="cpu")
    assert result["results"] == {f"{c}-{m}": 100.0 for c in ("NM", "BG", "CL") for m in ("rank1", "mAP")}
    assert result["per_view"]["NM-mAP"] == {"000": 100.0, "090": 100.0, "180": 100.0}


# ------------------------------------------------------------------ GREW

def grew_features(subjects=50, probes_per_subject=4):
    rows = [(f"{s + 1:05d}", "01", "000", s) for s in range(subjects)]
    rows += [(f"{s + 1:05d}", "02", "000", s) for s in range(subjects) for _ in range(probes_per_subject)]
    return features(rows)


def test_grew_perfect_and_shuffled_labels():
    data = grew_features()
    assert evaluate(data, "grew", device="cpu")["results"] == {"rank1": 100.0, "rank5": 100.0, "rank10": 100.0,
                                                               "rank20": 100.0}
    shuffled = dict(data, labels=np.random.default_rng(0).permutation(data["labels"]))
    result = evaluate(shuffled, "grew", device="cpu")["results"]
    # 50 subjects: chance is 2 % at rank 1 and 40 % at rank 20
    assert result["rank1"] < 8
    assert 25 < result["rank20"] < 55


def test_grew_submission_csv():
    rows = [(f"{s + 1:05d}", t, "00", s) for s in range(21) for t in ("01", "02")]
    rows += [("probe", "03", "video_a", 2), ("probe", "03", "video_b", 9)]
    result = evaluate(features(rows), "grew-submission", device="cpu")
    lines = result["csv"].splitlines()
    assert lines[0] == "videoId," + ",".join(f"rank{k}" for k in range(1, 21))
    assert len(lines) == 3
    first, second = lines[1].split(","), lines[2].split(",")
    assert len(first) == 21 and first[0] == "video_a"
    assert first[1:3] == ["3", "3"]  # subject 00003 as an integer, from both of its gallery sequences
    assert second[:3] == ["video_b", "10", "10"]
    assert result["results"] == {"probes": 2}


# ------------------------------------------------------------------ Gait3D: skip rule, mAP, mINP

def test_average_precision_and_inp_by_hand():
    assert metrics.average_precision([1, 0, 1, 0]) == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.inverse_negative_penalty([1, 0, 1, 0]) == pytest.approx(2 / 3)
    assert metrics.inverse_negative_penalty([0, 0, 0, 1]) == pytest.approx(1 / 4)


def gait3d_features():
    # 1-D positions: every probe sits at 0, so the gallery ranks by position.
    gallery = [("A", "cam1", "seq0", 1.0), ("B", "cam1", "seq0", 2.0), ("A", "cam2", "seq0", 3.0)]
    gallery += [(f"F{i}", "cam1", "seq0", 4.0 + i) for i in range(9)]
    probes = [("A", "cam9", "seq1", 0.0), ("B", "cam9", "seq1", 0.0), ("Z", "cam9", "seq1", 0.0)]
    return features(gallery + probes, dims=2), ["A-cam9-seq1", "B-cam9-seq1", "Z-cam9-seq1"]


def test_gait3d_figures_and_skip_rule_by_hand():
    data, probe_set = gait3d_features()
    result = evaluate(data, "gait3d", probe_set=probe_set, device="cpu")
    # A: ranking A B A ... -> hit at 1, AP (1 + 2/3) / 2, INP 2/3. B: ranking -> hit at 2, AP 1/2, INP 1/2.
    # Z has no gallery sequence: skipped.
    assert result["counts"]["skipped"] == 1 and result["counts"]["evaluated"] == 2
    assert result["results"]["rank1"] == 50.0
    assert result["results"]["rank5"] == 100.0 and result["results"]["rank10"] == 100.0
    assert result["results"]["mAP"] == pytest.approx(100 * ((1 + 2 / 3) / 2 + 1 / 2) / 2)
    assert result["results"]["mINP"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)
    assert len(result["cmc"]["all"]) == 12  # min(50, gallery size)


def test_gait3d_probe_set_from_partition_file(tmp_path):
    data, probe_set = gait3d_features()
    path = tmp_path / "partition.json"
    path.write_text(json.dumps({"TEST_SET": ["A"], "PROBE_SET": probe_set}))
    assert evaluate(data, "gait3d", probe_set=str(path), device="cpu")["results"]["rank1"] == 50.0


# ------------------------------------------------------------------ re-ranking

def test_rerank_keeps_perfect_features_perfect():
    result = evaluate(casia_b_perfect(), "casia-b", rerank=True, device="cpu")
    assert result["results"] == {"NM-rank1": 100.0, "BG-rank1": 100.0, "CL-rank1": 100.0}
    assert result["rerank_params"] == {"k1": 6, "k2": 6, "lambda_value": 0.3}
    assert evaluate(grew_features(25, 2), "grew", rerank=True, device="cpu")["results"]["rank1"] == 100.0


def test_rerank_by_hand_on_three_points():
    # Probe p and gallery g1, g2 on a line at 0, 1 and 3. k1 = k2 = 1: reciprocal sets R(p) = R(g1) = {p, g1},
    # R(g2) = {g2}. Rows are distances divided by the row maximum (the matrix is symmetric):
    # p: [0, 1/3, 1], g1: [1/2, 0, 1], g2: [1, 2/3, 0].
    joint = np.array([[0.0, 1.0, 3.0], [1.0, 0.0, 2.0], [3.0, 2.0, 0.0]])
    v_p = np.exp(-np.array([0.0, 1 / 3])) / np.exp(-np.array([0.0, 1 / 3])).sum()  # weights on (p, g1)
    v_g1 = np.exp(-np.array([0.5, 0.0])) / np.exp(-np.array([0.5, 0.0])).sum()
    shared = np.minimum(v_p, v_g1).sum()
    jaccard_g1 = 1 - shared / (2 - shared)
    expected = [[0.7 * jaccard_g1 + 0.3 * (1 / 3), 0.7 * 1.0 + 0.3 * 1.0]]  # g2 shares nothing with p
    out = k_reciprocal_rerank(joint, 1, k1=1, k2=1, lambda_value=0.3)
    assert np.allclose(out, expected, atol=2e-3)  # float16 encodings, as OpenGait stores them
    assert np.allclose(k_reciprocal_rerank(joint, 1, k1=1, k2=1, lambda_value=1.0), [[1 / 3, 1.0]], atol=1e-3)
    assert np.allclose(k_reciprocal_rerank(joint, 1, k1=1, k2=1, lambda_value=0.0), [[jaccard_g1, 1.0]], atol=2e-3)


def test_rerank_shape_and_range():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 8, 2))
    joint = distance.pairwise_distance(x, x, device="cpu")
    out = k_reciprocal_rerank(joint, 10)
    assert out.shape == (10, 20) and np.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1.0001  # Jaccard in [0, 1], distance divided by its column maximum


# ------------------------------------------------------------------ bad input

def test_unknown_protocol_names_the_closest():
    with pytest.raises(ValueError, match=r"unknown protocol 'casia_b'.*Did you mean 'casia-b'.*Known: casia-b"):
        evaluate(casia_b_perfect(), "casia_b")


def test_probe_view_without_gallery_is_refused():
    data = casia_b_perfect()
    keep = ~(np.isin(data["types"], protocols.CASIA_B_GALLERY) & (data["views"] == "090"))
    data = {k: v[keep] for k, v in data.items()}
    with pytest.raises(ValueError, match=r"casia-b: no gallery sequences .* at view 090"):
        evaluate(data, "casia-b", device="cpu")


def test_empty_probe_set_is_refused():
    data = casia_b_perfect()
    keep = ~np.isin(data["types"], ["nm-05", "nm-06"])
    data = {k: v[keep] for k, v in data.items()}
    with pytest.raises(ValueError, match=r"no probe sequences for NM \(types nm-05, nm-06\)"):
        evaluate(data, "casia-b", device="cpu")


def test_mismatched_lengths_are_refused():
    data = casia_b_perfect()
    data["labels"] = data["labels"][:-1]
    with pytest.raises(ValueError, match=r"labels has shape \(\d+,\) but there are \d+ embeddings"):
        evaluate(data, "casia-b", device="cpu")


def test_nan_embeddings_are_refused():
    data = casia_b_perfect()
    data["embeddings"][3, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 embedding\\(s\\) contain NaN"):
        evaluate(data, "casia-b", device="cpu")


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="unknown metric 'l1'; expected one of euc, cos"):
        evaluate(casia_b_perfect(), "casia-b", metric="l1", device="cpu")


def test_probe_set_is_ignored_by_protocols_that_select_probes_by_type():
    # A config's dataset_partition is passed for every dataset; only gait3d reads a PROBE_SET from it.
    result = evaluate(casia_b_perfect(), "casia-b", probe_set="CASIA-B.json", device="cpu")
    assert result["results"]["NM-rank1"] == 100.0


def test_gait3d_probe_set_not_in_features_is_refused():
    data, _ = gait3d_features()
    with pytest.raises(ValueError, match="gait3d: none of the 1 probe-set entries"):
        evaluate(data, "gait3d", probe_set=["0001-cam1-seq0"], device="cpu")


def test_grew_submission_needs_numeric_subjects_and_20_gallery_entries():
    rows = [(f"s{s}", t, "00", s) for s in range(21) for t in ("01", "02")] + [("probe", "03", "v", 0)]
    with pytest.raises(ValueError, match="gallery subject 's0' is not a number"):
        evaluate(features(rows), "grew-submission", device="cpu")
    rows = [(f"{s:05d}", "01", "00", s) for s in range(5)] + [("probe", "03", "v", 0)]
    with pytest.raises(ValueError, match="rank-20 needs at least 20 gallery entries, found 5"):
        evaluate(features(rows), "grew-submission", device="cpu")


# ------------------------------------------------------------------ OpenGait config names

def test_protocol_for_eval_func():
    assert protocol_for_eval_func("evaluate_indoor_dataset", "CASIA-B", False) == "casia-b"
    assert protocol_for_eval_func("evaluate_indoor_dataset", "CASIA-B", True) == "casia-b-cross-view"
    assert protocol_for_eval_func("evaluate_indoor_dataset", "OUMVLP", False) == "oumvlp"
    assert protocol_for_eval_func("evaluate_indoor_dataset", "CASIA-E", False) == "casia-e"
    assert protocol_for_eval_func("evaluate_indoor_dataset", "SUSTech1K", False) == "sustech1k"
    assert protocol_for_eval_func("evaluate_real_scene", "GREW", False) == "grew"
    assert protocol_for_eval_func("GREW_submission", "GREW", False) == "grew-submission"
    assert protocol_for_eval_func("evaluate_Gait3D", "Gait3D", False) == "gait3d"
    with pytest.raises(ValueError, match="not for dataset 'CASIA-E'"):
        protocol_for_eval_func("evaluate_indoor_dataset", "CASIA-E", True)
    with pytest.raises(ValueError, match="evaluate_CCPG has no gaitrec protocol yet"):
        protocol_for_eval_func("evaluate_CCPG", "CCPG", False)
    with pytest.raises(ValueError, match="Did you mean 'evaluate_Gait3D'"):
        protocol_for_eval_func("evaluate_gait3d", "Gait3D", False)


# ------------------------------------------------------------------ report

def test_print_table_shows_conditions_views_and_means():
    text = report.print_table(evaluate(casia_b_perfect(), "casia-b", device="cpu"))
    lines = text.splitlines()
    assert lines[0] == "casia-b (metric euc)"
    assert lines[2].split() == ["condition", "000", "090", "180", "mean"]
    assert lines[3].split() == ["NM", "100.00", "100.00", "100.00", "100.00"]
    assert "rank20" in report.print_table(evaluate(grew_features(25, 1), "grew", device="cpu"))


@pytest.mark.slow  # the first matplotlib figures
def test_write_report_files_and_overwrite(tmp_path):
    result = evaluate(casia_b_perfect(), "casia-b", device="cpu")
    written = report.write_report(result, tmp_path)
    assert sorted(p.name for p in written) == ["heatmap_BG.png", "heatmap_CL.png", "heatmap_NM.png",
                                               "results.json", "results.md"]
    assert json.loads((tmp_path / "results.json").read_text())["results"]["NM-rank1"] == 100.0
    markdown = (tmp_path / "results.md").read_text()
    assert "| | 000 | 090 | 180 | mean |" in markdown and "| NM | 100.00 | 100.00 | 100.00 | 100.00 |" in markdown
    assert (tmp_path / "heatmap_NM.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(FileExistsError, match=r"refusing to overwrite it \(pass --overwrite to replace it\)"):
        report.write_report(result, tmp_path)
    assert len(report.write_report(result, tmp_path, overwrite=True)) == 5


@pytest.mark.slow
def test_write_report_cmc_and_submission(tmp_path):
    written = report.write_report(evaluate(grew_features(25, 1), "grew", device="cpu"), tmp_path / "grew")
    assert [p.name for p in written] == ["cmc.png", "results.json", "results.md"]
    rows = [(f"{s + 1:05d}", "01", "00", s) for s in range(20)] + [("probe", "03", "v1", 0)]
    written = report.write_report(evaluate(features(rows), "grew-submission", device="cpu"), tmp_path / "sub")
    assert (tmp_path / "sub" / "submission.csv").read_text().splitlines()[1].startswith("v1,1,")
    assert "csv" not in json.loads((tmp_path / "sub" / "results.json").read_text())


def test_probes_without_a_gallery_subject_are_counted_in_a_warning():
    # Probes labelled p0.. and gallery g0..: nothing can match; the all-zero table must not pass silently.
    rows = [(("g" if t in protocols.CASIA_B_GALLERY else "p") + str(s), t, v, s)
            for s in range(2) for t in CASIA_B_TYPES for v in ("000", "090")]
    with pytest.warns(UserWarning, match="casia-b: 24 of 24 probe sequences have no gallery sequence of their "
                                         "subject and count as misses; no probe can match"):
        result = evaluate(features(rows), "casia-b", device="cpu")
    assert set(result["results"].values()) == {0.0}
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matching subjects: no warning
        evaluate(casia_b_perfect(), "casia-b", device="cpu")


def test_reported_figures_are_rounded_as_the_protocols_report_them(tmp_path, capsys):
    result = EvaluationResult("casia-b", "euc", {"NM-rank1": 37.501999999999995}, "NM-rank1",
                              [Row("NM", "rank1", "NM-rank1", "NM", {"000": 37.501999999999995, "090": 37.5})])
    report.write_report(result, tmp_path)
    text = (tmp_path / "results.json").read_text()
    assert "37.501999" not in text and json.loads(text)["results"]["NM-rank1"] == 37.5


def test_heatmap_blanks_the_excluded_diagonal_and_names_model_checkpoint_and_metric():
    result = EvaluationResult("casia-b", "cos", {"NM-rank1": 50.0}, "NM-rank1", model="GaitSet",
                              checkpoint="GaitSet-40000.pt")
    title = report.report_title(result)
    assert title == "GaitSet GaitSet-40000.pt | casia-b (metric cos)"
    accuracy = np.array([[50.0, 10.0, 90.0], [20.0, 50.0, 30.0], [40.0, 60.0, 50.0]])
    canvas = report.heatmap_image("NM", ["000", "090", "180"], accuracy, title)
    numbers = [t for t in canvas.texts if t.isdigit() and t not in ("000", "090", "180")]
    # numbers on the six cross-view cells only (the colour bar's ticks are 0, 20, ..., 100)
    assert sorted(numbers) == sorted(["10", "90", "20", "30", "40", "60"] + [str(v) for v in range(0, 101, 20)])
    assert title in canvas.texts and "NM rank-1 (%)" in canvas.texts
    # The diagonal's three 40 x 40 cells grey with nothing on them; lower accuracy drawn darker (viridis).
    image = canvas.image
    assert np.all(image == 211, axis=2).sum() >= 3 * 40 * 40
    low, high = (report.heatmap_image("NM", ["000", "090", "180"], np.full((3, 3), v), "").image for v in (10.0, 90.0))
    assert low.mean() < high.mean()
    # Many views: no numbers, and only as many view names as there is room for.
    many = [f"v{k:03d}" for k in range(60)]
    crowded = report.heatmap_image("NM", many, np.full((60, 60), 50.0), title)
    assert not any(t.isdigit() and t not in [str(v) for v in range(0, 101, 20)] for t in crowded.texts)
    assert 0 < sum(t in many for t in crowded.texts) < 2 * 60
    png = report.heatmap_png("NM", ["000", "090", "180"], accuracy, title)
    import cv2

    assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).shape == image.shape


def test_mean_silhouette_template_by_hand():
    from gaitrec.evaluation.template import mean_silhouette, template_distances

    frames = np.zeros((2, 64, 64), np.uint8)
    frames[0, :, 10:20] = 255  # columns 10..19: 10 of them survive the cut to 44 columns only from 10 on
    frames[1, :, 30:34] = 255
    template = mean_silhouette(frames).reshape(64, 44)
    assert template.shape == (64, 44)
    assert np.allclose(template[:, 0:10], 0.5) and np.allclose(template[:, 20:24], 0.5)
    assert template.sum() == pytest.approx(64 * 14 * 0.5)
    other = np.zeros((1, 64, 64), np.uint8)
    d = template_distances([frames, other], [other, frames])
    assert d.shape == (2, 2) and d[0, 1] == pytest.approx(0, abs=1e-5) and d[1, 0] == pytest.approx(0, abs=1e-5)
    assert d[0, 0] == pytest.approx(np.sqrt(64 * 14 * 0.25), rel=1e-5)
