"""KS comparison of EDFs: p-value sanity, weighted version, effect-size signs."""

import numpy as np
import pytest
from scipy import integrate, stats

from anynet_search.analysis import compare_edfs, edf_at


def test_same_distribution_large_p_shifted_tiny_p():
    rng = np.random.default_rng(0)
    a, b = rng.normal(40, 2, 500), rng.normal(40, 2, 500)
    assert compare_edfs(a, b).p_value > 0.05
    shifted = compare_edfs(a - 1.0, b)
    assert shifted.p_value < 1e-6
    assert shifted.mean_diff < 0 and shifted.median_diff < 0  # A has lower errors: negative = A better
    assert compare_edfs(a + 1.0, b).mean_diff > 0


def test_weighted_with_equal_weights_agrees_with_ks_2samp():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 400), rng.normal(0.15, 1, 300)
    plain = compare_edfs(a, b)
    weighted = compare_edfs(a, b, np.ones(400), np.ones(300))
    assert weighted.method == "weighted-asymptotic" and plain.method == "ks_2samp"
    assert weighted.ks_stat == pytest.approx(plain.ks_stat)
    assert weighted.p_value == pytest.approx(stats.ks_2samp(a, b, method="asymp").pvalue)
    assert weighted.p_value == pytest.approx(plain.p_value, rel=0.1)
    assert (weighted.n_a, weighted.n_b) == pytest.approx((400.0, 300.0))
    assert weighted.mean_diff == pytest.approx(plain.mean_diff)


def test_weighted_effective_sample_size_lowers_power():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 400), rng.normal(0.2, 1, 400)
    skewed = np.r_[np.full(40, 10.0), np.ones(360)]
    res = compare_edfs(a, b, weights_a=skewed)
    assert res.n_a < 400 / 2 and res.n_b == 400
    assert res.p_value > compare_edfs(a, b, weights_a=np.ones(400)).p_value * 0.5


def test_mean_diff_is_area_between_edfs():
    rng = np.random.default_rng(3)
    a, b = rng.gamma(2.0, 2.0, 60), rng.gamma(2.5, 2.0, 80)
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    grid = np.linspace(lo, hi, 200_001)
    area = integrate.trapezoid(edf_at(b, grid) - edf_at(a, grid), grid)
    assert compare_edfs(a, b).mean_diff == pytest.approx(area, abs=1e-3)


def test_as_dict_and_validation():
    res = compare_edfs([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert set(res.as_dict()) == {"ks_stat", "p_value", "mean_diff", "median_diff", "n_a", "n_b", "method"}
    assert res.mean_diff == pytest.approx(-1.0) and res.median_diff == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="errors_b is empty"):
        compare_edfs([1.0], [])
