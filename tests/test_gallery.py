"""Galleries and identification: enrol SynthGait walkers with a small trained model, identify other walks of
them, and keep the gallery file intact through model mismatches, crashes, concurrent access and bad files."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gaitrec.config import load_config
from gaitrec.embed import Embedder, model_identity
from gaitrec.gallery import (UNKNOWN, EnrolledSequence, Gallery, GalleryBusyError, ModelRecord, enroll,
                             identify)

sys.path.insert(0, str(Path(__file__).parent))
from cli_run import one_line_error, run  # noqa: E402

pytestmark = pytest.mark.slow  # trained models and concurrent gallery writers

SUBJECTS = [f"{i:03d}" for i in range(1, 7)]
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A slim Baseline trained for 60 iterations on 6 SynthGait walkers (4 walks each, 32x32, one view):
    enough that other walks of the same walker land nearest to their own enrolment."""
    from gaitrec.engine.checkpoint import checkpoint_path, save_checkpoint
    from gaitrec.engine.trainer import train
    from gaitrec.synth import generate_dataset

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("gallery-model")
    data = root / "synth"
    generate_dataset(data, subjects=len(SUBJECTS), frames=16, size=32, types=["nm-01", "nm-02", "nm-03", "nm-04"],
                     views=["090"], progress=False)
    (root / "partition.json").write_text(json.dumps({"TRAIN_SET": SUBJECTS, "TEST_SET": SUBJECTS[-1:]}))
    cfg = {
        "data_cfg": {"dataset_name": "SynthGait", "dataset_root": str(data), "num_workers": 0, "cache": True,
                     "dataset_partition": str(root / "partition.json")},
        "model_cfg": {"model": "Baseline", "bin_num": [4, 2, 1],
                      "backbone_cfg": {"type": "Plain", "in_channels": 1, "layers_cfg": ["BC-8", "M", "BC-16", "M", "BC-32"]},
                      "SeparateFCs": {"in_channels": 32, "out_channels": 32, "parts_num": 7},
                      "SeparateBNNecks": {"class_num": len(SUBJECTS), "in_channels": 32, "parts_num": 7}},
        "loss_cfg": [{"loss_term_weight": 1.0, "margin": 0.2, "type": "TripletLoss", "log_prefix": "triplet"},
                     {"loss_term_weight": 0.1, "scale": 16, "type": "CrossEntropyLoss", "log_prefix": "softmax"}],
        "optimizer_cfg": {"solver": "Adam", "lr": 0.003, "weight_decay": 0.0},
        "scheduler_cfg": {"scheduler": "MultiStepLR", "milestones": [1000], "gamma": 0.1},
        "evaluator_cfg": {"enable_float16": False, "save_name": "tiny", "metric": "euc",
                          "sampler": {"batch_size": 8, "sample_type": "all_ordered", "type": "InferenceSampler"},
                          "transform": [{"type": "BaseSilCuttingTransform"}]},
        "trainer_cfg": {"enable_float16": False, "log_iter": 1000, "save_iter": 1000, "save_name": "tiny",
                        "total_iter": 60, "output_root": str(root / "runs"),
                        "sampler": {"batch_shuffle": True, "batch_size": [6, 3], "frames_num_fixed": 10,
                                    "sample_type": "fixed_unordered", "type": "TripletSampler"},
                        "transform": [{"type": "BaseSilCuttingTransform"}]},
    }
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    loaded = load_config(config)
    result = train(loaded, device="cpu", progress=False, test_at_end=False)
    checkpoint = checkpoint_path(result["run_dir"], "tiny", result["iteration"])
    # Another model of the same architecture: the same weights with one value changed.
    state = torch.load(checkpoint, weights_only=True)
    name = next(k for k in state["model"] if k.endswith("weight"))
    state["model"][name] = state["model"][name].clone()
    state["model"][name].view(-1)[0] += 0.5
    other = root / "other.pt"
    save_checkpoint(other, state)  # a new checksum: the change is a different model, not a corruption
    return types.SimpleNamespace(root=root, data=data, config=config, checkpoint=checkpoint, other=other, cfg=loaded)


def model_args(tiny, checkpoint=None):
    return ["--config", str(tiny.config), "--checkpoint", str(checkpoint or tiny.checkpoint), "--device", "cpu"]


def walk(tiny, subject, walk_type):
    return str(tiny.data / subject / walk_type / "090" / "090.pkl")


def checksum(path: Path) -> str:
    """The content of every table, independent of the file's page layout."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        digest = hashlib.sha256()
        for table in ("meta", "people", "sequences"):
            for row in db.execute(f"SELECT * FROM {table} ORDER BY rowid"):
                digest.update(repr(row).encode())
        return digest.hexdigest()
    finally:
        db.close()


@pytest.fixture
def enrolled(tiny, tmp_path, capsys):
    """A gallery of the first four walkers, two walks each (one given as a file, one as a folder)."""
    path = tmp_path / "people.db"
    for subject in SUBJECTS[:4]:
        code, out, err = run(capsys, "enroll", path, f"walker-{subject}", walk(tiny, subject, "nm-01"),
                             tiny.data / subject / "nm-02", *model_args(tiny), "--quiet")
        assert code == 0, err
        assert f"enrolled walker-{subject}: 2 sequence(s) added" in out
    return path


def test_enroll_then_identify_names_the_right_walker(tiny, enrolled, capsys):
    queries = [walk(tiny, s, t) for s in SUBJECTS[:4] for t in ("nm-03", "nm-04")]
    code, out, err = run(capsys, "identify", enrolled, *queries, "--top-k", "3", "--json", *model_args(tiny), "--quiet")
    assert code == 0, err
    result = json.loads(out)
    assert set(result) >= {"model", "queries"} and result["model"].startswith("Baseline-")
    assert len(result["queries"]) == len(queries)
    for query, source in zip(result["queries"], queries):
        assert set(query) == {"source", "track", "matches", "decision"}
        assert query["source"] == source and query["track"] is None
        expected = "walker-" + Path(source).parts[-4]
        assert [set(m) for m in query["matches"]] == [{"name", "distance"}] * 3
        distances = [m["distance"] for m in query["matches"]]
        assert distances == sorted(distances) and len({m["name"] for m in query["matches"]}) == 3
        assert query["matches"][0]["name"] == expected
        assert query["decision"] in (expected, UNKNOWN)
    # The threshold decides: everything within a huge one, nothing within zero.
    code, out, _ = run(capsys, "identify", enrolled, *queries[:2], "--threshold", "1e6", "--json", *model_args(tiny))
    assert [q["decision"] for q in json.loads(out)["queries"]] == ["walker-001", "walker-001"]
    code, out, _ = run(capsys, "identify", enrolled, *queries[:2], "--threshold", "0", "--json", *model_args(tiny))
    assert [q["decision"] for q in json.loads(out)["queries"]] == [UNKNOWN, UNKNOWN]
    code, out, _ = run(capsys, "identify", enrolled, queries[0], *model_args(tiny))
    assert code == 0 and "threshold: " in out and "walker-001" in out


def test_embedder_embeds_as_gaitrec_test_does(tiny):
    from gaitrec.data.dataset import GaitDataset, PklSource
    from gaitrec.engine.distributed import DistContext
    from gaitrec.engine.inference import extract_features

    embedder = Embedder(tiny.cfg, tiny.checkpoint, "cpu")
    assert not embedder.model.training
    dataset = GaitDataset(PklSource(tiny.data), subjects=SUBJECTS[:2])
    features = extract_features(embedder.model, dataset, tiny.cfg["evaluator_cfg"], DistContext(0, 1, 0, torch.device("cpu")),
                                progress=False)
    sequences = [dataset.frames(i) for i in range(len(dataset))]
    batch = embedder.embed_batch(sequences)
    assert batch.dtype == np.float32 and batch.shape == features["embeddings"].shape == (len(dataset), 32, 7)
    np.testing.assert_allclose(batch, features["embeddings"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(embedder.embed(sequences[3]), features["embeddings"][3], rtol=1e-4, atol=1e-5)


def test_embedder_refuses_bad_input_naming_it(tiny):
    embedder = Embedder(tiny.cfg, tiny.checkpoint, "cpu", frame_size=(32, 32))
    good = np.full((5, 32, 32), 255, np.uint8)
    for frames, message in [(good.astype(np.float32), "uint8"), (good[0], r"\[T, H, W\]"), (good[:0], "no frames"),
                            (np.full((5, 64, 64), 255, np.uint8), "64x64 but the model takes 32x32"),
                            (np.zeros((5, 32, 32), np.uint8), "empty")]:
        with pytest.raises(ValueError, match=message) as err:
            embedder.embed(frames, where="clip-7.pkl")
        assert "clip-7.pkl" in str(err.value)


def test_model_identity_is_stable_and_sensitive(tiny):
    from gaitrec.engine.checkpoint import model_state

    first = Embedder(tiny.cfg, tiny.checkpoint, "cpu").identity
    assert Embedder(tiny.cfg, tiny.checkpoint, "cpu").identity == first
    # The same weights as a bare DDP-style state_dict, in channels-last layout: the same model.
    bare = tiny.root / "bare.pt"
    weights = model_state(torch.load(tiny.checkpoint, weights_only=True))
    torch.save({f"module.{k}": v for k, v in weights.items()}, bare)
    cfg = json.loads(json.dumps(tiny.cfg))
    cfg["trainer_cfg"]["channels_last"] = True
    cfg["evaluator_cfg"]["sampler"]["batch_size"] = 2
    assert Embedder(cfg, bare, "cpu").identity == first
    # Other weights, another transform, another architecture: other identities.
    assert Embedder(tiny.cfg, tiny.other, "cpu").identity != first
    cfg["evaluator_cfg"]["transform"] = [{"type": "BaseSilTransform"}]
    assert Embedder(cfg, tiny.checkpoint, "cpu").identity != first
    model = Embedder(tiny.cfg, tiny.checkpoint, "cpu").model
    assert model_identity(tiny.cfg, model) == first
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-6
    assert model_identity(tiny.cfg, model) != first


def test_gallery_of_another_model_is_refused(tiny, enrolled, capsys):
    before = checksum(enrolled)
    line = one_line_error(capsys, "enroll", enrolled, "walker-005", walk(tiny, "005", "nm-01"),
                          *model_args(tiny, tiny.other))
    recorded = Gallery.open(enrolled).model.identity
    other = Embedder(tiny.cfg, tiny.other, "cpu").identity
    assert recorded in line and other in line and str(tiny.checkpoint) in line
    line = one_line_error(capsys, "identify", enrolled, walk(tiny, "001", "nm-03"), *model_args(tiny, tiny.other))
    assert recorded in line and other in line
    assert checksum(enrolled) == before


def test_model_arguments_go_together(tiny, tmp_path, capsys, monkeypatch):
    for args in (["--config", tiny.config], ["--checkpoint", tiny.checkpoint]):
        line = one_line_error(capsys, "enroll", tmp_path / "g.db", "someone", walk(tiny, "001", "nm-01"), *args)
        assert "--config and --checkpoint go together" in line
    monkeypatch.setattr("gaitrec.default_model.CONFIG", tmp_path / "missing" / "default_model.yaml")
    line = one_line_error(capsys, "enroll", tmp_path / "g.db", "someone", walk(tiny, "001", "nm-01"))
    assert "default model is not installed" in line
    assert not (tmp_path / "g.db").exists()


def test_bad_sources_and_names_exit_2(tiny, tmp_path, capsys):
    gallery = tmp_path / "g.db"
    assert "source not found" in one_line_error(capsys, "enroll", gallery, "a", tmp_path / "nope.pkl", *model_args(tiny))
    (tmp_path / "notes.txt").write_text("hello")
    assert "notes.txt" in one_line_error(capsys, "enroll", gallery, "a", tmp_path / "notes.txt", *model_args(tiny))
    (tmp_path / "empty").mkdir()
    assert "no .pkl sequence" in one_line_error(capsys, "enroll", gallery, "a", tmp_path / "empty", *model_args(tiny))
    assert "reserved" in one_line_error(capsys, "enroll", gallery, "Unknown", walk(tiny, "001", "nm-01"),
                                        *model_args(tiny))
    line = one_line_error(capsys, "identify", gallery, walk(tiny, "001", "nm-01"), *model_args(tiny))
    assert "gallery not found" in line
    assert not gallery.exists()


def test_list_remove_export(tiny, enrolled, tmp_path, capsys):
    code, out, _ = run(capsys, "gallery", enrolled, "list", "--json")
    listing = json.loads(out)
    assert [p["name"] for p in listing["people"]] == [f"walker-{s}" for s in SUBJECTS[:4]]
    assert all(p["sequences"] == 2 and len(p["sources"]) == 2 for p in listing["people"])
    code, out, _ = run(capsys, "gallery", enrolled, "list")
    assert code == 0 and "4 people, 8 sequences" in out
    # Enrolling a name again keeps every earlier sequence.
    code, out, err = run(capsys, "enroll", enrolled, "walker-001", walk(tiny, "001", "nm-03"), *model_args(tiny), "--quiet")
    assert code == 0 and "1 sequence(s) added, 3 in all" in out, err

    npz = tmp_path / "people.npz"
    assert run(capsys, "gallery", enrolled, "export", npz)[0] == 0
    with np.load(npz, allow_pickle=False) as f:
        names, embeddings = f["names"].tolist(), f["embeddings"]
        assert str(f["model_identity"]) == listing["model"] and json.loads(str(f["model_config"]))["metric"] == "euc"
        assert f["sources"].tolist()[-1] == walk(tiny, "001", "nm-03") and f["tracks"].tolist() == [-1] * 9
    assert names.count("walker-001") == 3 and embeddings.shape == (9, 32, 7) and embeddings.dtype == np.float32
    assert "already exists" in one_line_error(capsys, "gallery", enrolled, "export", npz)
    exported = tmp_path / "people.json"
    assert run(capsys, "gallery", enrolled, "export", exported)[0] == 0
    data = json.loads(exported.read_text())
    assert data["model"] == listing["model"] and len(data["sequences"]) == 9
    np.testing.assert_array_equal(np.array([s["embedding"] for s in data["sequences"]], np.float32), embeddings)
    assert "suffix" in one_line_error(capsys, "gallery", enrolled, "export", tmp_path / "people.csv")

    code, out, _ = run(capsys, "gallery", enrolled, "remove", "walker-002")
    assert code == 0 and "removed walker-002 (2 sequence(s))" in out
    line = one_line_error(capsys, "gallery", enrolled, "remove", "walker-002")
    assert "no person named 'walker-002'" in line and "walker-001" in line
    code, out, _ = run(capsys, "identify", enrolled, walk(tiny, "002", "nm-03"), "--json", *model_args(tiny))
    assert "walker-002" not in {m["name"] for m in json.loads(out)["queries"][0]["matches"]}
    for name in ("walker-001", "walker-003", "walker-004"):
        assert run(capsys, "gallery", enrolled, "remove", name)[0] == 0
    line = one_line_error(capsys, "identify", enrolled, walk(tiny, "001", "nm-03"), *model_args(tiny))
    assert "the gallery is empty" in line


def constructed_gallery(path: Path, people: dict[str, list[list[float]]]) -> ModelRecord:
    """A gallery of hand-made [2, 1] embeddings: Euclidean distances computable by hand."""
    model = ModelRecord("Hand-0000000000000000", {"metric": "euc"}, (2, 1), (4, 4))
    for name, points in people.items():
        enroll(path, name, [EnrolledSequence(f"{name}-{i}.pkl", None, 3, np.array(p, np.float32)[:, None])
                            for i, p in enumerate(points)], model)
    return model


def test_identify_person_distance_and_threshold_by_hand(tmp_path):
    path = tmp_path / "hand.db"
    constructed_gallery(path, {"ann": [[0, 0]], "bob": [[10, 0], [3, 0]]})
    with Gallery.open(path) as gallery:
        # bob's distance is his nearest sequence's; the calibrated threshold is ann-bob's, 3.
        assert gallery.nearest_pair() == (3.0, ["ann", "bob"])
        queries = np.array([[[1], [0]], [[2.5], [0]], [[20], [0]]], np.float32)
        results = identify(gallery, queries, top_k=5)
        assert [[(m.name, round(m.distance, 5)) for m in r.matches] for r in results] == [
            [("ann", 1.0), ("bob", 2.0)], [("bob", 0.5), ("ann", 2.5)], [("bob", 10.0), ("ann", 20.0)]]
        assert [r.decision for r in results] == ["ann", "bob", UNKNOWN]
        assert [r.decision for r in identify(gallery, queries, top_k=1, threshold=25)] == ["ann", "bob", "bob"]
        assert len(identify(gallery, queries, top_k=1)[0].matches) == 1
        with pytest.raises(ValueError, match=r"\[Q, 2, 1\]"):
            identify(gallery, np.zeros((1, 3, 1), np.float32))
    # A third person closer to ann moves the calibration; removing her moves it back.
    constructed_gallery(path, {"cy": [[0, 1]]})
    with Gallery.open(path) as gallery:
        assert gallery.nearest_pair() == (1.0, ["ann", "cy"])
        gallery.remove("cy")
        assert gallery.nearest_pair() == (3.0, ["ann", "bob"])
        gallery.remove("bob")
        assert gallery.nearest_pair() is None  # one person: nothing to calibrate with
        assert identify(gallery, np.zeros((1, 2, 1), np.float32))[0].decision == "ann"


def test_enrolment_that_fails_midway_changes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "hand.db"
    model = constructed_gallery(path, {"ann": [[0, 0]], "bob": [[3, 0]]})
    before = checksum(path)
    inserted = []

    def failing_insert(self, person, seq, created):
        if inserted:
            raise RuntimeError("disk pulled out")
        inserted.append(seq)
        original(self, person, seq, created)

    original = Gallery._insert_sequence
    monkeypatch.setattr(Gallery, "_insert_sequence", failing_insert)
    points = [EnrolledSequence("c.pkl", None, 3, np.ones((2, 1), np.float32))] * 2
    with pytest.raises(RuntimeError):
        enroll(path, "cy", points, model)
    assert checksum(path) == before and len(inserted) == 1
    inserted.clear()
    with pytest.raises(RuntimeError):
        enroll(tmp_path / "new.db", "cy", points, model)
    assert not [p.name for p in tmp_path.iterdir() if not p.name.startswith("hand.db")]  # no gallery, no temporary file


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import numpy as np
    from gaitrec.gallery import EnrolledSequence, Gallery, ModelRecord, enroll

    path, marker, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    original = Gallery._insert_sequence

    def paused_insert(self, person, seq, created):
        original(self, person, seq, created)
        marker.touch()  # one row written, the transaction still open
        while not go.exists():
            time.sleep(0.02)

    Gallery._insert_sequence = paused_insert
    model = ModelRecord("Hand-0000000000000000", {"metric": "euc"}, (2, 1), (4, 4))
    points = [EnrolledSequence(f"dan-{i}.pkl", None, 3, np.full((2, 1), i, np.float32)) for i in range(3)]
    print(enroll(path, "dan", points, model))
""")


def start_child(path: Path, tmp_path: Path):
    marker, go = tmp_path / "inserted", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(marker), str(go)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the child never reached its first insert"
        time.sleep(0.02)
    return child, go


@pytest.mark.parametrize("existing", [True, False])
def test_enrolment_killed_midway_leaves_the_file_as_it_was(tmp_path, existing):
    path = tmp_path / "hand.db"
    if existing:
        constructed_gallery(path, {"ann": [[0, 0]], "bob": [[3, 0]]})
        before = checksum(path)
    child, _ = start_child(path, tmp_path)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    if existing:
        assert checksum(path) == before
        with Gallery.open(path) as gallery:
            assert [p.name for p in gallery.people()] == ["ann", "bob"]
    else:
        assert not path.exists()  # the half-made gallery only ever lived in a temporary file


def test_readers_work_while_a_writer_writes(tmp_path, capsys):
    path = tmp_path / "hand.db"
    model = constructed_gallery(path, {"ann": [[0, 0]], "bob": [[3, 0]]})
    child, go = start_child(path, tmp_path)
    try:
        # The writer holds its transaction open: readers see the committed state, a second writer gives up.
        code, out, err = run(capsys, "gallery", path, "list", "--json")
        assert code == 0 and [p["name"] for p in json.loads(out)["people"]] == ["ann", "bob"]
        with Gallery.open(path) as gallery:
            assert identify(gallery, np.zeros((1, 2, 1), np.float32))[0].matches[0].name == "ann"
        started = time.monotonic()
        with pytest.raises(GalleryBusyError, match="another process is writing the gallery"):
            enroll(path, "eve", [EnrolledSequence("e.pkl", None, 3, np.ones((2, 1), np.float32))], model, timeout=0.3)
        assert time.monotonic() - started >= 0.25
    finally:
        go.touch()
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.strip() == "3"
    with Gallery.open(path) as gallery:
        assert [(p.name, p.sequences) for p in gallery.people()] == [("ann", 1), ("bob", 1), ("dan", 3)]


def test_files_that_are_not_galleries_exit_2(tiny, tmp_path, capsys):
    bad = {}
    bad["random.db"] = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    bad["notes.db"] = b"alice: 3 walks\n"
    bad["empty.db"] = b""
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE songs (title TEXT)")
    other.commit()
    other.close()
    constructed_gallery(tmp_path / "newer.db", {"ann": [[0, 0]]})
    constructed_gallery(tmp_path / "trigger.db", {"ann": [[0, 0]]})
    for name, statement in (("newer.db", "PRAGMA user_version = 2"),
                            ("trigger.db", "CREATE TRIGGER t AFTER INSERT ON people BEGIN DELETE FROM people; END")):
        db = sqlite3.connect(tmp_path / name)
        db.execute(statement)
        db.commit()
        db.close()
    (tmp_path / "folder.db").mkdir()
    expected = {"random.db": "not a gaitrec gallery", "notes.db": "not a gaitrec gallery",
                "empty.db": "not a gaitrec gallery", "other.db": "another application",
                "newer.db": "schema version 2 is newer", "trigger.db": "trigger t", "folder.db": "not a file"}
    for name, message in expected.items():
        path = tmp_path / name
        snapshot = path.read_bytes() if path.is_file() else None
        for args in (["gallery", path, "list"], ["gallery", path, "export", tmp_path / "out.npz"],
                     ["identify", path, walk(tiny, "001", "nm-01"), *model_args(tiny)],
                     ["enroll", path, "ann", walk(tiny, "001", "nm-01"), *model_args(tiny)]):
            line = one_line_error(capsys, *args)
            assert str(path) in line and message in line, (args, line)
        assert snapshot is None or path.read_bytes() == snapshot
    assert not (tmp_path / "out.npz").exists()


def test_stored_embeddings_are_checked_when_read(tmp_path):
    path = tmp_path / "hand.db"
    constructed_gallery(path, {"ann": [[0, 0]], "bob": [[3, 0]]})
    db = sqlite3.connect(path)
    db.execute("UPDATE sequences SET embedding = ? WHERE id = 2", (np.array([np.nan, 1], "<f4").tobytes(),))
    db.commit()
    with Gallery.open(path) as gallery, pytest.raises(ValueError, match="non-finite embedding"):
        gallery.embeddings()
    db.execute("UPDATE sequences SET embedding = ? WHERE id = 2", (b"\0" * 12,))
    db.commit()
    db.close()
    with Gallery.open(path) as gallery, pytest.raises(ValueError, match="wrong size"):
        gallery.embeddings()
