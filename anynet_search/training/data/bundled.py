"""The data sets that need no files: scikit-learn's bundled digits and a deterministic synthetic task."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from anynet_search.training.data.splits import (
    TEST_FRACTION,
    DataSplits,
    data_digest,
    normalize,
    split_arrays,
    stratified_holdout,
)

DEFAULT_SYNTHETIC_N = 512


# ----------------------------------------------------------------------------------------------------------
# digits


@functools.lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """Decode scikit-learn's bundled digits once per process (read-only arrays: callers copy)."""
    # Importing sklearn.datasets costs ~2 s (scipy etc.) in every training worker, so read the bundled
    # file directly and fall back to the public loader if its layout ever changes.
    try:
        raw = _digits_file()
        x, y = raw[:, :64].reshape(-1, 8, 8), raw[:, 64]
    except (OSError, ValueError, IndexError):
        from sklearn.datasets import load_digits as sklearn_digits

        bunch = sklearn_digits()
        x, y = bunch.images, bunch.target
    x = np.ascontiguousarray(x[:, None], dtype=np.float32)  # (1797, 1, 8, 8), values 0..16
    y = np.ascontiguousarray(y, dtype=np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _digits_file() -> np.ndarray:
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise OSError("scikit-learn is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    raw = np.loadtxt(path, delimiter=",")
    if raw.shape != (1797, 65):
        raise ValueError(f"unexpected digits layout {raw.shape}")
    return raw


def load_digits(resolution: int, seed: int, val_fraction: float) -> DataSplits:
    """scikit-learn's 8x8 digits (1797 images) at `resolution`, split and normalized."""
    x, y = _digits_raw()
    # Digits are not mirror-symmetric (a flipped 2 is no 2), so flip augmentation is off.
    return split_arrays("digits", x, y, 16.0, resolution, seed, val_fraction, 10, flip=False)


# ----------------------------------------------------------------------------------------------------------
# synthetic


def load_synthetic(n: int, resolution: int, seed: int, val_fraction: float) -> DataSplits:
    """`n` synthetic images (`synthetic_images`) split into train/val/test and normalized."""
    x, y = synthetic_images(n, resolution)
    rng = np.random.default_rng(seed)
    rest, test_idx = stratified_holdout(y.numpy(), TEST_FRACTION, rng)
    train_idx, val_idx = stratified_holdout(y.numpy()[rest], val_fraction, rng)
    train_idx, val_idx = rest[train_idx], rest[val_idx]

    def pair(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.from_numpy(idx)
        return x[t], y[t]  # advanced indexing copies, so splits never share storage

    return normalize(f"synthetic:{n}", pair(train_idx), pair(val_idx), pair(test_idx), 10, flip=True,
                     digest=data_digest(x, y))


def synthetic_images(n: int, resolution: int, num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Return `n` deterministic class-conditional RGB images (float32, unnormalized) and int64 labels."""
    # The images are a fixed function of (n, resolution): `seed` in load_dataset only picks the split, as it
    # does for every other dataset, so models trained under different seeds face the same task.
    g = torch.Generator().manual_seed(20200330)
    coarse = torch.randn((num_classes, 3, 5, 5), generator=g)
    templates = F.interpolate(coarse, size=(resolution, resolution), mode="bicubic", align_corners=False)
    # Mirror-symmetric templates make the class distribution flip-invariant, so flip=True is honest and the
    # task exercises the same augmentation path as CIFAR.
    templates = 0.5 * (templates + templates.flip(-1))
    templates = templates / templates.flatten(1).std(dim=1).view(-1, 1, 1, 1)
    y = torch.arange(n) % num_classes
    y = y[torch.randperm(n, generator=g)]
    # Per-sample contrast, translation and pixel noise keep it from being solvable by one linear template
    # match, while a small CNN still learns it within a few epochs.
    amp = 0.6 + 0.8 * torch.rand((n, 1, 1, 1), generator=g)
    max_shift = max(1, resolution // 8)
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=g)
    x = torch.empty((n, 3, resolution, resolution))
    for dy in range(-max_shift, max_shift + 1):  # loop over shift values (few), not samples
        for dx in range(-max_shift, max_shift + 1):
            sel = ((shifts[:, 0] == dy) & (shifts[:, 1] == dx)).nonzero().flatten()
            if len(sel):
                x[sel] = templates[y[sel]].roll(shifts=(dy, dx), dims=(-2, -1))
    x.mul_(amp).add_(torch.randn(x.shape, generator=g), alpha=1.2)
    return x, y.to(torch.int64)

