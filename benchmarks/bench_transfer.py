"""Does a checkpoint recognise people outside its training domain? Held-out SynthGait and real footage.

    python benchmarks/bench_transfer.py [--checkpoint W.pt --config C.yaml] [--video vtest.avi] [--write]

Two measurements, each with the mean-silhouette template (body shape only) and the same network with
random weights (median of three seeds) beside the checkpoint; a model that carries gait must beat both.

- ``heldout``: SynthGait's held-out domain (``gaitrec.synth.domain``: another camera model, body settings and
  noise model than any training domain), two tracks per person under independent conditions, the first
  enrolled, the second identified among all people. Never train or tune on it.
- ``street``: the training domain's conditions with subjects of another seed (in-domain reference).
- ``vtest``: OpenCV's ``vtest.avi`` (see bench_real_video.py for where it comes from), every track with at
  least 30 silhouettes split in two, first half enrolled, second half identified. 22 tracks: one track is
  4.5 points, so differences of one or two tracks are noise.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from results_md import write_section  # noqa: E402
from gaitrec.default_model import CONFIG, FRAME_SIZE, WEIGHTS  # noqa: E402
from gaitrec.embed import Embedder  # noqa: E402
from gaitrec.evaluation.template import template_distances  # noqa: E402
from gaitrec.models import create_model  # noqa: E402
from gaitrec.synth.domain import domain_pairs  # noqa: E402
from gaitrec.threads import apply_thread_count  # noqa: E402

TITLE = "Transfer: held-out SynthGait and real footage (bench_transfer.py)"
VTEST = "/tmp/ocvdoc/usr/share/doc/opencv-doc/examples/data/vtest.avi"
HELDOUT_SEED = 1000  # subjects of the held-out measurement; the street reference uses another seed than training
STREET_SEED = 2000


def ranks(distances: np.ndarray) -> np.ndarray:
    """Rank (0 = first) of the true match of each query i (gallery i) in distances ``[N, N]``."""
    return (distances < distances[np.arange(len(distances)), np.arange(len(distances))][:, None]).sum(1)


def embedding_distances(embedder: Embedder, queries: list[np.ndarray], gallery: list[np.ndarray]) -> np.ndarray:
    q, g = embedder.embed_batch(queries), embedder.embed_batch(gallery)
    return np.sqrt(((q[:, None] - g[None]) ** 2).sum(2)).mean(-1)


def score(distances: np.ndarray) -> tuple[float, float]:
    """Rank-1 and rank-5 in per cent."""
    r = ranks(distances)
    return 100 * float(np.mean(r == 0)), 100 * float(np.mean(r < 5))


def measure(embedder: Embedder, gallery: list[np.ndarray], queries: list[np.ndarray]) -> dict:
    """Rank-1/rank-5 of the checkpoint, the template and random weights (median rank-1 of seeds 0-2)."""
    trained = {k: v.clone() for k, v in embedder.model.state_dict().items()}
    model = score(embedding_distances(embedder, queries, gallery))
    template = score(template_distances(queries, gallery))
    random = []
    for seed in range(3):
        torch.manual_seed(seed)
        embedder.model.load_state_dict(create_model(embedder.cfg["model_cfg"]).state_dict())
        embedder.model.eval()
        random.append(score(embedding_distances(embedder, queries, gallery)))
    embedder.model.load_state_dict(trained)
    embedder.model.eval()
    random.sort()
    return {"n": len(queries), "model": model, "template": template, "random": random[1]}


def vtest_pairs(video: str, min_silhouettes: int = 30) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Split tracks of ``video``: (first halves, second halves) of tracks with enough silhouettes."""
    from gaitrec.video import extract_tracks
    from gaitrec.video.source import open_source
    kept = [t.silhouettes for t in extract_tracks(open_source(video), progress=False)
            if len(t.aligned) >= min_silhouettes]
    return [s[: len(s) // 2] for s in kept], [s[len(s) // 2:] for s in kept]


def line(name: str, result: dict) -> str:
    m, t, r = result["model"], result["template"], result["random"]
    return (f"| {name} | {result['n']} | {100 / result['n']:.1f} | {m[0]:.1f} / {m[1]:.1f} | {t[0]:.1f} / {t[1]:.1f} "
            f"| {r[0]:.1f} / {r[1]:.1f} |")


def run(checkpoint: Path, config: Path, video: str | None, subjects: int) -> tuple[dict, str]:
    embedder = Embedder.from_files(config, checkpoint, frame_size=FRAME_SIZE)
    results = {}
    started = time.perf_counter()
    for name, seed in (("heldout", HELDOUT_SEED), ("street", STREET_SEED)):
        gallery, probe = domain_pairs(name, subjects, seed)
        results[name] = measure(embedder, gallery, probe)
    if video:
        gallery, probe = vtest_pairs(video)
        results["vtest"] = measure(embedder, gallery, probe)
    table = ["| data | people | chance % | checkpoint R1 / R5 % | template R1 / R5 % | random weights R1 / R5 % |",
             "|---|---|---|---|---|---|"]
    labels = {"heldout": "SynthGait held-out domain (never trained on)", "street": "SynthGait street domain, unseen subjects",
              "vtest": "vtest.avi split tracks (real)"}
    table += [line(labels[k], v) for k, v in results.items()]
    body = "\n".join(table) + f"\n\n({time.perf_counter() - started:.0f} s, torch {torch.__version__}, " \
                              f"{torch.get_num_threads()} thread(s))\n"
    return results, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(WEIGHTS), help="weights to measure (default: the shipped model)")
    parser.add_argument("--config", default=str(CONFIG), help="its config (default: the shipped model's)")
    parser.add_argument("--video", default=VTEST, help="real footage for the split-track test ('' to skip)")
    parser.add_argument("--subjects", type=int, default=200, help="people in each synthetic measurement")
    parser.add_argument("--write", action="store_true", help="record the figures in benchmarks/RESULTS.md")
    args = parser.parse_args()
    apply_thread_count()
    video = args.video if args.video and Path(args.video).is_file() else None
    if args.video and not video:
        print(f"{args.video} not found: real footage skipped (see bench_real_video.py to extract it)")
    _, body = run(Path(args.checkpoint), Path(args.config), video, args.subjects)
    body = (f"`python benchmarks/bench_transfer.py --checkpoint {Path(args.checkpoint).name}`: rank-1 / rank-5, "
            "first track (or half-track) enrolled, second identified among all.\n\n" + body)
    print(body)
    if args.write:
        write_section(TITLE, body)


if __name__ == "__main__":
    main()
