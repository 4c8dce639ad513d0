"""Losses, registered under OpenGait's config names.

A loss is called with the tensors the model put under its ``log_prefix`` plus ``labels`` and returns
``(loss, info)``: the scalar to optimise (before ``loss_term_weight``) and a dict of detached values to log.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ConfigError
from .registry import LOSSES


@LOSSES.register()
class TripletLoss(nn.Module):
    """Batch-all triplet loss, computed independently for every part and averaged over parts.

    For each part: every (anchor, positive, negative) triple of the batch contributes
    relu(d(a, p) - d(a, n) + margin); the part's loss is the mean over the non-zero triples (OpenGait's
    "average non-zero" reduction, which keeps the gradient from vanishing as easy triples go to zero).
    The anchor itself counts among its positives, as in OpenGait.
    """

    gathers_batch = True

    def __init__(self, margin: float = 0.2, loss_term_weight: float = 1.0):
        super().__init__()
        self.margin = margin
        self.loss_term_weight = loss_term_weight

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor,
                negatives: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """``negatives``: optional bool ``[n, n]``, the pairs known to be different people; only they serve as
        negatives (unlabelled tracks: two tracks seen at the same moment are two people, two tracks seen at
        different times may be one). Default: every pair of different labels."""
        x = embeddings.float().permute(2, 0, 1)  # [p, n, c]
        dist = part_distances(x, x)  # [p, n, n]
        same = labels[:, None] == labels[None, :]
        if negatives is not None:
            return self.masked(dist, same, negatives.to(dist.device).bool() & ~same)
        p, n, _ = dist.shape
        if bool(same.all()):
            raise ConfigError("TripletLoss needs at least two subjects per batch (trainer_cfg.sampler.batch_size[0])")
        if len(set(same.sum(1).tolist())) != 1:
            raise ConfigError("TripletLoss needs every subject in the batch to have the same number of sequences "
                             "(a P x K batch from TripletSampler)")
        ap = dist[:, same].reshape(p, n, -1, 1)  # [p, n, positives, 1]
        an = dist[:, ~same].reshape(p, n, 1, -1)  # [p, n, 1, negatives]
        losses = F.relu(ap - an + self.margin).reshape(p, -1)
        active = (losses > 0).sum(-1).float()
        per_part = losses.sum(-1) / active.clamp(min=1)
        loss = per_part.mean()
        info = {"loss": loss.detach(), "hard_loss": losses.max(-1)[0].mean().detach(),
                "loss_num": active.mean().detach(), "mean_dist": dist.mean().detach()}
        return loss, info

    def masked(self, dist: torch.Tensor, same: torch.Tensor, negatives: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The same loss over the triples (a, p, n) with p of a's label and n in ``negatives[a]``: every
        triple is formed and the invalid ones are zeroed, since anchors have different numbers of negatives."""
        valid = same[:, :, None] & negatives[:, None, :]  # [anchor, positive, negative]
        losses = (F.relu(dist[:, :, :, None] - dist[:, :, None, :] + self.margin) * valid).flatten(1)  # [p, n*n*n]
        active = (losses > 0).sum(-1).float()
        loss = (losses.sum(-1) / active.clamp(min=1)).mean()
        info = {"loss": loss.detach(), "hard_loss": losses.max(-1)[0].mean().detach(),
                "loss_num": active.mean().detach(), "mean_dist": dist.mean().detach()}
        return loss, info


def part_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distances per part: [p, n, c] x [p, m, c] -> [p, n, m]."""
    d2 = x.pow(2).sum(-1, keepdim=True) + y.pow(2).sum(-1).unsqueeze(1) - 2 * x.matmul(y.transpose(1, 2))
    return F.relu(d2).sqrt()


@LOSSES.register()
class CrossEntropyLoss(nn.Module):
    """Cross-entropy on every part's logits (scaled cosine logits from a BNNeck), optional label smoothing."""

    def __init__(self, scale: float = 16.0, label_smooth: bool = True, eps: float = 0.1, loss_term_weight: float = 1.0,
                 log_accuracy: bool = False):
        super().__init__()
        self.scale = scale
        self.label_smooth = label_smooth
        self.eps = eps
        self.loss_term_weight = loss_term_weight
        self.log_accuracy = log_accuracy

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
        n, _, p = logits.shape  # [n, classes, p]
        logits = logits.float()
        targets = labels[:, None].expand(n, p)
        loss = F.cross_entropy(logits * self.scale, targets, label_smoothing=self.eps if self.label_smooth else 0.0)
        # Accuracy of the softmax head is always logged: it is the quickest sign that training works.
        accuracy = (logits.argmax(1) == targets).float().mean()
        return loss, {"loss": loss.detach(), "accuracy": accuracy.detach()}


def build_losses(loss_cfgs: list[dict]) -> dict[str, nn.Module]:
    """``{log_prefix: loss module}`` from the config's loss entries."""
    losses = {}
    for cfg in loss_cfgs:
        kwargs = {k: v for k, v in cfg.items() if k not in ("type", "log_prefix")}
        prefix = cfg.get("log_prefix", cfg["type"])
        if prefix in losses:
            raise ConfigError(f"two losses share log_prefix {prefix!r}")
        losses[prefix] = LOSSES.build(cfg["type"], **kwargs)
    return losses


def total_loss(losses: dict[str, nn.Module], training_outputs: dict, labels: torch.Tensor, gather=None,
               world_size: int = 1) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of every configured loss, and the logged values: ``<prefix>/<name>`` and ``loss``.

    Under distributed training ``gather`` concatenates a tensor over all ranks. Losses that mine pairs
    (``gathers_batch``) then see the whole global batch, as in OpenGait, and their value is multiplied by
    the world size because DistributedDataParallel averages the ranks' gradients.
    """
    total = 0.0
    logged_total = 0.0
    logged = {}
    for prefix, loss_fn in losses.items():
        if prefix not in training_outputs:
            raise ConfigError(f"the model outputs no training tensors under {prefix!r} (it has: "
                           f"{', '.join(training_outputs)}); check log_prefix in loss_cfg")
        inputs, loss_labels, scale = training_outputs[prefix], labels, 1.0
        if gather is not None and getattr(loss_fn, "gathers_batch", False):
            inputs = {k: gather(v) for k, v in inputs.items()}
            loss_labels, scale = gather(labels), float(world_size)
        value, info = loss_fn(**inputs, labels=loss_labels)
        logged_total += float(value.detach()) * loss_fn.loss_term_weight
        value = value * scale
        total = total + value * loss_fn.loss_term_weight
        logged.update({f"{prefix}/{k}": float(v) for k, v in info.items()})
    logged["loss"] = logged_total  # the objective itself, without the world-size factor
    return total, logged
