"""Process-group helpers: one process on CPU or one GPU, or many under ``torchrun`` (gloo on CPU, nccl on GPUs)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

from ..device import pick_device


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(requested: str | None, local_rank: int = 0) -> torch.device:
    """The device of this process: ``pick_device``'s choice, on GPU ``local_rank`` when no index is given."""
    device = pick_device(requested)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def init(device: str | None = None, backend: str | None = None) -> DistContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), else a single-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = backend or os.environ.get("GAITREC_DIST_BACKEND") or ("nccl" if dev.type == "cuda" else "gloo")
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank, world_size, local_rank, dev)


def wrap_model(model: nn.Module, ctx: DistContext, trainer_cfg: dict) -> nn.Module:
    if not ctx.distributed:
        return model
    if trainer_cfg["sync_BN"]:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                               find_unused_parameters=trainer_cfg["find_unused_parameters"])


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's tensor along dim 0; gradients flow back into this rank's own slice."""
    world = dist.get_world_size()
    gathered = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(gathered, tensor.detach().contiguous())
    gathered[dist.get_rank()] = tensor
    return torch.cat(gathered, 0)


def summary_writer(run_dir: Path, ctx: DistContext, purge_step: int | None = None):
    """A TensorBoard writer on rank 0 (None elsewhere). ``purge_step``: after a resume, TensorBoard drops the
    events a crashed run wrote from that step on, which the resumed run writes again."""
    if ctx.rank != 0:
        return None
    from torch.utils.tensorboard import SummaryWriter

    log_dir = str(Path(run_dir) / "summary")
    try:
        return _NamingWriter(SummaryWriter(log_dir=log_dir, purge_step=purge_step))
    except OSError as err:
        raise OSError(err.errno, err.strerror or str(err), err.filename or log_dir) from None


class _NamingWriter:
    """A SummaryWriter whose write errors (a full disk, raised from its writer thread) name the event folder."""

    def __init__(self, writer):
        self._writer = writer

    def __getattr__(self, name):
        method = getattr(self._writer, name)
        if not callable(method):
            return method

        def call(*args, **kwargs):
            try:
                return method(*args, **kwargs)
            except OSError as err:
                if err.filename is not None:
                    raise
                raise OSError(err.errno, err.strerror or str(err), self._writer.log_dir) from None
        return call

