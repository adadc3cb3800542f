"""`load_dataset`: a data set spec (`digits`, `synthetic:N`, `cifar10:PATH`, ...) to its loader."""

from __future__ import annotations

import numbers

import numpy as np

from anynet_search.training.data.bundled import DEFAULT_SYNTHETIC_N, load_digits, load_synthetic
from anynet_search.training.data.cifar import CIFAR_LAYOUTS, load_cifar
from anynet_search.training.data.imagefolder import load_imagefolder
from anynet_search.training.data.prepared import load_prepared
from anynet_search.training.data.splits import DatasetError, DataSplits

_SPEC_FORMS = ["digits", "synthetic", "synthetic:N", "cifar10:PATH", "cifar100:PATH", "imagefolder:PATH",
               "prepared:DIR"]
#: sources too large to decode in every process: `anynet-search prepare` reads them into a store once
PREPARE_ONLY = ("imagenet", "downsampled-imagenet")


def dataset_names() -> list[str]:
    """Return the accepted dataset spec forms, for help text."""
    return list(_SPEC_FORMS)


def load_dataset(spec: str, resolution: int, seed: int = 0, val_fraction: float = 0.1) -> DataSplits:
    """Load the dataset named by `spec` at `resolution` px with a seeded validation split."""
    spec = str(spec).strip()
    kind, sep, arg = spec.partition(":")
    kind = kind.strip().lower()
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution <= 0:
        raise DatasetError(f"dataset {spec!r}: resolution must be a positive integer, got {resolution!r}")
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, numbers.Real)
        or not 0 < val_fraction < 1
    ):
        raise DatasetError(f"dataset {spec!r}: val_fraction must be in (0, 1), got {val_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(f"dataset {spec!r}: seed must be a non-negative integer, got {seed!r}")
    resolution = int(resolution)
    if kind == "digits" and not sep:
        return load_digits(resolution, seed, val_fraction)
    if kind == "synthetic":
        return load_synthetic(_synthetic_n(spec, arg if sep else None), resolution, seed, val_fraction)
    if kind in CIFAR_LAYOUTS and sep and arg.strip():
        return load_cifar(kind, arg.strip(), resolution, seed, val_fraction)
    if kind == "imagefolder" and sep and arg.strip():
        return load_imagefolder(arg.strip(), resolution, seed, val_fraction)
    if kind == "prepared" and sep and arg.strip():
        return load_prepared(arg.strip(), resolution, seed, val_fraction)
    if kind in PREPARE_ONLY and sep and arg.strip():
        raise DatasetError(f"{spec}: {kind} is read by `anynet-search prepare` only (decoded once, not in every "
                           f"process): anynet-search prepare {spec} --out DIR --resolution {resolution}, then "
                           "--dataset prepared:DIR")
    raise DatasetError(f"unknown dataset spec {spec!r}; accepted forms: {', '.join(_SPEC_FORMS)}")


def _synthetic_n(spec: str, arg: str | None) -> int:
    """The N of `synthetic:N` (DEFAULT_SYNTHETIC_N for plain `synthetic`); DatasetError below 50."""
    if arg is None:
        return DEFAULT_SYNTHETIC_N
    try:
        n = int(arg.strip())
    except ValueError:
        n = -1
    if n < 50:
        raise DatasetError(
            f"dataset {spec!r}: N must be an integer >= 50 (images in total); "
            f"accepted forms: {', '.join(_SPEC_FORMS)}"
        )
    return n
