"""Good parameter ranges (CVPR 2020, Sec. 3.1): where the best model's parameter value lies, by bootstrap.

The paper resamples 25% of the models with replacement, keeps the best (lowest error) model of each
resample, repeats 10^4 times, and reports the median and the 95% interval of the best model's value.
The distribution of "the best of s draws with replacement" is known exactly from the order statistics
(P(best error = v) = P(all draws >= v) - P(all draws > v), split evenly among models tied at v), so by
default (`n_boot=None`) we compute the limit of infinitely many resamples: exact and free of Monte
Carlo noise. Pass an int `n_boot` to simulate that many resamples instead (ties go to the first drawn).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from anynet_search.analysis._checks import (
    as_errors,
    check_level,
    check_positive_int,
    error_column,
    numeric_column,
    require_frame,
)
from anynet_search.analysis.bootstrap import resample_indices
from anynet_search.analysis.columns import param_columns

#: Fraction of the models in each resample (the paper's 25%).
DEFAULT_SAMPLE_FRACTION = 0.25


@dataclass(frozen=True)
class GoodRange:
    """Bootstrap distribution summary of the best model's value of one parameter."""

    param: str
    median: float
    lo: float
    hi: float
    best: float
    level: float
    n: int
    sample_size: int
    method: str

    def as_dict(self) -> dict[str, float | int | str]:
        """The fields as a plain dict."""
        return asdict(self)


def default_sample_size(n: int) -> int:
    """The paper's resample size: 25% of the models (at least 1)."""
    return max(1, int(round(DEFAULT_SAMPLE_FRACTION * n)))


def best_model_distribution(
    errors: ArrayLike, sample_size: int, n_boot: int | None = None, seed: int = 0
) -> np.ndarray:
    """Probability of each model being the lowest-error one of `sample_size` draws with replacement.

    Exact when `n_boot` is None; else the observed frequencies over `n_boot` simulated resamples.
    """
    e = as_errors(errors)
    s = check_positive_int(sample_size, "sample_size")
    m = e.size
    values, group, counts = np.unique(e, return_inverse=True, return_counts=True)
    if n_boot is None:
        at_least = np.cumsum(counts[::-1])[::-1] / m  # fraction of models with error >= each distinct value
        above = np.append(at_least[1:], 0.0)
        p_group = at_least**s - above**s
        return p_group[group] / counts[group]
    n_boot = check_positive_int(n_boot, "n_boot")
    rng = np.random.default_rng(seed)
    freq = np.zeros(m)
    for idx in resample_indices(rng, m, s, n_boot):
        key = group[idx] * s + np.arange(s)  # lowest error first, then the earliest draw among ties
        best = idx[np.arange(idx.shape[0]), np.argmin(key, axis=1)]
        freq += np.bincount(best, minlength=m)
    return freq / n_boot


def discrete_quantiles(values: np.ndarray, probs: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Inverted-CDF quantiles of a discrete distribution: the smallest value whose CDF reaches q."""
    order = np.argsort(values, kind="stable")
    v, cdf = values[order], np.cumsum(probs[order])
    cdf /= cdf[-1]
    idx = np.searchsorted(cdf, np.asarray(qs, dtype=float) - 1e-12, side="left")
    return v[np.minimum(idx, v.size - 1)]


def _summaries(
    df: pd.DataFrame,
    params: Sequence[str],
    n_boot: int | None,
    sample_size: int | None,
    level: float,
    seed: int,
) -> list[GoodRange]:
    what = "good_range"
    errors = error_column(df, what)
    require_frame(df, params, what)
    level = check_level(level)
    s = (
        default_sample_size(errors.size)
        if sample_size is None
        else check_positive_int(sample_size, "sample_size")
    )
    probs = best_model_distribution(errors, s, n_boot, seed)
    tail = (1.0 - level) / 2
    best_row = int(np.argmin(errors))
    out = []
    for param in params:
        values = numeric_column(df, param, what)
        lo, med, hi = discrete_quantiles(values, probs, [tail, 0.5, 1.0 - tail])
        out.append(
            GoodRange(
                param=param,
                median=float(med),
                lo=float(lo),
                hi=float(hi),
                best=float(values[best_row]),
                level=level,
                n=int(errors.size),
                sample_size=s,
                method="exact" if n_boot is None else "bootstrap",
            )
        )
    return out


def good_range(
    df: pd.DataFrame,
    param: str,
    n_boot: int | None = None,
    sample_size: int | None = None,
    level: float = 0.95,
    seed: int = 0,
) -> GoodRange:
    """Median and `level` interval of `param` for the best model of random resamples of `sample_size` models.

    `sample_size` defaults to 25% of the rows (the paper's choice); `n_boot=None` gives the exact
    bootstrap distribution, an int simulates that many resamples (seeded by `seed`).
    """
    return _summaries(df, [param], n_boot, sample_size, level, seed)[0]


def good_ranges(
    df: pd.DataFrame,
    params: Sequence[str] | None = None,
    n_boot: int | None = None,
    sample_size: int | None = None,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """`good_range` of every parameter, one row each; `params` defaults to all d*, w*, b*, g* columns.

    Any numeric column can be listed, e.g. `params=["flops", "params"]`. Every parameter is summarized
    over the same resamples (the best model of a resample does not depend on the parameter).
    """
    if params is None:
        require_frame(df, [], "good_ranges")
        params = param_columns(df)
    params = list(params)
    if not params:
        raise ValueError("good_ranges: no parameters to summarize")
    rows = [r.as_dict() for r in _summaries(df, params, n_boot, sample_size, level, seed)]
    return pd.DataFrame(rows, columns=[f for f in GoodRange.__dataclass_fields__])
