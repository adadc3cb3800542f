"""CIFAR-10/100 from the python pickles of the official archives, read with an allow-list unpickler so that a
crafted file cannot run code."""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anynet_search.errors import DatasetError

if TYPE_CHECKING:
    from anynet_search.training.data.splits import DataSplits

CIFAR_LAYOUTS: dict[str, dict[str, Any]] = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test": ("test_batch",),
        "label_key": "labels",
        "num_classes": 10,
        "meta": ("batches.meta", "label_names"),
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ("train",),
        "test": ("test",),
        "label_key": "fine_labels",
        "num_classes": 100,
        "meta": ("meta", "fine_label_names"),
    },
}


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
    layout = CIFAR_LAYOUTS[kind]
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
    layout = CIFAR_LAYOUTS[kind]
    base = Path(folder)

    def read(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        parts = [_read_cifar_batch(base / n, layout["label_key"], layout["num_classes"]) for n in names]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    arrays = (*read(layout["train"]), *read(layout["test"]))
    for a in arrays:
        a.flags.writeable = False  # shared across calls: nobody may mutate the cached decode
    return arrays


def cifar_arrays(kind: str, arg: str) -> tuple[list[Path], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The batch files of the CIFAR folder `arg` and its raw arrays: uint8 (N, 3, 32, 32) train images, int64
    train labels, test images, test labels (read-only, decoded once per process)."""
    folder, files = _cifar_folder(kind, arg)
    stamp = tuple((f.name, st.st_size, st.st_mtime_ns) for f in files for st in [f.stat()])
    return files, _cifar_raw(kind, str(folder.resolve()), stamp)


def cifar_label_names(kind: str, arg: str) -> list[str] | None:
    """The classes' names from the folder's meta pickle (batches.meta or meta), or None when it is absent or not
    one name per class."""
    folder, _ = _cifar_folder(kind, arg)
    meta_file, key = CIFAR_LAYOUTS[kind]["meta"]
    if not (folder / meta_file).is_file():
        return None
    try:
        meta = _unpickle(folder / meta_file)
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in _get(meta, key, folder / meta_file)]
    except (DatasetError, TypeError, UnicodeDecodeError):
        return None
    return names if len(names) == CIFAR_LAYOUTS[kind]["num_classes"] else None


def load_cifar(kind: str, arg: str, resolution: int, seed: int, val_fraction: float) -> DataSplits:
    """CIFAR-10 or -100 (`kind`) from the python pickles under `arg`, with their official test split."""
    from anynet_search.training.data.splits import split_arrays  # torch: not needed to read the pickles

    _, (train_x, train_y, test_x, test_y) = cifar_arrays(kind, arg)
    num_classes = CIFAR_LAYOUTS[kind]["num_classes"]
    return split_arrays(
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
