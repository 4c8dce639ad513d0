"""SynthGait: a procedural gait dataset in CASIA-B's shape, for tests and demos without real data.

A 3D articulated body (``walk``) with a per-subject build and gait style (``body``) walks a periodic
cycle; cameras at CASIA-B's 11 azimuths see its silhouette with the defects of background subtraction
(``render``); ``dataset`` writes the result in OpenGait's pretreated layout (or raw PNG frames) with a
CASIA-B-like partition. Conditions: ``nm`` normal, ``bg`` carrying a bag, ``cl`` wearing a coat.
``domain`` renders the same people as street cameras see them (any direction, looking down, small,
low frame rate, damaged masks), to train for real footage (``street``) and to measure it (``heldout``).

    from gaitrec.synth import generate_dataset, write_preview
    generate_dataset("data/synthgait", subjects=50, frames=30, size=64)
"""
from .body import TYPES, VIEWS
from .dataset import DEFAULT_FRAMES, DEFAULT_SUBJECTS, MARKER, generate_dataset, render_views
from .preview import write_preview

__all__ = ["generate_dataset", "write_preview", "render_views", "TYPES", "VIEWS", "MARKER",
           "DEFAULT_SUBJECTS", "DEFAULT_FRAMES"]
