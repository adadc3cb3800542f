"""A store written straight from arrays, for tests that need exact pixel values (`prepare` decodes sources)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from anynet_search.training.data import store as st


def write_store(out: Path, images: np.ndarray, labels: np.ndarray, splits: np.ndarray, classes: list[str],
                resolution: int, flip: bool = True) -> str:
    """Write a valid store of uint8 `images` (N, S, S, C) and return its digest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels, splits = labels.astype(np.int64), splits.astype(np.int8)
    np.save(out / st.IMAGES, images)
    np.save(out / st.LABELS, labels)
    np.save(out / st.SPLITS, splits)
    rows = st.chunk_rows(len(images), images[0].nbytes)
    chunks = [st.sha256_hex(images[a:b]) for a, b in st.chunk_bounds(len(images), rows)]
    train = images[splits == st.TRAIN].astype(np.float64) / 255
    labels_sha, splits_sha = st.sha256_hex(labels), st.sha256_hex(splits)
    digest = st.content_digest(images.shape, classes, resolution, chunks, labels_sha, splits_sha)
    manifest = {"format": 1, "resolution": resolution, "side": images.shape[1], "channels": images.shape[3],
                "count": len(images), "classes": classes, "mean": train.mean(axis=(0, 1, 2)).tolist(),
                "std": train.std(axis=(0, 1, 2)).tolist(), "chunk_rows": rows, "chunks": chunks,
                "labels_sha256": labels_sha, "splits_sha256": splits_sha, "flip": flip,
                "files": {f: st.file_stamp(out / f) for f in st.ARRAY_FILES}, "digest": digest}
    (out / st.MANIFEST).write_text(json.dumps(manifest))
    return digest
