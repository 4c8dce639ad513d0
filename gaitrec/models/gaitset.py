"""GaitSet (Chao et al., "GaitSet: Regarding Gait as a Set for Cross-View Gait Recognition", AAAI 2019).

A sequence is an unordered set of frames. Three conv stages run on every frame; after each stage the set is
max-pooled over time ("set pooling") and fed to a parallel global branch (``gl_block*``) that works on the
pooled map. Both branches end in a horizontal pooling pyramid and one linear map per part.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..registry import MODELS
from . import layers  # layers.X where a config key named X shadows the class
from .layers import BasicConv2d, HorizontalPoolingPyramid, PackSequenceWrapper, SetBlockWrapper


def conv_stage(in_c: int, out_c: int, first_kernel: int = 3, pool: bool = True) -> nn.Sequential:
    """Two convs with LeakyReLU, optionally followed by 2x2 max pooling."""
    layers = [BasicConv2d(in_c, out_c, first_kernel, 1, first_kernel // 2), nn.LeakyReLU(inplace=True),
              BasicConv2d(out_c, out_c, 3, 1, 1), nn.LeakyReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


@MODELS.register()
class GaitSet(nn.Module):
    def __init__(self, in_channels: list[int], SeparateFCs: dict, bin_num: list[int] = (16, 8, 4, 2, 1)):
        super().__init__()
        c = in_channels
        self.set_block1 = SetBlockWrapper(conv_stage(c[0], c[1], first_kernel=5))
        self.set_block2 = SetBlockWrapper(conv_stage(c[1], c[2]))
        self.set_block3 = SetBlockWrapper(conv_stage(c[2], c[3], pool=False))
        # The global branch has the layers of stages 2 and 3 but its own weights.
        self.gl_block2 = conv_stage(c[1], c[2])
        self.gl_block3 = conv_stage(c[2], c[3], pool=False)
        self.set_pooling = PackSequenceWrapper(torch.max)
        self.Head = layers.SeparateFCs(**SeparateFCs)
        self.HPP = HorizontalPoolingPyramid(bin_num=bin_num)

    def forward(self, sils: torch.Tensor, seq_lengths=None) -> dict:
        outs = self.set_block1(sils.unsqueeze(1))  # [n, c, s, h, w]
        gl = self.gl_block2(self.set_pooling(outs, seq_lengths, dim=2))

        outs = self.set_block2(outs)
        gl = self.gl_block3(gl + self.set_pooling(outs, seq_lengths, dim=2))

        outs = self.set_pooling(self.set_block3(outs), seq_lengths, dim=2)  # [n, c, h, w]
        gl = gl + outs

        feature = torch.cat([self.HPP(outs), self.HPP(gl)], -1)  # [n, c, 2 * parts]
        embed = self.Head(feature)
        return {"embeddings": embed, "training": {"triplet": {"embeddings": embed}}}

