"""Image folders: one sub-folder of images per class, read with Pillow (center crop to square, resize)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from anynet_search.training.data.splits import DatasetError, DataSplits, split_arrays

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


def load_imagefolder(arg: str, resolution: int, seed: int, val_fraction: float) -> DataSplits:
    """One sub-folder of images per class under `arg` (or `train/` and `test/` or `val/` folders of them)."""
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
    return split_arrays(
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
