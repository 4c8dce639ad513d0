"""Shared fixtures: small datasets written in OpenGait's layout."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from gaitrec.data.pickle_io import save_array

# Tests run beside other work on few cores: one thread each, here and in every `gaitrec` subprocess (the
# CLI reads GAITREC_THREADS), so that timings do not depend on oversubscription.
torch.set_num_threads(1)
os.environ["GAITREC_THREADS"] = "1"


def write_constructed_dataset(root: Path, subjects=("001", "002", "003"), types=("nm-01", "nm-02"),
                              views=("000", "090"), frames=6, size=16) -> Path:
    """Sequence (s, t, v) holds frames whose every pixel equals a code of (s, t, v, frame): tests can tell
    exactly which sequence and frame a sample came from."""
    for si, s in enumerate(subjects):
        for ti, t in enumerate(types):
            for vi, v in enumerate(views):
                arr = np.zeros((frames, size, size), np.uint8)
                for f in range(frames):
                    arr[f] = (si * 50 + ti * 20 + vi * 10 + f) % 256
                save_array(root / s / t / v / f"{v}.pkl", arr)
    return root


@pytest.fixture
def constructed_dataset(tmp_path) -> Path:
    return write_constructed_dataset(tmp_path / "data")


@pytest.fixture
def partition_file(tmp_path) -> Path:
    path = tmp_path / "partition.json"
    path.write_text(json.dumps({"TRAIN_SET": ["001", "002"], "TEST_SET": ["003"]}))
    return path
