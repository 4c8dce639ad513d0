"""A street seen by a fixed camera, with SynthGait walkers crossing it, and the ground truth of who is where.

The test bed of ``gaitrec.video``: a textured background (gradients, texture, a static structure) with
sensor noise in every frame and a slow global brightness drift; walkers (each a SynthGait subject,
identified by ``(seed, index)``, so the same person can walk again in another clip with the same body and
gait style) enter at one edge and leave at the other, at different depths (hence heights) and directions,
crossing each other when the caller's timing makes them. People are filled with clothing colours (hair,
shirt, trousers, shoes, with a little texture), never plain white, so that background subtraction has a
real job; an optional shadow darkens the ground at their feet.

Geometry: a pinhole camera ``CAMERA_HEIGHT`` metres above a flat ground, focal length ``FOCAL`` x the frame
width, horizon at ``HORIZON`` x the frame height. A walker at depth ``D`` stands ``focal * height / D``
pixels tall with its feet on row ``horizon + focal * CAMERA_HEIGHT / D``. Its body is drawn with
SynthGait's weak-perspective projection from its ``view`` (the azimuth of ``render.camera_axes``: 270
walks left to right, 090 right to left, in between the walker also comes closer or goes away).

    clip = render_street([Walker(7, 0, start=0, view=270, depth=6.0), Walker(7, 1, start=10, view=90, depth=8.0)],
                         frames=100, size=(240, 320), seed=1)
    clip.frames   # [T, H, W, 3] BGR uint8
    clip.labels   # [T, H, W] uint8: 0 background, k + 1 where walker k is visible (occlusion applied)
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import cv2
import numpy as np

from ..errors import ConfigError
from .body import FPS, sample_walk
from .dataset import make_subject
from .render import Placement, camera_axes, render_walk
from .walk import BodyShape, body_shape
from ..video.source import write_video  # noqa: F401  (re-exported: clips are written with it)

CAMERA_HEIGHT = 3.0   # metres above the ground
FOCAL = 0.9           # focal length in frame widths (about 58 degrees across)
HORIZON = 0.25        # horizon row as a fraction of the frame height (the camera looks slightly down)
CHUNK = 32            # frames rendered at once (bounds the memory of full-frame masks)


@dataclass(frozen=True)
class Walker:
    """One pass of a SynthGait subject across the street.

    ``seed``/``index`` name the subject (its body and gait style, as in ``gaitrec synth``); ``start`` is the
    clip frame where it enters (just outside the frame edge it comes from; negative: already in the frame
    at frame 0); ``view`` the SynthGait azimuth the camera sees it from (270 walks to the right, 090 to the
    left; in between it also changes depth: views within 90 degrees of 000 come closer, e.g. 290 and 070,
    the others recede); ``depth`` its distance from the camera in metres when it enters; ``walk_seed``
    draws this pass's speed, phase and posture jitter, so one subject can walk several different passes.
    """

    seed: int
    index: int
    start: int
    view: float
    depth: float
    walk_seed: int = 0


@dataclass
class StreetClip:
    """A rendered clip: ``frames`` [T, H, W, 3] BGR uint8, ``labels`` [T, H, W] uint8 (0 nobody,
    ``k + 1`` where ``walkers[k]`` is visible), ``fps``."""

    frames: np.ndarray
    labels: np.ndarray
    walkers: list[Walker]
    fps: float = FPS
    # walker k -> frames where it is visible (at least one pixel), ascending
    visible: list[list[int]] = field(default_factory=list)

    def mask(self, walker: int, frame: int) -> np.ndarray:
        """Visible mask (bool [H, W]) of ``walkers[walker]`` at ``frame``."""
        return self.labels[frame] == walker + 1

    def box(self, walker: int, frame: int) -> tuple[int, int, int, int] | None:
        """Bounding box (x, y, w, h) of the visible part of ``walkers[walker]`` at ``frame``, or None."""
        ys, xs = np.nonzero(self.mask(walker, frame))
        if not len(xs):
            return None
        return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


# ------------------------------------------------------------------------------------------------ scene
@lru_cache(maxsize=4)
def _noise_bank(height: int, width: int) -> np.ndarray:
    """Gaussian sensor noise (int8, sd 1) larger than a frame; frames take random windows of it."""
    rng = np.random.default_rng(12345)
    return np.clip(rng.standard_normal((height + 64, width + 64, 3)) * 16, -127, 127).astype(np.int8)


def street_background(size: tuple[int, int], rng: np.random.Generator, structure: bool = True) -> np.ndarray:
    """A static street image float32 [H, W, 3]: sky-to-ground gradient, blotchy texture, pavement lines
    and optionally a building block and a pole."""
    height, width = size
    rows = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    top = rng.uniform(90, 200, 3).astype(np.float32)
    bottom = rng.uniform(60, 150, 3).astype(np.float32)
    image = np.broadcast_to(top + (bottom - top) * rows, (height, width, 3)).copy()
    for sigma, amplitude in ((max(height, width) / 30, 18.0), (1.2, 7.0)):
        noise = rng.standard_normal((height, width, 1)).astype(np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), sigma)[..., None]
        image += amplitude * noise / (noise.std() + 1e-6)
    horizon = int(HORIZON * height)
    for step in range(1, 8):  # pavement joints, denser towards the horizon
        row = horizon + int((height - horizon) * (step / 8) ** 1.6)
        image[row:row + max(1, height // 240)] *= 0.85
    if structure:
        left = int(rng.uniform(0.55, 0.8) * width)
        colour = rng.uniform(50, 200, 3).astype(np.float32)
        image[: int(0.2 * height), left: left + int(0.18 * width)] = colour
        pole = int(rng.uniform(0.1, 0.35) * width)
        image[int(0.05 * height): int(0.9 * height), pole: pole + max(2, width // 100)] = colour * 0.5
    return np.clip(image, 0, 255)


def _clothing(rng: np.random.Generator, background_mean: np.ndarray) -> np.ndarray:
    """Colours (BGR) of hair, skin, shirt, trousers, shoes: saturated or dark, away from the background."""
    colours = []
    for low, high in ((20, 80), (110, 200), (40, 220), (30, 160), (15, 70)):
        for _ in range(20):
            hsv = np.uint8([[[rng.integers(0, 180), rng.integers(60, 230), rng.integers(low, high)]]])
            colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
            if np.abs(colour - background_mean).sum() > 90:
                break
        colours.append(colour)
    return np.array(colours)


# ---------------------------------------------------------------------------------------------- walkers
def _pass_frames(walker: Walker, size: tuple[int, int], speed: float) -> int:
    """Frames this pass needs to cross the frame from edge to edge (at the nearer of its depths)."""
    height, width = size
    lateral = abs(np.sin(np.radians(walker.view)))
    if lateral < 0.3:
        raise ConfigError(f"view {walker.view}: walkers must cross the street (|sin(view)| >= 0.3)")
    metres = (width + 0.6 * FOCAL * width * 1.9 / walker.depth) * walker.depth / (FOCAL * width)
    return int(np.ceil(metres / (lateral * speed) * FPS)) + 2


def _slice_shape(shape: BodyShape, begin: int, end: int) -> BodyShape:
    return replace(shape, capsules=shape.capsules[begin:end], hulls=[h[begin:end] for h in shape.hulls],
                   pelvis=shape.pelvis[begin:end], feet=shape.feet[begin:end],
                   torso_axis=tuple(a[begin:end] for a in shape.torso_axis))


@dataclass
class _Pass:
    shape: BodyShape
    view: str
    scale: np.ndarray    # [n] pixels per metre
    origin: np.ndarray   # [n, 3] world point that projects onto pixel (0, 0)
    depth: np.ndarray    # [n]
    feet: np.ndarray     # [n, 2] pixel (column, row) of the ground point under the pelvis
    colours: np.ndarray  # [5, 3]


def _plan_pass(walker: Walker, size: tuple[int, int], colours: np.ndarray) -> _Pass:
    height, width = size
    subject = make_subject(walker.seed, walker.index)
    walk = sample_walk(subject, "nm-01", np.random.default_rng([walker.seed, 3, walker.index, walker.walk_seed]))
    speed = walk.subject.stride * walk.subject.cadence
    frames = _pass_frames(walker, size, speed)
    shape = body_shape(walk, frames)
    view = f"{walker.view % 360:g}"
    right, up, _ = camera_axes(view)
    focal = FOCAL * width
    walked = shape.pelvis[:, 0] - shape.pelvis[0, 0]        # metres along the path
    rightward = -np.sin(np.radians(walker.view))               # image-x per metre walked (render.camera_axes)
    approach = np.cos(np.radians(walker.view))
    depth = np.maximum(walker.depth - approach * walked, 2.0)
    margin = 0.45 * focal * subject.height / walker.depth       # start just outside the edge
    start_x = (-margin if rightward > 0 else width + margin) - width / 2
    lateral = start_x * walker.depth / focal + rightward * walked  # metres right of the optical axis
    column = width / 2 + focal * lateral / depth
    row = HORIZON * height + focal * CAMERA_HEIGHT / depth
    scale = focal / depth
    ground = np.stack([shape.pelvis[:, 0], np.zeros(frames), np.zeros(frames)], axis=1)
    # origin chosen so that the ground point lands on (column, row): right and up are orthonormal.
    origin = ground - (column / scale)[:, None] * right + (row / scale)[:, None] * up
    return _Pass(shape, view, scale, origin, depth, np.stack([column, row], axis=1), colours)


def _paint(image: np.ndarray, mask: np.ndarray, colours: np.ndarray, texture: np.ndarray) -> None:
    """Fill ``mask`` on ``image`` with clothing colours by height within the silhouette."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not len(rows):
        return
    top, bottom = rows[0], rows[-1] + 1
    height = bottom - top
    bands = np.array([0.06, 0.13, 0.5, 0.95, 1.0]) * height  # hair, face, shirt, trousers, shoes
    part = np.searchsorted(bands, np.arange(height) + 0.5)
    row_colours = colours[np.minimum(part, 4)]                   # [h, 3]
    window = mask[top:bottom]
    ys, xs = np.nonzero(window)
    shade = 1.0 - 0.25 * (ys / max(height, 1))                    # a little darker towards the feet
    values = row_colours[ys] * shade[:, None] + texture[ys % texture.shape[0], xs % texture.shape[1]]
    image[top:bottom][ys, xs] = np.clip(values, 0, 255)


def render_street(walkers: list[Walker], frames: int, size: tuple[int, int] = (240, 320), seed: int = 0,
                  noise: float = 3.0, drift: float = 0.05, shadows: bool = True, structure: bool = True
                  ) -> StreetClip:
    """Render ``frames`` frames of a street of ``size`` (height, width) with ``walkers``.

    ``noise`` is the sensor noise's standard deviation (grey levels, fresh every frame), ``drift`` the
    amplitude of the slow global brightness change (a fraction), ``shadows`` darkens an ellipse on the
    ground at each walker's feet, ``structure`` adds a building block and a pole. Deterministic from
    ``seed`` and the walkers.
    """
    if frames < 1:
        raise ConfigError(f"frames must be positive, got {frames}")
    height, width = size
    rng = np.random.default_rng([seed, 4])
    background = street_background(size, rng, structure)
    mean = background.reshape(-1, 3).mean(axis=0)
    passes = [_plan_pass(w, size, _clothing(np.random.default_rng([seed, 5, k]), mean))
              for k, w in enumerate(walkers)]
    texture = (rng.standard_normal((16, 16, 1)) * 6).astype(np.float32)
    bank = _noise_bank(height, width)
    gain = 1.0 + drift * np.sin(2 * np.pi * (np.arange(frames) / max(frames, 200) + rng.random()))

    video = np.empty((frames, height, width, 3), np.uint8)
    labels = np.zeros((frames, height, width), np.uint8)
    for begin in range(0, frames, CHUNK):
        end = min(begin + CHUNK, frames)
        masks = {}
        for k, (walker, plan) in enumerate(zip(walkers, passes)):
            first, last = max(begin, walker.start), min(end, walker.start + len(plan.scale))
            if first >= last:
                continue
            local = slice(first - walker.start, last - walker.start)
            placement = Placement(plan.scale[local], plan.origin[local], (0.0, 0.0), (height, width))
            shape = _slice_shape(plan.shape, local.start, local.stop)
            masks[k] = (first, render_walk(shape, plan.view, placement, rng, artefacts=False))
        for t in range(begin, end):
            image = background * gain[t]
            present = [k for k, (first, m) in masks.items() if first <= t < first + len(m)]
            present.sort(key=lambda k: -passes[k].depth[t - walkers[k].start])  # far first
            if shadows:
                for k in present:
                    column, row = passes[k].feet[t - walkers[k].start]
                    scale = passes[k].scale[t - walkers[k].start]
                    shadow = np.zeros((height, width), np.uint8)
                    cv2.ellipse(shadow, (int(column + 0.25 * scale), int(row)), (int(0.5 * scale), int(0.1 * scale)),
                                0, 0, 360, 1, -1)
                    image[shadow > 0] *= 0.6
            for k in present:
                first, m = masks[k]
                mask = m[t - first] > 0
                _paint(image, mask, passes[k].colours, texture)
                labels[t][mask] = k + 1
            dy, dx = rng.integers(0, 64, 2)
            image += bank[dy:dy + height, dx:dx + width] * (noise / 16)
            video[t] = np.clip(image, 0, 255)
    visible = [np.flatnonzero((labels == k + 1).any(axis=(1, 2))).tolist() for k in range(len(walkers))]
    return StreetClip(video, labels, list(walkers), FPS, visible)


def random_walkers(seed: int, count: int, frames: int, subject_seed: int | None = None,
                   crossing: bool = True, depths: tuple[float, float] = (5.5, 10.0)) -> list[Walker]:
    """``count`` walkers with random directions, depths and entry times within the first half of the clip;
    subjects ``(subject_seed or seed, 0..count-1)``. Without ``crossing``, walkers alternate in time so
    that no two are in the frame together."""
    rng = np.random.default_rng([seed, 6])
    walkers = []
    for k in range(count):
        view = float(rng.choice([270, 90, 250, 290, 70, 110]))
        depth = float(rng.uniform(*depths))
        start = int(rng.integers(0, max(1, frames // 2))) if crossing else 0
        walkers.append(Walker(seed if subject_seed is None else subject_seed, k, start, view, depth, walk_seed=seed))
    if not crossing:  # one after the other
        start = 0
        placed = []
        for w in walkers:
            placed.append(replace(w, start=start))
            start += len(_plan_pass(w, (240, 320), np.zeros((5, 3))).scale) + 2
        walkers = placed
    return walkers


def score_tracks(tracks, clip: StreetClip, img_size: int = 64) -> dict:
    """How well extracted tracks (``gaitrec.video.Track``) match the clip's ground truth.

    Each track frame belongs to the walker with the most visible pixels inside its box; a track's walker
    is its most frequent one. Returns ``purity`` (per track: fraction of frames of its walker),
    ``walker_of`` (per track, -1 for none), ``tracks_per_walker`` (list over walkers), ``silhouette_iou``
    (mean over track frames of the IoU between the aligned silhouette and the walker's aligned visible
    mask, both thresholded at 128) and ``box_iou`` (mean IoU of the track box and the walker's visible box).
    """
    from ..data.pretreat import align_frame
    from ..video.segment import box_iou

    purity, walker_of, silhouette_ious, box_ious = [], [], [], []
    for track in tracks:
        owners = []
        for frame, x, y, w, h in track.boxes:
            window = clip.labels[frame, y:y + h, x:x + w]
            counts = np.bincount(window.ravel(), minlength=len(clip.walkers) + 1)[1:]
            owners.append(int(counts.argmax()) if counts.max() > 0 else -1)
        owners_arr = np.array(owners)
        valid = owners_arr[owners_arr >= 0]
        walker = int(np.bincount(valid).argmax()) if len(valid) else -1
        walker_of.append(walker)
        purity.append(float(np.mean(owners_arr == walker)) if len(owners) else 0.0)
        if walker < 0:
            continue
        frames = dict(zip(track.silhouette_frames, track.silhouettes))
        for frame, x, y, w, h in track.boxes:
            truth_box = clip.box(walker, frame)
            if truth_box is None:
                continue
            box_ious.append(box_iou((x, y, w, h), truth_box))
            if frame not in frames:
                continue
            tx, ty, tw, th = truth_box
            truth, _ = align_frame((clip.mask(walker, frame)[ty:ty + th, tx:tx + tw] * 255).astype(np.uint8), img_size)
            ours = frames[frame] > 127
            truth = truth > 127 if truth is not None else np.zeros_like(ours)
            union = np.logical_or(ours, truth).sum()
            silhouette_ious.append(float(np.logical_and(ours, truth).sum() / union) if union else 0.0)
    per_walker = [walker_of.count(k) for k in range(len(clip.walkers))]
    return {"purity": purity, "walker_of": walker_of, "tracks_per_walker": per_walker,
            "silhouette_iou": float(np.mean(silhouette_ious)) if silhouette_ious else 0.0,
            "box_iou": float(np.mean(box_ious)) if box_ious else 0.0}
