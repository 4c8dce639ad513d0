import os
import pickle

import numpy as np
import pytest

from gaitrec.data.pickle_io import load_array, save_array


class Boom:
    """Unpickling this would run os.system: the loader must refuse before that happens."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_round_trip(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (5, 8, 8), dtype=np.uint8)
    save_array(tmp_path / "a" / "x.pkl", arr)
    out = load_array(tmp_path / "a" / "x.pkl")
    assert out.dtype == np.uint8 and np.array_equal(out, arr)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_reads_plain_numpy_pickles_of_every_protocol(tmp_path, protocol):
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    (tmp_path / "p.pkl").write_bytes(pickle.dumps(arr, protocol=protocol))
    assert np.array_equal(load_array(tmp_path / "p.pkl"), arr)


def test_malicious_pickle_is_rejected_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ValueError, match=r"evil.pkl: unsafe pickle.*posix.system|evil.pkl: unsafe pickle.*os.system"):
        load_array(path)
    assert not (tmp_path / "PWNED").exists()


def test_non_array_and_corrupt_files(tmp_path):
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="expected a numpy array, found list"):
        load_array(tmp_path / "list.pkl")
    (tmp_path / "bad.pkl").write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match="bad.pkl: corrupt or unreadable"):
        load_array(tmp_path / "bad.pkl")
