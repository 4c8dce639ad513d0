"""Pretreatment: the alignment on frames whose result is known by hand, raw layouts, reporting, resuming."""
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from gaitrec.data.pickle_io import load_array, save_array
from gaitrec.data.pretreat import align_frame, format_summary, list_raw_sequences, pretreat
from gaitrec.data.store import StoreSource


def rectangle(height=128, width=88, rows=(32, 96), cols=(30, 50), value=255):
    frame = np.zeros((height, width), np.uint8)
    frame[rows[0]:rows[1], cols[0]:cols[1]] = value
    return frame


# A 64-row, 20-column block: cropping leaves 64 x 88, so the resize keeps the size; the mass passes half at
# column 40 (10 of 20 columns is exactly half, not more), the window is [8, 72) and the block lands on 22..41.
CENTRED = np.zeros((64, 64), np.uint8)
CENTRED[:, 22:42] = 255


def write_frames(folder: Path, frames, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / (names[i] if names else f"{i:03d}.png")), frame)


def test_rectangle_is_cropped_and_centred():
    out, reason = align_frame(rectangle())
    assert reason is None and out.dtype == np.uint8
    np.testing.assert_array_equal(out, CENTRED)


def test_rectangle_at_the_left_edge_is_padded_to_the_same_frame():
    # centre 10, window [-22, 42) -> pad 32 zero columns each side; the block still lands on 22..41
    out, _ = align_frame(rectangle(cols=(0, 20)))
    np.testing.assert_array_equal(out, CENTRED)
    out, _ = align_frame(rectangle(cols=(68, 88)))  # right edge: window [46, 110) passes width 88
    np.testing.assert_array_equal(out, CENTRED)


def test_downscaled_rectangle_stays_symmetric_about_the_window_centre():
    # 128 rows cropped and halved to 64: every row alike; block columns 60..99 map to 29.75..49.75, centred on
    # 39.5, so the centre is 40, the window [8, 72), and the output is mirror-symmetric about 31.5.
    out, _ = align_frame(rectangle(height=256, width=176, rows=(64, 192), cols=(60, 100)))
    assert out.shape == (64, 64)
    assert (out == out[0]).all()
    np.testing.assert_array_equal(out, out[:, ::-1])
    assert (out[:, 23:41] == 255).all() and (out[:, :18] == 0).all() and (out[:, 46:] == 0).all()


def test_frames_with_pixel_sum_up_to_10000_are_dropped():
    frame = np.zeros((64, 64), np.uint8)
    frame[28:36, 30:35] = 250  # 40 pixels, sum exactly 10000
    assert align_frame(frame) == (None, "no data")
    frame[30, 32] = 251  # 10001
    out, reason = align_frame(frame)
    assert reason is None and out.shape == (64, 64)


def test_frame_whose_mass_is_in_column_zero_has_no_centre():
    frame = np.zeros((64, 64), np.uint8)
    frame[:, 0] = 255
    assert align_frame(frame) == (None, "no centre")


def test_img_size_128():
    out, _ = align_frame(rectangle(height=256, width=176, rows=(64, 192), cols=(60, 100)), img_size=128)
    # 128 rows already: no resize; centre 80 (20 of 40 columns is half), window [16, 144) -> block at 44..83
    expected = np.zeros((128, 128), np.uint8)
    expected[:, 44:84] = 255
    np.testing.assert_array_equal(out, expected)


def test_casia_b_layout_to_pkl(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    for subject in ("001", "002"):
        for type_ in ("nm-01", "cl-01"):
            write_frames(raw / subject / type_ / "090", [rectangle()] * 6)
    cv2.imwrite(str(raw / "001" / "nm-01" / "090" / "gei.png"), rectangle(cols=(10, 80)))  # ignored
    summary = pretreat(raw, out, "casia-b", workers=1, progress=False)
    assert summary["written"] == 4 and summary["skipped"] == [] and summary["frames_written"] == 24
    for subject in ("001", "002"):
        for type_ in ("nm-01", "cl-01"):
            frames = load_array(out / subject / type_ / "090" / "090.pkl")
            assert frames.shape == (6, 64, 64) and frames.dtype == np.uint8
            np.testing.assert_array_equal(frames[3], CENTRED)


def test_frames_keep_sorted_name_order(tmp_path):
    raw = tmp_path / "raw"
    shifted = [rectangle(cols=(30, 50), rows=(32, 96 - 2 * i)) for i in range(3)]
    write_frames(raw / "001" / "nm-01" / "000", shifted[::-1], names=["c.png", "b.png", "a.png"])
    pretreat(raw, tmp_path / "out", workers=1, progress=False)
    frames = load_array(tmp_path / "out" / "001" / "nm-01" / "000" / "000.pkl")
    np.testing.assert_array_equal(frames, np.stack([align_frame(f)[0] for f in shifted]))


def test_sequence_without_valid_frame_is_reported_and_short_one_warned(tmp_path, caplog):
    raw, out = tmp_path / "raw", tmp_path / "out"
    empty = np.zeros((128, 88), np.uint8)
    write_frames(raw / "001" / "nm-01" / "000", [empty, empty, rectangle(cols=(0, 1), rows=(0, 128))])
    write_frames(raw / "001" / "nm-02" / "000", [rectangle()] * 3)
    write_frames(raw / "001" / "nm-03" / "000", [rectangle()] * 5)
    with caplog.at_level(logging.WARNING, logger="gaitrec.data.pretreat"):
        summary = pretreat(raw, out, workers=1, progress=False)
    assert summary["skipped"] == [{"sequence": "001/nm-01/000", "reason": "no valid frame (1 no centre, 2 no data)"}]
    assert summary["short"] == [{"sequence": "001/nm-02/000", "frames": 3}]
    assert summary["written"] == 2 and summary["frames_dropped"] == {"no data": 2, "no centre": 1}
    assert not (out / "001" / "nm-01").exists()
    assert "001/nm-01/000 skipped: no valid frame" in caplog.text
    assert "001/nm-02/000 has only 3 valid frames" in caplog.text
    text = format_summary(summary)
    assert "1 skipped" in text and "001/nm-01/000: no valid frame" in text


def test_rerun_resumes_an_interrupted_run(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    for view in ("000", "018", "036"):
        write_frames(raw / "001" / "nm-01" / view, [rectangle()] * 5)
    pretreat(raw, out, workers=1, progress=False)
    # An interrupted run: one sequence finished (marked so we see it is not redone), one never written and
    # a torn temporary file beside it.
    sentinel = np.full((1, 64, 64), 7, np.uint8)
    save_array(out / "001" / "nm-01" / "000" / "000.pkl", sentinel)
    (out / "001" / "nm-01" / "018" / "018.pkl").unlink()
    (out / "001" / "nm-01" / "018" / ".018.pkl.abc123.tmp").write_bytes(b"torn")
    summary = pretreat(raw, out, workers=1, progress=False)
    assert summary["already_done"] == 2 and summary["written"] == 1
    np.testing.assert_array_equal(load_array(out / "001" / "nm-01" / "000" / "000.pkl"), sentinel)
    assert load_array(out / "001" / "nm-01" / "018" / "018.pkl").shape == (5, 64, 64)
    assert sorted(p.name for p in (out / "001" / "nm-01" / "018").iterdir()) == ["018.pkl"]


def test_workers_give_the_same_output(tmp_path):
    raw = tmp_path / "raw"
    for i, view in enumerate(("000", "018", "036", "054")):
        write_frames(raw / "001" / "nm-01" / view, [rectangle(cols=(20 + i, 40 + 2 * i))] * 5)
    a = pretreat(raw, tmp_path / "a", workers=1, progress=False)
    b = pretreat(raw, tmp_path / "b", workers=2, progress=False)
    assert a["written"] == b["written"] == 4
    for pkl in (tmp_path / "a").rglob("*.pkl"):
        assert pkl.read_bytes() == (tmp_path / "b" / pkl.relative_to(tmp_path / "a")).read_bytes()


def test_oumvlp_folders_are_rearranged_to_subject_seq_view(tmp_path):
    raw = tmp_path / "raw"
    write_frames(raw / "Silhouette_015-01" / "00003", [rectangle()] * 5, names=[f"{i:04d}.png" for i in range(5)])
    write_frames(raw / "Silhouette_270-00" / "00003", [rectangle()] * 5)
    assert sorted(list_raw_sequences(raw, "OUMVLP")) == [("00003", "00", "270"), ("00003", "01", "015")]
    pretreat(raw, tmp_path / "out", "ou-mvlp", workers=1, progress=False)
    assert load_array(tmp_path / "out" / "00003" / "01" / "015" / "015.pkl").shape == (5, 64, 64)
    (raw / "stray").mkdir()
    with pytest.raises(ValueError, match="Silhouette_<view>-<seq>"):
        list_raw_sequences(raw, "OUMVLP")


def test_grew_layout_and_frames_kept_as_read(tmp_path):
    raw = tmp_path / "raw"
    frames = [np.full((64, 44), i, np.uint8) for i in range(4)]  # no alignment: even empty frames stay
    write_frames(raw / "train" / "00001" / "seqA", frames)
    write_frames(raw / "test" / "gallery" / "00002" / "xB", frames)
    write_frames(raw / "test" / "gallery" / "00002" / "aA", frames)
    write_frames(raw / "test" / "probe" / "pr0b", frames)
    write_frames(raw / "distractor" / "d1", frames)
    assert sorted(list_raw_sequences(raw, "GREW")) == [
        ("00001train", "00", "seqA"), ("00002", "01", "aA"), ("00002", "02", "xB"), ("probe", "03", "pr0b")]
    summary = pretreat(raw, tmp_path / "out", "grew", workers=1, progress=False)
    assert summary["written"] == 4
    got = load_array(tmp_path / "out" / "probe" / "03" / "pr0b" / "pr0b.pkl")
    np.testing.assert_array_equal(got, np.stack(frames))


def test_output_straight_into_a_store(tmp_path):
    raw = tmp_path / "raw"
    write_frames(raw / "001" / "nm-01" / "000", [rectangle()] * 5)
    write_frames(raw / "002" / "bg-02" / "180", [rectangle(cols=(0, 20))] * 6)
    summary = pretreat(raw, tmp_path / "store", output_format="store", workers=1, progress=False)
    assert summary["written"] == 2
    source = StoreSource(tmp_path / "store")
    assert [(s.subject, s.type, s.view) for s in source.sequences] == [("001", "nm-01", "000"), ("002", "bg-02", "180")]
    np.testing.assert_array_equal(source.load(1), np.stack([CENTRED] * 6))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "store"]  # staging folder removed
    with pytest.raises(FileExistsError, match="already exists"):
        pretreat(raw, tmp_path / "store", output_format="store", workers=1, progress=False)


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'casia': .*did you mean CASIA-B"):
        pretreat(tmp_path, tmp_path / "out", "casia")
    with pytest.raises(ValueError, match="raw dataset folder not found"):
        pretreat(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(ValueError, match="no PNG frames"):
        pretreat(tmp_path, tmp_path / "out", progress=False)
    write_frames(tmp_path / "raw" / "001", [rectangle()])
    with pytest.raises(ValueError, match="expected frames at <subject>/<type>/<view>/<frame>.png"):
        pretreat(tmp_path / "raw", tmp_path / "out", progress=False)
