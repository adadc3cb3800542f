"""Size of a design space inside its complexity band (`anynet_search.spaces.band`): the estimate agrees with
exact enumeration on a space small enough to enumerate, and its draws are uniform over the space's tuples."""

import itertools

import numpy as np
import pytest
import yaml
from scipy import stats

from anynet_search.spaces import load_space
from anynet_search.spaces.band import _uniform_stage_values, band_shrink, band_size
from anynet_search.spaces.schema import ANYNET_PARAMS

SMALL = {"d": {"values": [1, 2]}, "w": {"values": [8, 16, 24]}, "b": {"values": [1, 2]}, "g": {"values": [1, 2]}}


def _space(tmp_path, name, constraints, band=None):
    data = {"description": name, "extends": "anynet_xa_tiny", "parameters": SMALL, "constraints": constraints}
    data["band"] = {"flops": list(band)} if band else None  # None: no band at all
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_space(str(path))


def _all_tuples(space):
    """Every tuple of the space's grid (constraints applied), resolved and counted: (count, flops)."""
    grids = {n: space.params[n].values for n in ANYNET_PARAMS}
    rows = np.array(list(itertools.product(*[grids[n] for n in ANYNET_PARAMS for _ in range(4)])))
    raw = {n: rows[:, 4 * i : 4 * i + 4] for i, n in enumerate(ANYNET_PARAMS)}
    batch = space._resolve_anynet(raw)
    space._mask_rules(batch)
    for n in space.shared:
        batch.masks[f"shared {n}"] = (raw[n] == raw[n][:, :1]).all(axis=1)
    ok = np.all([np.ones(len(rows), dtype=bool), *batch.masks.values()], axis=0)
    return int(ok.sum()), space._metrics(batch, ok)[0]


@pytest.mark.parametrize("constraints", [{}, {"non_decreasing": ["w", "d"]}, {"shared": ["b"]}])
def test_estimate_matches_exact_enumeration(tmp_path, constraints):
    free = _space(tmp_path, "free", constraints)
    count, flops = _all_tuples(free)
    assert np.log10(count) == pytest.approx(free.log10_size)  # the enumeration counts what the space counts
    lo, hi = np.quantile(flops, [0.3, 0.8])
    banded = _space(tmp_path, "banded", constraints, band=(float(lo), float(hi)))
    exact = np.log10(((flops >= lo) & (flops <= hi)).sum())
    est = band_size(banded, draws=1 << 16, seed=1)
    assert est.drawn >= 1 << 16 and est.lo <= est.log10_size <= est.hi
    assert abs(est.log10_size - exact) <= 4 * est.se
    assert est.hi - est.lo < 0.05


def test_non_decreasing_draws_are_uniform_over_the_allowed_sequences(tmp_path):
    space = _space(tmp_path, "nd", {"non_decreasing": ["w"]})
    w = _uniform_stage_values(space, "w", 60_000, np.random.default_rng(2))
    assert (np.diff(w, axis=1) >= 0).all()
    _, counts = np.unique(w, axis=0, return_counts=True)
    assert counts.size == 15  # C(3 + 4 - 1, 4) non-decreasing sequences of 3 values over 4 stages
    assert stats.chisquare(counts).pvalue > 1e-3


def test_no_band_is_the_exact_count_and_shrink_carries_both_errors(tmp_path):
    free = _space(tmp_path, "free", {})
    exact = band_size(free)
    assert exact.log10_size == exact.lo == exact.hi == free.log10_size and exact.se == 0
    a, b = band_size(load_space("anynet_xa_tiny"), draws=1 << 16), band_size(load_space("anynet_xb_tiny"), draws=1 << 16)
    est, lo, hi = band_shrink(a, b)
    assert est == pytest.approx(a.log10_size - b.log10_size) and lo < est < hi
    assert (hi - est) == pytest.approx(1.959964 * np.hypot(a.se, b.se))
