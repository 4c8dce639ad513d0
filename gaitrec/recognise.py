"""Enrolment and identification from what a user points at (``.pkl`` sequences, folders, videos), with an
``Embedder`` and a ``Gallery``: the library behind ``gaitrec enroll``, ``identify`` and the video demo."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError
from .embed import Embedder
from .gallery import EnrolledSequence, Gallery, Identification, ModelRecord, check_name, enroll, identify
from .sources import SourceSequence, one_person_per_video, sequences_from_source


def match_frame_size(embedder: Embedder, frame_size, where: str) -> None:
    """Sequences of one gallery share one frame size: the embedder refuses any other."""
    frame_size = tuple(frame_size)
    if embedder.frame_size is not None and embedder.frame_size != frame_size:
        raise DataError(f"{where} holds {frame_size[0]}x{frame_size[1]} sequences but the model takes "
                         f"{embedder.frame_size[0]}x{embedder.frame_size[1]}")
    embedder.frame_size = frame_size


def check_sources_exist(sources: list[str | Path]) -> None:
    """Fail on a mistyped path before loading a model or reading a video."""
    for source in sources:
        if not Path(source).exists():
            raise FileNotFoundError(f"source not found: {source}")


def read_sources(sources: list[str | Path], progress: bool = False) -> list[SourceSequence]:
    return [seq for source in sources for seq in sequences_from_source(source, progress=progress)]


def enroll_sources(path: str | Path, name: str, sources: list[str | Path], embedder: Embedder,
                   longest: bool = False, progress: bool = False) -> tuple[int, int]:
    """Embed ``sources`` (one person per video; ``longest`` keeps a video's longest track) and enrol them
    under ``name``; returns (sequences added, the person's sequences in all). A gallery of another model or
    frame size is refused before any source is read."""
    check_name(name)
    path = Path(path)
    if path.exists():
        with Gallery.open(path) as gallery:
            recorded = gallery.model
        recorded.require(embedder.identity, path)
        match_frame_size(embedder, recorded.frame_size, str(path))
    check_sources_exist(sources)
    sequences = one_person_per_video(read_sources(sources, progress), longest=longest)
    return len(sequences), enroll_sequences(path, name, sequences, embedder, progress)


def enroll_sequences(path: str | Path, name: str, sequences: list[SourceSequence], embedder: Embedder,
                     progress: bool = False) -> int:
    """Embed ``sequences`` and enrol them under ``name``; returns the person's sequences in all."""
    match_frame_size(embedder, sequences[0].frames.shape[1:], sequences[0].label)
    embeddings = embedder.embed_batch([s.frames for s in sequences], [s.label for s in sequences], progress=progress)
    records = [EnrolledSequence(s.source, s.track, len(s.frames), e) for s, e in zip(sequences, embeddings)]
    model = ModelRecord(embedder.identity, embedder.model_config, tuple(embeddings.shape[1:]), embedder.frame_size,
                        str(embedder.checkpoint.resolve()))
    return enroll(path, name, records, model)


def gallery_threshold(gallery: Gallery, threshold: float | None) -> tuple[float | None, str | None]:
    """The threshold to decide with and where it comes from: the user's, or the distance between the two
    closest enrolled people (none, with a warning, when only one person is enrolled)."""
    if threshold is not None:
        if not (threshold >= 0 and threshold != float("inf")):
            raise ConfigError(f"--threshold must be a finite distance >= 0, got {threshold}")
        return threshold, "--threshold"
    pair = gallery.nearest_pair()
    if pair is None:
        warnings.warn("one person enrolled: no threshold can be calibrated, so every query is given the "
                      "nearest name; pass --threshold to reject strangers")
        return None, None
    return pair[0], f"distance between the closest enrolled people, {' and '.join(pair[1])}"


def prepare_gallery(gallery: Gallery, embedder: Embedder) -> None:
    """Refuse an empty gallery, or one made with another model; fix the embedder's frame size to it."""
    if not gallery.people():
        raise DataError(f"{gallery.path}: the gallery is empty; enrol someone first")
    gallery.check_model(embedder.identity)
    match_frame_size(embedder, gallery.model.frame_size, str(gallery.path))


def identify_sequences(gallery: Gallery, embedder: Embedder, sequences: list[SourceSequence], top_k: int = 5,
                       threshold: float | None = None, progress: bool = False) -> list[Identification]:
    """The top-k names and the decision for each sequence (``threshold`` None: the gallery's own)."""
    embeddings = embedder.embed_batch([s.frames for s in sequences], [s.label for s in sequences], progress=progress)
    return identify(gallery, np.asarray(embeddings), top_k=top_k, threshold=threshold)
