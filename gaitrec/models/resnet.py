"""ResNet9: the 2D backbone of GaitBase (Fan et al., "OpenGait: Revisiting Gait Recognition Toward Better
Practicality", CVPR 2023). GaitBase itself is the ``Baseline`` model with this backbone.

A 3x3 stem (no 7x7) and four residual stages; a stage with 0 blocks is skipped. Max pooling after the stem
is on by default, as in OpenGait; GaitBase's configs turn it off (``maxpool: false``): silhouettes are small. Parameter names follow torchvision's ResNet, which OpenGait's version extends.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ..registry import ConfigError
from .layers import BACKBONES, BasicBlock2D, BasicConv2d, conv1x1, conv3x3


class Bottleneck(nn.Module):
    """ResNet bottleneck block: 1x1 reduce, 3x3 (strided), 1x1 expand by 4, identity shortcut."""
    expansion = 4
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))  # bnK(convK(x)) in forward

    def __init__(self, inplanes: int, planes: int, stride=1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


BLOCKS = {"BasicBlock": BasicBlock2D, "Bottleneck": Bottleneck}


@BACKBONES.register()
class ResNet9(nn.Module):
    conv_bn_pairs = (("conv1", "bn1"),)  # bn1(conv1(x)) in forward

    def __init__(self, block: str, channels: Sequence[int] = (32, 64, 128, 256), in_channel: int = 1,
                 layers: Sequence[int] = (1, 2, 2, 1), strides: Sequence[int] = (1, 2, 2, 1), maxpool: bool = True):
        super().__init__()
        if block not in BLOCKS:
            raise ConfigError(f"ResNet9: block {block!r} is not one of {', '.join(BLOCKS)}")
        block_cls = BLOCKS[block]
        self.maxpool_flag = maxpool
        self.inplanes = channels[0]
        self.conv1 = BasicConv2d(in_channel, self.inplanes, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block_cls, channels[0], layers[0], strides[0])
        self.layer2 = self._make_layer(block_cls, channels[1], layers[1], strides[1])
        self.layer3 = self._make_layer(block_cls, channels[2], layers[2], strides[2])
        self.layer4 = self._make_layer(block_cls, channels[3], layers[3], strides[3])

    def _make_layer(self, block, planes: int, blocks: int, stride: int) -> nn.Module:
        if blocks < 1:
            return nn.Identity()
        out_planes = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_planes:
            downsample = nn.Sequential(conv1x1(self.inplanes, out_planes, stride), nn.BatchNorm2d(out_planes))
        stage = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = out_planes
        stage += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool_flag:
            x = self.maxpool(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
