"""Error EDFs: F(e) = (weighted) fraction of models with error <= e, plus weighted mean and median."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from anynet_search.analysis._checks import as_errors, as_weights


def _sorted_cumulative(e: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted errors and the cumulative weight up to and including each sorted position (ends at 1)."""
    order = np.argsort(e, kind="stable")
    es = e[order]
    if w is None:
        cum = np.arange(1, es.size + 1, dtype=float) / es.size
    else:
        cum = np.cumsum(w[order])
        cum /= cum[-1]
    return es, cum


def edf(errors: ArrayLike, weights: ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted errors and F at each of them: the (normalized) weight of models with error <= that value.

    Ties share one value of F (the weight of every model up to and including the tie), so the result
    is the right-continuous EDF sampled at every observed error.

    >>> e, F = edf([3.0, 1.0, 2.0, 2.0])
    >>> e.tolist(), F.tolist()
    ([1.0, 2.0, 2.0, 3.0], [0.25, 0.75, 0.75, 1.0])
    """
    e = as_errors(errors)
    w = as_weights(weights, e.size)
    es, cum = _sorted_cumulative(e, w)
    last_of_tie = np.searchsorted(es, es, side="right") - 1
    return es, cum[last_of_tie]


def edf_at(errors: ArrayLike, points: ArrayLike, weights: ArrayLike | None = None) -> np.ndarray:
    """The EDF of `errors` evaluated at arbitrary `points` (0 below the smallest error, 1 from the largest)."""
    e = as_errors(errors)
    w = as_weights(weights, e.size)
    pts = np.asarray(points, dtype=float)
    if np.isnan(pts).any():
        raise ValueError("points contain NaN")
    es, cum = _sorted_cumulative(e, w)
    idx = np.searchsorted(es, pts, side="right")
    return np.where(idx > 0, cum[np.maximum(idx - 1, 0)], 0.0)


def weighted_mean(values: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Mean of `values`, weighted when `weights` is given."""
    v = as_errors(values, "values")
    w = as_weights(weights, v.size)
    return float(v.mean() if w is None else np.dot(w, v))


def weighted_median(values: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Median of `values`; weighted, it averages the smallest values with F >= 1/2 and with F > 1/2.

    With equal weights this is exactly `np.median` (the two middle values are averaged for even counts).
    """
    v = as_errors(values, "values")
    w = as_weights(weights, v.size)
    if w is None:
        return float(np.median(v))
    es, cum = _sorted_cumulative(v, w)
    tol = 1e-12
    lower = es[min(np.searchsorted(cum, 0.5 - tol, side="left"), es.size - 1)]
    upper = es[min(np.searchsorted(cum, 0.5 + tol, side="right"), es.size - 1)]
    return float((lower + upper) / 2)


def edf_confidence_band(errors: ArrayLike, grid: ArrayLike | None = None, level: float = 0.95) -> pd.DataFrame:
    """Pointwise confidence band of an unweighted error EDF: `scipy.stats.ecdf(...).cdf.confidence_interval`
    (log-log method, which stays inside (0, 1)); weighted EDFs use the bootstrap (`edf_band`).

    Returns columns `error` (the grid, sorted; default: the distinct observed errors), `F`, `lo` and `hi`. Where the
    formula is undefined (F = 1, above every error) the band is the point F itself.
    """
    import warnings

    from scipy import stats

    e = np.asarray(errors, dtype=float).ravel()
    if e.size == 0 or not np.isfinite(e).all():
        raise ValueError("errors must be a non-empty array of finite values")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    g = np.unique(e) if grid is None else np.sort(np.asarray(grid, dtype=float).ravel())
    cdf = stats.ecdf(e).cdf
    with warnings.catch_warnings():  # "undefined at some observations": F = 1, handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = cdf.confidence_interval(confidence_level=level, method="log-log")
        lo, hi = ci.low.evaluate(g), ci.high.evaluate(g)
    F = cdf.evaluate(g)
    lo, hi = np.where(np.isnan(lo), F, lo), np.where(np.isnan(hi), F, hi)
    return pd.DataFrame({"error": g, "F": F, "lo": np.minimum(lo, F), "hi": np.maximum(hi, F)})
