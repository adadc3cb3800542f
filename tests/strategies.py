"""Hypothesis strategies shared by the tests: small, valid AnyNet configs of every stem and block type."""

from hypothesis import strategies as st

from anynet_search import AnyNetConfig
from anynet_search.models.regnet import adjust_compatibility


@st.composite
def configs(draw, max_stages: int = 4, max_width: int = 64) -> AnyNetConfig:
    """A random valid config (compatibility rule applied), small enough to build and run quickly."""
    n = draw(st.integers(1, max_stages))
    block_type = draw(st.sampled_from(["x", "res_basic", "vanilla"]))
    widths = draw(st.lists(st.integers(1, max_width // 8).map(lambda k: 8 * k), min_size=n, max_size=n))
    ratios = draw(st.lists(st.sampled_from([1, 2, 4]), min_size=n, max_size=n))
    groups = draw(st.lists(st.sampled_from([1, 2, 4, 8, 16]), min_size=n, max_size=n))
    if block_type != "x":
        ratios = [1] * n
    widths, groups = adjust_compatibility(widths, ratios, groups)
    return AnyNetConfig(
        depths=draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)),
        widths=widths,
        bottleneck_ratios=ratios,
        group_widths=groups,
        strides=draw(st.lists(st.sampled_from([1, 2]), min_size=n, max_size=n)),
        stem_type=draw(st.sampled_from(["simple", "cifar", "res"])),
        stem_width=draw(st.sampled_from([8, 16, 24])),
        block_type=block_type,
        se_ratio=draw(st.sampled_from([0.0, 0.25])) if block_type == "x" else 0.0,
        head_width=draw(st.sampled_from([0, 0, 32])),
        num_classes=draw(st.integers(2, 20)),
        in_channels=draw(st.sampled_from([1, 3])),
        zero_init_last_bn=draw(st.booleans()),
    )
