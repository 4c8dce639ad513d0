"""Baseline (OpenGait's strong baseline, also the skeleton of GaitBase).

Frame-wise conv backbone -> temporal max pooling -> horizontal pooling pyramid -> separate FCs -> BNNeck.
Triplet loss reads the FC output, cross-entropy the BNNeck logits; the FC output is the test embedding.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..registry import MODELS
from . import layers  # layers.X where a config key named X shadows the class
from .layers import HorizontalPoolingPyramid, PackSequenceWrapper, SetBlockWrapper, build_backbone


@MODELS.register()
class Baseline(nn.Module):
    def __init__(self, backbone_cfg: dict, SeparateFCs: dict, SeparateBNNecks: dict,
                 bin_num: list[int] = (16, 8, 4, 2, 1)):
        super().__init__()
        self.Backbone = SetBlockWrapper(build_backbone(backbone_cfg))
        self.FCs = layers.SeparateFCs(**SeparateFCs)
        self.BNNecks = layers.SeparateBNNecks(**SeparateBNNecks)
        self.TP = PackSequenceWrapper(torch.max)
        self.HPP = HorizontalPoolingPyramid(bin_num=bin_num)

    def forward(self, sils: torch.Tensor, seq_lengths=None) -> dict:
        x = self.Backbone(sils.unsqueeze(1))  # [n, c, s, h, w]
        x = self.TP(x, seq_lengths, dim=2)  # [n, c, h, w]
        feat = self.HPP(x)  # [n, c, p]
        embed = self.FCs(feat)  # [n, c, p]
        _, logits = self.BNNecks(embed)  # [n, classes, p]
        return {
            "embeddings": embed,
            "training": {"triplet": {"embeddings": embed}, "softmax": {"logits": logits}},
        }
