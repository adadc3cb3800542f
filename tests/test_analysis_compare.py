"""KS comparison of EDFs: p-value sanity, the complexity-stratified permutation version, effect-size signs."""

import numpy as np
import pytest
from scipy import integrate, stats

from anynet_search.analysis import (
    bin_weights,
    compare_edfs,
    complexity_adjusted,
    complexity_bins,
    edf_at,
    ks_test,
)


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


def test_tied_errors_get_the_exact_permutation_test():
    """Errors on a finite validation set tie; ks_2samp is then conservative, the permutation KS exact."""
    image = 100 / 144
    rng = np.random.default_rng(4)
    a, b = (np.round(rng.gamma(2.0, 3.5, n) / image) * image for n in (100, 120))
    res = compare_edfs(a, b, n_perm=2000, seed=1)
    assert res.method == "permutation"
    assert res.ks_stat == pytest.approx(stats.ks_2samp(a, b).statistic)
    assert res.p_value == ks_test(np.r_[a, b], np.arange(220) < 100, n_perm=2000, seed=1)[1]


def test_a_bin_one_sample_leaves_empty_is_dropped_from_both():
    """A occupies bins 0-2, B only 0-1: A's bin-2 models weigh 0, and each shared bin gets mass 1/2."""
    za = np.r_[np.zeros(50, int), np.ones(50, int), np.full(50, 2)]
    zb = np.r_[np.zeros(30, int), np.ones(70, int)]
    a = np.where(za == 2, 100.0, 10.0 + za) + np.linspace(0, 1, 150)
    b = np.where(zb == 0, 10.0, 11.0) + np.linspace(0, 1, 100)
    res = compare_edfs(a, b, za, zb, n_perm=200)
    assert (res.n_a, res.n_b) == (100.0, 100.0)
    expected = np.mean([a[za == j].mean() - b[zb == j].mean() for j in (0, 1)])
    assert res.mean_diff == pytest.approx(expected)
    with pytest.raises(ValueError, match="share no bin"):
        compare_edfs(a[za == 2], b, za[za == 2], zb)


def test_log_flops_adjustment_removes_where_models_sit_inside_a_bin():
    """Issue 22's null: one error law falling with flops, A's models at the low end of every bin and B's at the
    high end. Permuting within bins then rejects although nothing differs at equal flops; moving every error
    to its bin's mean log flops first does not."""
    rng = np.random.default_rng(5)
    edges = np.linspace(8, 9, 6)
    low = edges[:-1] + 0.02 + 0.06 * rng.random((40, 5))  # 40 models per bin near each bin's lower edge
    high = edges[1:] - 0.02 - 0.06 * rng.random((40, 5))
    fa, fb = 10 ** low.ravel(), 10 ** high.ravel()
    ea = 10 - 3 * np.log10(fa / 1e8) + rng.normal(0, 0.3, fa.size)
    eb = 10 - 3 * np.log10(fb / 1e8) + rng.normal(0, 0.3, fb.size)
    za, zb = complexity_bins(fa, 5, (1e8, 1e9))[0], complexity_bins(fb, 5, (1e8, 1e9))[0]
    plain = compare_edfs(ea, eb, za, zb, n_perm=500)
    adjusted = compare_edfs(ea, eb, za, zb, complexity_a=fa, complexity_b=fb, n_perm=500)
    assert plain.p_value < 0.01 and plain.mean_diff > 0.2
    assert adjusted.method == "stratified-permutation, log-complexity adjusted"
    assert adjusted.p_value > 0.05 and abs(adjusted.mean_diff) < 0.1
    slope = complexity_adjusted(np.r_[ea, eb], np.r_[fa, fb], np.r_[za, zb])[1]
    assert slope == pytest.approx(-3.0, abs=0.75)  # its standard error here is about 0.3
    with pytest.raises(ValueError, match="give strata too"):
        compare_edfs(ea, eb, complexity_a=fa, complexity_b=fb)


def test_report_comparisons_adjust_for_log_flops_within_bins():
    """compare_studies (the report's study-vs-study table) uses the adjusted stratified test when it can."""
    import pandas as pd

    from anynet_search.analysis.studies import compare_studies

    rng = np.random.default_rng(6)
    frames = {k: pd.DataFrame({"error": rng.normal(10, 1, 60), "flops": 10 ** rng.uniform(8, 9, 60)}) for k in "ab"}
    strata = {k: complexity_bins(f["flops"].to_numpy(), 3, (1e8, 1e9))[0] for k, f in frames.items()}
    table = compare_studies(frames, strata)
    assert table["method"].tolist() == ["stratified-permutation, log-complexity adjusted"]
    assert compare_studies(frames, {})["method"].tolist() == ["ks_2samp"]
