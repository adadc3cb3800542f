"""EDF, weighted mean/median, and input validation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anynet_search.analysis import edf, edf_at, weighted_mean, weighted_median

errors_st = st.lists(st.integers(0, 20).map(float), min_size=1, max_size=40)


@settings(deadline=None)
@given(errors_st)
def test_edf_matches_brute_force_count(errors):
    e, F = edf(errors)
    assert e.tolist() == sorted(errors)
    for x, f in zip(e, F):
        assert f == pytest.approx(sum(v <= x for v in errors) / len(errors))


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20).map(float), st.integers(0, 5)), min_size=1, max_size=30))
def test_weighted_edf_matches_brute_force(pairs):
    errors = [p[0] for p in pairs]
    weights = [p[1] for p in pairs]
    if sum(weights) == 0:
        weights[0] = 1
    e, F = edf(errors, weights)
    total = sum(weights)
    for x, f in zip(e, F):
        assert f == pytest.approx(sum(w for v, w in zip(errors, weights) if v <= x) / total)
    # Integer weights are multiplicities: same EDF as the duplicated sample.
    dup = np.repeat(errors, weights)
    assert np.allclose(edf_at(errors, e, weights), edf_at(dup, e))


def test_edf_ties_and_weight_normalization():
    e, F = edf([3.0, 1.0, 2.0, 2.0], weights=[2.0, 2.0, 1.0, 3.0])
    assert e.tolist() == [1.0, 2.0, 2.0, 3.0]
    assert F.tolist() == pytest.approx([0.25, 0.75, 0.75, 1.0])


def test_edf_at_steps():
    assert edf_at([1.0, 2.0, 3.0], [0.0, 1.0, 1.5, 3.0, 9.0]).tolist() == pytest.approx(
        [0, 1 / 3, 1 / 3, 1, 1]
    )


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-100, 100), min_size=1, max_size=25))
def test_weighted_median_equal_weights_is_numpy_median(values):
    assert weighted_median(values, np.ones(len(values))) == pytest.approx(np.median(values))
    assert weighted_median(values) == pytest.approx(np.median(values))
    assert weighted_mean(values, np.full(len(values), 3.0)) == pytest.approx(np.mean(values))


@pytest.mark.parametrize(
    ("errors", "weights", "match"),
    [
        ([], None, "empty"),
        ([1.0, np.nan], None, "NaN"),
        ([[1.0, 2.0]], None, "one-dimensional"),
        ([1.0, 2.0], [1.0], "one entry per error"),
        ([1.0, 2.0], [1.0, -1.0], "non-negative"),
        ([1.0, 2.0], [0.0, 0.0], "sum to zero"),
    ],
)
def test_edf_rejects_bad_input(errors, weights, match):
    with pytest.raises(ValueError, match=match):
        edf(errors, weights)
