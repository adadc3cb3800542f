"""The size of a design space inside its complexity band, estimated by counting uniform draws of its tuples.

`DesignSpace.log10_size` counts the distinct parameter tuples exactly, but before the complexity band:
the band (e.g. 0.3-1.5 MF) removes a share of every space that differs from space to space, so a shrink
factor between two spaces "before the band" is not the shrink of what is actually sampled. Counting
inside the band exactly would mean enumerating ~1e12 tuples (a network's flops couple all its stages),
so `band_size` estimates the in-band share instead: it draws tuples *uniformly* from the space's grid
(every parameter uniform over its values, then the space's own constraints by rejection: uniform over
the space's tuples, whatever distribution the space samples with), counts them with the same vectorized
counter the sampler uses, and reports the share inside the band with a Wilson interval:

    log10 |space in band| = log10_size + log10(share),

exact in the limit of many draws and known to a few thousandths of a decade at the default 2^20.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from anynet_search.spaces.sampling import Batch
from anynet_search.spaces.schema import ANYNET_PARAMS, METRICS
from anynet_search.spaces.space import DesignSpace


@dataclass(frozen=True)
class BandSize:
    """log10 of a space's tuple count inside its band, with its interval, and the counts behind it."""

    log10_size: float
    lo: float
    hi: float
    share: float  # fraction of the space's tuples inside the band (estimated)
    inside: int  # uniform draws of the space's tuples that fell inside the band
    drawn: int  # uniform draws of the space's tuples (after its constraints)

    @property
    def se(self) -> float:
        """Standard error of log10_size (delta method on the binomial share)."""
        if self.drawn == 0 or self.share == 1.0:  # counted exactly (no band), or every draw inside it
            return 0.0
        if self.inside == 0:
            return math.inf
        return math.sqrt((1.0 - self.share) / (self.share * self.drawn)) / math.log(10)


def _uniform_copy(space: DesignSpace) -> DesignSpace:
    """The same space with every parameter uniform over its grid (its constraints and band unchanged)."""
    out = copy.copy(space)
    out.params = {name: dataclasses.replace(p, probs=tuple([1.0 / p.size] * p.size)) for name, p in space.params.items()}
    return out


def _uniform_stage_values(space: DesignSpace, name: str, m: int, rng: np.random.Generator) -> np.ndarray:
    """(m, stages) values of one AnyNet parameter, uniform over the tuples its constraints allow.

    Shared: one value from those every stage allows. Non-decreasing: sequences drawn stage by stage with
    probabilities proportional to their number of completions (uniform over all non-decreasing tuples,
    no rejection). Otherwise: each stage uniform over its allowed values.
    """
    stages = space.stages
    per_stage = [np.asarray(space._allowed(name, s + 1)) for s in range(stages)]
    if name in space.shared:
        common = np.asarray(sorted(set(per_stage[0].tolist()).intersection(*(a.tolist() for a in per_stage[1:]))))
        return np.repeat(common[rng.integers(0, common.size, m)][:, None], stages, axis=1)
    if name not in space.non_decreasing:
        return np.column_stack([a[rng.integers(0, a.size, m)] for a in per_stage])
    grid = np.asarray(space.params[name].values)
    allowed = np.array([np.isin(grid, a) for a in per_stage], dtype=float)  # (stages, K)
    ways = np.zeros_like(allowed)  # ways[s, i]: non-decreasing completions of stages s.. starting at grid[i]
    ways[-1] = allowed[-1]
    for s in range(stages - 2, -1, -1):
        ways[s] = allowed[s] * np.cumsum(ways[s + 1][::-1])[::-1]
    idx = np.zeros((m, stages), dtype=np.int64)
    floor = np.zeros(m, dtype=np.int64)
    columns = np.arange(grid.size)
    for s in range(stages):
        cdf = np.cumsum(ways[s][None, :] * (columns[None, :] >= floor[:, None]), axis=1)
        u = rng.random(m) * cdf[:, -1]
        idx[:, s] = np.minimum((cdf <= u[:, None]).sum(axis=1), grid.size - 1)
        floor = idx[:, s]
    return grid[idx]


def _uniform_tuples(space: DesignSpace, m: int, rng: np.random.Generator) -> tuple[Batch, np.ndarray]:
    """m candidates uniform over the space's tuples and the mask of those its constraints accept."""
    if space.family == "anynet":
        raw = {name: _uniform_stage_values(space, name, m, rng) for name in ANYNET_PARAMS}
        batch = space._resolve_anynet(raw)
        space._mask_rules(batch)
    else:  # RegNet parameters are independent: uniform grid draws, the stage-count mask by rejection
        uniform = _uniform_copy(space)
        batch = uniform._candidates(rng.random((m, uniform.dimension)), check_band=False)
    ok = np.all(list(batch.masks.values()), axis=0) if batch.masks else np.ones(m, dtype=bool)
    return batch, ok


def band_size(space: DesignSpace, draws: int = 1 << 20, seed: int = 0, level: float = 0.95,
              batch: int = 1 << 17) -> BandSize:
    """Estimate log10 |space inside its band| from `draws` uniform tuples of the space (see the module docstring).

    A space without a band is counted exactly (share 1). Shared and non-decreasing parameters are drawn
    uniformly over what their constraints allow; other constraints (a RegNet space's stage count) reject,
    and their rejected candidates are drawn on top (at most 64x `draws` candidates in all).
    """
    if not space.band:
        return BandSize(space.log10_size, space.log10_size, space.log10_size, 1.0, 0, 0)
    rng = np.random.default_rng(seed)
    drawn = inside = candidates = 0
    while drawn < draws and candidates < 64 * draws:
        cand, ok = _uniform_tuples(space, min(batch, draws), rng)
        candidates += ok.size
        if not ok.any():
            continue
        metrics = dict(zip(METRICS, space._metrics(cand, ok)))
        within = np.ones(int(ok.sum()), dtype=bool)
        for key, (lo, hi) in space.band.items():
            within &= (metrics[key] >= lo) & (metrics[key] <= hi)
        drawn += int(ok.sum())
        inside += int(within.sum())
    share = inside / drawn if drawn else 0.0
    lo_share, hi_share = _wilson(inside, drawn, level)
    base = space.log10_size

    def log(p: float) -> float:
        return base + math.log10(p) if p > 0 else -math.inf

    return BandSize(log(share), log(lo_share), log(hi_share), share, inside, drawn)


def _wilson(k: int, n: int, level: float) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k / n."""
    if n == 0:
        return 0.0, 1.0
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def band_shrink(before: BandSize, after: BandSize, level: float = 0.95) -> tuple[float, float, float]:
    """(log10 shrink inside the band from `before` to `after`, and its interval from both estimates' errors)."""
    est = before.log10_size - after.log10_size
    z = float(stats.norm.ppf(0.5 + level / 2))
    half = z * math.hypot(before.se, after.se)
    return est, est - half, est + half
