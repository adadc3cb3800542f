"""`DesignSpace`: a population of networks plus a distribution over it, sampled exactly and fast.

Sampling is vectorized rejection sampling: draw candidate parameter tuples from the unconstrained
distribution in large numpy batches, keep those that satisfy every constraint (structural ones on
the sampled values, the complexity band on the config after the compatibility rule, measured with
the analytic complexity). That is exactly the unconstrained distribution conditioned on the
constraints. Shared parameters are drawn once from p(v)^n (normalized), which is the iid law
conditioned on all stages being equal, so they cost no rejections.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anynet_search.complexity import complexity, complexity_arrays
from anynet_search.config import AnyNetConfig
from anynet_search.regnet import QUANTUM
from anynet_search.spaces.constraints import Constraint, Shared, space_rules
from anynet_search.spaces.files import read_space_file, spec_hash
from anynet_search.spaces.params import ParamSpec, SpaceError, make_param

ANYNET_PARAMS = ("d", "w", "b", "g")
REGNET_PARAMS = ("d", "w0", "wa", "wm", "g", "b")
FIXED_KEYS = {"stem_type", "stem_width", "block_type", "se_ratio", "head_width", "num_classes", "in_channels",
              "strides", "zero_init_last_bn"}
CONSTRAINT_KEYS = {"shared", "non_decreasing", "ranges"}
METRICS = ("flops", "params", "acts")
MAX_CANDIDATES = 20_000_000


class InfeasibleConfig(ValueError):
    """A suggested parameter tuple violates a constraint or the complexity band (never trained)."""


@dataclass(frozen=True)
class Sample:
    """One accepted draw: the raw parameter values (as Optuna records them) and the resolved config."""

    params: dict[str, Any]
    config: AnyNetConfig


@dataclass
class _Batch:
    """Candidate draws as arrays: raw grid values per parameter name and per-stage resolved arrays."""

    raw: dict[str, np.ndarray]
    depths: np.ndarray
    widths: np.ndarray
    ratios: np.ndarray
    group_widths: np.ndarray
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    evaluated: dict[str, int] = field(default_factory=dict)  # candidates a mask was judged on (band: survivors)


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:g}"


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
        if self.description is not None and (not isinstance(self.description, str) or not self.description.strip()
                                             or "\n" in self.description.strip()):
            raise SpaceError(f"{where}: description must be a one-line string")
        self.family = data.get("family", "anynet")
        if self.family not in ("anynet", "regnet"):
            raise SpaceError(f"{where}: family must be anynet or regnet, got {self.family!r}")
        self.resolution = data.get("resolution")
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, int) or self.resolution <= 0:
            raise SpaceError(f"{where}: resolution must be a positive integer, got {self.resolution!r}")
        self.stages = data.get("stages")
        if isinstance(self.stages, bool) or not isinstance(self.stages, int) or not 1 <= self.stages <= 16:
            raise SpaceError(f"{where}: stages must be an integer in 1..16, got {self.stages!r}")
        self.fixed = self._check_fixed(data.get("fixed", {}), where)
        expected = ANYNET_PARAMS if self.family == "anynet" else REGNET_PARAMS
        raw_params = data.get("parameters")
        if not isinstance(raw_params, dict):
            raise SpaceError(f"{where}: parameters must be a mapping of {', '.join(expected)}")
        missing = [p for p in expected if p not in raw_params]
        extra = sorted(set(raw_params) - set(expected))
        if missing or extra:
            problem = f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}"
            raise SpaceError(f"{where}: parameters: {problem}; a {self.family} space has exactly {', '.join(expected)}")
        self.params: dict[str, ParamSpec] = {p: make_param(p, raw_params[p], where) for p in expected}
        self._check_param_domains(where)
        self.shared, self.non_decreasing, self.ranges = self._check_constraints(data.get("constraints") or {}, where)
        self.rules: list[Constraint] = space_rules(self.shared, self.non_decreasing, self.ranges)
        self.band = self._check_band(data.get("band") or {}, where)
        self._check_band_reachable(where)
        if self.description is None:  # a file without its own description gets one from its real ranges
            self.description = self.summary()

    # ---------------------------------------------------------------- validation
    def _check_fixed(self, fixed: Any, where: str) -> dict[str, Any]:
        if not isinstance(fixed, dict):
            raise SpaceError(f"{where}: fixed must be a mapping of AnyNetConfig fields")
        unknown = sorted(set(fixed) - FIXED_KEYS)
        if unknown:
            raise SpaceError(f"{where}: fixed: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(FIXED_KEYS))}")
        out = {"stem_type": "simple", "stem_width": 32, "block_type": "x", "se_ratio": 0.0, "head_width": 0,
               "num_classes": 1000, "in_channels": 3, "strides": [2] * self.stages, "zero_init_last_bn": True}
        out.update(fixed)
        if not isinstance(out["strides"], list) or len(out["strides"]) != self.stages:
            raise SpaceError(f"{where}: fixed.strides must list one stride per stage ({self.stages}), got {out['strides']!r}")
        try:  # let AnyNetConfig validate the fixed fields on a trivially valid stage layout
            AnyNetConfig(depths=[1] * self.stages, widths=[8] * self.stages, bottleneck_ratios=[1] * self.stages,
                         group_widths=[1] * self.stages, **out)
        except ValueError as exc:
            raise SpaceError(f"{where}: fixed: {exc}") from None
        return out

    def _check_param_domains(self, where: str) -> None:
        p = self.params
        for name in ("d", "w", "b", "g", "w0"):
            if name in p and (not p[name].is_int or p[name].values[0] <= 0) and name != "b":
                raise SpaceError(f"{where}: parameters.{name} must take positive integer values")
        if p["b"].values[0] <= 0:
            raise SpaceError(f"{where}: parameters.b must be positive")
        if self.family == "regnet":
            if any(v % QUANTUM for v in p["w0"].values):
                raise SpaceError(f"{where}: parameters.w0 values must be multiples of {QUANTUM}")
            if p["wa"].values[0] < 0:
                raise SpaceError(f"{where}: parameters.wa must be >= 0")
            if p["wm"].values[0] <= 1:
                raise SpaceError(f"{where}: parameters.wm must be > 1")

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

    def _check_band(self, band: Any, where: str) -> dict[str, tuple[float, float]]:
        if not isinstance(band, dict):
            raise SpaceError(f"{where}: band must map flops / params / acts to [low, high]")
        out = {}
        for key, bounds in band.items():
            if key not in METRICS:
                raise SpaceError(f"{where}: band: unknown metric {key!r}; known: {', '.join(METRICS)}")
            ok = isinstance(bounds, list) and len(bounds) == 2 and all(
                isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
            if not ok or not 0 <= bounds[0] < bounds[1]:
                raise SpaceError(f"{where}: band.{key} must be [low, high] with 0 <= low < high, got {bounds!r}")
            out[key] = (float(bounds[0]), float(bounds[1]))
        return out

    def _check_band_reachable(self, where: str) -> None:
        if not self.band:
            return
        lo_cfg, hi_cfg = self._extreme_metrics()
        for key, (lo, hi) in self.band.items():
            if hi < lo_cfg[key] or lo > hi_cfg[key]:
                raise SpaceError(
                    f"{where}: band.{key}=[{_fmt(lo)}, {_fmt(hi)}] is unreachable: configs of this space have "
                    f"{key} between {_fmt(lo_cfg[key])} and {_fmt(hi_cfg[key])} at {self.resolution} px"
                )

    def complexity_range(self) -> tuple[dict[str, float], dict[str, float]]:
        """Lowest and highest flops / params / acts of the space's configs (before the band), at its resolution."""
        return self._extreme_metrics()

    def _extreme_metrics(self) -> tuple[dict[str, float], dict[str, float]]:
        """Lowest and highest flops/params/acts reachable (complexity grows with d, w, g and falls with b)."""
        if self.family == "regnet":
            batch = self._candidates(np.random.default_rng(12345).random((50_000, self.dimension)), check_band=False)
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
    def _uniform_columns(self) -> list[tuple[str, int]]:
        """(parameter, number of uniforms) per draw: one per stage, one for shared and RegNet parameters."""
        if self.family == "regnet":
            return [(n, 1) for n in REGNET_PARAMS]
        return [(n, 1 if n in self.shared else self.stages) for n in ANYNET_PARAMS]

    @property
    def dimension(self) -> int:
        """Uniforms needed per candidate (the dimension of a QMC sequence over this space)."""
        return sum(k for _, k in self._uniform_columns())

    def _draw_param(self, name: str, u: np.ndarray) -> np.ndarray:
        """Grid values from uniforms u of shape (m, k) by inverse CDF; shared parameters use p(v)^stages."""
        spec = self.params[name]
        vals = np.asarray(spec.values)
        if self.family == "regnet":
            return vals[spec.from_uniform(u[:, 0])]
        if name in self.shared:
            # iid across stages conditioned on all equal: P(v) proportional to p(v)^stages
            probs = np.asarray(spec.probs) ** self.stages
            edges = np.cumsum(probs / probs.sum())
            idx = np.minimum(np.searchsorted(edges, u[:, 0] * edges[-1], side="right"), spec.size - 1)
            return np.repeat(vals[idx][:, None], self.stages, axis=1)
        return vals[spec.from_uniform(u)]

    def _candidates(self, uniforms: np.ndarray, check_band: bool = True) -> _Batch:
        m, raw, col = len(uniforms), {}, 0
        for name, k in self._uniform_columns():
            raw[name] = self._draw_param(name, uniforms[:, col:col + k])
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

    def _mask_rules(self, batch: _Batch) -> None:
        """Add each constraint's mask over the raw draws (shared parameters are drawn shared: no mask)."""
        for rule in self.rules:
            if not isinstance(rule, Shared):
                batch.masks[rule.label] = rule.holds(batch.raw)

    def _resolve_anynet(self, raw: dict[str, np.ndarray]) -> _Batch:
        """Apply the compatibility rule to per-stage arrays (g = min(g, w_b); w_b multiple of g; w = w_b b)."""
        w, b, g = raw["w"].astype(float), raw["b"].astype(float), raw["g"].astype(np.int64)
        w_b = np.maximum(1, np.round(w / b)).astype(np.int64)
        g = np.minimum(g, w_b)
        w_b = np.maximum(g, np.round(w_b / g).astype(np.int64) * g)
        widths = np.round(w_b * b).astype(np.int64)
        return _Batch(raw=raw, depths=raw["d"].astype(np.int64), widths=widths, ratios=b, group_widths=g)

    def _resolve_regnet(self, raw: dict[str, np.ndarray]) -> _Batch:
        """Vectorized quantized-linear widths, collapsed to stages; rows without `stages` stages are masked."""
        d, w0, wa, wm = raw["d"].astype(np.int64), raw["w0"].astype(float), raw["wa"].astype(float), raw["wm"].astype(float)
        m, dmax, s_n = len(d), int(d.max()), self.stages
        j = np.arange(dmax)
        valid = j[None, :] < d[:, None]
        u = w0[:, None] + wa[:, None] * j[None, :]
        s = np.round(np.log(u / w0[:, None]) / np.log(wm[:, None]))
        bw = (np.round(w0[:, None] * np.power(wm[:, None], s) / QUANTUM) * QUANTUM).astype(np.int64)
        change = np.concatenate([np.zeros((m, 1), dtype=bool), (bw[:, 1:] != bw[:, :-1]) & valid[:, 1:]], axis=1)
        stage_id = np.cumsum(change, axis=1)
        n_stages = stage_id[np.arange(m), d - 1] + 1
        ok = n_stages == s_n
        depths = np.zeros((m, s_n), dtype=np.int64)
        widths = np.full((m, s_n), QUANTUM, dtype=np.int64)
        rows, cols = np.nonzero(valid & ok[:, None])
        np.add.at(depths, (rows, stage_id[rows, cols]), 1)
        widths[rows, stage_id[rows, cols]] = bw[rows, cols]
        per_stage = {"d": depths, "w": widths, "b": np.repeat(raw["b"][:, None], s_n, axis=1),
                     "g": np.repeat(raw["g"][:, None], s_n, axis=1)}
        batch = self._resolve_anynet(per_stage)
        batch.raw = raw
        batch.masks[f"regnet gives {s_n} stages"] = ok
        return batch

    def _metrics(self, batch: _Batch, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        fx = self.fixed
        w_b = np.maximum(1, np.round(batch.widths[rows] / batch.ratios[rows])).astype(np.int64)
        return complexity_arrays(
            batch.depths[rows], batch.widths[rows], w_b, batch.group_widths[rows],
            np.tile(np.asarray(fx["strides"]), (int(rows.sum()), 1)), self.resolution,
            stem_type=fx["stem_type"], stem_width=fx["stem_width"], block_type=fx["block_type"],
            se_ratio=fx["se_ratio"], head_width=fx["head_width"], num_classes=fx["num_classes"],
            in_channels=fx["in_channels"],
        )

    def _config(self, batch: _Batch, i: int) -> AnyNetConfig:
        ratios = [int(r) if float(r).is_integer() else float(r) for r in batch.ratios[i]]
        return AnyNetConfig(depths=batch.depths[i].tolist(), widths=batch.widths[i].tolist(),
                            bottleneck_ratios=ratios, group_widths=batch.group_widths[i].tolist(), **self.fixed)

    def _params(self, batch: _Batch, i: int) -> dict[str, Any]:
        out = {}
        for name, arr in batch.raw.items():
            spec = self.params[name]
            cast = int if spec.is_int else float
            if arr.ndim == 1:
                out[name] = cast(arr[i])
            elif name in self.shared:
                out[name] = cast(arr[i, 0])
            else:
                for s in range(self.stages):
                    out[f"{name}{s + 1}"] = cast(arr[i, s])
        return out

    def iter_samples(self, rng: np.random.Generator | Any, n: int, max_candidates: int = MAX_CANDIDATES) -> Iterator[Sample]:
        """Yield n accepted samples in draw order (deterministic for a given rng state).

        `rng` is a numpy Generator, or a scipy QMC engine of dimension `self.dimension` (quasi-random
        candidates; rejection keeps the conditioned law, with lower discrepancy than random draws).
        """
        drawn = accepted = 0
        rejects: dict[str, int] = {}
        judged: dict[str, int] = {}
        size = 256
        while accepted < n:
            if drawn >= max_candidates:
                raise SpaceError(self._starved_message(drawn, accepted, rejects, judged))
            uniforms = rng.random(size) if hasattr(rng, "fast_forward") else rng.random((size, self.dimension))
            batch = self._candidates(uniforms)
            keep = np.all(list(batch.masks.values()), axis=0) if batch.masks else np.ones(size, dtype=bool)
            for key, mask in batch.masks.items():
                rejects[key] = rejects.get(key, 0) + int((~mask).sum())
                judged[key] = judged.get(key, 0) + batch.evaluated.get(key, size)
            drawn += size
            for i in np.flatnonzero(keep):
                if accepted == n:
                    break
                accepted += 1
                yield Sample(self._params(batch, int(i)), self._config(batch, int(i)))
            size = min(size * 4, 1 << 18)

    def _starved_message(self, drawn: int, accepted: int, rejects: dict[str, int], judged: dict[str, int]) -> str:
        # the band is judged only on candidates that passed the structural constraints
        rate = {k: (1 - rejects[k] / judged[k]) if judged[k] else 0.0 for k in rejects}
        worst = min(rate, key=rate.get) if rate else "no constraint"
        rates = "; ".join(f"{k} passes {100 * r:.4g}% of {judged[k]:,} judged" for k, r in sorted(rate.items(), key=lambda kv: kv[1]))
        return (f"{self.name}: only {accepted} of {drawn:,} candidates accepted (rate {accepted / drawn:.2g}); "
                f"{worst} rejects most ({rates})")

    def sample(self, rng: np.random.Generator) -> AnyNetConfig:
        """One config from the constrained distribution."""
        return next(self.iter_samples(rng, 1)).config

    def sample_many(self, n: int, seed: int = 0, qmc: bool = False) -> list[Sample]:
        """n samples (params + config) from a seeded generator (or scrambled Sobol points): same seed, same list."""
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
        if self.family == "regnet":
            return list(REGNET_PARAMS)
        return [n if n in self.shared else f"{n}{s + 1}" for n in ANYNET_PARAMS
                for s in range(1 if n in self.shared else self.stages)]

    def suggest(self, trial: Any) -> AnyNetConfig:
        """Register every parameter with an Optuna trial and return the config; InfeasibleConfig if constrained out."""
        values = {}
        for name in self.param_names():
            base = name if name in self.params else name[0]
            values[name] = self.params[base].suggest(trial, name)
        return self.config_from_params(values)

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
        """The same space for a data set with these classes and channels (the band then counts the real head/stem)."""
        data = dict(self.data)
        data["fixed"] = {**self.data.get("fixed", {}), "num_classes": num_classes, "in_channels": in_channels}
        return DesignSpace(data, self.source)

    # ---------------------------------------------------------------- description
    def summary(self) -> str:
        """One line from the space's real ranges, e.g. `anynet, 4 stages at 16 px: d 1..4, w 8..128, ...`."""
        parts = []
        for p in self.params.values():
            vals = list(p.values)
            parts.append(f"{p.name} {vals[0]:g}" if len(vals) == 1 else
                         f"{p.name} {', '.join(f'{v:g}' for v in vals)}" if len(vals) <= 4 else
                         f"{p.name} {min(vals):g}..{max(vals):g}")
        parts += [f"{label} {', '.join(sorted(names))}" for label, names in
                  (("shared", self.shared), ("non-decreasing", self.non_decreasing)) if names]
        parts += [f"{k} in {lo:g}..{hi:g}" for k, (lo, hi) in self.ranges.items()]
        band = ", ".join(f"{k} {_fmt(lo)}..{_fmt(hi)}" for k, (lo, hi) in self.band.items()) or "no band"
        return f"{self.family}, {self.stages} stages at {self.resolution} px: {'; '.join(parts)}; {band}"

    def describe(self) -> str:
        """Multi-line description: fixed parts, parameters, constraints, band and size."""
        lines = [f"{self.name}: {self.description}", f"  source: {self.source}",
                 f"  family: {self.family}, stages: {self.stages}, resolution: {self.resolution} px",
                 "  fixed: " + ", ".join(f"{k}={v}" for k, v in self.fixed.items()), "  parameters:"]
        for p in self.params.values():
            span = (f"{p.values}" if p.distribution in ("choice", "power_of_two")
                    else f"[{p.low:g}, {p.high:g}] step {p.step:g}")
            lines.append(f"    {p.name}: {p.distribution} {span} ({p.size} values)")
        lines.append(f"  shared: {sorted(self.shared) or '-'}   non_decreasing: {sorted(self.non_decreasing) or '-'}")
        if self.ranges:
            lines.append("  ranges: " + ", ".join(f"{k} in [{lo:g}, {hi:g}]" for k, (lo, hi) in self.ranges.items()))
        band = ", ".join(f"{k} in [{_fmt(lo)}, {_fmt(hi)}]" for k, (lo, hi) in self.band.items()) or "none"
        lines.append(f"  band: {band}")
        lo, hi = self.complexity_range()
        lines.append("  complexity of its configs (before the band): "
                     + ", ".join(f"{k} {_fmt(lo[k])}..{_fmt(hi[k])}" for k in METRICS))
        lines.append(f"  log10 size: {self.log10_size:.2f} (distinct parameter tuples, before the band)")
        return "\n".join(lines)


def load_space(name_or_path: str | os.PathLike) -> DesignSpace:
    """Load a bundled space by name or a user's space file by path; SpaceError (one line) if invalid."""
    data, path = read_space_file(name_or_path)
    return DesignSpace(data, str(path))
