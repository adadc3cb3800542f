"""Optuna's journal file, safe against torn writes, damaged lines and full disks.

A journal line is one JSON operation and ends with a newline. A write cut short (a full disk, a process
killed mid-write) leaves a last line without its newline. Optuna's reader ignores such a line, but the
next append would glue its record onto it, and a line that is not a record stops Optuna's reader with every
record after it. `SafeJournalBackend` therefore

- cuts a torn last line before anything is appended (under the journal's lock, so no write is in flight),
  saves the cut bytes next to the journal (`journal.log.torn-<time>-<pid>`) and logs one warning;
- reads past damaged lines record by record (`journal_salvage`): every readable record is kept, a lost
  trial creation gets a failed placeholder so later trials keep their numbers, and one warning says what was
  lost. With `repair=True` (`run`, `worker`) the file is rewritten that way under the lock, the damaged lines
  kept in `journal.log.damaged-<time>-<pid>`; read-only commands salvage in memory and change nothing;
- on a full disk removes the partial line it just wrote and raises `StorageFullError` naming the file, so
  the journal stays readable and the study resumes once space is freed.

A file in which no line is a record is refused (`JournalCorruptError`): it is not a journal.
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
from anynet_search.study.journal_salvage import RECORD_PREFIX, Salvage, parse_record, salvage

log = logging.getLogger("anynet_search")

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
    terminated: bool = False  # it ends with a newline (so it is damage, not a write cut short)


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
    return TornTail(start, _lines_before(path, start) + 1, size - start, reason, terminated)


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


def _backup_path(path: Path, kind: str = "torn") -> Path:
    stem = f"{path.name}.{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
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


def _write_new(path: Path, data: bytes, *, replace: Path | None = None) -> None:
    """Write a new file (fsynced), or a temporary one renamed over `replace`; a failure leaves nothing behind."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace is not None:
            os.replace(path, replace)
    except OSError as exc:
        path.unlink(missing_ok=True)  # the journal is untouched: nothing is lost
        if is_no_space(exc):
            raise StorageFullError(path if replace is None else replace) from None
        raise


def cut_torn_tail(path: str | os.PathLike, tail: TornTail) -> Path:
    """Save the tail's bytes to a backup file next to the journal, then truncate the journal before it."""
    path = Path(path)
    backup = _backup_path(path)
    with open(path, "rb") as f:
        f.seek(tail.offset)
        data = f.read()
    _write_new(backup, data)
    with open(path, "r+b") as f:
        f.truncate(tail.offset)
        f.flush()
        os.fsync(f.fileno())
    log.warning("%s; moved it to %s before appending", describe_tail(path, tail), backup)
    return backup


class SafeJournalBackend(JournalFileBackend):
    """A journal file backend that never appends onto a torn line, reads past damaged lines and survives a full
    disk. `repair=True` (writers) cuts a torn tail and rewrites damaged lines; `repair=False` changes nothing."""

    def __init__(self, file_path: str | os.PathLike, repair: bool = True) -> None:
        self.path = Path(file_path)
        self.lock = JournalFileSymlinkLock(str(self.path))
        self.repair = repair
        self._salvaged_from: int | None = None  # read-only: log number where the in-memory salvage starts
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

    def _not_a_journal(self, what: str) -> JournalCorruptError:
        return JournalCorruptError(f"journal {self.path}: {what}, and it is not an Optuna journal record; "
                                   "is this file a journal?")

    def _repair(self) -> None:
        """Cut a last line without its line end (a write cut short); refuse a file with no record before it."""
        tail = find_torn_tail(self.path)
        if tail is None or tail.terminated:  # a complete line that is no record: the reader salvages it
            return
        with open(self.path, "rb") as f:
            f.seek(tail.offset)
            head = f.read(len(RECORD_PREFIX))
        if tail.offset == 0 and not head.startswith(RECORD_PREFIX[:len(head)]):
            raise self._not_a_journal(describe_tail(self.path, tail).removeprefix(f"journal {self.path}: "))
        cut_torn_tail(self.path, tail)

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        """Optuna's reader (records from a log number on, a torn last line ignored), reading past damaged lines."""
        number = log_number_from if log_number_from in self._log_number_offset else (
            self._salvaged_from if self._salvaged_from is not None and log_number_from > self._salvaged_from else 0)
        offset = self._log_number_offset[number]
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size  # lines appended while reading are left for the next read
            f.seek(offset)
            while True:
                line = f.readline()
                if not line.endswith(b"\n") or offset + len(line) > size:
                    return
                record = parse_record(line)
                if record is None:
                    break
                offset += len(line)
                self._log_number_offset[number + 1] = offset
                number += 1
                if number > log_number_from:
                    yield record
        if self.repair:
            self._rewrite_damaged(number, offset)
            yield from self.read_logs(max(number, log_number_from))  # what came before was yielded already
        else:
            yield from self._salvage_in_memory(number, offset, log_number_from)

    def _damaged_region(self, offset: int) -> tuple[bytes, bytes]:
        """(the complete lines from `offset` on, the torn last line after them if any)."""
        with open(self.path, "rb") as f:
            f.seek(offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        return data[:end], data[end:]

    def _salvage(self, number: int, offset: int, region: bytes) -> Salvage:
        found = salvage(region, number + 1)  # the lines before are records: log number n is line n + 1
        if offset == 0 and not found.readable:
            raise self._not_a_journal(f"line {found.damaged[0]} is unreadable")
        return found

    def _rewrite_damaged(self, number: int, offset: int) -> None:
        """Under the lock: set the damaged lines aside in a file beside the journal and rewrite it with every
        readable record kept (and placeholders for lost creations); one warning says what was lost."""
        with self._locked():
            region, torn = self._damaged_region(offset)
            found = self._salvage(number, offset, region)
            if not found.damaged:  # another process rewrote it meanwhile
                return
            with open(self.path, "rb") as f:
                before = f.read(offset)
            backup = _backup_path(self.path, "damaged")
            _write_new(backup, found.set_aside)
            _write_new(_backup_path(self.path, "rewrite"), before + b"".join(found.lines) + torn, replace=self.path)
        log.warning("journal %s: %s; kept every readable record and moved the damaged lines to %s",
                    self.path, found.summary(), backup)

    def _salvage_in_memory(self, number: int, offset: int, log_number_from: int) -> Iterator[dict[str, Any]]:
        """Read-only: the salvaged records from log number `number` on; the file is left alone."""
        region, _ = self._damaged_region(offset)
        found = self._salvage(number, offset, region)
        if self._salvaged_from is None:
            self._salvaged_from = number
            log.warning("journal %s: %s; skipped them, keeping every readable record (run or worker moves the "
                        "damaged lines to a file beside the journal)", self.path, found.summary())
        for i, line in enumerate(found.lines):
            if number + i >= log_number_from:
                yield parse_record(line)

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
