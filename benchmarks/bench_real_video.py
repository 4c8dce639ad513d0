"""The video path on real footage: extraction and identification of real pedestrians.

    python benchmarks/bench_real_video.py VIDEO [--min-silhouettes 30] [--write]

The footage used for RESULTS.md is OpenCV's ``vtest.avi`` (768x576, 10 fps, 795 frames, pedestrians on a
campus square seen from above), shipped by Debian's ``opencv-doc`` package:

    apt-get download opencv-doc && dpkg-deb -x opencv-doc_*.deb /tmp/opencv-doc
    python benchmarks/bench_real_video.py /tmp/opencv-doc/usr/share/doc/opencv-doc/examples/data/vtest.avi --write

It has no identity labels, so identification is measured the way a user can check it by eye: every track
with at least ``--min-silhouettes`` silhouettes is split in two, its first half enrolled and its second half
identified against all first halves (rank-1; chance is one over the number of tracks). Three matchers side by
side: the shipped model, the mean-silhouette template, and the shipped architecture with random weights (the
median of three seeds). A model that carries gait must beat both.
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
from gaitrec.embed import Embedder  # noqa: E402
from gaitrec.evaluation.template import template_distances  # noqa: E402
from gaitrec.models import create_model  # noqa: E402
from gaitrec.threads import apply_thread_count  # noqa: E402
from gaitrec.video import extract_tracks  # noqa: E402
from gaitrec.video.source import open_source  # noqa: E402

TITLE = "Real footage (bench_real_video.py)"


def rank1(queries: np.ndarray, gallery: np.ndarray) -> float:
    """Rank-1 of embeddings ``[N, C, P]`` where query i belongs with gallery i (Euclidean, mean over parts)."""
    distances = np.sqrt(((queries[:, None] - gallery[None]) ** 2).sum(2)).mean(-1)
    return float(np.mean(distances.argmin(1) == np.arange(len(queries))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("video")
    parser.add_argument("--min-silhouettes", type=int, default=30)
    parser.add_argument("--write", action="store_true", help="record the figures in benchmarks/RESULTS.md")
    args = parser.parse_args()
    apply_thread_count()

    source = open_source(args.video)
    height, width = source.size
    started = time.perf_counter()
    tracks = extract_tracks(source, progress=False)
    seconds = time.perf_counter() - started
    frames = source.frame_count or 0
    lengths = [len(t.aligned) for t in tracks]
    kept = [t.silhouettes for t in tracks if len(t.aligned) >= args.min_silhouettes]
    enrol, query = [s[: len(s) // 2] for s in kept], [s[len(s) // 2:] for s in kept]

    embedder = Embedder.default()
    model = rank1(embedder.embed_batch(query), embedder.embed_batch(enrol))
    template = template_distances(query, enrol)
    template = float(np.mean(template.argmin(1) == np.arange(len(kept))))
    random = []
    for seed in range(3):
        torch.manual_seed(seed)
        embedder.model.load_state_dict(create_model(embedder.cfg["model_cfg"]).state_dict())
        embedder.model.eval()
        random.append(rank1(embedder.embed_batch(query), embedder.embed_batch(enrol)))

    body = f"""\
`python benchmarks/bench_real_video.py vtest.avi --write` on OpenCV's `vtest.avi` ({width}x{height}, {source.fps:g} fps,
{frames} frames; Debian's `opencv-doc`), torch {torch.__version__}, {torch.get_num_threads()} thread(s).

- Extraction: {len(tracks)} tracks ({frames / seconds:.0f} frames/s, {frames / seconds / source.fps:.1f}x real time);
  silhouettes per track: median {statistics.median(lengths) if lengths else 0:.0f}, {len(kept)} tracks with at least
  {args.min_silhouettes}.
- Identification, first half of each track enrolled, second half identified among {len(kept)} tracks (chance
  {100 / max(len(kept), 1):.1f}%): shipped model {100 * model:.1f}%, mean-silhouette template {100 * template:.1f}%,
  the same network with random weights {100 * statistics.median(random):.1f}% (seeds 0-2: {', '.join(f'{100 * r:.1f}' for r in random)}).
"""
    print(body)
    if args.write:
        write_section(TITLE, body)


if __name__ == "__main__":
    main()
