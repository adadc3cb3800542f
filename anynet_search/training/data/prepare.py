"""`anynet-search prepare`: decode a source once, in parallel, into a prepared store (`store` is the format).

The store's bytes are a pure function of the inputs and the arguments that determine the content (resolution,
stored side, margin, --classes, the decoder): the same for any number of workers. The run is resumable: a
progress log (`store.PROGRESS`) holds the arguments and the inputs' fingerprint in its first line and gets one
line per chunk after that chunk's rows are on disk; killed at any point (kill -9 included) and run again with
the same arguments, prepare redoes only the chunks the log lacks and ends with the same digest. The manifest is
written last, atomically; then the log goes. A folder that holds the same finished store is left alone; any
other non-empty --out is refused, and so is a disk too small for the store, before anything is written.

Example (not a doctest: needs an image folder)::

    result = prepare_store("imagefolder:photos", "stores/photos32", 32)
    result.digest
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anynet_search.errors import DatasetError, InputError, StorageFullError, is_no_space
from anynet_search.paths import check_out_dir, make_dir
from anynet_search.training.data import store
from anynet_search.training.data.decode import ImageDecodeError
from anynet_search.training.data.sources import Source, open_source
from anynet_search.training.data.writer import allocate, run_workers

WORKERS_PER_CORE = 4  # the most --workers accepts, per usable core
SPACE_SLACK = 1 << 20  # bytes beyond the arrays the store needs: the manifest, the progress log


@dataclass(frozen=True)
class PrepareResult:
    """What prepare made: the store's folder, its digest and counts, and whether it was there already."""

    path: Path
    digest: str
    count: int
    split_counts: dict[str, int]
    skipped: int
    reused: bool  # the folder already held this finished store: nothing was done
    workers: int
    seconds: float


def usable_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def prepare_store(spec: str, out: str | os.PathLike[str], resolution: int, workers: int | None = None,
                  skip_bad: bool = False, classes: int | None = None, margin: str = "auto",
                  progress: bool = True) -> PrepareResult:
    """Decode the source `spec` into a store in `out` at `resolution` (resuming an unfinished one of the same
    arguments); every refusal is a one-line AnynetSearchError and leaves `out` as it was."""
    started = time.monotonic()
    root = check_out_dir(out)
    state = _folder_state(root)
    cores = usable_cores()
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or
                                not 1 <= workers <= WORKERS_PER_CORE * cores):
        raise InputError(f"--workers {workers}: must be in 1..{WORKERS_PER_CORE * cores} ({WORKERS_PER_CORE} per "
                         f"usable core; this machine lets this process use {cores})")
    kind, _, arg = str(spec).partition(":")
    if kind.strip().lower() in ("imagefolder", "imagenet") and arg.strip():  # would be read as a class folder
        inside = Path(arg.strip()).expanduser().resolve()
        if inside == root.resolve() or inside in root.resolve().parents:
            raise InputError(f"--out {root}: lies inside the image folder {inside} (a rerun would read it as a class "
                             "folder); give a folder outside it")
    source = open_source(spec, resolution, margin, classes)
    if state == "store":
        return _finished(root, source, started)
    n, side, channels = len(source.order), source.side, source.rows.channels
    shape = (n, side, side, channels)
    bounds = store.chunk_bounds(n, store.chunk_rows(n, side * side * channels))
    header = store.npy_header(shape, np.dtype(np.uint8))
    image_bytes = len(header) + n * side * side * channels
    plan = {"format": store.STORE_FORMAT, "spec": source.rows.spec, "inputs": source.inputs,
            "arguments": source.arguments, "decoder": source.rows.decoder, "count": n, "side": side,
            "channels": channels, "chunks": len(bounds)}
    images = root / store.IMAGES
    _check_space(root, image_bytes + 9 * n + SPACE_SLACK - _size_on_disk(images))  # before anything is written
    make_dir(root)
    lock = _lock(root)
    try:
        state = _folder_state(root)  # again, under the lock: another prepare may have written here meanwhile
        if state == "store":
            return _finished(root, source, started)
        log = root / store.PROGRESS
        done = _resume(root, log, plan) if state == "unfinished" else {}
        if not done or not _allocated(images, header, image_bytes):
            if done:
                print(f"prepare: warning: {images} does not match the progress log; starting over",
                      file=sys.stderr)
            store.write_json_atomic(log, plan, one_line=True)
            done = {}
            allocate(images, header, image_bytes)
        pending = [k for k in range(len(bounds)) if k not in done]
        if progress:
            train, test = int((source.splits == store.TRAIN).sum()), int((source.splits == store.TEST).sum())
            print(f"prepare: {source.rows.spec}: {n:,} images ({train:,} train, {test:,} test), {len(source.classes)} "
                  f"classes, {side}x{side}x{channels} ({_size(image_bytes)}) -> {root}"
                  + (f"; {len(done)} of {len(bounds)} chunks done earlier" if done else ""), file=sys.stderr,
                  flush=True)
        n_workers = min(workers or cores, WORKERS_PER_CORE * cores, len(pending)) or 1
        if pending:
            _decode(source, images, len(header), bounds, pending, n_workers, skip_bad, log, done, progress)
        manifest = _finish(root, source, bounds, done)
    finally:
        os.close(lock)
    skipped = len(manifest["skipped"])
    return PrepareResult(path=root, digest=manifest["digest"], count=n, split_counts=manifest["split_counts"],
                         skipped=skipped, reused=False, workers=n_workers, seconds=time.monotonic() - started)


def _folder_state(root: Path) -> str:
    """'empty' (or absent), 'store' (finished), 'unfinished'; InputError for a folder holding anything else."""
    if not root.exists():
        return "empty"
    if (root / store.MANIFEST).is_file():
        return "store"
    if (root / store.PROGRESS).is_file():
        return "unfinished"
    names = sorted(os.listdir(root))
    if names:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise InputError(f"--out {root}: not empty and not a prepared store (holds {shown}); give a new or empty "
                         "folder")
    return "empty"


def _finished(root: Path, source: Source, started: float) -> PrepareResult:
    """The store already in `root`: returned as it is when it has the same inputs, else refused."""
    manifest = store.read_manifest(root, f"--out {root}")
    if manifest.get("inputs") != source.inputs:
        raise InputError(f"--out {root}: holds a store of other inputs or arguments "
                         f"({_differences(manifest.get('arguments'), source.arguments)}); give another folder")
    opened = store.open_store(root, f"--out {root}")  # a damaged store is refused, not passed off as done
    counts = {k: int(v) for k, v in manifest.get("split_counts", {}).items()}
    return PrepareResult(path=root, digest=opened.digest, count=len(opened.labels), split_counts=counts,
                         skipped=len(manifest.get("skipped", [])), reused=True, workers=0,
                         seconds=time.monotonic() - started)


def _differences(theirs: Any, ours: dict[str, Any]) -> str:
    """'resolution 32 there, 64 here; ...' or, with equal arguments, that the input files differ."""
    if not isinstance(theirs, dict):
        return "no arguments recorded"
    diffs = [f"{k} {theirs.get(k)} there, {v} here" for k, v in ours.items() if theirs.get(k) != v]
    return "; ".join(diffs) or "the same arguments, but its input files differ (added, removed or modified)"


def _lock(root: Path) -> int:
    """An exclusive lock on the folder for this run (released when the process ends, however it ends)."""
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InputError(f"--out {root}: another prepare is writing into this folder; wait for it or give another "
                         "folder") from None
    return fd


def _resume(root: Path, log: Path, plan: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The chunks an earlier run of the same plan finished (refusing a plan of other inputs or arguments); the
    log is cut after its last whole line so that new lines start clean."""
    raw = log.read_bytes()
    lines = raw.split(b"\n")
    try:
        theirs = json.loads(lines[0])
    except (json.JSONDecodeError, UnicodeDecodeError):
        theirs = None
    if not isinstance(theirs, dict):
        raise InputError(f"--out {root}: {store.PROGRESS} is unreadable; give another folder")
    if theirs.get("inputs") != plan["inputs"]:
        raise InputError(f"--out {root}: holds an unfinished store of other inputs or arguments "
                         f"({_differences(theirs.get('arguments'), plan['arguments'])}); finish it with its own "
                         "command or give another folder")
    if theirs.get("decoder") != plan["decoder"]:
        raise InputError(f"--out {root}: its unfinished store was decoded by {theirs.get('decoder')}, this run would "
                         f"use {plan['decoder']}; give another folder (one store, one decoder)")
    if {k: theirs.get(k) for k in plan} != plan:
        return {}  # same inputs, other geometry (a format change): start over
    done: dict[int, dict[str, Any]] = {}
    whole = raw.rfind(b"\n") + 1
    for line in lines[1:]:
        with contextlib.suppress(json.JSONDecodeError, UnicodeDecodeError):
            record = json.loads(line)
            if _valid_record(record, plan):
                done[record["chunk"]] = record
    if whole < len(raw):  # a torn last line (killed while appending)
        with open(log, "r+b") as fh:
            fh.truncate(whole)
    return done


def _valid_record(record: Any, plan: dict[str, Any]) -> bool:
    channels = plan["channels"]
    return (isinstance(record, dict) and isinstance(record.get("chunk"), int)
            and 0 <= record["chunk"] < plan["chunks"] and isinstance(record.get("sha"), str)
            and len(record["sha"]) == 64 and all(isinstance(record.get(k), list) and len(record[k]) == channels
                                                 for k in ("sum", "sq"))
            and isinstance(record.get("skipped"), list))


def _allocated(images: Path, header: bytes, size: int) -> bool:
    """Whether images.npy is there at full size with the expected header."""
    try:
        with open(images, "rb") as fh:
            return os.fstat(fh.fileno()).st_size == size and fh.read(len(header)) == header
    except OSError:
        return False


def _size_on_disk(path: Path) -> int:
    try:
        return path.stat().st_blocks * 512
    except (OSError, AttributeError):
        return 0


def _check_space(root: Path, needed: int) -> None:
    """InputError naming both sizes when the disk of `root` (or its nearest existing folder) has too little room."""
    where = next(p for p in (root, *root.absolute().parents) if p.exists())
    free = shutil.disk_usage(where).free
    if needed > free:
        raise InputError(f"--out {root}: the store needs {_size(needed)} and its disk has {_size(free)} free; free "
                         "space or give a folder on another disk")


def _size(n: float) -> str:
    units = ("B", "KB", "MB", "GB", "TB")
    power = min(int(math.log(max(n, 1), 1000)), len(units) - 1)
    return f"{n / 1000 ** power:.1f} {units[power]}" if power else f"{int(n)} B"


def _decode(source: Source, images: Path, offset: int, bounds: list[tuple[int, int]], pending: list[int],
            workers: int, skip_bad: bool, log: Path, done: dict[int, dict[str, Any]], progress: bool) -> None:
    """Run the workers over the pending chunks, logging each finished chunk (fsync'd) as it comes."""
    if source.rows.warm is not None:
        source.rows.warm(source.side)  # shared work (e.g. the synthetic images), before the fork
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    bar: list[Any] = []

    def start_bar() -> None:
        from tqdm import tqdm

        rows = sum(bounds[k][1] - bounds[k][0] for k in pending)
        bar.append(tqdm(total=rows, unit="img", desc="prepare", file=sys.stderr, disable=not progress,
                        smoothing=0.1, dynamic_ncols=True))

    def on_chunk(record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        except OSError as exc:
            raise (StorageFullError(log) if is_no_space(exc) else exc) from None
        done[record["chunk"]] = record

    try:
        run_workers(source, images, offset, bounds, pending, workers, skip_bad, on_chunk,
                    lambda rows: bar[0].update(rows) if bar else None, before_wait=start_bar)
    except DatasetError as exc:
        finished = f"; the {len(done)} chunks finished stay done" if done else ""
        hint = "; --skip-bad records such files and goes on" if isinstance(exc, ImageDecodeError) else ""
        raise DatasetError(f"{exc}{finished}{hint}") from None
    finally:
        os.close(fd)
        if bar:
            bar[0].close()


def _finish(root: Path, source: Source, bounds: list[tuple[int, int]],
            done: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Write labels, splits and the manifest (last, atomically) from the chunks' reports; drop the log."""
    missing = [k for k in range(len(bounds)) if k not in done]
    if missing:  # run_workers raises before this; a guard against a log that lost lines
        raise DatasetError(f"--out {root}: chunks {missing[:5]} were not written; run the same command again")
    records = [done[k] for k in range(len(bounds))]
    skipped = sorted((s for r in records for s in r["skipped"]), key=lambda s: s["row"])
    splits = source.splits.copy()
    splits[[s["row"] for s in skipped]] = store.SKIPPED
    labels = source.labels
    try:
        for name, array in ((store.LABELS, labels), (store.SPLITS, splits)):
            with open(root / name, "wb") as fh:
                np.save(fh, array)
                fh.flush()
                os.fsync(fh.fileno())
        manifest = _manifest(root, source, records, labels, splits, skipped)
        store.write_json_atomic(root / store.MANIFEST, manifest)
        (root / store.PROGRESS).unlink(missing_ok=True)
        store.fsync_dir(root)
    except OSError as exc:
        if is_no_space(exc):
            raise StorageFullError(exc.filename or root) from None
        raise
    return manifest


def _manifest(root: Path, source: Source, records: list[dict[str, Any]], labels: np.ndarray, splits: np.ndarray,
              skipped: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest of the finished store (`store` documents the keys open_store reads)."""
    from anynet_search import __version__

    n, side, channels = len(labels), source.side, source.rows.channels
    train_rows = int((splits == store.TRAIN).sum())
    if train_rows == 0:
        raise DatasetError(f"{source.rows.spec}: no train image could be decoded ({len(skipped)} skipped)")
    pixels = train_rows * side * side
    sums = [sum(r["sum"][c] for r in records) for c in range(channels)]
    squares = [sum(r["sq"][c] for r in records) for c in range(channels)]
    mean = [s / pixels / 255 for s in sums]
    # exact integer variance, then one rounding; a constant channel gets 1e-6 (as channel_stats), not 0
    std = [max(math.sqrt((q * pixels - s * s) / (pixels * pixels)) / 255, 1e-6) for s, q in zip(sums, squares)]
    chunks = [r["sha"] for r in records]
    labels_sha, splits_sha = store.sha256_hex(labels), store.sha256_hex(splits)
    classes = source.classes
    digest = store.content_digest((n, side, side, channels), classes, source.resolution, chunks, labels_sha,
                                  splits_sha)
    files = {name: store.file_stamp(root / name) for name in store.ARRAY_FILES}
    manifest: dict[str, Any] = {
        "format": store.STORE_FORMAT, "digest": digest, "resolution": source.resolution, "side": side,
        "channels": channels, "count": n, "classes": classes, "mean": mean, "std": std,
        "chunk_rows": store.chunk_rows(n, side * side * channels), "chunks": chunks, "labels_sha256": labels_sha,
        "splits_sha256": splits_sha, "files": files, "source": source.rows.spec, "inputs": source.inputs,
        "arguments": source.arguments, "margin": source.margin, "test_source": source.test_source,
        "split_counts": {"train": train_rows, "test": int((splits == store.TEST).sum()), "skipped": len(skipped)},
        "skipped": skipped, "flip": source.rows.flip, "decoder": source.rows.decoder, "written_by": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if source.test_source == "carved":
        from anynet_search.training.data.sources import SPLIT_SEED, TEST_FRACTION

        manifest["carved"] = {"test_fraction": TEST_FRACTION, "seed": SPLIT_SEED, "by": "stratified_holdout"}
    if source.class_names:
        manifest["class_names"] = source.class_names
    manifest.update(source.rows.notes)
    return manifest
