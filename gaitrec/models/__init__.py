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
from . import baseline, deepgaitv2, gaitgl, gaitpart, gaitset, gln, resnet  # noqa: F401  (registers)
from .layers import BACKBONES, count_parameters  # noqa: F401


def create_model(model_cfg: dict, init: bool = True) -> nn.Module:
    """Build the model named by ``model_cfg['model']`` with the remaining keys as its arguments, initialised
    as OpenGait initialises every model (so that training from scratch starts from the same distribution).
    ``init=False`` leaves torch's own initialisation, for a model whose every weight is loaded next."""
    cfg = dict(model_cfg)
    name = cfg.pop("model")
    cls = MODELS.get(name)
    try:
        model = cls(**cfg)
    except TypeError as err:
        raise ConfigError(f"model_cfg for {name}: {err}") from None
    if init:
        init_parameters(model)
    return model


def init_parameters(model: nn.Module) -> None:
    """Xavier-uniform conv and linear weights with zero bias; BatchNorm weight ~ N(1, 0.02), zero bias."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
