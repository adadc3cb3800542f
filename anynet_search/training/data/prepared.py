"""`prepared:DIR`: a store written by `anynet-search prepare`, memory-mapped instead of decoded.

The process reads the manifest, the labels and the splits (validated by `store.open_store`); the images stay
in the file: `train_x`, `val_x` and `test_x` are one copy-on-write memory map of uint8 rows that every
process on the machine shares through the page cache, and the splits are row indices into it. The test split
is the store's own; the validation split is carved from its train rows with the study's seed, as for every
other data set. Normalization (with the store's train statistics) and cropping happen in the training step.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from anynet_search.training.data.splits import DatasetError, DataSplits, stratified_holdout
from anynet_search.training.data.store import TEST, TRAIN, open_store


def load_prepared(arg: str, resolution: int, seed: int, val_fraction: float) -> DataSplits:
    """The store at `arg` as `DataSplits` of memory-mapped uint8 rows; DatasetError (one line) when it is missing,
    unfinished, damaged or prepared for another resolution."""
    root = Path(arg).expanduser()
    spec = f"prepared:{arg}"
    store = open_store(root, spec)
    if store.resolution != resolution:
        raise DatasetError(
            f"{spec}: the store was prepared for {store.resolution} px but the space trains at {resolution} px; "
            f"prepare the data again with --resolution {resolution}, or pick a space at {store.resolution} px"
        )
    train_rows = np.flatnonzero(store.splits == TRAIN)
    test_rows = np.flatnonzero(store.splits == TEST)
    keep, hold = stratified_holdout(store.labels[train_rows], val_fraction, np.random.default_rng(seed))
    # sorted rows: evaluation and the page cache read the file front to back (training draws its own order)
    rows = {"train": np.sort(train_rows[keep]), "val": np.sort(train_rows[hold]), "test": test_rows}
    if len(rows["train"]) < 2 or not len(rows["val"]) or not len(rows["test"]):
        sizes = ", ".join(f"{k}={len(v)}" for k, v in rows.items())
        raise DatasetError(f"dataset {spec!r} is too small to split ({sizes}); add more images")
    images = torch.from_numpy(store.images)  # the memory map itself: no copy
    labels = torch.from_numpy(store.labels)
    return DataSplits(
        name=f"prepared:{os.fspath(root.resolve())}",
        train_x=images,
        train_y=labels,
        val_x=images,
        val_y=labels,
        test_x=images,
        test_y=labels,
        num_classes=len(store.classes),
        in_channels=store.channels,
        resolution=store.resolution,
        flip=bool(store.manifest.get("flip", True)),
        mean=store.mean,
        std=store.std,
        train_rows=torch.from_numpy(rows["train"].astype(np.int64)),
        val_rows=torch.from_numpy(rows["val"].astype(np.int64)),
        test_rows=torch.from_numpy(rows["test"].astype(np.int64)),
        digest=store.digest,
    )
