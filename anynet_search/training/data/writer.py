"""The parallel half of `prepare`: worker processes that decode chunks of rows into images.npy.

images.npy is allocated at full size up front (.npy header, then `posix_fallocate`), so each worker writes its
rows in place with `os.pwrite`: no temporary files, no copy at the end. Each worker takes a contiguous run of
the unfinished chunks and, for each chunk in order, decodes its rows, writes them, `fdatasync`s and only then
reports the chunk to the parent: its sha256 and the per-channel integer sums and sums of squares of its TRAIN
rows (exact, so the store's mean and std do not depend on how the chunks were shared out). The parent appends
the report to the progress log; a chunk that was not reported is done again by the next run.

Workers are forked (the source's file list and arrays are shared, nothing is pickled), die with the parent
(prctl PDEATHSIG on Linux; elsewhere they check their parent between rows), ignore Ctrl-C (the parent stops
them), and a worker that dies is a one-line error naming its rows.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np

from anynet_search.errors import AnynetSearchError, DatasetError, StorageFullError, is_no_space
from anynet_search.training.data.sources import Source
from anynet_search.training.data.store import TRAIN

TICK_ROWS = 128  # rows decoded between two progress reports of a worker
STAT_PIXELS = 1 << 20  # pixels summed at a time (bounds the int64 temporary of the sums of squares)
TEST_DELAY_ENV = "ANYNET_SEARCH_PREPARE_TEST_DELAY"  # test hook: seconds a worker sleeps before writing a chunk
_PR_SET_PDEATHSIG = 1


def allocate(path: Path, header: bytes, total: int) -> None:
    """Create `path` as `header` followed by zeros up to `total` bytes, its blocks reserved where the file system
    can (so a full disk shows now, not halfway); StorageFullError when they do not fit."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            os.posix_fallocate(fd, 0, total)
        except AttributeError:  # not Linux
            os.ftruncate(fd, total)
        except OSError as exc:
            if is_no_space(exc):
                raise
            os.ftruncate(fd, total)  # EOPNOTSUPP, EINVAL: a file system without fallocate
        _pwrite_all(fd, header, 0)
        os.fsync(fd)
    except OSError as exc:
        if is_no_space(exc):
            raise StorageFullError(path) from None
        raise
    finally:
        os.close(fd)


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def channel_sums(images: np.ndarray) -> tuple[list[int], list[int]]:
    """Per-channel sums and sums of squares of uint8 (n, S, S, C) images, as exact integers."""
    pixels = images.reshape(-1, images.shape[-1])
    sums = np.zeros(pixels.shape[1], np.int64)
    squares = np.zeros(pixels.shape[1], np.int64)
    for start in range(0, len(pixels), STAT_PIXELS):
        block = pixels[start:start + STAT_PIXELS].astype(np.int64)
        sums += block.sum(axis=0)
        squares += (block * block).sum(axis=0)
    return [int(v) for v in sums], [int(v) for v in squares]


def run_workers(source: Source, images: Path, data_offset: int, bounds: list[tuple[int, int]], pending: list[int],
                workers: int, skip_bad: bool, on_chunk: Callable[[dict[str, Any]], None],
                on_rows: Callable[[int], None], before_wait: Callable[[], Any] = lambda: None,
                keep_fds: tuple[int, ...] = ()) -> None:
    """Decode the `pending` chunks with `workers` forked processes, each a contiguous run of them; `on_chunk`
    gets each finished chunk's report (in the parent, as it comes), `on_rows` each batch of decoded rows.
    `before_wait` runs once the workers exist (start threads such as a progress bar there, never before a fork).
    The first error of any worker stops the others and is raised (after the chunks reported so far)."""
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    runs = [[int(k) for k in part] for part in np.array_split(np.asarray(pending, np.int64), workers) if len(part)]
    procs: list[tuple[Any, Connection, list[int]]] = []
    for run in runs:
        receiver, sender = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=(source, str(images), data_offset, bounds, run, skip_bad, sender,
                                                  os.getpid(), keep_fds), daemon=True)
        proc.start()
        sender.close()
        procs.append((proc, receiver, run))
    before_wait()
    error: BaseException | None = None
    live: dict[Connection, tuple[Any, list[int]]] = {conn: (proc, run) for proc, conn, run in procs}
    finished: set[Connection] = set()
    try:
        while live:
            for conn in wait(list(live)):
                assert isinstance(conn, Connection)
                proc, run = live[conn]
                try:
                    message = conn.recv()
                except Exception:  # EOF (or a message cut short): the worker is gone, finished or dead
                    proc.join()
                    del live[conn]
                    if conn not in finished and error is None:
                        error = _death(proc.exitcode, bounds, run)
                        _stop([p for p, _ in live.values()])
                    continue
                kind = message[0]
                if kind == "rows":
                    on_rows(message[1])
                elif kind == "chunk":
                    on_chunk(message[1])
                elif kind == "done":
                    finished.add(conn)
                elif kind == "error" and error is None:
                    error = message[1]
                    _stop([p for p, _ in live.values()])
    except BaseException:  # Ctrl-C, a full disk while logging: stop the workers, keep what was logged
        _stop([p for p, _, _ in procs])
        raise
    finally:
        for proc, conn, _ in procs:
            proc.join()
            conn.close()
    if error is not None:
        raise error


def _stop(procs: list[Any]) -> None:
    for proc in procs:
        if proc.is_alive():
            proc.terminate()


def _death(code: int | None, bounds: list[tuple[int, int]], run: list[int]) -> AnynetSearchError:
    """The one-line error for a worker that ended without finishing its chunks."""
    rows = f"rows {bounds[run[0]][0]}..{bounds[run[-1]][1] - 1}"
    if code is not None and code < 0:
        how = f"was killed by signal {-code} ({signal.Signals(-code).name})"
    else:
        how = f"exited with code {code}"
    return AnynetSearchError(f"a prepare worker decoding {rows} {how} (out of memory?); run the same command "
                             "again to finish the store")


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this worker when the parent dies (Linux); the row loop checks elsewhere."""
    with contextlib.suppress(Exception):  # not Linux, or no libc
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)


def _worker(source: Source, images: str, data_offset: int, bounds: list[tuple[int, int]], run: list[int],
            skip_bad: bool, conn: Connection, parent: int, keep_fds: tuple[int, ...]) -> None:
    """A worker process: decode, write, sync and report each chunk of `run` in order."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops the workers
    for sig in (signal.SIGTERM, signal.SIGHUP):  # the parent stops a worker with SIGTERM: end quietly, not with the
        signal.signal(sig, signal.SIG_DFL)  # CLI's stop handler (inherited through the fork) and its traceback
    for fd in keep_fds:  # the parent's lock on the store: only the parent holds it
        with contextlib.suppress(OSError):
            os.close(fd)
    delay = float(os.environ.get(TEST_DELAY_ENV, "0") or 0)
    try:
        fd = os.open(images, os.O_WRONLY)
        row_bytes = source.side * source.side * source.rows.channels
        for k in run:
            start, stop = bounds[k]
            chunk = np.empty((stop - start, source.side, source.side, source.rows.channels), np.uint8)
            skipped: list[dict[str, Any]] = []
            for a in range(start, stop, TICK_ROWS):
                b = min(a + TICK_ROWS, stop)
                chunk[a - start:b - start], bad = source.read(a, b, skip_bad)
                skipped += bad
                conn.send(("rows", b - a))
                if os.getppid() != parent:
                    os._exit(1)
            if delay:
                time.sleep(delay)
            _pwrite_all(fd, memoryview(chunk), data_offset + start * row_bytes)
            os.fdatasync(fd)
            sums, squares = channel_sums(chunk[source.splits[start:stop] == TRAIN])
            sha = hashlib.sha256(memoryview(chunk).cast("B")).hexdigest()
            conn.send(("chunk", {"chunk": k, "sha": sha, "sum": sums, "sq": squares, "skipped": skipped}))
        os.close(fd)
        conn.send(("done",))
    except OSError as exc:
        conn.send(("error", StorageFullError(images) if is_no_space(exc) else _os_error(exc)))
    except AnynetSearchError as exc:
        conn.send(("error", exc))
    except Exception as exc:  # a bug: its traceback on stderr, and a line for the parent
        import traceback

        traceback.print_exc(file=sys.stderr)
        conn.send(("error", AnynetSearchError(f"a prepare worker failed ({type(exc).__name__}: {exc})")))
    finally:
        conn.close()


def _os_error(exc: OSError) -> DatasetError:
    from anynet_search.errors import os_error_line

    return DatasetError(f"prepare: {os_error_line(exc)}")
