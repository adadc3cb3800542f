"""Analytic complexity equals what torch counts on the built module, and the published model zoo numbers."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import configs
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from anynet_search import AnyNetConfig, build_model, complexity, regnet_zoo
from anynet_search.models.blocks import SqueezeExcite
from anynet_search.models.complexity import complexity_arrays

PUBLISHED = json.loads((Path(__file__).parent / "data" / "published_complexity.json").read_text())


def measured(cfg: AnyNetConfig, resolution: int) -> tuple[int, int, int]:
    """(flops, params, acts) counted on the real module: torch FLOPs / 2 plus bias adds; hooked output sizes."""
    model = build_model(cfg).eval()
    acts, bias_adds = [], []

    def hook(module, _inp, out):
        acts.append(out[0].numel())
        if getattr(module, "bias", None) is not None:
            bias_adds.append(out[0].numel())

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.MaxPool2d)):
            m.register_forward_hook(hook)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, cfg.in_channels, resolution, resolution))
    params = sum(p.numel() for p in model.parameters())
    return counter.get_total_flops() // 2 + sum(bias_adds), params, sum(acts)


@settings(max_examples=60, deadline=None)
@given(cfg=configs(), resolution=st.integers(7, 40))
def test_analytic_complexity_matches_torch_counts(cfg, resolution):
    cx = complexity(cfg, resolution)
    assert (cx.flops, cx.params, cx.acts) == measured(cfg, resolution)


@pytest.mark.parametrize("name", sorted(regnet_zoo()))
def test_zoo_reproduces_published_complexity(name):
    cx = complexity(regnet_zoo()[name], 224)
    assert (cx.flops, cx.params, cx.acts) == tuple(PUBLISHED[name][k] for k in ("flops", "params", "acts"))


def test_zoo_params_match_built_model():
    cfg = regnet_zoo()["RegNetY-400MF"]
    assert sum(p.numel() for p in build_model(cfg).parameters()) == 4_344_144
    assert complexity(cfg, 224).flops == 401_849_056


@pytest.mark.parametrize(
    "name,group_widths,ratio",
    [("R-50-1x64d", [64, 128, 256, 512], 4), ("X-50-32x4d", [4, 8, 16, 32], 2)],
)
def test_res_stem_reproduces_published_resnets(name, group_widths, ratio):
    cfg = AnyNetConfig(
        depths=[3, 4, 6, 3], widths=[256, 512, 1024, 2048], bottleneck_ratios=[ratio] * 4,
        group_widths=group_widths, strides=[1, 2, 2, 2], stem_type="res", stem_width=64,
    )
    cx = complexity(cfg, 224)
    assert (cx.flops, cx.params, cx.acts) == tuple(PUBLISHED[name][k] for k in ("flops", "params", "acts"))


@settings(max_examples=30, deadline=None)
@given(cfgs=st.lists(configs(max_stages=3), min_size=1, max_size=5), resolution=st.integers(8, 64))
def test_vectorized_complexity_matches_scalar(cfgs, resolution):
    # the batch path is only defined for configs sharing the fixed parts; use the first one's
    base = cfgs[0]
    same = [c for c in cfgs if (c.num_stages, c.stem_type, c.block_type, c.se_ratio, c.head_width,
                                c.num_classes, c.in_channels, c.stem_width)
            == (base.num_stages, base.stem_type, base.block_type, base.se_ratio, base.head_width,
                base.num_classes, base.in_channels, base.stem_width)]
    f, p, a = complexity_arrays(
        np.array([c.depths for c in same]), np.array([c.widths for c in same]),
        np.array([c.bottleneck_widths for c in same]), np.array([c.group_widths for c in same]),
        np.array([c.strides for c in same]), resolution, stem_type=base.stem_type, stem_width=base.stem_width,
        block_type=base.block_type, se_ratio=base.se_ratio, head_width=base.head_width,
        num_classes=base.num_classes, in_channels=base.in_channels,
    )
    for i, c in enumerate(same):
        cx = complexity(c, resolution)
        assert (f[i], p[i], a[i]) == (cx.flops, cx.params, cx.acts)


def test_se_width_uses_block_input_width():
    cfg = regnet_zoo()["RegNetY-200MF"]
    model = build_model(cfg)
    first_se = next(m for m in model.modules() if isinstance(m, SqueezeExcite))
    assert first_se.reduce.out_channels == round(0.25 * cfg.stem_width)


@pytest.mark.parametrize("resolution", [0, -3, 2.5, True])
def test_bad_resolution_is_rejected(resolution):
    with pytest.raises(ValueError, match="resolution"):
        complexity(regnet_zoo()["RegNetX-200MF"], resolution)
