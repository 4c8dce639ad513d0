"""Packed store: lossless pack/unpack, readers in several processes, and damage detected on opening."""
import json
import multiprocessing
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from gaitrec.data.dataset import PklSource, open_source
from gaitrec.data.pickle_io import load_array, save_array
from gaitrec.data.store import StoreError, StoreSource, index_checksum, is_store, pack, unpack, verify_store


def make_pkl_dataset(root, seed=0):
    """Five sequences of different lengths (one with 128 x 128 frames), as OpenGait lays them out."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for (subject, type_, view), length in {("001", "nm-01", "000"): 7, ("001", "nm-01", "018"): 3,
                                           ("001", "bg-02", "090"): 11, ("002", "cl-01", "180"): 1,
                                           ("010", "nm-06", "036"): 4}.items():
        size = 128 if subject == "010" else 64
        array = rng.integers(0, 256, (length, size, size), dtype=np.uint8)
        save_array(root / subject / type_ / view / f"{view}.pkl", array)
        arrays[(subject, type_, view)] = array
    return arrays


@pytest.fixture
def store(tmp_path):
    arrays = make_pkl_dataset(tmp_path / "pkl")
    stats = pack(tmp_path / "pkl", tmp_path / "store", progress=False)
    assert stats == {"sequences": 5, "frames": 26, "bytes": sum(a.size for a in arrays.values())}
    return tmp_path / "store", arrays


def test_store_reads_what_was_packed(store):
    root, arrays = store
    source = StoreSource(root)
    assert is_store(root) and isinstance(open_source(root), StoreSource)
    assert [(s.subject, s.type, s.view) for s in source.sequences] == sorted(arrays)
    for i, info in enumerate(source.sequences):
        frames = source.load(i)
        np.testing.assert_array_equal(frames, arrays[(info.subject, info.type, info.view)])
        assert frames.dtype == np.uint8 and source.frame_count(i) == len(frames)
        assert not frames.flags.writeable  # a view into the map; callers copy before modifying
    verify_store(root)


def test_pack_unpack_round_trip_is_identical(store, tmp_path):
    root, _ = store
    unpack(root, tmp_path / "back", progress=False)
    original = sorted(p.relative_to(tmp_path / "pkl") for p in (tmp_path / "pkl").rglob("*"))
    restored = sorted(p.relative_to(tmp_path / "back") for p in (tmp_path / "back").rglob("*"))
    assert original == restored
    for rel in original:
        if rel.suffix == ".pkl":
            a, b = load_array(tmp_path / "pkl" / rel), load_array(tmp_path / "back" / rel)
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
            assert (tmp_path / "pkl" / rel).read_bytes() == (tmp_path / "back" / rel).read_bytes()
    pack(tmp_path / "back", tmp_path / "store2", progress=False)
    assert (root / "frames.u8").read_bytes() == (tmp_path / "store2" / "frames.u8").read_bytes()
    assert (root / "store.json").read_bytes() == (tmp_path / "store2" / "store.json").read_bytes()


def test_refuses_to_overwrite(store, tmp_path):
    root, _ = store
    with pytest.raises(FileExistsError, match="already exists"):
        pack(tmp_path / "pkl", root, progress=False)
    with pytest.raises(FileExistsError, match="already exists"):
        unpack(root, tmp_path / "pkl", progress=False)
    (tmp_path / "empty").mkdir()  # an empty folder may be filled
    pack(tmp_path / "pkl", tmp_path / "empty", progress=False)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_pack_refuses_what_a_store_cannot_hold(tmp_path):
    save_array(tmp_path / "a" / "001" / "nm-01" / "000" / "000.pkl", np.zeros((2, 17, 3)))
    with pytest.raises(ValueError, match="000.pkl: a store holds uint8 \\[T, H, W\\] silhouettes, found float64"):
        pack(tmp_path / "a", tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists() and [p.name for p in tmp_path.iterdir()] == ["a"]
    save_array(tmp_path / "b" / "001" / "nm-01" / "000" / "000.pkl", np.zeros((2, 4, 4), np.uint8))
    save_array(tmp_path / "b" / "001" / "nm-01" / "000" / "pose.pkl", np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="holds 2 .pkl files"):
        pack(tmp_path / "b", tmp_path / "s", progress=False)


class _Frames(Dataset):
    def __init__(self, source):
        self.source = source

    def __len__(self):
        return len(self.source.sequences)

    def __getitem__(self, i):
        frames = self.source.load(i)
        return i, torch.from_numpy(frames[: 1].copy()), int(frames.sum(dtype=np.int64))


def test_dataloader_workers_read_concurrently(store):
    root, arrays = store
    source = StoreSource(root)
    source.load(0)  # the parent's map must not be what the workers use
    loader = DataLoader(_Frames(source), batch_size=None, num_workers=2, shuffle=False,
                        multiprocessing_context=multiprocessing.get_context("fork"))
    seen = {}
    for _ in range(2):
        for i, first, total in loader:
            info = source.sequences[int(i)]
            expected = arrays[(info.subject, info.type, info.view)]
            assert total == int(expected.sum(dtype=np.int64))
            np.testing.assert_array_equal(first.numpy(), expected[:1])
            seen[int(i)] = True
    assert sorted(seen) == list(range(5))


def test_source_pickles_without_its_map(store):
    # What a spawned DataLoader worker receives: the index, not the parent's memory map.
    root, arrays = store
    source = StoreSource(root)
    source.load(0)
    copy = pickle.loads(pickle.dumps(source))
    assert copy._flat is None
    for i, info in enumerate(copy.sequences):
        np.testing.assert_array_equal(copy.load(i), arrays[(info.subject, info.type, info.view)])


def test_truncated_frames_file_is_detected(store):
    root, _ = store
    data = (root / "frames.u8").read_bytes()
    (root / "frames.u8").write_bytes(data[:-100])
    with pytest.raises(StoreError, match=f"frames.u8: truncated, {len(data) - 100} bytes but the index expects "
                                         f"{len(data)}"):
        StoreSource(root)
    with pytest.raises(StoreError, match="truncated"):
        open_source(root)  # never falls back to reading the folder as .pkl files


def test_missing_frames_file_and_corrupt_index_are_detected(store):
    root, _ = store
    index = json.loads((root / "store.json").read_text())

    def write(changed):  # with a matching checksum, so that the checks behind it are reached
        changed = {k: v for k, v in changed.items() if k != "index_crc32"}
        (root / "store.json").write_text(json.dumps({**changed, "index_crc32": index_checksum(changed)}))

    write({**index, "version": 99})
    with pytest.raises(StoreError, match="store version 99, this gaitrec reads versions 1, 2"):
        StoreSource(root)
    write({**index, "format": "something"})
    with pytest.raises(StoreError, match="not a gaitrec store index"):
        StoreSource(root)
    rows = [list(r) for r in index["sequences"]]
    rows[2][5] += 1  # one more frame than stored
    write({**index, "sequences": rows})
    with pytest.raises(StoreError, match="starts at byte"):
        StoreSource(root)
    write({**index, "total_frames": 25})
    with pytest.raises(StoreError, match="header says"):
        StoreSource(root)
    (root / "store.json").write_text('{"format": "gaitrec-store", "vers')
    with pytest.raises(StoreError, match="corrupt index, not valid JSON"):
        StoreSource(root)
    write(index)
    (root / "frames.u8").unlink()
    with pytest.raises(StoreError, match="frame file frames.u8 missing"):
        StoreSource(root)


def test_flipped_byte_is_found_by_verify(store):
    root, _ = store
    data = bytearray((root / "frames.u8").read_bytes())
    data[1234] ^= 0xFF
    (root / "frames.u8").write_bytes(bytes(data))
    source = StoreSource(root)  # same size: opening is fine, the first read of that sequence is not
    with pytest.raises(StoreError, match=r"store\[001/bg-02/090\]: frames corrupt"):
        source.load(0)
    assert len(verify_store(root)) == 1


@pytest.mark.slow
def test_every_single_bit_flip_in_the_index_is_detected(store):
    root, _ = store
    original = (root / "store.json").read_bytes()
    for position in range(0, len(original), 7):
        for bit in (0, 3, 6):
            data = bytearray(original)
            data[position] ^= 1 << bit
            (root / "store.json").write_bytes(bytes(data))
            with pytest.raises(StoreError):
                StoreSource(root)
    (root / "store.json").write_bytes(original)
    StoreSource(root)


def test_data_verify_and_unpack_refuse_a_corrupt_store(store, tmp_path, capsys):
    from gaitrec.cli import main
    root, _ = store
    assert main(["data", "verify", str(root), "--quiet"]) == 0
    assert main(["data", "verify", str(tmp_path / "pkl"), "--quiet"]) == 0
    data = bytearray((root / "frames.u8").read_bytes())
    data[-5] ^= 0x01
    (root / "frames.u8").write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["data", "verify", str(root), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "corrupt: " in err and "010/nm-06/036]: frames corrupt" in err and "1 of 5 sequences" in err
    assert main(["unpack", str(root), str(tmp_path / "out"), "--quiet"]) == 2
    assert "nothing unpacked" in capsys.readouterr().err and not (tmp_path / "out").exists()
    (tmp_path / "pkl" / "002" / "cl-01" / "180" / "180.pkl").write_bytes(b"\x80\x04junk")
    assert main(["data", "verify", str(tmp_path / "pkl"), "--quiet"]) == 2
    assert "180.pkl: corrupt or unreadable pickle" in capsys.readouterr().err


def test_pkl_source_and_store_agree(store, tmp_path):
    root, _ = store
    pkl, packed = PklSource(tmp_path / "pkl"), StoreSource(root)
    assert [s[:3] for s in map(lambda s: (s.subject, s.type, s.view), pkl.sequences)] == \
           [(s.subject, s.type, s.view) for s in packed.sequences]
    for i in range(len(packed)):
        np.testing.assert_array_equal(pkl.load(i), packed.load(i))


def test_killed_packs_leave_nothing_behind_and_a_running_one_is_not_disturbed(tmp_path):
    from gaitrec.errors import RunError
    from gaitrec.locking import OutputLock
    make_pkl_dataset(tmp_path / "pkl")
    (tmp_path / ".store.k1ll3d.tmp").mkdir()  # the temporary folder of a killed pack
    pack(tmp_path / "pkl", tmp_path / "store", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkl", "store"]
    holder = OutputLock(tmp_path / ".other.lock", "other")
    try:
        with pytest.raises(RunError, match="other is in use by pid"):
            pack(tmp_path / "pkl", tmp_path / "other", progress=False)
    finally:
        holder.release()
