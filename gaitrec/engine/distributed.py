"""Process-group helpers: one process on CPU or one GPU, or many under ``torchrun`` (gloo on CPU, nccl on GPUs)."""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

from ..device import pick_device
from ..errors import ConfigError
from ..threads import local_processes


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


# How long a process waits in a collective for the others. Rank 0 alone evaluates and writes the report
# after a test (during training too, with ``with_test``) while the others wait in their next collective:
# at OU-MVLP or GREW size that can outlast torch's defaults (10 minutes for NCCL, 30 for gloo).
PROCESS_GROUP_TIMEOUT = timedelta(hours=2)


def resolve_device(requested: str | None, local_rank: int = 0, processes_here: int = 1) -> torch.device:
    """The device of this process: ``pick_device``'s choice, on GPU ``local_rank`` when no index is given.
    With several processes on the machine, one GPU named for all of them is refused (NCCL cannot put two
    ranks on one GPU), and so is a ``local_rank`` beyond the GPUs this process sees."""
    device = pick_device(requested)
    if device.type == "cuda":
        if processes_here > 1 and device.index is not None and device.index != local_rank:
            raise ConfigError(f"--device {requested}: each of the {processes_here} processes torchrun started on "
                              f"this machine takes the GPU of its LOCAL_RANK; pass --device cuda, not one GPU for all")
        if device.index is None:
            visible = torch.cuda.device_count()
            if local_rank >= visible:
                raise ConfigError(f"LOCAL_RANK {local_rank}: this process sees {visible} GPU(s); start at most "
                                  f"{visible} processes per machine (torchrun --nproc_per_node {visible})")
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def init(device: str | None = None, backend: str | None = None) -> DistContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), else a single-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank, local_processes())
    if world_size > 1 and not dist.is_initialized():
        backend = backend or os.environ.get("GAITREC_DIST_BACKEND") or ("nccl" if dev.type == "cuda" else "gloo")
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size, timeout=PROCESS_GROUP_TIMEOUT)
        # Leave the group before the interpreter tears down: a process that exits with the group alive (the
        # ranks of `gaitrec test` other than 0 finish first) can abort in the backend's destructor.
        atexit.register(_leave_group)
    return DistContext(rank, world_size, local_rank, dev)


def _leave_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class _SumOverProcesses(torch.autograd.Function):
    """The sum of a tensor over all processes; its gradient is the sum of the processes' gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the global batch of all processes, for CPU training (gloo): torch's SyncBatchNorm runs
    on GPUs only. Outside distributed training, and in eval mode, it is a plain batch norm; its parameters and
    buffers are a batch norm's, so checkpoints are the same either way."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        dtype = input.dtype
        if dtype in (torch.float16, torch.bfloat16):  # statistics in fp32 under autocast, as torch keeps them
            input = input.float()
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        shape = [1, channels] + [1] * (input.dim() - 2)
        # The mean first, then the spread around it: E[x^2] - E[x]^2 in one reduction loses digits.
        sums = _SumOverProcesses.apply(torch.cat([input.sum(dims), input.new_tensor([input.numel() / channels])]))
        count = sums[-1]
        mean = sums[:-1] / count
        centred = input - mean.view(shape)
        var = _SumOverProcesses.apply((centred * centred).sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean, momentum)
                self.running_var.lerp_(var * (count / (count - 1).clamp(min=1)), momentum)  # unbiased, as torch
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(dtype)


def convert_to_global_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every batch norm replaced by a ``GlobalBatchNorm`` sharing its parameters and buffers."""
    converted = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        converted = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                    module.track_running_stats)
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        if module.track_running_stats:
            converted.running_mean, converted.running_var = module.running_mean, module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
    for name, child in module.named_children():
        converted.add_module(name, convert_to_global_batchnorm(child))
    return converted


def wrap_model(model: nn.Module, ctx: DistContext, trainer_cfg: dict) -> nn.Module:
    """``model`` in DistributedDataParallel when distributed (else as it is), its batch norms synchronised over
    the processes with ``sync_BN``."""
    if not ctx.distributed:
        return model
    if trainer_cfg["sync_BN"]:
        if ctx.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            model = convert_to_global_batchnorm(model)
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    # Gradients as views into DDP's buckets: no copy of every gradient into the bucket before its all-reduce.
    # Synchronised batch norms keep equal running statistics in every process, so the broadcast of rank 0's
    # buffers before each forward (one more collective per step) is needed only without them.
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                               find_unused_parameters=trainer_cfg["find_unused_parameters"],
                                               gradient_as_bucket_view=True,
                                               broadcast_buffers=not trainer_cfg["sync_BN"])


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

