"""Two-sample comparison of error EDFs: KS distance and p-value plus effect sizes (negative = A better)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from anynet_search.analysis._checks import as_errors
from anynet_search.analysis.edf import edf_at, weighted_mean, weighted_median
from anynet_search.analysis.permutation import ks_test
from anynet_search.analysis.weights import bin_weights, shared_bins


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


def complexity_adjusted(errors: np.ndarray, complexity: np.ndarray, strata: np.ndarray) -> tuple[np.ndarray, float]:
    """(errors moved to their bin's mean log10 complexity along one pooled within-bin slope, the slope).

    e' = e - beta (log10 c - mean_j log10 c), beta the least-squares slope of error on log10 complexity
    within bins (pooled over bins; models with bin -1 are left as they are). What remains of the errors'
    dependence on complexity inside a bin is then only its curvature, not where a sample's models sit.
    """
    x = np.log10(np.asarray(complexity, dtype=float))
    e = np.asarray(errors, dtype=float)
    z = np.asarray(strata, dtype=np.int64)
    inside = z >= 0
    counts = np.bincount(z[inside])
    centre = np.bincount(z[inside], weights=x[inside]) / np.maximum(counts, 1)
    dx = np.where(inside, x - centre[np.maximum(z, 0)], 0.0)
    sxx = float(dx @ dx)
    slope = float(dx @ e) / sxx if sxx > 0 else 0.0  # dx sums to 0 in every bin: no need to centre e
    return e - slope * dx, slope


def compare_edfs(
    errors_a: ArrayLike,
    errors_b: ArrayLike,
    strata_a: ArrayLike | None = None,
    strata_b: ArrayLike | None = None,
    *,
    complexity_a: ArrayLike | None = None,
    complexity_b: ArrayLike | None = None,
    n_perm: int = 2000,
    seed: int = 0,
) -> EdfComparison:
    """Compare two error EDFs: KS statistic and p-value, mean and median differences (A - B; < 0: A better).

    Without strata the p-value is `scipy.stats.ks_2samp`'s when no two errors tie, else (errors measured
    on a finite validation set tie: on 144 images every error is a multiple of 0.69 points) the exact
    permutation KS test (`permutation.ks_test`; `method` says which). With `strata_a` and `strata_b`
    (complexity bin of each model, e.g. from `complexity_bins` over a shared range; -1 leaves a model out)
    the EDFs, means and medians are complexity-normalized over the bins both samples occupy (weight
    1/(k m_j), `weights.bin_weights`; a bin one sample leaves empty is dropped from both) and the p-value
    comes from a permutation test that swaps models between A and B only within a bin.

    That test is exact when, under "at equal complexity both spaces have one error law", the errors
    inside each bin are exchangeable: the error does not change with complexity inside a bin, or both
    samples spread their models alike inside it. It is *not* exact otherwise: with one error law falling
    with flops and A's models at the low end of every bin, B's at the high end, it rejects nearly every
    time (analysis/verdict_calibration.md, section 4). Giving `complexity_a` and `complexity_b` (flops)
    first moves every error to its bin's mean log complexity along the pooled within-bin slope
    (`complexity_adjusted`); the EDFs, means, medians and the test are then those of the adjusted
    errors. The size then stays at or below nominal when the error is close to linear in log flops
    inside a bin (a curved law leaves its curvature), and where the samples' flops overlap inside the
    bins no power is lost; where they sit apart inside every bin, a difference at equal flops cannot be
    told from the slope, and the adjusted test keeps its size by having little power.
    `mean_diff` equals the area between the EDFs.
    """
    a = as_errors(errors_a, "errors_a")
    b = as_errors(errors_b, "errors_b")
    za = _strata(strata_a, a.size, "strata_a")
    zb = _strata(strata_b, b.size, "strata_b")
    if (za is None) != (zb is None):
        raise ValueError("give strata for both samples (complexity bins over a shared range) or for neither")
    if za is None or zb is None:
        if complexity_a is not None or complexity_b is not None:
            raise ValueError("complexity_a/complexity_b adjust within complexity bins: give strata too")
        x = np.concatenate([a, b])
        if np.unique(x).size == x.size:
            p_value, method = float(stats.ks_2samp(a, b).pvalue), "ks_2samp"
        else:
            p_value, method = ks_test(x, np.arange(x.size) < a.size, n_perm=n_perm, seed=seed)[1], "permutation"
        return EdfComparison(
            ks_stat=ks_distance(a, b, None, None),
            p_value=p_value,
            mean_diff=float(a.mean() - b.mean()),
            median_diff=float(np.median(a) - np.median(b)),
            n_a=float(a.size),
            n_b=float(b.size),
            method=method,
        )
    method = "stratified-permutation"
    if (complexity_a is None) != (complexity_b is None):
        raise ValueError("give complexity for both samples or for neither")
    if complexity_a is not None and complexity_b is not None:
        ca, cb = (np.asarray(c, dtype=float) for c in (complexity_a, complexity_b))
        if ca.shape != a.shape or cb.shape != b.shape or not (np.concatenate([ca, cb]) > 0).all():
            raise ValueError("complexity_a/complexity_b must hold one positive value per error")
        adjusted, _ = complexity_adjusted(np.concatenate([a, b]), np.concatenate([ca, cb]), np.concatenate([za, zb]))
        a, b = adjusted[: a.size], adjusted[a.size :]
        method = "stratified-permutation, log-complexity adjusted"
    both = shared_bins(za, zb)
    if both.size == 0:
        raise ValueError("strata_a and strata_b share no bin; nothing to compare")
    wa, wb = bin_weights(za, both), bin_weights(zb, both)
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
        method=method,
    )
