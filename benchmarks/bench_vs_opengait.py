"""A whole `gaitrec test` run against OpenGait's model forwards alone, on the same data and weights.

    python benchmarks/bench_vs_opengait.py --opengait DIR [--subjects 8] [--repeats 2] [--models Baseline,...] [--write]

DIR is a checkout of OpenGait (the folder holding ``opengait/modeling``); nothing of it is copied or kept.
For each seed model, from its shipped config (``configs/<model>/...``) and one set of random weights (speed
does not depend on the values): OpenGait's own model class is built from the same ``model_cfg`` and given the
same state_dict, then its forwards are timed over every test sequence of a SynthGait dataset (one sequence per
forward, eval mode, no_grad, the sequences already decoded and transformed in memory: its test loop without
the loading, the gathering and the evaluation). Against it, a whole `gaitrec test` in a fresh interpreter, from
start-up to the printed table (imports, listing, model build and preparation, reading every sequence,
embedding, evaluation, ``features.npz`` and the report), with the shipped config and only the data location
set. The two alternate so that load drifts hit both; medians are quoted. Embeddings of the two are compared
(max relative difference) as a check that the same network ran.

OpenGait imports packages that are not needed to build these five models (torchvision, einops, and its model
registries import every model); a throwaway ``sys.modules`` shim in this process stands in for them. OpenGait's
forwards run with torch's default thread count, as its test loop gets; `gaitrec test` chooses its own
(gaitrec/threads.py). Run it without OMP_NUM_THREADS / GAITREC_THREADS set.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

TITLE = "`gaitrec test` end to end against OpenGait's forwards (bench_vs_opengait.py)"
# OpenGait class name -> shipped config
MODELS = {
    "Baseline": "configs/baseline/baseline.yaml",
    "GaitSet": "configs/gaitset/gaitset.yaml",
    "GaitPart": "configs/gaitpart/gaitpart.yaml",
    "GLN": "configs/gln/gln_phase2.yaml",
    "GaitGL": "configs/gaitgl/gaitgl.yaml",
}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "GAITREC_THREADS", "MKL_NUM_THREADS")


def _rearrange(x, pattern: str, **axes):
    """The einops patterns OpenGait's seed models call, as permute/reshape."""
    if pattern == "n s c h w -> n c s h w":
        return x.permute(0, 2, 1, 3, 4)
    if pattern == "n c s h w -> (n s) c h w":
        n, c, s, h, w = x.shape
        return x.permute(0, 2, 1, 3, 4).reshape(n * s, c, h, w)
    if pattern == "n c p -> n (c p)":
        return x.reshape(x.shape[0], -1)
    if pattern == "n (c p) -> n c p":
        return x.reshape(x.shape[0], -1, axes["p"])
    raise NotImplementedError(f"einops pattern {pattern!r} is not in this benchmark's shim")


def install_opengait(checkout: Path) -> None:
    """Make OpenGait's model modules importable here: stand-ins for the packages they import only incidentally,
    and empty model/backbone registries (their ``__init__`` imports every model of the zoo)."""
    package_root = checkout / "opengait"

    def stub(name: str, **attrs) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
        return module

    class Unavailable:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("not available in this benchmark's shim")

    stub("einops", rearrange=_rearrange)
    torchvision = stub("torchvision")
    torchvision.ops = stub("torchvision.ops", RoIAlign=Unavailable)
    torchvision.utils = stub("torchvision.utils", make_grid=Unavailable)
    torchvision.transforms = stub("torchvision.transforms")
    sys.path.insert(0, str(package_root))
    for name in ("modeling.models", "modeling.backbones"):
        stub(name).__path__ = [str(package_root / name.replace(".", "/"))]
    import modeling

    modeling.models = sys.modules["modeling.models"]
    modeling.backbones = sys.modules["modeling.backbones"]
    modeling.backbones.Plain = importlib.import_module("modeling.backbones.plain").Plain


def opengait_model(name: str, cfg: dict):
    """OpenGait's model class ``name`` with only its network built (``build_network``), without the rest of
    its BaseModel constructor (data loaders, optimiser, CUDA)."""
    import torch

    cls = getattr(importlib.import_module(f"modeling.models.{name.lower()}"), name)
    model = cls.__new__(cls)
    torch.nn.Module.__init__(model)
    model.cfgs = cfg  # GaitGL reads the dataset name from it
    model.build_network(cfg["model_cfg"])
    return model.eval()


def test_inputs(cfg: dict) -> tuple[list, list]:
    """Every test sequence as OpenGait's test loop feeds it (float [1, s, h, w] after the evaluator's
    transform), in test-set order, with the dataset listing."""
    from gaitrec.data.dataset import build_datasets
    from gaitrec.data.sampler import SequenceCollator, SequenceReader

    _, test_set = build_datasets(cfg["data_cfg"], train=False)
    reader = SequenceReader(test_set)
    collate = SequenceCollator(cfg["evaluator_cfg"]["sampler"], cfg["evaluator_cfg"]["transform"])
    return [collate([reader[(0, i, i)]])["sils"] for i in range(len(test_set))], test_set


def time_opengait(model, inputs: list) -> tuple[float, "np.ndarray"]:
    import numpy as np
    import torch

    outputs = []
    start = time.perf_counter()
    with torch.no_grad():
        for sils in inputs:
            lengths = torch.tensor([[sils.shape[1]]], dtype=torch.int)
            out = model(([sils], torch.zeros(1, dtype=torch.long), None, None, lengths))
            outputs.append(out["inference_feat"]["embeddings"].numpy())
    return time.perf_counter() - start, np.concatenate(outputs)


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    env["PYTHONPATH"] = str(ROOT)
    return env


def time_gaitrec_test(config: str, checkpoint: Path, data: Path, output: Path) -> float:
    """Seconds of a whole `gaitrec test` in a fresh interpreter, to its printed table."""
    command = [sys.executable, "-m", "gaitrec", "test", str(ROOT / config), "--checkpoint", str(checkpoint),
               "--set", f"data_cfg.dataset_root={data}", "--set", f"data_cfg.dataset_partition={data / 'partition.json'}",
               "--output", str(output), "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(command, env=clean_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"gaitrec test failed:\n{done.stderr}")
    return seconds


STARTUP_PROBE = """
import json, sys, time
t0 = time.perf_counter()
import torch
from gaitrec.threads import apply_thread_count
threads = apply_thread_count()
from gaitrec.config import load_config
from gaitrec.data.dataset import build_datasets
from gaitrec.engine.inference import load_trained_model
t1 = time.perf_counter()
cfg = load_config(sys.argv[1], sys.argv[3:], training=False)  # as gaitrec test loads it
_, test_set = build_datasets(cfg["data_cfg"], train=False)
t2 = time.perf_counter()
load_trained_model(cfg, sys.argv[2], torch.device("cpu"))
t3 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "listing": t2 - t1, "model": t3 - t2, "threads": threads}))
"""


def startup(config: str, checkpoint: Path, data: Path) -> dict:
    """`gaitrec --help`, then in a fresh interpreter: imports, config + dataset listing, model build and load."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gaitrec", "--help"], env=clean_env(), check=True, capture_output=True)
    help_seconds = time.perf_counter() - start
    done = subprocess.run([sys.executable, "-c", STARTUP_PROBE, str(ROOT / config), str(checkpoint),
                           f"data_cfg.dataset_root={data}", f"data_cfg.dataset_partition={data / 'partition.json'}"],
                          env=clean_env(), check=True, capture_output=True, text=True)
    return {"help": help_seconds, **json.loads(done.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opengait", required=True, help="OpenGait checkout (holding opengait/modeling)")
    parser.add_argument("--subjects", type=int, default=8, help="SynthGait subjects (the last 3/8 are tested)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, from " + ", ".join(MODELS))
    parser.add_argument("--views", default="000,054,090,126,180",
                        help="SynthGait views to generate (fewer: a shorter run; default: %(default)s)")
    parser.add_argument("--data", help="SynthGait directory to reuse or create (default: a temporary one)")
    parser.add_argument("--opengait-threads", type=int, default=0,
                        help="intra-op threads for OpenGait's forwards (default: torch's own choice, as its loop "
                             "gets); 1 compares the two at one thread each, without oversubscription")
    parser.add_argument("--settle", type=float, default=0,
                        help="before each `gaitrec test`, wait up to this many seconds for the 1-minute load "
                             "average to fall below 0.5: it still counts OpenGait's forwards just run, and gaitrec "
                             "sizes its threads by it (default: no wait)")
    parser.add_argument("--label", default="", help="words for the section title, e.g. 'busy machine'")
    parser.add_argument("--write", action="store_true", help="write the section into benchmarks/RESULTS.md")
    args = parser.parse_args()
    checkout = Path(args.opengait)
    if not (checkout / "opengait" / "modeling" / "models" / "baseline.py").is_file():
        sys.exit(f"{checkout}: no OpenGait checkout here (expected opengait/modeling/models/baseline.py); "
                 "clone https://github.com/ShiqiYu/OpenGait and pass its folder with --opengait")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        sys.exit(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    leaked = [k for k in THREAD_VARIABLES if os.environ.get(k)]
    if leaked:
        print(f"note: {', '.join(leaked)} set; OpenGait's side follows it, `gaitrec test` runs without it", flush=True)

    import numpy as np
    import torch

    install_opengait(checkout)
    if args.opengait_threads:
        torch.set_num_threads(args.opengait_threads)
    from gaitrec.config import load_config
    from gaitrec.engine.checkpoint import save_checkpoint
    from gaitrec.models import create_model
    from gaitrec.synth import generate_dataset

    tmp = Path(tempfile.mkdtemp(prefix="bench-vs-opengait-"))
    data = Path(args.data) if args.data else tmp / "synthgait"
    views = [v.strip() for v in args.views.split(",") if v.strip()]
    generate_dataset(data, subjects=args.subjects, frames=30, size=64, views=views, progress=False)
    loads = [os.getloadavg()[0]]
    rows = []
    for name in names:
        config = MODELS[name]
        overrides = [f"data_cfg.dataset_root={data}", f"data_cfg.dataset_partition={data / 'partition.json'}"]
        cfg = load_config(ROOT / config, overrides)
        torch.manual_seed(0)
        ours = create_model(cfg["model_cfg"])
        checkpoint = save_checkpoint(tmp / f"{name}.pt", {"model": ours.state_dict()})
        reference = opengait_model(name, cfg)
        reference.load_state_dict(ours.state_dict(), strict=True)
        del ours
        inputs, test_set = test_inputs(cfg)
        frames = sum(x.shape[1] for x in inputs)
        times = {"opengait": [], "gaitrec": []}
        for repeat in range(args.repeats):
            seconds, reference_embeddings = time_opengait(reference, inputs)
            times["opengait"].append(seconds)
            loads.append(os.getloadavg()[0])
            output = tmp / f"{name}-{repeat}"
            settle_until = time.monotonic() + args.settle
            while os.getloadavg()[0] >= 0.5 and time.monotonic() < settle_until:
                time.sleep(2)
            times["gaitrec"].append(time_gaitrec_test(config, checkpoint, data, output))
            loads.append(os.getloadavg()[0])
        embeddings = np.load(output / "features.npz")["embeddings"]
        difference = float(np.abs(embeddings - reference_embeddings).max() / np.abs(reference_embeddings).max())
        start = startup(config, checkpoint, data)
        opengait_s, gaitrec_s = (statistics.median(times[k]) for k in ("opengait", "gaitrec"))
        rows.append((name, len(test_set), frames, opengait_s, gaitrec_s, opengait_s / gaitrec_s, difference, start))
        print(f"{name}: {len(test_set)} sequences ({frames} frames); OpenGait forwards {opengait_s:.2f} s "
              f"({frames / opengait_s:.0f} frames/s, {torch.get_num_threads()} threads), gaitrec test "
              f"{gaitrec_s:.2f} s: {opengait_s / gaitrec_s:.2f}x; max rel diff {difference:.1e}; start-up "
              f"{json.dumps({k: round(v, 2) for k, v in start.items()})}; load {loads[-1]:.2f}", flush=True)

    lines = [
        f"`python benchmarks/bench_vs_opengait.py {_command_line(args)}` ({args.repeats} alternating "
        "repetitions, medians): OpenGait at "
        f"{_opengait_commit(checkout)}, {os.cpu_count()} CPUs, torch {torch.__version__}. Load average (1 min) "
        f"{loads[0]:.2f} before, {max(loads):.2f} at most, {loads[-1]:.2f} after; the CPUs are shared with other "
        f"work, so the ratios within a row (measured alternately) are the figures to read. SynthGait "
        f"{args.subjects} subjects, views {','.join(views)} (the test subjects' {10 * len(views)} sequences each, "
        "about 30 frames of 64x64, cut to 64x44 by the evaluator's transform, also for GLN), random weights.", "",
        "| model | test sequences | frames | OpenGait forwards alone (s) | whole `gaitrec test` (s) | speed-up "
        "| max rel diff of embeddings | gaitrec threads |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *[f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.2f}x | {r[6]:.1e} | {r[7]['threads']} |"
          for r in rows], "",
        f"OpenGait forwards alone: its model class built from the same `model_cfg` with the same weights, one "
        f"sequence per forward in eval mode under no_grad, inputs already in memory, "
        f"{'torch.set_num_threads(%d)' % args.opengait_threads if args.opengait_threads else 'torch default'}: "
        f"{torch.get_num_threads()} threads. `gaitrec test`: `gaitrec test CONFIG --checkpoint CKPT --set "
        "data_cfg.dataset_root=... --set data_cfg.dataset_partition=... --quiet` in a fresh interpreter, start "
        "to exit. Speed-up: OpenGait's seconds over gaitrec's.", "",
        "Start-up, per model (fresh interpreter; model = build, load and `prepare_for_inference`):", "",
        "| model | `gaitrec --help` (s) | import torch + gaitrec (s) | config + dataset listing (s) | model (s) |",
        "|---|---:|---:|---:|---:|",
        *[f"| {r[0]} | {r[7]['help']:.2f} | {r[7]['imports']:.2f} | {r[7]['listing']:.2f} | {r[7]['model']:.2f} |"
          for r in rows],
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        from results_md import write_section

        write_section(TITLE + (f", {args.label}" if args.label else ""), text)


def _command_line(args) -> str:
    """This run's options as typed, with the checkout and temporary folders as placeholders."""
    words = ["--opengait DIR", f"--subjects {args.subjects}", f"--repeats {args.repeats}", f"--views {args.views}"]
    if args.models != ",".join(MODELS):
        words.append(f"--models {args.models}")
    if args.opengait_threads:
        words.append(f"--opengait-threads {args.opengait_threads}")
    if args.settle:
        words.append(f"--settle {args.settle:g}")
    if args.label:
        words.append(f"--label '{args.label}'")
    return " ".join(words + (["--write"] if args.write else []))


def _opengait_commit(checkout: Path) -> str:
    """The checkout's commit where it is a git checkout, else its folder name."""
    done = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "a checkout without git metadata"


if __name__ == "__main__":
    main()
