"""The prepared image store: one folder of fixed-size uint8 images that numpy alone can read, and its reader.

A store is what `anynet-search prepare` writes (`training.data.prepare`) and what `prepared:DIR` reads. Files:

- `images.npy`: uint8 (N, S, S, C), channels last (as Pillow and numpy lay out images); S is the stored side
  (the training resolution R, or R * 256 / 224 rounded when the evaluation protocol center-crops R from it).
- `labels.npy`: int64 (N,), class indices into the manifest's `classes`.
- `splits.npy`: int8 (N,): `TRAIN` (a study carves its validation split from these rows with its seed),
  `TEST` (held out, reported separately), `SKIPPED` (an undecodable file `--skip-bad` recorded; zeros).
- `manifest.json`: written last and atomically, so a store never looks complete before it is. It holds the
  geometry, the classes, the per-channel mean and std of the train rows (0..1 scale), each chunk's sha256,
  the files' sizes and mtimes at completion, and `digest`: the sha256 of the store's content (`content_digest`).

`np.load(DIR + "/images.npy", mmap_mode="r")` opens the images without this package. Rows are hashed in
chunks of `chunk_rows(N, row_bytes)` rows, a function of the store alone, so the digest does not depend on
how many processes wrote it.

Example (not a doctest: needs a store)::

    store = open_store("stores/digits16")
    store.images.shape, store.digest
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anynet_search.errors import DatasetError

STORE_FORMAT = 1
MANIFEST = "manifest.json"
IMAGES, LABELS, SPLITS = "images.npy", "labels.npy", "splits.npy"
ARRAY_FILES = (IMAGES, LABELS, SPLITS)
PROGRESS = "prepare.json"  # present from the first write until the manifest: an unfinished store
TRAIN, TEST, SKIPPED = 0, 1, -1
CHUNK_TARGET = 64  # chunks per store (enough to share among the cores), unless a chunk would pass CHUNK_BYTES
CHUNK_BYTES = 64 * 2**20  # at most this many image bytes per chunk: what a kill -9 can cost a rerun
_DIGEST_TAG = b"anynet-search store 1\n"


def chunk_rows(n: int, row_bytes: int) -> int:
    """Rows per hashed (and resumable) chunk of a store of `n` rows of `row_bytes` bytes each."""
    if n < 1 or row_bytes < 1:
        raise ValueError(f"a store needs rows and bytes per row, got n={n}, row_bytes={row_bytes}")
    return max(1, min(math.ceil(n / CHUNK_TARGET), CHUNK_BYTES // row_bytes))


def chunk_bounds(n: int, rows: int) -> list[tuple[int, int]]:
    """(start, stop) of every chunk of `rows` rows over `n` rows (the last may be shorter)."""
    return [(start, min(start + rows, n)) for start in range(0, n, rows)]


def sha256_hex(data: bytes | memoryview | np.ndarray) -> str:
    """The sha256 of a buffer (a C-contiguous array's bytes), hex."""
    view = memoryview(np.ascontiguousarray(data)).cast("B") if isinstance(data, np.ndarray) else data
    return hashlib.sha256(view).hexdigest()


def content_digest(shape: tuple[int, ...], classes: list[str], resolution: int, chunk_digests: list[str],
                   labels_sha: str, splits_sha: str) -> str:
    """The store's digest: its geometry, classes, every chunk of images, labels and splits, in that order."""
    h = hashlib.sha256(_DIGEST_TAG)
    header = {"shape": [int(v) for v in shape], "classes": list(classes), "resolution": int(resolution)}
    h.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    for chunk in chunk_digests:
        h.update(bytes.fromhex(chunk))
    h.update(bytes.fromhex(labels_sha))
    h.update(bytes.fromhex(splits_sha))
    return h.hexdigest()


def npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The .npy header of a C-ordered array of `shape` and `dtype` (its data starts right after, 64-byte aligned)."""
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(int(v) for v in shape)}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (a new, renamed or removed file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any, one_line: bool = False) -> None:
    """Write `data` as JSON (`one_line`: compact, on one line ending in a newline, as the first line of a log) to
    `path` all at once: a temporary file, fsync, rename, fsync of the folder; a reader sees the old file or the
    whole new one, never part of it."""
    tmp = path.with_name(path.name + ".tmp")
    text = (json.dumps(data, sort_keys=True, separators=(",", ":")) if one_line
            else json.dumps(data, indent=1, sort_keys=True))
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def file_stamp(path: Path) -> dict[str, int]:
    """Size and modification time of a file, as the manifest records them."""
    st = path.stat()
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


@dataclass(frozen=True)
class Store:
    """An opened, validated store: its arrays memory-mapped (copy-on-write: nothing is ever written back)."""

    path: Path
    manifest: dict[str, Any]
    images: np.ndarray  # (N, S, S, C) uint8
    labels: np.ndarray  # (N,) int64
    splits: np.ndarray  # (N,) int8

    @property
    def digest(self) -> str:
        """The sha256 of the store's content (what `prepare` printed last)."""
        return str(self.manifest["digest"])

    @property
    def resolution(self) -> int:
        """The training resolution R the store was prepared for."""
        return int(self.manifest["resolution"])

    @property
    def side(self) -> int:
        """The stored side S (>= R; > R when evaluation center-crops R from it)."""
        return int(self.images.shape[1])

    @property
    def channels(self) -> int:
        """Channels per pixel (3, or 1 for grayscale sources such as digits)."""
        return int(self.images.shape[3])

    @property
    def classes(self) -> list[str]:
        """Class names, by label index."""
        return [str(c) for c in self.manifest["classes"]]

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean of the train rows, 0..1 scale."""
        return tuple(float(v) for v in self.manifest["mean"])

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation of the train rows, 0..1 scale."""
        return tuple(float(v) for v in self.manifest["std"])


def read_manifest(root: Path, spec: str) -> dict[str, Any]:
    """The manifest of the store at `root`; DatasetError (one line) when there is none or it is unreadable."""
    path = root / MANIFEST
    if not root.exists():
        raise DatasetError(f"{spec}: path does not exist")
    if not root.is_dir():
        raise DatasetError(f"{spec}: not a directory (a prepared store is the folder `anynet-search prepare` wrote)")
    if not path.is_file():
        if (root / PROGRESS).is_file():
            raise DatasetError(f"{spec}: an unfinished store (prepare stopped before it finished); run the same "
                               "prepare command again to finish it")
        raise DatasetError(f"{spec}: not a prepared store (no {MANIFEST}); make one with anynet-search prepare SPEC "
                           f"--out {root} --resolution R")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{spec}: {MANIFEST} is unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(manifest, dict):
        raise DatasetError(f"{spec}: {MANIFEST} is not a mapping")
    version = manifest.get("format")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise DatasetError(f"{spec}: {MANIFEST} has no valid format number ({version!r})")
    if version > STORE_FORMAT:
        raise DatasetError(f"{spec}: store format {version} was written by a newer anynet-search "
                           f"({manifest.get('written_by', '?')}); this one reads format {STORE_FORMAT}: upgrade")
    missing = [k for k in ("digest", "resolution", "classes", "mean", "std", "count", "side", "channels",
                           "chunk_rows", "chunks", "labels_sha256", "splits_sha256", "files") if k not in manifest]
    if missing:
        raise DatasetError(f"{spec}: {MANIFEST} lacks {', '.join(missing)}; prepare the store again")
    return manifest


def _open_array(root: Path, name: str, spec: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """`name` memory-mapped copy-on-write, after checking its header and size against what the manifest says."""
    path = root / name
    if not path.is_file():
        raise DatasetError(f"{spec}: {name} is missing; prepare the store again")
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f".npy version {version} (this reader takes 1.0 and 2.0)")
            header = read_header(fh)  # (shape, fortran, dtype)
            offset = fh.tell()
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{spec}: {name} is not a readable .npy file ({exc})") from None
    got_shape, fortran, got_dtype = header
    if tuple(got_shape) != shape or np.dtype(got_dtype) != dtype or fortran:
        raise DatasetError(f"{spec}: {name} holds {np.dtype(got_dtype)} {tuple(got_shape)}, the manifest says "
                           f"{dtype} {shape}; prepare the store again")
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    size = path.stat().st_size
    if size < expected:
        raise DatasetError(f"{spec}: {name} is truncated ({size:,} bytes, expected {expected:,}); prepare the "
                           "store again")
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype)
    return np.load(path, mmap_mode="c")


def open_store(path: str | os.PathLike[str], spec: str | None = None) -> Store:
    """Open and validate the store at `path`: a missing, unfinished, truncated or modified store is a one-line
    DatasetError before anything is trained. Images are re-hashed only when their file changed since prepare
    (size or mtime: a copy, or damage); labels and splits are always checked."""
    root = Path(path).expanduser()
    spec = spec or f"prepared:{path}"
    manifest = read_manifest(root, spec)
    n, side, channels = int(manifest["count"]), int(manifest["side"]), int(manifest["channels"])
    images = _open_array(root, IMAGES, spec, np.dtype(np.uint8), (n, side, side, channels))
    # labels and splits are small (10 MB for ImageNet): read into memory, where the split arithmetic wants them
    labels = np.array(_open_array(root, LABELS, spec, np.dtype(np.int64), (n,)))
    splits = np.array(_open_array(root, SPLITS, spec, np.dtype(np.int8), (n,)))
    labels_sha, splits_sha = sha256_hex(labels), sha256_hex(splits)
    for name, got, want in ((LABELS, labels_sha, manifest["labels_sha256"]),
                            (SPLITS, splits_sha, manifest["splits_sha256"])):
        if got != want:
            raise DatasetError(f"{spec}: {name} does not match the digest prepare recorded: the store changed "
                               "after prepare; prepare it again into a new folder")
    chunks = [str(c) for c in manifest["chunks"]]
    rows = int(manifest["chunk_rows"])
    bounds = chunk_bounds(n, rows) if n else []
    if len(bounds) != len(chunks):
        raise DatasetError(f"{spec}: {MANIFEST} lists {len(chunks)} chunk digests for {len(bounds)} chunks")
    if file_stamp(root / IMAGES) != manifest["files"].get(IMAGES):
        for k, (start, stop) in enumerate(bounds):
            if sha256_hex(images[start:stop]) != chunks[k]:
                raise DatasetError(f"{spec}: rows {start}..{stop - 1} of {IMAGES} do not match the digest prepare "
                                   "recorded: the store changed after prepare; prepare it again into a new folder")
    classes = [str(c) for c in manifest["classes"]]
    digest = content_digest(images.shape, classes, int(manifest["resolution"]), chunks, labels_sha, splits_sha)
    if digest != manifest["digest"]:
        raise DatasetError(f"{spec}: {MANIFEST}'s digest does not match its content; prepare the store again")
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise DatasetError(f"{spec}: labels outside 0..{len(classes) - 1}; prepare the store again")
    return Store(path=root, manifest=manifest, images=images, labels=labels, splits=splits)
