"""Live identification: follow the people walking in a video or camera stream and name them as they walk.

Each tracked person is identified on a sliding window of their latest aligned silhouettes (``window``
frames, again every ``step`` new frames) against a gallery; a name is announced when a track is first
decided and whenever its decision changes. At the end every track gets its final name: the decision of
most of its windows (ties go to the later window), and the nearest name most windows found, which is
what to look at when a strict threshold leaves a person ``unknown``.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from .errors import ConfigError
from .embed import Embedder
from .gallery import Gallery, identify
from .video import ExtractOptions, draw_tracks, iter_tracking
from .video.source import open_source, write_video


@dataclass
class TrackNames:
    """What ``watch`` decided for one track: per window the decision, the nearest name and its distance."""

    track: int
    first_frame: int
    windows: list[tuple[int, str, str, float]] = field(default_factory=list)  # (frame, decision, nearest, distance)

    @property
    def current(self) -> str | None:
        return self.windows[-1][1] if self.windows else None

    def majority(self, column: int) -> str | None:
        """The value of ``column`` most windows agree on; among equals the latest one."""
        if not self.windows:
            return None
        votes = Counter(window[column] for window in self.windows)
        best = max(votes.values())
        return next(window[column] for window in reversed(self.windows) if votes[window[column]] == best)


def watch(source: str | Path, gallery: Gallery, embedder: Embedder, window: int = 30, step: int = 10,
          threshold: float | None = None, options: ExtractOptions | None = None, annotate: str | Path | None = None,
          announce: Callable[[str], None] = print, progress: bool = True) -> dict:
    """Identify every person of ``source`` on sliding windows; announce ``"frame F (S s) track T: NAME (D)"``
    lines as decisions appear or change. Returns ``{"source", "fps", "frames", "seconds", "tracks": [...]}``
    where each track has its live id, first frame, final name and per-window decisions.

    ``annotate`` writes the video with each person's box and current name (a file or folder source)."""
    if window < 1 or step < 1:
        raise ConfigError(f"--window and --step must be at least 1, got {window} and {step}")
    options = replace(options or ExtractOptions(),
                      # a track is named from its first full window on, and keeps only its latest window
                      # (memory stays bounded on an endless stream)
                      min_track_frames=min((options or ExtractOptions()).min_track_frames, window),
                      max_silhouettes=window)
    frames_source = open_source(source)
    if annotate is not None and frames_source.live:
        frames_source.close()
        raise ConfigError(f"{source}: --annotate needs a video file or a folder, not a live source")
    fps = frames_source.fps
    names: dict[int, TrackNames] = {}
    gathered: dict[int, int] = {}  # silhouettes each track has gathered (it keeps only the latest window)
    seen_at: dict[int, int] = {}  # ... and how many it had at its last identification
    frames = 0

    def follow():
        """Run the tracker over the source, identifying as windows fill up; yields annotated frames."""
        nonlocal frames
        with tqdm(total=frames_source.frame_count, desc="watch", unit="frame", disable=not progress) as bar:
            for frame_index, frame, tracks in iter_tracking(frames_source, options):
                frames += 1
                bar.update(1)
                for track in tracks:
                    if track.id not in gathered:
                        gathered[track.id] = len(track.aligned)
                    elif track.silhouette_frames and track.silhouette_frames[-1] == frame_index:
                        gathered[track.id] += 1
                    count = gathered[track.id]
                    if count < window or count - seen_at.get(track.id, -step) < step:
                        continue
                    seen_at[track.id] = count
                    embedding = embedder.embed(track.recent(window), where=f"{source} track {track.id}")
                    result = identify(gallery, embedding[None], top_k=1, threshold=threshold)[0]
                    entry = names.setdefault(track.id, TrackNames(track.id, track.first_frame))
                    previous = entry.current
                    nearest = result.matches[0]
                    entry.windows.append((frame_index, result.decision, nearest.name, nearest.distance))
                    if result.decision != previous:
                        bar.clear()
                        detail = (f"{nearest.distance:.3f}" if result.decision == nearest.name
                                  else f"nearest {nearest.name} at {nearest.distance:.3f}")
                        announce(f"frame {frame_index} ({frame_index / fps:.1f} s) track {track.id}: "
                                 f"{result.decision} ({detail})")
                if annotate is not None:
                    boxes = [(t.id, tuple(t.box_at(frame_index)), names[t.id].current if t.id in names else str(t.id))
                             for t in tracks if t.box_at(frame_index) is not None]
                    yield draw_tracks(frame, boxes)

    started = time.perf_counter()
    if annotate is not None:
        write_video(annotate, follow(), fps)  # streamed: frames are encoded as they come
    else:
        for _ in follow():
            pass
    summary = [{"track": n.track, "first_frame": n.first_frame, "name": n.majority(1), "nearest": n.majority(2),
                "windows": [{"frame": f, "decision": d, "nearest": near, "distance": round(dist, 6)}
                            for f, d, near, dist in n.windows]}
               for n in sorted(names.values(), key=lambda n: n.track)]
    return {"source": str(source), "fps": fps, "frames": frames,
            "seconds": round(time.perf_counter() - started, 3), "tracks": summary}
