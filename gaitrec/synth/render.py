"""From the 3D body to silhouettes: a camera per view, a rasteriser, and background-subtraction defects.

Projection is weak perspective: each frame is an orthographic view from the camera's azimuth (the view
angle: 000 the walker comes towards the camera, 090 passes from the side, 180 walks away), slightly
from above, scaled by the walker's distance. Capsules project to 2D capsules (a sphere stays a circle of
the same radius), so limbs are drawn as exact convex polygons; torso, head, coat and bag are convex hulls
of their projected surface points. Everything is filled with OpenCV at 1/16 pixel precision.

``pretreat`` then normalises frames with the pretreatment of raw datasets, so that the generated
``.pkl`` files look like pretreated CASIA-B.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from ..data.pretreat import align_frame
from .walk import UP, BodyShape

ELEVATION = 6.0          # degrees the cameras look down on the walker
SUBPIXEL_BITS = 4        # OpenCV's fixed-point shift: coordinates in 1/16 pixel
ARC_POINTS = 7           # points on each rounded end of a capsule polygon


@lru_cache(maxsize=None)
def camera_axes(view: str, elevation: float = ELEVATION) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image right, image up and the direction towards the camera (unit vectors, world axes) for a camera
    at azimuth ``view`` looking down ``elevation`` degrees."""
    azimuth, elevation = np.radians(float(view)), np.radians(elevation)
    toward = np.array([np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation), np.sin(elevation)])
    right = np.cross(-toward, UP)
    right /= np.linalg.norm(right)
    up = np.cross(right, -toward)
    return right, up, toward


@dataclass
class Placement:
    """How world metres map to the pixels of a ``canvas`` (height, width) in each frame: ``origin[t]``
    lands on pixel ``anchor`` and ``scale[t]`` is pixels per metre."""

    scale: np.ndarray       # [T]
    origin: np.ndarray      # [T, 3]
    anchor: tuple[float, float]  # (column, row)
    canvas: tuple[int, int]
    elevation: float = ELEVATION  # degrees the camera looks down


def centred_placement(shape: BodyShape, body_height: float, body_pixels: int) -> Placement:
    """The walker held in the middle of a canvas just big enough, ``body_pixels`` tall standing: the
    path is irrelevant for pretreated output, which recentres every frame anyway."""
    frames = len(shape.pelvis)
    origin = shape.pelvis * np.array([1.0, 1.0, 0.0])
    canvas = (int(1.2 * body_pixels), int(1.25 * body_pixels))
    return Placement(np.full(frames, body_pixels / body_height), origin, (canvas[1] / 2, 0.92 * canvas[0]), canvas)


def camera_placement(shape: BodyShape, view: str, canvas: tuple[int, int]) -> Placement:
    """A fixed camera: the walker crosses (or approaches) a full frame and grows as it comes closer."""
    height, width = canvas
    frames = len(shape.pelvis)
    path = np.ptp(shape.pelvis[:, 0]) + 0.8
    # Standing at the path's middle the walker is about 60% of the frame's height, less when a long
    # path has to fit across the frame's width.
    middle_scale = min(0.6 * height / 1.75, 0.8 * width / path)
    distance = max(6.0, path + 3.0)
    _, _, toward = camera_axes(view)
    depth = distance - shape.pelvis[:, :2] @ toward[:2]
    return Placement(middle_scale * distance / depth, np.zeros((frames, 3)), (width / 2, 0.85 * height), canvas)


def project(points: np.ndarray, view: str, placement: Placement) -> np.ndarray:
    """World points [T, N, 3] -> pixel coordinates [T, N, 2] (column, row)."""
    right, up, _ = camera_axes(view, placement.elevation)
    relative = points - placement.origin[:, None]
    scale = placement.scale[:, None]
    column = placement.anchor[0] + scale * (relative @ right)
    row = placement.anchor[1] - scale * (relative @ up)
    return np.stack([column, row], axis=-1)


def capsule_polygons(ends: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Convex outlines [T, K, 2 * ARC_POINTS, 2] of 2D capsules with end points ``ends`` [T, K, 2, 2]
    and end radii ``radii`` [T, K, 2]: two arcs joined by the circles' outer common tangents."""
    a, b = ends[..., 0, :], ends[..., 1, :]
    delta = b - a
    length = np.linalg.norm(delta, axis=-1)
    direction = np.arctan2(delta[..., 1], delta[..., 0])
    ra, rb = radii[..., 0], radii[..., 1]
    # The tangent touches both circles where the normal is at +-(pi/2 - alpha) from the axis; when one
    # circle holds the other alpha reaches +-pi/2 and the polygon degenerates to the bigger circle.
    alpha = np.arcsin(np.clip((ra - rb) / np.maximum(length, 1e-9), -1.0, 1.0))
    half = np.pi / 2 - alpha
    steps = np.linspace(0.0, 1.0, ARC_POINTS)
    around_b = (direction - half)[..., None] + steps * (2 * half)[..., None]
    around_a = (direction + half)[..., None] + steps * (2 * np.pi - 2 * half)[..., None]
    arc_b = b[..., None, :] + rb[..., None, None] * np.stack([np.cos(around_b), np.sin(around_b)], axis=-1)
    arc_a = a[..., None, :] + ra[..., None, None] * np.stack([np.cos(around_a), np.sin(around_a)], axis=-1)
    return np.concatenate([arc_b, arc_a], axis=-2)


def _fixed_point(points: np.ndarray) -> np.ndarray:
    return np.round(points * (1 << SUBPIXEL_BITS)).astype(np.int32)


@lru_cache(maxsize=4)
def _noise_bank(height: int, width: int) -> np.ndarray:
    """A fixed field of spatially correlated noise (uint8, roughly uniform) that frames take windows of:
    much cheaper than drawing fresh noise for every frame, and random enough at random offsets."""
    rng = np.random.default_rng(20240611)
    field = cv2.GaussianBlur(rng.standard_normal((2 * height, 2 * width)).astype(np.float32), (0, 0), 1.5)
    ranks = np.argsort(np.argsort(field, axis=None)).reshape(field.shape)
    return (ranks * 256 // ranks.size).astype(np.uint8)


def render_walk(shape: BodyShape, view: str, placement: Placement, rng: np.random.Generator,
                artefacts: bool = True) -> np.ndarray:
    """Binary silhouettes uint8 [T, H, W] (0/255) of one walk seen from ``view``.

    With ``artefacts`` the frames carry what background subtraction leaves: ragged boundaries, a
    slightly grown or shrunk outline, small holes, chunks of limbs missing, an occasional empty frame and,
    for some walks, a shadow at the feet. How bad each defect is varies from walk to walk.
    """
    frames, (height, width) = len(shape.pelvis), placement.canvas
    count = shape.capsules.shape[1]
    ends = project(shape.capsules.reshape(frames, count * 2, 3), view, placement).reshape(frames, count, 2, 2)
    radii = shape.radii[None] * placement.scale[:, None, None]
    capsules = _fixed_point(capsule_polygons(ends, radii))
    hulls = [_fixed_point(project(points, view, placement)) for points in shape.hulls]

    plan = _plan_artefacts(shape, view, placement, rng, frames) if artefacts else None
    images = np.zeros((frames, height, width), np.uint8)
    for t in range(frames):
        image = images[t]
        for polygon in capsules[t]:
            cv2.fillConvexPoly(image, polygon, 255, cv2.LINE_8, SUBPIXEL_BITS)
        for points in hulls:
            cv2.fillConvexPoly(image, cv2.convexHull(points[t]), 255, cv2.LINE_8, SUBPIXEL_BITS)
        if plan is None:
            continue
        if plan["shadow"] is not None and plan["shadow_on"][t]:
            cv2.fillConvexPoly(image, cv2.convexHull(plan["shadow"][t]), 255, cv2.LINE_8, SUBPIXEL_BITS)
        for centre, radius in plan["erase"][t]:
            cv2.circle(image, centre, radius, 0, -1, cv2.LINE_8, SUBPIXEL_BITS)
        # Ragged outline: blur, then threshold against a noisy threshold map, so that the boundary
        # wanders by a pixel or so in blobs while the inside and the background stay clean.
        row, column = plan["noise_offsets"][t]
        threshold = plan["threshold"][row:row + height, column:column + width]
        cv2.compare(cv2.blur(image, (5, 5)), threshold, cv2.CMP_GT, dst=image)
    if plan is not None:
        images[plan["dropped"]] = 0
    return images


def _plan_artefacts(shape: BodyShape, view: str, placement: Placement, rng: np.random.Generator, frames: int) -> dict:
    """Decide, for every frame, which defects appear where (all random draws happen here, vectorised)."""
    severity = rng.random()  # some recordings are clean, some poor

    erase: list[list[tuple[tuple[int, int], int]]] = [[] for _ in range(frames)]

    def add_erasures(where: np.ndarray, points: np.ndarray, radii_m: np.ndarray):
        at = Placement(placement.scale[where], placement.origin[where], placement.anchor, placement.canvas,
                       placement.elevation)
        centres = _fixed_point(project(points[:, None], view, at)[:, 0])
        radii = (radii_m * placement.scale[where] * (1 << SUBPIXEL_BITS)).astype(int)
        for t, centre, radius in zip(where, centres, radii):
            erase[t].append((tuple(int(c) for c in centre), int(radius)))

    # Holes where clothing matches the background, on the torso.
    where = np.repeat(np.arange(frames), rng.poisson(0.6 * severity, frames))
    bottom, top = shape.torso_axis
    along = rng.uniform(0.1, 0.9, (len(where), 1))
    spread = rng.normal(0.0, 0.05, (len(where), 3)) * np.array([1.0, 1.0, 0.3])
    add_erasures(where, bottom[where] + along * (top[where] - bottom[where]) + spread,
                 rng.uniform(0.012, 0.035, len(where)))
    # A chunk of a limb lost to the background.
    where = np.flatnonzero(rng.random(frames) < 0.08 * severity)
    limbs = np.array(shape.limbs)[rng.integers(len(shape.limbs), size=len(where))]
    ends = shape.capsules[where, limbs]  # [M, 2, 3]
    along = rng.uniform(0.4, 1.0, (len(where), 1))
    add_erasures(where, ends[:, 0] + along * (ends[:, 1] - ends[:, 0]),
                 rng.uniform(1.5, 2.5, len(where)) * shape.radii[limbs].max(axis=1))

    # A shadow cast on the floor, towards a random direction, in some recordings.
    shadow = shadow_on = None
    if rng.random() < 0.3:
        heading = rng.uniform(0, 2 * np.pi)
        along = np.array([np.cos(heading), np.sin(heading), 0.0])
        across = np.array([-along[1], along[0], 0.0])
        angle = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        outline = 0.45 * np.cos(angle)[:, None] * along + 0.18 * np.sin(angle)[:, None] * across + 0.25 * along
        ground = shape.feet[:, None] + outline[None]
        points = np.concatenate([ground, ground + 0.03 * UP], axis=1)
        shadow = _fixed_point(project(points, view, placement))
        shadow_on = rng.random(frames) < 0.85

    # Empty frames (the subtraction failed), at most a quarter of the walk.
    dropped = np.flatnonzero(rng.random(frames) < 0.03 * severity)[: frames // 4]
    # The outline threshold map: a per-walk bias (the silhouette grows or shrinks a little, as with a
    # segmentation threshold) plus correlated noise; it stays within (0, 255) so that the inside of
    # the silhouette and the background are never touched.
    bias, amplitude = rng.integers(100, 156), rng.integers(30, 90)
    height, width = placement.canvas
    bank = _noise_bank(height, width).astype(np.int16)
    threshold = np.clip(bias + amplitude - bank * amplitude // 128, 1, 254).astype(np.uint8)
    offsets = np.stack([rng.integers(0, height, frames), rng.integers(0, width, frames)], axis=1)
    return {"erase": erase, "shadow": shadow, "shadow_on": shadow_on, "dropped": dropped,
            "threshold": threshold, "noise_offsets": offsets}


def pretreat(frames: np.ndarray, size: int) -> np.ndarray:
    """Normalise raw silhouettes [T, H, W] to [T', size, size] uint8 with the pretreatment of raw
    datasets (``gaitrec.data.pretreat.align_frame``: near-empty frames dropped, rows cropped, bicubic
    resize to height ``size``, centred on the column mass). The bicubic resize leaves grey edges; they are
    thresholded back to 0/255, our output being binary."""
    kept = [aligned for aligned, _ in (align_frame(frame, size) for frame in frames) if aligned is not None]
    if not kept:
        return np.zeros((0, size, size), np.uint8)
    return np.where(np.stack(kept) > 127, 255, 0).astype(np.uint8)
