"""Where a dataset's sequences live: ``SequenceInfo`` per sequence, the ``SequenceSource`` interface, and
OpenGait's ``.pkl`` layout ``root/<subject>/<type>/<view>/*.pkl`` (``PklSource``).

The packed store (``data.store``) is the other source; it builds on this module, and ``data.dataset``
chooses between the two.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from ..registry import ConfigError
from .pickle_io import load_array, read_header


@dataclass(frozen=True)
class SequenceInfo:
    subject: str
    type: str
    view: str
    location: str  # where the frames live (a file, or a store offset), for messages


class SequenceSource(Protocol):
    sequences: list[SequenceInfo]

    def load(self, index: int) -> np.ndarray:
        """Frames of sequence ``index`` as uint8 ``[T, H, W]``."""


class PklSource:
    """Sequences in OpenGait's layout. ``data_in_use`` picks one of several ``.pkl`` files per folder
    (booleans in sorted file order, as OpenGait)."""

    def __init__(self, root: str | Path, data_in_use: Sequence[bool] | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ConfigError(f"dataset root not found: {self.root}")
        if data_in_use is not None and sum(bool(x) for x in data_in_use) != 1:
            raise ConfigError(f"data_cfg.data_in_use {list(data_in_use)} must select exactly one modality: "
                              "gaitrec models take one input array")
        self.data_in_use = None if data_in_use is None else [bool(x) for x in data_in_use]
        self.sequences: list[SequenceInfo] = []
        self.empty_folders: list[Path] = []
        for folder in sorted(p for p in self.root.glob("*/*/*") if p.is_dir()):
            files = sorted(folder.glob("*.pkl"))
            if not files:
                self.empty_folders.append(folder)
                continue
            if self.data_in_use is not None:
                if len(files) != len(self.data_in_use):
                    raise ConfigError(f"{folder}: holds {len(files)} .pkl files but data_cfg.data_in_use has "
                                      f"{len(self.data_in_use)} entries")
                files = [f for f, use in zip(files, self.data_in_use) if use]
            subject, type_, view = folder.relative_to(self.root).parts
            self.sequences.append(SequenceInfo(subject, type_, view, str(files[0])))
        if not self.sequences:
            raise ConfigError(f"no sequences found under {self.root}: expected <subject>/<type>/<view>/*.pkl")

    def load(self, index: int) -> np.ndarray:
        return load_array(self.sequences[index].location)

    def header(self, index: int) -> tuple[tuple[int, ...], np.dtype]:
        """Declared shape and dtype of sequence ``index``, checked against the file's bytes, frames not built."""
        header = read_header(self.sequences[index].location)
        return header.shape, header.dtype
