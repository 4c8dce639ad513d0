"""From a video to tracked, pretreated silhouette sequences: segmentation + tracking + alignment + files.

``iter_tracking`` is the live loop (one frame in, the tracks active in it out); ``extract_tracks`` runs it
over a whole source and returns the kept tracks; ``extract_video`` writes them as a dataset in OpenGait's
layout ``OUTPUT/<id>/video/000/<id>.pkl`` with ``OUTPUT/tracks.json``, optionally a contact sheet and an
annotated copy of the video. Silhouettes are aligned with ``gaitrec.data.pretreat.align_frame``, exactly as
``gaitrec pretreat`` aligns raw frames.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Generator, Iterable

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import ConfigError
from ..data.pickle_io import save_array
from ..files import atomic_write_bytes
from ..data.pretreat import align_frame
from .options import ExtractOptions
from .segment import Detection, Segmenter
from .source import FrameSource, open_source, write_video
from .track import Track, Tracker

TYPE, VIEW = "video", "000"  # the type and view folders of every extracted sequence


def _resolve(source: str | Path | FrameSource) -> FrameSource:
    return source if isinstance(source, FrameSource) else open_source(source)


def _to_frame(d: Detection, scale: float) -> Detection:
    """A detection with its box (and its pieces' boxes) in input-frame pixels."""
    pieces = [_to_frame(p, scale) for p in d.pieces] if d.pieces else None
    return Detection(tuple(int(round(v / scale)) for v in d.box), d.mask, d.parts, d.split, d.whole, pieces)


def iter_tracking(source: str | Path | FrameSource, options: ExtractOptions | None = None
                  ) -> Generator[tuple[int, np.ndarray, list[Track]], None, list[Track]]:
    """Track people frame by frame: yields ``(frame_index, frame_bgr, active_tracks)`` (tracks confirmed
    and alive in that frame, each with its recent aligned silhouettes). The first ``options.warmup``
    frames are buffered to seed the background, then yielded in order. When the source ends the
    generator returns the kept tracks (``StopIteration.value``), numbered 1, 2, ... by first appearance."""
    options = options or ExtractOptions()
    source = _resolve(source)
    height, width = source.size
    scale = min(1.0, options.process_width / width)
    segmenter = Segmenter((height, width), scale, options.subtractor, options.history, options.var_threshold,
                          options.min_height, options.min_area, options.max_aspect, options.split_aspect)
    tracker = Tracker(lambda mask: align_frame(mask, options.img_size)[0], options.max_gap, options.max_occluded,
                      min_track_frames=options.min_track_frames, min_height=options.min_height,
                      max_silhouettes=options.max_silhouettes)

    def step(index: int, frame: np.ndarray, small: np.ndarray) -> tuple[int, np.ndarray, list[Track]]:
        _, detections = segmenter.detect(small)
        # Boxes back to input pixels; masks stay at processing size (alignment rescales them anyway).
        mapped = [_to_frame(d, scale) for d in detections]
        return index, frame, tracker.update(index, mapped)

    buffered: list[tuple[np.ndarray, np.ndarray]] = []
    index = 0
    for frame in source.frames():
        small = segmenter.prepare(frame)
        if not segmenter.started:
            buffered.append((frame, small))
            if len(buffered) < options.warmup:
                continue
            segmenter.start([s for _, s in buffered])
            for frame_b, small_b in buffered:
                yield step(index, frame_b, small_b)
                index += 1
            buffered = []
            continue
        yield step(index, frame, small)
        index += 1
    if buffered:  # a video shorter than the warm-up
        segmenter.start([s for _, s in buffered])
        for frame_b, small_b in buffered:
            yield step(index, frame_b, small_b)
            index += 1
    tracks = tracker.finish()
    for number, track in enumerate(tracks, start=1):
        track.id = number
    return tracks


def extract_tracks(source: str | Path | FrameSource, options: ExtractOptions | None = None,
                   progress: bool = True) -> list[Track]:
    """The kept tracks of a whole video (see ``iter_tracking``), numbered 1, 2, ... by first appearance."""
    return _track_all(_resolve(source), options, progress)[0]


def _track_all(source: FrameSource, options: ExtractOptions | None, progress: bool) -> tuple[list[Track], int]:
    """Kept tracks and the number of frames read."""
    loop = iter_tracking(source, options)
    frames = 0
    with tqdm(total=source.frame_count, desc="tracking", unit="frame", disable=not progress) as bar:
        while True:
            try:
                next(loop)
            except StopIteration as end:
                return end.value, frames
            frames += 1
            bar.update(1)


# ------------------------------------------------------------------------------------------------ drawing
def track_colour(track_id: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per track id."""
    hue = (track_id * 47) % 180
    return tuple(int(c) for c in cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0])


def draw_tracks(frame: np.ndarray, boxes: Iterable[tuple[int, tuple[int, int, int, int], str]]) -> np.ndarray:
    """Draw ``(track_id, (x, y, w, h), label)`` boxes with their labels (an id, a name) on a copy of ``frame``."""
    out = frame.copy()
    thickness = max(1, frame.shape[0] // 300)
    font_scale = max(0.4, frame.shape[0] / 900)
    for track_id, (x, y, w, h), label in boxes:
        colour = track_colour(track_id)
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, thickness)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        top = max(y - th - base - 2, 0)
        cv2.rectangle(out, (x, top), (x + tw + 4, top + th + base + 2), colour, -1)
        cv2.putText(out, label, (x + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), thickness,
                    cv2.LINE_AA)
    return out


def contact_sheet(tracks: list[Track], columns: int = 12, img_size: int = 64) -> np.ndarray:
    """A grey image with one row per track: ``columns`` silhouettes spread over the track, its id on the left."""
    label_width = 48
    sheet = np.zeros((max(1, len(tracks)) * img_size, label_width + columns * img_size), np.uint8)
    for row, track in enumerate(tracks):
        frames = track.silhouettes
        cv2.putText(sheet, f"{track.id:03d}", (4, row * img_size + img_size // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, 255, 1, cv2.LINE_AA)
        if not len(frames):
            continue
        for column, i in enumerate(np.linspace(0, len(frames) - 1, min(columns, len(frames))).astype(int)):
            x = label_width + column * img_size
            sheet[row * img_size:(row + 1) * img_size, x:x + img_size] = frames[i]
    return sheet


# ----------------------------------------------------------------------------------------------- writing
def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"{output} exists and is not a directory")
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{output} is not empty; choose a new directory or pass --overwrite")
        # Replace a previous extraction only: its track folders and tracks.json; anything else stays.
        for entry in output.iterdir():
            if entry.is_dir() and entry.name.isdigit() and (entry / TYPE).is_dir():
                shutil.rmtree(entry)
        (output / "tracks.json").unlink(missing_ok=True)


def extract_video(source: str | Path, output: str | Path, options: ExtractOptions | None = None,
                  preview: str | Path | None = None, annotate: str | Path | None = None,
                  overwrite: bool = False, progress: bool = True) -> dict:
    """Extract every person of ``source`` into ``output`` and return a summary
    ``{video, fps, frames, tracks, seconds, processing_fps, output}``.

    Writes ``output/<id>/video/000/<id>.pkl`` (uint8 [T, img_size, img_size]) per track, ids as
    zero-padded strings (``001``), and ``output/tracks.json`` = ``{video, fps, frames, tracks: [{id,
    first_frame, last_frame, num_frames, boxes: [[frame, x, y, w, h], ...]}]}``, each file atomically.
    ``preview``: a contact sheet PNG (a row per track). ``annotate``: a copy of the video with the tracks'
    boxes and ids (needs a file or a folder: a live source cannot be read twice). Refuses a non-empty
    ``output`` unless ``overwrite``. A video with nobody in it gives zero tracks, not an error.
    """
    options = options or ExtractOptions()
    output = Path(output)
    frame_source = open_source(source)
    if annotate is not None and frame_source.live:
        frame_source.close()
        raise ConfigError(f"{source}: --annotate needs a video file or a folder, not a live source")
    _check_output(output, overwrite)

    start = time.perf_counter()
    tracks, counted = _track_all(frame_source, options, progress)
    seconds = time.perf_counter() - start

    width = max(3, len(str(len(tracks))))
    records = []
    for track in tracks:
        name = f"{track.id:0{width}d}"
        save_array(output / name / TYPE / VIEW / f"{name}.pkl", track.silhouettes)
        records.append({"id": name, "first_frame": track.first_frame, "last_frame": track.last_frame,
                        "num_frames": len(track.aligned), "boxes": track.boxes})
    summary = {"video": str(source), "fps": frame_source.fps, "frames": counted, "tracks": records}
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(output / "tracks.json", (json.dumps(summary, indent=1) + "\n").encode())

    if preview is not None:
        ok, png = cv2.imencode(".png", contact_sheet(tracks, img_size=options.img_size))
        if not ok:
            raise OSError(f"{preview}: could not encode the contact sheet")
        atomic_write_bytes(preview, png.tobytes())
    if annotate is not None:
        by_frame: dict[int, list] = {}
        for track in tracks:
            for frame_index, x, y, w, h in track.boxes:
                by_frame.setdefault(frame_index, []).append((track.id, (x, y, w, h), f"{track.id:0{width}d}"))
        again = open_source(source)
        write_video(annotate, (draw_tracks(frame, by_frame.get(i, [])) for i, frame in enumerate(again.frames())),
                    frame_source.fps)
    return {"video": str(source), "fps": frame_source.fps, "frames": counted, "tracks": len(tracks),
            "seconds": round(seconds, 3), "processing_fps": round(counted / max(seconds, 1e-9), 1),
            "output": str(output)}


__all__ = ["ExtractOptions", "extract_tracks", "iter_tracking", "extract_video", "draw_tracks", "contact_sheet",
           "track_colour"]
