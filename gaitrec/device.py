"""Choosing the torch device (one rule for training, testing and evaluation) and placing a model on it."""
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


def place_model(model: torch.nn.Module, device: torch.device, channels_last: bool = False) -> torch.nn.Module:
    """Move a model to its device, its convolutions in channels-last memory format if asked (faster on CPU):
    2D convolutions channels_last, 3D ones channels_last_3d (one format for the whole model would reject
    the other rank)."""
    model.to(device)
    if channels_last:
        for module in model.modules():
            if isinstance(module, torch.nn.Conv3d):
                module.to(memory_format=torch.channels_last_3d)
            elif isinstance(module, torch.nn.Conv2d):
                module.to(memory_format=torch.channels_last)
    return model
