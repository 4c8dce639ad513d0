"""Model zoo. Every model is a plain ``nn.Module`` registered under its OpenGait config name.

Forward contract (all models):
    ``model(sils, seq_lengths=None) -> dict``
    - ``sils``: float silhouettes ``[n, s, h, w]`` in [0, 1]. With ``seq_lengths`` None each of the n rows
      is one sequence of s frames. With ``seq_lengths`` (list or 1-D tensor) the batch is packed: n == 1
      and the sequences are concatenated along s, ``sum(seq_lengths) == s`` (OpenGait's ``seqL``).
    - returns ``{"embeddings": [num_sequences, c, p], "training": {log_prefix: {loss input: tensor}}}``;
      the trainer adds ``labels`` to each loss's inputs, so losses are found by their config ``log_prefix``.
"""
from __future__ import annotations

import torch.nn as nn

from ..registry import MODELS, ConfigError
from . import baseline  # noqa: F401  (registers)
from .layers import BACKBONES, count_parameters  # noqa: F401


def create_model(model_cfg: dict) -> nn.Module:
    """Build the model named by ``model_cfg['model']`` with the remaining keys as its arguments."""
    cfg = dict(model_cfg)
    name = cfg.pop("model")
    cls = MODELS.get(name)
    try:
        return cls(**cfg)
    except TypeError as err:
        raise ConfigError(f"model_cfg for {name}: {err}") from None
