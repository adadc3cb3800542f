"""Two-sample comparison of error EDFs: KS distance and p-value plus effect sizes (negative = A better)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from anynet_search.analysis._checks import as_errors
from anynet_search.analysis.edf import edf_at, weighted_mean, weighted_median
from anynet_search.analysis.permutation import ks_test


@dataclass(frozen=True)
class EdfComparison:
    """Result of `compare_edfs`; differences are A - B, so negative means A has lower errors (better)."""

    ks_stat: float
    p_value: float
    mean_diff: float
    median_diff: float
    n_a: float
    n_b: float
    method: str

    def as_dict(self) -> dict[str, float | str]:
        """The fields as a plain dict."""
        return asdict(self)


def ks_distance(
    errors_a: np.ndarray, errors_b: np.ndarray, weights_a: np.ndarray | None, weights_b: np.ndarray | None
) -> float:
    """KS distance sup|F_a - F_b| between two (weighted) error EDFs."""
    points = np.union1d(errors_a, errors_b)
    return float(np.max(np.abs(edf_at(errors_a, points, weights_a) - edf_at(errors_b, points, weights_b))))


def _strata(strata: ArrayLike | None, n: int, name: str) -> np.ndarray | None:
    if strata is None:
        return None
    z = np.asarray(strata)
    if z.shape != (n,) or not np.issubdtype(z.dtype, np.integer):
        raise ValueError(f"{name} must hold one integer bin per error ({n}), got shape {z.shape} of {z.dtype}")
    if not (z >= 0).any():
        raise ValueError(f"{name}: every model lies outside the bins (-1); nothing to compare")
    return z.astype(np.int64)


def bin_weights(strata: np.ndarray) -> np.ndarray:
    """Weights giving every occupied bin the same mass, shared equally by its models (bin -1: weight 0)."""
    inside = strata >= 0
    counts = np.bincount(strata[inside])
    w = np.zeros(strata.size)
    w[inside] = 1.0 / (np.count_nonzero(counts) * counts[strata[inside]])
    return w


def compare_edfs(
    errors_a: ArrayLike,
    errors_b: ArrayLike,
    strata_a: ArrayLike | None = None,
    strata_b: ArrayLike | None = None,
    *,
    n_perm: int = 2000,
    seed: int = 0,
) -> EdfComparison:
    """Compare two error EDFs: KS statistic and p-value, mean and median differences (A - B; < 0: A better).

    Without strata the test is `scipy.stats.ks_2samp`. With `strata_a` and `strata_b` (complexity bin
    of each model, e.g. from `complexity_bins` over a shared range; -1 leaves a model out) the EDFs,
    means and medians are complexity-normalized (every bin a sample occupies gets the same mass) and
    the p-value comes from a permutation test that swaps models between A and B only within a bin:
    exact under "at equal complexity both spaces have the same errors", whatever the flops
    distributions. `mean_diff` equals the area between the EDFs.
    """
    a = as_errors(errors_a, "errors_a")
    b = as_errors(errors_b, "errors_b")
    za = _strata(strata_a, a.size, "strata_a")
    zb = _strata(strata_b, b.size, "strata_b")
    if (za is None) != (zb is None):
        raise ValueError("give strata for both samples (complexity bins over a shared range) or for neither")
    if za is None or zb is None:
        res = stats.ks_2samp(a, b)
        return EdfComparison(
            ks_stat=float(res.statistic),
            p_value=float(res.pvalue),
            mean_diff=float(a.mean() - b.mean()),
            median_diff=float(np.median(a) - np.median(b)),
            n_a=float(a.size),
            n_b=float(b.size),
            method="ks_2samp",
        )
    wa, wb = bin_weights(za), bin_weights(zb)
    x = np.concatenate([a, b])
    d, p = ks_test(x, np.arange(x.size) < a.size, np.concatenate([za, zb]), n_perm=n_perm, seed=seed)
    keep_a, keep_b = wa > 0, wb > 0
    return EdfComparison(
        ks_stat=d,
        p_value=p,
        mean_diff=weighted_mean(a[keep_a], wa[keep_a]) - weighted_mean(b[keep_b], wb[keep_b]),
        median_diff=weighted_median(a[keep_a], wa[keep_a]) - weighted_median(b[keep_b], wb[keep_b]),
        n_a=float(keep_a.sum()),
        n_b=float(keep_b.sum()),
        method="stratified-permutation",
    )
