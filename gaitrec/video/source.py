"""Where frames come from: a video file, a folder of frame images, a camera index or a stream URL.

    source = open_source("street.mp4")
    source.fps, source.frame_count, source.size   # frame_count is None when unknown (camera, stream)
    for frame in source.frames():                  # BGR uint8 [H, W, 3]
        ...
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
from ..errors import DataError

# FFmpeg's own log lines ("moov atom not found") would come on top of our one-line error; read by
# OpenCV when its FFmpeg backend first starts, and the user's own setting wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
FOLDER_FPS = 25.0


@dataclass
class FrameSource:
    """An opened source: ``name`` (what the user gave), ``fps``, ``frame_count`` (None when unknown),
    ``size`` (height, width) and ``live`` (a camera or a stream: cannot be read twice)."""

    name: str
    fps: float
    frame_count: int | None
    size: tuple[int, int]
    live: bool
    _paths: list[Path] | None = None
    _capture: cv2.VideoCapture | None = None
    _first: np.ndarray | None = None

    def frames(self) -> Iterator[np.ndarray]:
        """Every frame once, BGR uint8 [H, W, 3] of ``size`` (grey images are converted)."""
        if self._paths is not None:
            for path in self._paths:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    raise DataError(f"{path}: unreadable image")
                if image.shape[:2] != self.size:
                    raise DataError(f"{path}: size {image.shape[1]}x{image.shape[0]} differs from the first "
                                     f"frame's {self.size[1]}x{self.size[0]}")
                yield image
            return
        capture, first = self._capture, self._first
        self._capture = self._first = None
        if capture is None:
            raise DataError(f"{self.name}: a video source can be read once; open it again")
        try:
            yield first
            while True:
                ok, frame = capture.read()
                if not ok or frame is None:
                    break
                yield frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        finally:
            capture.release()

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def open_source(source: str | Path, fps: float | None = None) -> FrameSource:
    """Open ``source``: a video file, a folder of images (sorted by name; ``fps`` default 25), a camera
    index (``"0"``) or a URL (``rtsp://``, ``http://`` ...). Raises ValueError naming the source when it
    is missing, unreadable, empty or not a video."""
    text = str(source)
    if text.isdigit() or "://" in text:
        return _from_capture(text, _quiet_capture(int(text) if text.isdigit() else text), fps, live=True)
    path = Path(text)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise DataError(f"{path}: folder holds no frame images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        first = cv2.imread(str(paths[0]), cv2.IMREAD_COLOR)
        if first is None:
            raise DataError(f"{paths[0]}: unreadable image")
        return FrameSource(str(path), fps or FOLDER_FPS, len(paths), first.shape[:2], False, _paths=paths)
    return _from_capture(str(path), _quiet_capture(str(path)), fps, live=False)


def _quiet_capture(target: str | int) -> cv2.VideoCapture:
    """Open a capture without OpenCV's own warnings on failure (we raise one clear error instead)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        return cv2.VideoCapture(target)
    finally:
        cv2.utils.logging.setLogLevel(level)


def _from_capture(name: str, capture: cv2.VideoCapture, fps: float | None, live: bool) -> FrameSource:
    if not capture.isOpened():
        capture.release()
        raise DataError(f"{name}: cannot open as a video (not a video file, unsupported format or no camera)")
    ok, first = capture.read()
    if not ok or first is None:
        capture.release()
        raise DataError(f"{name}: video has no readable frame")
    if first.ndim == 2:
        first = cv2.cvtColor(first, cv2.COLOR_GRAY2BGR)
    rate = fps or capture.get(cv2.CAP_PROP_FPS)
    if not rate or not np.isfinite(rate) or rate <= 0 or rate > 1000:
        rate = FOLDER_FPS
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return FrameSource(name, float(rate), count if count > 0 and not live else None, first.shape[:2], live,
                       _capture=capture, _first=first)


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float = FOLDER_FPS) -> int:
    """Write BGR frames [H, W, 3] (an array [T, H, W, 3] or any iterable) as a video: ``.avi`` as MJPG,
    anything else as mp4v, both of which OpenCV's own builds write and read back. Written under a temporary
    name and renamed when complete; returns the number of frames. Raises OSError when no writer opens."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fourcc = "MJPG" if path.suffix.lower() == ".avi" else "mp4v"
    writer, count = None, 0
    try:
        for frame in frames:
            if writer is None:
                height, width = frame.shape[:2]
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), float(fps), (width, height))
                if not writer.isOpened():
                    raise OSError(f"{path}: OpenCV cannot write this video format (fourcc {fourcc})")
            writer.write(np.ascontiguousarray(frame))
            count += 1
        if writer is None:
            raise DataError(f"{path}: no frames to write")
        writer.release()
        tmp.replace(path)
    except BaseException:
        if writer is not None:
            writer.release()
        tmp.unlink(missing_ok=True)
        raise
    return count
