"""Per-sequence transforms, named as in OpenGait configs.

A transform takes uint8 or float frames ``[T, H, W]`` (numpy) and a ``numpy.random.Generator`` (so that
augmentation is reproducible per seed and per worker) and returns float32 frames. The base transforms
scale to [0, 1]; the random ones expect already scaled frames and are combined with ``Compose``.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..registry import TRANSFORMS, ConfigError


@TRANSFORMS.register()
class BaseSilTransform:
    """Scale silhouettes to [0, 1]."""

    def __init__(self, divsor: float = 255.0, img_shape=None):
        self.divsor = divsor
        self.img_shape = img_shape

    def __call__(self, seq: np.ndarray, rng=None) -> np.ndarray:
        if self.img_shape is not None:
            seq = seq.reshape(seq.shape[0], *self.img_shape)
        return seq.astype(np.float32) / self.divsor


@TRANSFORMS.register()
class BaseSilCuttingTransform:
    """Scale to [0, 1] and cut ``w // 64 * 10`` columns from each side (64x64 -> 64x44, 128 -> 88)."""

    def __init__(self, divsor: float = 255.0, cutting: int | None = None):
        self.divsor = divsor
        self.cutting = cutting

    def __call__(self, seq: np.ndarray, rng=None) -> np.ndarray:
        cut = self.cutting if self.cutting is not None else seq.shape[-1] // 64 * 10
        if cut > 0:  # a zero cut must keep the frame (x[..., 0:-0] would be empty)
            seq = seq[..., cut:-cut]
        return seq.astype(np.float32) / self.divsor


@TRANSFORMS.register()
class NoOperation:
    def __call__(self, seq: np.ndarray, rng=None) -> np.ndarray:
        return seq


def _warp_frames(seq: np.ndarray, matrix: np.ndarray, perspective: bool = False) -> np.ndarray:
    h, w = seq.shape[-2:]
    warp = cv2.warpPerspective if perspective else cv2.warpAffine
    return np.stack([warp(np.ascontiguousarray(frame), matrix, (w, h)) for frame in seq]).astype(seq.dtype)


class RandomTransform:
    """An augmentation applied to the whole sequence with probability ``prob``."""

    prob: float

    def __call__(self, seq, rng):
        return self.apply(seq, rng) if rng.random() < self.prob else seq

    def apply(self, seq, rng):
        raise NotImplementedError


@TRANSFORMS.register()
class RandomHorizontalFlip(RandomTransform):
    def __init__(self, prob: float = 0.5):
        self.prob = prob

    def apply(self, seq, rng):
        return seq[..., ::-1].copy()


@TRANSFORMS.register()
class RandomErasing:
    """Zero a random rectangle (area fraction in [sl, sh], aspect in [r1, 1/r1]) of the whole sequence,
    or of each frame independently with ``per_frame``."""

    def __init__(self, prob: float = 0.5, sl: float = 0.05, sh: float = 0.2, r1: float = 0.3,
                 per_frame: bool = False):
        self.prob, self.sl, self.sh, self.r1, self.per_frame = prob, sl, sh, r1, per_frame

    def _erase(self, frames, rng):
        if rng.random() >= self.prob:
            return frames
        _, H, W = frames.shape
        for _ in range(100):
            area = rng.uniform(self.sl, self.sh) * H * W
            aspect = rng.uniform(self.r1, 1 / self.r1)
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if h < H and w < W:
                top, left = rng.integers(0, H - h + 1), rng.integers(0, W - w + 1)
                frames = frames.copy()
                frames[:, top:top + h, left:left + w] = 0
                return frames
        return frames

    def __call__(self, seq, rng):
        if self.per_frame:
            return np.concatenate([self._erase(seq[k:k + 1], rng) for k in range(len(seq))])
        return self._erase(seq, rng)


@TRANSFORMS.register()
class RandomRotate(RandomTransform):
    """Rotate the whole sequence by an angle in [-degree, degree] around the frame centre."""

    def __init__(self, prob: float = 0.5, degree: float = 10):
        self.prob, self.degree = prob, degree

    def apply(self, seq, rng):
        h, w = seq.shape[-2:]
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-self.degree, self.degree), 1)
        return _warp_frames(seq, matrix)


@TRANSFORMS.register()
class RandomPerspective(RandomTransform):
    """Stretch a random trapezoid whose corners lie in the side margins (``w // 44 * 10`` wide) to the frame."""

    def __init__(self, prob: float = 0.5):
        self.prob = prob

    def apply(self, seq, rng):
        h, w = seq.shape[-2:]
        margin = max(1, w // 44 * 10)
        left = lambda: rng.integers(0, margin)  # noqa: E731
        right = lambda: rng.integers(w - margin, w)  # noqa: E731
        src = np.float32([[left(), 0], [right(), 0], [right(), h], [left(), h]])
        dst = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        return _warp_frames(seq, cv2.getPerspectiveTransform(src, dst), perspective=True)


@TRANSFORMS.register()
class RandomAffine(RandomTransform):
    """A random affine warp moving three anchor points by up to ``h // 64 * 10`` pixels."""

    def __init__(self, prob: float = 0.5, degree: float = 10):
        self.prob, self.degree = prob, degree

    def apply(self, seq, rng):
        h, w = seq.shape[-2:]
        shift = max(1, h // 64 * 10)
        s = lambda: rng.integers(0, shift)  # noqa: E731
        pts = lambda: np.float32([[s(), s()], [h - s(), s()], [s(), w - s()]])  # noqa: E731
        return _warp_frames(seq, cv2.getAffineTransform(pts(), pts()))


@TRANSFORMS.register()
class Compose:
    """Apply a list of transforms in order (``trf_cfg``: a list of ``{type: ..., **kwargs}``)."""

    def __init__(self, trf_cfg: list):
        if not isinstance(trf_cfg, list):
            raise ConfigError("Compose.trf_cfg must be a list of transforms")
        self.transforms = [build_transform(entry) for entry in trf_cfg]

    def __call__(self, seq, rng):
        for transform in self.transforms:
            seq = transform(seq, rng)
        return seq


def build_transform(cfg) -> object:
    """A transform from a config entry; OpenGait gives one entry per modality, so a list must hold one."""
    if isinstance(cfg, list):
        if len(cfg) != 1:
            raise ConfigError(f"transform lists one entry per input modality; gaitrec models take one, got {len(cfg)}")
        cfg = cfg[0]
    if cfg is None:
        return NoOperation()
    kwargs = {k: v for k, v in cfg.items() if k != "type"}
    try:
        return TRANSFORMS.build(cfg["type"], **kwargs)
    except TypeError as err:
        raise ConfigError(f"transform {cfg['type']}: {err}") from None
