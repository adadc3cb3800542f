"""Vectorized bootstrap: resampled row indices/counts in memory-bounded chunks, and EDF confidence bands.

Convention for weighted samples (used by `edf_band` and `expected_best_error`): a bootstrap resample
draws n_eff = round((sum w)^2 / sum w^2) rows with probabilities proportional to the weights. With
equal weights this is the ordinary bootstrap (m draws, uniform); with unequal weights, drawing n_eff
rather than m rows keeps the band as wide as the weighted estimator's real uncertainty (drawing m rows
would understate it: a complexity-normalized EDF rests on fewer effective models than rows).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from anynet_search.analysis._checks import as_errors, as_weights, check_level, check_positive_int
from anynet_search.analysis.edf import edf_at

#: Upper bound on the number of resampled indices held at once (8 bytes each).
CHUNK_ELEMENTS = 2_000_000


def effective_sample_size(weights: ArrayLike) -> float:
    """Kish effective sample size (sum w)^2 / sum w^2 of non-negative weights (equals m for equal weights)."""
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or w.size == 0 or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(
            "weights must be a non-empty 1-D array of finite non-negative values with positive sum"
        )
    return float(w.sum() ** 2 / np.dot(w, w))


def draw_count(n_rows: int, weights: np.ndarray | None) -> int:
    """Rows drawn per bootstrap resample: n_rows unweighted, else the rounded effective sample size."""
    if weights is None:
        return n_rows
    return max(1, int(round(effective_sample_size(weights))))


def resample_indices(
    rng: np.random.Generator,
    n_rows: int,
    n_draw: int,
    n_boot: int,
    p: np.ndarray | None = None,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> Iterator[np.ndarray]:
    """Yield arrays of shape (b, n_draw) of row indices drawn with replacement (probabilities `p`), n_boot rows in all."""
    per_chunk = max(1, chunk_elements // max(1, n_draw))
    cdf = None
    if p is not None:
        cdf = np.cumsum(p, dtype=float)
        cdf /= cdf[-1]
    done = 0
    while done < n_boot:
        b = min(per_chunk, n_boot - done)
        if cdf is None:
            idx = rng.integers(0, n_rows, size=(b, n_draw))
        else:
            idx = np.searchsorted(cdf, rng.random((b, n_draw)), side="right")
            np.minimum(idx, n_rows - 1, out=idx)
        done += b
        yield idx


def resample_counts(
    rng: np.random.Generator,
    n_rows: int,
    n_draw: int,
    n_boot: int,
    p: np.ndarray | None = None,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> Iterator[np.ndarray]:
    """Yield float count matrices of shape (b, n_rows): how often each row was drawn in each resample."""
    for idx in resample_indices(rng, n_rows, n_draw, n_boot, p, chunk_elements):
        b = idx.shape[0]
        flat = (idx + (np.arange(b) * n_rows)[:, None]).ravel()
        yield np.bincount(flat, minlength=b * n_rows).reshape(b, n_rows).astype(float)


def edf_band(
    errors: ArrayLike,
    weights: ArrayLike | None = None,
    grid: ArrayLike | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Pointwise percentile-bootstrap confidence band of the (weighted) error EDF.

    Returns columns `error` (the grid, sorted; default: the distinct observed errors), `F` (the EDF
    there), `lo` and `hi` (the (1-level)/2 and (1+level)/2 quantiles of the resampled EDFs).
    """
    e = as_errors(errors)
    w = as_weights(weights, e.size)
    n_boot = check_positive_int(n_boot, "n_boot")
    level = check_level(level)
    if grid is None:
        g = np.unique(e)
    else:
        g = np.sort(np.asarray(grid, dtype=float).ravel())
        if g.size == 0 or not np.isfinite(g).all():
            raise ValueError("grid must be a non-empty array of finite error values")
    F = edf_at(e, g, w)
    # slot[i] = number of grid points below e_i: a draw of row i counts toward F(g_j) for every j >= slot[i].
    slot = np.searchsorted(g, e, side="left")
    n_slots = g.size + 1
    n_draw = draw_count(e.size, w)
    rng = np.random.default_rng(seed)
    boot = np.empty((n_boot, g.size), dtype=np.int32)  # resampled cumulative counts (exact, compact)
    row = 0
    for idx in resample_indices(rng, e.size, n_draw, n_boot, w):
        b = idx.shape[0]
        flat = (slot[idx] + (np.arange(b) * n_slots)[:, None]).ravel()
        counts = np.bincount(flat, minlength=b * n_slots).reshape(b, n_slots)
        boot[row : row + b] = np.cumsum(counts[:, : g.size], axis=1)
        row += b
    tail = (1.0 - level) / 2
    lo = np.empty(g.size)
    hi = np.empty(g.size)
    step = max(1, CHUNK_ELEMENTS // n_boot)
    for j in range(0, g.size, step):
        q = np.quantile(boot[:, j : j + step].astype(float), [tail, 1.0 - tail], axis=0)
        lo[j : j + step], hi[j : j + step] = q[0] / n_draw, q[1] / n_draw
    return pd.DataFrame({"error": g, "F": F, "lo": lo, "hi": hi})
