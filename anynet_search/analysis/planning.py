"""Planning a comparison: how many models per design space does an effect of E error points need?

Built on `analysis.power` (the package's own tests, simulated by resampling observed errors). For each
effect E and test (`PLAN_TESTS`, each of a space B against a space A with n models each), `plan_n` finds the
smallest number of models per space at which the test's simulated power reaches the target power: it starts
from the normal approximation (`power.normal_n`), steps along the probit line Phi^-1(power) + z_alpha = k sqrt(n)
through cheaply simulated points (2-4 simulations), then brackets the target and bisects to 1% of n with the
same simulated studies at every n (common random numbers; min(sims, `SEARCH_SIMS`) of them), and confirms the n
found with `sims` studies, stepping up by 1% until their power reaches the target. The power it returns is that
simulated power, at or above the target, with a Monte-Carlo standard error of sqrt(p (1 - p) / sims)
(`REPORT_PERM`: with how many permutations per simulated test). The tests:

- `superiority`: B's errors are E points lower, and the one-sided permutation test of the mean finds B
  better. The same test at the same distance from its null is the "not worse by a margin of E" test by
  which `derive` keeps a constraint that changes nothing: its power and n are the same;
- `ks`: the same shift, and the one-sided permutation KS test (what `analyze` compares studies with) finds
  B's EDF above A's.

The errors resampled are a pilot study's (`pilot_errors`: raw, or with the complexity normalization the
analysis applies with `--bins`: each error moved along the within-bin slope of error on log flops, then
its bin's mean removed, so only the spread inside the bins is left, which is what a comparison within bins
sees), or normal errors of a given standard deviation (`normal_errors`) when there is no pilot.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from anynet_search.analysis._checks import as_errors, check_level, check_positive_int
from anynet_search.analysis.compare import complexity_adjusted
from anynet_search.analysis.power import normal_n, power
from anynet_search.analysis.weights import complexity_bins

#: (test, what its power is the chance of, with {e} the effect in points).
PLAN_TESTS: tuple[tuple[str, str], ...] = (
    ("superiority", "mean test: a space {e} points better is found better (and one that changes nothing is "
                    "shown not worse by {e})"),
    ("ks", "KS test: a space {e} points better is found better"),
)
#: Simulated studies per search step, by test (the KS test costs about 10x the mean test per study).
SEARCH_SIMS = {"superiority": 1000, "ks": 300}
#: The search stops when a step changes n by less than this fraction.
SEARCH_TOL = 0.05
#: The bisection stops when the bracket is narrower than this fraction of n (or one model).
BISECT_TOL = 0.01
#: First step of the bracket around the search's n (relative; doubled while it has not bracketed the target).
BRACKET_STEP = 0.05
#: Fewest models per space planned.
MIN_N = 5
#: Permutations per simulated test in the reported powers: the mean test as `derive` runs it (1000); the KS test
#: at `power.default_n_perm` (199 at alpha 0.025, 10x cheaper than analyze's 2000), which understates its power
#: a little (measured: 79.4% against 81.5% with 999 permutations, at 549 models per space, sd 5, shift 1).
REPORT_PERM = {"superiority": 999}
#: Standard-normal quantiles standing in for errors when only their spread is known.
NORMAL_POINTS = 4000


def normal_errors(sd: float, mean: float = 0.0, m: int = NORMAL_POINTS) -> np.ndarray:
    """m errors at the normal quantiles (i + 0.5) / m with this standard deviation (deterministic, no ties)."""
    sd = float(sd)
    if not (math.isfinite(sd) and sd > 0):
        raise ValueError(f"the spread (standard deviation) must be a positive number of points, got {sd!r}")
    return mean + sd * stats.norm.ppf((np.arange(m) + 0.5) / m)


def pilot_errors(df: pd.DataFrame, bins: int | None = None) -> np.ndarray:
    """A pilot study's validation errors; with `bins`, only their spread inside complexity bins (see above)."""
    errors = as_errors(pd.to_numeric(df["error"], errors="coerce"), "pilot errors")
    if bins is None:
        return errors
    bins = check_positive_int(bins, "bins")
    flops = pd.to_numeric(df["flops"], errors="coerce").to_numpy(dtype=float)
    strata = complexity_bins(flops, bins)[0]
    adjusted, _ = complexity_adjusted(errors, flops, strata)
    means = np.bincount(strata, weights=adjusted) / np.maximum(np.bincount(strata), 1)
    return adjusted - means[strata] + adjusted.mean()


def _probit_n(n: float, p: float, alpha: float, target: float) -> float:
    """The n at which the probit line through (n, p) reaches `target`: Phi^-1(p) + z_alpha = k sqrt(n)."""
    if p >= 0.995:
        return n / 2.0
    z_alpha = stats.norm.ppf(1 - alpha)
    k = (stats.norm.ppf(max(p, 0.005)) + z_alpha) / math.sqrt(n)
    if k <= 0:  # power at or below alpha: nothing to aim along; double
        return 2.0 * n
    return ((stats.norm.ppf(target) + z_alpha) / k) ** 2


def plan_n(errors: ArrayLike, effect: float, *, test: str = "superiority", alpha: float = 0.025,
           target: float = 0.8, sims: int = 1000, seed: int = 0, n_max: int = 20_000,
           start: float | None = None) -> tuple[int | None, float]:
    """(models per space, the power there from `sims` simulated studies) for a shift of `effect` points (> 0:
    the compared space is that much better) to be found by `test` with `target` power at one-sided `alpha`.

    The power returned is never below `target`: (None, power at n_max) when even n_max falls short. `start`: a
    first guess (default: `power.normal_n`). The search (`_search`) aims near the target along the probit line;
    then `_bisect` finds the smallest n, to `BISECT_TOL` of n, whose power reaches the target, every power from
    the same studies (common random numbers, `power(..., common=...)`), so that powers at neighbouring n differ
    by n and not by luck; `_confirm` simulates `sims` studies there and steps up by `BISECT_TOL` until that power
    reaches the target.
    """
    e = as_errors(errors, "errors")
    options = dict(test=test, alpha=alpha)
    guess = normal_n(e, -effect, target=target, **options) if start is None else float(start)
    if not math.isfinite(guess):
        return None, math.nan
    n = _search(e, effect, min(max(MIN_N, math.ceil(guess)), n_max), options, target, seed, n_max)
    found, _ = _bisect(e, effect, n, options, target, min(sims, SEARCH_SIMS.get(test, 400)), seed + 10, n_max)
    return _confirm(e, effect, found if found is not None else n_max, options, target, sims, seed + 20, n_max)


def _search(e: np.ndarray, effect: float, n: int, options: dict, target: float, seed: int, n_max: int) -> int:
    """Steps along the probit line Phi^-1(power) + z_alpha = k sqrt(n) with cheap powers (`SEARCH_SIMS`)."""
    for step in range(4):
        p = power(e, n, -effect, sims=SEARCH_SIMS.get(options["test"], 400), seed=seed + step, **options)
        new = min(max(MIN_N, math.ceil(_probit_n(n, p, options["alpha"], target))), n_max)
        done = abs(new - n) <= SEARCH_TOL * n
        n = new
        if done:
            break
    return n


def _confirm(e: np.ndarray, effect: float, n: int, options: dict, target: float, sims: int, seed: int,
             n_max: int) -> tuple[int | None, float]:
    """(n, its power from `sims` common studies): the bisection's n, stepped up by `BISECT_TOL` while that power
    falls short of `target`; (None, power at n_max) when n_max does."""
    width = min(n_max, 2 * n)
    while True:
        p = power(e, n, -effect, sims=sims, seed=seed, n_perm=REPORT_PERM.get(options["test"]), common=width,
                  **options)
        if p >= target:
            return n, p
        if n >= n_max:
            return None, p
        n = min(n_max, max(n + 1, math.ceil(n * (1 + BISECT_TOL))))
        width = max(width, min(n_max, n))


def _bisect(e: np.ndarray, effect: float, n: int, options: dict, target: float, sims: int, seed: int,
            n_max: int) -> tuple[int | None, float]:
    """The smallest n (to `BISECT_TOL`) in [MIN_N, n_max] whose power from `sims` common studies reaches `target`,
    starting at `n`; (None, power at n_max) when n_max falls short."""
    cache: dict[int, float] = {}
    width = [min(n_max, 2 * n)]  # the common draws per study: a prefix of them at every n (widened when passed)

    def at(k: int) -> float:
        if k > width[0]:
            width[0] = min(n_max, 2 * k)
            cache.clear()  # other draws now: the powers so far are not from the same studies
        if k not in cache:
            cache[k] = power(e, k, -effect, sims=sims, seed=seed, n_perm=REPORT_PERM.get(options["test"]),
                             common=width[0], **options)
        return cache[k]

    lo, hi = None, None
    step = BRACKET_STEP
    while hi is None:  # bracket: lo below the target (or MIN_N), hi at or above it
        if at(n) >= target:
            hi = n
        elif n >= n_max:
            return None, at(n_max)
        else:
            lo, n = n, min(n_max, max(n + 1, math.ceil(n * (1 + step))))
            step *= 2
    step = BRACKET_STEP
    while lo is None:
        k = max(MIN_N, min(hi - 1, math.floor(hi / (1 + step))))
        if k >= hi:  # hi is MIN_N
            return hi, at(hi)
        if at(k) >= target:
            hi, step = k, step * 2
        else:
            lo = k
    while hi - lo > max(1, BISECT_TOL * hi):
        mid = (lo + hi) // 2
        if at(mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi, at(hi)


def plan_table(
    errors: ArrayLike,
    effects: ArrayLike,
    *,
    alpha: float = 0.025,
    target: float = 0.8,
    n_pilot: int | None = None,
    sims: int = 1000,
    seed: int = 0,
    n_max: int = 20_000,
    tests: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """For each effect (points) and test (`PLAN_TESTS`): models per space for `target` power at one-sided
    level `alpha` (`plan_n`), and the power at the pilot's `n_pilot` models per space.

    Columns: `effect`, `test`, `claim`, `n` (NaN when even `n_max` falls short), `power_at_n` (simulated with
    `sims` studies, at or above `target`; at `n_max`, below it, when n is NaN), `power_at_pilot` (NaN without a
    pilot).
    """
    e = as_errors(errors, "errors")
    alpha = check_level(alpha, "alpha")
    target = check_level(target, "target power")
    sims = check_positive_int(sims, "sims")
    values = [float(v) for v in np.atleast_1d(np.asarray(effects, dtype=float))]
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"effects must be positive numbers of error points, got {list(np.atleast_1d(effects))}")
    chosen = [(t, c) for t, c in PLAN_TESTS if tests is None or t in tests]
    rows = []
    for effect in values:
        mean_n = None
        for test, claim in chosen:
            # the KS test needs more models than the mean test: start from the mean test's n, 1.5x
            start = 1.5 * mean_n if test == "ks" and mean_n else None
            n, p = plan_n(e, effect, test=test, alpha=alpha, target=target, sims=sims, seed=seed, n_max=n_max,
                          start=start)
            if test == "superiority":
                mean_n = n
            row = {"effect": effect, "test": test, "claim": claim.format(e=f"{effect:g}"),
                   "n": float(n) if n is not None else math.nan, "power_at_n": p, "power_at_pilot": math.nan}
            if n_pilot is not None and n_pilot >= 2:
                row["power_at_pilot"] = power(e, int(n_pilot), -effect, test=test, alpha=alpha, sims=sims,
                                              seed=seed + 20, n_perm=REPORT_PERM.get(test))
            rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs.update(alpha=alpha, target=target, sims=sims, n_pilot=n_pilot, sd=float(np.std(e, ddof=1)),
                       n_max=n_max)
    return table
