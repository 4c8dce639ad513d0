"""Following people from frame to frame: a multi-object tracker on person detections.

Each track predicts its box with a constant-velocity model (an alpha-beta filter on the box centre);
detections are matched to predictions greedily on a cost of IoU and centre distance, inside a gate. A
track that misses detections keeps predicting for up to ``max_gap`` frames and can be picked up again.

Two people walking into each other become one blob. A detection that covers the predicted boxes of two
or more established tracks is a *merge*: it goes to at most one of them (the best match), none of them
learns its motion from it, none keeps its silhouette, and the others coast as occluded (an occluded track
may coast longer than ``max_gap``, up to ``max_occluded`` frames, since its whereabouts are known). When
the blob separates again, the predictions pick their own people back up, so identities neither swap on
the merged frames nor mix silhouettes.

The tracker works frame by frame (``update``), for files and live video alike; ``finish`` ends every
track and returns the ones long and tall enough to keep.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .segment import Detection, box_cover, box_iou


@dataclass
class Track:
    """One person followed through a video.

    ``boxes`` lists ``[frame, x, y, w, h]`` for every frame where the track had a detection of its own
    (merged frames excluded); ``silhouette_frames`` the frames whose silhouette survived alignment, in the
    same order as ``silhouettes``.
    """

    id: int                                   # 0 while tentative
    boxes: list[list[int]] = field(default_factory=list)
    silhouette_frames: list[int] = field(default_factory=list)
    aligned: list[np.ndarray] = field(default_factory=list)
    merged_frames: list[int] = field(default_factory=list)
    # motion state: box centre, size and velocity (pixels per frame) at frame ``updated``
    centre: np.ndarray = field(default_factory=lambda: np.zeros(2))
    size: np.ndarray = field(default_factory=lambda: np.zeros(2))
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    updated: int = 0
    hits: int = 0
    misses: int = 0          # consecutive frames without any detection
    occluded: int = 0        # consecutive frames hidden inside a merged blob
    seen: bool = False       # had a detection (own or merged) in the latest frame

    @property
    def first_frame(self) -> int:
        return self.boxes[0][0] if self.boxes else self.updated

    @property
    def last_frame(self) -> int:
        return self.boxes[-1][0] if self.boxes else self.updated

    @property
    def silhouettes(self) -> np.ndarray:
        """Aligned silhouettes uint8 [T, S, S] (T may be 0)."""
        if not self.aligned:
            return np.zeros((0, 64, 64), np.uint8)
        return np.stack(self.aligned)

    def recent(self, count: int) -> np.ndarray:
        """The latest ``count`` aligned silhouettes [<=count, S, S]."""
        if not self.aligned:
            return self.silhouettes
        return np.stack(self.aligned[-count:])

    def median_height(self) -> float:
        return float(np.median([b[4] for b in self.boxes])) if self.boxes else 0.0

    def box_at(self, frame: int) -> list[int] | None:
        """The box ``[x, y, w, h]`` at ``frame`` if the track has one there."""
        for b in reversed(self.boxes):
            if b[0] == frame:
                return b[1:]
            if b[0] < frame:
                return None
        return None

    def predict(self, frame: int) -> tuple[float, float, float, float]:
        """Predicted box (x, y, w, h) at ``frame``."""
        centre = self.centre + self.velocity * (frame - self.updated)
        return (centre[0] - self.size[0] / 2, centre[1] - self.size[1] / 2, self.size[0], self.size[1])


def _centre_size(box) -> tuple[np.ndarray, np.ndarray]:
    x, y, w, h = box
    return np.array([x + w / 2, y + h / 2], float), np.array([w, h], float)


class Tracker:
    """Frame-by-frame multi-person tracker. ``silhouette(mask) -> aligned or None`` turns a detection's
    mask into the silhouette a track keeps (``None`` drops the frame)."""

    def __init__(self, silhouette: Callable[[np.ndarray], np.ndarray | None], max_gap: int = 25,
                 max_occluded: int = 100, confirm: int = 3, min_track_frames: int = 15,
                 min_height: float = 40.0, gate: float = 0.6, velocity_gain: float = 0.3,
                 max_silhouettes: int = 0):
        self.silhouette = silhouette
        self.max_gap = max_gap
        self.max_occluded = max_occluded
        self.confirm = confirm
        self.min_track_frames = min_track_frames
        self.min_height = min_height
        self.gate = gate                 # largest centre distance, in heights, of a match without overlap
        self.velocity_gain = velocity_gain
        self.max_silhouettes = max_silhouettes  # 0: keep all; else each track's latest ones (live video)
        self.live: list[Track] = []
        self.finished: list[Track] = []
        self.next_id = 1

    def update(self, frame: int, detections: list[Detection]) -> list[Track]:
        """Associate one frame's detections (boxes in frame pixels) and return the confirmed live tracks."""
        tracks = self.live
        for t in tracks:
            t.seen = False
        predicted = [t.predict(frame) for t in tracks]
        established = [t.hits >= self.confirm for t in tracks]
        # A detection that is the best match of two established tracks (it overlaps both predictions more
        # than any other detection does) is several people in one blob.
        covers: list[list[int]] = [[] for _ in detections]
        for i, p in enumerate(predicted):
            overlaps = [box_iou(p, d.box) for d in detections]
            if established[i] and overlaps and max(overlaps) > 0.1:
                j = int(np.argmax(overlaps))
                if box_cover(p, detections[j].box) >= 0.3:
                    covers[j].append(i)
        merged = [len(c) >= 2 for c in covers]
        # A blob with two heads that is not the merge of two followed people (say two people who came in
        # together) is taken as its two pieces.
        if any(d.pieces and not m for d, m in zip(detections, merged)):
            expanded = []
            for d, m, c in zip(detections, merged, covers):
                for piece in (d.pieces if d.pieces and not m else [d]):
                    expanded.append((piece, m, c))
            detections = [e[0] for e in expanded]
            merged = [e[1] for e in expanded]
            covers = [e[2] for e in expanded]

        pairs = []
        for i, p in enumerate(predicted):
            for j, d in enumerate(detections):
                iou = box_iou(p, d.box)
                (pc, ps), (dc, ds) = _centre_size(p), _centre_size(d.box)
                distance = np.linalg.norm(pc - dc) / max(ps[1], ds[1], 1.0)
                ratio = ds[1] / max(ps[1], 1.0)
                if not merged[j] and not 0.5 <= ratio <= 2.0:
                    continue
                if iou > 0.05 or distance < self.gate:
                    pairs.append(((1.0 - iou) + distance, i, j))
        pairs.sort()
        track_of: dict[int, int] = {}
        detection_of: dict[int, int] = {}
        for _, i, j in pairs:
            if i in detection_of or j in track_of:
                continue
            detection_of[i] = j
            track_of[j] = i

        hidden = {i for j, c in enumerate(covers) if merged[j] for i in c}
        for i, t in enumerate(tracks):
            j = detection_of.get(i)
            if j is not None and not merged[j]:
                self._observe(t, frame, detections[j])
            elif j is not None or i in hidden:
                t.occluded += 1
                t.misses = 0
                t.seen = True
                if j is not None:
                    t.merged_frames.append(frame)
            else:
                t.misses += 1
        for j, d in enumerate(detections):
            if j in track_of or merged[j]:
                continue
            # A piece of someone already followed (a limb split off) must not start a new person.
            if any(box_cover(d.box, p) >= 0.5 for p in predicted):
                continue
            t = Track(0)
            t.centre, t.size = _centre_size(d.box)
            t.updated = frame
            self._observe(t, frame, d)
            self.live.append(t)

        keep = []
        for t in self.live:
            lost = (t.misses > self.max_gap or t.occluded > self.max_occluded
                    or (t.hits < self.confirm and t.misses > 1))
            if not lost:
                keep.append(t)
            elif t.id:
                self.finished.append(t)
        self.live = keep
        return [t for t in self.live if t.id]

    def _observe(self, t: Track, frame: int, d: Detection) -> None:
        centre, size = _centre_size(d.box)
        if t.hits:
            dt = max(frame - t.updated, 1)
            measured = (centre - t.centre) / dt
            t.velocity = t.velocity + self.velocity_gain * (measured - t.velocity) if t.hits > 1 else measured
        t.centre, t.size, t.updated = centre, size, frame
        t.hits += 1
        t.misses = t.occluded = 0
        t.seen = True
        t.boxes.append([frame, *map(int, d.box)])
        aligned = self.silhouette(d.mask) if d.whole else None
        if aligned is not None:
            t.aligned.append(aligned)
            t.silhouette_frames.append(frame)
            if self.max_silhouettes and len(t.aligned) > self.max_silhouettes:
                del t.aligned[0], t.silhouette_frames[0]
        if not t.id and t.hits >= self.confirm:
            t.id = self.next_id
            self.next_id += 1

    def finish(self) -> list[Track]:
        """End every track; the kept ones (at least ``min_track_frames`` silhouettes, median box height at
        least ``min_height``), in order of first appearance."""
        done = self.finished + [t for t in self.live if t.id]
        self.live, self.finished = [], []
        kept = [t for t in done if len(t.aligned) >= self.min_track_frames and t.median_height() >= self.min_height]
        return sorted(kept, key=lambda t: (t.first_frame, t.id))
