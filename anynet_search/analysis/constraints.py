"""Derive design-space constraints from one randomly sampled study (the AnyNetX A -> E method).

A random sample conditioned on a constraint is a random sample of the constrained space, so each
candidate is judged by the models that satisfy it (the subset S) against those that do not (its
complement C): two disjoint samples, so the tests keep their size however few models a constraint
excludes. Per candidate:

- `n`, `n_eval`, `fraction`: models satisfying it, models it was evaluated on, and their ratio.
- `ks_stat`: KS distance between the subset's EDF and the EDF of every evaluated model.
- `p_value`: KS test of subset versus complement: a permutation test (within complexity bins with
  `bins`), exact with tied errors, where `ks_2samp` is conservative (errors on a finite validation set
  tie). `p_adjusted`: Holm's correction over all candidates of the call.
- `mean_diff`: the constraint's effect on the mean error of the space, mean(S) - mean(S + C), which
  equals (n_C / n) (mean(S) - mean(C)); negative means the constraint helps. `mean_diff_lo`/`_hi`: its
  1 - alpha interval from inverted permutation tests (`permutation.shift_tests`: exact under a location
  shift, studentized so that unequal spreads keep the size in large samples). `median_diff`: subset
  minus all.
- `margin`: the non-inferiority margin in error points (an option: absolute points, or a fraction of
  the standard deviation of the study's errors). `p_not_worse`: p-value of "the constraint worsens the
  mean error by `margin` or more" (the same permutation test; one-sided).
- `log10_shrink`: log10(size of the space / size of the constrained space), from `shrink` when the
  caller knows it exactly, else estimated as -log10(fraction) (`shrink_source` says which).
- `reason`: the verdict's reason in a few words; `note`: the full reason and any caveat.

Verdict (`constraint_verdict`), in this order:

1. `neutral` when fewer than `min_n` models satisfy it (too few to judge), or when every evaluated model
   satisfies it (nothing to compare it with: the space already enforces it, or the sample never violates it);
2. `keep` when significantly better: p_adjusted < alpha and mean_diff_hi < 0;
3. `reject` when significantly worse: p_adjusted < alpha and mean_diff_lo > 0 (however much it shrinks);
4. `keep` when not worse and it shrinks the space: p_not_worse <= alpha / 2 (a worsening of the mean
   error by `margin` points or more is rejected at one-sided level alpha / 2) and log10_shrink > 0. This
   is the paper's rule "keep a constraint that shrinks the space without making its EDF worse", written
   as a non-inferiority test so that a small, noisy sample does not count as "not worse". When the
   constraint shifts the errors, the false-keep rate at the margin is at most alpha / 2 per constraint at
   any sample size (tests/test_calibration.py); when it also changes their spread the test is only
   asymptotically exact (analysis/verdict_calibration.md measures both, and the power). Candidates are
   not corrected for multiplicity here: each keep is calibrated on its own;
5. `neutral` otherwise (inconclusive, or no worse but it does not shrink the space).

Candidates: `shared_b`, `shared_g`, `increasing_widths`, `increasing_depths`, `good_range:<param>` for
every parameter, and `fit_error<=qNN` (fit error at most its NN-th percentile) when a `fit_error` column
exists. Structural constraints and ranges are judged on the *sampled* values (`sampled_*` columns, what
a space's constraints bind) when the frame has them, else on the built config's d/w/b/g (which the
compatibility rule may have shifted). A range is a pair of values of the sampled grid, derived from a
random half of the models and tested on the other half (`holdout=True`), because testing it on the
models it was derived from would favor it.

With `bins`, every comparison is complexity-normalized over the `complexity` column's bins (spanning
the whole sample's range): means and EDFs give each bin the same mass, and permutations swap models
only within a bin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from anynet_search.analysis._checks import check_level, check_positive_int, error_column, numeric_column
from anynet_search.analysis.columns import STAGE_FAMILIES, sampled_columns, stage_columns, stage_count
from anynet_search.analysis.compare import ks_distance
from anynet_search.analysis.edf import weighted_mean, weighted_median
from anynet_search.analysis.permutation import ShiftTests, ks_test, shift_tests, stratified_permutations
from anynet_search.analysis.ranges import good_ranges
from anynet_search.analysis.samplers import require_unbiased_samples
from anynet_search.analysis.weights import complexity_bins, weights_from_bins
from anynet_search.choices import MARGIN_UNITS
from anynet_search.errors import InputError
from anynet_search.spaces.constraints import STRUCTURAL, Constraint, FitErrorAtMost, Range

KEEP, NEUTRAL, REJECT = "keep", "neutral", "reject"
VERDICTS: tuple[str, ...] = (KEEP, NEUTRAL, REJECT)
#: Units of the non-inferiority margin: error points, or standard deviations of the study's errors.

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
    "margin",
    "p_not_worse",
    "median_diff",
    "log10_shrink",
    "shrink_source",
    "detail",
    "reason",
    "note",
)


@dataclass(frozen=True)
class Candidate:
    """A candidate constraint: which rows satisfy it, on which rows it is evaluated, and the rule itself."""

    name: str
    satisfied: np.ndarray
    evaluated: np.ndarray
    detail: str
    note: str = ""
    rule: Constraint | None = None  # its mask, exact count and space-file form


def _family_values(df: pd.DataFrame, family: str, what: str) -> tuple[np.ndarray | None, bool, str]:
    """(values (m, stages or 1), shared by the space?, note) of one family, sampled values preferred."""
    cols = sampled_columns(df, family)
    if cols:
        return np.column_stack([numeric_column(df, c, what) for c in cols]), len(cols) == 1, ""
    cols = stage_columns(df, family)
    if not cols:
        return None, False, ""
    note = "judged on the built config (no sampled values recorded)" if family in ("w", "g") else ""
    return np.column_stack([numeric_column(df, c, what) for c in cols]), False, note


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
    found = {f: _family_values(df, f, what) for f in STAGE_FAMILIES}
    values = {f: x for f, (x, _, _) in found.items() if x is not None}
    out: list[Candidate] = []
    if n_stages >= 2:
        for rule in STRUCTURAL.values():
            family = rule.params[0]
            x, shared, note = found[family]
            if x is not None:
                note = f"the space samples one {family} for every stage" if shared else note
                sat = rule.holds(values)
                out.append(Candidate(rule.name, sat, everyone, rule.describe(n_stages), note, rule))
    # one parameter per sampled column: g1..gN, or g when the space shares it
    params = {}
    for family in STAGE_FAMILIES:
        x, shared, note = found[family]
        if x is not None:
            names = [family] if shared else [f"{family}{i + 1}" for i in range(x.shape[1])]
            params.update({name: (x[:, i], note) for i, name in enumerate(names)})
    if params:
        if holdout and m >= 2:
            perm = np.random.default_rng(seed).permutation(m)
            derive = np.zeros(m, dtype=bool)
            derive[perm[: m // 2]] = True
            evaluated, split = ~derive, "range from a random half of the models, tested on the other half"
        else:
            derive, evaluated, split = everyone, everyone, "range derived from the same models it is tested on"
        frame = pd.DataFrame({"error": error_column(df, what), **{k: v for k, (v, _) in params.items()}})
        ranges = good_ranges(frame.loc[derive], list(params))
        for r in ranges.itertuples(index=False):
            rule = Range(str(r.param), float(r.lo), float(r.hi))
            notes = "; ".join(filter(None, [split, params[r.param][1]]))
            sat = rule.holds(values)
            out.append(Candidate(rule.name, sat, evaluated, rule.describe(n_stages), notes, rule))
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
                rule = FitErrorAtMost(float(np.quantile(fit[known], q)), q)
                sat = rule.holds({"fit_error": fit})
                out.append(Candidate(rule.name, sat, everyone, rule.describe(n_stages), missing, rule))
    return out


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (`statsmodels.stats.multitest.multipletests`, method "holm"); NaN entries
    are left out of the family and stay NaN."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def constraint_verdict(
    n: int,
    n_excluded: int,
    p_adjusted: float,
    mean_diff_lo: float,
    mean_diff_hi: float,
    p_not_worse: float,
    log10_shrink: float,
    alpha: float = 0.05,
    margin: float = 0.5,
    min_n: int = 10,
) -> tuple[str, str]:
    """Verdict ('keep'/'neutral'/'reject') and its reason for one constraint (rule in the module docstring)."""
    verdict, _, reason = judge(n, n_excluded, p_adjusted, mean_diff_lo, mean_diff_hi, p_not_worse,
                               log10_shrink, alpha, margin, min_n)
    return verdict, reason


def judge(
    n: int,
    n_excluded: int,
    p_adjusted: float,
    mean_diff_lo: float,
    mean_diff_hi: float,
    p_not_worse: float,
    log10_shrink: float,
    alpha: float = 0.05,
    margin: float = 0.5,
    min_n: int = 10,
) -> tuple[str, str, str]:
    """`constraint_verdict` with a short reason too: (verdict, short reason, full reason)."""
    if n < min_n:
        return (NEUTRAL, f"too few models ({n} < {min_n})",
                f"too few models satisfy it ({n} < {min_n}) to judge")
    if n_excluded == 0:
        return (NEUTRAL, "no model violates it",
                "every evaluated model satisfies it: no excluded models to compare with")
    if not np.isfinite(p_not_worse):
        return NEUTRAL, "no test of the effect", "no test of the effect"
    significant = np.isfinite(p_adjusted) and p_adjusted < alpha
    ci = (f"mean diff {100 * (1 - alpha):g}% interval [{mean_diff_lo:+.3g}, {mean_diff_hi:+.3g}]"
          if np.isfinite(mean_diff_lo) and np.isfinite(mean_diff_hi)
          else f"mean diff {100 * (1 - alpha):g}% interval unbounded (too few models on one side to bound it)")
    if significant and mean_diff_hi < 0:
        return KEEP, f"significantly better (p_adj {p_adjusted:.2g})", f"significantly better ({ci})"
    if significant and mean_diff_lo > 0:
        return REJECT, f"significantly worse (p_adj {p_adjusted:.2g})", f"significantly worse ({ci})"
    test = f"a worsening by +{margin:.3g} points or more is rejected (p = {p_not_worse:.3g} <= {alpha / 2:g}; {ci})"
    if p_not_worse <= alpha / 2:
        if log10_shrink > 0:
            return (KEEP, f"not worse (p {p_not_worse:.2g}) and shrinks the space",
                    f"not worse: {test}; shrinks the space 10^{log10_shrink:.2f}x")
        return (NEUTRAL, f"not worse (p {p_not_worse:.2g}) but does not shrink the space",
                f"not worse: {test}; but does not shrink the space")
    return NEUTRAL, f"inconclusive: +{margin:.3g} points not ruled out (p {p_not_worse:.2g})", (
        f"inconclusive: a worsening by +{margin:.3g} points is not ruled out "
        f"(p = {p_not_worse:.3g} > {alpha / 2:g}; {ci})")


def resolve_margin(errors: np.ndarray, margin: float, unit: str = "points") -> tuple[float, str]:
    """(margin in error points, its description): `unit` 'points' as given, 'sd' times the errors' std."""
    if unit not in MARGIN_UNITS:
        raise InputError(f"margin unit must be one of {', '.join(MARGIN_UNITS)}, got {unit!r}")
    value = float(margin)
    if not (np.isfinite(value) and value >= 0):
        raise InputError(f"margin must be a finite number >= 0, got {margin!r}")
    if unit == "points":
        return value, f"+{value:g} points"
    sd = float(np.std(errors, ddof=1)) if errors.size > 1 else 0.0
    return value * sd, f"+{value:g} x the errors' standard deviation {sd:.3g} = +{value * sd:.3g} points"


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
    n_perm: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    *,
    margin: float = 0.5,
    margin_unit: str = "points",
    min_n: int = 10,
    complexity: str = "flops",
    holdout: bool = True,
    fit_quantiles: Sequence[float] = (0.25, 0.5),
) -> pd.DataFrame:
    """Judge candidate constraints on a randomly sampled study; one row each, keeps first (best effect first).

    `shrink` maps a constraint name to its exact log10 shrink factor (known from the design space);
    `bins` turns on complexity normalization over the `complexity` column; `margin` (in `margin_unit`:
    'points', or 'sd' for a fraction of the errors' standard deviation) is the worsening that "not
    worse" must rule out; `n_perm` permutations per test. Refuses samples from adaptive samplers unless
    `force` (then warns and stores the warning in `.attrs["warning"]`). The columns and the verdict
    rule are described in this module's docstring; `.attrs` holds alpha, margin (points), margin_spec,
    min_n and `rules` (constraint name -> its `anynet_search.spaces.constraints` object, which
    `anynet_search.spaces.derive.derive_space` adds to a space).

    >>> from anynet_search.analysis.synthetic import synthetic_results
    >>> table = derive_constraints(synthetic_results(200), n_perm=200)
    >>> table.attrs["margin_spec"]
    '+0.5 points'
    """
    what = "derive_constraints"
    errors = error_column(df, what)
    if "space" in df.columns and df["space"].nunique(dropna=False) > 1:
        spaces = sorted(map(str, df["space"].unique()))
        raise ValueError(f"{what}: the frame mixes design spaces {spaces}; analyze one space at a time")
    warning = require_unbiased_samples(df, force=force, stacklevel=2)
    n_perm = check_positive_int(n_perm, "n_perm")
    alpha = check_level(alpha, "alpha")
    min_n = check_positive_int(min_n, "min_n")
    margin_points, margin_spec = resolve_margin(errors, margin, margin_unit)
    candidates = candidate_constraints(df, fit_quantiles=fit_quantiles, holdout=holdout, seed=seed)
    if not candidates:
        raise ValueError(f"{what}: no candidate constraints (needs per-stage columns d*, w*, b*, g*)")
    exact = _check_shrink(shrink, [c.name for c in candidates])
    m = errors.size
    bin_index, edges, k = np.zeros(m, dtype=np.int64), None, 1
    if bins is not None:
        k = check_positive_int(bins, "bins")
        bin_index, edges = complexity_bins(numeric_column(df, complexity, what), k)

    rows: list[dict] = []
    tests: dict[int, tuple[np.ndarray, int]] = {}  # candidate -> (subset, its group of shared permutations)
    groups: dict[bytes, int] = {}
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
        row = {"constraint": cand.name, "n": n, "n_eval": n_eval, "fraction": fraction, "ks_stat": np.nan,
               "p_value": np.nan, "mean_diff": np.nan, "mean_diff_lo": np.nan, "mean_diff_hi": np.nan,
               "margin": margin_points, "p_not_worse": np.nan, "median_diff": np.nan,
               "log10_shrink": log10_shrink, "shrink_source": source, "detail": cand.detail, "note": cand.note}
        rows.append(row)
        if n == 0:
            continue
        ws = wa = None
        if bins is not None:
            try:
                ws = weights_from_bins(np.where(sub, bin_index, -1), k, edges)
                wa = weights_from_bins(np.where(cand.evaluated, bin_index, -1), k, edges)
            except ValueError as exc:
                row["note"] = "; ".join(filter(None, [cand.note, f"cannot normalize: {exc}"]))
                continue
            ws, wa = ws[sub], wa[cand.evaluated]
        row["ks_stat"] = ks_distance(errors[sub], errors[cand.evaluated], ws, wa)
        row["mean_diff"] = weighted_mean(errors[sub], ws) - weighted_mean(errors[cand.evaluated], wa)
        row["median_diff"] = weighted_median(errors[sub], ws) - weighted_median(errors[cand.evaluated], wa)
        if comp.any():
            key = cand.evaluated.tobytes()
            tests[j] = (sub, groups.setdefault(key, len(groups)))

    rng = np.random.default_rng([seed, 1])  # its own stream: the holdout split uses `seed` itself
    shifts: dict[int, ShiftTests] = {}
    for key, g in groups.items():
        evaluated = np.frombuffer(key, dtype=bool)
        strata = np.where(evaluated, bin_index, -1)
        perms = [p.astype(np.int32) for p in stratified_permutations(strata, n_perm, rng)]
        for j, (sub, group) in tests.items():
            if group != g:
                continue
            shifts[j] = shift_tests(errors, sub, strata, permutations=perms, n_strata=k)
            rows[j]["p_value"] = ks_test(errors, sub, strata, permutations=perms)[1]
    if shifts:  # every candidate's interval and non-inferiority test at once
        order = list(shifts)
        joint = ShiftTests.stack([shifts[j] for j in order])
        lo, hi = joint.interval(alpha)
        p_nw = joint.p_not_worse(margin_points)
        for i, j in enumerate(order):
            rows[j]["mean_diff"] = float(joint.estimate[i])  # the same number, from the complement's side
            rows[j]["mean_diff_lo"], rows[j]["mean_diff_hi"] = float(lo[i]), float(hi[i])
            rows[j]["p_not_worse"] = float(p_nw[i])

    tested = np.array([j in tests for j in range(len(rows))])
    p_adj = holm(np.where(tested, [r["p_value"] for r in rows], np.nan))
    for j, row in enumerate(rows):
        row["p_adjusted"] = p_adj[j]
        verdict, short, reason = judge(
            row["n"], row["n_eval"] - row["n"], p_adj[j], row["mean_diff_lo"], row["mean_diff_hi"],
            row["p_not_worse"], row["log10_shrink"], alpha, margin_points, min_n,
        )
        row["verdict"], row["reason"] = verdict, short
        row["note"] = "; ".join(filter(None, [reason, row["note"]]))
    out = pd.DataFrame(rows, columns=list(COLUMNS))
    rank = out["verdict"].map({v: i for i, v in enumerate(VERDICTS)})
    out = (
        out.assign(_rank=rank, _shrink=-out["log10_shrink"])
        .sort_values(["_rank", "mean_diff", "_shrink", "constraint"], na_position="last", kind="stable")
        .drop(columns=["_rank", "_shrink"])
        .reset_index(drop=True)
    )
    out.attrs.update(alpha=alpha, margin=margin_points, margin_spec=margin_spec, min_n=min_n, n_perm=n_perm,
                     rules={c.name: c.rule for c in candidates if c.rule is not None})
    if warning:
        out.attrs["warning"] = warning
    return out
