"""Natural-looking test JPEGs for the prepare benchmarks: smooth structure at several scales, a few hard edges and
sensor-like noise, so that a JPEG of 500x375 at quality 90 weighs what a photo of ImageNet does (~50-150 KB).

Not a library module: the benchmark scripts put this folder on sys.path and import it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def natural_image(rng: np.random.Generator, width: int = 500, height: int = 375) -> np.ndarray:
    """One RGB uint8 (height, width, 3) image: coarse-to-fine smooth fields, two shapes and noise."""
    from PIL import Image

    out = np.zeros((height, width, 3), np.float32)
    for cells, weight in ((3, 70.0), (12, 30.0), (48, 14.0), (160, 8.0)):
        grid = rng.normal(0.0, 1.0, (max(2, cells * height // width), cells, 3)).astype(np.float32)
        for c in range(3):  # Pillow resizes float images one channel at a time (mode F)
            plane = Image.fromarray(grid[:, :, c], "F").resize((width, height), Image.Resampling.BICUBIC)
            out[:, :, c] += weight * np.asarray(plane)
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(2):  # hard edges: a disc and a band, each a flat colour offset
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(30, 120)
        out[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] += rng.normal(0, 40, 3)
        a, b = rng.uniform(-1, 1), rng.uniform(0, height)
        out[np.abs(yy - (a * xx + b)) < rng.uniform(5, 25)] += rng.normal(0, 30, 3)
    out += 128.0 + rng.normal(0.0, 6.0, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def write_jpegs(folder: Path, n: int, classes: int = 10, seed: int = 0, width: int = 500, height: int = 375,
                quality: int = 90, start: int = 0) -> list[Path]:
    """JPEGs number `start` .. n-1 in `classes` class folders under `folder` (an image folder; image i is a function
    of (seed, i)); reuses what is there already."""
    import os

    from PIL import Image

    paths = []
    for i in range(start, n):
        path = folder / f"c{i % classes:03d}" / f"img{i:06d}.JPEG"
        paths.append(path)
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        image = natural_image(np.random.default_rng([seed, i]), width, height)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        Image.fromarray(image).save(tmp, "JPEG", quality=quality)
        tmp.replace(path)
    return paths
