"""SynthGait: determinism, the on-disk layout and marker, covariates, identity, and output-directory safety."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from gaitrec.data.dataset import PklSource, read_partition
from gaitrec.data.pickle_io import load_array
from gaitrec.synth import MARKER, TYPES, VIEWS, generate_dataset, render_views, write_preview
from gaitrec.synth.dataset import IN_PROGRESS, make_subject, make_walk
from gaitrec.synth.render import centred_placement, pretreat, render_walk
from gaitrec.synth.walk import body_shape

TINY = dict(subjects=3, frames=8, size=32, views=["000", "090"], types=["nm-01", "nm-02", "bg-01", "cl-01"],
            progress=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "tiny"
    return root, generate_dataset(root, **TINY)


def arrays(root):
    return {p.relative_to(root).as_posix(): load_array(p) for p in sorted(root.rglob("*.pkl"))}


def test_layout_partition_and_marker(tiny):
    root, summary = tiny
    for subject in ("001", "002", "003"):
        for walk_type in TINY["types"]:
            for view in TINY["views"]:
                assert (root / subject / walk_type / view / f"{view}.pkl").is_file()
    assert {p.name for p in root.iterdir()} == {"001", "002", "003", MARKER, "partition.json"}
    assert read_partition(root / "partition.json") == {"TRAIN_SET": ["001", "002"], "TEST_SET": ["003"]}
    marker = json.loads((root / MARKER).read_text())
    assert marker["format"] == "SynthGait" and marker["parameters"]["subjects"] == 3
    assert summary["sequences"] == 3 * 4 * 2 == len(PklSource(root).sequences)
    assert summary["subjects"] == 3 and summary["reused"] is False and summary["output"] == str(root)
    assert summary["frames"] == sum(len(a) for a in arrays(root).values())


def test_frames_are_binary_uint8_squares(tiny):
    root, _ = tiny
    for name, frames in arrays(root).items():
        assert frames.dtype == np.uint8, name
        assert frames.ndim == 3 and frames.shape[1:] == (32, 32), name
        assert 5 <= len(frames) <= 8, name  # a defect may empty a frame, never most of them
        assert set(np.unique(frames)) == {0, 255}, name
        # Pretreated: every frame spans the height (less a row lost to thresholding) and is centred.
        assert frames[:, :2].any(axis=(1, 2)).all() and frames[:, -2:].any(axis=(1, 2)).all(), name
        columns = frames.sum(axis=(0, 1), dtype=np.int64).cumsum()
        assert abs(int(np.argmax(columns > columns[-1] / 2)) - 16) <= 2, name


def test_same_seed_same_bytes_other_seed_other_data(tiny, tmp_path):
    root, _ = tiny
    again = tmp_path / "again"
    generate_dataset(again, **TINY)
    first, second = arrays(root), arrays(again)
    assert first.keys() == second.keys()
    assert all(np.array_equal(first[k], second[k]) for k in first)
    other = render_views(1, 0, "nm-01", ["090"], 8, 32)["090"]
    assert not np.array_equal(other, first["001/nm-01/090/090.pkl"])


def test_a_recording_does_not_depend_on_which_others_are_made():
    both = render_views(0, 4, "bg-02", ["000", "090"], 8, 32)
    alone = render_views(0, 4, "bg-02", ["090"], 8, 32)
    assert np.array_equal(both["090"], alone["090"])


def _area(walk, view="090"):
    """Silhouette pixels per frame of a walk, without defects, held at a fixed scale."""
    shape = body_shape(walk, 8)
    frames = render_walk(shape, view, centred_placement(shape, walk.subject.height, 96), np.random.default_rng(0),
                         artefacts=False)
    return frames, (frames > 0).sum(axis=(1, 2))


def test_bag_and_coat_change_the_silhouette_of_the_same_walk():
    walk = make_walk(0, 0, make_subject(0, 0), "nm-01")
    views = ("000", "054", "090", "126", "180")
    plain = {view: _area(walk, view) for view in views}

    def changed_fraction(covariate, view):
        changed, _ = _area(dataclasses.replace(walk, **covariate), view)
        base, base_area = plain[view]
        return (changed != base).sum(axis=(1, 2)) / base_area

    # A bag may hide behind its wearer in some views (all cameras film one side of the walk), not in all.
    for bag in ("backpack", "shoulder", "hand"):
        for side in (-1, 1):
            change = np.mean([changed_fraction(dict(bag=bag, bag_side=side), view) for view in views])
            assert change > 0.02, (bag, side)
    # A coat covers the thighs and widens the torso: more silhouette in every frame from every side.
    for view in views:
        assert (changed_fraction(dict(coat=True), view) > 0.05).all(), view
        coat_area = _area(dataclasses.replace(walk, coat=True), view)[1]
        assert (coat_area > 1.1 * plain[view][1]).all(), view


def test_conditions_in_the_dataset_differ_at_the_same_frame_and_view(tiny):
    root, _ = tiny
    data = arrays(root)
    for view in TINY["views"]:
        nm, bg, cl = (data[f"001/{t}/{view}/{view}.pkl"] for t in ("nm-01", "bg-01", "cl-01"))
        frames = min(len(nm), len(bg), len(cl))
        assert (nm[:frames] != bg[:frames]).mean() > 0.02
        assert (nm[:frames] != cl[:frames]).mean() > 0.02


def test_identity_is_stable_across_walks_and_differs_between_subjects():
    subject = make_subject(0, 0)
    walks = [make_walk(0, 0, subject, t) for t in TYPES]
    for walk in walks:  # the body is the subject's; only speed and posture vary a little
        assert walk.subject.height == subject.height and walk.subject.thigh == subject.thigh
        assert walk.subject.shoulder_width == subject.shoulder_width
        assert abs(walk.subject.cadence / subject.cadence - 1) < 0.06
        assert abs(walk.subject.stride / subject.stride - 1) < 0.06
    assert len({w.phase for w in walks}) == len(walks)  # two walks of one subject are never the same
    assert make_subject(0, 0) == subject  # drawn from the seed, not from a shared stream
    assert make_subject(0, 1).height != subject.height and make_subject(1, 0).height != subject.height


def test_refuses_a_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a SynthGait dataset"):
        generate_dataset(tmp_path, **TINY)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_reuses_the_same_dataset_and_refuses_other_parameters(tiny):
    root, _ = tiny
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*.pkl")}
    summary = generate_dataset(root, **TINY)
    assert summary["reused"] is True and summary["sequences"] == 24
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.pkl")} == before
    with pytest.raises(ValueError, match="other parameters"):
        generate_dataset(root, **dict(TINY, seed=1))


def test_an_interrupted_run_restarts_cleanly(tmp_path):
    settings = dict(TINY, subjects=2, types=["nm-01"])
    root = tmp_path / "data"
    generate_dataset(root, **settings)
    complete = arrays(root)
    # What an interrupted run leaves: the in-progress file, part of the sequences, no marker.
    (root / MARKER).unlink()
    (root / IN_PROGRESS).write_text("{}")
    (root / "002" / "nm-01" / "090" / "090.pkl").unlink()
    summary = generate_dataset(root, **settings)
    assert summary["reused"] is False and not (root / IN_PROGRESS).exists() and (root / MARKER).is_file()
    regenerated = arrays(root)
    assert regenerated.keys() == complete.keys()
    assert all(np.array_equal(regenerated[k], complete[k]) for k in complete)


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown views"):
        generate_dataset(tmp_path / "a", subjects=1, views=["045"], progress=False)
    with pytest.raises(ValueError, match="unknown types"):
        generate_dataset(tmp_path / "b", subjects=1, types=["nm-07"], progress=False)
    with pytest.raises(ValueError, match="subjects"):
        generate_dataset(tmp_path / "c", subjects=0, progress=False)
    assert not (tmp_path / "a").exists()


def test_raw_output_is_casia_b_png_frames(tmp_path):
    root = tmp_path / "raw"
    summary = generate_dataset(root, subjects=2, frames=6, views=[90], types=["cl-01"], raw=True,
                               raw_size=(120, 160), progress=False)
    folder = root / "001" / "cl-01" / "090"
    assert sorted(p.name for p in folder.iterdir()) == [f"{i:03d}.png" for i in range(1, 7)]
    assert not list(root.rglob("*.pkl"))
    assert summary["frames"] == 12 and (root / "partition.json").is_file() and (root / MARKER).is_file()
    frames = np.stack([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.iterdir())])
    assert frames.dtype == np.uint8 and frames.shape == (6, 120, 160)
    assert set(np.unique(frames)) <= {0, 255} and (frames > 0).any(axis=(1, 2)).sum() >= 5
    # The walker crosses the frame from the side view, and pretreats into a normal sequence.
    columns = [np.flatnonzero(f.any(axis=0)).mean() for f in frames if f.any()]
    assert abs(columns[-1] - columns[0]) > 5
    assert pretreat(frames, 32).shape[1:] == (32, 32)


def test_pretreat_centres_and_drops_empty_frames():
    frame = np.zeros((100, 80), np.uint8)
    frame[20:84, 50:66] = 255  # 64 rows: the resize keeps the size
    out = pretreat(np.stack([frame, np.zeros_like(frame)]), 64)
    assert out.shape == (1, 64, 64)
    columns = np.flatnonzero(out[0].any(axis=0))
    assert columns[0] == 24 and columns[-1] == 39  # 16 columns centred on the window's middle


def test_preview_is_a_png(tmp_path):
    path = write_preview(tmp_path / "sheet.png", subjects=1, views=("000", "090"), types=("nm-01", "cl-01"),
                         frames=8, size=32)
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 200
    assert VIEWS[5] == "090" and len(VIEWS) == 11 and len(TYPES) == 10


def test_raw_output_through_gaitrec_pretreat_gives_the_pretreated_layout(tmp_path):
    from gaitrec.cli import main
    from gaitrec.data.pickle_io import load_array

    options = dict(subjects=2, frames=8, views=["000", "090"], types=["nm-01", "bg-01"], progress=False)
    generate_dataset(tmp_path / "raw", raw=True, raw_size=(240, 320), **options)
    generate_dataset(tmp_path / "direct", size=64, **options)
    assert main(["pretreat", str(tmp_path / "raw"), str(tmp_path / "pretreated"), "--dataset", "casia-b",
                 "--workers", "1", "--quiet"]) == 0
    layout = lambda root: sorted(p.relative_to(root).as_posix() for p in root.glob("*/*/*/*.pkl"))  # noqa: E731
    assert layout(tmp_path / "pretreated") == layout(tmp_path / "direct")
    for rel in layout(tmp_path / "direct"):
        ours, direct = load_array(tmp_path / "pretreated" / rel), load_array(tmp_path / "direct" / rel)
        assert ours.dtype == np.uint8 and ours.shape[1:] == (64, 64)
        assert abs(len(ours) - len(direct)) <= 2  # the same walk, up to frames the artefacts emptied


def test_preview_shows_the_chosen_views_and_types_without_empty_tiles(tmp_path):
    from gaitrec.cli import main
    from gaitrec.synth.preview import GAP, preview_sheet

    size = 32
    sheet, labels, columns = preview_sheet(size=size, subjects=2, views=("000", "090"), types=("nm-01", "cl-01"),
                                           frames=8)
    assert columns == ["view 000", "view 090"]
    assert labels == ["001 nm-01", "001 cl-01", "002 nm-01", "002 cl-01", "001 nm-01 090 walking"]
    tile = size + GAP
    assert sheet.shape == (len(labels) * tile + GAP, 2 * tile + GAP)
    for r in range(len(labels)):
        for c in range(2):  # every tile holds a silhouette
            assert sheet[GAP + r * tile:GAP + r * tile + size, GAP + c * tile:GAP + c * tile + size].max() == 255
    assert main(["synth", "--preview", str(tmp_path / "p.png"), "--views", "000,090", "--types", "nm-01",
                 "--subjects", "1", "--frames", "8", "--size", "32"]) == 0
    image = cv2.imread(str(tmp_path / "p.png"))
    assert image is not None and image.shape[1] < 400  # two columns wide, not eight
    assert main(["synth", "--preview", str(tmp_path / "q.png"), "--views", "045"]) == 2


SMALL = dict(subjects=2, frames=6, size=32, views=["090"], types=["nm-01"], progress=False)


@pytest.mark.slow
def test_two_writers_of_one_directory_produce_one_dataset(tmp_path):
    # Two processes race for one output: one writes, the other waits for the lock and reuses the result.
    script = ("import sys, json; from gaitrec.synth import generate_dataset; "
              f"print(json.dumps(generate_dataset(sys.argv[1], **{SMALL!r})))")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "data")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(r["reused"] for r in results) == [False, True]
    assert not list(tmp_path.glob(".data.*.tmp"))
    assert sorted(os.listdir(tmp_path)) == [".data.lock", "data"]


def test_reuse_verifies_every_file_and_stale_temporaries_are_removed(tmp_path):
    root = tmp_path / "data"
    (tmp_path / ".data.abc123.tmp").mkdir()  # a killed run's temporary directory
    generate_dataset(root, **SMALL)
    assert not (tmp_path / ".data.abc123.tmp").exists()
    assert oct((root / "001").stat().st_mode & 0o777) == oct(0o777 & ~_umask())
    pkl = next(root.rglob("*.pkl"))
    data = bytearray(pkl.read_bytes())
    data[-3] ^= 0xFF
    pkl.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{pkl}: changed or corrupt"):
        generate_dataset(root, **SMALL)
    pkl.unlink()
    with pytest.raises(ValueError, match=f"{pkl}: missing from the SynthGait dataset"):
        generate_dataset(root, **SMALL)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
