"""Inference preparation: folded batch norms and channels-last give the plain model's embeddings."""
from __future__ import annotations

import pytest
import torch

from gaitrec.engine.inference import fold_batch_norms, prepare_for_inference
from test_models import EXPECTED, HEIGHT, WIDTH, make, silhouettes

torch.set_num_threads(1)


def with_trained_statistics(model: torch.nn.Module) -> torch.nn.Module:
    """Batch norms with statistics and affine values far from the identity, so folding is really exercised."""
    generator = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.1)
            if m.affine:
                m.weight.data.copy_(torch.randn(n, generator=generator))
                m.bias.data.copy_(torch.randn(n, generator=generator))
    return model.eval()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_prepared_model_gives_the_plain_embeddings(name):
    plain = with_trained_statistics(make(name))
    fast = prepare_for_inference(with_trained_statistics(make(name)), torch.device("cpu"))
    x = silhouettes(2, 6, HEIGHT, WIDTH)
    with torch.no_grad():
        expected, got = plain(x)["embeddings"], fast(x)["embeddings"]
    scale = expected.abs().max().item()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("name, at_least", [("GaitBase", 9), ("DeepGaitV2-2d", 12), ("DeepGaitV2-3d", 10),
                                            ("DeepGaitV2-p3d", 12)])
def test_batch_norms_after_convolutions_are_folded(name, at_least):
    model = with_trained_statistics(make(name))
    assert fold_batch_norms(model) >= at_least
    # the batch norms that stay (after a pooling or a linear layer) are not preceded by a convolution
    assert fold_batch_norms(model) == 0


def test_folding_refuses_a_training_model():
    with pytest.raises(RuntimeError, match="eval mode"):
        fold_batch_norms(make("GaitBase").train())
