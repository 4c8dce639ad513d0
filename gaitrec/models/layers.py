"""Building blocks shared by the gait models.

Class and attribute names follow OpenGait's (``SetBlockWrapper.forward_block``, ``SeparateFCs.fc_bin``,
``SeparateBNNecks.bn1d`` ...) because they become parameter names, and OpenGait checkpoints must load
strictly. Tensor layout conventions: a sequence batch is ``[n, c, s, h, w]`` (s = frames), a part feature
is ``[n, c, p]`` (p = horizontal parts).
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..registry import Registry

BACKBONES = Registry("backbone")


def as_lengths(seq_lengths) -> list[int] | None:
    """Sequence lengths as a plain list of ints (accepts a list, a tensor, or None)."""
    if seq_lengths is None:
        return None
    if isinstance(seq_lengths, torch.Tensor):
        return [int(v) for v in seq_lengths.flatten().tolist()]
    return [int(v) for v in seq_lengths]


def split_packed(x: torch.Tensor, seq_lengths, dim: int = 2) -> list[torch.Tensor]:
    """Split a packed tensor (sequences concatenated along ``dim``) into one tensor per sequence."""
    lengths = as_lengths(seq_lengths)
    if lengths is None:
        return list(x.unbind(0))
    if sum(lengths) != x.size(dim):
        raise ValueError(f"sequence lengths add up to {sum(lengths)} but the packed input has {x.size(dim)} frames")
    return list(torch.split(x, lengths, dim=dim))


class SetBlockWrapper(nn.Module):
    """Applies a frame-wise 2D block to every frame of a sequence batch ``[n, c, s, h, w]``."""

    def __init__(self, forward_block: nn.Module):
        super().__init__()
        self.forward_block = forward_block

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        n, c, s, h, w = x.shape
        x = self.forward_block(x.transpose(1, 2).reshape(n * s, c, h, w), *args, **kwargs)
        # A view, not a copy: the next wrapper's transpose and reshape then give the frames back without
        # copying, in the memory format the block wrote (channels-last on the CPU), so nothing converts
        # between set blocks (Baseline 1.2x, GLN 1.3x per forward on the CPU in channels-last).
        return x.reshape(n, s, *x.shape[1:]).transpose(1, 2)


def reduce_in_memory_order(x: torch.Tensor, dim: int, reduce: Callable = torch.amax) -> torch.Tensor:
    """``reduce(x, dim)`` (``torch.amax``, ``torch.sum``) computed on ``x`` permuted into the order its elements
    lie in memory, then permuted back. Channels-last maps seen as ``[n, c, ...]`` have the channels innermost:
    reducing another axis of that view walks memory with a stride of c, 20-50x slower than the same reduction
    of the memory-ordered view, which runs along contiguous channels."""
    dim = dim % x.dim()
    order = sorted(range(x.dim()), key=lambda d: (-x.stride(d), -x.shape[d]))  # outermost memory axis first
    reduced = reduce(x.permute(order), order.index(dim))
    kept = [d for d in order if d != dim]  # the result's axes, in memory order
    return reduced.permute([kept.index(d) for d in range(x.dim()) if d != dim])


def max_values(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``torch.max(x, dim).values`` without the indices, reduced in memory order (``reduce_in_memory_order``).

    Equal to it bit for bit (a maximum does not round). The set and temporal poolings reduce the frames of a
    ``[n, c, s, h, w]`` view whose memory is ``[n, s, h, w, c]`` (channels-last frames): ``torch.max`` walks
    that view element by element and computes indices nobody reads, about 20x slower than reducing the
    memory-ordered view. Without gradients only: the gradient of ``torch.max`` goes to one frame of a tie,
    as in OpenGait's training, and ``amax`` would share it.
    """
    return reduce_in_memory_order(x, dim, torch.amax)


class PackSequenceWrapper(nn.Module):
    """Pools over time (``dim``) one sequence at a time when several are packed along that axis.

    With ``seq_lengths`` None every row of the batch is one sequence and the pooling runs on the whole
    tensor; otherwise the batch is ``[1, c, sum(lengths), ...]`` and the result has one row per sequence.
    Pooling functions that return (values, indices), like ``torch.max``, give their values.
    """

    def __init__(self, pooling_func: Callable):
        super().__init__()
        self.pooling_func = pooling_func

    def _pool(self, x, dim: int, **options):
        if self.pooling_func is torch.max and not options and not torch.is_grad_enabled():
            return max_values(x, dim)
        out = self.pooling_func(x, dim=dim, **options)
        return out[0] if isinstance(out, (tuple, list)) else out

    def forward(self, seqs: torch.Tensor, seq_lengths=None, dim: int = 2, **options) -> torch.Tensor:
        if seq_lengths is None:
            return self._pool(seqs, dim=dim, **options)
        return torch.cat([self._pool(seq, dim=dim, **options) for seq in split_packed(seqs, seq_lengths, dim)])


class HorizontalPoolingPyramid(nn.Module):
    """Splits the feature map into horizontal strips at several scales; mean + max per strip.

    [n, c, h, w] -> [n, c, sum(bin_num)]. Buffers nothing and owns no parameters.
    """

    def __init__(self, bin_num: Sequence[int] = (16, 8, 4, 2, 1)):
        super().__init__()
        self.bin_num = list(bin_num)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        finest = max(self.bin_num)
        if len(self.bin_num) == 1 or any(finest % bins for bins in self.bin_num) or x[0, 0].numel() % finest:
            features = []
            for bins in self.bin_num:
                z = x.reshape(n, c, bins, -1)
                features.append(reduce_in_memory_order(z, -1, torch.mean) + reduce_in_memory_order(z, -1, torch.amax))
            return torch.cat(features, -1)
        # Every coarser strip is a union of finest strips: one pass over the map gives the finest sums and
        # maxima, and the coarser ones follow from those (the map is read twice instead of twice per scale).
        strips = x.reshape(n, c, finest, -1)
        sums, maxima = reduce_in_memory_order(strips, -1, torch.sum), reduce_in_memory_order(strips, -1, torch.amax)
        features = []
        for bins in self.bin_num:
            group = finest // bins
            mean = sums.reshape(n, c, bins, group).sum(-1) / (strips.shape[-1] * group)
            features.append(mean + maxima.reshape(n, c, bins, group).amax(-1))
        return torch.cat(features, -1)


class SeparateFCs(nn.Module):
    """One linear map per part: [n, c_in, p] -> [n, c_out, p]."""

    def __init__(self, parts_num: int, in_channels: int, out_channels: int, norm: bool = False):
        super().__init__()
        self.p = parts_num
        self.norm = norm
        self.fc_bin = nn.Parameter(nn.init.xavier_uniform_(torch.zeros(parts_num, in_channels, out_channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(2, 0, 1).contiguous()  # [p, n, c_in]; a strided bmm splits into many tiny tasks
        weight = F.normalize(self.fc_bin, dim=1) if self.norm else self.fc_bin
        return x.matmul(weight).permute(1, 2, 0).contiguous()


class SeparateBNNecks(nn.Module):
    """BNNeck per part (Luo et al., "Bag of Tricks", 2019): batch norm, then a cosine classifier per part.

    [n, c, p] -> (normalised features [n, c, p], logits [n, class_num, p]).
    """

    def __init__(self, parts_num: int, in_channels: int, class_num: int, norm: bool = True,
                 parallel_BN1d: bool = True):
        super().__init__()
        self.p = parts_num
        self.class_num = class_num
        self.norm = norm
        self.parallel_BN1d = parallel_BN1d
        self.fc_bin = nn.Parameter(nn.init.xavier_uniform_(torch.zeros(parts_num, in_channels, class_num)))
        if parallel_BN1d:
            self.bn1d = nn.BatchNorm1d(in_channels * parts_num)
        else:
            self.bn1d = nn.ModuleList(nn.BatchNorm1d(in_channels) for _ in range(parts_num))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, c, p = x.shape
        if self.parallel_BN1d:
            x = self.bn1d(x.reshape(n, c * p)).reshape(n, c, p)
        else:
            x = torch.stack([bn(x[:, :, i]) for i, bn in enumerate(self.bn1d)], dim=2)
        feature = x.permute(2, 0, 1).contiguous()  # [p, n, c]
        if self.norm:
            feature = F.normalize(feature, dim=-1)
            logits = feature.matmul(F.normalize(self.fc_bin, dim=1))
        else:
            logits = feature.matmul(self.fc_bin)
        return feature.permute(1, 2, 0).contiguous(), logits.permute(1, 2, 0).contiguous()


class BasicConv2d(nn.Module):
    """A bias-free 2D convolution (OpenGait keeps it wrapped so the parameter is ``conv.weight``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False,
                              **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class BasicConv3d(nn.Module):
    """A bias-free 3D convolution, parameter ``conv3d.weight``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size=(3, 3, 3), stride=(1, 1, 1),
                 padding=(1, 1, 1), bias: bool = False, **kwargs):
        super().__init__()
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias,
                                **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3d(x)


class FocalConv2d(nn.Module):
    """GaitPart's focal convolution: the map is cut into 2**halving horizontal strips, each convolved alone."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, halving: int, **kwargs):
        super().__init__()
        self.halving = halving
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, bias=False, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.halving == 0:
            return self.conv(x)
        strips = 2 ** self.halving
        n, c, h, w = x.shape
        if h % strips:  # as OpenGait: pieces of h // strips rows (one more than strips), each convolved
            return torch.cat([self.conv(part) for part in x.split(h // strips, 2)], 2)
        # The strips as a batch of short images, padded each on its own as when convolved one by one: one
        # convolution instead of up to 8 small ones (15-40% faster). In the channels-last layout the strips
        # are this batch already (no copy) and the values are bit-identical to the strip-by-strip ones.
        batch = x.permute(0, 2, 3, 1).reshape(n * strips, h // strips, w, c).permute(0, 3, 1, 2)
        y = self.conv(batch)
        return y.permute(0, 2, 3, 1).reshape(n, strips * y.shape[2], y.shape[3], y.shape[1]).permute(0, 3, 1, 2)


@BACKBONES.register()
class Plain(nn.Module):
    """A VGG-like stack described by strings: ``BC-64`` a 3x3 conv + LeakyReLU (the first one 5x5),
    ``FC-64-2`` a focal conv with halving 2, ``M`` a 2x2 max pool."""

    def __init__(self, layers_cfg: Sequence[str], in_channels: int = 1):
        super().__init__()
        self.layers_cfg = list(layers_cfg)
        self.in_channels = in_channels
        self.feature = self.make_layers()

    def make_layers(self) -> nn.Sequential:
        layers: list[nn.Module] = []
        in_c = self.in_channels
        for i, spec in enumerate(self.layers_cfg):
            if not isinstance(spec, str) or not re.fullmatch(r"M|BC-[1-9]\d*|FC-[1-9]\d*-\d+", spec):
                raise ConfigError(f"Plain backbone: layer {spec!r} must be BC-<c>, FC-<c>-<halving> or M")
            if spec == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            kind, *numbers = spec.split("-")
            kernel, pad = (5, 2) if i == 0 else (3, 1)
            out_c = int(numbers[0])
            if kind == "BC":
                layers.append(BasicConv2d(in_c, out_c, kernel, 1, pad))
            elif kind == "FC":
                layers.append(FocalConv2d(in_c, out_c, kernel, halving=int(numbers[1]), stride=1, padding=pad))
            else:
                raise ConfigError(f"Plain backbone: layer {spec!r} must be BC-<c>, FC-<c>-<halving> or M")
            layers.append(nn.LeakyReLU(inplace=True))
            in_c = out_c
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature(x)


def build_backbone(backbone_cfg: dict) -> nn.Module:
    """Build a backbone from ``{'type': name, **kwargs}``."""
    cfg = dict(backbone_cfg)
    return BACKBONES.build(cfg.pop("type"), **cfg)


def count_parameters(model: nn.Module) -> int:
    """All parameters, trainable or not (buffers such as BN running statistics are not parameters)."""
    return sum(p.numel() for p in model.parameters())


def pool_each_sequence(trunk: Callable, pool: PackSequenceWrapper, x: torch.Tensor, seq_lengths=None) -> torch.Tensor:
    """Runs a trunk that mixes frames (3D convolutions) and pools its output over time, one sequence at a time.

    x: [n, c, s, h, w] -> [num_sequences, c', h', w']. A temporal kernel run over a packed batch would blend the
    last frames of one sequence with the first of the next, so packed sequences go through the trunk alone.
    """
    if seq_lengths is None:
        return pool(trunk(x), dim=2)
    return torch.cat([pool(trunk(seq), dim=2) for seq in split_packed(x, seq_lengths, dim=2)])


def conv3x3(in_planes: int, out_planes: int, stride=1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride=1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock2D(nn.Module):
    """ResNet basic block (He et al., 2016): two 3x3 convs with batch norm and an identity shortcut.

    ``downsample`` (a module or None) maps the input onto the output's shape when stride or width change.
    Same parameter names as torchvision's ``BasicBlock``, which OpenGait's ResNet9 is built from.
    """
    expansion = 1
    # bnK is applied straight to convK's output in forward, so inference may fold it into the conv
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, inplanes: int, planes: int, stride=1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)
