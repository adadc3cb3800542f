"""KS comparison of EDFs: p-value sanity, the complexity-stratified permutation version, effect-size signs."""

import numpy as np
import pytest
from scipy import integrate

from anynet_search.analysis import bin_weights, compare_edfs, edf_at


def test_same_distribution_large_p_shifted_tiny_p():
    rng = np.random.default_rng(0)
    a, b = rng.normal(40, 2, 500), rng.normal(40, 2, 500)
    assert compare_edfs(a, b).p_value > 0.05
    shifted = compare_edfs(a - 1.0, b)
    assert shifted.p_value < 1e-6
    assert shifted.mean_diff < 0 and shifted.median_diff < 0  # A has lower errors: negative = A better
    assert compare_edfs(a + 1.0, b).mean_diff > 0


def test_one_stratum_permutation_test_agrees_with_ks_2samp():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 400), rng.normal(0.15, 1, 300)
    plain = compare_edfs(a, b)
    one_bin = compare_edfs(a, b, np.zeros(400, dtype=int), np.zeros(300, dtype=int), n_perm=4000)
    assert one_bin.method == "stratified-permutation" and plain.method == "ks_2samp"
    assert one_bin.ks_stat == pytest.approx(plain.ks_stat)
    assert one_bin.p_value == pytest.approx(plain.p_value, abs=0.015)  # Monte-Carlo error of 4000 permutations
    assert (one_bin.n_a, one_bin.n_b) == (400.0, 300.0)
    assert one_bin.mean_diff == pytest.approx(plain.mean_diff)


def test_strata_normalize_and_models_outside_the_bins_are_left_out():
    """Bin 0 is cheap and bad, bin 1 good; A has more cheap models: raw A is worse, per bin they are equal."""
    rng = np.random.default_rng(2)
    za = np.r_[np.zeros(300, dtype=int), np.ones(100, dtype=int)]
    zb = np.r_[np.zeros(100, dtype=int), np.ones(300, dtype=int)]
    a = np.where(za == 0, 10.0, 5.0) + rng.normal(0, 1, 400)
    b = np.where(zb == 0, 10.0, 5.0) + rng.normal(0, 1, 400)
    assert compare_edfs(a, b).p_value < 1e-6 and compare_edfs(a, b).mean_diff > 2
    res = compare_edfs(a, b, za, zb, n_perm=500)
    assert res.p_value > 0.05 and abs(res.mean_diff) < 0.3
    outside = compare_edfs(np.r_[a, 99.0], np.r_[b, 99.0], np.r_[za, -1], np.r_[zb, -1], n_perm=500)
    assert (outside.n_a, outside.n_b) == (400.0, 400.0) and outside.mean_diff == pytest.approx(res.mean_diff)
    assert bin_weights(np.array([0, 0, 1, -1])).tolist() == [0.25, 0.25, 0.5, 0.0]


def test_strata_errors_are_one_line():
    with pytest.raises(ValueError, match="give strata for both samples"):
        compare_edfs([1.0, 2.0], [2.0, 3.0], strata_a=[0, 0])
    with pytest.raises(ValueError, match="strata_b must hold one integer bin per error"):
        compare_edfs([1.0, 2.0], [2.0, 3.0], [0, 0], [0.5, 1.5])
    with pytest.raises(ValueError, match="every model lies outside the bins"):
        compare_edfs([1.0, 2.0], [2.0, 3.0], [0, 0], [-1, -1])


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
