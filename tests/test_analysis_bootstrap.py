"""EDF confidence bands and the vectorized resampling helpers."""

import numpy as np
import pytest

from anynet_search.analysis import (
    edf_at,
    edf_band,
    effective_sample_size,
    normalized_weights,
    resample_counts,
)


def test_band_columns_and_point_estimate():
    rng = np.random.default_rng(0)
    e = rng.normal(40, 2, 300)
    band = edf_band(e, n_boot=300)
    assert list(band.columns) == ["error", "F", "lo", "hi"]
    assert band["error"].tolist() == sorted(set(e.tolist()))
    assert np.allclose(band["F"], edf_at(e, band["error"]))
    assert (band["lo"] <= band["hi"]).all()
    assert ((band["lo"] <= band["F"] + 1e-12) & (band["F"] <= band["hi"] + 1e-12)).mean() > 0.95
    assert band["lo"].is_monotonic_increasing and band["hi"].is_monotonic_increasing


def test_band_width_matches_binomial_theory():
    rng = np.random.default_rng(1)
    n = 400
    e = rng.normal(0, 1, n)
    band = edf_band(e, grid=[0.0], n_boot=2000)
    half_width = float(band["hi"].iloc[0] - band["lo"].iloc[0]) / 2
    f = float(band["F"].iloc[0])
    assert half_width == pytest.approx(1.96 * np.sqrt(f * (1 - f) / n), rel=0.15)


def test_weighted_band_uses_effective_sample_size():
    """Two flops bins of 900 and 100 models: normalized weights leave n_eff = 360, and the band widens to match."""
    rng = np.random.default_rng(2)
    flops = np.r_[np.full(900, 1e8), np.full(100, 1e9)]
    e = rng.normal(0, 1, 1000)
    w = normalized_weights(flops, bins=2)
    assert effective_sample_size(w) == pytest.approx(360.0)
    band = edf_band(e, weights=w, grid=[0.0], n_boot=2000)
    f = float(band["F"].iloc[0])
    half_width = float(band["hi"].iloc[0] - band["lo"].iloc[0]) / 2
    assert half_width == pytest.approx(1.96 * np.sqrt(f * (1 - f) / 360), rel=0.15)


def test_band_is_reproducible_and_validates():
    e = np.arange(50.0)
    assert edf_band(e, n_boot=50, seed=3).equals(edf_band(e, n_boot=50, seed=3))
    with pytest.raises(ValueError, match="level"):
        edf_band(e, level=1.5)
    with pytest.raises(ValueError, match="n_boot"):
        edf_band(e, n_boot=0)
    with pytest.raises(ValueError, match="NaN"):
        edf_band([1.0, np.nan])


def test_resample_counts_chunks_cover_every_resample():
    rng = np.random.default_rng(0)
    chunks = list(resample_counts(rng, n_rows=7, n_draw=7, n_boot=23, chunk_elements=20))
    counts = np.concatenate(chunks)
    assert len(chunks) > 1 and counts.shape == (23, 7)
    assert (counts.sum(axis=1) == 7).all()
