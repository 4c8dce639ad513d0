"""Faults during training: kill -9 (mid-run and mid-checkpoint), a damaged newest checkpoint, two trainings
racing for one run directory, a refused run leaving the earlier run untouched, a full disk."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gaitrec.cli import main
from gaitrec.engine.checkpoint import list_checkpoints, load_checkpoint
from gaitrec.engine.trainer import lock_run_dir, train
from gaitrec.errors import RunError
from test_engine import cfg_of, tiny  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # killed and resumed training runs

KILLER = """
import os, signal, sys
from gaitrec.config import load_config
from gaitrec.engine import checkpoint, trainer
mode = sys.argv[2]
if mode == "mid-run":  # killed after iteration 5 was logged, past the checkpoint of iteration 4
    original_log = trainer.Monitor.log
    def log(self, iteration, logged, sils):
        original_log(self, iteration, logged, sils)
        self.metrics.flush()
        if iteration == 5:
            os.kill(os.getpid(), signal.SIGKILL)
    trainer.Monitor.log = log
else:  # killed halfway through writing the checkpoint of iteration 6
    original_write = checkpoint.atomic_write_bytes
    def write(path, data):
        if path.name.endswith("-00006.pt"):
            with open(path.parent / f".{path.name}.x1y2z3.tmp", "wb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        original_write(path, data)
    checkpoint.atomic_write_bytes = write
trainer.train(load_config(sys.argv[1], sys.argv[3:]), progress=False, test_at_end=False)
"""


def _weights(run: Path, name: str) -> dict:
    return load_checkpoint(run / "checkpoints" / f"{name}-00006.pt")["model"]


def _scalar_steps(run: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run / "summary"))
    events.Reload()
    return [e.step for e in events.Scalars(tag)]


@pytest.mark.parametrize("mode", ["mid-run", "mid-checkpoint"])
def test_kill_9_then_resume_is_bit_identical_and_logs_each_iteration_once(tiny, mode):  # noqa: F811
    straight = train(cfg_of(tiny, "trainer_cfg.save_iter=2"), progress=False, test_at_end=False)
    overrides = ["trainer_cfg.save_iter=2", "trainer_cfg.save_name=killed"]
    done = subprocess.run([sys.executable, "-c", KILLER, str(tiny), mode, *overrides], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert done.returncode == -9, done.stderr
    run = straight["run_dir"].parent / "killed"
    assert [i for i, _ in list_checkpoints(run, "killed")] == [2, 4]
    if mode == "mid-checkpoint":
        assert list((run / "checkpoints").glob(".*.tmp"))  # the torn write the kill left behind
    time.sleep(1.1)  # TensorBoard orders event files by their names' timestamps, in seconds
    resumed = train(cfg_of(tiny, *overrides), resume=True, progress=False, test_at_end=False)
    assert [h["iteration"] for h in resumed["history"]] == [5, 6]
    a, b = _weights(straight["run_dir"], "tiny"), _weights(run, "killed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list((run / "checkpoints").glob(".*.tmp"))
    rows = [json.loads(x)["iteration"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows == [1, 2, 3, 4, 5, 6]
    assert (run / "train.log").read_text().count("iteration 5/") == 1
    assert _scalar_steps(run, "train/loss") == [1, 2, 3, 4, 5, 6]


def test_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one(tiny):  # noqa: F811
    first = train(cfg_of(tiny, "trainer_cfg.save_iter=2"), progress=False, test_at_end=False)
    newest = first["run_dir"] / "checkpoints" / "tiny-00006.pt"
    original = _weights(first["run_dir"], "tiny")
    newest.write_bytes(newest.read_bytes()[:1000])
    with pytest.warns(UserWarning, match=f"resume: skipping {newest}: corrupt or truncated checkpoint"):
        resumed = train(cfg_of(tiny, "trainer_cfg.save_iter=2"), resume=True, progress=False, test_at_end=False)
    assert [h["iteration"] for h in resumed["history"]] == [5, 6]
    again = _weights(first["run_dir"], "tiny")
    assert all(torch.equal(original[k], again[k]) for k in original)
    # a flipped byte inside the RNG state tensor is caught by the checksum: the same fallback
    for _, path in list_checkpoints(first["run_dir"], "tiny"):
        path.write_bytes(b"")
    with pytest.raises(RunError, match="no intact checkpoint"):
        train(cfg_of(tiny, "trainer_cfg.save_iter=2"), resume=True, progress=False, test_at_end=False)


def test_corrupt_rng_state_is_one_line(tiny, capsys):  # noqa: F811
    first = train(cfg_of(tiny, "trainer_cfg.total_iter=3"), progress=False, test_at_end=False)
    path = first["run_dir"] / "checkpoints" / "tiny-00003.pt"
    state = load_checkpoint(path)
    state["rng"]["torch"] = torch.zeros(3, dtype=torch.uint8)
    from gaitrec.engine.checkpoint import save_checkpoint
    save_checkpoint(path, {k: v for k, v in state.items() if k != "checksum"})  # a valid checksum over bad state
    assert main(["train", str(tiny), "--resume", "--no-test", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"gaitrec train: error: {path}: corrupt RNG state")


def test_second_training_into_a_locked_run_directory_is_refused(tiny, capsys):  # noqa: F811
    cfg = cfg_of(tiny)
    from gaitrec.engine.checkpoint import run_dir_of
    holder = lock_run_dir(run_dir_of(cfg))
    try:
        assert main(["train", str(tiny), "--no-test", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"another training; choose another trainer_cfg.save_name) is in use by pid {os.getpid()} on host " in err
    finally:
        holder.release()
    train(cfg, progress=False, test_at_end=False)  # released: it runs


def test_a_refused_run_leaves_the_earlier_run_untouched(tiny, tmp_path):  # noqa: F811
    first = train(cfg_of(tiny), progress=False, test_at_end=False)
    run = first["run_dir"]
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and "summary" not in p.parts}
    external = tmp_path / "pretrained.pt"
    external.write_bytes((run / "checkpoints" / "tiny-00003.pt").read_bytes())
    attempts = [
        ("a fresh run", ["optimizer_cfg.lr=0.5"]),
        ("a fresh run", [f"trainer_cfg.restore_hint={external}"]),  # fine-tuning into an existing run
        ("restore_hint 3", ["trainer_cfg.restore_hint=3"]),  # would overwrite tiny-00006.pt
    ]
    for what, overrides in attempts:
        with pytest.raises(RunError, match=f"{run} already holds checkpoints.*{what} would overwrite them.*--resume"):
            train(cfg_of(tiny, *overrides), progress=False, test_at_end=False)
    with pytest.raises(ValueError, match="batch_size asks for 9 subjects"):
        train(cfg_of(tiny, "trainer_cfg.save_name=other", "trainer_cfg.sampler.batch_size=[9, 2]"),
              progress=False, test_at_end=False)
    with pytest.raises(ValueError, match="dataset root not found"):
        train(cfg_of(tiny, "trainer_cfg.save_name=third", f"data_cfg.dataset_root={tmp_path / 'none'}"),
              progress=False, test_at_end=False)
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and "summary" not in p.parts}
    assert after == before
    assert not (run.parent / "other").exists() and not (run.parent / "third").exists()


def test_full_disk_names_the_file_and_leaves_no_temporary(tiny, monkeypatch, capsys):  # noqa: F811
    real_fsync = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert main(["train", str(tiny), "--no-test", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gaitrec train: error: No space left on device: ")
    assert err[0].endswith("config.yaml")
    run = Path(err[0].split(": ")[-1]).parent
    assert not list(run.rglob("*.tmp"))


def test_full_disk_under_tensorboard_is_one_line_naming_its_folder(tiny, monkeypatch, capfd):  # noqa: F811
    from tensorboard.summary.writer import record_writer

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(record_writer.RecordWriter, "write", write)
    assert main(["train", str(tiny), "--no-test", "--quiet"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert "Traceback (most recent call last):" not in err
    assert err[-1].startswith("gaitrec train: error: No space left on device: ") and err[-1].endswith("summary")
