"""Hostile config values: one line and exit 2 naming the key, never a traceback; a real bug keeps its traceback."""
from __future__ import annotations

import pytest

from gaitrec.cli import main
from test_engine import CONFIG

ATTACKS = {
    "optimizer_cfg=a string": "optimizer_cfg must be a mapping",
    "trainer_cfg=a string": "trainer_cfg must be a mapping",
    "model_cfg.SeparateBNNecks.class_num=false": "model_cfg.SeparateBNNecks.class_num must be int, got False",
    "model_cfg.backbone_cfg.layers_cfg=[BC-x, M]": "layer 'BC-x' must be BC-<c>",
    "model_cfg.backbone_cfg.layers_cfg=[BC-4, 7]": "layers_cfg must be list of str, got ['BC-4', 7]",
    "loss_cfg.0.loss_term_weight={}": "loss_cfg[0].loss_term_weight must be int or float, got {}",
    "model_cfg.bin_num=[-1]": "model_cfg.bin_num must be positive",
    "trainer_cfg.total_iter=[": "override 'trainer_cfg.total_iter=[': value is not valid YAML",
    "a.b.c=1": "override 'a.b.c=1': unknown section 'a'",
    "loss_cfg=5": "loss_cfg must be a mapping or a list",
    "trainer_cfg.sampler.batch_size=[2, true]": "batch_size must be [subjects, sequences per subject]",
    "trainer_cfg.save_iter=0": "trainer_cfg.save_iter must be a positive number of iterations",
    "optimizer_cfg.lr=abc": "optimizer_cfg.lr must be int or float, got 'abc'",
    "scheduler_cfg.milestones=abc": "scheduler_cfg.milestones must be list of int",
    "model_cfg.SeparateFCs.in_channels=0": "model_cfg.SeparateFCs.in_channels must be positive",
    "evaluator_cfg.restore_hint=-5": "evaluator_cfg.restore_hint must be an iteration >= 0",
    "model_cfg.SeparateBNNecks.class_num=100000000000": "would have 2,400,000,000,628 parameters",
    "optimizer_cfg.lr=-1": "Invalid learning rate: -1",
}


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(CONFIG.format(root=tmp_path / "data", out=tmp_path / "out"))
    return path


@pytest.mark.parametrize("override", ATTACKS)
def test_hostile_override_is_one_line_naming_the_key(config_file, override, capsys):
    assert main(["params", str(config_file), "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ATTACKS[override] in err, err


def test_the_same_typo_in_a_file_and_in_an_override_is_refused_alike(config_file, capsys):
    config_file.write_text(config_file.read_text() + "a:\n  b: {c: 1}\n")
    assert main(["params", str(config_file)]) == 2
    assert "unknown section 'a'" in capsys.readouterr().err
    config_file.write_text(config_file.read_text().replace("optimizer_cfg: {", "optimizer_cfg: a string\nx: {"))
    assert main(["params", str(config_file)]) == 2


def test_a_bug_keeps_its_traceback_and_says_it_is_one(config_file, monkeypatch, capsys):
    import gaitrec.models

    def broken(cfg):
        return {}["no such key"]  # a KeyError inside gaitrec, not the user's input

    monkeypatch.setattr(gaitrec.models, "create_model", broken)
    monkeypatch.setattr("gaitrec.config._check_model", lambda cfg, source: None)
    with pytest.raises(KeyError):
        main(["params", str(config_file)])
    assert "internal error, this is a bug in gaitrec" in capsys.readouterr().err
