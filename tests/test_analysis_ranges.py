"""Good parameter ranges: exact bootstrap distribution of the best model, planted optimum recovery."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anynet_search.analysis import best_model_distribution, good_range, good_ranges
from anynet_search.analysis.synthetic import synthetic_results


def planted_optimum_frame(n=500, seed=0):
    df = synthetic_results(n, seed=seed)
    rng = np.random.default_rng(seed)
    df["error"] = 40.0 + 2.0 * np.log2(df["w2"] / 64.0) ** 2 + rng.normal(0, 0.5, n)
    return df


def test_recovers_planted_optimum():
    df = planted_optimum_frame()
    r = good_range(df, "w2")
    assert r.lo <= 64 <= r.hi
    assert 48 <= r.median <= 88
    assert r.hi - r.lo < 100  # narrow compared with the sampled 8..1024
    assert r.sample_size == 125 and r.method == "exact" and r.n == 500
    # An irrelevant parameter's range stays wide.
    assert good_range(df, "w4").hi - good_range(df, "w4").lo > 500


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6).map(float), min_size=1, max_size=15), st.integers(1, 20))
def test_best_model_distribution_exact(errors, s):
    p = best_model_distribution(errors, s)
    assert p.sum() == pytest.approx(1.0)
    e = np.asarray(errors)
    m = len(e)
    for i, v in enumerate(e):  # P(best error = v), split evenly among the ties at v
        expected = ((e >= v).sum() / m) ** s - ((e > v).sum() / m) ** s
        assert p[i] == pytest.approx(expected / (e == v).sum())


def test_exact_agrees_with_simulated_resamples():
    rng = np.random.default_rng(5)
    errors = np.round(rng.normal(40, 2, 80), 1)  # with ties
    exact = best_model_distribution(errors, 20)
    simulated = best_model_distribution(errors, 20, n_boot=40_000, seed=1)
    assert np.abs(exact - simulated).max() < 0.01
    df = planted_optimum_frame(300, seed=2)
    a, b = good_range(df, "w2"), good_range(df, "w2", n_boot=20_000)
    assert b.method == "bootstrap"
    assert abs(a.median - b.median) <= 16 and a.lo <= b.median <= a.hi


def test_good_ranges_frame():
    df = planted_optimum_frame(200)
    table = good_ranges(df)
    assert table["param"].tolist() == [f"{f}{i}" for f in "dwbg" for i in range(1, 5)]
    assert list(table.columns[:5]) == ["param", "median", "lo", "hi", "best"]
    assert (table["lo"] <= table["median"]).all() and (table["median"] <= table["hi"]).all()
    extra = good_ranges(df, ["flops", "params"])
    assert extra["param"].tolist() == ["flops", "params"]


def test_validation():
    df = pd.DataFrame({"error": [1.0, 2.0], "w1": [8, 16]})
    with pytest.raises(ValueError, match="missing column"):
        good_range(df, "w2")
    with pytest.raises(ValueError, match="empty"):
        good_range(df.iloc[:0], "w1")
    with pytest.raises(ValueError, match="NaN"):
        good_range(df.assign(error=[1.0, np.nan]), "w1")
    with pytest.raises(ValueError, match="sample_size"):
        good_range(df, "w1", sample_size=0)
