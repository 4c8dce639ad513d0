"""The training engine: checkpoints, resume, stages, logging, mixed precision, distributed runs."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import write_constructed_dataset
from gaitrec.config import load_config
from gaitrec.engine.checkpoint import list_checkpoints, load_checkpoint
from gaitrec.engine.trainer import train
from gaitrec.errors import RunError

pytestmark = pytest.mark.slow  # training runs, two-process runs

CONFIG = """
data_cfg:
  dataset_name: Tiny
  dataset_root: {root}
  dataset_partition: null
  num_workers: 0
  test_dataset_name: CASIA-B
model_cfg:
  model: Baseline
  backbone_cfg: {{type: Plain, in_channels: 1, layers_cfg: [BC-4, M, BC-8]}}
  SeparateFCs: {{in_channels: 8, out_channels: 8, parts_num: 3}}
  SeparateBNNecks: {{class_num: 4, in_channels: 8, parts_num: 3}}
  bin_num: [2, 1]
loss_cfg:
  - {{type: TripletLoss, margin: 0.2, log_prefix: triplet, loss_term_weight: 1.0}}
  - {{type: CrossEntropyLoss, scale: 16, log_prefix: softmax, loss_term_weight: 0.1}}
optimizer_cfg: {{solver: SGD, lr: 0.05, momentum: 0.9, weight_decay: 0.0005}}
scheduler_cfg: {{scheduler: MultiStepLR, milestones: [4], gamma: 0.1}}
evaluator_cfg:
  sampler: {{batch_size: 3, sample_type: all_ordered, type: InferenceSampler}}
  transform: [{{type: BaseSilTransform}}]
trainer_cfg:
  enable_float16: false
  output_root: {out}
  log_iter: 1
  save_iter: 3
  save_name: tiny
  total_iter: 6
  sampler: {{batch_size: [2, 4], frames_num_fixed: 4, sample_type: fixed_unordered, type: TripletSampler}}
  transform: [{{type: BaseSilTransform}}]
"""
TYPES = ("nm-01", "nm-05", "bg-01", "cl-01")


@pytest.fixture
def tiny(tmp_path):
    root = write_constructed_dataset(tmp_path / "data", subjects=("001", "002", "003", "004"), types=TYPES,
                                     views=("000", "090"), frames=8, size=16)
    # give every sequence some structure so that gradients are not trivial
    rng = np.random.default_rng(0)
    from gaitrec.data.pickle_io import save_array
    for f in root.glob("*/*/*/*.pkl"):
        save_array(f, (rng.random((8, 16, 16)) > 0.5).astype(np.uint8) * 255)
    path = tmp_path / "tiny.yaml"
    path.write_text(CONFIG.format(root=root, out=tmp_path / "out"))
    return path


def cfg_of(path, *overrides):
    return load_config(path, list(overrides))


def test_training_writes_checkpoints_logs_metrics_and_tensorboard(tiny):
    result = train(cfg_of(tiny), progress=False, test_at_end=False)
    run = result["run_dir"]
    assert [i for i, _ in list_checkpoints(run, "tiny")] == [3, 6]
    state = load_checkpoint(run / "checkpoints" / "tiny-00006.pt")
    assert state["iteration"] == 6 and {"model", "optimizer", "scheduler", "rng", "config"} <= set(state)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == [1, 2, 3, 4, 5, 6]
    assert lines[-1]["lr"] == pytest.approx(0.005)  # MultiStepLR stepped per iteration past milestone 4
    assert "iteration 6" in (run / "train.log").read_text()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run / "summary"))
    events.Reload()
    tags = events.Tags()
    assert {"triplet/loss", "softmax/loss", "softmax/accuracy", "train/loss", "train/lr", "time/iteration",
            "time/data"} <= set(tags["scalars"])
    assert "input/silhouettes" in tags["images"]


def test_fresh_run_refuses_to_overwrite_and_resume_continues(tiny):
    straight = train(cfg_of(tiny), progress=False, test_at_end=False)
    with pytest.raises(RunError, match="already holds checkpoints.*--resume"):
        train(cfg_of(tiny), progress=False, test_at_end=False)
    # interrupted at 3, resumed to 6: identical to the uninterrupted run
    cfg = cfg_of(tiny, "trainer_cfg.save_name=split", "trainer_cfg.total_iter=3")
    train(cfg, progress=False, test_at_end=False)
    resumed = train(cfg_of(tiny, "trainer_cfg.save_name=split"), resume=True, progress=False, test_at_end=False)
    assert [h["iteration"] for h in resumed["history"]] == [4, 5, 6]
    for a, b in zip(straight["history"][3:], resumed["history"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-7)
    final_a = load_checkpoint(straight["run_dir"] / "checkpoints" / "tiny-00006.pt")["model"]
    final_b = load_checkpoint(resumed["run_dir"] / "checkpoints" / "split-00006.pt")["model"]
    for key in final_a:
        assert torch.allclose(final_a[key], final_b[key], atol=1e-6), key


def test_second_stage_loads_matching_weights_and_resets_optimizer(tiny):
    first = train(cfg_of(tiny, "trainer_cfg.total_iter=3"), progress=False, test_at_end=False)
    ckpt = first["run_dir"] / "checkpoints" / "tiny-00003.pt"
    stage2 = cfg_of(tiny, "trainer_cfg.save_name=stage2", f"trainer_cfg.restore_hint={ckpt}",
                    "trainer_cfg.restore_ckpt_strict=false", "trainer_cfg.optimizer_reset=true",
                    "trainer_cfg.scheduler_reset=true", "model_cfg.SeparateBNNecks.class_num=6",
                    "trainer_cfg.total_iter=1", "trainer_cfg.save_iter=1", "optimizer_cfg.lr=0.0")
    second = train(stage2, progress=False, test_at_end=False)
    assert second["iteration"] == 1  # a new stage counts from zero
    stage1_weights = load_checkpoint(ckpt)["model"]
    state2 = load_checkpoint(second["run_dir"] / "checkpoints" / "stage2-00001.pt")
    assert state2["model"]["BNNecks.fc_bin"].shape[-1] == 6  # the resized head was not loaded
    # with lr 0 the one step of stage 2 changes nothing: every matching tensor is stage 1's
    for key, value in stage1_weights.items():
        if key != "BNNecks.fc_bin" and not key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(state2["model"][key], value), key
    with pytest.raises(ValueError, match="does not match the model.*restore_ckpt_strict: false"):
        train(cfg_of(tiny, "trainer_cfg.save_name=strict", f"trainer_cfg.restore_hint={ckpt}",
                     "model_cfg.SeparateBNNecks.class_num=6"), progress=False, test_at_end=False)


def test_bf16_autocast_on_cpu(tiny, monkeypatch):
    # Autocast must really run: the convolutions inside the model compute in bfloat16, the weights stay fp32.
    from gaitrec.engine import trainer as trainer_module

    seen = []
    build = trainer_module.create_model

    def watched(model_cfg):
        model = build(model_cfg)
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        conv.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
        return model

    monkeypatch.setattr(trainer_module, "create_model", watched)
    result = train(cfg_of(tiny, "trainer_cfg.enable_float16=true", "trainer_cfg.amp_dtype=bfloat16",
                          "trainer_cfg.total_iter=2", "trainer_cfg.save_iter=2"), progress=False, test_at_end=False)
    assert all(np.isfinite(h["loss"]) for h in result["history"])
    assert seen and set(seen) == {torch.bfloat16}
    state = load_checkpoint(result["run_dir"] / "checkpoints" / "tiny-00002.pt")
    assert {v.dtype for v in state["model"].values() if v.is_floating_point()} == {torch.float32}


def test_non_finite_loss_stops_with_iteration_or_skips(tiny, monkeypatch):
    from gaitrec import losses

    original = losses.TripletLoss.forward

    def poisoned(self, embeddings, labels):
        loss, info = original(self, embeddings, labels)
        return loss * float("nan"), info

    monkeypatch.setattr(losses.TripletLoss, "forward", poisoned)
    with pytest.raises(FloatingPointError, match="non-finite loss at iteration 1"):
        train(cfg_of(tiny), progress=False, test_at_end=False)
    result = train(cfg_of(tiny, "trainer_cfg.skip_nonfinite=true", "trainer_cfg.save_name=skip"), progress=False,
                   test_at_end=False)
    assert result["iteration"] == 6
    assert (result["run_dir"] / "train.log").read_text().count("non-finite loss, step skipped") == 6
    assert load_checkpoint(result["run_dir"] / "checkpoints" / "skip-00006.pt")["scheduler"]["last_epoch"] == 0
    # Every step was skipped, so every weight is still the initial one (same seed, same initialisation).
    from gaitrec.engine.trainer import set_seed
    from gaitrec.models import create_model
    set_seed(0)
    model = create_model(cfg_of(tiny)["model_cfg"])
    state = load_checkpoint(result["run_dir"] / "checkpoints" / "skip-00006.pt")["model"]
    for name, parameter in model.named_parameters():
        assert torch.equal(state[name], parameter.detach()), name


def _torchrun(args, cwd, nproc=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
           str(29500 + os.getpid() % 1000), "-m", "gaitrec", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_two_process_gloo_training_matches_one_process(tiny, tmp_path):
    # Triplet loss only: it reads the FC output, before any BatchNorm, so local and global batches agree.
    common = ["--set", "loss_cfg=[{type: TripletLoss, margin: 0.2, log_prefix: triplet}]", "--set",
              "trainer_cfg.find_unused_parameters=true", "--no-test", "--quiet"]
    subprocess.run([sys.executable, "-m", "gaitrec", "train", str(tiny), "--set", "trainer_cfg.save_name=one",
                    *common], check=True, cwd=tmp_path, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _torchrun(["train", str(tiny), "--set", "trainer_cfg.save_name=two", *common], cwd=tmp_path)
    out = tmp_path / "out" / "Tiny" / "Baseline"
    one = [json.loads(x) for x in (out / "one" / "metrics.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (out / "two" / "metrics.jsonl").read_text().splitlines()]
    assert len(one) == len(two) == 6
    # Same global batch, same frames: the curves agree up to float summation order, which the triplet
    # loss's "mean over non-zero terms" can amplify when a term sits at zero.
    assert one[0]["triplet/loss"] == pytest.approx(two[0]["triplet/loss"], rel=1e-4)
    for a, b in zip(one, two):
        assert a["triplet/loss"] == pytest.approx(b["triplet/loss"], rel=1e-2)


def test_two_process_cpu_training_with_sync_bn_trains_as_one_process(tiny, tmp_path):
    # Both losses: the cross-entropy reads the BNNeck's batch norm, whose statistics (and running buffers)
    # must come from the global batch for the two processes to take one process's steps.
    one = train(cfg_of(tiny, "trainer_cfg.save_name=one"), progress=False, test_at_end=False)
    _torchrun(["train", str(tiny), "--set", "trainer_cfg.save_name=two", "--set", "trainer_cfg.sync_BN=true",
               "--no-test", "--quiet"], cwd=tmp_path)
    expected = load_checkpoint(one["run_dir"] / "checkpoints" / "one-00006.pt")["model"]
    got = load_checkpoint(tmp_path / "out" / "Tiny" / "Baseline" / "two" / "checkpoints" / "two-00006.pt")["model"]
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        scale = value.float().abs().max().clamp(min=1e-6)
        assert (got[key].float() - value.float()).abs().max() <= 1e-3 * scale, key


def test_two_process_testing_gives_the_same_features(tiny, tmp_path):
    first = train(cfg_of(tiny, "trainer_cfg.total_iter=3"), progress=False, test_at_end=False)
    ckpt = first["run_dir"] / "checkpoints" / "tiny-00003.pt"
    single = subprocess.run([sys.executable, "-m", "gaitrec", "test", str(tiny), "--checkpoint", str(ckpt),
                             "--output", str(tmp_path / "single"), "--quiet"], cwd=tmp_path, capture_output=True,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert single.returncode == 0, single.stderr[-2000:]
    _torchrun(["test", str(tiny), "--checkpoint", str(ckpt), "--output", str(tmp_path / "sharded"), "--quiet"],
              cwd=tmp_path)
    with np.load(tmp_path / "single" / "features.npz") as a, np.load(tmp_path / "sharded" / "features.npz") as b:
        assert a["embeddings"].shape[0] == 4 * len(TYPES) * 2  # every sequence exactly once
        for key in ("labels", "types", "views"):
            assert np.array_equal(a[key], b[key])
        np.testing.assert_allclose(a["embeddings"], b["embeddings"], rtol=1e-5, atol=1e-6)


def test_testing_while_training_keeps_the_best_checkpoint(tiny):
    result = train(cfg_of(tiny, "trainer_cfg.with_test=true", "trainer_cfg.best_metric=NM-rank1",
                          "trainer_cfg.keep_checkpoints=1"), progress=False)
    run = result["run_dir"]
    for it in ("00003", "00006"):
        saved = json.loads((run / "test" / it / "results.json").read_text())
        assert {"NM-rank1", "BG-rank1", "CL-rank1"} <= set(saved["results"])
    assert (run / "checkpoints" / "tiny-best.pt").is_file()
    assert [i for i, _ in list_checkpoints(run, "tiny")] == [6]  # keep_checkpoints=1
    best = load_checkpoint(run / "checkpoints" / "tiny-best.pt")["iteration"]
    scores = {it: json.loads((run / "test" / f"{it:05d}" / "results.json").read_text())["results"]["NM-rank1"]
              for it in (3, 6)}
    assert scores[best] == max(scores.values())
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run / "summary"))
    events.Reload()
    assert "test/NM-rank1" in events.Tags()["scalars"]
    with pytest.raises(Exception, match="best_metric 'rank1' is not a result"):
        train(cfg_of(tiny, "trainer_cfg.save_name=bad", "trainer_cfg.with_test=true",
                      "trainer_cfg.best_metric=rank1"), progress=False)


def test_fp16_grad_scaler_logs_skipped_steps(tiny):
    # fp16 autocast with a GradScaler, the CUDA recipe, exercised on the CPU. A huge loss weight makes every
    # fp16 gradient overflow: each step must be skipped (weights untouched) and logged as skipped.
    cfg = cfg_of(tiny, "trainer_cfg.enable_float16=true", "trainer_cfg.amp_dtype=float16", "trainer_cfg.total_iter=3",
                 "loss_cfg=[{type: TripletLoss, margin: 0.2, log_prefix: triplet, loss_term_weight: 1.0e+30}]",
                 "trainer_cfg.save_iter=3", "optimizer_cfg.weight_decay=0.0")
    result = train(cfg, progress=False, test_at_end=False)
    log_text = (result["run_dir"] / "train.log").read_text()
    assert log_text.count("fp16 gradients overflowed, step skipped") == 3
    state = load_checkpoint(result["run_dir"] / "checkpoints" / "tiny-00003.pt")
    assert state["scaler"]["scale"] == 2.0 ** 16 / 2 ** 3  # backed off once per skipped step
    assert state["scheduler"]["last_epoch"] == 0  # the schedule counts optimizer steps only, as OpenGait's
    from gaitrec.engine.trainer import set_seed
    from gaitrec.models import create_model
    set_seed(0)  # the trainer's seed: the same initial weights
    initial = create_model(cfg["model_cfg"]).state_dict()
    for key in ("Backbone.forward_block.feature.0.conv.weight", "FCs.fc_bin"):
        assert torch.equal(state["model"][key], initial[key]), key
    # a normal fp16 run trains: finite losses, and once the scale has backed off from its start (the first
    # steps may overflow) the steps are taken and the weights move
    ok = train(cfg_of(tiny, "trainer_cfg.enable_float16=true", "trainer_cfg.amp_dtype=float16",
                      "trainer_cfg.save_name=fp16"), progress=False, test_at_end=False)
    assert all(np.isfinite(h["loss"]) for h in ok["history"])
    skipped = (ok["run_dir"] / "train.log").read_text().count("overflowed, step skipped")
    assert skipped < 6
    saved = load_checkpoint(ok["run_dir"] / "checkpoints" / "fp16-00006.pt")
    assert saved["scheduler"]["last_epoch"] == 6 - skipped
    trained = saved["model"]
    assert not torch.equal(trained["FCs.fc_bin"], initial["FCs.fc_bin"])


def test_a_run_directory_or_a_checkpoint_alone_is_enough_to_test(tiny, tmp_path, monkeypatch, capsys):
    from gaitrec.cli import main

    hinted = tmp_path / "hinted.yaml"  # as OpenGait's configs: the evaluator tests the schedule's last iteration
    hinted.write_text(tiny.read_text().replace("evaluator_cfg:\n", "evaluator_cfg:\n  restore_hint: 6\n"))
    monkeypatch.chdir(tmp_path)
    cfg = cfg_of(hinted, "trainer_cfg.total_iter=3", f"trainer_cfg.output_root=out")
    assert cfg["evaluator_cfg"]["restore_hint"] == 3  # follows the overridden schedule
    run = train(cfg, progress=False, test_at_end=False)["run_dir"]
    saved = load_config(run / "config.yaml")
    assert os.path.isabs(saved["data_cfg"]["dataset_root"]) and os.path.isabs(saved["trainer_cfg"]["output_root"])
    assert saved["evaluator_cfg"]["restore_hint"] == 3

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the run's own paths, not the working directory, locate its data
    assert main(["test", str(tmp_path / run), "--quiet"]) == 0
    assert (tmp_path / run / "test" / "tiny-00003" / "features.npz").is_file()
    checkpoint = tmp_path / run / "checkpoints" / "tiny-00003.pt"
    assert main(["test", "--checkpoint", str(checkpoint), "--output", "alone", "--quiet"]) == 0
    assert (elsewhere / "alone" / "features.npz").is_file()
    capsys.readouterr()
    assert main(["test", str(elsewhere)]) == 2
    assert "not a run directory (no config.yaml)" in capsys.readouterr().err
    bare = elsewhere / "opengait.pt"  # an OpenGait-style checkpoint: weights only, no config
    torch.save({"model": load_checkpoint(checkpoint)["model"]}, bare)
    assert main(["test", "--checkpoint", str(bare)]) == 2
    assert "holds no config (an OpenGait checkpoint?): give the config too" in capsys.readouterr().err


def test_a_loaded_model_is_ready_to_embed(tiny):
    from gaitrec.engine.inference import load_trained_model

    cfg = cfg_of(tiny, "trainer_cfg.total_iter=3")
    run = train(cfg, progress=False, test_at_end=False)["run_dir"]
    model = load_trained_model(cfg, run / "checkpoints" / "tiny-00003.pt", torch.device("cpu"))
    assert not any(m.training for m in model.modules())  # batch norm on running statistics, no dropout


def test_log_lines_report_the_interval_mean_and_an_eta_without_a_bar_off_terminal(tiny, capsys):
    run = train(cfg_of(tiny, "trainer_cfg.log_iter=3"), progress=True, test_at_end=False)["run_dir"]
    err = capsys.readouterr().err
    assert "it/s" not in err and "s/it" not in err  # stderr is not a terminal here: no tqdm redraws
    times = [json.loads(x)["time/iteration"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    lines = [x for x in (run / "train.log").read_text().splitlines() if "iteration 3/6:" in x]
    assert len(lines) == 1 and "mean of the last 3; eta" in lines[0]
    logged = float(lines[0].split("time/iteration=")[1].split(",")[0])
    assert logged == pytest.approx(sum(times[:3]) / 3, rel=2e-3)


def test_a_gpu_generator_is_saved_and_restored_with_the_cpu_one(monkeypatch):
    # No GPU here: CUDA's generator is stood in for; on the CPU only the CPU generator is kept.
    from gaitrec.engine.trainer import random_state, set_random_state

    assert set(random_state(torch.device("cpu"))) == {"torch"}
    generators = {"cuda:0": torch.tensor([1, 2, 3], dtype=torch.uint8)}
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: generators[str(device)].clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda value, device: generators.__setitem__(str(device), value))
    gpu = torch.device("cuda", 0)
    saved = random_state(gpu)
    expected = torch.rand(3)
    generators["cuda:0"] = torch.tensor([9, 9, 9], dtype=torch.uint8)
    set_random_state(saved, gpu)
    assert torch.equal(torch.rand(3), expected) and generators["cuda:0"].tolist() == [1, 2, 3]
    set_random_state({"torch": saved["torch"]}, gpu)  # a checkpoint from a CPU run: the GPU's is left alone
    assert generators["cuda:0"].tolist() == [1, 2, 3]
