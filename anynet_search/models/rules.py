"""The design rules of AnyNet / RegNet, each written once, for one value or for whole numpy arrays.

Every function takes Python numbers (and returns Python ints) or numpy arrays that broadcast (and returns
int64 arrays), so the module builder, the analytic counter, the vectorized sampler, the RegNet fit and the
exporters all call the same arithmetic. numpy's `round` rounds half to even exactly like Python's, so the
scalar and the array form give the same numbers. Rules that belong to one block or stem type (its layers,
its geometry) live in its `anynet_search.models.registry` entry instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: RegNet block widths are multiples of this.
QUANTUM = 8

#: The per-stage config fields and the results-frame column family of each: `d1..dN`, `w1..wN`, ...
STAGE_COLUMNS: dict[str, str] = {"depths": "d", "widths": "w", "bottleneck_ratios": "b", "group_widths": "g"}
#: The column families in listing order (depth, width, bottleneck ratio, group width).
STAGE_FAMILIES: tuple[str, ...] = tuple(STAGE_COLUMNS.values())


def _is_scalar(*values: Any) -> bool:
    return all(np.ndim(v) == 0 and not isinstance(v, np.ndarray) for v in values)


def _ints(values: Any, scalar: bool) -> Any:
    out = np.asarray(values).astype(np.int64)
    return int(out) if scalar else out


def conv_out(h: Any, stride: Any) -> Any:
    """Output side of a conv (padding k // 2) or pool with this stride on an h x h input: (h - 1) // s + 1."""
    return (h - 1) // stride + 1


def bottleneck_width(width: Any, ratio: Any) -> Any:
    """Bottleneck width w_b = w / b, rounded to the nearest integer (half to even)."""
    scalar = _is_scalar(width, ratio)
    return _ints(np.round(np.asarray(width, dtype=float) / np.asarray(ratio, dtype=float)), scalar)


def compatible(widths: Any, ratios: Any, group_widths: Any) -> tuple[Any, Any]:
    """Paper's compatibility rule: g = min(g, w_b); w_b rounded to a multiple of g (at least g); w = w_b * b.

    Returns (widths, group widths) after the rule, shaped like the (broadcast) inputs.
    """
    scalar = _is_scalar(widths, ratios, group_widths)
    b = np.asarray(ratios, dtype=float)
    w_b = np.maximum(1, bottleneck_width(np.asarray(widths), b))
    g = np.minimum(np.asarray(group_widths, dtype=np.int64), w_b)
    w_b = np.maximum(g, np.round(w_b / g).astype(np.int64) * g)
    return _ints(np.round(w_b * b), scalar), _ints(g, scalar)


def quantized_widths(w0: Any, wa: Any, wm: Any, j: Any) -> Any:
    """RegNet block widths w_j = 8 round(w0 wm^s_j / 8), s_j = round(log_wm(u_j / w0)), u_j = w0 + wa j.

    Broadcasts: pass `j = np.arange(depth)` for one model, or parameter arrays with a trailing axis.
    """
    scalar = _is_scalar(w0, wa, wm, j)
    u = w0 + wa * j
    s = np.round(np.log(u / w0) / np.log(wm))
    return _ints(np.round(w0 * np.power(wm, s) / QUANTUM) * QUANTUM, scalar)


def se_width(w_in: Any, se_ratio: float) -> Any:
    """Squeeze width of an SE module: round(se_ratio * the block's input width); 0 without SE."""
    scalar = _is_scalar(w_in)
    if not se_ratio > 0:
        return _ints(np.zeros_like(np.asarray(w_in)), scalar)
    return _ints(np.round(se_ratio * np.asarray(w_in)), scalar)


def block_widths(depths: Sequence[int], widths: Sequence[int]) -> list[int]:
    """Output width of every block, stage by stage: w_i repeated d_i times (what a RegNet fit explains)."""
    return [int(w) for w, d in zip(widths, depths) for _ in range(int(d))]
