"""People in videos: frame sources, background-subtraction segmentation, tracking, and extraction of
tracked silhouette sequences in OpenGait's pretreated layout (``gaitrec extract``). Only OpenCV and numpy:
nothing is downloaded.

    from gaitrec.video import ExtractOptions, extract_video
    extract_video("street.mp4", "tracks/", ExtractOptions(min_height=60), preview="tracks.png")
"""
import importlib

# Each public name and the module it lives in, imported on first use: the command line reads ExtractOptions
# (from .options) without paying for OpenCV.
_HOMES = {
    "ExtractOptions": "options", "extract_tracks": "extract", "iter_tracking": "extract", "extract_video": "extract",
    "draw_tracks": "extract", "contact_sheet": "extract", "track_colour": "extract", "Detection": "segment",
    "Segmenter": "segment", "FrameSource": "source", "open_source": "source", "write_video": "source",
    "Track": "track", "Tracker": "track",
}
__all__ = list(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
