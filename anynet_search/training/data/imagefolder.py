"""Image folders: one sub-folder of images per class (or train/ and test/ or val/ folders of them), read with
Pillow (`decode`: reduced-size decode, center crop to square, resize)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from anynet_search.errors import DatasetError
from anynet_search.training.data.decode import decode_image

if TYPE_CHECKING:
    from anynet_search.training.data.splits import DataSplits

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}
)


def _class_dirs(root: Path, spec: str) -> list[Path]:
    dirs = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name
    )
    if not dirs:
        raise DatasetError(
            f"{spec}: {root} has no class sub-folders (expected one folder of images per class)"
        )
    return dirs


def image_files(folder: Path) -> list[str]:
    """The image files directly in `folder` (by extension, hidden ones left out), sorted by name."""
    with os.scandir(folder) as entries:  # no stat per file: ImageNet's train folders hold 1.28 M
        names = sorted(e.name for e in entries if not e.name.startswith(".")
                       and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and e.is_file())
    return [os.path.join(folder, n) for n in names]


def _read_images(files: list[str], resolution: int) -> np.ndarray:
    out = np.empty((len(files), resolution, resolution, 3), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            out[i] = decode_image(f, resolution)
        except DatasetError as exc:
            raise DatasetError(f"imagefolder: {exc}") from None
    return out.transpose(0, 3, 1, 2)


def scan_classes(
    root: Path, spec: str, classes: list[str] | None = None
) -> tuple[list[str], list[str], np.ndarray]:
    """(class names, files, labels) of one folder of class sub-folders, in sorted order; `classes` fixes the
    label of each name (a test folder's classes must be among the train folder's)."""
    dirs = _class_dirs(root, spec)
    names = [d.name for d in dirs]
    if classes is None:
        classes = names
    else:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DatasetError(f"{spec}: {root} has classes {unknown} that the train folder lacks")
    index = {c: i for i, c in enumerate(classes)}
    files: list[str] = []
    labels: list[int] = []
    for d in dirs:
        imgs = image_files(d)
        if not imgs:
            exts = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise DatasetError(f"{spec}: class folder {d} has no images (looked for {exts})")
        files += imgs
        labels += [index[d.name]] * len(imgs)
    return classes, files, np.asarray(labels, dtype=np.int64)


@dataclass(frozen=True)
class FolderScan:
    """The files of an image folder in source order (sorted classes, sorted names) and their labels."""

    root: Path
    classes: list[str]
    files: list[str]
    labels: np.ndarray
    test_files: list[str] | None  # the train/ + test/ (or val/) layout's test files, else None
    test_labels: np.ndarray | None


def scan_imagefolder(arg: str, spec: str | None = None) -> FolderScan:
    """List the image folder `arg`: one sub-folder of images per class, or `train/` and `test/` (or `val/`)."""
    spec = spec or f"imagefolder:{arg}"
    root = Path(arg).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{spec}: {'not a directory' if root.exists() else 'path does not exist'}")
    test_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    test_files, test_y = None, None
    if (root / "train").is_dir() and test_dir is not None:
        classes, files, y = scan_classes(root / "train", spec)
        _, test_files, test_y = scan_classes(test_dir, spec, classes)
    else:
        classes, files, y = scan_classes(root, spec)
    if len(classes) < 2:
        raise DatasetError(f"{spec}: found only the class folder {classes[0]!r}; classification needs at "
                           "least two (one sub-folder of images per class)")
    return FolderScan(root, classes, files, y, test_files, test_y)


def load_imagefolder(arg: str, resolution: int, seed: int, val_fraction: float) -> DataSplits:
    """One sub-folder of images per class under `arg` (or `train/` and `test/` or `val/` folders of them)."""
    from anynet_search.training.data.splits import split_arrays  # torch: not needed to list or decode

    scan = scan_imagefolder(arg)
    test = None
    if scan.test_files is not None and scan.test_labels is not None:
        test = (_read_images(scan.test_files, resolution), scan.test_labels)
    x = _read_images(scan.files, resolution)
    return split_arrays(
        f"imagefolder:{os.fspath(scan.root)}",
        x,
        scan.labels,
        255.0,
        resolution,
        seed,
        val_fraction,
        len(scan.classes),
        True,
        test,
    )
