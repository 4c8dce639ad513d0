"""Choosing the torch device: one rule for training, testing and evaluation."""
from __future__ import annotations

import torch

from .errors import ConfigError


def pick_device(requested: str | torch.device | None = None) -> torch.device:
    """``None`` or "auto": CUDA when available, else the CPU. Asking for CUDA without one is an error."""
    if requested is None or requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ConfigError(f"--device {requested}: not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device} was asked for but CUDA is not available; use cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {device} was asked for but only {torch.cuda.device_count()} GPU(s) are "
                          f"visible; use cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return device
