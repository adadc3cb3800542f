"""Sampling a design space: uniforms -> grid values -> resolved stage arrays -> accepted samples.

Vectorized rejection sampling: candidates are drawn from the unconstrained distribution in large numpy
batches, resolved into per-stage arrays by the design rules (`anynet_search.models.rules`), judged by the
space's masks (`DesignSpace._candidates`, passed in as `candidates`: its constraints and complexity band)
and the survivors kept in draw order. Keeping exactly the survivors is the unconstrained law conditioned on the constraints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anynet_search.models.complexity import complexity_arrays
from anynet_search.models.config import AnyNetConfig
from anynet_search.models.rules import QUANTUM, bottleneck_width, compatible, quantized_widths
from anynet_search.spaces.params import SpaceError
from anynet_search.spaces.schema import ANYNET_PARAMS, REGNET_PARAMS
from anynet_search.spaces.trial_params import params_of
from anynet_search.spaces.view import SpaceView

MAX_CANDIDATES = 20_000_000


@dataclass(frozen=True)
class Sample:
    """One accepted draw: the raw parameter values (as Optuna records them) and the resolved config."""

    params: dict[str, Any]
    config: AnyNetConfig


@dataclass
class Batch:
    """Candidate draws as arrays: raw grid values per parameter name and per-stage resolved arrays."""

    raw: dict[str, np.ndarray]
    depths: np.ndarray
    widths: np.ndarray
    ratios: np.ndarray
    group_widths: np.ndarray
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    # candidates each mask was judged on (the band: only the survivors of the other masks)
    evaluated: dict[str, int] = field(default_factory=dict)


# ------------------------------------------------------------------------------------ drawing
def uniform_columns(space: SpaceView) -> list[tuple[str, int]]:
    """(parameter, number of uniforms) per draw: one per stage, one for shared and RegNet parameters."""
    if space.family == "regnet":
        return [(n, 1) for n in REGNET_PARAMS]
    return [(n, 1 if n in space.shared else space.stages) for n in ANYNET_PARAMS]


def draw_param(space: SpaceView, name: str, u: np.ndarray) -> np.ndarray:
    """Grid values from uniforms u of shape (m, k) by inverse CDF; shared parameters use p(v)^stages."""
    spec = space.params[name]
    vals = np.asarray(spec.values)
    if space.family == "regnet":
        return vals[spec.from_uniform(u[:, 0])]
    if name in space.shared:
        # iid across stages conditioned on all equal: P(v) proportional to p(v)^stages
        probs = np.asarray(spec.probs) ** space.stages
        edges = np.cumsum(probs / probs.sum())
        idx = np.minimum(np.searchsorted(edges, u[:, 0] * edges[-1], side="right"), spec.size - 1)
        return np.repeat(vals[idx][:, None], space.stages, axis=1)
    return vals[spec.from_uniform(u)]


# ------------------------------------------------------------------------------------ resolving
def resolve_anynet(raw: dict[str, np.ndarray]) -> Batch:
    """Apply the compatibility rule to per-stage arrays (g = min(g, w_b); w_b multiple of g; w = w_b b)."""
    b = raw["b"].astype(float)
    widths, g = compatible(raw["w"].astype(float), b, raw["g"].astype(np.int64))
    return Batch(raw=raw, depths=raw["d"].astype(np.int64), widths=widths, ratios=b, group_widths=g)


def resolve_regnet(raw: dict[str, np.ndarray], stages: int) -> Batch:
    """Vectorized quantized-linear widths, collapsed to stages; rows without `stages` stages are masked."""
    d, w0 = raw["d"].astype(np.int64), raw["w0"].astype(float)
    wa, wm = raw["wa"].astype(float), raw["wm"].astype(float)
    m, dmax = len(d), int(d.max())
    j = np.arange(dmax)
    valid = j[None, :] < d[:, None]
    bw = quantized_widths(w0[:, None], wa[:, None], wm[:, None], j[None, :])
    change = np.concatenate([np.zeros((m, 1), dtype=bool), (bw[:, 1:] != bw[:, :-1]) & valid[:, 1:]], axis=1)
    stage_id = np.cumsum(change, axis=1)
    n_stages = stage_id[np.arange(m), d - 1] + 1
    ok = n_stages == stages
    depths = np.zeros((m, stages), dtype=np.int64)
    widths = np.full((m, stages), QUANTUM, dtype=np.int64)
    rows, cols = np.nonzero(valid & ok[:, None])
    np.add.at(depths, (rows, stage_id[rows, cols]), 1)
    widths[rows, stage_id[rows, cols]] = bw[rows, cols]
    per_stage = {"d": depths, "w": widths, "b": np.repeat(raw["b"][:, None], stages, axis=1),
                 "g": np.repeat(raw["g"][:, None], stages, axis=1)}
    batch = resolve_anynet(per_stage)
    batch.raw = raw
    batch.masks[f"regnet gives {stages} stages"] = ok
    return batch


def batch_metrics(batch: Batch, rows: np.ndarray, fixed: dict[str, Any],
                  resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flops, params, acts) of the selected rows, counted in one vectorized pass."""
    w_b = np.maximum(1, bottleneck_width(batch.widths[rows], batch.ratios[rows]))
    return complexity_arrays(
        batch.depths[rows], batch.widths[rows], w_b, batch.group_widths[rows],
        np.tile(np.asarray(fixed["strides"]), (int(rows.sum()), 1)), resolution,
        stem_type=fixed["stem_type"], stem_width=fixed["stem_width"], block_type=fixed["block_type"],
        se_ratio=fixed["se_ratio"], head_width=fixed["head_width"], num_classes=fixed["num_classes"],
        in_channels=fixed["in_channels"],
    )


def batch_config(batch: Batch, i: int, fixed: dict[str, Any]) -> AnyNetConfig:
    """The config of row i."""
    ratios = [int(r) if float(r).is_integer() else float(r) for r in batch.ratios[i]]
    return AnyNetConfig(depths=batch.depths[i].tolist(), widths=batch.widths[i].tolist(),
                        bottleneck_ratios=ratios, group_widths=batch.group_widths[i].tolist(), **fixed)


# ------------------------------------------------------------------------------------ accepting
def iter_samples(space: SpaceView, candidates: Callable[[np.ndarray], Batch], rng: Any, n: int,
                 max_candidates: int = MAX_CANDIDATES) -> Iterator[Sample]:
    """Yield n accepted samples of `space` in draw order (see `DesignSpace.iter_samples`); `candidates`
    resolves and judges a batch of uniforms."""
    drawn = accepted = 0
    rejects: dict[str, int] = {}
    judged: dict[str, int] = {}
    size = 256
    while accepted < n:
        if drawn >= max_candidates:
            raise SpaceError(starved_message(space.name, drawn, accepted, rejects, judged))
        uniforms = rng.random(size) if hasattr(rng, "fast_forward") else rng.random((size, space.dimension))
        batch = candidates(uniforms)
        keep = np.all(list(batch.masks.values()), axis=0) if batch.masks else np.ones(size, dtype=bool)
        for key, mask in batch.masks.items():
            rejects[key] = rejects.get(key, 0) + int((~mask).sum())
            judged[key] = judged.get(key, 0) + batch.evaluated.get(key, size)
        drawn += size
        for i in np.flatnonzero(keep):
            if accepted == n:
                break
            accepted += 1
            yield Sample(params_of(space, batch.raw, int(i)), batch_config(batch, int(i), space.fixed))
        size = min(size * 4, 1 << 18)


def starved_message(name: str, drawn: int, accepted: int, rejects: dict[str, int],
                    judged: dict[str, int]) -> str:
    """Why sampling gave up: the acceptance rate and each mask's pass rate, the worst first."""
    # the band is judged only on candidates that passed the structural constraints
    rate = {k: (1 - rejects[k] / judged[k]) if judged[k] else 0.0 for k in rejects}
    worst = min(rate, key=rate.get) if rate else "no constraint"
    rates = "; ".join(f"{k} passes {100 * r:.4g}% of {judged[k]:,} judged"
                      for k, r in sorted(rate.items(), key=lambda kv: kv[1]))
    return (f"{name}: only {accepted} of {drawn:,} candidates accepted (rate {accepted / drawn:.2g}); "
            f"{worst} rejects most ({rates})")
