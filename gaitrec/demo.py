"""``gaitrec demo``: SynthGait -> a short training run of a zoo model -> test -> the CASIA-B table; then the
video path with the shipped model: enrol people from clips, name them in a street video.

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
# The video part: SynthGait subjects of a seed the shipped model never trained on (it trained on seed 1),
# enrolled walking at 270 / 090 and seen again in the street from other directions.
VIDEO_SEED = 11
VIDEO_PEOPLE = ("ana", "ben", "chen", "dara", "eli", "femi")
STREET_VIEWS = (250, 110, 290, 70, 230, 130)


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
    print()
    run_video_demo(out_dir / "video", progress=progress)
    minutes = (time.perf_counter() - started) / 60
    print(f"demo finished in {minutes:.1f} min; results, features and heatmaps: {out_dir}")
    return result


def run_video_demo(out_dir: Path, progress: bool = True) -> dict:
    """The video path with the model shipped in the package: each of ``VIDEO_PEOPLE`` is enrolled from a clip
    of them walking alone, then everyone is named in a street clip where all of them walk again, in other
    directions, entering at different times and crossing each other. Writes the clips, the gallery, an
    annotated street video and ``results.json`` into ``out_dir``; returns the figures."""
    import json

    from .files import atomic_write_bytes
    from .embed import Embedder
    from .evaluation.template import template_distances
    from .gallery import Gallery
    from .recognise import enroll_sequences, identify_sequences, prepare_gallery, read_sources
    from .sources import SourceSequence
    from .synth.street import Walker, render_street, score_tracks
    from .video import extract_tracks
    from .video.source import write_video
    from .watch import watch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    embedder = Embedder.default()
    gallery_path = out_dir / "people.db"
    enrolled = []
    for k, name in enumerate(VIDEO_PEOPLE):
        clip = render_street([Walker(VIDEO_SEED, k, start=0, view=90 if k % 2 else 270, depth=7.0, walk_seed=1)],
                             frames=110, seed=100 + k)
        path = out_dir / f"enrol-{name}.avi"
        write_video(path, clip.frames, clip.fps)
        sequences = read_sources([path])
        enroll_sequences(gallery_path, name, sequences[:1], embedder)
        enrolled.append(sequences[0].frames)

    walkers = [Walker(VIDEO_SEED, k, start=14 * k, view=view, depth=6.0 + k % 3, walk_seed=2)
               for k, view in enumerate(STREET_VIEWS)]
    street = render_street(walkers, frames=220, seed=7)
    street_path = out_dir / "street.avi"
    write_video(street_path, street.frames, street.fps)
    extract_started = time.perf_counter()
    tracks = extract_tracks(street_path, progress=False)
    extract_seconds = time.perf_counter() - extract_started
    truth = [VIDEO_PEOPLE[w] if w >= 0 else "nobody" for w in score_tracks(tracks, street)["walker_of"]]
    queries = [SourceSequence(str(street_path), t.id, t.silhouettes) for t in tracks]
    with Gallery.open(gallery_path) as gallery:
        prepare_gallery(gallery, embedder)
        identify_started = time.perf_counter()
        results = identify_sequences(gallery, embedder, queries, top_k=3)
        identify_ms = 1000 * (time.perf_counter() - identify_started) / max(len(queries), 1)
        template = template_distances([q.frames for q in queries], enrolled).argmin(axis=1)
        watch(street_path, gallery, embedder, annotate=out_dir / "street-named.avi", announce=lambda _: None,
              progress=False)

    print(f"video: {len(VIDEO_PEOPLE)} people enrolled from clips of each walking alone, then a street clip where "
          "all of them walk again in other directions, crossing (shipped model; people it never saw)")
    print(f"{'track':>5}  {'frames':>6}  {'truly':<6}  {'named':<8}  {'nearest':<14}  template's nearest")
    rows = []
    for query, result, person, guess in zip(queries, results, truth, template):
        nearest = result.matches[0]
        rows.append({"track": query.track, "frames": len(query.frames), "truly": person, "named": result.decision,
                     "nearest": nearest.name, "distance": round(nearest.distance, 4),
                     "template": VIDEO_PEOPLE[guess]})
        print(f"{query.track:>5}  {len(query.frames):>6}  {person:<6}  {result.decision:<8}  "
              f"{nearest.name + f' {nearest.distance:.3f}':<14}  {VIDEO_PEOPLE[guess]}")
    right = sum(r["nearest"] == r["truly"] for r in rows)
    named_right = sum(r["named"] == r["truly"] for r in rows)
    named_wrong = sum(r["named"] not in (r["truly"], "unknown") for r in rows)
    template_right = sum(r["template"] == r["truly"] for r in rows)
    summary = {"people": len(VIDEO_PEOPLE), "tracks": len(rows), "rank1": right, "named_right": named_right,
               "named_wrong": named_wrong, "template_rank1": template_right,
               "extraction_fps": round(len(street.frames) / extract_seconds, 1),
               "identify_ms_per_track": round(identify_ms, 1), "seconds": round(time.perf_counter() - started, 1),
               "rows": rows}
    print(f"nearest name right for {right} of {len(rows)} tracks; mean-silhouette template {template_right} of "
          f"{len(rows)}; chance 1 in {len(VIDEO_PEOPLE)}. Named (within the "
          f"gallery's threshold): {named_right} right, {named_wrong} wrong, the rest unknown")
    print(f"extraction {summary['extraction_fps']:.0f} frames/s at 320x240, identification "
          f"{summary['identify_ms_per_track']:.0f} ms a track; clips, gallery and the annotated street-named.avi: "
          f"{out_dir}")
    atomic_write_bytes(out_dir / "results.json", (json.dumps(summary, indent=1) + "\n").encode())
    return summary

