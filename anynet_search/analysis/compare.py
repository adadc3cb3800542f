"""Two-sample comparison of error EDFs: KS distance and p-value plus effect sizes (negative = A better)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from anynet_search.analysis._checks import as_errors, as_weights
from anynet_search.analysis.bootstrap import effective_sample_size
from anynet_search.analysis.edf import edf_at, weighted_mean, weighted_median


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


def weighted_ks(
    errors_a: np.ndarray, errors_b: np.ndarray, weights_a: np.ndarray | None, weights_b: np.ndarray | None
) -> tuple[float, float, float, float]:
    """Weighted KS distance sup|F_a - F_b|, its asymptotic p-value, and the two effective sample sizes."""
    points = np.union1d(errors_a, errors_b)
    d = float(np.max(np.abs(edf_at(errors_a, points, weights_a) - edf_at(errors_b, points, weights_b))))
    n_a = errors_a.size if weights_a is None else effective_sample_size(weights_a)
    n_b = errors_b.size if weights_b is None else effective_sample_size(weights_b)
    # Same large-sample approximation as ks_2samp(method="asymp"): Kolmogorov's distribution for
    # n = n_a*n_b/(n_a+n_b) (it tends to kstwobign at sqrt(n)*D and is more accurate for small n).
    n_comb = max(1, int(round(n_a * n_b / (n_a + n_b))))
    p = float(np.clip(stats.kstwo.sf(d, n_comb), 0.0, 1.0))
    return d, p, float(n_a), float(n_b)


def compare_edfs(
    errors_a: ArrayLike,
    errors_b: ArrayLike,
    weights_a: ArrayLike | None = None,
    weights_b: ArrayLike | None = None,
) -> EdfComparison:
    """Compare two error EDFs: KS statistic and p-value, mean and median differences (A - B; < 0: A better).

    Unweighted, the test is `scipy.stats.ks_2samp`. With weights (on either side), D = sup|F_a - F_b| of
    the weighted EDFs and the p-value is the large-sample Kolmogorov tail of ks_2samp(method="asymp")
    for n = n_a*n_b/(n_a+n_b), with Kish effective sample sizes n_a, n_b = (sum w)^2 / sum w^2. `mean_diff` equals the area between the EDFs,
    integral of (F_b - F_a) de over the error range covering both samples.
    """
    a = as_errors(errors_a, "errors_a")
    b = as_errors(errors_b, "errors_b")
    wa = as_weights(weights_a, a.size, "weights_a")
    wb = as_weights(weights_b, b.size, "weights_b")
    if wa is None and wb is None:
        res = stats.ks_2samp(a, b)
        d, p, n_a, n_b, method = (
            float(res.statistic),
            float(res.pvalue),
            float(a.size),
            float(b.size),
            "ks_2samp",
        )
    else:
        d, p, n_a, n_b = weighted_ks(a, b, wa, wb)
        method = "weighted-asymptotic"
    return EdfComparison(
        ks_stat=d,
        p_value=p,
        mean_diff=weighted_mean(a, wa) - weighted_mean(b, wb),
        median_diff=weighted_median(a, wa) - weighted_median(b, wb),
        n_a=n_a,
        n_b=n_b,
        method=method,
    )
