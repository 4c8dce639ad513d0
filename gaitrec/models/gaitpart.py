"""GaitPart (Fan et al., "GaitPart: Temporal Part-based Model for Gait Recognition", CVPR 2020).

Focal convolutions (the Plain backbone's ``FC-`` layers) give part-aware frame features; each of the 16
horizontal parts then gets its own micro-motion capture module (the temporal feature aggregator): two
"micro-motion templates" over short windows of 3 and 5 frames, each weighted by a per-part 1D conv attention.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from ..registry import MODELS
from . import layers  # layers.X where a config key named X shadows the class
from .layers import HorizontalPoolingPyramid, PackSequenceWrapper, SetBlockWrapper, build_backbone


class BasicConv1d(nn.Module):
    """A bias-free 1D convolution, parameter ``conv.weight``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, bias=False, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def part_copies(module: nn.Module, parts_num: int) -> nn.ModuleList:
    return nn.ModuleList(copy.deepcopy(module) for _ in range(parts_num))


class TemporalFeatureAggregator(nn.Module):
    """[n, c, s, p] -> [n, c, p]: per part, two micro-motion templates gated by 1D-conv attention, then max over s."""

    def __init__(self, in_channels: int, squeeze: int = 4, parts_num: int = 16):
        super().__init__()
        hidden = in_channels // squeeze
        self.parts_num = parts_num
        # Template over 3 frames; its attention looks at 3 frames.
        self.conv1d3x1 = part_copies(nn.Sequential(
            BasicConv1d(in_channels, hidden, 3, padding=1), nn.LeakyReLU(inplace=True),
            BasicConv1d(hidden, in_channels, 1)), parts_num)
        self.avg_pool3x1 = nn.AvgPool1d(3, stride=1, padding=1)
        self.max_pool3x1 = nn.MaxPool1d(3, stride=1, padding=1)
        # Template over 5 frames; its attention looks at 5 frames (two stacked kernel-3 convs).
        self.conv1d3x3 = part_copies(nn.Sequential(
            BasicConv1d(in_channels, hidden, 3, padding=1), nn.LeakyReLU(inplace=True),
            BasicConv1d(hidden, in_channels, 3, padding=1)), parts_num)
        self.avg_pool3x3 = nn.AvgPool1d(5, stride=1, padding=2)
        self.max_pool3x3 = nn.MaxPool1d(5, stride=1, padding=2)

    def forward(self, x: torch.Tensor, dim: int = 2) -> torch.Tensor:
        # ``dim`` (time) is accepted so that PackSequenceWrapper can call this like a pooling function.
        if dim != 2:
            raise ValueError(f"TemporalFeatureAggregator pools over dim 2 of [n, c, s, p], got dim={dim}")
        n, c, s, p = x.shape
        parts = x.permute(3, 0, 1, 2).contiguous()  # [p, n, c, s]
        flat = parts.view(p * n, c, s)

        def template(convs, avg_pool, max_pool):
            scores = torch.sigmoid(torch.stack([conv(part) for conv, part in zip(convs, parts)]))
            return (avg_pool(flat) + max_pool(flat)).view(p, n, c, s) * scores

        feature = (template(self.conv1d3x1, self.avg_pool3x1, self.max_pool3x1)
                   + template(self.conv1d3x3, self.avg_pool3x3, self.max_pool3x3))
        return feature.amax(-1).permute(1, 2, 0).contiguous()  # [n, c, p]


@MODELS.register()
class GaitPart(nn.Module):
    def __init__(self, backbone_cfg: dict, SeparateFCs: dict, bin_num: list[int] = (16,)):
        super().__init__()
        self.Backbone = SetBlockWrapper(build_backbone(backbone_cfg))
        self.Head = layers.SeparateFCs(**SeparateFCs)
        self.HPP = SetBlockWrapper(HorizontalPoolingPyramid(bin_num=bin_num))
        self.TFA = PackSequenceWrapper(TemporalFeatureAggregator(in_channels=SeparateFCs["in_channels"],
                                                                 parts_num=SeparateFCs["parts_num"]))

    def forward(self, sils: torch.Tensor, seq_lengths=None) -> dict:
        x = self.Backbone(sils.unsqueeze(1))  # [n, c, s, h, w]
        x = self.HPP(x)  # [n, c, s, p]
        x = self.TFA(x, seq_lengths, dim=2)  # [n, c, p]
        embed = self.Head(x)
        return {"embeddings": embed, "training": {"triplet": {"embeddings": embed}}}

