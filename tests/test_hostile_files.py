"""Crafted data files: each is refused with one error naming it, without running code, allocating what it
declares or crashing; malformed sequences get a defined outcome in ``data info`` and in training."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from gaitrec.cli import main
from gaitrec.data.dataset import GaitDataset, PklSource, check_sequence
from gaitrec.data.pickle_io import load_array, read_header, save_array
from gaitrec.errors import DataError

sys.path.insert(0, str(Path(__file__).parent))
import hostile  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # hostile files read in child processes


def test_every_hostile_pickle_is_refused_within_a_small_memory_limit(tmp_path):
    # In a child with 1 GiB of address space: an allocation the file declares would die there, not pass.
    script = f"""
import resource, sys, json
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
sys.path.insert(0, {str(ROOT / 'tests')!r})
import hostile
from gaitrec.data.pickle_io import load_array, read_header
out = {{}}
for name, path in hostile.write_hostile_pickles({str(tmp_path)!r}).items():
    for reader in (load_array, read_header):
        try:
            reader(path)
            out[name] = "loaded"
        except ValueError as err:
            out[name] = str(err)
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert len(results) == len(hostile.hostile_pickles())
    for name, message in results.items():
        assert message.startswith(str(tmp_path / f"{name}.pkl") + ": "), (name, message)
    assert not (tmp_path / "PWNED").exists()
    assert "latin1" in results["codecs_os_system"]
    assert "needs 2147483648 bytes, the file holds 8" in results["declares_2_gb"]
    assert "not a plain numeric type" in results["object_dtype_flags_cleared"]


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_plain_arrays_of_every_numeric_dtype_and_order_still_load(tmp_path, protocol):
    import pickle
    for array in (np.arange(24, dtype=">f4").reshape(2, 3, 4), np.asfortranarray(np.eye(3, dtype=np.uint8)),
                  np.zeros((0, 4), bool), np.array(7, np.int64), np.arange(70000, dtype=np.float64)):
        path = tmp_path / "a.pkl"
        path.write_bytes(pickle.dumps(array, protocol=protocol))
        loaded = load_array(path)
        assert loaded.shape == array.shape and np.array_equal(loaded, array) and loaded.flags.writeable
        assert loaded.dtype == array.dtype.newbyteorder("=")
        assert read_header(path).shape == array.shape


BAD_SEQUENCES = {
    "zero_frames": np.zeros((0, 8, 8), np.uint8),
    "two_d": np.zeros((8, 8), np.uint8),
    "five_d": np.zeros((1, 2, 2, 8, 8), np.uint8),
    "nan": np.full((2, 8, 8), np.nan, np.float32),
    "negative": np.full((2, 8, 8), -3, np.int16),
    "too_large": np.full((2, 8, 8), 300.0, np.float32),
    "complex": np.zeros((2, 8, 8), np.complex64),
    "string": np.full((2, 8, 8), "a"),
}


def _write_bad(root: Path, name: str, array: np.ndarray) -> Path:
    import pickle
    path = root / "009" / name / "000" / "000.pkl"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(array, protocol=4))  # save_array would refuse nothing, but be explicit
    return path


@pytest.mark.parametrize("name", BAD_SEQUENCES)
def test_bad_sequences_are_named_by_data_info_and_refused_or_skipped_by_training(constructed_dataset, name, capsys):
    path = _write_bad(constructed_dataset, name, BAD_SEQUENCES[name])
    assert main(["data", "info", str(constructed_dataset)]) == 2
    captured = capsys.readouterr()
    assert f"bad sequence: {path}" in captured.out and str(path) in captured.err
    header_detectable = name not in ("nan", "negative", "too_large")
    if header_detectable:  # shape and dtype: refused when the dataset is listed
        with pytest.raises(DataError, match=str(path)):
            GaitDataset(PklSource(constructed_dataset))
    else:  # values: refused when the sequence is read
        dataset = GaitDataset(PklSource(constructed_dataset))
        index = [i for i in range(len(dataset)) if dataset.info(i).location == str(path)][0]
        with pytest.raises(DataError, match=str(path)):
            dataset.frames(index)
    with pytest.warns(UserWarning, match=f"skipped: {path}"):
        assert len(GaitDataset(PklSource(constructed_dataset), skip_bad=True)) == 12


def test_bool_and_float_silhouettes_are_converted_with_a_warning():
    with pytest.warns(UserWarning, match="bool silhouettes converted"):
        assert check_sequence(np.ones((1, 2, 2), bool), "x.pkl").max() == 255
    with pytest.warns(UserWarning, match="within 0..1 converted to uint8 \\(x255\\)"):
        out = check_sequence(np.full((1, 2, 2), 0.5, np.float32), "x.pkl")
    assert out.dtype == np.uint8 and out.max() == 128
    with pytest.warns(UserWarning, match="float64 silhouettes converted"):
        assert check_sequence(np.full((1, 2, 2), 200.0), "x.pkl").max() == 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_sequence(np.zeros((1, 2, 2), np.uint8), "x.pkl")


def test_truncated_sequence_stops_training_at_start_naming_the_file(constructed_dataset):
    path = constructed_dataset / "002" / "nm-02" / "090" / "090.pkl"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(DataError, match=f"{path}: corrupt or unreadable pickle"):
        GaitDataset(PklSource(constructed_dataset))
    save_array(path, np.zeros((3, 16, 16), np.uint8))
    GaitDataset(PklSource(constructed_dataset))


def test_every_hostile_npz_is_refused_by_evaluate_with_one_line(tmp_path, capsys):
    paths = hostile.write_hostile_npz(tmp_path)
    for name, path in paths.items():
        assert main(["evaluate", str(path), "--protocol", "casia-b"]) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith(f"gaitrec evaluate: error: {path}: "), (name, err)


def test_npz_declaring_more_than_it_holds_allocates_nothing(tmp_path):
    import resource
    from gaitrec.evaluation.features import read_npz
    path = hostile.write_hostile_npz(tmp_path)["declares_93_gib"]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match="declares shape \\(100000, 1000, 250\\)"):
        read_npz(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB
