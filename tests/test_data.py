import shutil

import numpy as np
import pytest
import torch

from gaitrec.data.dataset import GaitDataset, PklSource, build_datasets
from gaitrec.data.pickle_io import save_array
from gaitrec.data.sampler import (BilateralSampler, CommonSampler, InferenceSampler, SequenceCollator, SequenceReader,
                                  TripletSampler, build_train_sampler)
from gaitrec.data.transforms import BaseSilCuttingTransform, BaseSilTransform, build_transform
from gaitrec.registry import ConfigError


def test_dataset_lists_sequences_and_labels(constructed_dataset, partition_file):
    train, test = build_datasets({"dataset_root": str(constructed_dataset), "dataset_partition": str(partition_file)})
    assert len(train) == 2 * 2 * 2 and len(test) == 4
    assert train.subjects == ["001", "002"] and test.subjects == ["003"]
    assert sorted(set(train.labels.tolist())) == [0, 1]
    info = test.info(0)
    assert (info.subject, info.type, info.view) == ("003", "nm-01", "000")
    frames = test.frames(0)
    assert frames.shape == (6, 16, 16) and frames.dtype == np.uint8 and frames[0, 0, 0] == 100


def test_bad_sequences_are_named_or_skipped_when_configured(constructed_dataset):
    bad = constructed_dataset / "002" / "nm-01" / "000" / "000.pkl"
    bad.write_bytes(b"not a pickle")
    (constructed_dataset / "003" / "nm-02" / "090").joinpath("000.pkl")  # untouched
    save_array(constructed_dataset / "003" / "nm-01" / "000" / "000.pkl", np.zeros((0, 16, 16), np.uint8))
    # Refused when the dataset is listed (headers only), not when the bad sequence is first drawn.
    with pytest.raises(ValueError, match=r"002/nm-01/000/000.pkl: corrupt or unreadable.*\(and 1 more\).*"
                                         "skip_bad_sequences"):
        GaitDataset(PklSource(constructed_dataset))
    with pytest.warns(UserWarning, match="skipped"):
        lenient = GaitDataset(PklSource(constructed_dataset), skip_bad=True)
    assert len(lenient) == 3 * 2 * 2 - 2


def test_empty_folder_is_an_error_unless_skipping(constructed_dataset):
    (constructed_dataset / "001" / "bg-01" / "000").mkdir(parents=True)
    with pytest.raises(ValueError, match="bg-01/000: sequence folder holds no .pkl"):
        GaitDataset(PklSource(constructed_dataset))
    with pytest.warns(UserWarning, match="empty sequence folder skipped"):
        GaitDataset(PklSource(constructed_dataset), skip_bad=True)


def test_missing_root_and_partition_mismatch(tmp_path, constructed_dataset):
    with pytest.raises(ConfigError, match="dataset root not found"):
        PklSource(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="no sequence on disk belongs"):
        GaitDataset(PklSource(constructed_dataset), subjects=["999"])


def test_triplet_sampler_p_by_k():
    labels = np.repeat(np.arange(5), [4, 4, 4, 4, 1])  # subject 4 has a single sequence
    sampler = TripletSampler(labels, [3, 4], seed=1)
    batches = [b for _, b in zip(range(20), sampler)]
    for batch in batches:
        assert len(batch) == 12
        idx = [i for _, _, i in batch]
        subjects = labels[idx].reshape(3, 4)
        assert all(len(set(row)) == 1 for row in subjects)  # K sequences of one subject
        assert len(set(subjects[:, 0])) == 3  # P distinct subjects
    # a subject with fewer than K sequences is drawn with replacement
    assert any(labels[b[0][2]] == 4 or 4 in labels[[i for _, _, i in b]] for b in batches)


def test_triplet_sampler_is_keyed_by_iteration_and_split_over_ranks():
    labels = np.repeat(np.arange(6), 5)
    full = TripletSampler(labels, [2, 4], seed=3)
    first = [b for _, b in zip(range(5), full)]
    resumed = TripletSampler(labels, [2, 4], seed=3, start_iteration=3)
    assert next(iter(resumed)) == first[3]
    r0 = next(iter(TripletSampler(labels, [2, 4], seed=3, rank=0, world_size=2)))
    r1 = next(iter(TripletSampler(labels, [2, 4], seed=3, rank=1, world_size=2)))
    assert sorted(r0 + r1, key=lambda x: x[1]) == first[0]
    with pytest.raises(ConfigError, match="asks for 7 subjects"):
        TripletSampler(labels, [7, 2])


def test_common_sampler_draws_any_sequences_keyed_by_iteration():
    labels = np.repeat(np.arange(3), 4)
    batches = [b for _, b in zip(range(50), CommonSampler(labels, 6, seed=2))]
    assert all(len(b) == 6 and [pos for _, pos, _ in b] == list(range(6)) for b in batches)
    drawn = [i for b in batches for _, _, i in b]
    assert set(drawn) == set(range(12))  # uniform over every sequence, no subject structure
    assert any(len(set(i for _, _, i in b)) < 6 for b in batches)  # with replacement
    assert next(iter(CommonSampler(labels, 6, seed=2, start_iteration=7))) == batches[7]
    r1 = next(iter(CommonSampler(labels, 6, seed=2, rank=1, world_size=2)))
    assert r1 == batches[0][1::2]


def test_bilateral_sampler_walks_epochs_and_doubles_each_sequence():
    labels = np.repeat(np.arange(5), 2)  # 10 sequences, batches of 2 x 2: two batches per epoch, 2 left over
    sampler = BilateralSampler(labels, [2, 2], seed=0)
    batches = [b for _, b in zip(range(4), sampler)]
    for batch in batches:
        first, second = batch[:4], batch[4:]
        assert [i for _, _, i in first] == [i for _, _, i in second]  # each sequence twice ...
        assert {pos for _, pos, _ in first}.isdisjoint(pos for _, pos, _ in second)  # ... with its own frames
    epoch0 = [i for b in batches[:2] for _, _, i in b[:4]]
    assert len(set(epoch0)) == 8  # no sequence twice within an epoch
    assert [i for _, _, i in batches[2][:4]] != [i for _, _, i in batches[0][:4]]  # the next epoch reshuffles
    with pytest.raises(ConfigError, match="asks for 12 sequences per batch but the train set has 10"):
        BilateralSampler(labels, [3, 4])


def test_training_sampler_is_built_from_the_config_type():
    labels = np.repeat(np.arange(4), 3)
    assert isinstance(build_train_sampler({"type": "CommonSampler", "batch_size": 5}, labels), CommonSampler)
    assert isinstance(build_train_sampler({"type": "TripletSampler", "batch_size": [2, 2]}, labels), TripletSampler)
    with pytest.raises(ConfigError, match="Did you mean 'CommonSampler'"):
        build_train_sampler({"type": "CommonSampeler", "batch_size": 5}, labels)


def test_inference_sampler_shards_cover_every_sequence_once():
    shards = [[i for b in InferenceSampler(10, 3, rank, 3) for _, _, i in b] for rank in range(3)]
    assert sorted(sum(shards, [])) == list(range(10))
    assert all(len(set(a) & set(b)) == 0 for a in shards for b in shards if a is not b)


def _items(lengths):
    return [{"frames": np.arange(n, dtype=np.uint8)[:, None, None].repeat(4, 1).repeat(4, 2), "label": k,
             "index": k, "iteration": 0, "position": k} for k, n in enumerate(lengths)]


def test_fixed_unordered_samples_with_replacement_when_short():
    collate = SequenceCollator({"sample_type": "fixed_unordered", "frames_num_fixed": 8}, [{"type": "BaseSilTransform"}])
    batch = collate(_items([5, 20]))
    assert batch["sils"].shape == (2, 8, 4, 4) and batch["seq_lengths"] is None
    assert batch["sils"][0].unique().numel() <= 5


def test_fixed_ordered_draws_a_contiguous_clip():
    collate = SequenceCollator({"sample_type": "fixed_ordered", "frames_num_fixed": 6}, [{"type": "BaseSilTransform"}])
    frames = (collate(_items([30]))["sils"][0, :, 0, 0] * 255).round().long()
    assert torch.equal(frames, torch.arange(frames[0], frames[0] + 6))
    skip = SequenceCollator({"sample_type": "fixed_ordered", "frames_num_fixed": 4, "frames_skip_num": 4},
                            [{"type": "BaseSilTransform"}])
    picked = (skip(_items([30]))["sils"][0, :, 0, 0] * 255).round().long()
    assert bool((picked[1:] > picked[:-1]).all()) and int(picked[-1] - picked[0]) <= 7


def test_unfixed_counts_within_range_and_packs():
    collate = SequenceCollator({"sample_type": "unfixed_unordered", "frames_num_min": 3, "frames_num_max": 9},
                               [{"type": "BaseSilTransform"}])
    batch = collate(_items([20] * 6))
    lengths = batch["seq_lengths"] or [batch["sils"].shape[1]] * 6
    assert all(3 <= n <= 9 for n in lengths) and sum(lengths) == batch["sils"].shape[-3] * (
        1 if batch["seq_lengths"] else 6)


def test_all_ordered_packs_whole_sequences_in_order():
    collate = SequenceCollator({"sample_type": "all_ordered"}, [{"type": "BaseSilTransform"}])
    batch = collate(_items([3, 5]))
    assert batch["sils"].shape == (1, 8, 4, 4) and batch["seq_lengths"] == [3, 5]
    assert torch.equal((batch["sils"][0, :, 0, 0] * 255).round().long(), torch.tensor([0, 1, 2, 0, 1, 2, 3, 4]))
    limited = SequenceCollator({"sample_type": "all_ordered", "frames_all_limit": 2}, [{"type": "BaseSilTransform"}])
    assert limited(_items([3, 5]))["sils"].shape == (2, 2, 4, 4)


def test_cutting_transform_matches_opengait_widths():
    frames = np.full((2, 64, 64), 255, np.uint8)
    out = BaseSilCuttingTransform()(frames)
    assert out.shape == (2, 64, 44) and out.dtype == np.float32 and out.max() == 1.0
    assert BaseSilCuttingTransform()(np.zeros((1, 128, 128), np.uint8)).shape == (1, 128, 88)
    assert BaseSilCuttingTransform()(np.zeros((1, 32, 32), np.uint8)).shape == (1, 32, 32)
    assert BaseSilTransform()(frames).max() == 1.0


def test_compose_and_augmentations_keep_shape():
    t = build_transform([{"type": "Compose", "trf_cfg": [
        {"type": "BaseSilCuttingTransform"}, {"type": "RandomRotate", "prob": 1.0},
        {"type": "RandomErasing", "prob": 1.0}, {"type": "RandomPerspective", "prob": 1.0},
        {"type": "RandomHorizontalFlip", "prob": 1.0}, {"type": "RandomAffine", "prob": 1.0}]}])
    frames = np.zeros((3, 64, 64), np.uint8)
    frames[:, 10:50, 20:44] = 255
    out = t(frames, np.random.default_rng(0))
    assert out.shape == (3, 64, 44) and out.dtype == np.float32
    assert not np.array_equal(out, BaseSilCuttingTransform()(frames))
    with pytest.raises(ConfigError, match="one entry per input modality"):
        build_transform([{"type": "BaseSilTransform"}, {"type": "BaseSilTransform"}])


def _blob(row: int, col: int, height: int = 64, width: int = 64, frames: int = 2) -> np.ndarray:
    seq = np.zeros((frames, height, width), np.float32)
    seq[:, row - 2:row + 3, col - 2:col + 3] = 1.0
    return seq


def _centroid(frame: np.ndarray) -> np.ndarray:
    rows, cols = np.indices(frame.shape)
    return np.array([(rows * frame).sum(), (cols * frame).sum()]) / frame.sum()


def test_horizontal_flip_mirrors_every_frame_and_prob_zero_keeps_the_input():
    seq = _blob(20, 10)
    flipped = build_transform({"type": "RandomHorizontalFlip", "prob": 1.0})(seq, np.random.default_rng(0))
    assert np.array_equal(flipped, seq[..., ::-1])
    assert _centroid(flipped[0]).tolist() == [20.0, 53.0]
    for name in ("RandomHorizontalFlip", "RandomRotate", "RandomPerspective", "RandomAffine", "RandomErasing"):
        assert build_transform({"type": name, "prob": 0.0})(seq, np.random.default_rng(0)) is seq, name


@pytest.mark.parametrize("per_frame", [False, True])
def test_random_erasing_zeroes_one_rectangle_of_the_asked_area(per_frame):
    seq = np.ones((3, 64, 44), np.float32)
    erase = build_transform({"type": "RandomErasing", "prob": 1.0, "sl": 0.05, "sh": 0.2, "per_frame": per_frame})
    out = erase(seq, np.random.default_rng(4))
    boxes = []
    for frame in out:
        rows, cols = np.nonzero(frame == 0)
        box = (rows.min(), rows.max(), cols.min(), cols.max())
        area = (box[1] - box[0] + 1) * (box[3] - box[2] + 1)
        assert area == len(rows)  # the zeros fill their bounding box: one rectangle
        assert 0.04 * 64 * 44 <= area <= 0.21 * 64 * 44  # sl..sh of the frame, up to rounding of the sides
        boxes.append(box)
    assert (len(set(boxes)) > 1) == per_frame  # the same rectangle on every frame unless per_frame
    assert np.all(out[out != 0] == 1) and np.all(seq == 1)  # the rest untouched, the input not modified


def test_random_rotate_turns_about_the_centre_by_at_most_degree():
    angles, rotate = [], build_transform({"type": "RandomRotate", "prob": 1.0, "degree": 30})
    for seed in range(6):
        out = rotate(_blob(32, 52), np.random.default_rng(seed))
        row, col = _centroid(out[0]) - 32  # relative to the frame centre (32, 32)
        assert np.hypot(row, col) == pytest.approx(20, abs=0.5)  # a rotation keeps the distance to the centre
        assert np.allclose(out[0], out[1])  # one angle for the whole sequence
        angles.append(np.degrees(np.arctan2(-row, col)))
    assert all(abs(a) <= 30.5 for a in angles) and max(abs(a) for a in angles) > 5


def test_random_perspective_stretches_a_side_trapezoid_to_the_frame():
    seq = np.zeros((2, 64, 44), np.float32)
    seq[:, 24:40, :] = 1.0  # a full-width stripe, 16 rows
    seq[:, 30:34, 20:24] = 2.0  # a mark in the middle of it
    for seed in range(4):
        out = build_transform({"type": "RandomPerspective", "prob": 1.0})(seq, np.random.default_rng(seed))
        full_rows = [r for r in range(64) if np.all(out[0, r, 1:-1] >= 0.99)]
        assert len(full_rows) >= 12  # the stripe still spans the width: the trapezoid is stretched to the frame
        content = np.nonzero(out[0].any(axis=1))[0]
        assert content.min() >= 18 and content.max() <= 46  # vertically it moves a few rows at most
        mark_col = _centroid(out[0] > 1.5)[1]
        assert abs(mark_col - 21.5) <= 10  # corners move within the side margins (44 // 44 * 10 pixels)
        assert np.allclose(out[0], out[1])  # one warp for the whole sequence


def test_random_affine_moves_content_by_at_most_the_anchor_shift():
    seq = _blob(32, 32, width=44)
    moved = []
    for seed in range(6):
        out = build_transform({"type": "RandomAffine", "prob": 1.0})(seq, np.random.default_rng(seed))
        shift = np.abs(_centroid(out[0]) - _centroid(seq[0]))
        assert np.all(shift <= 2 * 10)  # anchors move by under h // 64 * 10 = 10 pixels each
        assert np.allclose(out[0], out[1])  # one warp for the whole sequence
        moved.append(shift.max())
    assert max(moved) > 0.5


def test_reader_and_loader_with_workers(constructed_dataset):
    ds = GaitDataset(PklSource(constructed_dataset))
    collate = SequenceCollator({"sample_type": "fixed_unordered", "frames_num_fixed": 4},
                               [{"type": "BaseSilTransform"}], seed=0)
    batches = []
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(SequenceReader(ds), batch_sampler=TripletSampler(ds.labels, [2, 2]),
                                             collate_fn=collate, num_workers=workers)
        batches.append([b for _, b in zip(range(3), loader)])
    for a, b in zip(*batches):  # identical regardless of the number of worker processes
        assert torch.equal(a["sils"], b["sils"]) and torch.equal(a["labels"], b["labels"])
    for batch in batches[0]:  # P x K through the loader: two subjects, two sequences each, in that order
        labels = batch["labels"].reshape(2, 2)
        assert batch["sils"].shape[:2] == (4, 4)  # four sequences of four frames
        assert (labels[:, 0] == labels[:, 1]).all() and labels[0, 0] != labels[1, 0]


def test_partition_resolution(tmp_path, partition_file):
    from gaitrec.data.dataset import PARTITION_DIR, resolve_partition

    assert resolve_partition(partition_file) == partition_file
    # OpenGait's own path for the file, absent here: the shipped copy of the same name
    assert resolve_partition("./datasets/CASIA-B/CASIA-B.json") == PARTITION_DIR / "CASIA-B.json"
    assert resolve_partition(None, "OUMVLP") == PARTITION_DIR / "OUMVLP.json"
    assert resolve_partition(None, "MyOwnData") is None
    with pytest.raises(ConfigError, match="dataset partition not found"):
        resolve_partition(tmp_path / "nope.json")


def test_shipped_casia_b_partition_is_74_50():
    import json

    from gaitrec.data.dataset import PARTITION_DIR

    data = json.loads((PARTITION_DIR / "CASIA-B.json").read_text())
    assert data["TRAIN_SET"] == [f"{i:03d}" for i in range(1, 75)]
    assert data["TEST_SET"] == [f"{i:03d}" for i in range(75, 125)]


def test_remove_no_gallery_drops_subjects_without_gallery(tmp_path):
    from conftest import write_constructed_dataset

    root = write_constructed_dataset(tmp_path / "ou", subjects=("00001", "00002"), types=("00", "01"),
                                     views=("000", "015"))
    shutil.rmtree(root / "00002" / "01")  # subject 00002 has probes (type 00) but no gallery (type 01)
    partition = tmp_path / "ou.json"
    partition.write_text('{"TRAIN_SET": [], "TEST_SET": ["00001", "00002"]}')
    cfg = {"dataset_root": str(root), "dataset_name": "OUMVLP", "test_dataset_name": "OUMVLP",
           "dataset_partition": str(partition)}
    _, kept_all = build_datasets(cfg, train=False)
    assert len(kept_all) == 6  # without the option, the probes of 00002 stay (and count as misses)
    with pytest.warns(UserWarning, match="dropped 2 test sequence"):
        _, test = build_datasets({**cfg, "remove_no_gallery": True}, train=False)
    assert {test.info(i).subject for i in range(len(test))} == {"00001"} and len(test) == 4
    with pytest.raises(ConfigError, match="applies to OUMVLP only"):
        build_datasets({**cfg, "test_dataset_name": "CASIA-B", "remove_no_gallery": True}, train=False)


def test_a_benchmark_partition_on_another_dataset_names_the_file_key_and_the_dataset_s_own(tmp_path):
    # A SynthGait-like dataset (subjects 001-003, its own partition.json) trained with a CASIA-B config.
    from conftest import write_constructed_dataset

    root = write_constructed_dataset(tmp_path / "synth")
    (root / "partition.json").write_text('{"TRAIN_SET": ["001", "002"], "TEST_SET": ["003"]}')
    data_cfg = {"dataset_root": str(root), "dataset_name": "CASIA-B",
                "dataset_partition": "./datasets/CASIA-B/CASIA-B.json"}
    with pytest.raises(ConfigError) as err:
        build_datasets(data_cfg)
    message = str(err.value)
    assert "TEST_SET of the partition" in message and "CASIA-B.json" in message
    assert "data_cfg.dataset_partition: ./datasets/CASIA-B/CASIA-B.json" in message
    assert f"--set data_cfg.dataset_partition={root / 'partition.json'}" in message
    train_set, test_set = build_datasets({**data_cfg, "dataset_partition": str(root / "partition.json")})
    assert test_set.subjects == ["003"]
