"""What a user can point ``enroll`` and ``identify`` at: a pretreated ``.pkl`` sequence, a folder of them,
or a video (a video file, or a folder of frame images) from which walking people are tracked.

Every source becomes a list of ``SourceSequence``: uint8 silhouettes ``[T, H, W]`` aligned as
``gaitrec pretreat`` aligns them, with where they came from.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError
from .data.dataset import check_sequence
from .data.pickle_io import load_array

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".webm", ".m4v", ".wmv", ".flv", ".ts")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class SourceSequence:
    source: str  # the file (or video) the frames come from
    track: int | None  # the tracked person's id within a video; None for a .pkl sequence
    frames: np.ndarray  # uint8 [T, H, W]

    @property
    def label(self) -> str:
        """How messages name this sequence."""
        return self.source if self.track is None else f"{self.source} (track {self.track})"


def is_video(path: Path) -> bool:
    """A video file by its suffix, or a folder holding frame images and no ``.pkl`` sequence."""
    if path.is_file():
        return path.suffix.lower() in VIDEO_SUFFIXES
    if path.is_dir():
        has_images = any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir() if p.is_file())
        return has_images and not any(path.rglob("*.pkl"))
    return False


def sequences_from_source(source: str | Path, progress: bool = False) -> list[SourceSequence]:
    """The sequences of one source, in a stable order (files sorted by path, tracks by id).

    A ``.pkl`` file is one sequence; a folder gives every ``.pkl`` under it; a video gives one sequence
    per tracked person. Raises FileNotFoundError or ValueError naming the source.
    """
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"source not found: {path}")
    if is_video(path):
        from .video import extract_tracks  # heavy (detection, tracking); only videos need it

        tracks = extract_tracks(str(path), progress=progress)
        if not tracks:
            raise DataError(f"{path}: no walking person was found in the video")
        return [SourceSequence(str(path), int(t.id), check_sequence(np.asarray(t.silhouettes), f"{path} track {t.id}"))
                for t in sorted(tracks, key=lambda t: t.id)]
    if path.is_file():
        if path.suffix.lower() != ".pkl":
            raise DataError(f"{path}: not a source gaitrec reads (expected a pretreated .pkl sequence, a folder "
                             f"of them, or a video: {' '.join(VIDEO_SUFFIXES)}, or a folder of frame images)")
        return [SourceSequence(str(path), None, check_sequence(load_array(path), str(path)))]
    files = sorted(path.rglob("*.pkl"))
    if not files:
        raise DataError(f"{path}: folder holds no .pkl sequence and no frame images")
    return [SourceSequence(str(f), None, check_sequence(load_array(f), str(f))) for f in files]


def longest_track(sequences: list[SourceSequence]) -> list[SourceSequence]:
    """Of each video's tracks keep the one with the most frames (the lowest id among equals); .pkl
    sequences pass unchanged."""
    best: dict[str, SourceSequence] = {}
    for seq in sequences:
        if seq.track is not None and (seq.source not in best or len(seq.frames) > len(best[seq.source].frames)):
            best[seq.source] = seq
    return [seq for seq in sequences if seq.track is None or best[seq.source] is seq]


def one_person_per_video(sequences: list[SourceSequence], longest: bool = False) -> list[SourceSequence]:
    """Enrolment expects one person per video: several tracks are refused with their count, unless
    ``longest`` keeps each video's longest track."""
    if longest:
        return longest_track(sequences)
    counts: dict[str, int] = {}
    for seq in sequences:
        if seq.track is not None:
            counts[seq.source] = counts.get(seq.source, 0) + 1
    for source, count in counts.items():
        if count > 1:
            raise DataError(f"{source}: {count} people were tracked but enrolment takes one; "
                             "pass --longest to enrol the longest track")
    return sequences
