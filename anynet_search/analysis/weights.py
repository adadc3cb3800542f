"""Complexity normalization (ICCV 2019): weights that give every complexity bin the same total mass.

One rule for every caller: a normalized EDF over k bins gives a model in bin j (holding m_j models) the
weight 1/(k m_j), so each bin carries mass 1/k (`bin_weights`). What an empty bin does:

- one sample over bins fixed in advance (`weights_from_bins`, `normalized_weights`): an empty bin raises,
  because its mass 1/k would be lost and the weights would no longer sum to 1;
- two samples compared with each other (`compare_edfs`, the permutation KS test): the comparison runs
  over the bins *both* samples occupy (`shared_bins`), k counts those bins, and the models of a bin that
  the other sample leaves empty get weight 0, like models outside the range. Both EDFs then describe the
  same complexity distribution; a bin seen by one sample only has nothing to be compared with.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from anynet_search.analysis._checks import check_positive_int


def complexity_bins(
    values: ArrayLike, bins: int, value_range: tuple[float, float] | None = None, log: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Bin index (0..bins-1, or -1 outside `value_range`) of each value, and the bin edges (in value units).

    Bins are equal-width in log10(value) when `log` (flops span orders of magnitude), else in value.
    Bins are half-open [lo, hi) except the last one, which includes `value_range`'s upper end.
    """
    bins = check_positive_int(bins, "bins")
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"values must be a non-empty 1-D array, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"values contain {int((~np.isfinite(v)).sum())} NaN/infinite entries")
    if value_range is None:
        if log and (v <= 0).any():
            raise ValueError("log binning needs positive values; pass log=False or a positive value_range")
        lo, hi = float(v.min()), float(v.max())
    else:
        lo, hi = (float(x) for x in value_range)
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
            raise ValueError(f"value_range must be finite with low <= high, got {value_range!r}")
        if log and lo <= 0:
            raise ValueError(f"log binning needs a positive value_range, got {value_range!r}")
    inside = (v >= lo) & (v <= hi)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.log10(v) if log else v
    t_lo, t_hi = (np.log10(lo), np.log10(hi)) if log else (lo, hi)
    edges_t = np.linspace(t_lo, t_hi, bins + 1)
    if t_hi == t_lo:  # one distinct value: everything lands in bin 0, the other bins are empty
        idx = np.zeros(v.size, dtype=np.int64)
    else:
        idx = np.searchsorted(edges_t, t, side="right") - 1
        idx = np.clip(idx, 0, bins - 1)
    idx = np.where(inside, idx, -1)
    edges = 10.0**edges_t if log else edges_t
    edges[0], edges[-1] = lo, hi
    return idx, edges


def bin_weights(strata: ArrayLike, bins: ArrayLike | None = None) -> np.ndarray:
    """Weights 1/(k m_j) over the k compared bins (ICCV 2019); 0 for a model in no compared bin.

    `strata` holds each model's bin label (-1: outside the range); `bins` the labels of the compared bins
    (default: every bin `strata` occupies). Raises ValueError when a compared bin holds no model.

    >>> bin_weights(np.array([0, 0, 1, -1])).tolist()
    [0.25, 0.25, 0.5, 0.0]
    >>> bin_weights(np.array([0, 0, 1, 2]), bins=[0, 1]).tolist()  # bin 2 is not compared
    [0.25, 0.25, 0.5, 0.0]
    """
    z = np.asarray(strata, dtype=np.int64)
    compared = np.unique(z[z >= 0]) if bins is None else np.unique(np.asarray(bins, dtype=np.int64))
    size = int(max(z.max(initial=-1), compared.max(initial=-1))) + 1
    counts = np.bincount(z[z >= 0], minlength=size)
    if (counts[compared] == 0).any():
        raise ValueError(f"compared bin {int(compared[counts[compared] == 0][0])} holds no model")
    member = np.zeros(size, dtype=bool)
    member[compared] = True
    w = np.zeros(z.size)
    chosen = (z >= 0) & member[np.maximum(z, 0)]
    w[chosen] = 1.0 / (compared.size * counts[z[chosen]])
    return w


def shared_bins(*strata: ArrayLike) -> np.ndarray:
    """Labels of the bins every sample occupies (label -1, outside the range, never counts)."""
    sets = [np.unique(np.asarray(z, dtype=np.int64)) for z in strata]
    out = sets[0]
    for s in sets[1:]:
        out = np.intersect1d(out, s)
    return out[out >= 0]


def weights_from_bins(bin_index: np.ndarray, bins: int, edges: np.ndarray | None = None) -> np.ndarray:
    """Weights 1/(k*m_j) for a model in bin j with m_j members (k = bins); -1 (outside) gets 0.

    Raises ValueError naming the first empty bin (with its value range when `edges` is given).
    """
    inside = bin_index >= 0
    counts = np.bincount(bin_index[inside], minlength=bins)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        j = int(empty[0])
        where = f" [{edges[j]:.4g}, {edges[j + 1]:.4g}]" if edges is not None else ""
        raise ValueError(
            f"complexity bin {j} of {bins}{where} is empty ({empty.size} empty in all); "
            "use fewer bins or a narrower value_range"
        )
    return bin_weights(bin_index, np.arange(bins))


def normalized_weights(
    values: ArrayLike, bins: int, value_range: tuple[float, float] | None = None, log: bool = True
) -> np.ndarray:
    """Complexity-normalized weights: bin j's m_j models get 1/(k*m_j) each, so each of k bins has mass 1/k.

    `values` is the complexity of each model (flops by default in the callers), `value_range` defaults to
    [min, max] of the values, and values outside it get weight 0. The weights sum to 1.

    >>> normalized_weights([1e6, 1e6, 1e6, 1e8], bins=2).tolist()
    [0.16666666666666666, 0.16666666666666666, 0.16666666666666666, 0.5]
    """
    idx, edges = complexity_bins(values, bins, value_range, log)
    return weights_from_bins(idx, bins, edges)
