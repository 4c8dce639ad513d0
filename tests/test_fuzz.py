"""Property-based attacks: random and mutated inputs give a result or one clear error (a UserError, or exit 2
with one line), never another exception, a hang or a crash.

Bounded for ``make test`` (a few dozen examples each); ``GAITREC_FUZZ=1`` runs thousands per property.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gaitrec.errors import UserError

LONG = os.environ.get("GAITREC_FUZZ") == "1"
FUZZ = settings(max_examples=2000 if LONG else 30, deadline=None if LONG else 5000, derandomize=not LONG,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# ----------------------------------------------------------------------------------------------- config
from test_engine import CONFIG  # noqa: E402

pytestmark = pytest.mark.slow  # property tests, 30 examples each

CONFIG_KEYS = [
    "data_cfg.num_workers", "data_cfg.cache", "data_cfg.dataset_partition", "model_cfg.bin_num",
    "model_cfg.backbone_cfg", "model_cfg.backbone_cfg.layers_cfg", "model_cfg.backbone_cfg.in_channels",
    "model_cfg.SeparateFCs.in_channels", "model_cfg.SeparateFCs.parts_num", "model_cfg.SeparateBNNecks.class_num",
    "model_cfg.SeparateBNNecks", "model_cfg.model", "loss_cfg", "loss_cfg.0", "loss_cfg.0.margin",
    "loss_cfg.1.scale", "loss_cfg.1.loss_term_weight", "loss_cfg.0.type", "optimizer_cfg", "optimizer_cfg.lr",
    "optimizer_cfg.momentum", "optimizer_cfg.solver", "scheduler_cfg.milestones", "scheduler_cfg.gamma",
    "trainer_cfg.total_iter", "trainer_cfg.save_iter", "trainer_cfg.sampler.batch_size",
    "trainer_cfg.sampler.frames_num_fixed", "trainer_cfg.sampler.sample_type", "trainer_cfg.transform",
    "trainer_cfg.restore_hint", "evaluator_cfg.sampler.batch_size", "evaluator_cfg.metric", "evaluator_cfg.transform",
    "trainer_cfg.transform.0.type", "nonsense", "model_cfg.x.y", "trainer_cfg.transform.0.divsor",
    "evaluator_cfg.transform.0.img_shape", "trainer_cfg.sampler.frames_num_fixed", "scheduler_cfg.scheduler",
]
yaml_values = st.one_of(
    st.sampled_from(["[", "]", "{}", "[]", "-1", "0", "1e9", "true", "null", ".nan", "abc", "[-1]", "[1, 2]",
                     "{a: 1}", "[BC-x]", "BC-4", "'", "!!python/object:os.system", "[[1]]", "2.5", "- 1", ":"]),
    st.text(max_size=12),
    st.recursive(st.none() | st.booleans() | st.integers(-3, 70) | st.floats(allow_nan=True) | st.text(max_size=4),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
                 max_leaves=5).map(json.dumps),
)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(CONFIG.format(root="/nonexistent", out="/nonexistent-out"))
    return path


@FUZZ
@given(overrides=st.lists(st.tuples(st.sampled_from(CONFIG_KEYS), yaml_values), min_size=1, max_size=3))
def test_config_overrides_load_or_give_a_config_error_and_what_loads_builds(config_file, overrides):
    from gaitrec.config import load_config, loss_entries
    from gaitrec.engine.trainer import build_optimizer, build_scheduler
    from gaitrec.losses import build_losses
    from gaitrec.models import create_model

    try:
        cfg = load_config(config_file, [f"{k}={v}" for k, v in overrides])
    except UserError:
        return
    # What validation accepts, the constructors accept.
    with torch.device("meta"):
        model = create_model(cfg["model_cfg"])
    build_losses(loss_entries(cfg))
    optimizer = build_optimizer(torch.nn.Linear(1, 1), cfg["optimizer_cfg"])
    build_scheduler(optimizer, cfg["scheduler_cfg"])
    assert model is not None


@FUZZ
@given(text=st.text(max_size=200))
def test_random_config_files_load_or_give_a_config_error(tmp_path, text):
    from gaitrec.config import load_config
    path = tmp_path / "c.yaml"
    path.write_text(text)
    try:
        load_config(path)
    except UserError:
        pass


# ---------------------------------------------------------------------------------------- .pkl and .npz
def _mutate(data: bytes, edits) -> bytes:
    data = bytearray(data)
    for position, value, action in edits:
        if not data:
            break
        position %= len(data)
        if action == 0:
            data[position] = value
        elif action == 1:
            del data[position:]
        else:
            data[position:position] = bytes([value]) * 4
    return bytes(data)


edits = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255), st.integers(0, 2)), min_size=1, max_size=4)
arrays = st.sampled_from([np.zeros((2, 4, 4), np.uint8), np.arange(12, dtype=np.float32).reshape(3, 4),
                          np.ones((1, 2, 2), bool), np.arange(6, dtype=">i4")])


@FUZZ
@given(array=arrays, protocol=st.integers(2, 5), changes=edits)
def test_mutated_pickles_load_or_give_a_data_error(tmp_path, array, protocol, changes):
    from gaitrec.data.dataset import check_sequence
    from gaitrec.data.pickle_io import load_array, read_header
    path = tmp_path / "x.pkl"
    path.write_bytes(_mutate(pickle.dumps(array, protocol=protocol), changes))
    try:
        loaded = load_array(path)
    except UserError as err:
        assert str(err).startswith(str(path))
        return
    assert isinstance(loaded, np.ndarray) and loaded.dtype.kind in "biuf" and loaded.nbytes <= path.stat().st_size
    assert read_header(path).shape == loaded.shape
    try:
        check_sequence(loaded, str(path))
    except UserError:
        pass


def _npz_bytes(n: int, compress: bool) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(
        buffer, embeddings=np.random.default_rng(n).random((n, 3, 2), dtype=np.float32),
        labels=np.array([str(i % 3) for i in range(n)]), types=np.array(["nm-01"] * n), views=np.array(["000"] * n))
    return buffer.getvalue()


@FUZZ
@given(n=st.integers(1, 6), compress=st.booleans(), changes=edits)
def test_mutated_npz_files_load_or_give_a_data_error(tmp_path, n, compress, changes):
    from gaitrec.evaluation.features import load_features
    path = tmp_path / "f.npz"
    path.write_bytes(_mutate(_npz_bytes(n, compress), changes))
    try:
        features = load_features(path)
    except UserError as err:
        assert str(path) in str(err)
        return
    assert features["embeddings"].dtype == np.float32 and features["embeddings"].ndim == 3


# -------------------------------------------------------------------------------------------- the store
@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    from gaitrec.data.pickle_io import save_array
    from gaitrec.data.store import pack
    root = tmp_path_factory.mktemp("store")
    rng = np.random.default_rng(0)
    for subject, length in (("001", 3), ("002", 5), ("003", 1)):
        save_array(root / "pkl" / subject / "nm-01" / "000" / "000.pkl",
                   rng.integers(0, 256, (length, 8, 8), dtype=np.uint8))
    pack(root / "pkl", root / "store", progress=False)
    return root / "store"


@FUZZ
@given(index_changes=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255), st.just(0)), max_size=2),
       frame_changes=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255), st.integers(0, 2)), max_size=2))
def test_mutated_stores_read_or_give_a_store_error(packed, tmp_path, index_changes, frame_changes):
    from gaitrec.data.store import StoreSource
    target = tmp_path / "s"
    target.mkdir(exist_ok=True)
    index = (packed / "store.json").read_bytes()
    frames = (packed / "frames.u8").read_bytes()
    (target / "store.json").write_bytes(_mutate(index, index_changes) if index_changes else index)
    (target / "frames.u8").write_bytes(_mutate(frames, frame_changes) if frame_changes else frames)
    try:
        source = StoreSource(target)
        loaded = [source.load(i).copy() for i in range(len(source))]
    except UserError:
        assert index_changes or frame_changes
        return
    originals = StoreSource(packed)
    # Whatever loads is what was packed: no mutation goes unnoticed.
    assert all(np.array_equal(a, originals.load(i)) for i, a in enumerate(loaded))


# -------------------------------------------------------------------------------------- evaluate inputs
dtypes = st.sampled_from(["<f4", "<f8", "<i4", "<U3", "|S2", "<c8", "|b1", "<f2"])


@FUZZ
@given(shape=st.lists(st.integers(0, 4), min_size=0, max_size=4), dtype=dtypes, n_labels=st.integers(0, 5),
       label_dtype=dtypes, special=st.sampled_from([None, np.nan, np.inf, 1e30]))
def test_evaluate_gives_a_result_or_one_line(tmp_path, capsys, shape, dtype, n_labels, label_dtype, special):
    from gaitrec.cli import main
    rng = np.random.default_rng(0)
    embeddings = (rng.random(shape) * 4).astype(dtype)
    if special is not None and embeddings.size and dtype.startswith("<f"):
        with np.errstate(all="ignore"):
            embeddings.flat[0] = special
    labels = np.array([str(i % 2) for i in range(n_labels)]).astype(label_dtype)
    path = tmp_path / "f.npz"
    np.savez(path, embeddings=embeddings, labels=labels, types=np.array(["nm-01"] * n_labels),
             views=np.array(["000"] * n_labels))
    code = main(["evaluate", str(path), "--protocol", "casia-b", "--json"])
    err = capsys.readouterr().err.strip()
    assert code in (0, 2)
    if code == 2:
        assert len(err.splitlines()) == 1 and err.startswith("gaitrec evaluate: error: ")
