"""Datasets as device-resident tensors: digits, CIFAR-10/100, image folders and a synthetic task; and prepared
stores (`store`, written once by `prepare`) of fixed-size uint8 images.

Every loader returns a `DataSplits` whose train/val/test tensors are normalized with the per-channel
statistics of the train split (`splits`). Validation is always carved from the training data (searches are
scored on it); the test split is held out and reported separately. Nothing here downloads anything. One
module per source (`bundled`: digits and synthetic, `cifar`, `imagefolder`); `load_dataset` (`load`) picks
the source a spec names. The names below are imported on first use, so `prepare` and the store reader (numpy
and Pillow only) do not pay for torch.

Example:
    >>> splits = load_dataset("digits", resolution=16, seed=0)
    >>> tuple(splits.train_x.shape[1:]), splits.num_classes
    ((1, 16, 16), 10)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anynet_search.errors import DatasetError
    from anynet_search.training.data.bundled import DEFAULT_SYNTHETIC_N, synthetic_images
    from anynet_search.training.data.holdout import TEST_FRACTION
    from anynet_search.training.data.imagefolder import IMAGE_EXTENSIONS
    from anynet_search.training.data.load import dataset_names, load_dataset
    from anynet_search.training.data.splits import DataSplits

_HOMES = {  # name -> its module (relative to this package, or absolute)
    "DEFAULT_SYNTHETIC_N": ".bundled", "synthetic_images": ".bundled", "IMAGE_EXTENSIONS": ".imagefolder",
    "dataset_names": ".load", "load_dataset": ".load", "TEST_FRACTION": ".holdout", "DataSplits": ".splits",
    "DatasetError": "anynet_search.errors",
}

__all__ = ["DEFAULT_SYNTHETIC_N", "IMAGE_EXTENSIONS", "TEST_FRACTION", "DataSplits", "DatasetError",
           "dataset_names", "load_dataset", "synthetic_images"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
