"""Datasets as device-resident tensors: digits, CIFAR-10/100, image folders and a synthetic task.

Every loader returns a `DataSplits` whose train/val/test tensors are normalized with the per-channel
statistics of the train split. Validation is always carved from the training data (searches are scored on
it); the test split is held out and reported separately. Nothing here downloads anything.

Example:
    >>> splits = load_dataset("digits", resolution=16, seed=0)
    >>> tuple(splits.train_x.shape[1:]), splits.num_classes
    ((1, 16, 16), 10)
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from anynet_search.errors import InputError

DEFAULT_SYNTHETIC_N = 512
TEST_FRACTION = 0.2  # held-out share for datasets without an official test split
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}
)

_CIFAR_LAYOUTS: dict[str, dict[str, Any]] = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test": ("test_batch",),
        "label_key": "labels",
        "num_classes": 10,
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ("train",),
        "test": ("test",),
        "label_key": "fine_labels",
        "num_classes": 100,
    },
}

_SPEC_FORMS = ["digits", "synthetic", "synthetic:N", "cifar10:PATH", "cifar100:PATH", "imagefolder:PATH"]


class DatasetError(InputError):
    """A dataset spec, path or file that cannot be loaded; the message is one line naming the culprit."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).splitlines()))  # one line, even when a cause had several


@dataclass(frozen=True)
class DataSplits:
    """Normalized train/val/test tensors of one dataset plus what a model needs to know about them."""

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

    def to(self, device: torch.device | str) -> DataSplits:
        """Return a copy with every tensor moved to `device`."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **moved)


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
        return _load_digits(resolution, seed, val_fraction)
    if kind == "synthetic":
        return _load_synthetic(spec, arg if sep else None, resolution, seed, val_fraction)
    if kind in _CIFAR_LAYOUTS and sep and arg.strip():
        return _load_cifar(kind, arg.strip(), resolution, seed, val_fraction)
    if kind == "imagefolder" and sep and arg.strip():
        return _load_imagefolder(arg.strip(), resolution, seed, val_fraction)
    raise DatasetError(f"unknown dataset spec {spec!r}; accepted forms: {', '.join(_SPEC_FORMS)}")


# ----------------------------------------------------------------------------------------------------------
# Splitting and normalization (shared by every loader)


def _stratified_holdout(
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
    for c, k in zip(classes, take, strict=True):
        idx = rng.permutation(np.flatnonzero(y == c))
        hold.append(idx[:k])
        keep.append(idx[k:])
    # Shuffle across classes so no consumer sees class-sorted data.
    keep_idx = rng.permutation(np.concatenate(keep))
    hold_idx = rng.permutation(np.concatenate(hold)) if hold else np.empty(0, np.int64)
    return keep_idx.astype(np.int64), hold_idx.astype(np.int64)


def _normalize(
    name: str,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    flip: bool,
) -> DataSplits:
    """Normalize all splits in place with the train split's per-channel mean/std and package them."""
    if len(train[0]) == 0 or len(val[0]) == 0 or len(test[0]) == 0:
        sizes = f"train={len(train[0])}, val={len(val[0])}, test={len(test[0])}"
        raise DatasetError(f"dataset {name!r} is too small to split ({sizes}); add more images")
    train_x = train[0]
    mean, std = _channel_stats(train_x)
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
    )


def _channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
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


def _to_float(images: np.ndarray, scale: float, resolution: int, chunk: int = 4096) -> torch.Tensor:
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


def _split_arrays(
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
    rng = np.random.default_rng(seed)
    if test is None:
        rest, test_idx = _stratified_holdout(y, TEST_FRACTION, rng)
        test = (x[test_idx], y[test_idx])
        x, y = x[rest], y[rest]
    train_idx, val_idx = _stratified_holdout(y, val_fraction, rng)

    def pair(xs: np.ndarray, ys: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return _to_float(xs, scale, resolution), torch.from_numpy(np.asarray(ys, dtype=np.int64).copy())

    return _normalize(
        name, pair(x[train_idx], y[train_idx]), pair(x[val_idx], y[val_idx]), pair(*test), num_classes, flip
    )


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
        from sklearn.datasets import load_digits

        bunch = load_digits()
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


def _load_digits(resolution: int, seed: int, val_fraction: float) -> DataSplits:
    x, y = _digits_raw()
    # Digits are not mirror-symmetric (a flipped 2 is no 2), so flip augmentation is off.
    return _split_arrays("digits", x, y, 16.0, resolution, seed, val_fraction, 10, flip=False)


# ----------------------------------------------------------------------------------------------------------
# synthetic


def _load_synthetic(
    spec: str, arg: str | None, resolution: int, seed: int, val_fraction: float
) -> DataSplits:
    n = DEFAULT_SYNTHETIC_N
    if arg is not None:
        try:
            n = int(arg.strip())
        except ValueError:
            n = -1
        if n < 50:
            raise DatasetError(
                f"dataset {spec!r}: N must be an integer >= 50 (images in total); "
                f"accepted forms: {', '.join(_SPEC_FORMS)}"
            )
    x, y = synthetic_images(n, resolution)
    rng = np.random.default_rng(seed)
    rest, test_idx = _stratified_holdout(y.numpy(), TEST_FRACTION, rng)
    train_idx, val_idx = _stratified_holdout(y.numpy()[rest], val_fraction, rng)
    train_idx, val_idx = rest[train_idx], rest[val_idx]

    def pair(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.from_numpy(idx)
        return x[t], y[t]  # advanced indexing copies, so splits never share storage

    return _normalize(f"synthetic:{n}", pair(train_idx), pair(val_idx), pair(test_idx), 10, flip=True)


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


# ----------------------------------------------------------------------------------------------------------
# CIFAR (python pickles, loaded with an allow-list unpickler)


def _numpy_attr(*candidates: str) -> Callable[[], Any]:
    """Lazily resolve the first importable `module:attr` (numpy moved `core` to `_core` in 2.0)."""

    def resolve() -> Any:
        import importlib
        import warnings

        for cand in candidates:
            module, _, attr = cand.partition(":")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    return getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError):
                continue
        raise ImportError(f"none of {candidates} is importable")

    return resolve


_RECONSTRUCT = _numpy_attr("numpy._core.multiarray:_reconstruct", "numpy.core.multiarray:_reconstruct")
_SCALAR = _numpy_attr("numpy._core.multiarray:scalar", "numpy.core.multiarray:scalar")
_FROMBUFFER = _numpy_attr("numpy._core.numeric:_frombuffer", "numpy.core.numeric:_frombuffer")


def _builtin(name: str) -> Callable[[], Any]:
    import builtins

    return lambda: getattr(builtins, name)


def _codecs_encode() -> Any:
    import codecs

    return codecs.encode


# Exactly what numpy arrays, numpy scalars and plain containers need across pickle protocols 0-5 and numpy
# 1.x/2.x. `_codecs.encode` is how Python 3 writes bytes at protocol < 3; it only transcodes strings.
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("_codecs", "encode"): _codecs_encode,
    **{
        (module, name): _builtin(name)
        for module in ("builtins", "__builtin__")  # Python 2 pickles name the module __builtin__
        for name in ("set", "frozenset", "bytearray", "complex", "slice")
    },
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only allow-listed globals, so a crafted file cannot run code."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        """Return the allow-listed global `module.name` or raise DatasetError naming it."""
        resolve = _ALLOWED_GLOBALS.get((module, name))
        if resolve is None:
            raise DatasetError(f"{self._path}: refusing to unpickle forbidden global {module}.{name}")
        return resolve()


def _unpickle(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            return _RestrictedUnpickler(fh, path).load()
    except DatasetError:
        raise
    except OSError as e:
        raise DatasetError(f"{path}: cannot read file ({e.strerror or e})") from e
    except Exception as e:  # corrupt pickles raise many types (UnpicklingError, EOFError, ValueError, ...)
        raise DatasetError(f"{path}: not a valid CIFAR pickle ({type(e).__name__}: {e})") from e


def _get(batch: dict, key: str, path: Path) -> Any:
    # encoding="bytes" yields bytes keys for the official (Python 2) files; Python 3 rewrites use str keys.
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise DatasetError(f"{path}: batch has no {key!r} entry (keys: {sorted(map(str, batch))})")


def _read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    data = _get(batch, "data", path)
    labels = _get(batch, label_key, path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise DatasetError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {desc}")
    try:
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{path}: {label_key!r} is not a list of integers") from e
    if len(y) != len(data):
        raise DatasetError(f"{path}: {len(data)} images but {len(y)} {label_key!r}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DatasetError(
            f"{path}: {label_key!r} must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]"
        )
    return data.reshape(-1, 3, 32, 32), y


def _cifar_folder(kind: str, arg: str) -> tuple[Path, list[Path]]:
    layout = _CIFAR_LAYOUTS[kind]
    root = Path(arg).expanduser()
    if not root.exists():
        raise DatasetError(f"{kind}:{arg}: path does not exist")
    if not root.is_dir():
        raise DatasetError(
            f"{kind}:{arg}: not a directory (expected the {layout['folder']} folder or its parent)"
        )
    folder = root / layout["folder"] if (root / layout["folder"]).is_dir() else root
    files = [folder / f for f in (*layout["train"], *layout["test"])]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        expected = ", ".join((*layout["train"], *layout["test"]))
        raise DatasetError(
            f"{kind}:{arg}: {folder} is missing {', '.join(missing)} "
            f"(expected the {layout['folder']} folder, or its parent, holding {expected})"
        )
    return folder, files


@functools.lru_cache(maxsize=2)
def _cifar_raw(kind: str, folder: str, stamp: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode one CIFAR folder once per process; `stamp` (file sizes/mtimes) invalidates stale entries."""
    layout = _CIFAR_LAYOUTS[kind]
    base = Path(folder)

    def read(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        parts = [_read_cifar_batch(base / n, layout["label_key"], layout["num_classes"]) for n in names]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    arrays = (*read(layout["train"]), *read(layout["test"]))
    for a in arrays:
        a.flags.writeable = False  # shared across calls: nobody may mutate the cached decode
    return arrays


def _load_cifar(kind: str, arg: str, resolution: int, seed: int, val_fraction: float) -> DataSplits:
    folder, files = _cifar_folder(kind, arg)
    stamp = tuple((f.name, st.st_size, st.st_mtime_ns) for f in files for st in [f.stat()])
    train_x, train_y, test_x, test_y = _cifar_raw(kind, str(folder.resolve()), stamp)
    num_classes = _CIFAR_LAYOUTS[kind]["num_classes"]
    return _split_arrays(
        kind,
        train_x,
        train_y,
        255.0,
        resolution,
        seed,
        val_fraction,
        num_classes,
        flip=True,
        test=(test_x, test_y),
    )


# ----------------------------------------------------------------------------------------------------------
# image folders


def _class_dirs(root: Path, spec: str) -> list[Path]:
    dirs = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name
    )
    if not dirs:
        raise DatasetError(
            f"{spec}: {root} has no class sub-folders (expected one folder of images per class)"
        )
    return dirs


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _read_images(files: list[Path], resolution: int) -> np.ndarray:
    from PIL import Image, ImageOps

    bilinear = getattr(Image, "Resampling", Image).BILINEAR  # Pillow < 9.1 has no Resampling enum
    out = np.empty((len(files), resolution, resolution, 3), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as img:
                img = img.convert("RGB")
                # Center-crop to square, then resize (antialiased): keeps aspect ratio like the usual
                # ImageNet-style pipelines instead of squashing non-square images.
                out[i] = np.asarray(ImageOps.fit(img, (resolution, resolution), bilinear))
        except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ... on bad files
            raise DatasetError(f"imagefolder: cannot read image {f} ({type(e).__name__}: {e})") from e
    return out.transpose(0, 3, 1, 2)


def _scan_classes(
    root: Path, spec: str, classes: list[str] | None = None
) -> tuple[list[str], list[Path], np.ndarray]:
    dirs = _class_dirs(root, spec)
    names = [d.name for d in dirs]
    if classes is None:
        classes = names
    else:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DatasetError(f"{spec}: {root} has classes {unknown} that the train folder lacks")
    index = {c: i for i, c in enumerate(classes)}
    files: list[Path] = []
    labels: list[int] = []
    for d in dirs:
        imgs = _image_files(d)
        if not imgs:
            exts = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise DatasetError(f"{spec}: class folder {d} has no images (looked for {exts})")
        files += imgs
        labels += [index[d.name]] * len(imgs)
    return classes, files, np.asarray(labels, dtype=np.int64)


def _load_imagefolder(arg: str, resolution: int, seed: int, val_fraction: float) -> DataSplits:
    spec = f"imagefolder:{arg}"
    root = Path(arg).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{spec}: {'not a directory' if root.exists() else 'path does not exist'}")
    test_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        classes, files, y = _scan_classes(root / "train", spec)
        _, test_files, test_y = _scan_classes(test_dir, spec, classes)
        test: tuple[np.ndarray, np.ndarray] | None = (_read_images(test_files, resolution), test_y)
    else:
        classes, files, y = _scan_classes(root, spec)
        test = None
    if len(classes) < 2:
        raise DatasetError(f"{spec}: found only the class folder {classes[0]!r}; classification needs at "
                           "least two (one sub-folder of images per class)")
    x = _read_images(files, resolution)
    return _split_arrays(
        f"imagefolder:{os.fspath(root)}",
        x,
        y,
        255.0,
        resolution,
        seed,
        val_fraction,
        len(classes),
        True,
        test,
    )
