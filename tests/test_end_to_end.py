"""The whole path a user takes: synth -> train -> test (features.npz) -> evaluate, through the CLI."""
import json
import subprocess
import sys

import numpy as np
import pytest

from gaitrec.cli import main
from gaitrec.config import CONFIG_DIR

pytestmark = pytest.mark.slow  # the CLI in subprocesses and a full train/test round trip


def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "gaitrec", *map(str, args)], capture_output=True, text=True,
                          timeout=300)
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = root / "synth"
    assert main(["synth", "--output", str(data), "--subjects", "8", "--frames", "12", "--size", "32", "--quiet"]) == 0
    overrides = [f"data_cfg.dataset_root={data}", f"data_cfg.dataset_partition={data / 'partition.json'}",
                 f"trainer_cfg.output_root={root / 'runs'}", "trainer_cfg.total_iter=6", "trainer_cfg.save_iter=3",
                 "trainer_cfg.sampler.batch_size=[4, 2]", "trainer_cfg.sampler.frames_num_fixed=8",
                 "model_cfg.SeparateBNNecks.class_num=5", "trainer_cfg.log_iter=3"]
    args = ["train", str(CONFIG_DIR / "demo" / "baseline_synthgait.yaml"), "--quiet"]
    for o in overrides:
        args += ["--set", o]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = root / "runs" / "SynthGait" / "Baseline" / "Baseline_SynthGait"
    return root, data, overrides, run_dir, proc


def test_train_writes_run_and_prints_the_table(trained):
    root, data, overrides, run_dir, proc = trained
    assert (run_dir / "checkpoints" / "Baseline_SynthGait-00006.pt").is_file()
    assert "NM" in proc.stdout and "BG" in proc.stdout and "CL" in proc.stdout
    results = json.loads((run_dir / "test" / "00006" / "results.json").read_text())
    assert set(results["results"]) >= {"NM-rank1", "BG-rank1", "CL-rank1"}


def test_test_then_evaluate_round_trip(trained):
    root, data, overrides, run_dir, _ = trained
    out = root / "test-out"
    args = ["test", CONFIG_DIR / "demo" / "baseline_synthgait.yaml", "--checkpoint",
            run_dir / "checkpoints" / "Baseline_SynthGait-00006.pt", "--output", out, "--quiet"]
    for o in overrides:
        args += ["--set", o]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with np.load(out / "features.npz", allow_pickle=False) as f:
        emb, labels, types, views = f["embeddings"], f["labels"], f["types"], f["views"]
    test_subjects = json.loads((data / "partition.json").read_text())["TEST_SET"]
    assert emb.dtype == np.float32 and emb.ndim == 3 and emb.shape[0] == len(labels) == len(types) == len(views)
    assert emb.shape[0] == len(test_subjects) * 10 * 11 and set(labels) == set(test_subjects)
    again = run_cli(*args)  # results are never replaced silently
    assert again.returncode != 0 and "already holds test results" in again.stderr
    proc = run_cli("evaluate", out / "features.npz", "--protocol", "casia-b", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["protocol"] == "casia-b" and result["metric"] == "euc"
    saved = json.loads((out / "results.json").read_text())
    for key in ("NM-rank1", "BG-rank1", "CL-rank1"):
        assert result["results"][key] == pytest.approx(saved["results"][key])
        assert 0.0 <= result["results"][key] <= 100.0
    assert set(result["per_view"]["NM"]) == {f"{a:03d}" for a in range(0, 181, 18)}
    cos = json.loads(run_cli("evaluate", out / "features.npz", "--protocol", "casia-b", "--metric", "cos",
                             "--json").stdout)
    assert cos["metric"] == "cos"


def test_params_command(tmp_path):
    proc = run_cli("params", CONFIG_DIR / "baseline" / "baseline.yaml", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"model": "Baseline", "params": 3779136}


@pytest.mark.parametrize("args, message", [
    (["train", "missing.yaml"], "config file not found: missing.yaml"),
    (["evaluate", "nothing.npz", "--protocol", "casia-b"], "features file not found"),
    (["params", str(CONFIG_DIR / "baseline" / "baseline.yaml"), "--set", "model_cfg.model=Basline"],
     "unknown model 'Basline'. Did you mean 'Baseline'?"),
    (["test", str(CONFIG_DIR / "baseline" / "baseline.yaml"), "--checkpoint", "none.pt"], "not found"),
    (["synth"], "nothing to do"),
    (["demo", "--iterations", "0"], "--iterations must be at least 1, got 0"),
    (["train", str(CONFIG_DIR / "demo" / "baseline_synthgait.yaml"), "--device", "tpu"],
     "gaitrec train: error: --device tpu: not a device; use cpu, cuda or cuda:N"),
    (["data", "info", "nowhere"], "gaitrec data info: error:"),
])
def test_bad_input_gives_one_line_and_non_zero_exit(args, message):
    proc = run_cli(*args)
    assert proc.returncode == 2
    lines = [x for x in proc.stderr.splitlines() if not x.startswith("warning:")]
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_every_subcommand_has_help():
    for cmd in ("train", "test", "evaluate", "params", "demo", "synth", "pretreat", "pack", "unpack", "data"):
        proc = run_cli(cmd, "--help")
        assert proc.returncode == 0 and "usage: gaitrec" in proc.stdout, cmd


def test_a_reader_that_stops_early_is_not_an_error(tmp_path):
    # `gaitrec evaluate ... | head`: the pipe closes before gaitrec writes; it exits 0 without a word.
    from gaitrec.evaluation.features import save_features

    views, types = ["000", "090"], [f"nm-0{i}" for i in range(1, 7)] + ["bg-01", "bg-02", "cl-01", "cl-02"]
    rows = [(s, t, v) for s in ("001", "002") for t in types for v in views]
    emb = np.stack([np.full((4, 2), int(s), np.float32) for s, _, _ in rows])
    save_features(tmp_path / "f.npz", emb, *zip(*rows))
    proc = subprocess.Popen([sys.executable, "-m", "gaitrec", "evaluate", str(tmp_path / "f.npz"), "--protocol",
                             "casia-b", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    assert proc.stderr.read() == b""


def test_only_rank_0_talks_under_torchrun(tmp_path, monkeypatch, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("model_cfg:\n  model: Baseline\n  backbone_cfg: {type: Plain, in_channels: 1, layers_cfg: [BC-4]}\n"
                      "  SeparateFCs: {in_channels: 4, out_channels: 4, parts_num: 1}\n"
                      "  SeparateBNNecks: {class_num: 2, in_channels: 4, parts_num: 1}\n  bin_num: [1]\n"
                      "trainer_cfg:\n  fix_layers: false\n")  # a key that warns
    assert main(["params", str(config)]) == 0
    assert "warning: " in capsys.readouterr().err
    monkeypatch.setenv("RANK", "1")
    assert main(["params", str(config)]) == 0
    assert capsys.readouterr().err == ""


def _commands(parser, prefix="gaitrec"):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from _commands(sub, f"{prefix} {name}")


def test_help_describes_every_argument_shows_defaults_and_examples():
    from gaitrec.cli import build_parser
    from gaitrec.evaluation.protocols import PROTOCOLS

    commands = dict(_commands(build_parser()))
    for name, parser in commands.items():
        text = parser.format_help()
        assert "example" in text, name
        for action in parser._actions:
            if action.dest == "help" or action.nargs == 0 or action.dest in ("command", "data_command"):
                continue  # flags: off unless given
            assert action.help, f"{name}: {action.dest} has no description"
            if action.option_strings and not action.required and action.dest != "overrides":
                assert "default" in parser._get_formatter()._get_help_string(action), f"{name} {action.dest}"
    protocol = next(a for a in commands["gaitrec evaluate"]._actions if a.dest == "protocol")
    assert protocol.help.split(", ") == list(PROTOCOLS)
    train = commands["gaitrec train"].format_help()
    assert "<output_root>/<dataset_name>/<model>/<save_name>/" in train and "batch_size=[4,4]" in train
