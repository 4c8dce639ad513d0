"""`gaitrec test` speed with the default inference preparation against the plain model, and start-up time.

    python benchmarks/bench_inference.py [--subjects 12] [--repeats 3] [--write]

For each shipped config (reduced widths where the recipe is large) on SynthGait 64x64: a checkpoint of random
weights (speed does not depend on the values) is tested as `gaitrec test` does, embedding and evaluation,
twice per repetition: plain (the checkpoint's modules, no channels-last, one forward per batch) and prepared
(``prepare_for_inference``: batch norms folded, channels-last on the CPU for 2D models, then the forward plan
measured on the first batches). Variants alternate so load drifts hit both;
medians are quoted. Start-up: `gaitrec --help` in a fresh interpreter and `import gaitrec.cli` (must not
import torch), then the model load (torch import, config, checkpoint) and the dataset listing.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# name, config, overrides that shrink it (the same code paths at a fraction of the width)
MODELS = [
    ("Baseline (demo config)", "gaitrec/configs/demo/baseline_synthgait.yaml", []),
    ("GaitSet", "configs/gaitset/gaitset.yaml", []),
    ("GaitBase (widths / 4)", "configs/gaitbase/gaitbase_da_casiab.yaml",
     ["model_cfg.backbone_cfg.channels=[16,32,64,128]", "model_cfg.SeparateFCs.in_channels=128",
      "model_cfg.SeparateFCs.out_channels=64", "model_cfg.SeparateBNNecks.in_channels=64"]),
]

DEFAULT_SUBJECTS = 12  # SynthGait subjects of the recorded run


def startup_seconds() -> dict:
    """Fresh-interpreter times: `gaitrec --help`, and `import gaitrec.cli` with whether torch came along."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gaitrec", "--help"], env=env, check=True, capture_output=True)
        runs.append(time.perf_counter() - start)
    probe = ("import sys, time; t = time.perf_counter(); import gaitrec.cli; "
             "print(time.perf_counter() - t, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True)
    seconds, torch_loaded = out.stdout.split()
    return {"help": statistics.median(runs), "import_cli": float(seconds), "torch": torch_loaded == "True"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=DEFAULT_SUBJECTS,
                        help="SynthGait subjects (half of them are tested)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", help="SynthGait directory to reuse or create (default: a temporary one)")
    parser.add_argument("--write", action="store_true", help="write the section into benchmarks/RESULTS.md")
    args = parser.parse_args()
    startup = startup_seconds()
    load_before = os.getloadavg()[0]

    start = time.perf_counter()
    import torch  # noqa: E402

    from gaitrec.config import load_config
    from gaitrec.data.dataset import build_datasets
    from gaitrec.engine.checkpoint import save_checkpoint
    from gaitrec.engine.distributed import DistContext
    from gaitrec.engine.inference import load_trained_model, run_test
    from gaitrec.models import create_model
    from gaitrec.synth import generate_dataset
    torch_import = time.perf_counter() - start

    tmp = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    data = Path(args.data) if args.data else tmp / "synthgait"
    generate_dataset(data, subjects=args.subjects, frames=30, size=64, progress=False)
    ctx = DistContext(0, 1, 0, torch.device("cpu"))
    rows, peak_load = [], load_before
    for name, config, shrink in MODELS:
        overrides = [f"data_cfg.dataset_root={data}", f"data_cfg.dataset_partition={data / 'partition.json'}",
                     "data_cfg.dataset_name=SynthGait", "data_cfg.test_dataset_name=CASIA-B",
                     "data_cfg.num_workers=0", "trainer_cfg.channels_last=false", *shrink]
        cfg = load_config(ROOT / config, overrides)
        torch.manual_seed(0)
        checkpoint = save_checkpoint(tmp / f"{len(rows)}.pt", {"model": create_model(cfg["model_cfg"]).state_dict()})
        start = time.perf_counter()
        _, test_set = build_datasets(cfg["data_cfg"], train=False)
        listing = time.perf_counter() - start
        times = {"plain": [], "prepared": []}
        loads = {}
        embeddings = {}
        for repeat in range(args.repeats):
            for variant in ("plain", "prepared"):
                start = time.perf_counter()
                model = load_trained_model(cfg, checkpoint, ctx.device, prepare=variant == "prepared")
                loads[variant] = time.perf_counter() - start
                out = tmp / f"{len(rows)}-{variant}-{repeat}"
                start = time.perf_counter()
                result = run_test(cfg, model, ctx, out, progress=False, test_set=test_set,
                                  tune=variant == "prepared")
                times[variant].append(time.perf_counter() - start)
                import numpy as np
                embeddings[variant] = np.load(out / "features.npz")["embeddings"]
                peak_load = max(peak_load, os.getloadavg()[0])
        plain, prepared = embeddings["plain"], embeddings["prepared"]
        rel = float(np.abs(prepared - plain).max() / np.abs(plain).max())
        median = {k: statistics.median(v) for k, v in times.items()}
        rows.append((name, len(test_set), median["plain"], median["prepared"], median["plain"] / median["prepared"],
                     rel, loads["prepared"], listing, result["results"]))
        print(f"{name}: {len(test_set)} sequences, plain {median['plain']:.2f} s, prepared {median['prepared']:.2f} s "
              f"({median['plain'] / median['prepared']:.2f}x), max rel diff {rel:.1e}, model load "
              f"{loads['prepared']:.2f} s, dataset listing {listing:.3f} s", flush=True)

    lines = [
        f"`python benchmarks/bench_inference.py --write` ({args.repeats} repetitions, medians). {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads). Load average (1 min) {load_before:.2f} before, "
        f"{peak_load:.2f} at most during the run, on 2 CPUs shared with other jobs: ratios within the run are the "
        f"reliable figures. SynthGait {args.subjects} subjects, 30 frames of 64x64 (cut to 64x44), random weights.", "",
        "| model | test sequences | plain `gaitrec test` (s) | prepared (s) | prepared vs plain | max rel diff of "
        "embeddings | model load (s) | dataset listing (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *[f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f}x | {r[5]:.1e} | {r[6]:.2f} | {r[7]:.3f} |"
          for r in rows], "",
        "Plain: the checkpoint's modules in NCHW. Prepared: `prepare_for_inference` (what `load_trained_model` "
        "does by default): batch norms folded into their convolutions, channels-last on the CPU for models of 2D "
        "convolutions. `gaitrec test` time is embedding plus evaluation plus writing the features and report.", "",
        f"Start-up: `gaitrec --help` {startup['help']:.2f} s in a fresh interpreter (median of 3); `import gaitrec.cli` "
        f"{startup['import_cli'] * 1000:.0f} ms, torch imported: {'yes' if startup['torch'] else 'no'}; importing "
        f"torch and gaitrec's engine {torch_import:.1f} s.",
    ]
    print("\n".join(lines))
    if args.write:
        from results_md import write_section

        # Another size (gaitrec bench --quick: 4 subjects) has a section of its own: it must not replace these.
        size = "" if args.subjects == DEFAULT_SUBJECTS else f", {args.subjects} subjects"
        write_section(f"Inference preparation and start-up (bench_inference.py){size}", "\n".join(lines))


if __name__ == "__main__":
    main()
