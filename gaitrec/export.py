"""Export a trained model for deployment as TorchScript or ONNX: silhouettes in, embeddings out.

The exported model takes ``silhouettes`` float ``[N, T, H, W]`` in [0, 1] (N and T dynamic, H and W fixed at
export) and returns ``embeddings`` ``[N, C, P]``: what ``model(sils)["embeddings"]`` gives in eval mode with
``seq_lengths=None``, one sequence per batch row. Both formats come from tracing, so every file is run on
random input at two (N, T) shapes other than the traced one and compared with PyTorch before it is written.
A consumer finds what it needs in the file's metadata (ONNX ``metadata_props``, a TorchScript extra file):
input and output names and shapes, the model name, the config's hash.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import time
import warnings
import zipfile
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

from .errors import ConfigError
from . import __version__
from .files import atomic_write_bytes

FORMATS = ("torchscript", "onnx")
INPUT_NAME, OUTPUT_NAME = "silhouettes", "embeddings"
METADATA_FILE = "gaitrec.json"  # the TorchScript extra file holding the metadata
DEFAULT_FRAME_SIZE = (64, 44)  # OpenGait's standard input: 64x64 frames cut to 44 columns
DEFAULT_TOLERANCE = 1e-4  # max |exported - pytorch| / max |pytorch|; float32 reorderings stay below 1e-6
ONNX_OPSET = 17
TRACE_SHAPE = (2, 10)  # (N, T) of the example the model is traced with
CHECK_SHAPES = ((1, 15), (3, 6))  # (N, T) the export is checked at: both differ from the traced shape
# GaitGL repeats sequences shorter than its 3-frame temporal aggregation in a Python branch, which a trace
# cannot record: its exported model needs at least 3 frames (fewer raise an error, never a wrong embedding).
MIN_FRAMES = {"GaitGL": 3}
ONNX_INSTALL_HINT = "pip install 'gaitrec[onnx]'"


class ExportError(ConfigError):
    """The model cannot be exported in the requested format (the message names the model and why)."""


class ExportMismatchError(RuntimeError):
    """The exported model's embeddings differ from PyTorch's by more than the tolerance."""


class EmbeddingModel(nn.Module):
    """A gaitrec model reduced to the exported contract: ``[N, T, H, W]`` silhouettes -> ``[N, C, P]`` embeddings."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, silhouettes: torch.Tensor) -> torch.Tensor:
        return self.model(silhouettes)["embeddings"]


def config_hash(cfg: dict) -> str:
    """SHA-256 of the resolved config (defaults merged, overrides applied) in a canonical JSON form."""
    text = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_frame_size(text: str) -> tuple[int, int]:
    """``"64x44"`` -> ``(64, 44)``."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or min(int(match[1]), int(match[2])) < 1:
        raise ConfigError(f"--frame-size {text!r}: expected HEIGHTxWIDTH, e.g. 64x44")
    return int(match[1]), int(match[2])


def frame_size_of(cfg: dict) -> tuple[tuple[int, int], str]:
    """The model's input height and width and where they come from: one sequence of the config's dataset
    through the evaluator's transform when the dataset is here, otherwise OpenGait's standard 64x44."""
    from .data.dataset import open_source
    from .data.transforms import build_transform

    data = cfg["data_cfg"]
    root = Path(data["dataset_root"])
    if data["dataset_root"] and root.is_dir():
        frames = open_source(root, data["data_in_use"]).load(0)
        frames = build_transform(cfg["evaluator_cfg"]["transform"])(frames, None)
        return tuple(frames.shape[-2:]), f"the config's dataset {root} through evaluator_cfg.transform"
    return DEFAULT_FRAME_SIZE, "OpenGait's standard input (the config's dataset is not here; --frame-size sets it)"


def check_request(out: str | Path, fmt: str, overwrite: bool) -> Path:
    """Refuse an unknown format, a missing onnx package, and an existing ``out`` without ``overwrite``."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise ExportError(f"--format onnx needs the onnx package: {ONNX_INSTALL_HINT}") from None
    out = Path(out)
    if out.is_dir():
        raise IsADirectoryError(f"{out} is a directory; give the path of the file to write")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; refusing to overwrite it (pass --overwrite to replace it)")
    return out


@contextlib.contextmanager
def quiet_exporter():
    """Tracing warns about every shape read as a Python number and the exporters about their deprecation;
    the check at other shapes below is what tells a faithful export, so these would only be noise."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def to_torchscript(model: EmbeddingModel, example: torch.Tensor, metadata: dict[str, str]) -> bytes:
    """Trace ``model`` and serialise it with the metadata as the extra file ``gaitrec.json``."""
    buffer = io.BytesIO()
    with quiet_exporter(), torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, buffer, _extra_files={METADATA_FILE: json.dumps(metadata, indent=2)})
    return buffer.getvalue()


def to_onnx(model: EmbeddingModel, example: torch.Tensor, metadata: dict[str, str]) -> bytes:
    """Export through the TorchScript-based exporter (the default dynamo one needs ``onnxscript``); N and T
    are symbolic dimensions, the metadata goes into ``metadata_props``."""
    import onnx

    buffer = io.BytesIO()
    with quiet_exporter():
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=ONNX_OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "N", 1: "T"}, OUTPUT_NAME: {0: "N"}})
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def exported_runner(data: bytes, fmt: str):
    """A function running the serialised model on a tensor, or None when the runtime is not installed."""
    if fmt == "torchscript":
        with quiet_exporter():
            loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
        return lambda x: loaded(x)
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])


def relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected| (a scale-free distance between two embeddings)."""
    actual, expected = actual.detach().float(), expected.detach().float()
    scale = expected.abs().max().clamp(min=1e-12)
    return float((actual - expected).abs().max() / scale)


def random_silhouettes(n: int, frames: int, frame_size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    return torch.rand(n, frames, *frame_size, generator=torch.Generator().manual_seed(seed))


def format_differences(differences: dict[str, float]) -> str:
    """``{"1x15": 3e-7}`` -> ``"N x T = 1 x 15: 3.00e-07"``."""
    return ", ".join(f"N x T = {shape.replace('x', ' x ')}: {diff:.2e}" for shape, diff in differences.items())


@torch.no_grad()
def check_export(run, model: EmbeddingModel, frame_size: tuple[int, int], min_frames: int = 1) -> dict[str, float]:
    """Max relative difference between ``run`` and the PyTorch model at each of CHECK_SHAPES (``"NxT"`` keys);
    infinite where the exported model fails or gives another shape."""
    differences = {}
    for seed, (n, frames) in enumerate(CHECK_SHAPES, start=1):
        x = random_silhouettes(n, max(frames, min_frames), frame_size, seed)
        expected = model(x)
        try:
            actual = run(x)
        except Exception:  # any failure of the exported file at a new shape makes the export unfaithful
            actual = None
        faithful = actual is not None and tuple(actual.shape) == tuple(expected.shape)
        differences[f"{n}x{x.size(1)}"] = relative_difference(actual, expected) if faithful else float("inf")
    return differences


def export_model(model: nn.Module, out: str | Path, fmt: str, model_name: str,
                 frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE, metadata: dict[str, str] | None = None,
                 overwrite: bool = False, tolerance: float = DEFAULT_TOLERANCE, progress: bool = False) -> dict:
    """Export ``model`` (a gaitrec model, any weights) to ``out`` in ``fmt``, check it, write it atomically.

    Returns a summary: ``out``, ``format``, ``model``, ``frame_size``, ``embedding_shape`` ([C, P]),
    ``max_relative_difference`` per checked ``NxT`` shape, ``checked_with`` (what ran: the file itself, or
    the TorchScript trace when onnxruntime is missing), ``bytes`` and ``seconds``. Raises ExportError when the model cannot be
    exported in ``fmt`` and ExportMismatchError when the export differs from PyTorch by more than ``tolerance``
    (``out`` is then left untouched).
    """
    out = check_request(out, fmt, overwrite)
    start = time.perf_counter()
    model = EmbeddingModel(model).eval()  # eval on the wrapper: the ONNX exporter restores the wrapper's mode
    min_frames = MIN_FRAMES.get(model_name, 1)
    example = random_silhouettes(TRACE_SHAPE[0], max(TRACE_SHAPE[1], min_frames), frame_size)
    try:
        with torch.no_grad():
            channels, parts = model(example).shape[1:]
    except RuntimeError as err:
        raise ExportError(f"{model_name} does not run on {frame_size[0]}x{frame_size[1]} frames "
                          f"({first_line(err)}); check --frame-size") from None
    info = {
        "format": fmt,
        "model": model_name,
        "input_name": INPUT_NAME,
        "input_shape": f"N,T,{frame_size[0]},{frame_size[1]}",
        "input_dtype": "float32",
        "input_range": "0,1",
        "min_frames": str(min_frames),
        "output_name": OUTPUT_NAME,
        "output_shape": f"N,{channels},{parts}",
        "gaitrec_version": __version__,
        **(metadata or {}),
    }
    with tqdm(total=3, desc=f"export {fmt}", disable=not progress, dynamic_ncols=True) as steps:
        try:
            data = (to_torchscript if fmt == "torchscript" else to_onnx)(model, example, info)
        except RuntimeError as err:  # the exporters' errors (unsupported operators, untraceable code)
            raise ExportError(f"{model_name} cannot be exported to {fmt}: {first_line(err)}") from None
        steps.update()

        run = exported_runner(data, fmt)
        checked_with = "torchscript" if fmt == "torchscript" else "onnxruntime"
        if run is None:
            # Without onnxruntime the ONNX file cannot run here; the TorchScript trace the exporter shares
            # still shows whether the model traces faithfully at other shapes.
            run = exported_runner(to_torchscript(model, example, info), "torchscript")
            checked_with = "torchscript trace (onnxruntime not installed: the ONNX file itself was not run)"
        differences = check_export(run, model, frame_size, min_frames)
        steps.update()
        if not max(differences.values()) <= tolerance:
            raise ExportMismatchError(f"{model_name} exported to {fmt} differs from PyTorch (max relative difference "
                                      f"{format_differences(differences)}; tolerance {tolerance:g}); nothing written to {out}. The output "
                                      "probably depends on N or T through Python code a trace cannot record")
        atomic_write_bytes(out, data)
        steps.update()
    return {"out": str(out), "format": fmt, "model": model_name, "frame_size": list(frame_size),
            "embedding_shape": [channels, parts], "max_relative_difference": differences,
            "checked_with": checked_with, "bytes": len(data), "seconds": round(time.perf_counter() - start, 2)}


def export_checkpoint(cfg: dict, checkpoint: str | Path, out: str | Path, fmt: str,
                      frame_size: tuple[int, int] | None = None, overwrite: bool = False,
                      tolerance: float = DEFAULT_TOLERANCE, progress: bool = False) -> dict:
    """Load the config's model with a checkpoint's weights (strictly) and export it with ``export_model``.

    ``frame_size`` None takes it from the config's dataset when present (see ``frame_size_of``). The
    metadata adds the config's hash and the checkpoint's name and hash; the summary adds ``frame_size_from``.
    """
    from .engine.inference import load_trained_model

    check_request(out, fmt, overwrite)  # before the (possibly long) model loading
    source = "--frame-size"
    if frame_size is None:
        frame_size, source = frame_size_of(cfg)
    model = load_trained_model(cfg, checkpoint, torch.device("cpu"), strict=True, prepare=False)
    metadata = {
        "config_sha256": config_hash(cfg),
        "model_cfg": json.dumps(cfg["model_cfg"], sort_keys=True, default=str),
        "checkpoint": Path(checkpoint).name,
        "checkpoint_sha256": file_hash(checkpoint),
    }
    summary = export_model(model, out, fmt, cfg["model_cfg"]["model"], frame_size=tuple(frame_size),
                           metadata=metadata, overwrite=overwrite, tolerance=tolerance, progress=progress)
    summary["frame_size_from"] = source
    return summary


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of an exported file (either format), as written by ``export_model``."""
    path = Path(path)
    if not zipfile.is_zipfile(path):  # TorchScript files are zip archives, ONNX files protobuf
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        return {prop.key: prop.value for prop in proto.metadata_props}
    extra = {METADATA_FILE: ""}
    with quiet_exporter():
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[METADATA_FILE])
