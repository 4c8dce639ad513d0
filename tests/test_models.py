"""Model zoo: sizes and parameter names of OpenGait's recipes, output shapes, and packed-batch behaviour."""
from __future__ import annotations

import pytest
import torch

from gaitrec.config import CONFIG_DIR, load_config
from gaitrec.models import count_parameters, create_model
from gaitrec.registry import ConfigError

# OpenGait's parameter counts for its published configs (reference/models.md), plus the other datasets of
# the GaitBase and DeepGaitV2 recipes (counted on OpenGait's own classes).
PARAMETER_COUNTS = {
    "baseline/baseline": 3_779_136,
    "baseline/baseline_OUMVLP": 44_112_928,
    "baseline/baseline_GREW": 84_148_000,
    "baseline/baseline_Gait3D": 26_999_872,
    "gaitset/gaitset": 2_594_592,
    "gaitset/gaitset_OUMVLP": 6_313_536,
    "gaitset/gaitset_GREW": 6_313_536,
    "gaitpart/gaitpart": 1_204_000,
    "gaitpart/gaitpart_OUMVLP": 4_841_248,
    "gaitpart/gaitpart_GREW": 4_841_248,
    "gln/gln_phase1": 8_541_984,
    "gln/gln_phase2": 14_703_904,
    "gaitgl/gaitgl": 3_096_673,
    "gaitgl/gaitgl_OUMVLP": 95_620_449,
    "gaitgl/gaitgl_GREW": 338_873_697,
    "gaitgl/gaitgl_GREW_BNNeck": 338_905_953,
    "gaitbase/gaitbase_da_casiab": 7_305_408,
    "gaitbase/gaitbase_oumvlp": 28_108_992,
    "gaitbase/gaitbase_da_grew": 88_922_304,
    "gaitbase/gaitbase_da_gait3d": 19_290_304,
    "deepgaitv2/DeepGaitV2_casiab": 8_339_392,
    "deepgaitv2/DeepGaitV2_oumvlp": 29_142_976,
    "deepgaitv2/DeepGaitV2_grew": 95_124_160,
    "deepgaitv2/DeepGaitV2_gait3d": 25_492_160,
}

# A few parameter names per recipe, exactly as in OpenGait checkpoints.
CHECKPOINT_KEYS = {
    "baseline/baseline": ["Backbone.forward_block.feature.0.conv.weight", "FCs.fc_bin", "BNNecks.bn1d.running_var"],
    "gaitset/gaitset": ["set_block1.forward_block.0.conv.weight", "gl_block2.0.conv.weight",
                        "gl_block3.2.conv.weight", "Head.fc_bin"],
    "gaitpart/gaitpart": ["Backbone.forward_block.feature.7.conv.weight", "TFA.pooling_func.conv1d3x1.15.0.conv.weight",
                          "TFA.pooling_func.conv1d3x3.0.2.conv.weight", "Head.fc_bin"],
    "gln/gln_phase2": ["sil_stage_0.forward_block.0.conv.weight", "set_stage_2.2.conv.weight", "lateral_layer3.weight",
                       "smooth_layer1.weight", "encoder_bn.bias", "reduce_fc.weight", "reduce_bn.weight",
                       "reduce_cls.weight"],
    "gaitgl/gaitgl": ["conv3d.0.conv3d.weight", "LTA.0.conv3d.weight", "GLConvA0.local_conv3d.conv3d.weight",
                      "GLConvB2.global_conv3d.conv3d.weight", "HPP.p", "Head0.fc_bin", "Bn.weight", "Head1.fc_bin"],
    "gaitgl/gaitgl_GREW_BNNeck": ["conv3d.2.conv3d.weight", "GLConvB2.1.local_conv3d.conv3d.weight",
                                  "BNNecks.fc_bin", "BNNecks.bn1d.weight"],
    "gaitbase/gaitbase_da_casiab": ["Backbone.forward_block.conv1.conv.weight", "Backbone.forward_block.bn1.weight",
                                    "Backbone.forward_block.layer2.0.downsample.0.weight",
                                    "Backbone.forward_block.layer4.0.bn2.bias"],
    "deepgaitv2/DeepGaitV2_casiab": ["layer0.forward_block.0.weight", "layer1.forward_block.0.conv1.weight",
                                     "layer2.0.conv1.forward_block.0.weight", "layer2.0.shortcut3d.weight",
                                     "layer2.0.sbn.running_mean", "layer2.0.downsample.0.weight",
                                     "FCs.fc_bin", "BNNecks.bn1d.weight"],
}


def config_path(name: str):
    return CONFIG_DIR / f"{name}.yaml"


def build_on_meta(name: str):
    cfg = load_config(config_path(name), validate_config=False)
    with torch.device("meta"):  # counts shapes without allocating (GaitGL on GREW has 339M parameters)
        return create_model(cfg["model_cfg"])


@pytest.mark.parametrize("name", sorted(PARAMETER_COUNTS))
def test_parameter_count_matches_opengait(name):
    assert count_parameters(build_on_meta(name)) == PARAMETER_COUNTS[name]


@pytest.mark.parametrize("name", sorted(CHECKPOINT_KEYS))
def test_parameter_names_match_opengait(name):
    keys = set(build_on_meta(name).state_dict())
    missing = [k for k in CHECKPOINT_KEYS[name] if k not in keys]
    assert not missing


@pytest.mark.parametrize("name", sorted(PARAMETER_COUNTS))
def test_config_validates(name):
    load_config(config_path(name))


# Tiny versions of every model family: same code paths, a few thousand parameters.
def tiny(name: str) -> dict:
    cfgs = {
        "Baseline": dict(model="Baseline", backbone_cfg=dict(type="Plain", layers_cfg=["BC-8", "M", "BC-16"]),
                         SeparateFCs=dict(parts_num=31, in_channels=16, out_channels=8),
                         SeparateBNNecks=dict(parts_num=31, in_channels=8, class_num=5)),
        "GaitBase": dict(model="Baseline",
                         backbone_cfg=dict(type="ResNet9", block="BasicBlock", channels=[4, 8, 8, 16],
                                           layers=[1, 1, 1, 1], strides=[1, 2, 2, 1], maxpool=False),
                         SeparateFCs=dict(parts_num=16, in_channels=16, out_channels=8),
                         SeparateBNNecks=dict(parts_num=16, in_channels=8, class_num=5), bin_num=[16]),
        "GaitSet": dict(model="GaitSet", in_channels=[1, 4, 8, 16],
                        SeparateFCs=dict(parts_num=62, in_channels=16, out_channels=8)),
        "GaitPart": dict(model="GaitPart", backbone_cfg=dict(type="Plain", layers_cfg=["BC-8", "M", "FC-16-2", "M",
                                                                                       "FC-16-3"]),
                         SeparateFCs=dict(parts_num=16, in_channels=16, out_channels=8), bin_num=[16]),
        "GLN-1": dict(model="GLN", in_channels=[1, 4, 8, 16], class_num=5, lateral_dim=8, hidden_dim=8,
                      SeparateFCs=dict(parts_num=93, in_channels=8, out_channels=8), Lateral_pretraining=True),
        "GLN-2": dict(model="GLN", in_channels=[1, 4, 8, 16], class_num=5, lateral_dim=8, hidden_dim=8,
                      SeparateFCs=dict(parts_num=93, in_channels=8, out_channels=8), Lateral_pretraining=False),
        "GaitGL": dict(model="GaitGL", channels=[4, 8, 8], class_num=5),
        "GaitGL-deep": dict(model="GaitGL", channels=[4, 8, 8, 16], class_num=5),
        "GaitGL-BNNeck": dict(model="GaitGL", channels=[4, 8, 8, 16], class_num=5,
                              SeparateBNNecks=dict(parts_num=64, in_channels=16, class_num=5)),
    }
    for mode in ("2d", "3d", "p3d"):
        cfgs[f"DeepGaitV2-{mode}"] = dict(
            model="DeepGaitV2", SeparateBNNecks=dict(class_num=5),
            Backbone=dict(mode=mode, in_channels=1, layers=[1, 2, 1, 1], channels=[4, 8, 8, 16]))
    return cfgs[name]


# name -> (embedding [c, p], loss inputs {log_prefix: {input: shape after n}})
EXPECTED = {
    "Baseline": ((8, 31), {"triplet": {"embeddings": (8, 31)}, "softmax": {"logits": (5, 31)}}),
    "GaitBase": ((8, 16), {"triplet": {"embeddings": (8, 16)}, "softmax": {"logits": (5, 16)}}),
    "GaitSet": ((8, 62), {"triplet": {"embeddings": (8, 62)}}),
    "GaitPart": ((8, 16), {"triplet": {"embeddings": (8, 16)}}),
    "GLN-1": ((8, 93), {"triplet": {"embeddings": (8, 93)}}),
    "GLN-2": ((8, 93), {"triplet": {"embeddings": (8, 93)}, "softmax": {"logits": (5, 1)}}),
    "GaitGL": ((8, 64), {"triplet": {"embeddings": (8, 64)}, "softmax": {"logits": (5, 64)}}),
    "GaitGL-deep": ((16, 64), {"triplet": {"embeddings": (16, 64)}, "softmax": {"logits": (5, 64)}}),
    "GaitGL-BNNeck": ((16, 64), {"triplet": {"embeddings": (16, 64)}, "softmax": {"logits": (5, 64)}}),
    **{f"DeepGaitV2-{mode}": ((8, 16), {"triplet": {"embeddings": (8, 16)}, "softmax": {"logits": (5, 16)}})
       for mode in ("2d", "3d", "p3d")},
}
HEIGHT, WIDTH = 64, 44


def silhouettes(*shape, seed=0):
    return (torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) > 0.5).float()


def make(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(tiny(name))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_forward_shapes(name):
    model = make(name).train()
    out = model(silhouettes(2, 6, HEIGHT, WIDTH))
    embedding, training = EXPECTED[name]
    assert out["embeddings"].shape == (2, *embedding)
    assert {p: {k: tuple(v.shape) for k, v in inputs.items()} for p, inputs in out["training"].items()} == \
        {p: {k: (2, *shape) for k, shape in inputs.items()} for p, inputs in training.items()}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_packed_batch_equals_sequences_one_by_one(name):
    # Temporal convolutions (GaitGL, DeepGaitV2 3d/p3d) must not see across the boundary of two packed sequences.
    model = make(name).eval()
    lengths = [5, 3, 7]
    sequences = [silhouettes(1, n, HEIGHT, WIDTH, seed=i) for i, n in enumerate(lengths)]
    with torch.no_grad():
        packed = model(torch.cat(sequences, 1), seq_lengths=lengths)["embeddings"]
        one_by_one = torch.cat([model(seq)["embeddings"] for seq in sequences])
        as_tensor = model(torch.cat(sequences, 1), seq_lengths=torch.tensor(lengths))["embeddings"]
    assert packed.shape[0] == 3
    torch.testing.assert_close(packed, one_by_one, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(as_tensor, packed)


@pytest.mark.parametrize("frames", [1, 2])
def test_gaitgl_accepts_sequences_shorter_than_its_temporal_kernel(frames):
    model = make("GaitGL").eval()
    with torch.no_grad():
        out = model(silhouettes(1, frames, HEIGHT, WIDTH))["embeddings"]
    assert out.shape == (1, 8, 64) and torch.isfinite(out).all()


def test_gaitgl_variant_follows_the_number_of_channels():
    casia = create_model(dict(model="GaitGL", channels=[4, 8, 8], class_num=5))
    deep = create_model(dict(model="GaitGL", channels=[4, 8, 8, 16], class_num=5))
    assert len(casia.conv3d) == 2 and len(deep.conv3d) == 4
    with pytest.raises(ConfigError, match="channels"):
        create_model(dict(model="GaitGL", channels=[4, 8], class_num=5))


def test_packed_lengths_must_add_up():
    with pytest.raises(ValueError, match="add up"):
        make("GaitGL").eval()(silhouettes(1, 9, HEIGHT, WIDTH), seq_lengths=[4, 4])


def test_deepgaitv2_rejects_unknown_mode():
    cfg = tiny("DeepGaitV2-p3d")
    cfg["Backbone"]["mode"] = "4d"
    with pytest.raises(ConfigError, match="mode"):
        create_model(cfg)


def test_resnet9_bottleneck_and_skipped_stage():
    cfg = tiny("GaitBase")
    cfg["backbone_cfg"].update(block="Bottleneck", layers=[1, 1, 0, 1], channels=[4, 8, 8, 4])
    model = create_model(cfg).eval()
    assert model(silhouettes(1, 3, HEIGHT, WIDTH))["embeddings"].shape == (1, 8, 16)
    cfg["backbone_cfg"]["block"] = "Basic"
    with pytest.raises(ConfigError, match="block"):
        create_model(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_short_training_run_lowers_the_loss(name):
    """A few Adam steps on one fixed batch of SynthGait walks (4 subjects x 2 sequences) lower the loss."""
    from gaitrec.losses import build_losses, total_loss
    from gaitrec.synth import render_views

    frames = []
    for subject in range(4):
        for walk in ("nm-01", "nm-02"):
            seq = render_views(seed=0, index=subject, walk_type=walk, views=["090"], frames=8, size=64)["090"]
            frames.append(torch.from_numpy(seq[:6, :, 10:54]).float() / 255)  # a walk may drop a frame or two
    sils = torch.stack(frames)
    labels = torch.arange(4).repeat_interleave(2)
    model = make(name).train()
    entries = [{"type": "TripletLoss", "margin": 0.2, "log_prefix": "triplet"}]
    if "softmax" in EXPECTED[name][1]:
        entries.append({"type": "CrossEntropyLoss", "scale": 16, "log_prefix": "softmax", "loss_term_weight": 0.1})
    losses = build_losses(entries)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    values = []
    for _ in range(8):
        loss, logged = total_loss(losses, model(sils)["training"], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        values.append(logged["loss"])
    assert min(values[-3:]) < values[0], values


@pytest.mark.parametrize("name", ["Baseline", "GaitGL", "DeepGaitV2-3d", "GaitPart"])
def test_channels_last_placement_keeps_the_embeddings(name):
    from gaitrec.device import place_model

    plain = make(name).eval()
    fast = place_model(make(name).eval(), torch.device("cpu"), channels_last=True)
    x = silhouettes(2, 6, HEIGHT, WIDTH)
    with torch.no_grad():
        torch.testing.assert_close(fast(x)["embeddings"], plain(x)["embeddings"], atol=1e-5, rtol=1e-5)


def test_pyramid_pooling_from_the_finest_strips_equals_each_scale_pooled_directly():
    from gaitrec.models.layers import HorizontalPoolingPyramid

    def by_scale(x, bin_num):
        n, c = x.shape[:2]
        return torch.cat([x.reshape(n, c, b, -1).mean(-1) + x.reshape(n, c, b, -1).amax(-1) for b in bin_num], -1)

    generator = torch.Generator().manual_seed(0)
    for bin_num, shape in [([16, 8, 4, 2, 1], (3, 8, 32, 22)), ([16, 8, 4, 2, 1], (2, 4, 16, 11)),
                           ([4, 2, 1], (2, 4, 12, 5)), ([3, 2], (2, 4, 6, 4)), ([16], (2, 4, 16, 3))]:
        x = torch.randn(*shape, generator=generator)
        expected = by_scale(x, bin_num)
        for layout in (torch.contiguous_format, torch.channels_last):
            got = HorizontalPoolingPyramid(bin_num)(x.contiguous(memory_format=layout))
            assert got.shape == expected.shape
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_max_over_frames_without_gradients_equals_torch_max_in_every_layout():
    from gaitrec.models.layers import PackSequenceWrapper, max_values

    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 7, 4, 3, generator=generator)
    x[:, :, 3] = x[:, :, 1]  # exact ties between frames
    layouts = [x, x.permute(0, 2, 3, 4, 1).contiguous().permute(0, 4, 1, 2, 3),  # channels-last frames
               x.transpose(1, 2).contiguous().transpose(1, 2), x[:, :, ::2], x[:1]]
    for view in layouts:
        for dim in range(-5, 5):
            expected = torch.max(view, dim=dim).values
            got = max_values(view, dim)
            assert got.shape == expected.shape and torch.equal(got, expected), (view.stride(), dim)
    pool = PackSequenceWrapper(torch.max)
    packed = layouts[1][:1]
    with torch.no_grad():
        fast = pool(packed, [3, 2, 2])
    assert torch.equal(fast, pool(packed, [3, 2, 2]))  # with gradients: torch.max itself
    assert fast.shape == (3, 5, 4, 3)


def test_focal_convolution_as_one_batch_equals_each_strip_convolved_alone():
    from gaitrec.models.layers import FocalConv2d

    torch.manual_seed(0)
    for halving, height in [(1, 8), (2, 16), (3, 16), (2, 10)]:  # 10 rows, 4 strips: pieces of 2 rows
        focal = FocalConv2d(3, 5, 3, halving=halving, padding=1)
        x = torch.randn(2, 3, height, 7, requires_grad=True)
        strip = height // 2**halving
        expected = torch.cat([focal.conv(part) for part in x.split(strip, 2)], 2)
        for layout in (torch.contiguous_format, torch.channels_last):
            got = focal(x.contiguous(memory_format=layout))
            assert got.shape == expected.shape
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
            if layout == torch.channels_last:  # no copy, and the same bits as strip by strip
                pieces = x.contiguous(memory_format=layout).split(strip, 2)
                assert torch.equal(got, torch.cat([focal.conv(part) for part in pieces], 2))
        weight_grad, = torch.autograd.grad(expected.square().sum(), focal.conv.weight)
        torch.testing.assert_close(torch.autograd.grad(focal(x).square().sum(), focal.conv.weight)[0], weight_grad,
                                   rtol=1e-5, atol=1e-5)
