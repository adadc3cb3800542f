"""Derive design-space constraints from one randomly sampled study (the AnyNetX A -> E method).

A random sample conditioned on a constraint is a random sample of the constrained space, so each
candidate is judged by comparing the error EDF of the models that satisfy it with the EDF of all of
them. Per candidate:

- `n`, `n_eval`, `fraction`: models satisfying it, models it was evaluated on, and their ratio.
- `ks_stat`: KS distance between the satisfying subset's EDF and the whole sample's EDF.
- `p_value`: KS test of subset versus *complement* (two independent samples; "subset EDF = whole EDF"
  holds exactly when "subset EDF = complement EDF", and subset-versus-whole would be an invalid test of
  overlapping samples). `p_adjusted`: Holm's correction over all candidates of the call, since a dozen
  or more candidates are tested at once.
- `mean_diff` (with a percentile-bootstrap interval `mean_diff_lo`/`mean_diff_hi` at level 1 - alpha,
  resampling the models) and `median_diff`: subset minus whole, so negative means the constraint helps.
- `log10_shrink`: log10(size of the space / size of the constrained space), from `shrink` when the
  caller knows it exactly, else estimated as -log10(fraction) (`shrink_source` says which).

Verdict (`constraint_verdict`), in this order:

1. `neutral` when fewer than `min_n` models satisfy it (too few to judge);
2. `keep` when significantly better: p_adjusted < alpha and mean_diff_hi < 0;
3. `reject` when significantly worse: p_adjusted < alpha and mean_diff_lo > 0 (however much it shrinks);
4. `keep` when not worse and it shrinks the space: mean_diff_hi < `tolerance` (the interval rules out a
   worsening of the mean error by `tolerance` percentage points or more) and log10_shrink > 0. This is
   the paper's rule "keep a constraint that shrinks the space without making its EDF worse", written
   as a non-inferiority test so that a small, noisy sample does not count as "not worse";
5. `neutral` otherwise (inconclusive, or no worse but it does not shrink the space).

Candidates: `shared_b`, `shared_g`, `increasing_widths`, `increasing_depths`, `good_range:<param>` for
every d*/w*/b*/g* column, and `fit_error<=qNN` (fit error at most its NN-th percentile) when a
`fit_error` column exists. A good range is derived from a random half of the models and tested on the
other half (`holdout=True`), because testing it on the models it was derived from would favor it.

With `bins`, every EDF is complexity-normalized (`normalized_weights` of `complexity`, the bins
spanning the whole sample's range); the subset is re-weighted on its own so that both EDFs have the
same, flat complexity distribution. The bootstrap then resamples models uniformly and recomputes
weighted means with those fixed weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from anynet_search.analysis._checks import check_level, check_positive_int, error_column, numeric_column
from anynet_search.analysis.bootstrap import resample_counts
from anynet_search.analysis.columns import param_columns, stage_columns, stage_count
from anynet_search.analysis.compare import compare_edfs, weighted_ks
from anynet_search.analysis.edf import weighted_mean, weighted_median
from anynet_search.analysis.ranges import good_ranges
from anynet_search.analysis.samplers import require_unbiased_samples
from anynet_search.analysis.weights import complexity_bins, weights_from_bins

KEEP, NEUTRAL, REJECT = "keep", "neutral", "reject"
VERDICTS: tuple[str, ...] = (KEEP, NEUTRAL, REJECT)

COLUMNS: tuple[str, ...] = (
    "constraint",
    "verdict",
    "n",
    "n_eval",
    "fraction",
    "ks_stat",
    "p_value",
    "p_adjusted",
    "mean_diff",
    "mean_diff_lo",
    "mean_diff_hi",
    "median_diff",
    "log10_shrink",
    "shrink_source",
    "detail",
    "note",
)


@dataclass(frozen=True)
class Candidate:
    """A candidate constraint: which rows satisfy it and on which rows it is evaluated."""

    name: str
    satisfied: np.ndarray
    evaluated: np.ndarray
    detail: str
    note: str = ""


def _all_equal(x: np.ndarray) -> np.ndarray:
    return np.isclose(x, x[:, :1], rtol=1e-9, atol=0.0).all(axis=1)


def _non_decreasing(x: np.ndarray) -> np.ndarray:
    return (np.diff(x, axis=1) >= 0).all(axis=1)


def candidate_constraints(
    df: pd.DataFrame,
    fit_quantiles: Sequence[float] = (0.25, 0.5),
    holdout: bool = True,
    seed: int = 0,
) -> list[Candidate]:
    """The candidate constraints that the frame's columns allow (see the module docstring)."""
    what = "derive_constraints"
    m = len(df)
    everyone = np.ones(m, dtype=bool)
    n_stages = stage_count(df)
    out: list[Candidate] = []
    structural = [
        ("shared_b", "b", _all_equal, "b1 = ... = b{n}"),
        ("shared_g", "g", _all_equal, "g1 = ... = g{n}"),
        ("increasing_widths", "w", _non_decreasing, "w1 <= ... <= w{n}"),
        ("increasing_depths", "d", _non_decreasing, "d1 <= ... <= d{n}"),
    ]
    if n_stages >= 2:
        for name, family, test, detail in structural:
            cols = stage_columns(df, family)
            if cols:
                x = np.column_stack([numeric_column(df, c, what) for c in cols])
                out.append(Candidate(name, test(x), everyone, detail.format(n=n_stages)))
    params = param_columns(df)
    if params:
        if holdout and m >= 2:
            perm = np.random.default_rng(seed).permutation(m)
            derive = np.zeros(m, dtype=bool)
            derive[perm[: m // 2]] = True
            evaluated, note = ~derive, "range from a random half of the models, tested on the other half"
        else:
            derive, evaluated, note = everyone, everyone, "range derived from the same models it is tested on"
        ranges = good_ranges(df.loc[derive], params)
        for r in ranges.itertuples(index=False):
            values = numeric_column(df, r.param, what)
            sat = (values >= r.lo) & (values <= r.hi)
            out.append(
                Candidate(f"good_range:{r.param}", sat, evaluated, f"{r.lo:g} <= {r.param} <= {r.hi:g}", note)
            )
    if "fit_error" in df.columns:
        fit = pd.to_numeric(df["fit_error"], errors="coerce").to_numpy(dtype=float)
        known = np.isfinite(fit)
        if known.any():
            missing = (
                ""
                if known.all()
                else f"{int((~known).sum())} models without a fit error count as violating it"
            )
            for q in fit_quantiles:
                if not 0.0 < q < 1.0:
                    raise ValueError(f"fit_quantiles must lie in (0, 1), got {q}")
                t = float(np.quantile(fit[known], q))
                sat = known & (np.nan_to_num(fit, nan=np.inf) <= t)
                name = f"fit_error<=q{round(100 * q):02d}"
                out.append(Candidate(name, sat, everyone, f"fit_error <= {t:.4g}", missing))
    return out


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (NaN entries are left out of the family and stay NaN)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size:
        order = ok[np.argsort(p[ok], kind="stable")]
        k = ok.size
        adj = np.maximum.accumulate(p[order] * (k - np.arange(k)))
        out[order] = np.minimum(adj, 1.0)
    return out


def constraint_verdict(
    n: int,
    p_adjusted: float,
    mean_diff_lo: float,
    mean_diff_hi: float,
    log10_shrink: float,
    alpha: float = 0.05,
    tolerance: float = 0.5,
    min_n: int = 10,
) -> tuple[str, str]:
    """Verdict ('keep'/'neutral'/'reject') and its reason for one constraint (rule in the module docstring)."""
    if n < min_n:
        return NEUTRAL, f"too few models satisfy it ({n} < {min_n}) to judge"
    if not (np.isfinite(mean_diff_lo) and np.isfinite(mean_diff_hi)):
        return NEUTRAL, "no confidence interval for the effect"
    significant = np.isfinite(p_adjusted) and p_adjusted < alpha
    ci = f"mean diff CI [{mean_diff_lo:+.3g}, {mean_diff_hi:+.3g}]"
    if significant and mean_diff_hi < 0:
        return KEEP, f"significantly better ({ci})"
    if significant and mean_diff_lo > 0:
        return REJECT, f"significantly worse ({ci})"
    if mean_diff_hi < tolerance:
        if log10_shrink > 0:
            return KEEP, f"not worse ({ci} < +{tolerance:g}) and shrinks the space 10^{log10_shrink:.2f}x"
        return NEUTRAL, f"not worse ({ci}) but does not shrink the space"
    return NEUTRAL, f"inconclusive: a worsening up to {mean_diff_hi:+.3g} is not ruled out"


def _present_bin_weights(bin_index: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Bin-equalizing weights on `mask` over the bins it occupies (used for the complement in the test)."""
    idx = np.where(mask, bin_index, -1)
    inside = idx >= 0
    counts = np.bincount(idx[inside], minlength=max(int(bin_index.max()) + 1, 1))
    w = np.zeros(idx.size)
    w[inside] = 1.0 / (np.count_nonzero(counts) * counts[idx[inside]])
    return w


def _check_shrink(shrink: Mapping[str, float] | None, names: Sequence[str]) -> dict[str, float]:
    if shrink is None:
        return {}
    unknown = sorted(set(shrink) - set(names))
    if unknown:
        raise ValueError(f"shrink names unknown constraint(s) {unknown}; candidates are {list(names)}")
    out = {}
    for name, value in shrink.items():
        v = float(value)
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"shrink[{name!r}] must be a finite log10 shrink factor >= 0, got {value!r}")
        out[name] = v
    return out


def derive_constraints(
    df: pd.DataFrame,
    shrink: Mapping[str, float] | None = None,
    force: bool = False,
    bins: int | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    *,
    tolerance: float = 0.5,
    min_n: int = 10,
    complexity: str = "flops",
    holdout: bool = True,
    fit_quantiles: Sequence[float] = (0.25, 0.5),
) -> pd.DataFrame:
    """Judge candidate constraints on a randomly sampled study; one row each, keeps first (best effect first).

    `shrink` maps a constraint name to its exact log10 shrink factor (known from the design space);
    `bins` turns on complexity normalization over the `complexity` column. Refuses samples from adaptive
    samplers unless `force` (then warns and stores the warning in `.attrs["warning"]`). The columns and
    the verdict rule are described in this module's docstring.
    """
    what = "derive_constraints"
    errors = error_column(df, what)
    if "space" in df.columns and df["space"].nunique(dropna=False) > 1:
        spaces = sorted(map(str, df["space"].unique()))
        raise ValueError(f"{what}: the frame mixes design spaces {spaces}; analyze one space at a time")
    warning = require_unbiased_samples(df, force=force, stacklevel=2)
    n_boot = check_positive_int(n_boot, "n_boot")
    alpha = check_level(alpha, "alpha")
    min_n = check_positive_int(min_n, "min_n")
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite number >= 0 (percentage points), got {tolerance!r}")
    candidates = candidate_constraints(df, fit_quantiles=fit_quantiles, holdout=holdout, seed=seed)
    if not candidates:
        raise ValueError(f"{what}: no candidate constraints (needs per-stage columns d*, w*, b*, g*)")
    exact = _check_shrink(shrink, [c.name for c in candidates])
    bin_index, edges = None, None
    if bins is not None:
        bins = check_positive_int(bins, "bins")
        bin_index, edges = complexity_bins(numeric_column(df, complexity, what), bins)

    m, n_cand = errors.size, len(candidates)
    rows: list[dict] = []
    # Per-candidate weight vectors of the subset and of the evaluated set (zero outside) for the bootstrap.
    w_sub = np.zeros((m, n_cand))
    w_all = np.zeros((m, n_cand))
    usable = np.zeros(n_cand, dtype=bool)
    tested = np.zeros(n_cand, dtype=bool)  # has a non-empty complement, so belongs to the Holm family
    for j, cand in enumerate(candidates):
        sub = cand.satisfied & cand.evaluated
        comp = cand.evaluated & ~cand.satisfied
        n, n_eval = int(sub.sum()), int(cand.evaluated.sum())
        fraction = n / n_eval
        if cand.name in exact:
            log10_shrink, source = exact[cand.name], "exact"
        else:
            log10_shrink = float(-np.log10(fraction)) + 0.0 if n else float("inf")  # + 0.0: no "-0.0"
            source = "estimated"
        row = {
            "constraint": cand.name,
            "n": n,
            "n_eval": n_eval,
            "fraction": fraction,
            "ks_stat": np.nan,
            "p_value": np.nan,
            "mean_diff": np.nan,
            "median_diff": np.nan,
            "log10_shrink": log10_shrink,
            "shrink_source": source,
            "detail": cand.detail,
            "note": cand.note,
        }
        rows.append(row)
        if n == 0:
            continue
        if bin_index is None:
            ws, wa, wc = sub.astype(float), cand.evaluated.astype(float), comp.astype(float)
        else:
            try:
                ws = weights_from_bins(np.where(sub, bin_index, -1), bins, edges)
                wa = weights_from_bins(np.where(cand.evaluated, bin_index, -1), bins, edges)
            except ValueError as exc:
                row["note"] = "; ".join(filter(None, [cand.note, f"cannot normalize: {exc}"]))
                continue
            wc = _present_bin_weights(bin_index, comp) if comp.any() else comp.astype(float)
        d, _, _, _ = weighted_ks(errors[sub], errors[cand.evaluated], ws[sub], wa[cand.evaluated])
        row["ks_stat"] = d
        if comp.any():
            weighted = bin_index is not None
            res = compare_edfs(
                errors[sub], errors[comp], ws[sub] if weighted else None, wc[comp] if weighted else None
            )
            row["p_value"], tested[j] = res.p_value, True
        else:
            row["p_value"] = 1.0
            row["note"] = "; ".join(filter(None, [row["note"], "every evaluated model satisfies it"]))
        row["mean_diff"] = weighted_mean(errors[sub], ws[sub]) - weighted_mean(
            errors[cand.evaluated], wa[cand.evaluated]
        )
        row["median_diff"] = weighted_median(errors[sub], ws[sub]) - weighted_median(
            errors[cand.evaluated], wa[cand.evaluated]
        )
        w_sub[:, j], w_all[:, j], usable[j] = ws, wa, True

    lo, hi = _bootstrap_mean_diff(errors, w_sub, w_all, n_boot, alpha, seed)
    lo[~usable], hi[~usable] = np.nan, np.nan
    p_adj = holm(np.where(tested, [r["p_value"] for r in rows], np.nan))
    p_adj[~tested] = [r["p_value"] for r, t in zip(rows, tested) if not t]
    for j, row in enumerate(rows):
        row["mean_diff_lo"], row["mean_diff_hi"], row["p_adjusted"] = lo[j], hi[j], p_adj[j]
        verdict, reason = constraint_verdict(
            row["n"], p_adj[j], lo[j], hi[j], row["log10_shrink"], alpha, tolerance, min_n
        )
        row["verdict"] = verdict
        row["note"] = "; ".join(filter(None, [reason, row["note"]]))
    out = pd.DataFrame(rows, columns=list(COLUMNS))
    rank = out["verdict"].map({v: i for i, v in enumerate(VERDICTS)})
    out = (
        out.assign(_rank=rank, _shrink=-out["log10_shrink"])
        .sort_values(["_rank", "mean_diff", "_shrink", "constraint"], na_position="last", kind="stable")
        .drop(columns=["_rank", "_shrink"])
        .reset_index(drop=True)
    )
    out.attrs["alpha"], out.attrs["tolerance"], out.attrs["min_n"] = alpha, float(tolerance), min_n
    if warning:
        out.attrs["warning"] = warning
    return out


def _bootstrap_mean_diff(
    errors: np.ndarray, w_sub: np.ndarray, w_all: np.ndarray, n_boot: int, alpha: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval (level 1 - alpha) of weighted-mean(subset) - weighted-mean(all), every candidate at once.

    Each resample draws the models uniformly with replacement; with counts k_i, a weighted mean is
    sum k_i w_i e_i / sum k_i w_i, so all candidates reduce to one matrix product per chunk of resamples.
    """
    m, n_cand = w_sub.shape
    stacked = np.hstack([w_sub * errors[:, None], w_sub, w_all * errors[:, None], w_all])
    rng = np.random.default_rng(seed)
    diffs = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for counts in resample_counts(rng, m, m, n_boot):
            s = counts @ stacked
            diffs.append(
                s[:, :n_cand] / s[:, n_cand : 2 * n_cand] - s[:, 2 * n_cand : 3 * n_cand] / s[:, 3 * n_cand :]
            )
    boot = np.concatenate(diffs)
    lo = np.full(n_cand, np.nan)
    hi = np.full(n_cand, np.nan)
    for j in range(n_cand):
        col = boot[:, j]
        col = col[np.isfinite(col)]
        if col.size:
            lo[j], hi[j] = np.quantile(col, [alpha / 2, 1 - alpha / 2])
    return lo, hi
