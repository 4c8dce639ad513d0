"""Does unlabelled adaptation (``gaitrec adapt``) help? Before vs after, never measured on the adapted tracks.

    python benchmarks/bench_adapt.py [--iterations 300] [--video vtest.avi] [--write]

- ``heldout``: SynthGait's held-out domain. Adaptation footage: the people of one seed (ADAPT_SEED), three
  walks each, placed on the timeline of one simulated camera (a person's walks never overlap in time, several
  people are visible at once) and written as ``gaitrec extract`` writes a video's tracks: no identity
  labels, only tracks and their frames. Evaluation: other people (bench_transfer.py's HELDOUT_SEED), two ways:
  two walks under independent conditions (the first enrolled, the second identified among all), and the
  split-track protocol of the real video (first half of a walk enrolled, second half identified).
- ``vtest``: OpenCV's ``vtest.avi`` cut at frame SPLIT. Fold 1 adapts on the tracks that end before it and
  evaluates the split-track protocol on the tracks that start after it; fold 2 the other way round. Tracks
  spanning the cut are used by neither. The pedestrians have no labels, so someone may appear in both parts.

Beside each: the mean-silhouette template and the same network with random weights (median of three
seeds), as in bench_transfer.py. Nothing here is tuned on the evaluation tracks: the adaptation settings are
``gaitrec adapt``'s defaults.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_transfer import HELDOUT_SEED, VTEST, embedding_distances, measure, score  # noqa: E402
from results_md import write_section  # noqa: E402
from gaitrec.adapt import ITERATIONS, FootageTrack, adapt, base_model, pseudo_identity_loss, read_extraction  # noqa: E402
from gaitrec.data.pickle_io import save_array  # noqa: E402
from gaitrec.default_model import CONFIG, WEIGHTS  # noqa: E402
from gaitrec.embed import Embedder  # noqa: E402
from gaitrec.engine.checkpoint import save_checkpoint  # noqa: E402
from gaitrec.synth.domain import render_track  # noqa: E402
from gaitrec.threads import apply_thread_count  # noqa: E402

TITLE = "Unlabelled adaptation (bench_adapt.py)"
ADAPT_SEED = 3000  # the people adapted on; evaluation uses HELDOUT_SEED's people
WALKS = 3
CONCURRENT = 5  # people visible at once, on average, on the simulated camera
SPLIT = 400  # vtest frame that separates the two parts
MIN_SILHOUETTES = 30  # tracks evaluated on vtest, as in bench_real_video.py


def simulated_extraction(output: Path, subjects: int, seed: int = ADAPT_SEED) -> dict:
    """Held-out-domain walks of ``subjects`` people written as one video's extraction (``tracks.json`` + a
    ``.pkl`` per track). Walks get random start frames on a timeline long enough for about CONCURRENT people
    at once; a person's walks never overlap (one person is in one place). Returns counts for the record."""
    rng = np.random.default_rng([seed, 7])
    walks = [(person, walk, render_track("heldout", seed, person, walk)) for person in range(subjects)
             for walk in range(WALKS)]
    walks = [w for w in walks if len(w[2])]
    timeline = int(sum(len(frames) for _, _, frames in walks) / CONCURRENT)
    busy: dict[int, list[tuple[int, int]]] = {}
    records = []
    for number, (person, _, frames) in enumerate(walks, start=1):
        while True:
            first = int(rng.integers(0, timeline))
            last = first + len(frames) - 1
            if all(last < a or first > b for a, b in busy.get(person, [])):
                break
        busy.setdefault(person, []).append((first, last))
        name = f"{number:04d}"
        save_array(output / name / "video" / "000" / f"{name}.pkl", frames)
        records.append({"id": name, "first_frame": first, "last_frame": last, "num_frames": len(frames), "boxes": []})
    (output / "tracks.json").write_text(json.dumps({"video": "simulated", "fps": 10.0, "frames": timeline + 60,
                                                    "tracks": records}))
    same_person_pairs = sum(len(v) * (len(v) - 1) // 2 for v in busy.values())
    return {"people": len(busy), "tracks": len(records), "timeline": timeline, "same_person_pairs": same_person_pairs}


def adapted_embedder(cfg: dict, weights: dict, tracks, iterations: int, work: Path, name: str,
                     frame_size, evaluated) -> tuple[Embedder, str]:
    """Adapt, write the checkpoint as ``gaitrec adapt`` does, and load it as enroll/identify load it; with a
    note of the adaptation and of the pseudo-identity loss on the ``evaluated`` tracks before and after (the
    objective itself, measured on tracks it never saw)."""
    started = time.perf_counter()
    state = adapt(cfg, weights, tracks, iterations=iterations, frame_size=frame_size, progress=False)
    seconds = time.perf_counter() - started
    path = save_checkpoint(work / f"{name}.pt", state)
    done = state["adaptation"]
    note = (f"{done['tracks']} tracks, {done['co_occurring_pairs']} co-occurring pairs; training loss "
            f"{done['loss_start']:.3f} -> {done['loss_end']:.3f} (first and last 20 batches), {seconds:.0f} s; "
            f"pseudo-identity loss on the evaluation tracks {pseudo_identity_loss(cfg, weights, evaluated):.3f} -> "
            f"{pseudo_identity_loss(cfg, state, evaluated):.3f}")
    return Embedder.from_files(CONFIG, path, frame_size=frame_size), note


def scores(embedder: Embedder, gallery: list[np.ndarray], queries: list[np.ndarray]) -> tuple[float, float]:
    return score(embedding_distances(embedder, queries, gallery))


def halves(tracks: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return [t[: len(t) // 2] for t in tracks], [t[len(t) // 2:] for t in tracks]


def row(name: str, people: int, before: dict, after: tuple[float, float]) -> str:
    m, t, r = before["model"], before["template"], before["random"]
    return (f"| {name} | {people} | {100 / people:.1f} | {m[0]:.1f} / {m[1]:.1f} | **{after[0]:.1f} / {after[1]:.1f}** "
            f"| {t[0]:.1f} / {t[1]:.1f} | {r[0]:.1f} / {r[1]:.1f} |")


def run(iterations: int, subjects: int, adapt_subjects: int, video: str | None, work: Path) -> tuple[list[str], list[str]]:
    cfg, weights, frame_size = base_model()
    shipped = Embedder.from_files(CONFIG, WEIGHTS, frame_size=frame_size)
    rows, notes = [], []

    # (a) Synthetic: adapt on one set of people, evaluate on another.
    footage = work / "heldout-footage"
    made = simulated_extraction(footage, adapt_subjects)
    # The evaluation people's walks on a timeline of their own, only to measure the pseudo-identity loss.
    simulated_extraction(work / "heldout-evaluation", subjects, seed=HELDOUT_SEED)
    embedder, note = adapted_embedder(cfg, weights, read_extraction(footage), iterations, work, "heldout",
                                      frame_size, read_extraction(work / "heldout-evaluation"))
    notes.append(f"held-out: adaptation footage of {made['people']} people (seed {ADAPT_SEED}) on a "
                 f"{made['timeline']}-frame timeline, {made['same_person_pairs']} pairs of one person's walks (never "
                 f"forced apart); {note}")
    first = [render_track("heldout", HELDOUT_SEED, i, 0) for i in range(subjects)]
    second = [render_track("heldout", HELDOUT_SEED, i, 1) for i in range(subjects)]
    kept = [(a, b) for a, b in zip(first, second) if len(a) and len(b)]
    gallery, probe = [a for a, _ in kept], [b for _, b in kept]
    rows.append(row("SynthGait held-out, two walks (other people)", len(kept), measure(shipped, gallery, probe),
                    scores(embedder, gallery, probe)))
    enrol, query = halves([a for a, _ in kept])
    rows.append(row("SynthGait held-out, split walks (other people)", len(kept), measure(shipped, enrol, query),
                    scores(embedder, enrol, query)))

    # (b) Real: vtest.avi, two folds around frame SPLIT.
    if video:
        from gaitrec.video import extract_tracks

        tracks = [FootageTrack(t.silhouettes, t.first_frame, t.last_frame, video, f"track {t.id}")
                  for t in extract_tracks(video, progress=False)]
        early = [t for t in tracks if t.last_frame < SPLIT]
        late = [t for t in tracks if t.first_frame >= SPLIT]
        for fold, (adapt_on, evaluate_on) in enumerate(((early, late), (late, early)), start=1):
            embedder, note = adapted_embedder(cfg, weights, adapt_on, iterations, work, f"vtest{fold}", frame_size,
                                              evaluate_on)
            evaluated = [t.frames for t in evaluate_on if len(t.frames) >= MIN_SILHOUETTES]
            enrol, query = halves(evaluated)
            part = f"frames {'< ' if fold == 1 else '>= '}{SPLIT}"
            other = f"frames {'>= ' if fold == 1 else '< '}{SPLIT}"
            rows.append(row(f"vtest.avi fold {fold}: adapted on {part}, split tracks of {other}", len(evaluated),
                            measure(shipped, enrol, query), scores(embedder, enrol, query)))
            notes.append(f"vtest fold {fold}, adapted on {part}: {note}")
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=ITERATIONS, help="adaptation iterations (gaitrec adapt's default)")
    parser.add_argument("--subjects", type=int, default=100, help="people evaluated on the held-out domain")
    parser.add_argument("--adapt-subjects", type=int, default=100, help="people adapted on (held-out domain, other seed)")
    parser.add_argument("--video", default=VTEST, help="real footage ('' to skip)")
    parser.add_argument("--write", action="store_true", help="record the figures in benchmarks/RESULTS.md")
    args = parser.parse_args()
    threads = apply_thread_count()
    video = args.video if args.video and Path(args.video).is_file() else None
    if args.video and not video:
        print(f"{args.video} not found: real footage skipped (see bench_real_video.py for where it comes from)")
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-adapt-") as work:
        rows, notes = run(args.iterations, args.subjects, args.adapt_subjects, video, Path(work))
    minutes = (time.perf_counter() - started) / 60
    table = ["| evaluation (never adapted on) | people | chance % | shipped R1 / R5 % | adapted R1 / R5 % | template R1 / R5 % "
             "| random weights R1 / R5 % |", "|---|---|---|---|---|---|---|"] + rows
    body = (f"`python benchmarks/bench_adapt.py --iterations {args.iterations} --subjects {args.subjects} "
            f"--adapt-subjects {args.adapt_subjects}` ({minutes:.0f} min, torch {torch.__version__}, {threads} "
            f"thread(s); load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, "
            f"on {os.cpu_count()} CPUs shared with other jobs). Adaptation: `gaitrec adapt`'s defaults from the "
            "shipped model.\n\n" + "\n".join(table) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    print(body)
    if args.write:
        write_section(TITLE, body)


if __name__ == "__main__":
    main()
