"""People in videos: frame sources, background-subtraction segmentation, tracking, and extraction of
tracked silhouette sequences in OpenGait's pretreated layout (``gaitrec extract``). Only OpenCV and numpy:
nothing is downloaded.

    from gaitrec.video import ExtractOptions, extract_video
    extract_video("street.mp4", "tracks/", ExtractOptions(min_height=60), preview="tracks.png")
"""
from .extract import ExtractOptions, contact_sheet, draw_tracks, extract_tracks, extract_video, iter_tracking, track_colour
from .segment import Detection, Segmenter
from .source import FrameSource, open_source, write_video
from .track import Track, Tracker

__all__ = ["ExtractOptions", "extract_tracks", "iter_tracking", "extract_video", "draw_tracks", "contact_sheet",
           "track_colour", "Detection", "Segmenter", "FrameSource", "open_source", "write_video", "Track", "Tracker"]
