import math

import pytest
import torch

from gaitrec.losses import CrossEntropyLoss, TripletLoss, build_losses, total_loss

EMB = torch.tensor([0.0, 1.0, 3.0, 4.0]).reshape(4, 1, 1)  # [n, c, p]
LABELS = torch.tensor([0, 0, 1, 1])


def test_triplet_loss_hand_computed():
    # one part, 1-D embeddings: 0 and 1 (subject 0), 3 and 4 (subject 1); the anchor is its own positive
    emb = EMB
    labels = LABELS
    loss, info = TripletLoss(margin=0.2)(emb, labels)
    # the hardest triple is d_ap=1, d_an=2: relu(1 - 2 + 0.2) = 0, so every term is zero
    assert float(loss) == 0.0 and float(info["loss_num"]) == 0.0
    loss, info = TripletLoss(margin=2.5)(emb, labels)
    # relu(d_ap - d_an + 2.5) per anchor: 0 -> {0.5}; 1 -> {1.5, 0.5, 0.5}; 3 -> {0.5, 0.5, 1.5}; 4 -> {0.5}
    # 8 non-zero terms summing to 6.0 -> 0.75
    assert float(loss) == pytest.approx(0.75)
    assert float(info["loss_num"]) == 8


def test_triplet_loss_averages_over_parts():
    two_parts = torch.cat([EMB, EMB * 0], dim=2)  # second part: all zero -> every triple = margin
    loss, _ = TripletLoss(margin=2.5)(two_parts, LABELS)
    assert float(loss) == pytest.approx((0.75 + 2.5) / 2)


def test_cross_entropy_hand_computed():
    logits = torch.tensor([[[0.1], [0.0]], [[0.0], [0.1]]])  # [n=2, classes=2, p=1]
    labels = torch.tensor([0, 0])
    loss, info = CrossEntropyLoss(scale=16, label_smooth=False)(logits, labels)
    l0 = -math.log(math.exp(1.6) / (math.exp(1.6) + 1))
    l1 = -math.log(1 / (1 + math.exp(1.6)))
    assert float(loss) == pytest.approx((l0 + l1) / 2, rel=1e-5)
    assert float(info["accuracy"]) == 0.5
    smooth, _ = CrossEntropyLoss(scale=16, label_smooth=True, eps=0.1)(logits, labels)
    # smoothed target: 0.95 on the label, 0.05 on the other class
    p0 = [math.exp(1.6) / (math.exp(1.6) + 1), 1 / (math.exp(1.6) + 1)]
    expected0 = -(0.95 * math.log(p0[0]) + 0.05 * math.log(p0[1]))
    expected1 = -(0.95 * math.log(p0[1]) + 0.05 * math.log(p0[0]))
    assert float(smooth) == pytest.approx((expected0 + expected1) / 2, rel=1e-5)


def test_total_loss_weights_terms_and_logs_each():
    losses = build_losses([{"type": "TripletLoss", "margin": 2.5, "log_prefix": "triplet", "loss_term_weight": 1.0},
                           {"type": "CrossEntropyLoss", "scale": 16, "label_smooth": False, "log_prefix": "softmax",
                            "loss_term_weight": 0.1}])
    logits = torch.zeros(4, 2, 1)
    total, logged = total_loss(losses, {"triplet": {"embeddings": EMB}, "softmax": {"logits": logits}}, LABELS)
    assert float(total) == pytest.approx(0.75 + 0.1 * math.log(2), rel=1e-5)
    assert {"triplet/loss", "triplet/loss_num", "softmax/loss", "softmax/accuracy"} <= set(logged)
    with pytest.raises(ValueError, match="no training tensors under 'softmax'"):
        total_loss(losses, {"triplet": {"embeddings": EMB}}, LABELS)


def test_triplet_loss_needs_balanced_batches():
    with pytest.raises(ValueError, match="same number of sequences"):
        TripletLoss()(EMB[:3], LABELS[:3])
    with pytest.raises(ValueError, match="at least two subjects per batch"):
        TripletLoss()(EMB[:2], LABELS[:2])
