"""GLN (Hou et al., "Gait Lateral Network: Learning Discriminative and Compact Representations for Gait
Recognition", ECCV 2020).

Silhouette-level and set-level features from three stages are joined top-down by lateral 1x1 convs and
nearest upsampling (a feature pyramid), smoothed by 3x3 convs and cut into 3 x 31 horizontal parts.
Phase 1 (``Lateral_pretraining: true``) trains that with a triplet loss. Phase 2 adds the compact block
(batch norm, dropout, a linear reduction to ``hidden_dim`` and a classifier) trained with cross-entropy
as well; the test embedding stays the part features of phase 1.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import MODELS
from .gaitset import conv_stage
from . import layers  # layers.X where a config key named X shadows the class
from .layers import HorizontalPoolingPyramid, PackSequenceWrapper, SetBlockWrapper


@MODELS.register()
class GLN(nn.Module):
    def __init__(self, in_channels: list[int], SeparateFCs: dict, class_num: int, lateral_dim: int = 256,
                 hidden_dim: int = 256, dropout: float = 0.9, bin_num: list[int] = (16, 8, 4, 2, 1),
                 Lateral_pretraining: bool = True):
        super().__init__()
        c = in_channels
        self.bin_num = list(bin_num)
        self.hidden_dim = hidden_dim
        self.pretrain = Lateral_pretraining

        self.sil_stage_0 = SetBlockWrapper(conv_stage(c[0], c[1], first_kernel=5, pool=False))
        self.sil_stage_1 = SetBlockWrapper(conv_stage(c[1], c[2], pool=False))
        self.sil_stage_2 = SetBlockWrapper(conv_stage(c[2], c[3], pool=False))
        self.set_stage_1 = conv_stage(c[1], c[2], pool=False)
        self.set_stage_2 = conv_stage(c[2], c[3], pool=False)

        self.set_pooling = PackSequenceWrapper(torch.max)
        self.MaxP_sil = SetBlockWrapper(nn.MaxPool2d(kernel_size=2, stride=2))
        self.MaxP_set = nn.MaxPool2d(kernel_size=2, stride=2)

        # Each pyramid level sees the silhouette-level and set-level maps concatenated (2x channels).
        self.lateral_layer1 = nn.Conv2d(c[1] * 2, lateral_dim, kernel_size=1, bias=False)
        self.lateral_layer2 = nn.Conv2d(c[2] * 2, lateral_dim, kernel_size=1, bias=False)
        self.lateral_layer3 = nn.Conv2d(c[3] * 2, lateral_dim, kernel_size=1, bias=False)
        self.smooth_layer1 = nn.Conv2d(lateral_dim, lateral_dim, kernel_size=3, padding=1, bias=False)
        self.smooth_layer2 = nn.Conv2d(lateral_dim, lateral_dim, kernel_size=3, padding=1, bias=False)
        self.smooth_layer3 = nn.Conv2d(lateral_dim, lateral_dim, kernel_size=3, padding=1, bias=False)

        self.HPP = HorizontalPoolingPyramid(bin_num=self.bin_num)
        self.Head = layers.SeparateFCs(**SeparateFCs)

        if not self.pretrain:
            # Compact block. The BN biases stay fixed at zero, as in the paper's BNNeck.
            compact_in = sum(self.bin_num) * 3 * hidden_dim
            self.encoder_bn = nn.BatchNorm1d(compact_in)
            self.encoder_bn.bias.requires_grad_(False)
            self.reduce_dp = nn.Dropout(p=dropout)
            self.reduce_ac = nn.ReLU(inplace=True)
            self.reduce_fc = nn.Linear(compact_in, hidden_dim, bias=False)
            self.reduce_bn = nn.BatchNorm1d(hidden_dim)
            self.reduce_bn.bias.requires_grad_(False)
            self.reduce_cls = nn.Linear(hidden_dim, class_num, bias=False)

    @staticmethod
    def upsample_add(top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
        return F.interpolate(top, scale_factor=2, mode="nearest") + lateral

    def forward(self, sils: torch.Tensor, seq_lengths=None) -> dict:
        def set_pool(x):
            return self.set_pooling(x, seq_lengths, dim=2)

        sil_0 = self.sil_stage_0(sils.unsqueeze(1))  # [n, c1, s, h, w]
        sil_1_in = self.MaxP_sil(sil_0)
        sil_1 = self.sil_stage_1(sil_1_in)  # [n, c2, s, h/2, w/2]
        sil_2 = self.sil_stage_2(self.MaxP_sil(sil_1))  # [n, c3, s, h/4, w/4]

        set_0 = set_pool(sil_0)
        set_1_sil = set_pool(sil_1)
        set_1 = self.set_stage_1(set_pool(sil_1_in)) + set_1_sil
        set_2_sil = set_pool(sil_2)
        set_2 = self.set_stage_2(self.MaxP_set(set_1)) + set_2_sil

        # Stage 0 has no set-level branch: its silhouette-level map stands in for both halves.
        level3 = self.lateral_layer3(torch.cat((set_2_sil, set_2), dim=1))
        level2 = self.upsample_add(level3, self.lateral_layer2(torch.cat((set_1_sil, set_1), dim=1)))
        level1 = self.upsample_add(level2, self.lateral_layer1(torch.cat((set_0, set_0), dim=1)))

        feature = torch.cat([self.HPP(self.smooth_layer1(level1)), self.HPP(self.smooth_layer2(level2)),
                             self.HPP(self.smooth_layer3(level3))], -1)  # [n, c, 3 * parts]
        feature = self.Head(feature)
        training = {"triplet": {"embeddings": feature}}

        if not self.pretrain:
            n = feature.size(0)
            compact = self.encoder_bn(feature.reshape(n, -1))
            compact = self.reduce_fc(self.reduce_ac(self.reduce_dp(compact)))
            # [n, class_num, 1]: one "part", the layout cross-entropy expects.
            logits = self.reduce_cls(self.reduce_bn(compact)).unsqueeze(-1)
            training["softmax"] = {"logits": logits}
        return {"embeddings": feature, "training": training}

