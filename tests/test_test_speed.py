"""How `gaitrec test` runs its forwards: the preparation rule, the measured forward plan, batches of one
length, and the allocator setting. Every choice must leave the embeddings as they were."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gaitrec.data.dataset import GaitDataset
from gaitrec.data.layout import PklSource
from gaitrec.data.sampler import InferenceSampler, SequenceCollator
from gaitrec.engine.inference import (ForwardPlan, ForwardPlanChooser, fold_batch_norms, forward_plans,
                                      channels_last_applies, prepare_for_inference, single_sequences)
from test_models import HEIGHT, WIDTH, make, silhouettes
from test_prepare import with_trained_statistics

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")
SEED_MODELS = ["Baseline", "GaitSet", "GaitPart", "GLN-2", "GaitGL"]


def is_channels_last(model: torch.nn.Module) -> bool:
    return any(m.weight.is_contiguous(memory_format=torch.channels_last) and not m.weight.is_contiguous()
               for m in model.modules() if isinstance(m, torch.nn.Conv2d))


@pytest.mark.parametrize("name, two_d", [("Baseline", True), ("GaitSet", True), ("GaitPart", True),
                                         ("GLN-2", True), ("GaitGL", False)])
def test_preparation_folds_always_and_starts_channels_last_for_2d_models_on_the_cpu(name, two_d):
    model = prepare_for_inference(with_trained_statistics(make(name)), CPU)
    assert not model.training
    assert channels_last_applies(model) is two_d
    assert is_channels_last(model) is two_d
    assert fold_batch_norms(model) == 0  # nothing left to fold: every conv + bn pair already is


@pytest.mark.parametrize("name", SEED_MODELS)
def test_every_candidate_plan_gives_the_plain_embeddings(name):
    plain = with_trained_statistics(make(name))
    prepared = prepare_for_inference(with_trained_statistics(make(name)), CPU)
    stacked = {"sils": silhouettes(3, 5, HEIGHT, WIDTH), "seq_lengths": None}
    with torch.no_grad():
        expected = plain(stacked["sils"])["embeddings"].numpy()
    plans = forward_plans(prepared, CPU, batch_size=3)
    assert len(plans) == (4 if channels_last_applies(prepared) else 2)
    for plan in plans:
        got = ForwardPlanChooser([plan]).run(prepared, stacked, {"enable_float16": False}, CPU)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * scale, err_msg=str(plan))
        assert is_channels_last(prepared) is plan.channels_last


def test_plans_on_other_devices_and_for_single_sequence_batches():
    model = prepare_for_inference(make("GaitSet"), CPU)
    assert forward_plans(model, torch.device("cuda"), batch_size=4) == [ForwardPlan(True, False)]
    assert forward_plans(model, CPU, batch_size=1) == [ForwardPlan(True, False), ForwardPlan(False, False)]
    assert forward_plans(prepare_for_inference(make("GaitGL"), CPU), CPU, 1) == [ForwardPlan(False, False)]


def test_chooser_tries_each_candidate_then_races_the_close_ones_and_keeps_the_fastest():
    plans = [ForwardPlan(False, False), ForwardPlan(True, False), ForwardPlan(True, True)]
    seconds_per_frame = {plans[0]: 3.0, plans[1]: 1.0, plans[2]: 1.1}
    chooser = ForwardPlanChooser(plans, trials=2, margin=1.15, warmup=0)
    tried = []
    while chooser.chosen is None:
        plan = chooser.next_plan()
        tried.append(plan)
        chooser.record(plan, seconds_per_frame[plan] * 10, frames=10)
    assert tried == plans + [plans[1], plans[2]]  # the slow one drops out after its first batch
    assert chooser.chosen == plans[1] and chooser.next_plan() == plans[1]


def test_chooser_stops_when_one_candidate_is_clearly_fastest():
    plans = [ForwardPlan(False, False), ForwardPlan(True, False)]
    chooser = ForwardPlanChooser(plans, trials=2, warmup=0)
    chooser.record(plans[0], 2.0, 10)
    chooser.record(plans[1], 5.0, 10)  # 2.5x slower: out after one batch
    assert chooser.chosen == plans[0]


def test_chooser_does_not_time_the_runs_first_batch():
    plans = [ForwardPlan(False, False), ForwardPlan(True, False)]
    chooser = ForwardPlanChooser(plans, trials=1)
    assert chooser.next_plan() == plans[0]
    chooser.record(plans[0], 30.0, 10)  # warm-up: embedded, not timed
    assert chooser.chosen is None and chooser.next_plan() == plans[0]
    chooser.record(plans[0], 2.0, 10)
    chooser.record(plans[1], 3.0, 10)
    assert chooser.chosen == plans[0]


def test_chooser_gives_a_candidate_slowed_by_the_first_batch_a_second_trial():
    plans = [ForwardPlan(False, False), ForwardPlan(False, True)]
    chooser = ForwardPlanChooser(plans, trials=2, warmup=0)
    chooser.record(plans[0], 6.2, 10)  # the run's first batch, with the process's warm-up
    chooser.record(plans[1], 5.3, 10)
    assert chooser.chosen is None
    chooser.record(plans[0], 2.9, 10)
    chooser.record(plans[1], 5.3, 10)
    assert chooser.chosen == plans[0]


def test_chooser_judges_a_close_candidate_by_its_best_trial():
    plans = [ForwardPlan(False, False), ForwardPlan(True, False)]
    chooser = ForwardPlanChooser(plans, trials=2, warmup=0)
    chooser.record(plans[0], 2.0, 10)   # 0.2 s per frame, steady
    chooser.record(plans[1], 2.2, 10)   # a burst of other work during its first trial ...
    assert chooser.chosen is None
    chooser.record(plans[0], 2.0, 10)
    chooser.record(plans[1], 1.0, 10)   # ... its best trial shows it is the faster
    assert chooser.chosen == plans[1]


def test_single_sequences_splits_stacked_and_packed_batches():
    stacked = {"sils": silhouettes(3, 4, 8, 8), "seq_lengths": None}
    assert [b["sils"].shape for b in single_sequences(stacked)] == [(1, 4, 8, 8)] * 3
    packed = {"sils": silhouettes(1, 9, 8, 8), "seq_lengths": [2, 3, 4]}
    parts = single_sequences(packed)
    assert [b["sils"].shape[1] for b in parts] == [2, 3, 4]
    assert torch.equal(torch.cat([b["sils"] for b in parts], 1), packed["sils"])


def test_inference_batches_hold_one_length_and_cover_every_sequence_once():
    lengths = [5, 7, 5, 9, 7, 5, 5, 9, 6]
    sampler = InferenceSampler(len(lengths), 2, lengths=lengths)
    batches = [[i for _, _, i in b] for b in sampler]
    assert sorted(sum(batches, [])) == list(range(len(lengths)))
    assert all(len({lengths[i] for i in b}) == 1 and 1 <= len(b) <= 2 for b in batches)
    assert len(sampler) == len(batches) == 5  # length 5: two batches of 2; 6, 7 and 9: one batch each
    assert all(pos == i for b in sampler for _, pos, i in b)  # frames keyed by the sequence, not the batch
    shards = [[i for b in InferenceSampler(9, 2, rank, 2, lengths=lengths) for _, _, i in b] for rank in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(9)) and not set(shards[0]) & set(shards[1])
    with pytest.raises(ValueError, match="3 lengths for 9 sequences"):
        InferenceSampler(9, 2, lengths=[1, 2, 3])


def test_dataset_knows_frame_counts_from_headers_and_the_collator_the_frames_used(tmp_path):
    from gaitrec.data.pickle_io import save_array

    for subject, count in (("001", 4), ("002", 9)):
        save_array(tmp_path / subject / "nm-01" / "000" / "000.pkl", np.full((count, 8, 8), 255, np.uint8))
    dataset = GaitDataset(PklSource(tmp_path))
    assert dataset.frame_counts == [4, 9]
    limited = SequenceCollator({"sample_type": "all_ordered", "frames_all_limit": 6}, [{"type": "BaseSilTransform"}])
    assert limited.frames_used(dataset.frame_counts) == [4, 6]
    fixed = SequenceCollator({"sample_type": "fixed_ordered", "frames_num_fixed": 3}, [{"type": "BaseSilTransform"}])
    assert fixed.frames_used([4, 9]) == [3, 3]
    drawn = SequenceCollator({"sample_type": "unfixed_unordered"}, [{"type": "BaseSilTransform"}])
    assert drawn.frames_used([4, 9]) is None


REUSE_PROBE = """
import resource, sys, torch
from gaitrec.engine.inference import reuse_freed_memory
if sys.argv[1] == "reuse" and not reuse_freed_memory():
    print(-1); sys.exit()
faults = []
for _ in range(4):  # a block above glibc's default 32 MiB, as an activation of a batch of sequences is
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(12 << 20)
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults[2:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_activations_are_reused_without_page_faults():
    # In a fresh interpreter, as `gaitrec test` runs: a long-lived process may have no room left to grow its heap.
    def faults(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", REUSE_PROBE, mode], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        return int(done.stdout.split()[-1])

    reused = faults("reuse")
    if reused < 0:
        pytest.skip("not glibc")
    pages = (48 << 20) >> 12
    assert faults("default") > pages // 2  # each new block faults on its pages ...
    assert reused < pages // 10            # ... unless freed blocks are kept for reuse


def test_loading_a_shipped_config_to_test_imports_no_compiler():
    # torch's compiler (torch._dynamo) costs about 0.9 s of a test run's start-up. The first optimizer built in a
    # process imports it, and so does tensor arithmetic on the meta device, where a config's model is checked.
    probe = ("import sys; from pathlib import Path; from gaitrec.engine.inference import resolve_test_target\n"
             "for path in sorted(Path('configs').rglob('*.yaml')):\n"
             "    if path.name != 'default.yaml':\n"
             "        resolve_test_target(str(path), checkpoint='unused.pt')\n"
             "        print(path, 'torch._dynamo' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    loaded = dict(line.split() for line in done.stdout.splitlines())
    assert len(loaded) >= 5 and "configs/gaitgl/gaitgl.yaml" in loaded
    assert [path for path, compiler in loaded.items() if compiler == "True"] == []


def test_the_command_line_imports_opencv_only_for_commands_that_read_video():
    probe = ("import sys; from gaitrec.cli import build_parser; build_parser(); print('cv2' in sys.modules); "
             "from gaitrec.video import ExtractOptions, extract_video; print('cv2' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.split() == ["False", "True"]
