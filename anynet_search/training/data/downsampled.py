"""`downsampled-imagenet:PATH`: Chrabaszcz et al.'s downsampled ImageNet (8, 16, 32 or 64 px) as .npz files.

`train_data_batch_1.npz` .. `train_data_batch_10.npz` (in numeric order) are the TRAIN rows, `val_data.npz` the
TEST rows. Each holds `data`, uint8 (N, 3 * r * r) channel-planar like CIFAR, and `labels`, 1-based; r is read
from the width. Class names come from `map_clsloc.txt` ('n02119789 1 kit_fox') when present, else the classes
are "1".."K". Batch files are streamed: a worker maps the rows it needs from a file stored without compression
(what np.savez writes) and holds one decompressed file at a time otherwise. ImageNet16-120 is
`prepare downsampled-imagenet:PATH --resolution 16 --classes 120`.
"""

from __future__ import annotations

import math
import re
import struct
import zipfile
from pathlib import Path

import numpy as np

from anynet_search.errors import DatasetError
from anynet_search.training.data.sources import SourceRows, files_fingerprint, resize_planar

TRAIN_PATTERN = re.compile(r"train_data_batch_(\d+)\.npz")
VAL_FILE = "val_data.npz"
CLASS_MAP = "map_clsloc.txt"
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # zip local file header: signature, ..., name length, extra length


def downsampled_rows(path: str) -> SourceRows:
    """The batch files of the downsampled ImageNet folder `path` (val_data is the test split)."""
    spec = f"downsampled-imagenet:{path}"
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{spec}: {'not a directory' if root.exists() else 'path does not exist'}")
    numbered = [(int(m.group(1)), p) for p in root.iterdir() if (m := TRAIN_PATTERN.fullmatch(p.name))]
    train = [p for _, p in sorted(numbered)]  # numeric order: batch 10 after batch 9
    if not train or not (root / VAL_FILE).is_file():
        raise DatasetError(f"{spec}: expected train_data_batch_1.npz .. train_data_batch_10.npz and {VAL_FILE} "
                           f"(found {len(train)} train batch files{'' if (root / VAL_FILE).is_file() else ', no val'})")
    files = [*train, root / VAL_FILE]
    widths, labels = [], []
    for f in files:
        width, y = _batch_layout(f, spec)
        widths.append(width)
        labels.append(y)
    if len(set(widths)) != 1:
        raise DatasetError(f"{spec}: the batch files hold images of different sizes (widths {sorted(set(widths))})")
    r = math.isqrt(widths[0] // 3)
    if 3 * r * r != widths[0]:
        raise DatasetError(f"{spec}: 'data' rows of {widths[0]} values are not 3 * r * r images")
    y = np.concatenate(labels) - 1
    names = _class_map(root / CLASS_MAP, spec) if (root / CLASS_MAP).is_file() else None
    count = len(names) if names else int(y.max()) + 1
    if y.min() < 0 or y.max() >= count:
        raise DatasetError(f"{spec}: labels must lie in 1..{count}, got {y.min() + 1}..{y.max() + 1}")
    sizes = [len(part) for part in labels]
    test = np.concatenate([np.zeros(sum(sizes[:-1]), bool), np.ones(sizes[-1], bool)])
    stamped = [str(f) for f in files] + ([str(root / CLASS_MAP)] if names else [])
    reader = _BatchReader(files, np.cumsum([0, *sizes]), r)
    return SourceRows(kind="downsampled-imagenet", spec=spec,
                      classes=[n[0] for n in names] if names else [str(i + 1) for i in range(count)],
                      labels=y.astype(np.int64), test=test, fingerprint=files_fingerprint(path, stamped, spec),
                      images=reader.images, class_names=[n[1] for n in names] if names else None,
                      decoder=f"numpy; {r} px images, resized in float when the side is not {r}",
                      notes={"source_resolution": r})


def _batch_layout(path: Path, spec: str) -> tuple[int, np.ndarray]:
    """(values per image row, labels) of one batch file, reading only its labels and the data's header."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if not {"data.npy", "labels.npy"} <= names:
                raise DatasetError(f"{spec}: {path} lacks 'data' or 'labels' (holds {sorted(names)})")
            with zf.open("data.npy") as fh:
                shape, _, dtype = _npy_header(fh)
            with zf.open("labels.npy") as fh:
                labels = np.lib.format.read_array(fh, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"{spec}: {path} is not a readable .npz file ({type(exc).__name__}: {exc})") from None
    if len(shape) != 2 or dtype != np.uint8:
        raise DatasetError(f"{spec}: {path}: 'data' must be uint8 (N, 3 * r * r), got {dtype} {shape}")
    labels = np.asarray(labels).reshape(-1)
    if labels.dtype.kind not in "iu" or len(labels) != shape[0]:
        raise DatasetError(f"{spec}: {path}: {len(labels)} {labels.dtype} labels for {shape[0]} images")
    return int(shape[1]), labels.astype(np.int64)


def _npy_header(fh: object) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) of the .npy stream `fh`, leaving it at the data."""
    version = np.lib.format.read_magic(fh)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return reader(fh)


def _class_map(path: Path, spec: str) -> list[tuple[str, str]]:
    """[(wnid, name)] by 1-based class number, from map_clsloc.txt."""
    rows: dict[int, tuple[str, str]] = {}
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                wnid, number, *name = line.split()
                rows[int(number)] = (wnid, " ".join(name) or wnid)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{spec}: cannot read {path} as 'wnid number name' lines ({exc})") from None
    if sorted(rows) != list(range(1, len(rows) + 1)):
        raise DatasetError(f"{spec}: {path} does not number its classes 1..{len(rows)}")
    return [rows[k] for k in range(1, len(rows) + 1)]


class _BatchReader:
    """Rows of the batch files by item index: one file open at a time per process."""

    def __init__(self, files: list[Path], offsets: np.ndarray, r: int) -> None:
        self.files, self.offsets, self.r = files, offsets, r
        self._open: tuple[int, np.ndarray] | None = None

    def images(self, items: np.ndarray, side: int) -> np.ndarray:
        """uint8 (n, S, S, 3) of the given items (in increasing order within each file)."""
        out = np.empty((len(items), side, side, 3), np.uint8)
        which = np.searchsorted(self.offsets, items, side="right") - 1
        for k in np.unique(which):
            sel = np.flatnonzero(which == k)
            data = self._data(int(k))
            rows = np.asarray(data[items[sel] - self.offsets[k]]).reshape(-1, 3, self.r, self.r)
            out[sel] = resize_planar(rows, side)
        return out

    def _data(self, k: int) -> np.ndarray:
        """The `data` array of file k: memory-mapped when stored uncompressed, else read whole (and kept)."""
        if self._open is not None and self._open[0] == k:
            return self._open[1]
        self._open = None  # release the last file before reading the next
        path = self.files[k]
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("data.npy")
        if info.compress_type == zipfile.ZIP_STORED:
            with open(path, "rb") as fh:
                fh.seek(info.header_offset)
                magic, name_len, extra_len = _LOCAL_HEADER.unpack(fh.read(_LOCAL_HEADER.size))
                if magic != b"PK\x03\x04":
                    raise DatasetError(f"{path}: damaged zip entry for 'data'")
                fh.seek(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)
                shape, fortran, dtype = _npy_header(fh)
                start = fh.tell()
            data = np.memmap(path, dtype=dtype, mode="r", offset=start, shape=shape, order="F" if fortran else "C")
        else:
            with np.load(path) as npz:
                data = npz["data"]
        self._open = (k, data)
        return data
