"""build_model builds DESIGN.md's network: forward/backward for every block type, any resolution, init rules."""

import math

import pytest
import torch
from torch import nn

from anynet_search import AnyNetConfig, build_model, regnet_zoo
from anynet_search.models.blocks import ResBasicBlock, XBlock


def small(block_type="x", **kw):
    base = dict(depths=[1, 2], widths=[16, 32], bottleneck_ratios=[1, 2], group_widths=[8, 8], strides=[1, 2],
                stem_type="cifar", stem_width=16, block_type=block_type, num_classes=7, in_channels=3)
    if block_type != "x":
        base["bottleneck_ratios"] = [1, 1]
    base.update(kw)
    return AnyNetConfig(**base)


@pytest.mark.parametrize("block_type,se", [("x", 0.0), ("x", 0.25), ("res_basic", 0.0), ("vanilla", 0.0)])
@pytest.mark.parametrize("stem_type", ["simple", "cifar", "res"])
def test_forward_backward_every_block_and_stem(block_type, se, stem_type):
    model = build_model(small(block_type, se_ratio=se, stem_type=stem_type, head_width=24))
    x = torch.randn(4, 3, 20, 20)
    out = model(x)
    assert out.shape == (4, 7)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0


@pytest.mark.parametrize("size", [9, 17, 32, 57])
def test_any_input_resolution(size):
    assert build_model(small()).eval()(torch.randn(2, 3, size, size)).shape == (2, 7)


def test_shortcut_only_when_shape_changes_and_stride_in_3x3():
    model = build_model(small(widths=[16, 32], strides=[1, 2], stem_width=16))
    blocks = [m for m in model.modules() if isinstance(m, XBlock)]
    assert blocks[0].shortcut is None  # 16 -> 16, stride 1
    assert blocks[1].shortcut is not None and blocks[1].shortcut.stride == 2
    assert blocks[2].shortcut is None
    assert blocks[1].b[0].stride == (2, 2) and blocks[1].a[0].stride == (1, 1)
    assert blocks[1].b[0].groups == 16 // 8  # w_b = 32 / 2 = 16, group width 8


def test_zero_init_last_bn_and_he_init():
    model = build_model(small())
    block = next(m for m in model.modules() if isinstance(m, XBlock))
    assert torch.all(block.c[1].weight == 0) and torch.all(block.a[1].weight == 1)
    assert torch.all(build_model(small(zero_init_last_bn=False)).stages[0][0].c[1].weight == 1)
    conv = block.b[0]
    fan_out = 9 * conv.out_channels
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.3)
    basic = next(m for m in build_model(small("res_basic")).modules() if isinstance(m, ResBasicBlock))
    assert torch.all(basic.b[1].weight == 0)


def test_regnet_zoo_model_structure():
    cfg = regnet_zoo()["RegNetX-200MF"]
    model = build_model(cfg)
    assert [len(stage) for stage in model.stages] == list(cfg.depths) == [1, 1, 4, 7]
    assert isinstance(model.stem[0], nn.Conv2d) and model.stem[0].stride == (2, 2)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_build_model_rejects_non_config():
    with pytest.raises(ValueError, match="AnyNetConfig"):
        build_model({"depths": [1]})
