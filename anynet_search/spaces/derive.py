"""Edit design spaces with constraint objects: exact shrink factors and the space derived from kept verdicts.

Everything here consumes `anynet_search.spaces.constraints` objects (their exact count and space-file
form); nothing reads numbers back from the human-readable `detail` text of a verdict table.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from anynet_search.analysis.constraints import KEEP
from anynet_search.spaces.constraints import STRUCTURAL, Constraint
from anynet_search.spaces.params import SpaceError
from anynet_search.spaces.space import DesignSpace, load_space

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DerivedSpace", "derive_space", "exact_shrink", "kept_rules"]


def exact_shrink(space: DesignSpace, names: Sequence[str] | None = None) -> dict[str, float]:
    """Exact log10 shrink factor of each structural constraint: log10 |space| - log10 |space + constraint|.

    Constraints a space cannot express (a RegNet space has no per-stage parameters) are left out.
    """
    out: dict[str, float] = {}
    if space.family != "anynet":
        return out
    for name in names if names is not None else STRUCTURAL:
        try:
            shrink = STRUCTURAL[name].log10_shrink(space)
        except SpaceError:
            continue
        if np.isfinite(shrink):
            out[name] = shrink
    return out


@dataclass
class DerivedSpace:
    """A design space with the kept constraints added, and what was added or skipped (and why)."""

    data: dict[str, Any]
    added: list[str]
    skipped: list[tuple[str, str]]
    log10_size_before: float
    log10_size_after: float

    def to_yaml(self) -> str:
        """The space definition as YAML (block style, one list per line)."""
        return yaml.safe_dump(self.data, sort_keys=False, default_flow_style=None, width=1000)

    def write(self, path: str | Path, header: Sequence[str] = ()) -> Path:
        """Write the space file (each header line as a `# ` comment) and check that it loads as a space."""
        path = Path(path)
        lines = "".join(f"# {line}\n" for line in header)
        path.write_text(lines + self.to_yaml(), encoding="utf-8")
        load_space(path)  # raises SpaceError (one line) if the written file were not a valid space
        return path


def kept_rules(constraints: pd.DataFrame) -> list[tuple[str, Constraint | None]]:
    """(name, constraint object) of each kept row of a verdict table, in rank order; None when unknown.

    The objects come from the table's `attrs["rules"]` (set by `derive_constraints`); structural
    constraints are also known by name.
    """
    rules: Mapping[str, Constraint] = constraints.attrs.get("rules", {})
    out = []
    for name, verdict in zip(constraints["constraint"], constraints["verdict"]):
        if verdict == KEEP:
            out.append((str(name), rules.get(str(name), STRUCTURAL.get(str(name)))))
    return out


def derive_space(space: DesignSpace, constraints: pd.DataFrame, label: str = "") -> DerivedSpace:
    """The space with every kept constraint added (in rank order, each validated by loading the result).

    A constraint without a space-file form (`fit_error`) is skipped, as is any the space cannot hold;
    `skipped` records why.
    """
    data = copy.deepcopy(dict(space.data))
    data.pop("extends", None)
    added: list[str] = []
    skipped: list[tuple[str, str]] = []
    current = space
    for name, rule in kept_rules(constraints):
        if rule is None:
            skipped.append((name, "no constraint object recorded (judge it with derive_constraints)"))
            continue
        if rule.fragment() is None:
            skipped.append((name, rule.no_form_reason))
            continue
        candidate = rule.add_to(data)
        try:
            current = DesignSpace(candidate, space.source)
        except SpaceError as exc:
            skipped.append((name, str(exc).split(": ", 1)[-1]))
            continue
        data = candidate
        added.append(name)
    what = ", ".join(added) if added else "no constraint kept"
    head = {
        "name": f"{space.name}_derived",
        "description": f"{space.name} plus the constraints kept on study {label or space.name}: {what}",
    }
    data = {**head, **{k: v for k, v in data.items() if k not in head}}
    return DerivedSpace(data, added, skipped, space.log10_size, current.log10_size)
