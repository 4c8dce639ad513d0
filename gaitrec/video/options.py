"""The thresholds of a video extraction (``ExtractOptions``), apart from the extraction itself so that the
command line can show their defaults without importing OpenCV."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass
class ExtractOptions:
    """Every threshold of the extraction. Sizes are in pixels of the input video."""

    subtractor: str = "mog2"      # mog2 or knn
    history: int = 500            # frames the background model remembers (20 s at 25 fps)
    var_threshold: float = 16.0   # MOG2's squared Mahalanobis distance for foreground
    warmup: int = 50              # frames whose median seeds the background
    process_width: int = 384      # frames wider than this are processed downscaled (boxes mapped back)
    min_height: int = 40          # shortest person (blob and track median)
    min_area: int = 300           # smallest person blob, in pixels
    max_aspect: float = 1.2       # widest person blob, width / height
    split_aspect: float = 0.8     # blobs wider than this (width / height) are tried as two people
    max_gap: int = 25             # frames a lost track keeps predicting before it ends
    max_occluded: int = 100       # frames a track may stay hidden inside a merged blob
    min_track_frames: int = 15    # shortest kept track, in silhouettes
    img_size: int = 64            # aligned silhouette size
    max_silhouettes: int = 0      # keep only each track's latest N silhouettes (live video); 0 keeps all

    def __post_init__(self):
        if self.subtractor not in ("mog2", "knn"):
            raise ConfigError(f"subtractor must be mog2 or knn, not {self.subtractor!r}")
        for name in ("history", "warmup", "process_width", "min_height", "min_track_frames", "img_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("var_threshold", "max_aspect", "split_aspect"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("min_area", "max_gap", "max_occluded", "max_silhouettes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if 0 < self.max_silhouettes < self.min_track_frames:
            raise ConfigError(f"max_silhouettes ({self.max_silhouettes}) below min_track_frames "
                             f"({self.min_track_frames}) would reject every track")
