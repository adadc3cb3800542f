"""Analytic complexity (flops = multiply-adds, params, acts) of an `AnyNetConfig`, without building modules.

The arithmetic is written once over numpy arrays so the same code counts one config (`complexity`) or
a whole batch of candidate configs at once (`complexity_arrays`, used by the design-space sampler).
Conventions follow pycls: a conv of kernel k on an h x h input gives ((h - 1) // stride + 1)^2 outputs,
flops k*k*c_in*c_out*h_out^2/groups plus one add per output element for a bias, BN has 2 params per
channel, acts count the output elements of every conv and FC (and of the res stem's max-pool, as pycls
does, so the published ResNet/ResNeXt numbers are reproduced too).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from anynet_search.config import AnyNetConfig

STEM_KERNEL = {"simple": 3, "cifar": 3, "res": 7}
STEM_STRIDE = {"simple": 2, "cifar": 1, "res": 2}


@dataclass(frozen=True)
class Complexity:
    """Multiply-adds, parameter count and activation count of a network at one input resolution."""

    flops: int
    params: int
    acts: int


def _out(h: np.ndarray | int, stride: np.ndarray | int) -> np.ndarray | int:
    return (h - 1) // stride + 1


def _conv(w_in, w_out, k, h_out, groups=1, bias=False):  # noqa: ANN001, ANN202 - arrays or ints
    """(flops, params, acts) of a conv with its BN (no BN when bias=True, as in SE)."""
    flops = k * k * w_in * w_out * h_out * h_out // groups
    params = k * k * w_in * w_out // groups
    if bias:
        return flops + w_out * h_out * h_out, params + w_out, w_out * h_out * h_out
    return flops, params + 2 * w_out, w_out * h_out * h_out


def _block(block_type: str, w_in, w_out, stride, w_b, groups, w_se, h):  # noqa: ANN001, ANN202
    """(flops, params, acts, h_out) of one block; every argument may be a numpy array."""
    h_out = _out(h, stride)
    parts = []
    if block_type == "x":
        parts += [_conv(w_in, w_b, 1, h), _conv(w_b, w_b, 3, h_out, groups=groups)]
        has_se = w_se > 0
        se_r = _conv(w_b, w_se, 1, 1, bias=True)
        se_e = _conv(w_se, w_b, 1, 1, bias=True)
        parts.append(tuple(has_se * (a + b) for a, b in zip(se_r, se_e)))
        parts.append(_conv(w_b, w_out, 1, h_out))
    else:
        parts += [_conv(w_in, w_out, 3, h_out), _conv(w_out, w_out, 3, h_out)]
    if block_type != "vanilla":
        has_proj = (w_in != w_out) | (stride != 1)
        parts.append(tuple(has_proj * v for v in _conv(w_in, w_out, 1, h_out)))
    flops, params, acts = (sum(p[i] for p in parts) for i in range(3))
    return flops, params, acts, h_out


def _se_width(w_in, se_ratio: float):  # noqa: ANN001, ANN202
    # np.round rounds half to even exactly like Python's round, which the module builder uses
    if isinstance(w_in, np.ndarray):
        return np.round(se_ratio * w_in).astype(np.int64)
    return int(round(se_ratio * w_in))


def _network(stages: Iterable[tuple], resolution: int, stem_type: str, stem_width: int, block_type: str,
             se_ratio: float, head_width: int, num_classes: int, in_channels: int) -> tuple:
    """(flops, params, acts) from per-stage (depth, width, w_b, groups, stride): ints or equal-shape arrays."""
    h = _out(resolution, STEM_STRIDE[stem_type])
    flops, params, acts = _conv(in_channels, stem_width, STEM_KERNEL[stem_type], h)
    if stem_type == "res":
        h = _out(h, 2)
        acts = acts + stem_width * h * h  # max-pool: no flops or params, but pycls counts its outputs as acts
    w_in = stem_width
    for d, w, w_b, groups, s in stages:
        first = _block(block_type, w_in, w, s, w_b, groups, _se_width(w_in, se_ratio), h)
        rest = _block(block_type, w, w, 1, w_b, groups, _se_width(w, se_ratio), first[3])
        flops = flops + first[0] + (d - 1) * rest[0]
        params = params + first[1] + (d - 1) * rest[1]
        acts = acts + first[2] + (d - 1) * rest[2]
        h, w_in = first[3], w
    if head_width > 0:
        hf, hp, ha = _conv(w_in, head_width, 1, h)
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
    d, w, w_b, g, s = (np.asarray(a, dtype=np.int64) for a in (depths, widths, bottleneck_widths, group_widths, strides))
    stages = [(d[:, i], w[:, i], w_b[:, i], np.maximum(w_b[:, i] // g[:, i], 1), s[:, i]) for i in range(d.shape[1])]
    out = _network(stages, resolution, stem_type, stem_width, block_type, se_ratio, head_width, num_classes, in_channels)
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
    h = _out(resolution, STEM_STRIDE[cfg.stem_type])
    largest = cfg.stem_width * h * h
    if cfg.stem_type == "res":
        h = _out(h, 2)
    for w, w_b, s in zip(cfg.widths, cfg.bottleneck_widths, cfg.strides):
        h_out = _out(h, s)
        largest = max(largest, w_b * h * h, max(w, w_b) * h_out * h_out)
        h = h_out
    return int(max(largest, cfg.head_width * h * h))
