"""Analytic complexity (flops = multiply-adds, params, acts) of an `AnyNetConfig`, without building modules.

The arithmetic is written once over numpy arrays so the same code counts one config (`complexity`) or
a whole batch of candidate configs at once (`complexity_arrays`, used by the design-space sampler).
Conventions follow pycls (see `counts`, which counts each layer and block type; the stem and block
counters are looked up in `registry`); acts include the res stem's max-pool output, as pycls counts it, so the published ResNet/ResNeXt numbers are reproduced too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from anynet_search.models import registry, rules
from anynet_search.models.config import AnyNetConfig
from anynet_search.models.counts import conv_counts


@dataclass(frozen=True)
class Complexity:
    """Multiply-adds, parameter count and activation count of a network at one input resolution."""

    flops: int
    params: int
    acts: int


def _network(stages: Iterable[tuple], resolution: int, stem_type: str, stem_width: int, block_type: str,
             se_ratio: float, head_width: int, num_classes: int, in_channels: int) -> tuple:
    """(flops, params, acts) from per-stage (depth, width, w_b, groups, stride): ints or same-shape arrays."""
    count_block = registry.block_type(block_type).count
    flops, params, acts, h = registry.stem_type(stem_type).count(in_channels, stem_width, resolution)
    w_in = stem_width
    for d, w, w_b, groups, s in stages:
        first = count_block(w_in, w, s, w_b, groups, rules.se_width(w_in, se_ratio), h)
        rest = count_block(w, w, 1, w_b, groups, rules.se_width(w, se_ratio), first[3])
        flops = flops + first[0] + (d - 1) * rest[0]
        params = params + first[1] + (d - 1) * rest[1]
        acts = acts + first[2] + (d - 1) * rest[2]
        h, w_in = first[3], w
    if head_width > 0:
        hf, hp, ha = conv_counts(w_in, head_width, 1, h)
        flops, params, acts, w_in = flops + hf, params + hp, acts + ha, head_width
    flops = flops + w_in * num_classes + num_classes
    params = params + w_in * num_classes + num_classes
    return flops, params, acts + num_classes


def complexity_arrays(
    depths: np.ndarray,
    widths: np.ndarray,
    bottleneck_widths: np.ndarray,
    group_widths: np.ndarray,
    strides: np.ndarray,
    resolution: int,
    *,
    stem_type: str = "simple",
    stem_width: int = 32,
    block_type: str = "x",
    se_ratio: float = 0.0,
    head_width: int = 0,
    num_classes: int = 1000,
    in_channels: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorized (flops, params, acts) for a batch of configs: stage arrays have shape (n, stages)."""
    arrays = (depths, widths, bottleneck_widths, group_widths, strides)
    d, w, w_b, g, s = (np.asarray(a, dtype=np.int64) for a in arrays)
    stages = [(d[:, i], w[:, i], w_b[:, i], np.maximum(w_b[:, i] // g[:, i], 1), s[:, i])
              for i in range(d.shape[1])]
    out = _network(stages, resolution, stem_type, stem_width, block_type, se_ratio, head_width, num_classes,
                   in_channels)
    return tuple(np.broadcast_to(np.asarray(v, dtype=np.int64), (d.shape[0],)) for v in out)


def complexity(cfg: AnyNetConfig, resolution: int = 224) -> Complexity:
    """Analytic flops (multiply-adds), params and acts of `cfg` on resolution x resolution inputs.

    >>> from anynet_search import regnet_zoo
    >>> complexity(regnet_zoo()["RegNetX-400MF"], 224).flops
    397678568
    """
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution <= 0:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    stages = zip(cfg.depths, cfg.widths, cfg.bottleneck_widths, cfg.groups, cfg.strides)
    f, p, a = _network(stages, int(resolution), cfg.stem_type, cfg.stem_width, cfg.block_type, cfg.se_ratio,
                       cfg.head_width, cfg.num_classes, cfg.in_channels)
    return Complexity(int(f), int(p), int(a))


def largest_activation(cfg: AnyNetConfig, resolution: int) -> int:
    """Elements per image of the largest single tensor a forward pass makes (what evaluation holds at once).

    The stem's conv output, and per stage the block input seen by the first 1x1 conv at the input
    resolution (bottleneck width w_b) and the stage's outputs; the optional head conv too.
    """
    stem = registry.stem_type(cfg.stem_type)
    h = stem.conv_resolution(resolution)
    largest = cfg.stem_width * h * h
    h = stem.out_resolution(resolution)
    for w, w_b, s in zip(cfg.widths, cfg.bottleneck_widths, cfg.strides):
        h_out = rules.conv_out(h, s)
        largest = max(largest, w_b * h * h, max(w, w_b) * h_out * h_out)
        h = h_out
    return int(max(largest, cfg.head_width * h * h))
