"""SynthGait as real background subtraction sees people: surveillance cameras, short tracks, damaged masks.

SynthGait's default recordings imitate CASIA-B's studio (11 level cameras, 25 fps, a full-size walker).
Real footage differs in every respect a model can latch on to, so a model trained only on the studio
learns body shape and little of gait. A *domain* randomises what a street camera changes:

- camera: any walking direction (continuous azimuth), elevation from nearly level to steeply down, the
  walker approaching or receding (its size changes over the track), people 35-300 px tall before alignment;
- time: 10-25 fps (the 25 fps cycle subsampled), tracks of one to four seconds, varied speed and cadence;
- masks: SynthGait's defects (ragged outline, holes, lost limb chunks, floor shadows) plus cast shadows
  attached to the feet, a neighbour merged into the blob, partial occlusion by static objects, legs broken
  into fragments, growth/shrink of the outline, speckle, and blur at the camera's resolution;
- people: bags and coats (CASIA-B's conditions) on some walks.

Every track then goes through ``align_frame``, the alignment of ``gaitrec pretreat`` and ``gaitrec extract``,
and keeps its grey edges as ``extract`` does. Two domains are defined: ``street`` (to train on) and
``heldout`` (to measure transfer only): another camera model (elevation changing along the track as the
person passes a mounted camera, non-square pixels), other body settings (wider or slimmer builds, more
coats and bags, other subjects) and another noise model (a background subtractor's speckle and
morphology instead of SynthGait's outline noise). Never train or tune on ``heldout``.

    from gaitrec.synth.domain import render_track, generate_domain_dataset
    frames = render_track("street", seed=0, index=7, walk=0)   # uint8 [T, 64, 64]
    generate_domain_dataset("data/street", "street", subjects=2000, walks=4)
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..data.pickle_io import save_array
from ..files import atomic_write_bytes, building_directory
from ..data.pretreat import align_frame
from ..errors import ConfigError
from .body import FPS, TYPES, sample_subject, sample_walk
from .render import Placement, project, render_walk
from .walk import UP, BodyShape, body_shape

MARKER = "synthgait-domain.json"
TRAIN_FRACTION = 0.6


@dataclass(frozen=True)
class Domain:
    """The ranges one domain draws each track's conditions from (uniform unless said otherwise)."""

    name: str
    subject_stream: int                  # which subjects: streams never shared between domains
    elevation: tuple[float, float]       # degrees the camera looks down
    elevation_sweep: tuple[float, float]  # change of elevation from the first to the last frame
    pixel_aspect: tuple[float, float]    # width stretch of the camera's pixels
    body_pixels: tuple[float, float]     # standing height before alignment (log-uniform)
    growth: tuple[float, float]          # size at the end of the track over size at its start
    fps: tuple[float, ...]               # frame rates to choose from
    seconds: tuple[float, float]         # track duration
    speed: tuple[float, float]           # walking speed factor (split between cadence and stride)
    carried: float                       # probability of a bag or a coat on a walk
    girth: tuple[float, float]           # factor on limb radii (build)
    noise: str                           # "street" or "subtractor"


DOMAINS = {
    "street": Domain("street", 10, (3.0, 45.0), (0.0, 0.0), (1.0, 1.0), (35.0, 300.0), (0.7, 1.4),
                     (10.0, 12.5, 15.0, 25.0), (1.0, 4.0), (0.8, 1.25), 0.3, (1.0, 1.0), "street"),
    "heldout": Domain("heldout", 20, (20.0, 40.0), (-20.0, 20.0), (0.85, 1.15), (40.0, 200.0), (0.8, 1.25),
                      (10.0,), (2.0, 4.0), (0.85, 1.2), 0.5, (0.85, 1.2), "subtractor"),
}


def get_domain(name: str) -> Domain:
    """The domain called ``name`` (``street`` or ``heldout``)."""
    if name not in DOMAINS:
        raise ConfigError(f"unknown SynthGait domain {name!r}; choose from {', '.join(DOMAINS)}")
    return DOMAINS[name]


@dataclass(frozen=True)
class TrackConditions:
    """What one track drew (for tests and for reading results)."""

    azimuth: float
    elevation: float
    elevation_end: float
    pixel_aspect: float
    body_pixels: float
    growth: float
    fps: float
    frames: int
    speed: float
    walk_type: str
    girth: float


def draw_conditions(domain: Domain, rng: np.random.Generator) -> TrackConditions:
    """Draw one track's conditions from ``domain``."""
    low, high = np.log(domain.body_pixels)
    fps = float(rng.choice(domain.fps))
    elevation = float(rng.uniform(*domain.elevation))
    carried = rng.random() < domain.carried
    walk_type = str(rng.choice(["bg-01", "cl-01"])) if carried else "nm-01"
    return TrackConditions(
        azimuth=float(rng.uniform(0.0, 360.0)), elevation=elevation,
        elevation_end=float(np.clip(elevation + rng.uniform(*domain.elevation_sweep), 0.0, 70.0)),
        pixel_aspect=float(rng.uniform(*domain.pixel_aspect)), body_pixels=float(np.exp(rng.uniform(low, high))),
        growth=float(rng.uniform(*domain.growth)), fps=fps,
        frames=max(8, int(round(rng.uniform(*domain.seconds) * fps))), speed=float(rng.uniform(*domain.speed)),
        walk_type=walk_type, girth=float(rng.uniform(*domain.girth)))


def _take(shape: BodyShape, index: np.ndarray) -> BodyShape:
    return replace(shape, capsules=shape.capsules[index], hulls=[h[index] for h in shape.hulls],
                   pelvis=shape.pelvis[index], feet=shape.feet[index],
                   torso_axis=tuple(a[index] for a in shape.torso_axis))


def render_track(domain: str | Domain, seed: int, index: int, walk: int, size: int = 64,
                 conditions: TrackConditions | None = None) -> np.ndarray:
    """Aligned silhouettes uint8 ``[T, size, size]`` of walk ``walk`` of subject ``index`` in ``domain``,
    deterministic from ``(domain, seed, index, walk)``. Tracks whose every frame is lost come back empty."""
    domain = get_domain(domain) if isinstance(domain, str) else domain
    rng = np.random.default_rng([seed, domain.subject_stream + 1, index, walk])
    conditions = conditions or draw_conditions(domain, rng)
    subject = sample_subject(np.random.default_rng([seed, domain.subject_stream, index]))
    subject = replace(subject, **{name: getattr(subject, name) * conditions.girth for name in (
        "thigh_radius", "knee_radius", "ankle_radius", "upper_arm_radius", "forearm_radius", "waist_width",
        "chest_depth", "waist_depth")})
    gait = sample_walk(subject, conditions.walk_type if conditions.walk_type in TYPES else "nm-01", rng)
    speed = conditions.speed
    gait = replace(gait, subject=replace(gait.subject, cadence=gait.subject.cadence * speed ** 0.4,
                                         stride=gait.subject.stride * speed ** 0.6))
    # The cycle runs at 25 fps and is subsampled: a slow camera sees the same walk, fewer poses of it.
    step = FPS / conditions.fps
    full = int(np.ceil(conditions.frames * step)) + 1
    shape = _take(body_shape(gait, full), np.minimum(np.round(np.arange(conditions.frames) * step).astype(int), full - 1))
    frames = conditions.frames

    biggest = conditions.body_pixels * max(1.0, conditions.growth)
    canvas = (int(1.7 * biggest) + 8, int(1.9 * biggest * conditions.pixel_aspect) + 8)
    scale = conditions.body_pixels / subject.height * np.geomspace(1.0, conditions.growth, frames)
    origin = shape.pelvis * np.array([1.0, 1.0, 0.0])
    anchor = (canvas[1] / 2, 0.72 * canvas[0])
    view = f"{conditions.azimuth:.2f}"
    if conditions.elevation == conditions.elevation_end:
        images = render_walk(shape, view, Placement(scale, origin, anchor, canvas, conditions.elevation), rng,
                             artefacts=domain.noise == "street")
    else:  # the camera's elevation changes as the person passes: render in short runs of frames
        elevations = np.linspace(conditions.elevation, conditions.elevation_end, frames)
        images = np.concatenate([
            render_walk(_take(shape, np.arange(a, min(a + 3, frames))), view,
                        Placement(scale[a:a + 3], origin[a:a + 3], anchor, canvas, float(elevations[a])), rng,
                        artefacts=domain.noise == "street")
            for a in range(0, frames, 3)])
    placement = Placement(scale, origin, anchor, canvas, conditions.elevation)
    images = _cast_shadow(images, shape, view, placement, rng)
    images = _damage(images, conditions.body_pixels, rng) if domain.noise == "street" else \
        _subtractor_noise(images, conditions.body_pixels, rng)
    if conditions.pixel_aspect != 1.0:
        images = np.stack([cv2.resize(im, (int(canvas[1] * conditions.pixel_aspect), canvas[0]),
                                      interpolation=cv2.INTER_NEAREST) for im in images])
    kept = [aligned for aligned, _ in (align_frame(image, size) for image in images) if aligned is not None]
    return np.stack(kept) if kept else np.zeros((0, size, size), np.uint8)


def _cast_shadow(images: np.ndarray, shape: BodyShape, view: str, placement: Placement,
                 rng: np.random.Generator) -> np.ndarray:
    """A long shadow attached to the feet in half the tracks (low sun): the subtractor keeps it as body."""
    if rng.random() < 0.5:
        return images
    heading = rng.uniform(0, 2 * np.pi)
    length = rng.uniform(0.3, 1.3)
    along = np.array([np.cos(heading), np.sin(heading), 0.0])
    across = np.array([-along[1], along[0], 0.0])
    outline = np.array([-0.15 * across, 0.15 * across, length * along + 0.22 * across,
                        length * along - 0.22 * across])
    points = shape.feet[:, None] + outline[None] + 0.01 * UP
    polygons = np.round(project(points, view, placement) * 16).astype(np.int32)
    strength = rng.uniform(0.6, 1.0)  # part of the shadow falls under the subtractor's shadow test
    for image, polygon in zip(images, polygons):
        if rng.random() < strength:
            cv2.fillConvexPoly(image, polygon, 255, cv2.LINE_8, 4)
    return images


def _damage(images: np.ndarray, body_pixels: float, rng: np.random.Generator) -> np.ndarray:
    """What a street adds to SynthGait's own defects: merged neighbours, occluders, broken legs, outline
    growth or shrinkage, and the blur of a low-resolution camera."""
    frames, height, width = images.shape
    out = images.copy()
    unit = body_pixels / 10.0  # about a shoulder's width
    if rng.random() < 0.25:  # a neighbour walking alongside for a while merges into the blob
        first = int(rng.integers(0, frames))
        last = min(frames, first + int(rng.integers(2, max(3, frames))))
        shift = int(rng.choice([-1, 1]) * rng.uniform(1.5, 4.0) * unit)
        lag = int(rng.integers(1, max(2, frames)))
        for t in range(first, last):
            out[t] |= np.roll(images[(t + lag) % frames], shift, axis=1)
    if rng.random() < 0.25:  # a static occluder (post, bench, car) the walker passes behind
        vertical = rng.random() < 0.5
        if vertical:
            thickness = max(2, int(rng.uniform(0.3, 1.5) * unit))
            column = rng.uniform(0, width) + np.linspace(0, rng.uniform(-1, 1) * 4 * unit, frames)
            for t in range(frames):
                c = int(column[t])
                out[t, :, max(0, c): max(0, c + thickness)] = 0
        else:
            top = int(height * 0.72 - rng.uniform(0.5, 4.0) * unit)
            first = int(rng.integers(0, frames))
            out[first: first + int(rng.integers(2, max(3, frames))), max(0, top):] = 0
    if rng.random() < 0.3:  # legs broken into fragments: trousers close to the pavement's colour
        rows = np.flatnonzero(rng.random(height) < rng.uniform(0.05, 0.2))
        legs = rows[rows > height * 0.45]
        for t in np.flatnonzero(rng.random(frames) < 0.7):
            out[t, legs] = 0
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    grow = int(rng.integers(-1, 3)) if body_pixels > 80 else int(rng.integers(0, 2))
    for t in range(frames):
        image = out[t]
        if grow > 0:
            image = cv2.dilate(image, kernel, iterations=grow)
        elif grow < 0:
            image = cv2.erode(image, kernel, iterations=-grow)
        out[t] = image
    # Blur at the camera's resolution: small people lose their details before the alignment enlarges them.
    sigma = rng.uniform(0.3, 1.0) * max(1.0, body_pixels / 60.0)
    return np.stack([np.where(cv2.GaussianBlur(image, (0, 0), sigma) > 127, 255, 0).astype(np.uint8)
                     for image in out])


def _subtractor_noise(images: np.ndarray, body_pixels: float, rng: np.random.Generator) -> np.ndarray:
    """The held-out noise model: a background subtractor's output, speckled foreground and background,
    clothing that matches the ground (large holes from a smooth random field), then its morphology."""
    frames, height, width = images.shape
    field = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0),
                             max(1.0, body_pixels / 25.0))
    field /= field.std() + 1e-6
    camouflage = field > rng.uniform(1.0, 2.5)  # where the clothes look like the ground behind them
    size = max(3, int(body_pixels / 40) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    out = np.empty_like(images)
    for t in range(frames):
        image = images[t].copy()
        drift = int(rng.integers(-2, 3))
        image[np.roll(camouflage, drift, axis=1)] = 0
        speckle = rng.random((height, width)) < rng.uniform(0.002, 0.02)
        near = cv2.dilate(images[t], kernel, iterations=2) > 0
        image[speckle & near] = 255 - image[speckle & near]
        image = cv2.morphologyEx(image, cv2.MORPH_OPEN, kernel)
        image = cv2.morphologyEx(image, cv2.MORPH_CLOSE, kernel)
        out[t] = image
    return out


def domain_pairs(domain: str, subjects: int, seed: int = 0, size: int = 64, progress: bool = False
                 ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two tracks of each of ``subjects`` people in ``domain`` (independent conditions): the first to
    enrol, the second to identify, as the split-track protocol on real video. Subjects whose tracks lost
    every frame are skipped in both lists."""
    gallery, probe = [], []
    for index in tqdm(range(subjects), desc=f"SynthGait {domain}", unit="subject", disable=not progress):
        first, second = render_track(domain, seed, index, 0, size), render_track(domain, seed, index, 1, size)
        if len(first) and len(second):
            gallery.append(first)
            probe.append(second)
    return gallery, probe


def generate_domain_dataset(output: str | Path, domain: str = "street", subjects: int = 1000, walks: int = 4,
                            seed: int = 0, size: int = 64, progress: bool = True) -> dict:
    """Write ``walks`` tracks of each of ``subjects`` people in ``domain`` in OpenGait's pretreated layout
    ``<output>/<subject>/nm-<walk>/<azimuth>/<azimuth>.pkl`` with a ``partition.json`` (first 60% train)
    and a marker ``synthgait-domain.json`` recording the parameters; returns a summary. Reuses a dataset
    made with the same parameters and refuses any other non-empty directory."""
    get_domain(domain)
    for name, value, low in (("subjects", subjects, 2), ("walks", walks, 2), ("seed", seed, 0), ("size", size, 16)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"SynthGait domain: {name} must be an integer >= {low}, got {value!r}")
    if walks > 99:
        raise ConfigError(f"SynthGait domain: walks must be at most 99, got {walks}")
    output = Path(output)
    parameters = {"domain": domain, "subjects": subjects, "walks": walks, "seed": seed, "size": size}
    if (output / MARKER).is_file():
        recorded = json.loads((output / MARKER).read_text())
        if recorded.get("parameters") != parameters:
            raise ConfigError(f"{output} holds a SynthGait domain dataset made with other parameters "
                              f"({recorded.get('parameters')}); choose another output directory")
        return dict(recorded["summary"], reused=True)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise FileExistsError(f"{output} is not empty and is not a SynthGait domain dataset; refusing to write into it")
    started = time.perf_counter()
    with building_directory(output) as temp:
        width = max(3, len(str(subjects)))
        ids = [f"{i + 1:0{width}d}" for i in range(subjects)]
        sequences = frames = 0
        for index in tqdm(range(subjects), desc=f"SynthGait {domain}", unit="subject", disable=not progress):
            for walk in range(walks):
                rng = np.random.default_rng([seed, get_domain(domain).subject_stream + 1, index, walk])
                conditions = draw_conditions(get_domain(domain), rng)
                track = render_track(domain, seed, index, walk, size)
                if not len(track):
                    continue
                view = f"{int(conditions.azimuth) % 360:03d}"
                save_array(temp / ids[index] / f"nm-{walk + 1:02d}" / view / f"{view}.pkl", track)
                sequences += 1
                frames += len(track)
        train = max(1, round(TRAIN_FRACTION * subjects))
        atomic_write_bytes(temp / "partition.json",
                           json.dumps({"TRAIN_SET": ids[:train], "TEST_SET": ids[train:]}, indent=1).encode())
        summary = {"subjects": subjects, "sequences": sequences, "frames": frames,
                   "seconds": round(time.perf_counter() - started, 3), "output": str(output), "reused": False}
        atomic_write_bytes(temp / MARKER, json.dumps({"parameters": parameters, "summary": summary}, indent=1).encode())
    return summary
