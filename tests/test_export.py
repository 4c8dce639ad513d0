"""Export: TorchScript and ONNX files that give PyTorch's embeddings at any N and T, carry their metadata, and are
refused (model and reason named) when a model cannot be exported faithfully."""
from __future__ import annotations

import sys

import pytest
import torch
import torch.nn as nn
import yaml

from gaitrec.cli import main
from gaitrec.config import CONFIG_DIR, load_config
from gaitrec.engine.checkpoint import save_checkpoint
from gaitrec.export import (ExportError, ExportMismatchError, config_hash, export_checkpoint, export_model,
                            read_metadata, relative_difference)
from gaitrec.models import create_model
from gaitrec.registry import MODELS
from test_models import EXPECTED, tiny
from conftest import write_constructed_dataset

torch.set_num_threads(1)
pytestmark = [pytest.mark.slow,  # TorchScript and ONNX export of every model family
              pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")]

DEMO_CONFIG = CONFIG_DIR / "demo" / "baseline_synthgait.yaml"  # the slim Baseline: 128 channels, 15 parts
FRAME = (32, 32)
# Max relative difference to PyTorch, asserted below 1e-5 for both formats. Measured: TorchScript 0 with the
# reference's own weights, 4e-7 against a reference without the demo's channels-last placement; ONNX Runtime,
# which fuses and reorders float32 operations, 2e-7 to 5e-7.
TOLERANCE = 1e-5


def sils(n, frames, size=FRAME, seed=0):
    return torch.rand(n, frames, *size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo config and a random-init checkpoint of its model; returns (cfg, checkpoint, pytorch model)."""
    folder = tmp_path_factory.mktemp("demo")
    cfg = load_config(DEMO_CONFIG)
    torch.manual_seed(0)
    model = create_model(cfg["model_cfg"]).eval()
    checkpoint = folder / "demo.pt"
    save_checkpoint(checkpoint, {"model": model.state_dict()})
    return cfg, checkpoint, model


def pytorch_embeddings(model, x):
    with torch.no_grad():
        return model(x, seq_lengths=None)["embeddings"]


@pytest.fixture(scope="module")
def torchscript_file(demo, tmp_path_factory):
    cfg, checkpoint, _ = demo
    out = tmp_path_factory.mktemp("ts") / "demo.pt"
    summary = export_checkpoint(cfg, checkpoint, out, "torchscript", frame_size=FRAME)
    return out, summary


@pytest.fixture(scope="module")
def onnx_file(demo, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    cfg, checkpoint, _ = demo
    out = tmp_path_factory.mktemp("onnx") / "demo.onnx"
    summary = export_checkpoint(cfg, checkpoint, out, "onnx", frame_size=FRAME)
    return out, summary


def run_onnx(path, x):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["embeddings"], {"silhouettes": x.numpy()})[0])


# (N, T) other than the traced (2, 10) and the checked (1, 15), (3, 6) shapes.
SHAPES = [(1, 1), (4, 23), (5, 7)]


def test_torchscript_export_equals_pytorch_at_other_shapes(demo, torchscript_file):
    _, _, model = demo
    path, summary = torchscript_file
    assert summary["checked_with"] == "torchscript"
    assert set(summary["max_relative_difference"]) == {"1x15", "3x6"}
    assert max(summary["max_relative_difference"].values()) < TOLERANCE
    loaded = torch.jit.load(str(path))
    for seed, (n, frames) in enumerate(SHAPES):
        x = sils(n, frames, seed=seed)
        out = loaded(x)
        assert out.shape == (n, 128, 15)
        assert relative_difference(out, pytorch_embeddings(model, x)) < TOLERANCE


def test_onnx_export_equals_pytorch_at_other_shapes(demo, onnx_file):
    _, _, model = demo
    path, summary = onnx_file
    assert summary["checked_with"] == "onnxruntime"
    assert max(summary["max_relative_difference"].values()) < TOLERANCE
    for seed, (n, frames) in enumerate(SHAPES):
        x = sils(n, frames, seed=seed)
        out = run_onnx(path, x)
        assert out.shape == (n, 128, 15)
        assert relative_difference(out, pytorch_embeddings(model, x)) < TOLERANCE


def test_onnx_batch_and_frame_axes_are_symbolic(onnx_file):
    import onnx

    path, _ = onnx_file
    proto = onnx.load(str(path))
    (graph_input,) = proto.graph.input
    (graph_output,) = proto.graph.output
    assert graph_input.name == "silhouettes" and graph_output.name == "embeddings"
    dims = graph_input.type.tensor_type.shape.dim
    assert [d.dim_param for d in dims[:2]] == ["N", "T"]
    assert [d.dim_value for d in dims[2:]] == list(FRAME)
    out_dims = graph_output.type.tensor_type.shape.dim
    assert out_dims[0].dim_param == "N"


def test_each_row_is_one_sequence(torchscript_file):
    """A sequence's embedding does not depend on the other rows of the batch (eval mode, no packing)."""
    loaded = torch.jit.load(str(torchscript_file[0]))
    x = sils(3, 9, seed=5)
    together = loaded(x)
    for i in range(3):
        torch.testing.assert_close(loaded(x[i:i + 1]), together[i:i + 1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_metadata_describes_the_contract(fmt, demo, torchscript_file, request):
    cfg, _, _ = demo
    path, _ = request.getfixturevalue("onnx_file" if fmt == "onnx" else "torchscript_file")
    meta = read_metadata(path)
    assert meta["format"] == fmt
    assert meta["model"] == "Baseline"
    assert meta["input_name"] == "silhouettes" and meta["input_shape"] == "N,T,32,32"
    assert meta["output_name"] == "embeddings" and meta["output_shape"] == "N,128,15"
    assert meta["config_sha256"] == config_hash(cfg) and len(meta["config_sha256"]) == 64
    assert meta["checkpoint"] == "demo.pt" and meta["min_frames"] == "1"


def test_config_hash_follows_the_config(demo):
    cfg, _, _ = demo
    other = load_config(DEMO_CONFIG, ["model_cfg.SeparateFCs.out_channels=64"])
    assert config_hash(load_config(DEMO_CONFIG)) == config_hash(cfg) != config_hash(other)


# Every model family, tiny, both formats.
@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_every_model_family_exports(name, fmt, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    cfg = tiny(name)
    model = create_model(cfg).eval()
    summary = export_model(model, tmp_path / "m", fmt, cfg["model"], frame_size=(64, 44))
    assert max(summary["max_relative_difference"].values()) < TOLERANCE
    x = sils(2, 4, size=(64, 44), seed=3)  # a third shape, fewer frames than any checked one
    out = torch.jit.load(str(tmp_path / "m"))(x) if fmt == "torchscript" else run_onnx(tmp_path / "m", x)
    assert relative_difference(out, pytorch_embeddings(model, x)) < TOLERANCE


def test_gaitgl_export_declares_and_needs_three_frames(tmp_path):
    model = create_model(tiny("GaitGL")).eval()
    export_model(model, tmp_path / "gl.pt", "torchscript", "GaitGL", frame_size=(64, 44))
    assert read_metadata(tmp_path / "gl.pt")["min_frames"] == "3"
    with pytest.raises(RuntimeError):  # an error, not an embedding of wrongly repeated frames
        torch.jit.load(str(tmp_path / "gl.pt"))(sils(1, 2, size=(64, 44)))


# Refusals: models built here to be unexportable, registered for one test only.
class FrameCountBranch(nn.Module):
    """Scales its embedding by a Python condition on T, which a trace freezes at the traced T."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, sils, seq_lengths=None):
        x = self.proj(sils.mean(1)[:, :4, :4])
        if sils.shape[1] > 12:
            x = 2 * x
        return {"embeddings": x, "training": {}}


class SpectralModel(nn.Module):
    """Uses an FFT, which tracing records but ONNX opset 17 has no operator for."""

    def forward(self, sils, seq_lengths=None):
        return {"embeddings": torch.fft.rfft(sils, dim=1).abs().amax(1)[:, :4, :4], "training": {}}


@pytest.fixture
def unexportable_config(monkeypatch, tmp_path):
    def make(cls):
        monkeypatch.setitem(MODELS._entries, cls.__name__, cls)
        cfg = load_config(DEMO_CONFIG, validate_config=False)
        cfg["model_cfg"] = {"model": cls.__name__}
        checkpoint = tmp_path / "model.pt"
        save_checkpoint(checkpoint, {"model": cls().state_dict()})
        return cfg, checkpoint
    return make


def test_untraceable_model_is_refused_and_nothing_written(unexportable_config, tmp_path):
    cfg, checkpoint = unexportable_config(FrameCountBranch)
    with pytest.raises(ExportMismatchError, match="FrameCountBranch exported to torchscript differs from PyTorch"):
        export_checkpoint(cfg, checkpoint, tmp_path / "out.pt", "torchscript", frame_size=FRAME)
    assert not (tmp_path / "out.pt").exists()


def test_model_without_onnx_operators_is_refused_for_onnx_only(unexportable_config, tmp_path):
    pytest.importorskip("onnxruntime")
    cfg, checkpoint = unexportable_config(SpectralModel)
    with pytest.raises(ExportError, match="SpectralModel cannot be exported to onnx: .*fft_rfft.* not supported"):
        export_checkpoint(cfg, checkpoint, tmp_path / "out.onnx", "onnx", frame_size=FRAME)
    assert not (tmp_path / "out.onnx").exists()
    export_checkpoint(cfg, checkpoint, tmp_path / "out.pt", "torchscript", frame_size=FRAME)
    assert (tmp_path / "out.pt").is_file()


def test_onnx_without_onnxruntime_is_checked_through_the_trace(demo, tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    cfg, checkpoint, _ = demo
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    summary = export_checkpoint(cfg, checkpoint, tmp_path / "m.onnx", "onnx", frame_size=FRAME)
    assert "onnxruntime not installed" in summary["checked_with"]
    assert max(summary["max_relative_difference"].values()) < TOLERANCE
    assert read_metadata(tmp_path / "m.onnx")["output_shape"] == "N,128,15"


# The command line.
def test_cli_help_has_description_and_example(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--format {torchscript,onnx}" in text and "example:" in text and "default 1e-4" in text


def test_cli_exports_prints_differences_and_refuses_to_overwrite(demo, tmp_path, capsys):
    _, checkpoint, _ = demo
    out = tmp_path / "model.pt"
    args = ["export", str(DEMO_CONFIG), "--checkpoint", str(checkpoint), "--format", "torchscript", str(out),
            "--frame-size", "32x32", "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "max relative difference to PyTorch (torchscript): N x T = 1 x 15: 0.00e+00" in printed
    assert "'embeddings' [N, 128, 15]" in printed
    before = out.read_bytes()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gaitrec export: error:") and "--overwrite" in err and len(err.splitlines()) == 1
    assert out.read_bytes() == before
    assert main(args + ["--overwrite"]) == 0


def test_cli_mismatch_exits_1(unexportable_config, tmp_path, capsys):
    _, checkpoint = unexportable_config(FrameCountBranch)
    config = tmp_path / "branch.yaml"
    user = yaml.safe_load(DEMO_CONFIG.read_text())
    user["model_cfg"] = {"model": "FrameCountBranch"}
    config.write_text(yaml.safe_dump(user))
    code = main(["export", str(config), "--checkpoint", str(checkpoint), "--format", "torchscript",
                 str(tmp_path / "out.pt"), "--frame-size", "32x32", "--quiet"])
    assert code == 1
    assert "FrameCountBranch exported to torchscript differs from PyTorch" in capsys.readouterr().err
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize("extra, message", [
    (["--frame-size", "64by44"], "--frame-size '64by44': expected HEIGHTxWIDTH"),
    (["--tolerance", "0"], "--tolerance must be positive"),
    (["--frame-size", "2x2"], "Baseline does not run on 2x2 frames"),
])
def test_cli_bad_arguments_exit_2(demo, tmp_path, capsys, extra, message):
    _, checkpoint, _ = demo
    code = main(["export", str(DEMO_CONFIG), "--checkpoint", str(checkpoint), "--format", "torchscript",
                 str(tmp_path / "out.pt"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_missing_checkpoint_exits_2(tmp_path, capsys):
    code = main(["export", str(DEMO_CONFIG), "--checkpoint", str(tmp_path / "none.pt"), "--format", "torchscript",
                 str(tmp_path / "out.pt")])
    assert code == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_cli_onnx_without_onnx_installed_exits_2(demo, tmp_path, capsys, monkeypatch):
    _, checkpoint, _ = demo
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail as if it were not installed
    code = main(["export", str(DEMO_CONFIG), "--checkpoint", str(checkpoint), "--format", "onnx",
                 str(tmp_path / "out.onnx")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'gaitrec[onnx]'" in err[0]
    assert not (tmp_path / "out.onnx").exists()


def test_frame_size_comes_from_the_configs_dataset(demo, tmp_path):
    cfg, checkpoint, _ = demo
    root = write_constructed_dataset(tmp_path / "data", size=16)  # 16x16 frames: the demo's transform keeps 16
    with_data = load_config(DEMO_CONFIG, [f"data_cfg.dataset_root={root}"])
    summary = export_checkpoint(with_data, checkpoint, tmp_path / "m.pt", "torchscript")
    assert summary["frame_size"] == [16, 16] and "through evaluator_cfg.transform" in summary["frame_size_from"]
    without = export_checkpoint(cfg, checkpoint, tmp_path / "n.pt", "torchscript")
    assert without["frame_size"] == [64, 44] and "standard" in without["frame_size_from"]
