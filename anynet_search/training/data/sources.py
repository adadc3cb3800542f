"""What `prepare` reads: a source spec to the rows of a store.

A `Source` knows its classes, each row's label and split (TRAIN rows first, then TEST rows, each in the source's
own order: sorted class folders and file names, or the order of the arrays), a cheap fingerprint of its inputs
(files: relative path, size, mtime; arrays: their bytes or their files' stamps) and how to make rows
[start, stop) as uint8 (n, S, S, C). A source with its own test split (CIFAR's test batch, ImageNet's val, an
image folder's test/ or val/) keeps it ("official"); the others have TEST_FRACTION of each class carved out with
`stratified_holdout` and the fixed seed SPLIT_SEED ("carved"). Files are decoded by `decode`; arrays are resized
(when the stored side differs) with Pillow's antialiased bilinear filter in float and rounded once.

`imagenet.py` and `downsampled.py` read the two ImageNet layouts; the rest is here.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anynet_search.errors import DatasetError
from anynet_search.training.data.decode import ImageDecodeError, decode_image, decoder_name
from anynet_search.training.data.holdout import TEST_FRACTION, stratified_holdout
from anynet_search.training.data.store import TEST, TRAIN

SOURCE_FORMS = ["imagefolder:PATH", "imagenet:PATH", "downsampled-imagenet:PATH", "cifar10:PATH", "cifar100:PATH",
                "digits", "synthetic", "synthetic:N"]
MARGINS = ("auto", "none", "imagenet")
MAX_RESOLUTION = 1024
SPLIT_SEED = 0  # the carved test split is part of the store's content: one fixed seed
SYNTHETIC_QUANTIZATION = "uint8 = clip(round(128 + 25 * x), 0, 255) of synthetic_images' float x"
_FOLDER_KINDS = ("imagefolder", "imagenet")  # photos: `--margin auto` keeps the evaluation crop's margin


@dataclass
class SourceRows:
    """What one kind of source reads, in the source's own order, before the store's rows are arranged."""

    kind: str
    spec: str  # the spec with its path made absolute
    classes: list[str]
    labels: np.ndarray  # int64, one per item
    test: np.ndarray | None  # bool per item (the source's own test split), or None: carve one
    fingerprint: str
    channels: int = 3
    paths: list[str] | None = None  # files decoded by `decode`, one per item; or None and `images` makes rows
    images: Callable[[np.ndarray, int], np.ndarray] | None = None  # (items, side) -> uint8 (n, S, S, C)
    warm: Callable[[int], object] | None = None  # run once in the parent before the workers fork: shared work
    class_names: list[str] | None = None
    flip: bool = True  # whether a mirrored image is one of its class (not for digits: a flipped 2 is no 2)
    decoder: str = "numpy"
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Source:
    """A source arranged as a store's rows: row r is item `order[r]` of the source."""

    rows: SourceRows
    resolution: int
    side: int
    margin: str  # "none" or "imagenet", resolved from --margin
    classes: list[str]
    class_names: list[str] | None
    order: np.ndarray  # int64 (N,): the source item of each row
    labels: np.ndarray  # int64 (N,)
    splits: np.ndarray  # int8 (N,): TRAIN rows, then TEST rows
    test_source: str  # "official" or "carved"
    keep_classes: int | None

    @property
    def arguments(self) -> dict[str, Any]:
        """The arguments that determine the store's content (besides the inputs and the decoder)."""
        return {"resolution": self.resolution, "side": self.side, "margin": self.margin,
                "classes": self.keep_classes}

    @property
    def inputs(self) -> str:
        """sha256 of the inputs' fingerprint and the arguments: equal inputs make equal stores."""
        text = json.dumps({"kind": self.rows.kind, "fingerprint": self.rows.fingerprint, **self.arguments},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def read(self, start: int, stop: int, skip_bad: bool) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Rows [start, stop) as uint8 (n, S, S, C), and the undecodable files `skip_bad` left as zeros (else
        the first one raises)."""
        items = self.order[start:stop]
        if self.rows.paths is None:
            assert self.rows.images is not None
            return self.rows.images(items, self.side), []
        out = np.zeros((len(items), self.side, self.side, 3), np.uint8)
        skipped = []
        for j, item in enumerate(items):
            path = self.rows.paths[item]
            try:
                out[j] = decode_image(path, self.side)
            except ImageDecodeError as exc:
                if not skip_bad:
                    raise
                skipped.append({"row": start + j, "path": path, "reason": exc.reason})
        return out, skipped


def stored_side(kind: str, resolution: int, margin: str) -> tuple[int, str]:
    """(S, resolved margin): `imagenet` stores round(R * 256 / 224) for the evaluation's center crop of R (as
    pycls does), `none` stores R, `auto` is imagenet for photo folders at R >= 64."""
    if margin == "auto":
        margin = "imagenet" if kind in _FOLDER_KINDS and resolution >= 64 else "none"
    return (round(resolution * 256 / 224) if margin == "imagenet" else resolution), margin


def open_source(spec: str, resolution: int, margin: str = "auto", classes: int | None = None) -> Source:
    """The source `spec` names, arranged for a store at `resolution` (DatasetError, one line, when it cannot be)."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or not 1 <= resolution <= MAX_RESOLUTION:
        raise DatasetError(f"--resolution {resolution}: must be an integer in 1..{MAX_RESOLUTION}")
    if margin not in MARGINS:
        raise DatasetError(f"--margin {margin}: must be one of {', '.join(MARGINS)}")
    if classes is not None and (isinstance(classes, bool) or not isinstance(classes, int) or classes < 1):
        raise DatasetError(f"--classes {classes}: must be a positive integer")
    rows = read_source(spec)
    side, margin = stored_side(rows.kind, resolution, margin)
    if classes is not None and classes > len(rows.classes):
        raise DatasetError(f"--classes {classes}: {rows.spec} has only {len(rows.classes)} classes")
    if classes == len(rows.classes):
        classes = None  # every class: the same store as without --classes
    order, splits = arrange(rows.labels, rows.test, classes or len(rows.classes))
    n_train, n_test = int((splits == TRAIN).sum()), int((splits == TEST).sum())
    if n_train == 0 or n_test == 0:
        raise DatasetError(f"{rows.spec}: too few images to hold out a test split ({n_train} train, {n_test} "
                           "test); add images")
    kept = rows.classes[:classes] if classes else rows.classes
    names = rows.class_names[: len(kept)] if rows.class_names else None
    return Source(rows=rows, resolution=resolution, side=side, margin=margin, classes=list(kept), class_names=names,
                  order=order, labels=rows.labels[order].astype(np.int64), splits=splits,
                  test_source="carved" if rows.test is None else "official", keep_classes=classes)


def arrange(labels: np.ndarray, test: np.ndarray | None, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, splits): the items of the first `keep` classes, TRAIN then TEST, each in source order; without an
    official test split, TEST_FRACTION of each class is carved out with SPLIT_SEED."""
    kept = np.flatnonzero(labels < keep)
    if test is None:
        train_idx, test_idx = stratified_holdout(labels[kept], TEST_FRACTION, np.random.default_rng(SPLIT_SEED))
        train, held = kept[np.sort(train_idx)], kept[np.sort(test_idx)]
    else:
        train, held = kept[~test[kept]], kept[test[kept]]
    order = np.concatenate([train, held]).astype(np.int64)
    splits = np.concatenate([np.full(len(train), TRAIN, np.int8), np.full(len(held), TEST, np.int8)])
    return order, splits


def read_source(spec: str) -> SourceRows:
    """The items of the source `spec` names, in the source's order."""
    text = str(spec).strip()
    kind, sep, arg = text.partition(":")
    kind, arg = kind.strip().lower(), arg.strip()
    if kind == "digits" and not sep:
        return _digits()
    if kind == "synthetic":
        return _synthetic(text, arg if sep else None)
    if sep and arg:
        path = os.path.abspath(os.path.expanduser(arg))
        if kind == "imagefolder":
            return _imagefolder(path)
        if kind == "imagenet":
            from anynet_search.training.data.imagenet import imagenet_rows

            return imagenet_rows(path)
        if kind == "downsampled-imagenet":
            from anynet_search.training.data.downsampled import downsampled_rows

            return downsampled_rows(path)
        if kind in ("cifar10", "cifar100"):
            return _cifar(kind, path)
    if kind == "prepared":
        raise DatasetError(f"{text}: already a prepared store; prepare reads a source ({', '.join(SOURCE_FORMS)})")
    raise DatasetError(f"unknown source {text!r}; prepare reads {', '.join(SOURCE_FORMS)}")


# ----------------------------------------------------------------------------------------------------------
# fingerprints and array rows


def files_fingerprint(root: str, paths: Sequence[str], spec: str) -> str:
    """sha256 over every file's path relative to `root`, size and mtime (no content is read)."""
    h = hashlib.sha256()
    prefix = root.rstrip(os.sep) + os.sep
    for path in paths:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise DatasetError(f"{spec}: cannot read {path} ({exc.strerror or exc})") from None
        rel = path[len(prefix):] if path.startswith(prefix) else path
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def resize_planar(x: np.ndarray, side: int, scale: float = 1.0) -> np.ndarray:
    """(n, C, h, w) numeric images to uint8 (n, S, S, C): resized in float (Pillow, antialiased bilinear) when
    h or w differs from S, times `scale`, rounded and clipped to 0..255 once."""
    from PIL import Image

    n, c, h, w = x.shape
    if (h, w) == (side, side):
        out = np.asarray(x, np.float32) * np.float32(scale)
    else:
        bilinear = getattr(Image, "Resampling", Image).BILINEAR
        out = np.empty((n, c, side, side), np.float32)
        for i in range(n):
            for k in range(c):
                plane = Image.fromarray(np.ascontiguousarray(x[i, k], np.float32))  # mode F
                out[i, k] = np.asarray(plane.resize((side, side), bilinear))
        out *= np.float32(scale)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1).copy()


def array_fingerprint(*arrays: np.ndarray) -> str:
    """sha256 over arrays' shapes, dtypes and bytes."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype.str}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------------
# the sources read here


def _imagefolder(path: str) -> SourceRows:
    from anynet_search.training.data.imagefolder import scan_imagefolder

    spec = f"imagefolder:{path}"
    scan = scan_imagefolder(path, spec)
    files, labels, test = list(scan.files), scan.labels, None
    if scan.test_files is not None and scan.test_labels is not None:
        files += scan.test_files
        labels = np.concatenate([scan.labels, scan.test_labels])
        test = np.concatenate([np.zeros(len(scan.files), bool), np.ones(len(scan.test_files), bool)])
    return SourceRows(kind="imagefolder", spec=spec, classes=scan.classes, labels=labels, test=test,
                      fingerprint=files_fingerprint(path, files, spec), paths=files, decoder=decoder_name())


def _cifar(kind: str, path: str) -> SourceRows:
    from anynet_search.training.data.cifar import cifar_arrays, cifar_label_names

    files, (train_x, train_y, test_x, test_y) = cifar_arrays(kind, path)
    x = np.concatenate([train_x, test_x])
    labels = np.concatenate([train_y, test_y]).astype(np.int64)
    test = np.concatenate([np.zeros(len(train_x), bool), np.ones(len(test_x), bool)])
    spec = f"{kind}:{path}"
    stamps = files_fingerprint(str(files[0].parent), [str(f) for f in files], spec)
    num_classes = 10 if kind == "cifar10" else 100
    return SourceRows(kind=kind, spec=spec, classes=[str(i) for i in range(num_classes)], labels=labels, test=test,
                      fingerprint=stamps, images=lambda items, side: resize_planar(x[items], side),
                      class_names=cifar_label_names(kind, path), decoder=_array_decoder(32))


def _digits() -> SourceRows:
    from anynet_search.training.data.bundled import _digits_raw

    x, y = _digits_raw()  # float (1797, 1, 8, 8), values 0..16
    return SourceRows(kind="digits", spec="digits", classes=[str(i) for i in range(10)], labels=np.array(y),
                      test=None, fingerprint=array_fingerprint(x, y), channels=1, flip=False,
                      images=lambda items, side: resize_planar(x[items], side, 255 / 16), decoder=_array_decoder(8),
                      notes={"quantization": "uint8 = round(v * 255 / 16) of the 0..16 values, after resizing"})


def _synthetic(spec: str, arg: str | None) -> SourceRows:
    from anynet_search.training.data.bundled import DEFAULT_SYNTHETIC_N

    n = DEFAULT_SYNTHETIC_N
    if arg is not None:
        try:
            n = int(arg)
        except ValueError:
            n = -1
        if not 50 <= n <= 10_000_000:
            raise DatasetError(f"{spec}: N must be an integer in 50..10000000 (images in total)")
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def generate(side: int) -> tuple[np.ndarray, np.ndarray]:
        """The quantized images at `side` (made once per process: the parent makes them before forking) and the
        labels."""
        if side not in cache:
            import torch

            from anynet_search.training.data.bundled import synthetic_images

            x, y = synthetic_images(n, side)
            q = (128.0 + 25.0 * x).round_().clamp_(0, 255).to(torch.uint8)
            cache[side] = (q.permute(0, 2, 3, 1).contiguous().numpy(), y.numpy())
        return cache[side]

    tiny, labels = generate(1)  # the labels do not depend on the side; every random draw shows in 1 px images
    return SourceRows(kind="synthetic", spec=f"synthetic:{n}", classes=[str(i) for i in range(10)], labels=labels,
                      test=None, fingerprint=array_fingerprint(tiny, labels),
                      images=lambda items, side: generate(side)[0][items], warm=generate,
                      decoder="synthetic_images (torch)", notes={"quantization": SYNTHETIC_QUANTIZATION})


def _array_decoder(size: int) -> str:
    import PIL

    return f"numpy; Pillow {PIL.__version__} antialiased bilinear resize in float when the side is not {size}"


def source_forms() -> list[str]:
    """The source spec forms `prepare` reads, for help text."""
    return list(SOURCE_FORMS)
