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


def test_one_weighting_rule_and_what_an_empty_bin_does():
    """ICCV 2019: weight 1/(k m_j) over the k compared bins. One sample over fixed bins: an empty bin raises.
    Two samples: both compare only the bins both occupy (k counts those), the rest weigh 0."""
    from anynet_search.analysis import bin_weights, shared_bins, weights_from_bins

    a = np.array([0, 0, 1, 2, 2, 2, -1])
    b = np.array([0, 1, 1, 1])
    assert bin_weights(a).tolist() == pytest.approx([1 / 6, 1 / 6, 1 / 3, 1 / 9, 1 / 9, 1 / 9, 0.0])
    both = shared_bins(a, b)
    assert both.tolist() == [0, 1]
    assert bin_weights(a, both).tolist() == pytest.approx([0.25, 0.25, 0.5, 0, 0, 0, 0])
    assert bin_weights(b, both).tolist() == pytest.approx([0.5, 1 / 6, 1 / 6, 1 / 6])
    assert bin_weights(b, both).sum() == pytest.approx(1.0) and bin_weights(a, both).sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="compared bin 2 holds no model"):
        bin_weights(b, [0, 1, 2])
    with pytest.raises(ValueError, match="complexity bin 2 of 3 .* is empty"):
        weights_from_bins(b, 3, np.array([1.0, 2.0, 3.0, 4.0]))
    assert weights_from_bins(a, 3).tolist() == pytest.approx(bin_weights(a, [0, 1, 2]).tolist())
