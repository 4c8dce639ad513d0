"""GaitGL (Lin et al., "Gait Recognition via Effective Global-Local Feature Representation and Local Temporal
Aggregation", ICCV 2021).

3D convolutions throughout. A global-local block (GLConv) convolves the whole map and, with separate weights,
each horizontal strip of it; local temporal aggregation (LTA) merges every 3 frames into one. Temporal max
pooling, generalized-mean pooling into 64 horizontal parts, one linear map per part, then either GaitGL's own
head (batch norm + per-part classifier) or a BNNeck.

OpenGait picks the network depth from the dataset name; here it follows from ``channels``: three widths give
the CASIA-B network, four the deeper OU-MVLP/GREW one (the only pairing OpenGait's configs use).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import ConfigError, MODELS
from . import layers  # layers.X where a config key named X shadows the class
from .layers import BasicConv3d, PackSequenceWrapper, SeparateFCs, pool_each_sequence


class GLConv(nn.Module):
    """Global + local 3D conv. The local conv runs on 2**halving horizontal strips separately.

    ``fm_sign`` False adds the two activated maps; True stacks them along the height (the output is twice as tall).
    """

    def __init__(self, in_channels: int, out_channels: int, halving: int, fm_sign: bool = False,
                 kernel_size=(3, 3, 3), stride=(1, 1, 1), padding=(1, 1, 1), bias: bool = False, **kwargs):
        super().__init__()
        self.halving = halving
        self.fm_sign = fm_sign
        self.global_conv3d = BasicConv3d(in_channels, out_channels, kernel_size, stride, padding, bias, **kwargs)
        self.local_conv3d = BasicConv3d(in_channels, out_channels, kernel_size, stride, padding, bias, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        global_feat = self.global_conv3d(x)  # [n, c, s, h, w]
        if self.halving == 0:
            local_feat = self.local_conv3d(x)
        else:
            strip = x.size(3) // 2 ** self.halving
            local_feat = torch.cat([self.local_conv3d(part) for part in x.split(strip, 3)], 3)
        if self.fm_sign:
            return F.leaky_relu(torch.cat([global_feat, local_feat], dim=3))
        return F.leaky_relu(global_feat) + F.leaky_relu(local_feat)


class GeMHPP(nn.Module):
    """Generalized-mean pooling over each horizontal strip, with a learned exponent p.

    [n, c, h, w] -> [n, c, sum(bin_num)]
    """

    def __init__(self, bin_num: list[int] = (64,), p: float = 6.5, eps: float = 1.0e-6):
        super().__init__()
        self.bin_num = list(bin_num)
        # torch.full, not ones(1) * p: arithmetic on the meta device (where configs are checked) imports torch's
        # compiler, 0.9 s of start-up
        self.p = nn.Parameter(torch.full((1,), float(p)))
        self.eps = eps

    def gem(self, x: torch.Tensor) -> torch.Tensor:
        # x: [n, c, bins, strip]; mean of x**p over the strip, then the p-th root.
        return x.clamp(min=self.eps).pow(self.p).mean(-1).pow(1.0 / self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        return torch.cat([self.gem(x.reshape(n, c, bins, -1)) for bins in self.bin_num], -1)


def conv3d_relu(in_c: int, out_c: int, **kwargs) -> list[nn.Module]:
    return [BasicConv3d(in_c, out_c, **kwargs), nn.LeakyReLU(inplace=True)]


@MODELS.register()
class GaitGL(nn.Module):
    def __init__(self, channels: list[int], class_num: int, SeparateBNNecks: dict | None = None):
        super().__init__()
        c = channels
        if len(c) not in (3, 4):
            raise ConfigError(f"GaitGL: channels must list 3 widths (CASIA-B network) or 4 (OU-MVLP/GREW network), "
                              f"got {c}")
        # LTA: a temporal kernel of 3 with stride 3 turns every 3 frames into one.
        lta = dict(kernel_size=(3, 1, 1), stride=(3, 1, 1), padding=(0, 0, 0))
        if len(c) == 4:
            self.conv3d = nn.Sequential(*conv3d_relu(1, c[0]), *conv3d_relu(c[0], c[0]))
            self.LTA = nn.Sequential(*conv3d_relu(c[0], c[0], **lta))
            self.GLConvA0 = nn.Sequential(GLConv(c[0], c[1], halving=1), GLConv(c[1], c[1], halving=1))
            self.GLConvA1 = nn.Sequential(GLConv(c[1], c[2], halving=1), GLConv(c[2], c[2], halving=1))
            self.GLConvB2 = nn.Sequential(GLConv(c[2], c[3], halving=1), GLConv(c[3], c[3], halving=1, fm_sign=True))
        else:
            self.conv3d = nn.Sequential(*conv3d_relu(1, c[0]))
            self.LTA = nn.Sequential(*conv3d_relu(c[0], c[0], **lta))
            self.GLConvA0 = GLConv(c[0], c[1], halving=3)
            self.GLConvA1 = GLConv(c[1], c[2], halving=3)
            self.GLConvB2 = GLConv(c[2], c[2], halving=3, fm_sign=True)
        self.MaxPool0 = nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))

        self.TP = PackSequenceWrapper(torch.max)
        self.HPP = GeMHPP()
        self.Head0 = SeparateFCs(64, c[-1], c[-1])
        self.Bn_head = SeparateBNNecks is None
        if self.Bn_head:  # GaitGL's own head
            self.Bn = nn.BatchNorm1d(c[-1])
            self.Head1 = SeparateFCs(64, c[-1], class_num)
        else:
            self.BNNecks = layers.SeparateBNNecks(**SeparateBNNecks)

    def trunk(self, sils: torch.Tensor) -> torch.Tensor:
        """[n, 1, s, h, w] -> [n, c, s // 3, h', w'] for sequences of one length."""
        if sils.size(2) < 3:  # LTA needs at least 3 frames
            sils = sils.repeat(1, 1, 3 if sils.size(2) == 1 else 2, 1, 1)
        x = self.LTA(self.conv3d(sils))
        x = self.MaxPool0(self.GLConvA0(x))
        return self.GLConvB2(self.GLConvA1(x))

    def forward(self, sils: torch.Tensor, seq_lengths=None) -> dict:
        x = pool_each_sequence(self.trunk, self.TP, sils.unsqueeze(1), seq_lengths)  # [n, c, h, w]
        gait = self.Head0(self.HPP(x))  # [n, c, p]
        if self.Bn_head:
            embed = self.Bn(gait)
            logits = self.Head1(embed)
        else:
            embed = gait
            _, logits = self.BNNecks(gait)
        return {"embeddings": embed,
                "training": {"triplet": {"embeddings": embed}, "softmax": {"logits": logits}}}

