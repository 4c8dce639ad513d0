import os
import pickle

import pytest
import torch

from gaitrec.engine.checkpoint import (list_checkpoints, load_checkpoint, load_model_weights, model_state,
                                       prune_checkpoints, save_checkpoint)
from gaitrec.models import create_model

TINY_BASELINE = dict(model="Baseline", backbone_cfg=dict(type="Plain", in_channels=1, layers_cfg=["BC-4", "M", "BC-8"]),
                     SeparateFCs=dict(in_channels=8, out_channels=8, parts_num=3),
                     SeparateBNNecks=dict(class_num=4, in_channels=8, parts_num=3), bin_num=[2, 1])


def model(seed=0):
    torch.manual_seed(seed)
    return create_model(TINY_BASELINE)


def test_round_trip_is_exact_and_leaves_no_temporary_files(tmp_path):
    a = model(0)
    path = save_checkpoint(tmp_path / "ckpt" / "run-00010.pt", {"model": a.state_dict(), "iteration": 10})
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["run-00010.pt"]
    b = model(1)
    load_model_weights(b, load_checkpoint(path))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    x = torch.rand(2, 5, 16, 16)
    assert torch.equal(a.eval()(x)["embeddings"], b.eval()(x)["embeddings"])


def test_ddp_prefixed_and_bare_state_dicts_load_strictly(tmp_path):
    a = model(0)
    ddp_style = {f"module.{k}": v for k, v in a.state_dict().items()}
    opengait_style = {"model": ddp_style, "optimizer": {}, "scheduler": {}, "iteration": 80000}
    for i, state in enumerate([ddp_style, opengait_style, a.state_dict()]):
        save_checkpoint(tmp_path / f"{i}.pt", state)
        b = model(1)
        load_model_weights(b, load_checkpoint(tmp_path / f"{i}.pt"), strict=True)
        assert torch.equal(b.FCs.fc_bin, a.FCs.fc_bin)
    assert set(model_state(ddp_style)) == set(a.state_dict())


def test_mismatched_checkpoint_is_explained(tmp_path):
    state = model(0).state_dict()
    state.pop("FCs.fc_bin")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing 1 \(e.g. FCs.fc_bin\); unexpected 1 \(e.g. extra.weight\)"):
        load_model_weights(model(1), state, strict=True, where="x.pt")


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_checkpoint_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"model": Payload()}, f)
    with pytest.raises(ValueError, match="evil.pt: not a safe checkpoint, it asks to run code") as caught:
        load_checkpoint(path)
    assert "weights_only" not in str(caught.value)  # never the advice to load it with code execution
    assert not (tmp_path / "PWNED").exists()


def test_damaged_checkpoints_are_refused_naming_the_file(tmp_path):
    path = save_checkpoint(tmp_path / "run-00010.pt", {"model": model(0).state_dict(), "iteration": 10})
    data = path.read_bytes()
    weight = model(0).state_dict()["FCs.fc_bin"].numpy().tobytes()
    at = data.find(weight[:64])
    assert at > 0
    flipped = bytearray(data)
    flipped[at + 10] ^= 0x40  # inside a weight tensor: the file still unpickles fine
    (tmp_path / "flipped.pt").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="flipped.pt: corrupt checkpoint, its tensors do not match their checksum"):
        load_checkpoint(tmp_path / "flipped.pt")
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.pt: corrupt or truncated checkpoint"):
        load_checkpoint(tmp_path / "truncated.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.pt: empty checkpoint file"):
        load_checkpoint(tmp_path / "empty.pt")
    # OpenGait's files carry no checksum: they load unchecked.
    buffer = tmp_path / "opengait.pt"
    torch.save({"model": model(0).state_dict(), "iteration": 5}, buffer)
    assert load_checkpoint(buffer)["iteration"] == 5


def test_prune_keeps_the_newest(tmp_path):
    for it in (2, 4, 6, 8):
        save_checkpoint(tmp_path / "checkpoints" / f"run-{it:05d}.pt", {"iteration": it})
    save_checkpoint(tmp_path / "checkpoints" / "run-best.pt", {"iteration": 4})
    prune_checkpoints(tmp_path, "run", keep=2)
    assert [i for i, _ in list_checkpoints(tmp_path, "run")] == [6, 8]
    assert (tmp_path / "checkpoints" / "run-best.pt").is_file()


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = save_checkpoint(tmp_path / "run-00001.pt", {"iteration": 1})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600
