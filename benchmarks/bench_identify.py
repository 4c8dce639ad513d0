"""Identification latency: one 30-frame sequence embedded and matched against a gallery, per model.

    python benchmarks/bench_identify.py [--people 100 --per-person 2 --frames 30 --repeats 20]
        [--device cpu|cuda] [--threads N] [--append benchmarks/RESULTS.md]

Per query: ``Embedder.embed`` (evaluator transform + model) and ``identify`` (distances to every enrolled
sequence, min per person, top-5, decision) on a gallery already open. One-off costs are reported apart:
loading the model (checkpoint + identity hash) and opening the gallery. Weights are random (the time does
not depend on their values); gallery embeddings are random vectors of the model's shape.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gaitrec.config import CONFIG_DIR, load_config  # noqa: E402
from gaitrec.embed import Embedder  # noqa: E402
from gaitrec.engine.checkpoint import save_checkpoint  # noqa: E402
from gaitrec.gallery import EnrolledSequence, Gallery, ModelRecord, enroll, identify  # noqa: E402
from gaitrec.models import create_model  # noqa: E402
from gaitrec.synth.dataset import render_views  # noqa: E402
from results_md import write_section  # noqa: E402

MODELS = {"slim Baseline (demo)": CONFIG_DIR / "demo" / "baseline_synthgait.yaml",
          "Baseline (CASIA-B)": CONFIG_DIR / "baseline" / "baseline.yaml"}


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--per-person", type=int, default=2)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--append", type=Path, default=None, help="add a section to this RESULTS.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    query = render_views(0, 0, "nm-01", ["090"], args.frames, 64)["090"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, config in MODELS.items():
            cfg = load_config(config)
            checkpoint = Path(tmp) / f"{config.stem}.pt"
            save_checkpoint(checkpoint, {"model": create_model(cfg["model_cfg"]).state_dict()})
            start = time.perf_counter()
            embedder = Embedder(cfg, checkpoint, args.device)
            load_s = time.perf_counter() - start
            shape = embedder.embed(query).shape
            rng = np.random.default_rng(0)
            path = Path(tmp) / f"{config.stem}.db"
            model = ModelRecord(embedder.identity, embedder.model_config, shape, query.shape[1:])
            for person in range(args.people):
                enroll(path, f"person-{person:04d}", [
                    EnrolledSequence("random", None, args.frames, rng.normal(size=shape).astype(np.float32))
                    for _ in range(args.per_person)], model)
            start = time.perf_counter()
            gallery = Gallery.open(path)
            open_s = time.perf_counter() - start
            with gallery:
                embedding = embedder.embed(query)[None]
                embed_ms = median_ms(lambda: embedder.embed(query), args.repeats)
                match_ms = median_ms(lambda: identify(gallery, embedding, top_k=5), args.repeats)
                total_ms = median_ms(lambda: identify(gallery, embedder.embed(query)[None], top_k=5), args.repeats)
            rows.append((label, shape, embed_ms, match_ms, total_ms, load_s, open_s))

    header = (f"One {args.frames}-frame 64x64 sequence per query; gallery of {args.people} people x {args.per_person} "
              f"sequences; device {args.device}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
              f"{platform.machine()}, {os.cpu_count()} CPUs; median of {args.repeats} after a warm-up")
    table = ["| model | embedding | embed (ms) | match (ms) | embed + match (ms) | load model (s) | open gallery (s) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for label, shape, embed_ms, match_ms, total_ms, load_s, open_s in rows:
        table.append(f"| {label} | [{shape[0]}, {shape[1]}] | {embed_ms:.1f} | {match_ms:.1f} | {total_ms:.1f} "
                     f"| {load_s:.2f} | {open_s:.3f} |")
    text = "\n".join([header, "", *table])
    print(text)
    if args.append:
        write_section("Identification latency (bench_identify.py)", text + (
            "\n\nMatch: reading the gallery's embeddings from SQLite (checked), distances, min per person, top-5 "
            "and the decision; it grows with the gallery, the embedding does not. On a machine shared with "
            "other jobs the timings vary by up to 3x between runs.\n"), args.append)


if __name__ == "__main__":
    main()
