"""`DesignSpace`: a population of networks plus a distribution over it, sampled exactly and fast.

The space is read by `schema` (the file's keys and values), sampled by `sampling` (vectorized rejection
sampling: exactly the unconstrained distribution conditioned on the constraints), handed to Optuna by
`trial_params` and described by `summary`. This module holds the class that ties them together and the
space's constraints: how the `constraints:` section is read, their masks over candidate draws, and the
exact count of the parameter tuples they allow. Shared parameters are drawn once from p(v)^n
(normalized), which is the iid law conditioned on all stages being equal, so they cost no rejections.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from anynet_search.models.complexity import complexity
from anynet_search.models.config import AnyNetConfig
from anynet_search.spaces import sampling, schema, trial_params
from anynet_search.spaces.constraints import Constraint, Shared, space_rules
from anynet_search.spaces.files import read_space_file, spec_hash
from anynet_search.spaces.params import ParamSpec, SpaceError
from anynet_search.spaces.sampling import MAX_CANDIDATES, Batch, Sample, resolve_anynet, resolve_regnet
from anynet_search.spaces.schema import (
    ANYNET_PARAMS,
    CONSTRAINT_KEYS,
    FIXED_KEYS,
    METRICS,
    REGNET_PARAMS,
)
from anynet_search.spaces.schema import fmt_number as _fmt
from anynet_search.spaces.summary import describe as _describe
from anynet_search.spaces.summary import summary as _summary

__all__ = ["ANYNET_PARAMS", "CONSTRAINT_KEYS", "FIXED_KEYS", "MAX_CANDIDATES", "METRICS", "REGNET_PARAMS",
           "DesignSpace", "InfeasibleConfig", "Sample", "load_space"]


class InfeasibleConfig(ValueError):
    """A suggested parameter tuple violates a constraint or the complexity band (never trained)."""


class DesignSpace:
    """A design space loaded from a file: fixed parts, free parameters, constraints and a complexity band.

    >>> space = load_space("anynet_xa")
    >>> round(space.log10_size, 2)
    18.27
    >>> cfg = space.sample(np.random.default_rng(0))
    """

    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.source = source
        self.data = data
        self.hash = spec_hash(data)
        where = source
        self.name = str(data.get("name"))
        self.description = data.get("description")
        schema.check_description(self.description, where)
        self.family = schema.check_family(data.get("family", "anynet"), where)
        self.resolution = schema.check_resolution(data.get("resolution"), where)
        self.stages = schema.check_stages(data.get("stages"), where)
        self.fixed = schema.check_fixed(data.get("fixed", {}), self.stages, where)
        self.params: dict[str, ParamSpec] = schema.check_parameters(data.get("parameters"), self.family,
                                                                    where)
        self.shared, self.non_decreasing, self.ranges = self._check_constraints(data.get("constraints") or {}, where)
        self.rules: list[Constraint] = space_rules(self.shared, self.non_decreasing, self.ranges)
        self.band = schema.check_band(data.get("band") or {}, where)
        if self.band:
            schema.check_band_reachable(self.band, *self._extreme_metrics(), self.resolution, where)
        if self.description is None:  # a file without its own description gets one from its real ranges
            self.description = self.summary()

    # ---------------------------------------------------------------- constraints
    def _check_constraints(self, cons: Any, where: str) -> tuple[set[str], set[str], dict[str, tuple[float, float]]]:
        if not isinstance(cons, dict):
            raise SpaceError(f"{where}: constraints must be a mapping with shared / non_decreasing / ranges")
        unknown = sorted(set(cons) - CONSTRAINT_KEYS)
        if unknown:
            raise SpaceError(f"{where}: constraints: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(CONSTRAINT_KEYS))}")
        sets = []
        for key in ("shared", "non_decreasing"):
            names = cons.get(key) or []
            if not isinstance(names, list):
                raise SpaceError(f"{where}: constraints.{key} must be a list of parameter names, got {names!r}")
            if names and self.family != "anynet":
                raise SpaceError(f"{where}: constraints.{key} applies to per-stage parameters; a regnet space has none")
            for n in names:
                if n not in ANYNET_PARAMS:
                    raise SpaceError(f"{where}: constraints.{key}: no per-stage parameter {n!r} (have d, w, b, g)")
            sets.append(set(names))
        ranges = {}
        raw_ranges = cons.get("ranges") or {}
        if not isinstance(raw_ranges, dict):
            raise SpaceError(f"{where}: constraints.ranges must map a parameter (e.g. w3 or wm) to [low, high]")
        for key, bounds in raw_ranges.items():
            base, stage = self._split_param_name(str(key))
            if base is None:
                raise SpaceError(f"{where}: constraints.ranges: no parameter {key!r}")
            if not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, (int, float)) for b in bounds)
                    and bounds[0] <= bounds[1]):
                raise SpaceError(f"{where}: constraints.ranges.{key} must be [low, high] with low <= high, got {bounds!r}")
            vals = np.asarray(self.params[base].values, dtype=float)
            if not np.any((vals >= bounds[0]) & (vals <= bounds[1])):
                raise SpaceError(f"{where}: constraints.ranges.{key}={bounds} excludes every value of parameter {base}")
            ranges[str(key)] = (float(bounds[0]), float(bounds[1]))
        return sets[0], sets[1], ranges

    def _split_param_name(self, key: str) -> tuple[str | None, int | None]:
        if key in self.params:
            return key, None
        if self.family == "anynet" and key[:1] in ANYNET_PARAMS and key[1:].isdigit():
            stage = int(key[1:])
            if 1 <= stage <= self.stages:
                return key[:1], stage
        return None, None

    def complexity_range(self) -> tuple[dict[str, float], dict[str, float]]:
        """Lowest and highest flops / params / acts of its configs (before the band), at its resolution."""
        return self._extreme_metrics()

    def _extreme_metrics(self) -> tuple[dict[str, float], dict[str, float]]:
        """Lowest and highest flops/params/acts reachable (complexity grows with d, w, g and falls with b)."""
        if self.family == "regnet":
            uniforms = np.random.default_rng(12345).random((50_000, self.dimension))
            batch = self._candidates(uniforms, check_band=False)
            keep = np.all([m for m in batch.masks.values()], axis=0)
            if not keep.any():
                raise SpaceError(f"{self.source}: no RegNet parameter tuple gives {self.stages} stages")
            f, p, a = self._metrics(batch, keep)
            return ({"flops": f.min(), "params": p.min(), "acts": a.min()},
                    {"flops": f.max(), "params": p.max(), "acts": a.max()})
        out = []
        for pick in (min, max):
            row = {}
            for n in ANYNET_PARAMS:
                choose = (max if pick is min else min) if n == "b" else pick
                row[n] = np.array([[choose(self._allowed(n, s + 1)) for s in range(self.stages)]])
            batch = self._resolve_anynet(row)
            f, p, a = self._metrics(batch, np.ones(1, dtype=bool))
            out.append({"flops": float(f[0]), "params": float(p[0]), "acts": float(a[0])})
        return out[0], out[1]

    def _allowed(self, name: str, stage: int | None = None) -> list[float]:
        """Grid values allowed by the range constraints: global ones, plus those of `stage` when given."""
        vals = np.asarray(self.params[name].values, dtype=float)
        keep = np.ones(len(vals), dtype=bool)
        for key, (lo, hi) in self.ranges.items():
            base, st = self._split_param_name(key)
            if base == name and (st is None or st == stage):
                keep &= (vals >= lo) & (vals <= hi)
        return [v for v, k in zip(self.params[name].values, keep) if k]

    # ---------------------------------------------------------------- sampling
    @property
    def dimension(self) -> int:
        """Uniforms needed per candidate (the dimension of a QMC sequence over this space)."""
        return sum(k for _, k in sampling.uniform_columns(self))

    def _candidates(self, uniforms: np.ndarray, check_band: bool = True) -> Batch:
        m, raw, col = len(uniforms), {}, 0
        for name, k in sampling.uniform_columns(self):
            raw[name] = sampling.draw_param(self, name, uniforms[:, col:col + k])
            col += k
        batch = self._resolve_anynet(raw) if self.family == "anynet" else self._resolve_regnet(raw)
        self._mask_rules(batch)
        if check_band and self.band:
            ok = np.all([m_ for m_ in batch.masks.values()], axis=0) if batch.masks else np.ones(m, dtype=bool)
            f, p, a = self._metrics(batch, ok)
            for key, values in zip(METRICS, (f, p, a)):
                if key in self.band:
                    lo, hi = self.band[key]
                    inside = np.zeros(m, dtype=bool)
                    inside[ok] = (values >= lo) & (values <= hi)
                    # candidates already rejected elsewhere are not charged to the band
                    name = f"band {key} in [{_fmt(lo)}, {_fmt(hi)}]"
                    batch.masks[name] = inside | ~ok
                    batch.evaluated[name] = int(ok.sum())
        return batch

    def _mask_rules(self, batch: Batch) -> None:
        """Add each constraint's mask over the raw draws (shared parameters are drawn shared: no mask)."""
        for rule in self.rules:
            if not isinstance(rule, Shared):
                batch.masks[rule.label] = rule.holds(batch.raw)

    def _resolve_anynet(self, raw: dict[str, np.ndarray]) -> Batch:
        return resolve_anynet(raw)

    def _resolve_regnet(self, raw: dict[str, np.ndarray]) -> Batch:
        return resolve_regnet(raw, self.stages)

    def _metrics(self, batch: Batch, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return sampling.batch_metrics(batch, rows, self.fixed, self.resolution)

    def _config(self, batch: Batch, i: int) -> AnyNetConfig:
        return sampling.batch_config(batch, i, self.fixed)

    def iter_samples(self, rng: np.random.Generator | Any, n: int,
                     max_candidates: int = MAX_CANDIDATES) -> Iterator[Sample]:
        """Yield n accepted samples in draw order (deterministic for a given rng state).

        `rng` is a numpy Generator, or a scipy QMC engine of dimension `self.dimension` (quasi-random
        candidates; rejection keeps the conditioned law, with lower discrepancy than random draws).
        """
        return sampling.iter_samples(self, self._candidates, rng, n, max_candidates)

    def sample(self, rng: np.random.Generator) -> AnyNetConfig:
        """One config from the constrained distribution."""
        return next(self.iter_samples(rng, 1)).config

    def sample_many(self, n: int, seed: int = 0, qmc: bool = False) -> list[Sample]:
        """n samples (params + config) from a seeded generator or scrambled Sobol points: same seed, same list."""
        if qmc:
            from scipy.stats import qmc as stats_qmc  # 0.4 s to import: only when asked, not with the package

            source = stats_qmc.Sobol(self.dimension, scramble=True, seed=seed)
        else:
            source = np.random.default_rng(seed)
        return list(self.iter_samples(source, n))

    # ---------------------------------------------------------------- counting
    def _count_param(self, name: str) -> int:
        if self.family == "regnet":
            return len(self._allowed(name))
        per_stage = [self._allowed(name, s + 1) for s in range(self.stages)]
        if name in self.shared:
            common = set(per_stage[0]).intersection(*per_stage[1:])
            return len(common)
        if name in self.non_decreasing:
            grid = list(self.params[name].values)
            ways = {v: 1 for v in per_stage[0]}  # number of non-decreasing prefixes ending at v
            for allowed in per_stage[1:]:
                allowed_set, running, nxt = set(allowed), 0, {}
                for v in grid:
                    running += ways.get(v, 0)
                    if v in allowed_set:
                        nxt[v] = running
                ways = nxt
            return sum(ways.values())
        return math.prod(len(a) for a in per_stage)

    @property
    def log10_size(self) -> float:
        """log10 of the exact number of distinct parameter tuples allowed (before the complexity band)."""
        counts = [self._count_param(n) for n in self.params]
        return float(sum(math.log10(c) for c in counts)) if all(counts) else float("-inf")

    # ---------------------------------------------------------------- Optuna
    def param_names(self) -> list[str]:
        """Names under which `suggest` registers parameters (a fixed layout for this space)."""
        return trial_params.param_names(self)

    def suggest(self, trial: Any) -> AnyNetConfig:
        """Register every parameter with an Optuna trial and return the config; InfeasibleConfig if excluded."""
        return trial_params.suggest(self, trial)

    def config_from_params(self, values: dict[str, Any]) -> AnyNetConfig:
        """The config of one raw parameter tuple; InfeasibleConfig naming the violated constraint."""
        missing = [n for n in self.param_names() if n not in values]
        if missing:
            raise SpaceError(f"{self.name}: missing parameter(s) {', '.join(missing)}")
        if self.family == "regnet":
            raw = {n: np.asarray([values[n]]) for n in REGNET_PARAMS}
        else:
            raw = {}
            for n in ANYNET_PARAMS:
                row = [values[n]] * self.stages if n in self.shared else [values[f"{n}{s + 1}"] for s in range(self.stages)]
                raw[n] = np.asarray([row])
        for n, arr in raw.items():
            for v in np.ravel(arr):
                self.params[n].index_of(v)
        batch = self._resolve_regnet(raw) if self.family == "regnet" else self._resolve_anynet(raw)
        self._mask_rules(batch)
        failed = [k for k, m in batch.masks.items() if not m[0]]
        if failed:
            raise InfeasibleConfig(f"violates {failed[0]}")
        cfg = self._config(batch, 0)
        self.check_band(cfg)
        return cfg

    def check_band(self, cfg: AnyNetConfig) -> None:
        """InfeasibleConfig if the config's complexity lies outside the band."""
        cx = complexity(cfg, self.resolution)
        for key, (lo, hi) in self.band.items():
            v = getattr(cx, key)
            if not lo <= v <= hi:
                raise InfeasibleConfig(f"{key}={_fmt(v)} outside the band [{_fmt(lo)}, {_fmt(hi)}]")

    def with_task(self, num_classes: int, in_channels: int) -> DesignSpace:
        """The same space for a data set with these classes and channels (the band counts the real head/stem)."""
        data = dict(self.data)
        data["fixed"] = {**self.data.get("fixed", {}), "num_classes": num_classes, "in_channels": in_channels}
        return DesignSpace(data, self.source)

    # ---------------------------------------------------------------- description
    def summary(self) -> str:
        """One line from the space's real ranges, e.g. `anynet, 4 stages at 16 px: d 1..4, w 8..128, ...`."""
        return _summary(self)

    def describe(self) -> str:
        """Multi-line description: fixed parts, parameters, constraints, band and size."""
        return _describe(self)


def load_space(name_or_path: str | os.PathLike) -> DesignSpace:
    """Load a bundled space by name or a user's space file by path; SpaceError (one line) if invalid."""
    data, path = read_space_file(name_or_path)
    return DesignSpace(data, str(path))
