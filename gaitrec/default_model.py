"""The model that ships with gaitrec, and the one command that rebuilds it.

``gaitrec/weights/default.pt`` holds the weights of ``configs/default_model.yaml`` (a slim Baseline on
64x44 silhouettes) trained on SynthGait by this module; ``enroll``, ``identify`` and ``watch`` use it
when no ``--checkpoint`` is given. Nothing is downloaded: the data is generated, the training runs here.

    python -m gaitrec.default_model            # about 15-30 min on 2 CPU cores
"""
from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import torch

from .config import CONFIG_DIR, load_config
from .files import atomic_write_bytes

CONFIG = CONFIG_DIR / "default_model.yaml"
WEIGHTS = Path(__file__).resolve().parent / "weights" / "default.pt"
# SynthGait at the 64x64 size `gaitrec extract` writes; another seed than the demo's.
TRAINING_DATA = {"subjects": 100, "frames": 30, "size": 64, "seed": 1}
FRAME_SIZE = (TRAINING_DATA["size"], TRAINING_DATA["size"])  # pretreated frames it takes, before the evaluator's cut


def installed_files() -> tuple[Path, Path]:
    """``(CONFIG, WEIGHTS)``, refused in one line when the package was installed without them."""
    for path in (CONFIG, WEIGHTS):
        if not path.is_file():
            raise FileNotFoundError(f"the default model is not installed ({path} is missing); "
                                    "pass --config and --checkpoint of a trained model")
    return CONFIG, WEIGHTS


def build(output: str | Path = WEIGHTS, data: str | Path | None = None, work: str | Path | None = None,
          progress: bool = True) -> dict:
    """Generate the training data, train ``CONFIG`` and write the shipped weights file to ``output``
    (model weights, the config and the iteration only: no optimizer state). Returns the test result."""
    from .demo import cache_dir, next_free_dir
    from .engine.checkpoint import checkpoint_path, load_checkpoint
    from .engine.distributed import init
    from .engine.inference import load_trained_model, run_test
    from .engine.trainer import train
    from .evaluation.report import print_table
    from .synth import generate_dataset
    from .synth.dataset import FORMAT_VERSION

    started = time.perf_counter()
    data_dir = Path(data) if data else cache_dir() / (
        f"synthgait-v{FORMAT_VERSION}-" + "{subjects}s-{frames}f-{size}px-seed{seed}".format(**TRAINING_DATA))
    work_dir = Path(work) if work else next_free_dir(cache_dir() / "default-model")
    generate_dataset(data_dir, progress=progress, **TRAINING_DATA)
    overrides = [f"data_cfg.dataset_root={data_dir}", f"data_cfg.dataset_partition={data_dir / 'partition.json'}",
                 f"trainer_cfg.output_root={work_dir / 'runs'}"]
    cfg = load_config(CONFIG, overrides)
    trained = train(cfg, progress=progress, test_at_end=False)
    checkpoint = checkpoint_path(trained["run_dir"], cfg["trainer_cfg"]["save_name"], trained["iteration"])

    ctx = init()
    result = run_test(cfg, load_trained_model(cfg, checkpoint, ctx.device), ctx, work_dir / "test", progress=progress)
    print(print_table(result))
    state = load_checkpoint(checkpoint)
    shipped = {"model": state["model"], "iteration": state["iteration"], "config": load_config(CONFIG)}
    buffer = io.BytesIO()
    torch.save(shipped, buffer)
    atomic_write_bytes(Path(output), buffer.getvalue())
    minutes = (time.perf_counter() - started) / 60
    print(f"default model: {output} ({len(buffer.getvalue()) / 1e6:.1f} MB), built in {minutes:.1f} min")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gaitrec.default_model",
                                     description="Rebuild the default model shipped with gaitrec.")
    parser.add_argument("--output", default=str(WEIGHTS), help="weights file to write (default: %(default)s)")
    parser.add_argument("--data", help="SynthGait directory (default: generated into ~/.cache/gaitrec)")
    parser.add_argument("--work", help="directory for the training run (default: a new one in ~/.cache/gaitrec)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    build(args.output, args.data, args.work, progress=not args.quiet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
