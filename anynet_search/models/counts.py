"""Analytic (flops, params, acts) of each layer and block type, over Python ints or numpy arrays.

Conventions follow pycls: a conv of kernel k giving an h_out x h_out output costs
k*k*c_in*c_out*h_out^2/groups multiply-adds plus one add per output element for a bias; BN has 2 params per
channel; acts are the output elements of every conv and FC. Each block counter mirrors its `nn.Module` in
`blocks`, and the registry (`registry`) pairs them; tests check every pair against what torch counts.
"""

from __future__ import annotations

from typing import Any

from anynet_search.models.rules import conv_out

Counts = tuple[Any, Any, Any]


def conv_counts(w_in: Any, w_out: Any, k: int, h_out: Any, groups: Any = 1, bias: bool = False) -> Counts:
    """(flops, params, acts) of a conv with its BN (no BN when bias=True, as in SE)."""
    flops = k * k * w_in * w_out * h_out * h_out // groups
    params = k * k * w_in * w_out // groups
    if bias:
        return flops + w_out * h_out * h_out, params + w_out, w_out * h_out * h_out
    return flops, params + 2 * w_out, w_out * h_out * h_out


def _total(parts: list[Counts], h_out: Any) -> tuple[Any, Any, Any, Any]:
    flops, params, acts = (sum(p[i] for p in parts) for i in range(3))
    return flops, params, acts, h_out


def _shortcut(w_in: Any, w_out: Any, stride: Any, h_out: Any) -> Counts:
    """The projection shortcut's counts where width or resolution changes, zero elsewhere."""
    has_proj = (w_in != w_out) | (stride != 1)
    return tuple(has_proj * v for v in conv_counts(w_in, w_out, 1, h_out))


def x_block_counts(w_in: Any, w_out: Any, stride: Any, w_b: Any, groups: Any, w_se: Any,
                   h: Any) -> tuple:
    """(flops, params, acts, h_out) of an X block: 1x1, grouped 3x3, optional SE, 1x1, projection shortcut."""
    h_out = conv_out(h, stride)
    se_r = conv_counts(w_b, w_se, 1, 1, bias=True)
    se_e = conv_counts(w_se, w_b, 1, 1, bias=True)
    has_se = w_se > 0
    return _total([conv_counts(w_in, w_b, 1, h), conv_counts(w_b, w_b, 3, h_out, groups=groups),
                   tuple(has_se * (a + b) for a, b in zip(se_r, se_e)), conv_counts(w_b, w_out, 1, h_out),
                   _shortcut(w_in, w_out, stride, h_out)], h_out)


def res_basic_block_counts(w_in: Any, w_out: Any, stride: Any, w_b: Any, groups: Any, w_se: Any,
                           h: Any) -> tuple:
    """(flops, params, acts, h_out) of a residual basic block: two 3x3 convs and the projection shortcut."""
    h_out = conv_out(h, stride)
    return _total([conv_counts(w_in, w_out, 3, h_out), conv_counts(w_out, w_out, 3, h_out),
                   _shortcut(w_in, w_out, stride, h_out)], h_out)


def vanilla_block_counts(w_in: Any, w_out: Any, stride: Any, w_b: Any, groups: Any, w_se: Any,
                         h: Any) -> tuple:
    """(flops, params, acts, h_out) of a plain block: two 3x3 convs, no shortcut."""
    h_out = conv_out(h, stride)
    return _total([conv_counts(w_in, w_out, 3, h_out), conv_counts(w_out, w_out, 3, h_out)], h_out)
