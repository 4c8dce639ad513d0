"""DeepGaitV2 (Fan et al., "Exploring Deep Models for Practical Gait Recognition", 2023).

A ResNet-like backbone whose first two layers are frame-wise 2D; the last three stages are 2D, 3D or
pseudo-3D (``Backbone.mode``: 2d, 3d, p3d), then temporal max pooling, 16 horizontal parts, separate FCs
and a BNNeck. A P3D block is a 2D basic block with a temporal (3x1x1) residual conv between its two convs.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..registry import ConfigError, MODELS
from . import layers  # layers.X where a config key named X shadows the class
from .layers import (BasicBlock2D, HorizontalPoolingPyramid, PackSequenceWrapper, SeparateFCs,
                     SetBlockWrapper, conv1x1, conv3x3, pool_each_sequence)


class BasicBlockP3D(nn.Module):
    """[n, c, s, h, w]: 2D conv (strided) -> temporal 3x1x1 conv added as a residual -> 2D conv, plus shortcut."""
    expansion = 1

    conv_bn_pairs = (("shortcut3d", "sbn"),)  # sbn(shortcut3d(out)) in forward

    def __init__(self, inplanes: int, planes: int, stride=(1, 1), downsample: nn.Module | None = None):
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = SetBlockWrapper(nn.Sequential(conv3x3(inplanes, planes, stride), nn.BatchNorm2d(planes),
                                                   nn.ReLU(inplace=True)))
        self.conv2 = SetBlockWrapper(nn.Sequential(conv3x3(planes, planes), nn.BatchNorm2d(planes)))
        self.shortcut3d = nn.Conv3d(planes, planes, (3, 1, 1), (1, 1, 1), (1, 0, 0), bias=False)
        self.sbn = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv1(x)
        out = self.relu(out + self.sbn(self.shortcut3d(out)))
        out = self.conv2(out)
        return self.relu(out + identity)


class BasicBlock3D(nn.Module):
    """ResNet basic block with 3x3x3 convs; ``stride`` is (time, height, width)."""
    expansion = 1
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"))  # the residual of BasicBlock2D: bnK(convK(x))

    def __init__(self, inplanes: int, planes: int, stride=(1, 1, 1), downsample: nn.Module | None = None):
        super().__init__()
        if stride[0] not in (1, 2, 3):
            raise ConfigError(f"BasicBlock3D: temporal stride must be 1, 2 or 3, got {stride[0]}")
        temporal_pad = 1 if stride[0] in (1, 2) else 0
        self.conv1 = nn.Conv3d(inplanes, planes, (3, 3, 3), stride=stride, padding=(temporal_pad, 1, 1), bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(planes, planes, (3, 3, 3), stride=(1, 1, 1), padding=(1, 1, 1), bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample

    forward = BasicBlock2D.forward  # the same residual: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut)


BLOCKS = {"2d": BasicBlock2D, "p3d": BasicBlockP3D, "3d": BasicBlock3D}


@MODELS.register()
class DeepGaitV2(nn.Module):
    def __init__(self, Backbone: dict, SeparateBNNecks: dict, use_emb2: bool = False):
        super().__init__()
        mode = Backbone["mode"]
        if mode not in BLOCKS:
            raise ConfigError(f"DeepGaitV2: Backbone.mode {mode!r} is not one of {', '.join(BLOCKS)}")
        self.mode = mode
        block = BLOCKS[mode]
        channels, blocks = Backbone["channels"], Backbone["layers"]
        # The 3D stages take (time, height, width) strides and never stride over time.
        if mode == "3d":
            strides = [(1, 1), (1, 2, 2), (1, 2, 2), (1, 1, 1)]
        else:
            strides = [(1, 1), (2, 2), (2, 2), (1, 1)]
        self.inference_use_emb2 = use_emb2

        self.inplanes = channels[0]
        self.layer0 = SetBlockWrapper(nn.Sequential(conv3x3(Backbone["in_channels"], self.inplanes, 1),
                                                    nn.BatchNorm2d(self.inplanes), nn.ReLU(inplace=True)))
        self.layer1 = SetBlockWrapper(self.make_layer(BasicBlock2D, channels[0], strides[0], blocks[0], mode))
        self.layer2 = self.make_layer(block, channels[1], strides[1], blocks[1], mode)
        self.layer3 = self.make_layer(block, channels[2], strides[2], blocks[2], mode)
        self.layer4 = self.make_layer(block, channels[3], strides[3], blocks[3], mode)
        if mode == "2d":
            self.layer2 = SetBlockWrapper(self.layer2)
            self.layer3 = SetBlockWrapper(self.layer3)
            self.layer4 = SetBlockWrapper(self.layer4)

        self.FCs = SeparateFCs(16, channels[3], channels[2])
        self.BNNecks = layers.SeparateBNNecks(16, channels[2], class_num=SeparateBNNecks["class_num"])
        self.TP = PackSequenceWrapper(torch.max)
        self.HPP = HorizontalPoolingPyramid(bin_num=[16])

    def make_layer(self, block, planes: int, stride, blocks_num: int, mode: str) -> nn.Sequential:
        out_planes = planes * block.expansion
        downsample = None
        if max(stride) > 1 or self.inplanes != out_planes:
            if mode == "2d":
                downsample = nn.Sequential(conv1x1(self.inplanes, out_planes, stride=stride),
                                           nn.BatchNorm2d(out_planes))
            else:
                # p3d strides are (height, width); as a 3D conv it keeps time.
                stride_3d = stride if mode == "3d" else (1, *stride)
                downsample = nn.Sequential(nn.Conv3d(self.inplanes, out_planes, kernel_size=1, stride=stride_3d,
                                                     bias=False), nn.BatchNorm3d(out_planes))
        stage = [block(self.inplanes, planes, stride=stride, downsample=downsample)]
        self.inplanes = out_planes
        unit_stride = (1, 1, 1) if block is BasicBlock3D else (1, 1)
        stage += [block(self.inplanes, planes, stride=unit_stride) for _ in range(1, blocks_num)]
        return nn.Sequential(*stage)

    def temporal_stages(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(x)))

    def forward(self, sils: torch.Tensor, seq_lengths=None) -> dict:
        x = self.layer1(self.layer0(sils.unsqueeze(1)))  # frame-wise: [n, c, s, h, w]
        if self.mode == "2d":
            x = self.TP(self.temporal_stages(x), seq_lengths, dim=2)
        else:
            x = pool_each_sequence(self.temporal_stages, self.TP, x, seq_lengths)  # [n, c, h, w]
        embed_1 = self.FCs(self.HPP(x))  # [n, c, p]
        embed_2, logits = self.BNNecks(embed_1)
        embed = embed_2 if self.inference_use_emb2 else embed_1
        return {"embeddings": embed,
                "training": {"triplet": {"embeddings": embed_1}, "softmax": {"logits": logits}}}

