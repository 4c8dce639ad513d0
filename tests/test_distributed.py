"""Distributed helpers that need no launcher: batch norm over the global batch of two CPU (gloo) processes."""
import pytest
import torch
import torch.nn as nn

from gaitrec.engine.distributed import GlobalBatchNorm, convert_to_global_batchnorm


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(3 * 4 * 4, 5),
                          nn.BatchNorm1d(5))
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[4].bias.uniform_(-1, 1)
    return model


def _batch():
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(8, 1, 6, 6, generator=generator) * 3 + 2
    targets = torch.randn(8, 5, generator=generator)
    return inputs, targets


def _step(model, inputs, targets, scale=1.0):
    loss = ((model(inputs) - targets) ** 2).mean() * scale
    loss.backward()
    return loss


def _worker(rank: int, world_size: int, init_file: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    model = convert_to_global_batchnorm(_model())
    inputs, targets = _batch()
    share = slice(rank * 4, rank * 4 + 4)
    _step(model, inputs[share], targets[share])
    for parameter in model.parameters():  # the mean of the ranks' gradients, as DistributedDataParallel takes
        dist.all_reduce(parameter.grad)
        parameter.grad /= world_size
    if rank == 0:
        torch.save({"grads": [p.grad for p in model.parameters()], "state": model.state_dict(),
                    "kinds": [type(m).__name__ for m in model]}, out)
    dist.destroy_process_group()


def test_global_batchnorm_of_two_processes_equals_one_batchnorm_over_the_whole_batch(tmp_path):
    torch.multiprocessing.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "rank0.pt")), nprocs=2)
    got = torch.load(tmp_path / "rank0.pt", weights_only=True)
    assert got["kinds"] == ["Conv2d", "GlobalBatchNorm", "Flatten", "Linear", "GlobalBatchNorm"]
    model = _model()
    _step(model, *_batch())
    for expected, grad in zip(model.parameters(), got["grads"]):
        torch.testing.assert_close(grad, expected.grad, rtol=1e-4, atol=1e-6)
    for key, value in model.state_dict().items():  # running statistics, and the same keys as a plain model's
        torch.testing.assert_close(got["state"][key], value, rtol=1e-5, atol=1e-6)


def test_global_batchnorm_alone_is_a_plain_batchnorm():
    plain = nn.BatchNorm1d(4)
    converted = convert_to_global_batchnorm(nn.Sequential(nn.BatchNorm1d(4)))[0]
    assert isinstance(converted, GlobalBatchNorm)
    x = torch.randn(6, 4) * 2 + 1
    torch.testing.assert_close(converted(x), plain(x))
    torch.testing.assert_close(converted.running_var, plain.running_var)
    with pytest.raises(ValueError, match="at least 2D"):
        converted(torch.randn(4))


def test_each_torchrun_process_takes_the_gpu_of_its_local_rank(monkeypatch):
    # No GPU here: CUDA's answers are stood in for, to check the rule that picks and refuses devices.
    from gaitrec.engine import distributed
    from gaitrec.errors import ConfigError

    chosen = []
    monkeypatch.setattr(distributed, "pick_device", lambda requested: torch.device(requested))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert distributed.resolve_device("cuda", local_rank=1, processes_here=2) == torch.device("cuda", 1)
    assert distributed.resolve_device("cuda:1", local_rank=1, processes_here=2) == torch.device("cuda", 1)
    assert distributed.resolve_device("cuda:1", local_rank=0, processes_here=1) == torch.device("cuda", 1)
    assert chosen == [torch.device("cuda", 1)] * 3
    with pytest.raises(ConfigError, match="--device cuda:0: each of the 2 processes torchrun started"):
        distributed.resolve_device("cuda:0", local_rank=1, processes_here=2)
    with pytest.raises(ConfigError, match="LOCAL_RANK 2: this process sees 2 GPU"):
        distributed.resolve_device("cuda", local_rank=2, processes_here=3)
    assert distributed.resolve_device("cpu", local_rank=5, processes_here=8) == torch.device("cpu")
    assert len(chosen) == 3


def test_the_process_group_waits_longer_than_torchs_default(monkeypatch):
    # Rank 0 evaluates alone while the others wait in a collective: NCCL's default 10 minutes is too short.
    from datetime import timedelta

    from gaitrec.engine import distributed

    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(distributed.atexit, "register", lambda function: None)
    ctx = distributed.init("cpu")
    assert (ctx.rank, ctx.world_size, ctx.local_rank) == (1, 2, 1)
    assert calls == [{"backend": "gloo", "rank": 1, "world_size": 2, "timeout": distributed.PROCESS_GROUP_TIMEOUT}]
    assert distributed.PROCESS_GROUP_TIMEOUT >= timedelta(hours=1)
