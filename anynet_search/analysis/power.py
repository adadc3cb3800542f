"""Power of the package's own two-sample tests, by simulation from observed errors.

A verdict "cannot tell" says little unless the test could have told. `power` answers "how often would
this test reject its null if the truth were `effect`?" for the tests the analysis runs, at the sample
sizes it has, by resampling the errors actually observed (their skew and their ties: errors on a finite
validation set are multiples of 100 / n_val points):

- each simulated study draws a reference sample A of `n` errors and a comparison sample B of `n_other`
  (default `n`) errors, with replacement from `errors`, and shifts B by `effect` points (a location
  shift; negative = B has lower errors, i.e. is better);
- it runs the test on (B, A) at one-sided level `alpha` with `n_perm` permutations, exactly as the
  analysis runs it, and power is the fraction of the `sims` studies that reject. Its Monte-Carlo
  standard error is sqrt(power (1 - power) / sims).

Tests (`TESTS`), each about B against A:

- `noninferiority`: H0 mean(B) - mean(A) >= margin (studentized permutation test, `shift_tests`);
  rejecting it shows "no loss of `margin` points or more". Its power at `effect` = 0 is the chance to
  show "no loss" when nothing changed.
- `superiority`: H0 mean(B) - mean(A) >= 0 (the same test at margin 0); rejecting it shows "B better".
- `equivalence`: both H0 mean(B) - mean(A) >= margin and <= -margin rejected (two one-sided tests).
- `ks`: the one-sided permutation KS test (`ks_tests`, alternative 'greater'): H0 "B's EDF lies nowhere
  above A's".

Under Holm's correction over k tests, the first (smallest) p-value is compared with alpha / k: pass
`alpha / k` for the power of a step that must survive the whole family.

`keep_power` is the power of `derive_constraints`' "not worse" keep (a constraint judged inside one
study, subset against complement) and `verdict_power` gives it for every row of a verdict table.

`required_n` finds the sample size per group that reaches a target power (a normal approximation for
the mean tests, then checked and stepped by simulation). Samples are simulated in batches of studies,
each batch with its own permutations, so a power figure costs O(sims n_perm n) and takes seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from anynet_search.analysis._checks import as_errors, check_level, check_positive_int
from anynet_search.analysis.permutation import ks_tests, shift_tests

#: The tests whose power `power` simulates (see the module docstring).
TESTS: tuple[str, ...] = ("noninferiority", "superiority", "equivalence", "ks")
#: Simulated studies per batch (each batch draws its own permutations).
BATCH = 200


def default_n_perm(alpha: float) -> int:
    """Permutations that resolve a one-sided level alpha: at least 199, and 4 / alpha - 1 (a rejection
    then needs at most 3 permutations as extreme as the data, so the test is not coarser than its level)."""
    return max(199, math.ceil(4.0 / alpha) - 1)


def _rejects(x: np.ndarray, subset: np.ndarray, test: str, margin: float, alpha: float, n_perm: int,
             rng: np.random.Generator) -> np.ndarray:
    """Rejection of each simulated study (rows of x: B's errors where `subset`, A's elsewhere)."""
    if test == "ks":
        return ks_tests(x, subset, n_perm=n_perm, seed=rng, alternative="greater")[1] <= alpha
    tests = shift_tests(x, subset, n_perm=n_perm, seed=rng)
    coef = float(tests.coef_sum[0])  # the tested effect is coef * (mean(B) - mean(A))
    if test == "superiority":
        return tests.p_not_worse(0.0) <= alpha
    upper = tests.p_not_worse(margin * coef) <= alpha
    if test == "noninferiority":
        return upper
    return upper & (tests.p_not_better(-margin * coef) <= alpha)


def power(
    errors: ArrayLike,
    n: int,
    effect: float,
    *,
    test: str = "noninferiority",
    margin: float = 0.0,
    alpha: float = 0.025,
    sims: int = 1000,
    seed: int = 0,
    n_other: int | None = None,
    n_perm: int | None = None,
    common: int | None = None,
) -> float:
    """Fraction of `sims` simulated studies in which `test` rejects its null (see the module docstring).

    `errors`: observed errors to resample (points); `n`, `n_other`: sizes of the reference and the
    comparison sample; `effect`: true shift of the comparison sample (points, negative = better);
    `margin`: the non-inferiority / equivalence margin (points, >= 0); `alpha`: one-sided level;
    `n_perm`: permutations per test (default `default_n_perm(alpha)`); `common`: common random numbers for
    powers at several n (at most `common`): each simulated study's two samples are the first n and n_other of
    `common` draws, so that one seed gives nested studies at every n and the powers differ by n, not by luck.

    >>> errors = [0.69 * k for k in (1, 2, 2, 3, 4, 6, 8, 11)]
    >>> power(errors, 200, -3.0, test="superiority", sims=200) > 0.9
    True
    """
    e = as_errors(errors, "errors")
    if test not in TESTS:
        raise ValueError(f"test must be one of {TESTS}, got {test!r}")
    n = check_positive_int(n, "n")
    m_b = check_positive_int(n if n_other is None else n_other, "n_other")
    if n + m_b < 3:
        raise ValueError(f"power needs at least 3 models in the two groups, got n={n}, n_other={m_b}")
    alpha = check_level(alpha, "alpha")
    sims = check_positive_int(sims, "sims")
    if not (math.isfinite(effect) and math.isfinite(margin) and margin >= 0):
        raise ValueError(f"effect must be finite and margin finite and >= 0, got {effect!r}, {margin!r}")
    n_perm = default_n_perm(alpha) if n_perm is None else check_positive_int(n_perm, "n_perm")
    if common is not None and common < max(n, m_b):
        raise ValueError(f"common ({common}) must be at least n and n_other ({n}, {m_b})")
    rng = np.random.default_rng(seed)
    subset = np.arange(m_b + n) < m_b  # B first, then A
    hits = 0
    for done in range(0, sims, BATCH):
        b = min(BATCH, sims - done)
        if common is None:
            x = e[rng.integers(0, e.size, (b, m_b + n))]
        else:  # nested draws: the same stream position after them whatever n is
            draws = rng.integers(0, e.size, (b, 2, common))
            x = np.concatenate([e[draws[:, 0, :m_b]], e[draws[:, 1, :n]]], axis=1)
        x[:, subset] += effect
        hits += int(_rejects(x, subset, test, margin, alpha, n_perm, rng).sum())
    return hits / sims


def normal_n(errors: ArrayLike, effect: float, *, test: str = "noninferiority", margin: float = 0.0,
             alpha: float = 0.025, target: float = 0.8) -> float:
    """Models per group at which a z-test of the mean with the errors' sd reaches `target` power (no ceiling).

    inf when the effect lies on the wrong side of what the test can show (e.g. non-inferiority with
    effect >= margin). For `ks` it is the mean test's figure (the KS test has no closed form).
    """
    e = as_errors(errors, "errors")
    sd = float(np.std(e, ddof=1)) if e.size > 1 else 0.0
    distance = {"noninferiority": margin - effect, "superiority": -effect, "ks": -effect,
                "equivalence": margin - abs(effect)}[test]
    if distance <= 0 or sd == 0:
        return math.inf
    z_beta = stats.norm.ppf(target if test != "equivalence" else (1 + target) / 2)
    return 2.0 * (sd * (stats.norm.ppf(1 - alpha) + z_beta) / distance) ** 2


def required_n(
    errors: ArrayLike,
    effect: float,
    *,
    test: str = "noninferiority",
    margin: float = 0.0,
    alpha: float = 0.025,
    target: float = 0.8,
    sims: int = 400,
    seed: int = 0,
    n_max: int = 20_000,
    n_perm: int | None = None,
) -> tuple[int | None, float]:
    """(models per group, its simulated power): the first n on a 1.25x ladder whose power reaches `target`.

    The ladder starts at `normal_n` / 1.25^2 (at least 10) and climbs; (None, power at n_max) when even
    n_max falls short, and (None, nan) when the normal approximation says no n can.
    """
    start = normal_n(errors, effect, test=test, margin=margin, alpha=alpha, target=target)
    if not math.isfinite(start):
        return None, math.nan
    n = max(10, int(start / 1.25**2))
    while True:
        n = min(n, n_max)
        p = power(errors, n, effect, test=test, margin=margin, alpha=alpha, sims=sims, seed=seed, n_perm=n_perm)
        if p >= target:
            return n, p
        if n >= n_max:
            return None, p
        n = int(math.ceil(n * 1.25))


def keep_power(errors: ArrayLike, n_subset: int, n_eval: int, *, margin: float, alpha: float = 0.05,
               min_n: int = 10, sims: int = 200, seed: int = 0) -> float:
    """Chance that `derive_constraints` keeps a constraint as "not worse" when it changes nothing.

    Its test: H0 "the constraint worsens the space's mean error by `margin` or more", the effect being
    (n_C / n_eval) (mean(S) - mean(C)), at one-sided level alpha / 2, on `n_subset` satisfying models
    against n_eval - n_subset violating ones. 0 when fewer than `min_n` satisfy it (the verdict is then
    'neutral' whatever the test says); nan when every model satisfies it (nothing to compare with).
    Complexity strata are not simulated (a plain two-sample test on resampled errors).
    """
    n_c = int(n_eval) - int(n_subset)
    if n_c <= 0:
        return math.nan
    if n_subset < min_n:
        return 0.0
    return power(errors, n_c, 0.0, test="noninferiority", margin=margin * n_eval / n_c, alpha=alpha / 2,
                 sims=sims, seed=seed, n_other=int(n_subset))


def verdict_power(table: pd.DataFrame, errors: ArrayLike, *, sims: int = 200, seed: int = 0) -> np.ndarray:
    """`keep_power` for each row of a `derive_constraints` table (its alpha, margin and min_n from `.attrs`).

    nan where the row has no test of the effect (nothing to compare with, or no model satisfies it).
    """
    alpha = float(table.attrs.get("alpha", 0.05))
    margin = float(table.attrs.get("margin", 0.5))
    min_n = int(table.attrs.get("min_n", 10))
    out = np.full(len(table), np.nan)
    for i, (n, n_eval, p) in enumerate(zip(table["n"], table["n_eval"], table["p_not_worse"])):
        if np.isfinite(p) or n < min_n:
            out[i] = keep_power(errors, int(n), int(n_eval), margin=margin, alpha=alpha, min_n=min_n, sims=sims,
                                seed=seed)
    return out
