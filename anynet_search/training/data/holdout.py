"""The held-out share of a data set without an official test split, carved per class (no torch: `prepare` and
the loaders share it)."""

from __future__ import annotations

import numpy as np

TEST_FRACTION = 0.2  # held-out share for datasets without an official test split


def stratified_holdout(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices of `y` into (keep, holdout) with ~`fraction` of every class held out."""
    classes, counts = np.unique(y, return_counts=True)
    quota = fraction * counts
    take = np.floor(quota).astype(np.int64)
    # Largest-remainder rounding makes the total exactly round(fraction * N) while staying per-class fair.
    missing = int(round(fraction * len(y))) - int(take.sum())
    if missing > 0:
        order = np.lexsort((rng.random(len(classes)), -(quota - take)))
        take[order[:missing]] += 1
    # Never empty a class out of the kept part: a class with one sample stays in training.
    take = np.minimum(take, np.maximum(counts - 1, 0))
    keep, hold = [], []
    # each class's indices in ascending order (what np.flatnonzero(y == c) gives) from one stable sort: one pass
    # over y instead of one per class (ImageNet: 1.28 M labels, 1,000 classes)
    grouped = np.argsort(y, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    for start, count, k in zip(starts, counts, take, strict=True):
        idx = rng.permutation(grouped[start : start + count])
        hold.append(idx[:k])
        keep.append(idx[k:])
    # Shuffle across classes so no consumer sees class-sorted data.
    keep_idx = rng.permutation(np.concatenate(keep))
    hold_idx = rng.permutation(np.concatenate(hold)) if hold else np.empty(0, np.int64)
    return keep_idx.astype(np.int64), hold_idx.astype(np.int64)
