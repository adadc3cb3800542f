"""Complexity normalization: equal mass per bin, zero outside the range, empty-bin errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anynet_search.analysis import complexity_bins, normalized_weights


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 8))
def test_weights_sum_to_one_and_equalize_bins(seed, bins):
    rng = np.random.default_rng(seed)
    flops = 10 ** rng.uniform(8, 10, 300) * rng.choice([1.0, 3.0], 300)  # lopsided histogram
    try:
        w = normalized_weights(flops, bins)
    except ValueError as exc:
        assert "is empty" in str(exc)
        return
    assert w.sum() == pytest.approx(1.0)
    idx, _ = complexity_bins(flops, bins)
    per_bin = np.bincount(idx, weights=w, minlength=bins)
    assert np.allclose(per_bin, 1.0 / bins)
    # Within a bin every model weighs the same.
    for j in range(bins):
        assert np.ptp(w[idx == j]) == pytest.approx(0.0)


def test_log_bins_follow_orders_of_magnitude():
    values = [1e6, 1e6, 1e6, 1e8]
    assert normalized_weights(values, bins=2).tolist() == pytest.approx([1 / 6, 1 / 6, 1 / 6, 1 / 2])
    # Linear bins split [1e6, 1e8] at ~5e7: same answer here, but 2e7 moves bins under log binning.
    lin, _ = complexity_bins([1e6, 2e7, 1e8], 2, log=False)
    log, _ = complexity_bins([1e6, 2e7, 1e8], 2, log=True)
    assert lin.tolist() == [0, 0, 1]
    assert log.tolist() == [0, 1, 1]


def test_outside_range_gets_zero_weight():
    w = normalized_weights([1.0, 10.0, 100.0, 1000.0], bins=2, value_range=(5.0, 500.0))
    assert w.tolist() == pytest.approx([0.0, 0.5, 0.5, 0.0])


def test_empty_bin_is_named():
    with pytest.raises(
        ValueError, match=r"complexity bin 1 of 3 .* is empty.*fewer bins or a narrower value_range"
    ):
        normalized_weights([1.0, 1.5, 100.0], bins=3)


@pytest.mark.parametrize(
    ("values", "kwargs", "match"),
    [
        ([1.0, np.nan], {"bins": 2}, "NaN"),
        ([0.0, 1.0], {"bins": 2}, "positive"),
        ([1.0, 2.0], {"bins": 0}, "bins"),
        ([1.0, 2.0], {"bins": 1, "value_range": (3.0, 2.0)}, "low <= high"),
    ],
)
def test_bad_input(values, kwargs, match):
    with pytest.raises(ValueError, match=match):
        normalized_weights(values, **kwargs)
