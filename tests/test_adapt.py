"""Unlabelled adaptation: pseudo-labels from tracks, the masked triplet loss, adapt() and `gaitrec adapt`."""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gaitrec.adapt import (ITERATIONS, LEARNING_RATE, FootageTrack, PseudoIdentityBatches, adapt, co_occurring,
                           pseudo_identity_loss, read_extraction)
from gaitrec.cli import main
from gaitrec.config import load_config
from gaitrec.data.pickle_io import save_array
from gaitrec.embed import Embedder
from gaitrec.engine.checkpoint import load_checkpoint, save_checkpoint
from gaitrec.losses import TripletLoss
from gaitrec.models import create_model
from gaitrec.synth.domain import render_track

sys.path.insert(0, str(Path(__file__).parent))
from cli_run import one_line_error, run  # noqa: E402

adapt_error = functools.partial(one_line_error, starts="gaitrec adapt: error: ")

SIZE = 32
# Track spans (first, last frame) of one simulated video: 0-1-2 are seen together, 3 and 4 later together,
# 5 alone at the end (it may be the same person as any earlier track: no negative).
SPANS = [(0, 40), (5, 45), (10, 50), (60, 100), (65, 105), (120, 160)]

CONFIG = {
    "data_cfg": {"dataset_name": "SynthGait", "dataset_root": "unused", "num_workers": 0},
    "model_cfg": {"model": "Baseline", "bin_num": [4, 1],
                  "backbone_cfg": {"type": "Plain", "in_channels": 1, "layers_cfg": ["BC-8", "M", "BC-16"]},
                  "SeparateFCs": {"in_channels": 16, "out_channels": 16, "parts_num": 5},
                  "SeparateBNNecks": {"class_num": 4, "in_channels": 16, "parts_num": 5}},
    "loss_cfg": [{"loss_term_weight": 1.0, "margin": 0.2, "type": "TripletLoss", "log_prefix": "triplet"},
                 {"loss_term_weight": 0.1, "scale": 16, "type": "CrossEntropyLoss", "log_prefix": "softmax"}],
    "optimizer_cfg": {"solver": "Adam", "lr": 0.001, "weight_decay": 0.0},
    "scheduler_cfg": {"scheduler": "MultiStepLR", "milestones": [1000], "gamma": 0.1},
    "evaluator_cfg": {"enable_float16": False, "save_name": "tiny", "metric": "euc",
                      "sampler": {"batch_size": 8, "sample_type": "all_ordered", "type": "InferenceSampler"},
                      "transform": [{"type": "BaseSilCuttingTransform"}]},
    "trainer_cfg": {"enable_float16": False, "save_name": "tiny", "total_iter": 10,
                    "sampler": {"batch_shuffle": True, "batch_size": [4, 2], "frames_num_fixed": 6,
                                "sample_type": "fixed_unordered", "type": "TripletSampler"},
                    "transform": [{"type": "Compose", "trf_cfg": [{"type": "BaseSilCuttingTransform"},
                                                                   {"type": "RandomHorizontalFlip", "prob": 0.5}]}]},
}


def footage(video: str = "v") -> list[FootageTrack]:
    """Six held-out SynthGait walks (different people, conditions) at 32x32 with the spans of SPANS."""
    return [FootageTrack(render_track("heldout", 7, i, 0, SIZE), first, last, video, f"track {i + 1}")
            for i, (first, last) in enumerate(SPANS)]


def write_extraction(root: Path, tracks: list[FootageTrack]) -> Path:
    """The layout `gaitrec extract` writes: tracks.json and OUTPUT/<id>/video/000/<id>.pkl."""
    root.mkdir(parents=True, exist_ok=True)
    records = []
    for number, track in enumerate(tracks, start=1):
        name = f"{number:03d}"
        save_array(root / name / "video" / "000" / f"{name}.pkl", track.frames)
        records.append({"id": name, "first_frame": track.first_frame, "last_frame": track.last_frame,
                        "num_frames": len(track.frames), "boxes": []})
    (root / "tracks.json").write_text(json.dumps({"video": "v.mp4", "fps": 10.0, "frames": 200, "tracks": records}))
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny Baseline with random weights saved as a gaitrec checkpoint, and its config file."""
    root = tmp_path_factory.mktemp("adapt-model")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    cfg = load_config(config)
    torch.manual_seed(0)
    checkpoint = save_checkpoint(root / "base.pt", {"model": create_model(cfg["model_cfg"]).state_dict(),
                                                    "iteration": 0, "config": cfg})
    return cfg, config, checkpoint


def test_co_occurring_tracks_are_negatives_and_others_are_not():
    tracks = [FootageTrack(np.zeros((1, 4, 4), np.uint8), first, last, video, str(i))
              for i, (first, last, video) in enumerate([(0, 10, "a"), (10, 20, "a"), (21, 30, "a"), (0, 10, "b")])]
    together = co_occurring(tracks)
    expected = np.zeros((4, 4), bool)
    expected[0, 1] = expected[1, 0] = True  # share frame 10
    # 1 and 2 are adjacent, not overlapping: maybe one person whose track broke; 3 is in another video.
    assert (together == expected).all()


def test_non_overlapping_tracks_are_not_pushed_apart():
    # Three tracks of two windows each: A and C look exactly alike, B is far from both.
    embeddings = torch.zeros(6, 8, 2)
    embeddings[2:4] = 5.0
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    embeddings.requires_grad_(True)
    loss_fn = TripletLoss(margin=0.2)
    plain, _ = loss_fn(embeddings, labels)
    assert plain > 0  # every other track as a negative: A and C are pushed apart
    tracks = [FootageTrack(np.zeros((1, 4, 4), np.uint8), f, l, "v", n) for f, l, n in [(0, 10, "A"), (5, 15, "B"),
                                                                                        (20, 30, "C")]]
    negatives = torch.from_numpy(co_occurring(tracks)[labels][:, labels])
    masked, _ = loss_fn(embeddings, labels, negatives=negatives)
    masked.backward()
    assert float(masked.detach()) == 0.0 and not embeddings.grad.any()  # only B is a negative of A and C, and it is far


def test_masked_loss_with_every_other_label_equals_the_plain_loss():
    torch.manual_seed(0)
    embeddings, labels = torch.randn(12, 16, 4), torch.arange(4).repeat_interleave(3)
    loss_fn = TripletLoss(margin=0.2)
    plain, plain_info = loss_fn(embeddings, labels)
    masked, masked_info = loss_fn(embeddings, labels, negatives=labels[:, None] != labels[None, :])
    assert torch.allclose(plain, masked) and torch.allclose(plain_info["loss_num"], masked_info["loss_num"])


def test_batches_gather_tracks_seen_together():
    tracks = footage()
    batches = PseudoIdentityBatches(tracks, co_occurring(tracks), tracks_per_batch=3, windows_per_track=2, window=8)
    for iteration in range(20):
        items, owners = batches.draw(iteration)
        assert len(items) == 6 and list(np.bincount(owners, minlength=6)[np.unique(owners)]) == [2, 2, 2]
        first = owners[0]
        assert first != 5  # the lone track has no negative: it never leads a batch
        partners = {int(o) for o in owners} - {int(first)}
        assert set(np.flatnonzero(co_occurring(tracks)[first]).tolist()) <= partners  # those seen with it come first
        assert all(len(item["frames"]) == 8 for item in items)


def test_adapt_reduces_the_pseudo_identity_loss(model):
    cfg, _, checkpoint = model
    tracks = footage()
    base = load_checkpoint(checkpoint)
    before = pseudo_identity_loss(cfg, base, tracks, batches=4, tracks_per_batch=3, window=12)
    state = adapt(cfg, base, tracks, iterations=40, lr=3e-3, tracks_per_batch=3, window=12, progress=False)
    after = pseudo_identity_loss(cfg, state, tracks, batches=4, tracks_per_batch=3, window=12)
    assert after < 0.6 * before, (before, after)
    assert state["iteration"] == 40 and state["adaptation"]["co_occurring_pairs"] == 4
    assert state["adaptation"]["identity"] != state["adaptation"]["base_identity"]


def test_help_names_the_new_identity_and_the_defaults(capsys):
    with pytest.raises(SystemExit) as done:
        main(["adapt", "--help"])
    text = capsys.readouterr().out
    assert done.value.code == 0
    assert "new model identity" in text and "examples:" in text and "--checkpoint adapted.pt" in text
    # The parser states the defaults without importing torch: they must be gaitrec.adapt's.
    assert f"(default: {ITERATIONS})" in text and f"(default: {LEARNING_RATE})" in text


def test_bad_footage_exits_2_with_one_line(model, tmp_path, capsys):
    _, config, checkpoint = model
    args = ["--config", config, "--checkpoint", checkpoint, "--output", tmp_path / "out.pt", "--quiet"]
    assert "source not found" in adapt_error(capsys, "adapt", tmp_path / "missing", *args)
    (tmp_path / "plain").mkdir()
    assert "no tracks.json" in adapt_error(capsys, "adapt", tmp_path / "plain", *args)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tracks.json").write_text("{not json")
    assert "unreadable track list" in adapt_error(capsys, "adapt", broken, *args)
    empty = write_extraction(tmp_path / "empty", [])
    assert "no tracks to adapt on" in adapt_error(capsys, "adapt", empty, *args)
    apart = [FootageTrack(t.frames, 100 * i, 100 * i + 40, "v", t.name) for i, t in enumerate(footage()[:3])]
    line = adapt_error(capsys, "adapt", write_extraction(tmp_path / "apart", apart), *args)
    assert "no two of them visible at the same moment" in line
    assert not (tmp_path / "out.pt").exists()


def test_adapted_checkpoint_serves_identify_and_is_never_overwritten(model, tmp_path, capsys):
    cfg, config, checkpoint = model
    tracks = write_extraction(tmp_path / "tracks", footage())
    out = tmp_path / "adapted.pt"
    code, text, err = run(capsys, "adapt", tracks, "--config", config, "--checkpoint", checkpoint, "--output", out,
                          "--iterations", 3, "--quiet")
    assert code == 0, err
    state = load_checkpoint(out)
    assert set(state) >= {"model", "config", "iteration", "adaptation"} and state["adaptation"]["tracks"] == 6
    identity = state["adaptation"]["identity"]
    assert identity in text and Embedder(cfg, out, "cpu").identity == identity

    before = out.read_bytes()
    line = adapt_error(capsys, "adapt", tracks, "--config", config, "--checkpoint", checkpoint, "--output", out,
                          "--iterations", 3, "--quiet")
    assert "exists" in line and "--overwrite" in line and out.read_bytes() == before

    walks = read_extraction(tracks)
    for number in (1, 2):
        save_array(tmp_path / f"walk{number}.pkl", walks[number - 1].frames)
    gallery = tmp_path / "people.db"
    model_args = ["--config", config, "--checkpoint", out, "--device", "cpu", "--quiet"]
    for number in (1, 2):
        assert run(capsys, "enroll", gallery, f"person{number}", tmp_path / f"walk{number}.pkl", *model_args)[0] == 0
    code, text, err = run(capsys, "identify", gallery, tmp_path / "walk2.pkl", "--json", *model_args)
    assert code == 0, err
    result = json.loads(text)
    assert result["model"] == identity and result["queries"][0]["matches"][0]["name"] == "person2"
    # The base model is another model: the adapted gallery refuses it.
    code, _, err = run(capsys, "identify", gallery, tmp_path / "walk2.pkl", "--config", config, "--checkpoint",
                       checkpoint, "--device", "cpu", "--quiet")
    assert code == 2 and identity in err
