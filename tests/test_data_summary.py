"""dataset_info counts, protocol gaps and partition mismatches on a constructed dataset; the contact sheet."""
import json

import cv2
import numpy as np
import pytest

from gaitrec.data.summary import dataset_info, format_info, write_contact_sheet
from gaitrec.data.pickle_io import save_array
from gaitrec.data.store import pack

# subject -> {(type, view): frames}
LAYOUT = {
    "001": {("nm-01", "000"): 10, ("nm-01", "018"): 20, ("bg-01", "000"): 30, ("bg-01", "018"): 40},
    "002": {("nm-01", "000"): 3, ("bg-01", "018"): 50},
    "099": {("nm-01", "000"): 12},
}


@pytest.fixture
def pkl_root(tmp_path):
    rng = np.random.default_rng(0)
    for subject, sequences in LAYOUT.items():
        for (type_, view), length in sequences.items():
            save_array(tmp_path / "pkl" / subject / type_ / view / f"{view}.pkl",
                       rng.integers(0, 256, (length, 64, 64), dtype=np.uint8))
    return tmp_path / "pkl"


def check_counts(info):
    assert info["subjects"] == 3 and info["sequences"] == 7
    assert info["per_type"] == {"bg-01": 3, "nm-01": 4}
    assert info["per_view"] == {"000": 4, "018": 3}
    assert info["frames"] == {"total": 165, "min": 3, "mean": 165 / 7, "max": 50}
    assert info["frame_shapes"] == {"64x64": 7}
    assert info["short_sequences"] == ["002/nm-01/000"]


def test_counts_and_gaps_against_given_types_and_views(pkl_root):
    info = dataset_info(pkl_root, protocol_types=["nm-01", "bg-01"], protocol_views=["000", "018"])
    check_counts(info)
    assert info["format"] == "pkl"
    assert info["missing"] == ["002/bg-01/000", "002/nm-01/018", "099/bg-01/000", "099/bg-01/018", "099/nm-01/018"]
    assert "5 subject/type/view combinations missing" in info["warnings"]


def test_casia_b_grid_is_recognised(pkl_root):
    info = dataset_info(pkl_root)
    assert info["protocol"] == "CASIA-B"
    assert len(info["expected"]["types"]) == 10 and len(info["expected"]["views"]) == 11
    assert len(info["missing"]) == 3 * 110 - 7
    assert "001/cl-02/180" in info["missing"]


def test_partition_mismatches(pkl_root, tmp_path):
    partition = tmp_path / "part.json"
    partition.write_text(json.dumps({"TRAIN_SET": ["001"], "TEST_SET": ["002", "075"]}))
    info = dataset_info(pkl_root, partition=partition)
    report = info["partition"]
    assert report["not_in_partition"] == ["099"]
    assert report["missing_on_disk"] == {"TRAIN_SET": [], "TEST_SET": ["075"]}
    assert report["on_disk"] == {"TRAIN_SET": 1, "TEST_SET": 1}
    text = format_info(info)
    assert "on disk, in no partition set: 099" in text
    assert "TEST_SET subjects missing on disk: 075" in text
    assert "fewer than 5 frames: 002/nm-01/000" in text


def test_store_gives_the_same_info(pkl_root, tmp_path):
    pack(pkl_root, tmp_path / "store", progress=False)
    info = dataset_info(tmp_path / "store", protocol_types=["nm-01", "bg-01"], protocol_views=["000", "018"])
    check_counts(info)
    assert info["format"] == "store" and len(info["missing"]) == 5


def test_unknown_protocol_is_an_error(pkl_root):
    with pytest.raises(ValueError, match="no type/view grid known for dataset 'GREW'"):
        dataset_info(pkl_root, dataset="GREW")


@pytest.mark.slow  # matplotlib
def test_contact_sheet(pkl_root, tmp_path):
    path = write_contact_sheet(pkl_root, tmp_path / "sheet.png", n=4, seed=1, frames_per_sequence=3)
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
