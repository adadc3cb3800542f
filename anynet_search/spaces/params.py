"""One free parameter of a design space: its grid of values, its distribution, and how Optuna sees it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from anynet_search.errors import InputError

DISTRIBUTIONS = ("uniform", "log_uniform", "power_of_two", "choice")
PARAM_KEYS = {"low", "high", "step", "values", "distribution", "type"}


class SpaceError(InputError):
    """A design-space file or definition is invalid; the message is one line naming file, key and problem."""


@dataclass(frozen=True)
class ParamSpec:
    """A free parameter: a finite grid of values and a probability for each (exact, so conditioning is exact).

    Continuous distributions are defined on [low - step/2, high + step/2] and pushed onto the grid by
    rounding to the nearest grid value: P(v) is the continuous mass of v's rounding cell. `choice` and `power_of_two`
    are uniform over their values.
    """

    name: str
    distribution: str
    values: tuple[float, ...]
    probs: tuple[float, ...]
    is_int: bool
    low: float
    high: float
    step: float | None

    @property
    def size(self) -> int:
        """Number of distinct values."""
        return len(self.values)

    def cdf_edges(self) -> np.ndarray:
        """Cumulative probability at the upper edge of each value's cell (for inverse-CDF sampling)."""
        return np.cumsum(np.asarray(self.probs))

    def from_uniform(self, u: np.ndarray) -> np.ndarray:
        """Map uniforms in [0, 1) to grid indices with the parameter's probabilities (inverse CDF)."""
        edges = self.cdf_edges()
        return np.minimum(np.searchsorted(edges, u * edges[-1], side="right"), self.size - 1)

    def suggest(self, trial: Any, name: str) -> Any:
        """Register the parameter with an Optuna trial under `name` and return its value."""
        if self.distribution in ("choice", "power_of_two"):
            return trial.suggest_categorical(name, list(self.values))
        if self.is_int:
            step = int(self.step or 1)
            # Optuna has no log scale with step > 1: log only for unit steps
            log = self.distribution == "log_uniform" and step == 1
            return trial.suggest_int(name, int(self.low), int(self.high), step=step, log=log)
        if self.step:
            return trial.suggest_float(name, self.low, self.high, step=self.step)
        return trial.suggest_float(name, self.low, self.high, log=self.distribution == "log_uniform")

    def index_of(self, value: Any) -> int:
        """Grid index of a value; SpaceError if it is not on the grid."""
        arr = np.asarray(self.values, dtype=float)
        i = int(np.argmin(np.abs(arr - float(value))))
        if not math.isclose(arr[i], float(value), rel_tol=1e-9, abs_tol=1e-9):
            raise SpaceError(f"{self.name}={value!r} is not one of the parameter's values")
        return i


def _as_number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpaceError(f"{where}: {key} must be a number, got {value!r}")
    return value


def make_param(name: str, spec: Any, where: str) -> ParamSpec:
    """Validate one parameter entry of a space file and build its exact grid distribution."""
    where = f"{where}: parameters.{name}"
    if not isinstance(spec, dict):
        raise SpaceError(f"{where} must be a mapping with values or low/high, got {spec!r}")
    unknown = sorted(set(spec) - PARAM_KEYS)
    if unknown:
        raise SpaceError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(PARAM_KEYS))}")
    dist = spec.get("distribution", "choice" if "values" in spec else "uniform")
    if dist not in DISTRIBUTIONS:
        raise SpaceError(f"{where}: distribution must be one of {DISTRIBUTIONS}, got {dist!r}")
    if "values" in spec:
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise SpaceError(f"{where}: values must be a non-empty list, got {values!r}")
        for v in values:
            _as_number(where, "values", v)
        if len(set(values)) != len(values):
            raise SpaceError(f"{where}: values contain duplicates: {values}")
        if dist not in ("choice", "power_of_two"):
            raise SpaceError(f"{where}: a values list takes distribution choice or power_of_two, got {dist}")
        if dist == "power_of_two" and any(v <= 0 or not float(v).is_integer() or int(v) & (int(v) - 1) for v in values):
            raise SpaceError(f"{where}: power_of_two values must be powers of two, got {values}")
        vals = tuple(sorted(values))
        is_int = all(float(v).is_integer() for v in vals)
        vals = tuple(int(v) for v in vals) if is_int else vals
        return ParamSpec(name, dist, vals, tuple([1.0 / len(vals)] * len(vals)), is_int, vals[0], vals[-1], None)
    for key in ("low", "high"):
        if key not in spec:
            raise SpaceError(f"{where}: needs 'values' or both 'low' and 'high' (missing {key})")
    low, high = _as_number(where, "low", spec["low"]), _as_number(where, "high", spec["high"])
    if not low < high:
        raise SpaceError(f"{where}: low must be below high, got low={low} high={high}")
    kind = spec.get("type", "int" if isinstance(low, int) and isinstance(high, int) else "float")
    if kind not in ("int", "float"):
        raise SpaceError(f"{where}: type must be int or float, got {kind!r}")
    is_int = kind == "int"
    step = spec.get("step", 1 if is_int else None)
    if step is None:
        raise SpaceError(f"{where}: a float parameter needs a step (the grid its values are counted on)")
    step = _as_number(where, "step", step)
    if step <= 0:
        raise SpaceError(f"{where}: step must be positive, got {step}")
    if dist in ("log_uniform", "power_of_two") and low <= 0:
        raise SpaceError(f"{where}: {dist} needs low > 0, got {low}")
    if dist == "power_of_two":
        if not is_int:
            raise SpaceError(f"{where}: power_of_two needs an int parameter")
        vals = tuple(2**k for k in range(math.ceil(math.log2(low)), math.floor(math.log2(high)) + 1))
        if not vals:
            raise SpaceError(f"{where}: no power of two lies in [{low}, {high}]")
        return ParamSpec(name, dist, vals, tuple([1.0 / len(vals)] * len(vals)), True, low, high, None)
    if dist == "choice":
        raise SpaceError(f"{where}: distribution choice needs a values list")
    n = int(math.floor((high - low) / step + 1e-9)) + 1
    grid = low + step * np.arange(n)
    if abs(grid[-1] - high) > 1e-9 * max(1.0, abs(high)):
        raise SpaceError(f"{where}: high={high} is not low + a multiple of step={step}")
    if is_int and not (float(low).is_integer() and float(step).is_integer()):
        raise SpaceError(f"{where}: an int parameter needs integer low and step")
    # each value owns its full rounding cell [v - step/2, v + step/2), so uniform is exactly uniform
    # over the grid and log_uniform is the continuous log-uniform law rounded to the grid
    edges = np.concatenate([grid - step / 2, [grid[-1] + step / 2]])
    if dist == "log_uniform":
        if edges[0] <= 0:
            raise SpaceError(f"{where}: log_uniform needs low > step/2 so every cell is positive, got low={low} step={step}")
        mass = np.diff(np.log(edges)) / (math.log(edges[-1]) - math.log(edges[0]))
    else:
        mass = np.diff(edges) / (edges[-1] - edges[0])
    vals = tuple(int(round(v)) for v in grid) if is_int else tuple(round(float(v), 10) for v in grid)
    return ParamSpec(name, dist, vals, tuple(float(m) for m in mass), is_int, low, high, float(step))
