"""Paired comparisons of rank correlations: several studies of the same configs (budgets, retrainings) against one.

When the same configs are trained at several budgets (`run --configs-from`), the question "does 4 epochs rank the
models better than 2?" is paired: both correlations are measured on the same models, against the same reference
errors. Comparing their two separate confidence intervals ignores that pairing (and whether two intervals overlap
is no test of their difference). Here:

- `shared_errors`: the errors of the configs every study trained, one column per study, matched to the
  reference study (`fidelity.match_models`);
- `rho_against`: each study's Spearman rho against the reference, with BCa bootstrap intervals, all from the same
  resamples of the shared configs;
- `rho_differences`: rho(a) - rho(b) for chosen pairs of studies, each from the same resamples (a paired bootstrap
  over the configs), with its BCa interval and the two-sided p-value at which that interval would just reach 0
  (`bca_p_value`); the p-values are Holm-adjusted together, since they are read together.

A retrained copy of the reference (the same configs, budget and data, other training seeds: `run --repeat K`)
measures the noise ceiling: its rho against the reference is what retraining the expensive budget itself
reaches, the most a cheap budget can be asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from anynet_search.analysis._checks import check_level, check_positive_int
from anynet_search.analysis.constraints import holm
from anynet_search.analysis.fidelity import MIN_MATCHED, _bca, _spearman_rows, match_models


def shared_errors(frames: Mapping[str, pd.DataFrame], reference: str) -> pd.DataFrame:
    """One row per config trained in every study (matched to `reference` by config), one column of errors per
    study, in the reference's order; ValueError when the studies describe their configs differently."""
    if reference not in frames:
        raise ValueError(f"the reference study {reference!r} is not among {', '.join(frames)}")
    high = frames[reference]
    rows: pd.Index | None = None
    columns: dict[str, pd.Series] = {}
    for name, df in frames.items():
        if name == reference:
            continue
        pairs = match_models(df, high)
        series = pd.Series(pairs["error_low"].to_numpy(dtype=float), index=pairs["row_high"].to_numpy())
        columns[name] = series
        rows = series.index if rows is None else rows.intersection(series.index)
    if rows is None:  # the reference alone
        rows = pd.RangeIndex(len(high))
    rows = pd.Index(sorted(rows))
    out = pd.DataFrame({reference: pd.to_numeric(high["error"], errors="coerce").to_numpy(dtype=float)[rows]},
                       index=rows)
    for name, series in columns.items():
        out[name] = series.loc[rows].to_numpy(dtype=float)
    return out[list(frames)].reset_index(drop=True)


def _replicates(errors: pd.DataFrame, reference: str, n_boot: int, seed: int) -> dict[str, tuple]:
    """Per study: (rho against the reference, its bootstrap replicates, its jackknife replicates), all studies on
    the same resamples and the same leave-one-out sets (so that differences are paired)."""
    y = errors[reference].to_numpy(dtype=float)
    n = y.size
    idx = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    leave = np.broadcast_to(np.arange(n), (n, n))[~np.eye(n, dtype=bool)].reshape(n, n - 1)
    out = {}
    for name in errors.columns:
        if name == reference:
            continue
        x = errors[name].to_numpy(dtype=float)
        out[name] = (float(_spearman_rows(x[None], y[None])[0]), _spearman_rows(x[idx], y[idx]),
                     _spearman_rows(x[leave], y[leave]))
    return out


def _checked_replicates(errors: pd.DataFrame, reference: str, n_boot: int, seed: int, what: str) -> dict[str, tuple]:
    """`_replicates` after checking `n_boot` and that at least MIN_MATCHED configs were trained in every study."""
    n_boot = check_positive_int(n_boot, "n_boot")
    if len(errors) < MIN_MATCHED:
        raise ValueError(f"{what} need at least {MIN_MATCHED} configs trained in every study, got {len(errors)}")
    return _replicates(errors, reference, n_boot, seed)


def bca_p_value(estimate: float, boot: np.ndarray, jack: np.ndarray, null: float = 0.0) -> float:
    """Two-sided p-value of `null` that matches the BCa interval: the level 1 - p at which the BCa interval's
    nearer end reaches `null`. At least 2 / (resamples + 1) (its floor: no resample beyond the null)."""
    boot = boot[np.isfinite(boot)]
    jack = jack[np.isfinite(jack)]
    if boot.size < 10 or not np.isfinite(estimate):
        return float("nan")
    b = boot.size
    below = (np.sum(boot < estimate) + 0.5 * np.sum(boot == estimate)) / b
    z0 = stats.norm.ppf(np.clip(below, 1.0 / (b + 1), b / (b + 1)))
    d = jack.mean() - jack if jack.size > 2 else np.zeros(1)
    den = 6.0 * float(np.sum(d * d)) ** 1.5
    acc = float(np.sum(d**3)) / den if den > 0 else 0.0
    share = (np.sum(boot < null) + 0.5 * np.sum(boot == null)) / b  # where the null sits among the resamples
    w = stats.norm.ppf(np.clip(share, 1.0 / (b + 1), b / (b + 1))) - z0
    u = w / (1.0 + acc * w) if 1.0 + acc * w > 0 else np.sign(w) * np.inf
    tail = stats.norm.cdf(u - z0)  # the one-sided level at which the interval's end sits on the null
    return float(min(1.0, max(2.0 / (b + 1), 2.0 * min(tail, 1.0 - tail))))


def rho_against(errors: pd.DataFrame, reference: str, *, n_boot: int = 2000, level: float = 0.95,
                seed: int = 0) -> pd.DataFrame:
    """Spearman's rho of each study against `reference` on the shared configs (`shared_errors`), with BCa
    intervals; rows: the studies; columns `rho`, `lo`, `hi`, `n`."""
    level = check_level(level, "level")
    reps = _checked_replicates(errors, reference, n_boot, seed, "rank correlations")
    rows = [{"study": k, "rho": est, "lo": _bca(est, boot, jack, level)[0], "hi": _bca(est, boot, jack, level)[1],
             "n": len(errors)} for k, (est, boot, jack) in reps.items()]
    return pd.DataFrame(rows).set_index("study")


def rho_differences(errors: pd.DataFrame, reference: str, pairs: Sequence[tuple[str, str]], *, n_boot: int = 2000,
                    level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """rho(a) - rho(b) against `reference` for each (a, b) in `pairs`, paired over the shared configs.

    Columns: `a`, `b`, `rho_a`, `rho_b`, `diff`, `lo`, `hi` (BCa interval at `level`), `p` (two-sided,
    `bca_p_value`), `p_holm` (Holm over the pairs), `at_floor` (p at its resampling floor: 'p <= value'), `n`.
    """
    level = check_level(level, "level")
    reps = _checked_replicates(errors, reference, n_boot, seed, "paired differences")
    rows = []
    for a, b in pairs:
        (ea, ba, ja), (eb, bb, jb) = reps[a], reps[b]
        est, boot, jack = ea - eb, ba - bb, ja - jb
        lo, hi = _bca(est, boot, jack, level)
        p = bca_p_value(est, boot, jack)
        rows.append({"a": a, "b": b, "rho_a": ea, "rho_b": eb, "diff": est, "lo": lo, "hi": hi, "p": p,
                     "at_floor": bool(p <= 2.0 / (np.isfinite(boot).sum() + 1) + 1e-12), "n": len(errors)})
    table = pd.DataFrame(rows, columns=["a", "b", "rho_a", "rho_b", "diff", "lo", "hi", "p", "at_floor", "n"])
    p = table["p"].to_numpy(dtype=float)
    table["p_holm"] = holm(p) if len(table) > 1 else p  # one test: its own p (and no statsmodels call)
    table.attrs.update(n_boot=n_boot, level=level)
    return table
