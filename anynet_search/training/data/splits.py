"""What every loader ends with: the held-out splits, normalization with the train split's statistics, and
the `DataSplits` that carries them; plus `DatasetError`, the one error a data set spec, path or file gives."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from anynet_search.errors import DatasetError
from anynet_search.training.data.holdout import TEST_FRACTION, stratified_holdout


@dataclass(frozen=True)
class DataSplits:
    """The train/val/test tensors of one dataset plus what a model needs to know about them.

    Two forms. In memory: float32 (N, C, R, R) tensors, already normalized, one per split. From a prepared
    store (`training.data.prepared`): every `*_x` is the same uint8 (N, S, S, C) image tensor (memory-mapped, or
    uploaded once to a device), every `*_y` the same labels, and `*_rows` say which rows each split holds;
    the trainer converts, normalizes (`mean`, `std`) and crops batches on the device (`training.inputs`).
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    in_channels: int
    resolution: int
    flip: bool
    # The train-split statistics already applied to every split, so raw images can be normalized the same
    # way at inference time (e.g. by an exported model).
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    # rows of `*_x` / `*_y` that make each split (None: all of them); set for prepared stores
    train_rows: torch.Tensor | None = None
    val_rows: torch.Tensor | None = None
    test_rows: torch.Tensor | None = None
    # sha256 of the data read (a store's content digest): studies record it, comparisons check it
    digest: str = ""

    @property
    def raw(self) -> bool:
        """Whether the images are uint8 rows of a store (normalized by the trainer) rather than normalized floats."""
        return self.train_x.dtype == torch.uint8

    @property
    def side(self) -> int:
        """Side of the stored images: `resolution`, or larger where evaluation center-crops `resolution`."""
        return int(self.train_x.shape[1] if self.raw else self.train_x.shape[-1])

    def split_size(self, split: str) -> int:
        """Images in `split` (train, val or test)."""
        rows = getattr(self, f"{split}_rows")
        return int(rows.numel() if rows is not None else getattr(self, f"{split}_x").shape[0])

    def to(self, device: torch.device | str) -> DataSplits:
        """Return a copy with every tensor moved to `device` (a tensor shared by several fields moves once)."""
        moved: dict[int, torch.Tensor] = {}
        fields = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                if id(value) not in moved:
                    moved[id(value)] = value.to(device)
                fields[f.name] = moved[id(value)]
        return dataclasses.replace(self, **fields)


def data_digest(*arrays: np.ndarray | torch.Tensor | None) -> str:
    """sha256 of what a loader read (its arrays' dtypes, shapes and bytes, in order): the data set's fingerprint,
    independent of the split seed."""
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            continue
        arr = np.ascontiguousarray(a.numpy() if isinstance(a, torch.Tensor) else a)
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def normalize(
    name: str,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    flip: bool,
    digest: str = "",
) -> DataSplits:
    """Normalize all splits in place with the train split's per-channel mean/std and package them."""
    if len(train[0]) == 0 or len(val[0]) == 0 or len(test[0]) == 0:
        sizes = f"train={len(train[0])}, val={len(val[0])}, test={len(test[0])}"
        raise DatasetError(f"dataset {name!r} is too small to split ({sizes}); add more images")
    train_x = train[0]
    mean, std = channel_stats(train_x)
    shape = (1, -1, 1, 1)
    m, s = mean.to(train_x.dtype).view(shape), std.to(train_x.dtype).view(shape)
    for x in (train[0], val[0], test[0]):
        x.sub_(m).div_(s)
    return DataSplits(
        name=name,
        train_x=train[0],
        train_y=train[1],
        val_x=val[0],
        val_y=val[1],
        test_x=test[0],
        test_y=test[1],
        num_classes=num_classes,
        in_channels=int(train_x.shape[1]),
        resolution=int(train_x.shape[-1]),
        flip=flip,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        digest=digest,
    )


def channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) std, accumulated in float64 chunk by chunk to bound memory."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    total_sq = torch.zeros(x.shape[1], dtype=torch.float64)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].double()
        total += part.sum(dim=(0, 2, 3))
        total_sq += part.square().sum(dim=(0, 2, 3))
    count = x.numel() / x.shape[1]
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0.0)
    return mean, var.sqrt().clamp_min(1e-6)  # a constant channel must not divide by zero


def to_float(images: np.ndarray, scale: float, resolution: int, chunk: int = 4096) -> torch.Tensor:
    """Convert (N, C, H, W) numeric images to a fresh float32 tensor in [0, 1]-ish at `resolution`."""
    n, c = images.shape[:2]
    out = torch.empty((n, c, resolution, resolution), dtype=torch.float32)
    # Chunked so a large uint8 array never becomes one huge float temporary at the source resolution.
    for start in range(0, n, chunk):
        part = torch.from_numpy(np.array(images[start : start + chunk], dtype=np.float32)).div_(scale)
        if part.shape[-2:] != (resolution, resolution):
            part = F.interpolate(
                part, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False
            )
        out[start : start + len(part)] = part
    return out


def split_arrays(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    scale: float,
    resolution: int,
    seed: int,
    val_fraction: float,
    num_classes: int,
    flip: bool,
    test: tuple[np.ndarray, np.ndarray] | None = None,
) -> DataSplits:
    """Carve test (unless given) and validation splits from (x, y), then convert and normalize."""
    digest = data_digest(x, y, *(test or ()))
    rng = np.random.default_rng(seed)
    if test is None:
        rest, test_idx = stratified_holdout(y, TEST_FRACTION, rng)
        test = (x[test_idx], y[test_idx])
        x, y = x[rest], y[rest]
    train_idx, val_idx = stratified_holdout(y, val_fraction, rng)

    def pair(xs: np.ndarray, ys: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return to_float(xs, scale, resolution), torch.from_numpy(np.asarray(ys, dtype=np.int64).copy())

    return normalize(
        name, pair(x[train_idx], y[train_idx]), pair(x[val_idx], y[val_idx]), pair(*test), num_classes, flip, digest
    )

