"""Optuna's journal file, safe against torn writes and full disks, with unreadable lines reported by number.

A journal line is one JSON operation and ends with a newline. A write cut short (a full disk, a process
killed mid-write) leaves a last line without its newline. Optuna's reader ignores such a line, but the
next append would glue its record onto it: from then on every reader fails and the study is lost.
`SafeJournalBackend` therefore

- cuts a torn last line before anything is appended (under the journal's lock, so no write is in flight),
  saves the cut bytes next to the journal (`journal.log.torn-<time>-<pid>`) and logs one warning;
- on a full disk removes the partial line it just wrote and raises `StorageFullError` naming the file, so
  the journal stays readable and the study resumes once space is freed;
- turns an unreadable line in the middle into `JournalCorruptError` with the file and the line number.

Read-only commands do not change the file: `find_torn_tail` tells them what the reader skips.
A torn line is never applied by any Optuna reader (it has no newline, or does not parse), so cutting it
changes no reader's view of the study.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from anynet_search.errors import InputError, StorageFullError, is_no_space

log = logging.getLogger("anynet_search")

RECORD_PREFIX = b'{"op_code":'  # every Optuna journal record starts like this
_CHUNK = 1 << 20


class JournalCorruptError(InputError):
    """A journal line in the middle of the file is not a record: the study cannot be replayed past it."""


@dataclass(frozen=True)
class TornTail:
    """An unreadable last line of a journal: where it starts, its 1-based line number, size and why."""

    offset: int
    line: int
    size: int
    reason: str


def _lines_before(path: Path, offset: int) -> int:
    """Number of newlines in the first `offset` bytes of the file."""
    count = 0
    with open(path, "rb") as f:
        while offset > 0:
            chunk = f.read(min(_CHUNK, offset))
            if not chunk:
                break
            count += chunk.count(b"\n")
            offset -= len(chunk)
    return count


def _last_line_start(f: Any, end: int) -> int:
    """Offset just after the last newline before byte `end` (0 if there is none)."""
    pos = end
    while pos > 0:
        step = min(_CHUNK, pos)
        f.seek(pos - step)
        chunk = f.read(step)
        i = chunk.rfind(b"\n")
        if i != -1:
            return pos - step + i + 1
        pos -= step
    return 0


def _is_record_prefix(data: bytes) -> bool:
    return data[:len(RECORD_PREFIX)] == RECORD_PREFIX[:len(data)]


def find_torn_tail(path: str | os.PathLike) -> TornTail | None:
    """The journal's last line if no reader can apply it (no newline, or not JSON), else None; changes nothing."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return None
    with open(path, "rb") as f:
        f.seek(size - 1)
        terminated = f.read(1) == b"\n"
        start = _last_line_start(f, size - 1 if terminated else size)
        f.seek(start)
        data = f.read(size - start)
    if not terminated:
        reason = "it has no line end (a write was cut short)"
    else:
        try:
            json.loads(data)
            return None
        except ValueError as exc:
            reason = f"it is not valid JSON ({getattr(exc, 'msg', exc)})"
    return TornTail(start, _lines_before(path, start) + 1, size - start, reason)


def describe_tail(path: str | os.PathLike, tail: TornTail) -> str:
    """One line saying which line of which journal is unreadable and why."""
    return f"journal {path}: line {tail.line} ({tail.size} bytes) is unreadable: {tail.reason}"


def first_bad_line(path: str | os.PathLike) -> tuple[int, str] | None:
    """(1-based line number, reason) of the first line that is not a journal record, or None."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.endswith(b"\n"):
                return number, "no line end"
            try:
                record = json.loads(line)
            except ValueError as exc:
                msg = getattr(exc, "msg", str(exc))
                col = getattr(exc, "colno", None)
                return number, f"not valid JSON: {msg}{f' at column {col}' if col else ''}"
            if not isinstance(record, dict) or "op_code" not in record:
                return number, "JSON but not an Optuna journal record"
    return None


def _backup_path(path: Path) -> Path:
    stem = f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    candidate, n = path.with_name(stem), 1
    while candidate.exists():
        candidate, n = path.with_name(f"{stem}.{n}"), n + 1
    return candidate


def _write_all(fd: int, data: bytes) -> int:
    """Write every byte (os.write may write fewer than asked); an OSError carries `written`, the bytes that made it."""
    view, written = memoryview(data), 0
    try:
        while written < len(data):
            written += os.write(fd, view[written:])
    except OSError as exc:
        exc.written = written  # type: ignore[attr-defined]
        raise
    return written


def cut_torn_tail(path: str | os.PathLike, tail: TornTail) -> Path:
    """Save the tail's bytes to a backup file next to the journal, then truncate the journal before it."""
    path = Path(path)
    backup = _backup_path(path)
    with open(path, "rb") as f:
        f.seek(tail.offset)
        data = f.read()
    try:
        fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        backup.unlink(missing_ok=True)  # the journal is untouched: nothing is lost
        if is_no_space(exc):
            raise StorageFullError(backup) from None
        raise
    with open(path, "r+b") as f:
        f.truncate(tail.offset)
        f.flush()
        os.fsync(f.fileno())
    log.warning("%s; moved it to %s before appending", describe_tail(path, tail), backup)
    return backup


class SafeJournalBackend(JournalFileBackend):
    """A journal file backend that never appends onto a torn line and survives a full disk."""

    def __init__(self, file_path: str | os.PathLike, repair: bool = True) -> None:
        self.path = Path(file_path)
        self.lock = JournalFileSymlinkLock(str(self.path))
        try:
            super().__init__(str(self.path), lock_obj=self.lock)
        except OSError as exc:
            if is_no_space(exc):
                raise StorageFullError(self.path) from None
            raise
        if repair:
            with self._locked():
                self._repair()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the journal's lock: no other process is in the middle of a write meanwhile."""
        try:
            self.lock.acquire()
        except OSError as exc:
            if is_no_space(exc):
                raise StorageFullError(f"{self.path}.lock") from None
            raise
        try:
            yield
        finally:
            self.lock.release()

    def _repair(self) -> None:
        """Cut an unreadable last line that is a cut-short record; refuse a file whose last line is no record."""
        tail = find_torn_tail(self.path)
        if tail is None:
            return
        with open(self.path, "rb") as f:
            f.seek(tail.offset)
            head = f.read(len(RECORD_PREFIX))
        if not _is_record_prefix(head):
            raise JournalCorruptError(f"{describe_tail(self.path, tail)}, and it is not an Optuna journal record; "
                                      "is this file a journal?")
        cut_torn_tail(self.path, tail)

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        """Optuna's reader; an unreadable line in the middle raises JournalCorruptError naming file and line."""
        try:
            yield from super().read_logs(log_number_from)
        except ValueError as exc:  # json.JSONDecodeError, or Optuna's "Invalid log format."
            bad = first_bad_line(self.path)
            if bad is None:
                raise JournalCorruptError(f"journal {self.path}: unreadable ({exc})") from None
            line, why = bad
            raise JournalCorruptError(
                f"journal {self.path}: line {line} is unreadable ({why}), so the study cannot be replayed past it; "
                f"keep a copy, then `head -n {line - 1}` of it recovers the study as it was before that line") from None

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Append records: a torn last line is cut first, and a full disk leaves no partial line behind."""
        data = ("\n".join(json.dumps(entry, separators=(",", ":")) for entry in logs) + "\n").encode("utf-8")
        with self._locked():
            if not self._ends_cleanly():
                self._repair()
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            except OSError as exc:
                if is_no_space(exc):
                    raise StorageFullError(self.path) from None
                raise
            try:
                start = os.fstat(fd).st_size
                _write_all(fd, data)
                os.fsync(fd)
            except OSError as exc:
                if not is_no_space(exc):
                    raise
                # Keep the complete lines (a reader may have applied them); drop the partial one we wrote.
                written = getattr(exc, "written", len(data))
                try:
                    os.ftruncate(fd, start + data[:written].rfind(b"\n") + 1)
                except OSError:
                    pass  # then the next append or open cuts it, with a backup
                raise StorageFullError(self.path) from None
            finally:
                os.close(fd)

    def _ends_cleanly(self) -> bool:
        """Whether the file is empty or ends with a newline (one byte read: cheap enough for every append)."""
        with open(self.path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            if end == 0:
                return True
            f.seek(end - 1)
            return f.read(1) == b"\n"
