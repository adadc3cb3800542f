"""How pycls, timm and torchvision turn RegNet parameters into stages, restated; the search for exact ones.

Every library builds the same quantized linear per-block widths (`anynet_search.regnet`), then groups
equal widths into stages and makes each stage's bottleneck width a multiple of its group width. They
differ in two places, so one (w0, wa, wm) can build different networks:

| target | block-width arithmetic | bottleneck width w_b -> multiple of g |
|---|---|---|
| anynet_search | float64 (numpy) | round(w_b / g) * g, half to even; at least g |
| pycls | float64 (numpy) | as anynet_search (`adjust_block_compatibility`, w_b = int(w * bot_mul)) |
| timm (1.0) | float32 (torch) | as anynet_search (`quantize_float`, w_b = int(w * bottle_ratio)) |
| torchvision | float32 (torch) | `_make_divisible`: half up, at least g, one more g if that lost over 10% |

Each library takes the bottleneck *multiplier* 1 / b; its group width is min(g, w_b) per stage.
`stage_layout` restates each rule (tests check the restatements against the real builders);
`find_params` searches (w0, wa, wm) that rebuild given stages exactly under one target's rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from anynet_search.models.regnet import check_regnet_params, stages_from_block_widths
from anynet_search.models.rules import QUANTUM, quantized_widths
from anynet_search.models.rules import compatible as rule_compatible

TARGETS: tuple[str, ...] = ("anynet_search", "pycls", "timm", "torchvision")
#: How each target rounds, in words (for the export files).
RULES: dict[str, str] = {
    "anynet_search": "float64 block widths, bottleneck width rounded half to even to a multiple of the group "
                     "width",
    "pycls": "float64 block widths, bottleneck width rounded half to even to a multiple of the group width",
    "timm": "float32 block widths, bottleneck width rounded half to even to a multiple of the group width",
    "torchvision": "float32 block widths, bottleneck width rounded half up to a multiple of the group width "
                   "(_make_divisible, at least 90% kept)",
}


@dataclass(frozen=True)
class StageLayout:
    """What a library builds: per-stage widths, depths and group widths."""

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    group_widths: tuple[int, ...]


@dataclass(frozen=True)
class RegNetSolution:
    """RegNet parameters that rebuild a layout exactly under one target's rule."""

    depth: int
    w0: int
    wa: float
    wm: float
    group_width: int


def _check_target(target: str) -> None:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")


def block_widths(target: str, depth: int, w0: int, wa: float, wm: float) -> list[int]:
    """Per-block widths (before compatibility) in the target's arithmetic."""
    _check_target(target)
    check_regnet_params(depth, w0, wa, wm)
    if target in ("anynet_search", "pycls"):  # the same float64 arithmetic as this package's rule
        return quantized_widths(w0, wa, wm, np.arange(depth)).tolist()
    if target == "timm":
        u = torch.arange(depth, dtype=torch.float32) * wa + w0
        ks = torch.round(torch.log(u / w0) / math.log(wm))
        return (torch.round((w0 * torch.pow(wm, ks)) / QUANTUM) * QUANTUM).int().tolist()
    u = torch.arange(depth) * wa + w0
    ks = torch.round(torch.log(u / w0) / math.log(wm))
    return (torch.round(torch.divide(w0 * torch.pow(wm, ks), QUANTUM)) * QUANTUM).int().tolist()


def compatible(
    target: str, widths: np.ndarray, bottleneck_ratio: float, group_width: int
) -> tuple[np.ndarray, np.ndarray]:
    """(widths, group widths) after the target's compatibility rule, vectorized over arrays of raw widths."""
    _check_target(target)
    w = np.asarray(widths, dtype=float)
    b = float(bottleneck_ratio)
    if target == "anynet_search":
        return rule_compatible(w, b, np.full(w.shape, group_width))
    mul = 1.0 / b  # what the libraries are given
    w_b = np.floor(np.maximum(1.0, w * mul)) if target == "pycls" else np.floor(w * mul)
    g = np.minimum(group_width, w_b)
    if target == "pycls" and mul > 1:  # pycls's lcm with an integer multiplier (an inverted bottleneck)
        g_step = np.lcm(g.astype(np.int64), int(mul)).astype(float)
    else:
        g_step = g
    if target == "torchvision":
        new = np.maximum(g, np.floor(w_b + g / 2) // g * g)
        w_b = np.where(new < 0.9 * w_b, new + g, new)
    else:
        if target == "pycls":
            w_b = np.maximum(g_step, np.round(w_b / g_step) * g_step)
        else:
            w_b = np.round(w_b / g) * g
    return np.floor(w_b / mul).astype(np.int64), g.astype(np.int64)


def stage_layout(
    target: str, depth: int, w0: int, wa: float, wm: float, group_width: int, bottleneck_ratio: float = 1.0
) -> StageLayout:
    """The stages the target builds from these RegNet parameters (its own arithmetic and rounding)."""
    raw, depths = stages_from_block_widths(block_widths(target, depth, w0, wa, wm))
    widths, groups = compatible(target, np.asarray(raw), bottleneck_ratio, group_width)
    return StageLayout(tuple(int(w) for w in widths), tuple(depths), tuple(int(g) for g in groups))


def _nice(lo: float, hi: float) -> float:
    """A short decimal strictly inside (lo, hi), near the middle."""
    mid = (lo + hi) / 2
    for digits in range(0, 7):
        v = round(mid, digits)
        if lo < v < hi and (hi - v) > 1e-9 * hi and (v - lo) > 1e-9 * max(lo, 1e-12):
            return float(v)
    return mid


def find_params(
    target: str, layout: StageLayout, bottleneck_ratio: float = 1.0, max_checks: int = 200
) -> RegNetSolution | None:
    """(depth, w0, wa, wm, g) with which `target` rebuilds `layout` exactly, or None if the search finds none.

    Stage k is taken to have exponent k (consecutive exponents), so its raw width is
    round(w0 * wm^k / 8) * 8; w0 runs over the multiples of 8 whose compatible width is the first
    stage's, wm over grids of step 0.01, 0.001 and 0.0001 in (1, 4], and the stage boundaries bound wa
    to an interval. Candidates are tried widest interval first (robust to float32 arithmetic), each
    checked by rebuilding with `stage_layout`; at most `max_checks` are rebuilt.
    """
    _check_target(target)
    widths = np.asarray(layout.widths, dtype=float)
    n, depth = len(layout.widths), int(sum(layout.depths))
    if n == 0 or len(layout.depths) != n or len(layout.group_widths) != n or min(layout.depths) < 1:
        raise ValueError(f"layout needs one width, depth and group width per stage, got {layout}")
    g = int(max(layout.group_widths))
    want_g = np.asarray(layout.group_widths)
    top = int(max(2 * widths[0], widths[0] + 2 * g * bottleneck_ratio + 4 * QUANTUM))
    w0s = [w for w in range(QUANTUM, top + 1, QUANTUM)
           if compatible(target, np.array([w]), bottleneck_ratio, g)[0][0] == widths[0]]
    starts = np.cumsum(layout.depths)[:-1].astype(float)  # first block of stages 1..n-1
    k = np.arange(n, dtype=float)
    found: list[tuple[float, int, float, float]] = []
    for step in (0.01, 0.001, 0.0001):
        wms = np.round(np.arange(1.0 + step, 4.0 + step / 2, step), 6)
        for w0 in w0s:
            raw = np.round(w0 * wms[:, None] ** k[None, :] / QUANTUM) * QUANTUM
            built, groups = compatible(target, raw, bottleneck_ratio, g)
            ok = (built == widths[None, :]).all(axis=1) & (groups == want_g[None, :]).all(axis=1)
            if n > 1:
                ok &= (np.diff(raw, axis=1) > 0).all(axis=1)
            # block j has exponent k when wm^(k - 1/2) <= 1 + wa j / w0 < wm^(k + 1/2)
            c = wms[:, None] ** (np.arange(1, n + 1) - 0.5)[None, :] - 1.0
            with np.errstate(divide="ignore"):
                lo = (w0 * c[:, : n - 1] / starts[None, :]).max(axis=1) if n > 1 else np.zeros(len(wms))
                hi_terms = [w0 * c[:, : n - 1] / np.maximum(starts[None, :] - 1, 0)] if n > 1 else []
                if depth > 1:
                    last = (w0 * c[:, n - 1] / (depth - 1))[:, None]
                else:
                    last = np.full((len(wms), 1), np.inf)
                hi = np.min(np.concatenate([*hi_terms, last], axis=1), axis=1)
            ok &= lo < hi
            for i in np.flatnonzero(ok):
                h = hi[i] if np.isfinite(hi[i]) else lo[i] * 2 + 1.0
                wa = _nice(lo[i], h) if n > 1 else 0.0
                found.append(((h - lo[i]) / max(h, 1e-12), w0, wa, float(wms[i])))
        if found:
            break
    want = StageLayout(tuple(int(w) for w in layout.widths), tuple(layout.depths),
                       tuple(int(x) for x in want_g))
    for _, w0, wa, wm in sorted(found, key=lambda t: -t[0])[:max_checks]:
        try:
            if stage_layout(target, depth, w0, wa, wm, g, bottleneck_ratio) == want:
                return RegNetSolution(depth, w0, wa, wm, g)
        except ValueError:
            continue
    return None


def layout_of(widths: Sequence[int], depths: Sequence[int], group_widths: Sequence[int]) -> StageLayout:
    """A `StageLayout` from per-stage lists (e.g. a config's widths, depths and group widths)."""
    return StageLayout(tuple(int(w) for w in widths), tuple(int(d) for d in depths),
                       tuple(int(g) for g in group_widths))
