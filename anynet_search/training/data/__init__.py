"""Datasets as device-resident tensors: digits, CIFAR-10/100, image folders and a synthetic task.

Every loader returns a `DataSplits` whose train/val/test tensors are normalized with the per-channel
statistics of the train split (`splits`). Validation is always carved from the training data (searches are
scored on it); the test split is held out and reported separately. Nothing here downloads anything. One
module per source (`bundled`: digits and synthetic, `cifar`, `imagefolder`); `load_dataset` (`load`) picks
the source a spec names.

Example:
    >>> splits = load_dataset("digits", resolution=16, seed=0)
    >>> tuple(splits.train_x.shape[1:]), splits.num_classes
    ((1, 16, 16), 10)
"""

from anynet_search.training.data.bundled import DEFAULT_SYNTHETIC_N, synthetic_images
from anynet_search.training.data.imagefolder import IMAGE_EXTENSIONS
from anynet_search.training.data.load import dataset_names, load_dataset
from anynet_search.training.data.splits import TEST_FRACTION, DatasetError, DataSplits

__all__ = ["DEFAULT_SYNTHETIC_N", "IMAGE_EXTENSIONS", "TEST_FRACTION", "DataSplits", "DatasetError",
           "dataset_names", "load_dataset", "synthetic_images"]
