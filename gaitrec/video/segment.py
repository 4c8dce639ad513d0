"""People as foreground blobs: background subtraction, clean-up, and blobs that look like one person.

OpenCV's MOG2 (or KNN) models every pixel's background colour; shadows it recognises (value 127) are
removed, except long vertical runs of "shadow" hanging below a person, which are dark trousers
(``legs_in_shadow``); each frame's global brightness is first matched to the background's. The model starts from a background estimated over the first frames (their per-pixel median,
with each frame's own noise kept where it is close to that median), so that a person standing in the
first frame is not learnt as background and the noise statistics are right from the start. Blobs are
cleaned with an opening and a closing sized from the frame, joined when they are fragments of one
person stacked vertically (legs cut from the torso), split at the valley of their column profile when
they are too wide for one person, and kept when they are tall enough and taller than wide.

Everything runs at a processing size (``Segmenter.scale``); detections are reported in that size and
mapped back to the input frame by the caller (``extract``).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from ..errors import ConfigError

SHADOW = 127  # the value MOG2/KNN give pixels they classify as shadow
LIGHTING_CHANGE = 0.3  # fraction of changed pixels above which the light changed, not people came
RELEARN_FRAMES, RELEARN_RATE = 10, 0.2


@dataclass
class Detection:
    """One person-like blob: ``box`` (x, y, w, h) and ``mask`` (uint8 0/255, the box's size) in
    processing pixels; ``parts`` counts the connected components joined into it."""

    box: tuple[int, int, int, int]
    mask: np.ndarray
    parts: int = 1
    split: bool = False  # cut out of a wider blob
    whole: bool = True   # False: cut through overlapping people or by the frame's edge: no silhouette
    # Two overlapping people's blob (two heads on its outline): the blob cut between the heads, which the
    # tracker uses when the blob is not already explained as the merge of two followed people.
    pieces: list["Detection"] | None = None

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))


def box_iou(a, b) -> float:
    """Intersection over union of two boxes (x, y, w, h)."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = min(ax + aw, bx + bw) - max(ax, bx)
    ih = min(ay + ah, by + bh) - max(ay, by)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / float(aw * ah + bw * bh - inter)


def box_cover(inner, outer) -> float:
    """Fraction of box ``inner``'s area that lies inside box ``outer``."""
    ix, iy, iw, ih = inner
    ox, oy, ow, oh = outer
    w = min(ix + iw, ox + ow) - max(ix, ox)
    h = min(iy + ih, oy + oh) - max(iy, oy)
    if w <= 0 or h <= 0 or iw <= 0 or ih <= 0:
        return 0.0
    return w * h / float(iw * ih)


class Segmenter:
    """Frame -> foreground mask -> person detections, at ``scale`` times the input size.

    ``min_height`` and ``min_area`` are in input-frame pixels; ``max_aspect`` is the largest width/height
    of one person; ``split_aspect`` the width/height above which a blob is tried as two people.
    """

    def __init__(self, frame_size: tuple[int, int], scale: float = 1.0, subtractor: str = "mog2",
                 history: int = 500, var_threshold: float = 16.0, min_height: int = 40, min_area: int = 200,
                 max_aspect: float = 1.2, split_aspect: float = 0.8,
                 shadow_threshold: float = 0.5):
        if subtractor not in ("mog2", "knn"):
            raise ConfigError(f"unknown background subtractor {subtractor!r}: use mog2 or knn")
        height, width = frame_size
        self.scale = scale
        self.size = (max(1, round(width * scale)), max(1, round(height * scale)))  # (w, h) for cv2.resize
        if subtractor == "mog2":
            self.model = cv2.createBackgroundSubtractorMOG2(history, var_threshold, True)
            self.model.setShadowThreshold(shadow_threshold)
        else:
            # KNN's threshold is a squared distance in grey levels; 400 is its default for MOG2's 16.
            self.model = cv2.createBackgroundSubtractorKNN(history, var_threshold * 25.0, True)
        self.min_height = min_height * scale
        self.min_area = min_area * scale * scale
        self.max_aspect = max_aspect
        self.split_aspect = split_aspect
        side = max(self.size[1] // 240, 1)  # morphology scaled with the frame: 1 px per 240 rows
        self.open_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * side + 1, 2 * side + 1))
        self.close_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * side + 1, 2 * side + 1))
        # A tall thin closing bridges the gap between a torso and legs that came apart, never two people
        # side by side.
        self.bridge_kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (1, 6 * side + 1))
        # Shortest vertical run of "shadow" below foreground taken back as dark legs (see legs_in_shadow).
        self.min_leg = max(4, int(0.25 * self.min_height))
        self.started = False
        self.reference = 0.0  # mean brightness of the background the model was seeded with
        self.relearning = 0   # frames left of fast background learning after a lighting change

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        """The frame at processing size."""
        if self.scale == 1.0:
            return frame
        return cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)

    def start(self, first_frames: list[np.ndarray]) -> None:
        """Seed the background model from the first frames (already at processing size)."""
        if not first_frames:
            return
        stack = np.stack(first_frames[:: max(1, len(first_frames) // 25)])
        median = np.median(stack, axis=0).astype(np.uint8)
        for index, frame in enumerate(first_frames):
            # Keep each frame's noise where it is close to the median; elsewhere (someone walking) the median.
            far = np.abs(frame.astype(np.int16) - median).sum(axis=2) > 45
            clean = frame.copy()
            clean[far] = median[far]
            self.model.apply(clean, learningRate=1.0 / (index + 1))
        self.reference = float(median.mean())
        self.started = True

    def foreground(self, frame: np.ndarray) -> np.ndarray:
        """Binary foreground (0/255) of one frame at processing size, shadows removed, cleaned."""
        # Global brightness drift (clouds, auto exposure) would light up every flat surface: bring the frame
        # back to the brightness of the background it is compared with.
        brightness = float(frame[::4, ::4].mean())
        if brightness > 0 and abs(self.reference / brightness - 1.0) > 0.005:
            frame = cv2.convertScaleAbs(frame, alpha=self.reference / brightness)
        raw = self.model.apply(frame, learningRate=RELEARN_RATE if self.relearning else -1)
        self.relearning = max(self.relearning - 1, 0)
        if np.count_nonzero(raw[::2, ::2]) > LIGHTING_CHANGE * raw[::2, ::2].size:
            # Far more of the frame changed than people cover: the light changed in part of the scene
            # (a cloud, a lamp). Learn the new background fast for a few frames instead of over ``history``.
            self.relearning = RELEARN_FRAMES
        mask = np.where(raw == 255, 255, 0).astype(np.uint8)
        opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self.open_kernel)
        # Searched only in the columns of the opened mask: isolated noise pixels would make it search all.
        legs = legs_in_shadow(raw == SHADOW, mask > 0, self.min_leg, opened.any(axis=0))
        if legs.any():
            mask[legs] = 255
            opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self.open_kernel)
        mask = opened
        return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self.close_kernel)

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, list[Detection]]:
        """Foreground mask and person detections of one processing-size frame."""
        mask = self.foreground(frame)
        return mask, self.people(mask)

    def people(self, mask: np.ndarray) -> list[Detection]:
        """Person-like blobs of a clean foreground mask."""
        bridged = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self.bridge_kernel)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(bridged, connectivity=8)
        blobs = [list(map(int, stats[i, :4])) + [i] for i in range(1, count)
                 if stats[i, cv2.CC_STAT_AREA] >= 0.25 * self.min_area]
        groups = _join_fragments(blobs)
        detections = []
        for group in groups:
            x0 = min(b[0] for b in group)
            y0 = min(b[1] for b in group)
            x1 = max(b[0] + b[2] for b in group)
            y1 = max(b[1] + b[3] for b in group)
            region = np.isin(labels[y0:y1, x0:x1], [b[4] for b in group])
            crop = np.where(region, mask[y0:y1, x0:x1], 0).astype(np.uint8)
            for detection in self._split((x0, y0, x1 - x0, y1 - y0), crop, len(group)):
                if self._is_person(detection):
                    x, y, w, h = detection.box
                    if x <= 0 or y <= 0 or x + w >= mask.shape[1] or y + h >= mask.shape[0]:
                        detection.whole = False  # cut by the frame's edge: followed, but no silhouette
                    detections.append(detection)
        return detections

    def _is_person(self, d: Detection) -> bool:
        x, y, w, h = d.box
        return h >= self.min_height and d.area >= self.min_area and w <= self.max_aspect * h

    def _split(self, box, crop: np.ndarray, parts: int) -> list[Detection]:
        """One blob, or two when it is clearly two people side by side (a deep valley in the column
        profile near the middle of a blob too wide for one person)."""
        x, y, w, h = box
        if w <= self.split_aspect * h or w < 8:
            whole = _tight(box, crop, parts)
            heads = _between_heads(crop) if w >= 0.45 * h else None
            if heads is not None:  # two people overlapping: offer the cut between the heads
                whole.pieces = []
                for a, b in ((0, heads), (heads, w)):
                    if crop[:, a:b].any():
                        piece = _tight((x + a, y, b - a, h), crop[:, a:b], parts)
                        piece.split, piece.whole = True, False
                        whole.pieces.append(piece)
            return [whole]
        profile = cv2.blur((crop > 0).sum(axis=0).astype(np.float32)[None], (max(3, w // 15), 1))[0]
        low, high = int(0.3 * w), int(0.7 * w)
        valley = low + int(np.argmin(profile[low:high]))
        left_peak, right_peak = profile[:valley].max(), profile[valley:].max()
        if profile[valley] > 0.35 * min(left_peak, right_peak):
            return [_tight(box, crop, parts)]
        out = []
        for a, b in ((0, valley), (valley, w)):
            part = crop[:, a:b]
            if part.any():
                d = _tight((x + a, y, b - a, h), part, parts)
                d.split = True
                out.append(d)
        return out


def _between_heads(crop: np.ndarray) -> int | None:
    """The column between two heads, when the blob's top outline has two: two high points at least a
    fifth of the blob's height apart horizontally, the lower within 0.28 of the height of the higher
    (a far person is shorter), with the outline between them dipping at least 0.12 of the height below both
    (the gap between two people's shoulders). One person's outline has one head, and a swinging hand or
    elbow stays lower than that. Returns None for one head."""
    h, w = crop.shape
    fg = crop > 0
    top = np.where(fg.any(axis=0), fg.argmax(axis=0), h).astype(np.float32)
    first = int(np.argmin(top))
    far = np.abs(np.arange(w) - first) >= 0.2 * h
    if not far.any():
        return None
    candidates = np.where(far, top, np.inf)
    second = int(np.argmin(candidates))
    if candidates[second] > top[first] + 0.28 * h:
        return None
    a, b = sorted((first, second))
    dip = a + int(np.argmax(top[a:b + 1]))
    if top[dip] < max(top[first], top[second]) + 0.12 * h:
        return None
    return dip


def legs_in_shadow(shadow: np.ndarray, foreground: np.ndarray, min_run: int,
                   search: np.ndarray | None = None) -> np.ndarray:
    """Shadow pixels that are really dark clothing: MOG2 calls any darker version of the background a
    shadow, dark trousers included. A cast shadow lies flat on the ground, so below a person it only adds
    a short run to a column (under the feet, between the legs), while trousers hang from the torso.
    In each column, a run of changed pixels (foreground or shadow) gives back its shadow pixels lying
    between two foreground pixels, and its bottom shadow run when that run starts below foreground and is at
    least ``min_run`` rows long. ``search`` (bool [W]) limits the columns looked at. Returns bool [H, W]."""
    out = np.zeros_like(shadow)
    # Runs never leave their column: only columns holding both shadow and foreground matter.
    wanted = shadow.any(axis=0) & foreground.any(axis=0)
    columns = np.flatnonzero(wanted if search is None else wanted & search)
    if not len(columns):
        return out
    shadow, foreground = shadow[:, columns], foreground[:, columns]
    changed = shadow | foreground
    rows = np.flatnonzero(changed.any(axis=1))
    top, bottom = rows[0], rows[-1] + 1
    shadow, foreground, changed = shadow[top:bottom], foreground[top:bottom], changed[top:bottom]
    # Straight down only: following slanted legs sideways also follows the cast shadow along the ground
    # (measured: better for a dark-trousered walker, worse for everyone else).
    above = changed & np.roll(_seen_in_run(foreground, changed), 1, axis=0)
    below = changed & np.roll(_seen_in_run(foreground[::-1], changed[::-1])[::-1], -1, axis=0)
    above[0] = below[-1] = False
    tail = shadow & above & ~below
    length = _run_position(tail) + _run_position(tail[::-1])[::-1] - 1  # each tail pixel: its run's length
    out[top:bottom, columns] = (shadow & above & below) | (tail & (length >= min_run))
    return out


def _seen_in_run(values: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Per column, top-down: has any ``values`` pixel appeared so far in the current vertical run of
    ``runs`` (up to and including this row)? Vectorised with cumulative sums."""
    count = np.cumsum(values & runs, axis=0, dtype=np.int16)  # frames are under 32768 rows
    before = np.maximum.accumulate(np.where(runs, 0, count), axis=0)  # count where the run began
    return runs & (count > before)


def _run_position(mask: np.ndarray) -> np.ndarray:
    """Per column, 1-based position of each True pixel within its vertical run (0 elsewhere)."""
    index = np.cumsum(mask, axis=0, dtype=np.int16)
    before = np.maximum.accumulate(np.where(mask, 0, index), axis=0)
    return np.where(mask, index - before, 0)


def _tight(box, crop: np.ndarray, parts: int) -> Detection:
    """A detection whose box is cropped to the mask's extent."""
    x, y, w, h = box
    rows = np.flatnonzero(crop.any(axis=1))
    cols = np.flatnonzero(crop.any(axis=0))
    if not len(rows):
        return Detection((x, y, 0, 0), crop[:0, :0], parts)
    crop = crop[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return Detection((x + int(cols[0]), y + int(rows[0]), crop.shape[1], crop.shape[0]), crop, parts)


def _join_fragments(blobs: list[list[int]]) -> list[list[list[int]]]:
    """Group blobs [x, y, w, h, label] that are pieces of one person: they overlap horizontally by most
    of the narrower one and the vertical gap between them is small against the taller one."""
    groups = [[b] for b in sorted(blobs, key=lambda b: -b[2] * b[3])]
    merged = True
    while merged:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                a, b = _extent(groups[i]), _extent(groups[j])
                overlap = min(a[2], b[2]) - max(a[0], b[0])
                narrower = min(a[2] - a[0], b[2] - b[0])
                gap = max(a[1], b[1]) - min(a[3], b[3])
                taller = max(a[3] - a[1], b[3] - b[1])
                joined_height = max(a[3], b[3]) - min(a[1], b[1])
                joined_width = max(a[2], b[2]) - min(a[0], b[0])
                if (overlap >= 0.5 * narrower and gap <= 0.3 * taller
                        and joined_width <= 0.9 * joined_height):
                    groups[i] += groups.pop(j)
                    merged = True
                    break
            if merged:
                break
    return groups


def _extent(group: list[list[int]]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a group of blobs."""
    return (min(b[0] for b in group), min(b[1] for b in group),
            max(b[0] + b[2] for b in group), max(b[1] + b[3] for b in group))
