"""Constraint objects: each design-space constraint's mask, exact count and space-file form, in one place.

A constraint binds the *sampled* values of a space's parameters (before the compatibility rule). One
object answers every question the code asks about it:

- `holds(values)`: which rows satisfy it, vectorized over arrays of parameter values keyed by parameter
  (`{"w": (m, stages)}` for per-stage parameters, `{"wm": (m,)}` for RegNet ones); the sampler and the
  analysis both call it;
- `mask(table)`: the same over a results table (its sampled values, else the built config's);
- `fragment()` / `add_to(data)`: the `constraints:` entry it adds to a space file (None when it has none);
- `log10_count(space)` / `log10_shrink(space)`: the exact size of the space with it added.

>>> rule = NonDecreasing("w")
>>> rule.holds({"w": np.array([[8, 16], [16, 8]])}).tolist()
[True, False]
>>> rule.fragment()
{'non_decreasing': ['w']}
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from anynet_search.models.rules import (
    STAGE_FAMILIES,  # per-stage families: a stage's value is `<family><stage>`, e.g. w3
)
from anynet_search.spaces.view import SpaceView

if TYPE_CHECKING:
    import pandas as pd


def split_param(name: str) -> tuple[str, int | None]:
    """(family, 1-based stage) of a per-stage name like `w3`; (name, None) for a whole parameter (`wm`)."""
    if name[:1] in STAGE_FAMILIES and name[1:].isdigit() and int(name[1:]) >= 1:
        return name[:1], int(name[1:])
    return name, None


def _plain(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


class Constraint(ABC):
    """A constraint on a design space's sampled values (see the module docstring)."""

    #: Why a constraint has no space-file form (only read when `fragment()` is None).
    no_form_reason = ""

    @property
    @abstractmethod
    def name(self) -> str:
        """The name the analysis and the report use (e.g. `shared_b`, `good_range:w3`)."""

    @property
    @abstractmethod
    def label(self) -> str:
        """How the sampler names it in rejection counts and InfeasibleConfig messages."""

    @property
    @abstractmethod
    def params(self) -> tuple[str, ...]:
        """The keys of `holds`'s values it reads."""

    @abstractmethod
    def holds(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """Boolean mask of the rows that satisfy it (values: (m, stages) or (m,) arrays per parameter)."""

    @abstractmethod
    def describe(self, stages: int) -> str:
        """A short formula of the constraint, e.g. `w1 <= ... <= w4`."""

    @abstractmethod
    def fragment(self) -> dict[str, Any] | None:
        """The `constraints:` entry it adds to a space file, or None (then `no_form_reason` says why)."""

    def mask(self, table: pd.DataFrame) -> np.ndarray:
        """Which rows of a results table satisfy it (sampled values, else the built config's d/w/b/g)."""
        # analysis.columns knows the results table's columns; analysis imports this module, so import here
        from anynet_search.analysis.columns import table_values

        return self.holds(table_values(table, self.params))

    def add_to(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """A deep copy of a space definition with this constraint added; ValueError if it has no file form."""
        frag = self.fragment()
        if frag is None:
            raise ValueError(f"{self.name} {self.no_form_reason}")
        new = copy.deepcopy(dict(data))
        cons = dict(new.get("constraints") or {})
        for key, value in frag.items():
            if isinstance(value, dict):
                cons[key] = {**(cons.get(key) or {}), **value}
            else:
                cons[key] = list(cons.get(key) or []) + [v for v in value if v not in (cons.get(key) or [])]
        new["constraints"] = cons
        return new

    def log10_count(self, space: SpaceView) -> float:
        """Exact log10 number of the space's parameter tuples that satisfy it (SpaceError if it cannot)."""
        return type(space)(self.add_to(space.data), space.source).log10_size

    def log10_shrink(self, space: SpaceView) -> float:
        """Exact log10(|space| / |space with it|) >= 0; SpaceError/ValueError if the space cannot hold it."""
        return max(0.0, float(space.log10_size - self.log10_count(space)))


def _stage_values(values: Mapping[str, np.ndarray], family: str) -> np.ndarray:
    x = np.asarray(values[family])
    return x if x.ndim == 2 else x[:, None]


@dataclass(frozen=True)
class Shared(Constraint):
    """Every stage has the same value of a per-stage parameter (AnyNetX B: shared b; C: shared g)."""

    family: str

    @property
    def name(self) -> str:
        return f"shared_{self.family}"

    @property
    def label(self) -> str:
        return f"shared {self.family}"

    @property
    def params(self) -> tuple[str, ...]:
        return (self.family,)

    def holds(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        x = _stage_values(values, self.family)
        return np.isclose(x, x[:, :1], rtol=1e-9, atol=0.0).all(axis=1)

    def describe(self, stages: int) -> str:
        return f"{self.family}1 = ... = {self.family}{stages}"

    def fragment(self) -> dict[str, Any]:
        return {"shared": [self.family]}


#: Names of the non-decreasing constraints the paper uses (AnyNetX D and E).
_INCREASING = {"w": "increasing_widths", "d": "increasing_depths"}


@dataclass(frozen=True)
class NonDecreasing(Constraint):
    """A per-stage parameter never decreases from one stage to the next (AnyNetX D: widths; E: depths)."""

    family: str

    @property
    def name(self) -> str:
        return _INCREASING.get(self.family, f"non_decreasing_{self.family}")

    @property
    def label(self) -> str:
        return f"non_decreasing {self.family}"

    @property
    def params(self) -> tuple[str, ...]:
        return (self.family,)

    def holds(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        return (np.diff(_stage_values(values, self.family), axis=1) >= 0).all(axis=1)

    def describe(self, stages: int) -> str:
        return f"{self.family}1 <= ... <= {self.family}{stages}"

    def fragment(self) -> dict[str, Any]:
        return {"non_decreasing": [self.family]}


@dataclass(frozen=True)
class Range(Constraint):
    """A sampled value lies in [lo, hi]: `w3` binds stage 3, `w` every stage, `wm` a RegNet parameter."""

    param: str
    lo: float
    hi: float

    @property
    def name(self) -> str:
        return f"good_range:{self.param}"

    @property
    def label(self) -> str:
        return f"range {self.param} in [{self.lo:g}, {self.hi:g}]"

    @property
    def params(self) -> tuple[str, ...]:
        return (split_param(self.param)[0],)

    def holds(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        family, stage = split_param(self.param)
        if self.param in values:  # a whole parameter (or a RegNet one named like a stage, e.g. w0)
            family, stage = self.param, None
        x = np.asarray(values[family])
        if stage is not None:
            x = _stage_values(values, family)[:, stage - 1]
        inside = (x >= self.lo) & (x <= self.hi)
        return inside.all(axis=1) if inside.ndim == 2 else inside

    def describe(self, stages: int) -> str:
        return f"{self.lo:g} <= {self.param} <= {self.hi:g}"

    def fragment(self) -> dict[str, Any]:
        return {"ranges": {self.param: [_plain(self.lo), _plain(self.hi)]}}


@dataclass(frozen=True)
class FitErrorAtMost(Constraint):
    """The built widths' RegNet fit error is at most `threshold` (its `quantile` quantile in the study)."""

    threshold: float
    quantile: float
    no_form_reason = "has no space-file form (use a regnet space for fit-error constraints)"

    @property
    def name(self) -> str:
        return f"fit_error<=q{round(100 * self.quantile):02d}"

    @property
    def label(self) -> str:
        return f"fit_error <= {self.threshold:.4g}"

    @property
    def params(self) -> tuple[str, ...]:
        return ("fit_error",)

    def holds(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        fit = np.asarray(values["fit_error"], dtype=float)
        return np.isfinite(fit) & (np.nan_to_num(fit, nan=np.inf) <= self.threshold)

    def mask(self, table: pd.DataFrame) -> np.ndarray:
        import pandas as pd

        return self.holds(
            {"fit_error": pd.to_numeric(table["fit_error"], errors="coerce").to_numpy(dtype=float)}
        )

    def describe(self, stages: int) -> str:
        return f"fit_error <= {self.threshold:.4g}"

    def fragment(self) -> None:
        return None


#: The structural constraints of the AnyNetX A -> E progression, by name.
STRUCTURAL: dict[str, Constraint] = {
    rule.name: rule for rule in (Shared("b"), Shared("g"), NonDecreasing("w"), NonDecreasing("d"))
}


def space_rules(
    shared: set[str], non_decreasing: set[str], ranges: Mapping[str, tuple[float, float]]
) -> list[Constraint]:
    """The constraint objects of a space file's `constraints:` (shared, non_decreasing, ranges)."""
    return (
        [Shared(n) for n in sorted(shared)]
        + [NonDecreasing(n) for n in sorted(non_decreasing)]
        + [Range(k, lo, hi) for k, (lo, hi) in ranges.items()]
    )
