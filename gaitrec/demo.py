"""``gaitrec demo``: SynthGait -> a short training run of a zoo model -> test -> the CASIA-B table.

Everything is sized for a 2-core laptop CPU: 32x32 silhouettes and a slim Baseline.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from .errors import ConfigError
from .config import CONFIG_DIR, load_config

DEMO_CONFIG = CONFIG_DIR / "demo" / "baseline_synthgait.yaml"
DEMO_DATA = {"subjects": 40, "frames": 30, "size": 32, "seed": 0}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gaitrec"


def next_free_dir(parent: Path, prefix: str = "run-") -> Path:
    """``parent/run-N`` with the first N not yet taken: a demo never writes over an earlier one."""
    n = 1
    while (parent / f"{prefix}{n}").exists():
        n += 1
    return parent / f"{prefix}{n}"


def run_demo(output: str | None = None, data: str | None = None, iterations: int | None = None,
             progress: bool = True) -> dict:
    from .engine.distributed import init
    from .engine.checkpoint import checkpoint_path
    from .engine.inference import load_trained_model, run_test
    from .engine.trainer import train
    from .evaluation.report import print_table
    from .synth import generate_dataset
    from .synth.dataset import FORMAT_VERSION
    from .threads import apply_thread_count

    apply_thread_count()

    if iterations is not None and iterations < 1:
        raise ConfigError(f"--iterations must be at least 1, got {iterations}")
    started = time.perf_counter()
    data_dir = Path(data) if data else cache_dir() / (
        f"synthgait-v{FORMAT_VERSION}-" + "{subjects}s-{frames}f-{size}px-seed{seed}".format(**DEMO_DATA))
    out_dir = Path(output) if output else next_free_dir(Path("demo-output"))
    if (out_dir / "results.json").exists():
        raise FileExistsError(f"{out_dir} already holds demo results; choose another --output")

    print(f"SynthGait dataset: {data_dir}")
    generate_dataset(data_dir, progress=progress, **DEMO_DATA)
    overrides = [f"data_cfg.dataset_root={data_dir}", f"data_cfg.dataset_partition={data_dir / 'partition.json'}",
                 f"trainer_cfg.output_root={out_dir / 'runs'}"]
    if iterations is not None:
        overrides.append(f"trainer_cfg.total_iter={iterations}")
    cfg = load_config(DEMO_CONFIG, overrides)
    trained = train(cfg, progress=progress, test_at_end=False)
    # Reload the final checkpoint: what the demo tests is exactly what a user would load.
    ctx = init()
    checkpoint = checkpoint_path(trained["run_dir"], cfg["trainer_cfg"]["save_name"], trained["iteration"])
    result = run_test(cfg, load_trained_model(cfg, checkpoint, ctx.device), ctx, out_dir, progress=progress,
                      checkpoint=checkpoint)
    print(print_table(result))
    minutes = (time.perf_counter() - started) / 60
    print(f"demo finished in {minutes:.1f} min; results, features and heatmaps: {out_dir}")
    return result

