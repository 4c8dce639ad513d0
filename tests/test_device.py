"""Choosing the device: CUDA indices are checked against the visible GPUs; testing computes distances on the
run's device."""
import pytest
import torch

from gaitrec.device import pick_device


def test_cpu_and_auto_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device(None) == torch.device("cpu")
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available; use cpu"):
        pick_device("cuda")


def test_a_gpu_index_beyond_the_visible_ones_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda:1") == torch.device("cuda", 1)
    assert pick_device("cuda") == torch.device("cuda")
    with pytest.raises(ValueError, match=r"cuda:2 was asked for but only 2 GPU\(s\) are visible; use cuda:0..cuda:1"):
        pick_device("cuda:2")


def test_evaluation_runs_on_the_device_it_is_given(monkeypatch):
    from gaitrec.engine import inference
    from gaitrec.evaluation import protocols

    seen = {}

    def fake_evaluate(features, protocol, **options):
        seen.update(options, protocol=protocol)
        return {"results": {}}

    monkeypatch.setattr(protocols, "evaluate", fake_evaluate)
    from gaitrec.config import default_config

    cfg = default_config()  # CASIA-B's indoor protocol, euclidean distances
    inference.evaluate_config(cfg, {}, torch.device("cpu"))
    assert seen["protocol"] == "casia-b" and seen["device"] == torch.device("cpu")
