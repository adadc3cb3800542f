"""Expected best error of n models: exact order-statistics formula versus brute force and simulation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anynet_search.analysis import expected_best_error


def brute_force(errors, n):
    es, m = np.sort(errors), len(errors)
    i = np.arange(1, m + 1)
    return float(np.sum(es * (((m - i + 1) / m) ** n - ((m - i) / m) ** n)))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 50).map(float), min_size=1, max_size=30), st.integers(1, 40))
def test_matches_order_statistics_formula(errors, n):
    got = expected_best_error(errors, ns=[n])["expected_min"].iloc[0]
    assert got == pytest.approx(brute_force(errors, n), abs=1e-9)


def test_matches_monte_carlo():
    rng = np.random.default_rng(0)
    errors = rng.normal(40, 3, 200)
    table = expected_best_error(errors, ns=[1, 5, 25])
    draws = rng.choice(errors, size=(100_000, 25))
    for n, exact in zip(table["n"], table["expected_min"]):
        mc = draws[:, :n].min(axis=1)
        assert exact == pytest.approx(mc.mean(), abs=4 * mc.std() / np.sqrt(len(mc)))
    assert table["expected_min"].iloc[0] == pytest.approx(errors.mean())


def test_default_ns_and_integer_weights_are_multiplicities():
    errors = np.array([3.0, 1.0, 2.0, 5.0, 4.0])
    assert expected_best_error(errors)["n"].tolist() == [1, 2, 4]
    weights = np.array([1, 3, 0, 2, 1])
    weighted = expected_best_error(errors, ns=[1, 3, 7], weights=weights)
    duplicated = expected_best_error(np.repeat(errors, weights), ns=[1, 3, 7])
    assert np.allclose(weighted["expected_min"], duplicated["expected_min"])


def test_bootstrap_interval_brackets_estimate():
    rng = np.random.default_rng(1)
    table = expected_best_error(rng.normal(40, 3, 300), n_boot=300)
    assert list(table.columns) == ["n", "expected_min", "lo", "hi"]
    assert (table["lo"] <= table["expected_min"]).all() and (table["expected_min"] <= table["hi"]).all()
    assert table["expected_min"].is_monotonic_decreasing


def test_bad_ns():
    with pytest.raises(ValueError, match="ns"):
        expected_best_error([1.0, 2.0], ns=[0])
    with pytest.raises(ValueError, match="ns is empty"):
        expected_best_error([1.0, 2.0], ns=[])
