"""A new block or stem type is one registry entry plus its class: configs, spaces, builder and counter take it."""

import numpy as np
import pytest
from test_complexity import measured
from torch import nn

from anynet_search import AnyNetConfig, build_model, complexity, load_space
from anynet_search.models import registry
from anynet_search.models.blocks import conv_bn
from anynet_search.models.counts import conv_counts
from anynet_search.models.describe import describe_config
from anynet_search.models.rules import conv_out
from anynet_search.reporting.export import pycls_config


class SingleConvBlock(nn.Sequential):
    """Toy block: one 3x3 conv (carrying the stride), BN, ReLU; no shortcut."""

    def __init__(self, w_in, w_out, stride):
        super().__init__(*conv_bn(w_in, w_out, 3, stride=stride), nn.ReLU(inplace=True))


def single_conv_counts(w_in, w_out, stride, w_b, groups, w_se, h):
    h_out = conv_out(h, stride)
    return (*conv_counts(w_in, w_out, 3, h_out), h_out)


class WideStem(nn.Sequential):
    """Toy stem: 5x5 conv with stride 1, BN, ReLU, 3x3 max-pool with stride 2."""

    def __init__(self, w_in, w_out):
        super().__init__(*conv_bn(w_in, w_out, 5), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1))


@pytest.fixture
def toy_types():
    registry.register_block("single", registry.BlockType(SingleConvBlock, single_conv_counts))
    registry.register_stem("wide5", registry.StemType(WideStem, kernel=5, stride=1, pool_stride=2))
    yield
    registry.unregister("single")
    registry.unregister("wide5")


def test_a_registered_block_and_stem_are_sampled_built_and_counted(toy_types, tmp_path):
    space_file = tmp_path / "toy.yaml"
    space_file.write_text(
        "extends: anynet_xa_tiny\nresolution: 16\n"
        "fixed: {stem_type: wide5, stem_width: 8, block_type: single, num_classes: 10, strides: [1, 2, 2, 2]}\n"
        "parameters: {d: {low: 1, high: 3}, w: {low: 8, high: 48, step: 8}, b: {values: [1]}, g: {values: [1]}}\n"
        "band: {flops: [50.0e+3, 2.0e+6]}\n"
    )
    space = load_space(space_file)
    samples = space.sample_many(6, seed=0)
    assert len(samples) == 6
    for s in samples:
        cfg = s.config
        assert (cfg.block_type, cfg.stem_type) == ("single", "wide5")
        model = build_model(cfg)
        assert isinstance(model.stem, WideStem)
        assert all(isinstance(b, SingleConvBlock) for stage in model.stages for b in stage)
        cx = complexity(cfg, space.resolution)
        assert (cx.flops, cx.params, cx.acts) == measured(cfg, space.resolution)
        assert 50e3 <= cx.flops <= 2e6  # the vectorized band filter used the same counter
    assert "stem: wide5" in describe_config(samples[0].config, 16)


def test_a_registered_type_is_accepted_only_while_registered(toy_types):
    cfg = AnyNetConfig(depths=[1], widths=[8], bottleneck_ratios=[1], group_widths=[1], strides=[1],
                       block_type="single", stem_type="wide5")
    with pytest.raises(ValueError, match="pycls has no stem type matching 'wide5'"):
        pycls_config(cfg)
    with pytest.raises(ValueError, match="se_ratio=0.25 needs block_type 'x'"):
        cfg.replace(se_ratio=0.25)
    registry.unregister("single")
    with pytest.raises(ValueError, match="block_type must be one of"):
        cfg.replace(block_type="single")


def test_registering_twice_or_removing_a_builtin_is_refused():
    entry = registry.BLOCKS["x"]
    with pytest.raises(ValueError, match="already registered"):
        registry.register_block("x", entry)
    with pytest.raises(ValueError, match="built-in"):
        registry.unregister("x")
    with pytest.raises(ValueError, match="block args"):
        registry.BlockType(SingleConvBlock, single_conv_counts, args=("w_in", "depth"))


def test_builtin_counters_agree_with_the_vectorized_path():
    # one registry counter serves scalar configs and candidate batches alike
    w_in, w_out = np.array([8, 16]), np.array([16, 16])
    for entry in registry.BLOCKS.values():
        batch = entry.count(w_in, w_out, np.array([2, 1]), np.array([8, 8]), np.array([2, 2]), np.array([2, 0]), 9)
        for i in range(2):
            one = entry.count(int(w_in[i]), int(w_out[i]), [2, 1][i], 8, 2, [2, 0][i], 9)
            assert tuple(int(np.asarray(v).ravel()[i] if np.ndim(v) else v) for v in batch) == one
