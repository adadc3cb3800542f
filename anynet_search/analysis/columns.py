"""Per-stage parameter columns of a results frame: `d1..dN`, `w1..wN`, `b1..bN`, `g1..gN`."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from anynet_search.analysis._checks import require_frame
from anynet_search.models.rules import (
    STAGE_FAMILIES,  # depth, width, bottleneck ratio, group width, in listing order
)

_STAGE_COLUMN = re.compile(rf"^([{''.join(STAGE_FAMILIES)}])([1-9][0-9]*)$")


def _family_indices(df: pd.DataFrame) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {f: [] for f in STAGE_FAMILIES}
    for col in df.columns:
        m = _STAGE_COLUMN.match(str(col))
        if m:
            found[m.group(1)].append(int(m.group(2)))
    return {f: sorted(ix) for f, ix in found.items() if ix}


def stage_count(df: pd.DataFrame) -> int:
    """Number of stages N, detected from the `d1..dN`/`w1..wN`/`b1..bN`/`g1..gN` columns.

    Families that are present must all run 1..N without gaps; absent families are allowed (for example a
    frame without group widths). Index 0 is never a stage, so a RegNet `w0` column is not mistaken for one.
    """
    require_frame(df, [], "stage_count")
    found = _family_indices(df)
    if not found:
        raise ValueError("stage_count: no per-stage columns (d1.., w1.., b1.., g1..) in the frame")
    counts = {}
    for fam, ix in found.items():
        if ix != list(range(1, len(ix) + 1)):
            raise ValueError(f"stage_count: columns {fam}1..{fam}{max(ix)} have gaps (found {fam}{ix})")
        counts[fam] = len(ix)
    if len(set(counts.values())) > 1:
        desc = ", ".join(f"{fam}1..{fam}{n}" for fam, n in counts.items())
        raise ValueError(f"stage_count: families disagree on the number of stages ({desc})")
    return next(iter(counts.values()))


def stage_columns(df: pd.DataFrame, family: str) -> list[str]:
    """Columns of one family (`'d'`, `'w'`, `'b'` or `'g'`) in stage order; empty if the family is absent."""
    if family not in STAGE_FAMILIES:
        raise ValueError(f"family must be one of {STAGE_FAMILIES}, got {family!r}")
    n = stage_count(df)
    cols = [f"{family}{i}" for i in range(1, n + 1)]
    return cols if all(c in df.columns for c in cols) else []


def param_columns(df: pd.DataFrame) -> list[str]:
    """All per-stage parameter columns, ordered d1..dN, w1..wN, b1..bN, g1..gN (absent families skipped)."""
    return [c for fam in STAGE_FAMILIES for c in stage_columns(df, fam)]


#: Prefix of the columns holding the values a trial *sampled* (its Optuna parameters), before the
#: compatibility rule resolved them into the built config's d/w/b/g (which can shift w and g).
SAMPLED_PREFIX = "sampled_"


def sampled_columns(df: pd.DataFrame, family: str) -> list[str]:
    """Columns of one family's sampled values: `sampled_<f>1..N`, or `[sampled_<f>]` when the space shares it.

    Empty when the frame has none (results recorded without them) or when they are RegNet parameters
    (a `sampled_w0` column: there `sampled_d` is the total depth, not a per-stage value).
    """
    if family not in STAGE_FAMILIES:
        raise ValueError(f"family must be one of {STAGE_FAMILIES}, got {family!r}")
    if f"{SAMPLED_PREFIX}w0" in df.columns:
        return []
    per_stage = [f"{SAMPLED_PREFIX}{family}{i}" for i in range(1, stage_count(df) + 1)]
    for cols in (per_stage, [f"{SAMPLED_PREFIX}{family}"]):
        if all(c in df.columns for c in cols) and df[cols].notna().all().all():
            return cols
    return []


def table_values(df: pd.DataFrame, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Values of each named parameter as an (m, k) array, what a constraint's mask reads from a results table.

    A per-stage family (d, w, b, g) gives its sampled columns when the frame has them (k = 1 when the
    space shares it), else the built config's `<f>1..N`; any other name (a RegNet parameter such as wm)
    gives its `sampled_<name>` column.
    """
    out = {}
    for name in names:
        cols = ((sampled_columns(df, name) or stage_columns(df, name)) if name in STAGE_FAMILIES
                else [f"{SAMPLED_PREFIX}{name}"])
        if not cols or any(c not in df.columns for c in cols):
            raise ValueError(f"the results table has no columns for parameter {name!r}")
        values = [pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float) for c in cols]
        out[name] = np.column_stack(values)
    return out
