"""The package's error classes: what the command line reports as one line, and what it lets crash.

Every error a user can cause (a bad option, file, data set, space, storage URL, journal or result folder)
is an `AnynetSearchError`; the CLI prints its first line and exits 2. Anything else is a bug and keeps
its traceback. `InputError` also subclasses ValueError so library callers that catch ValueError keep
working.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class AnynetSearchError(Exception):
    """Base of every user-facing error of anynet-search (one-line message naming the culprit)."""


class InputError(AnynetSearchError, ValueError):
    """An option, file, data set, design space or storage that cannot be used as given."""


class DatasetError(InputError):
    """A dataset spec, path or file that cannot be loaded; the message is one line naming the culprit."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).splitlines()))  # one line, even when a cause had several


class StorageFullError(AnynetSearchError, OSError):
    """The disk (or quota) holding a file filled up while writing it; what was stored stays readable."""

    def __init__(self, path: object) -> None:
        super().__init__(f"no space left on device while writing {path}")
        self.errno = errno.ENOSPC  # still recognizable as a full disk by code that checks errno
        self.path = str(path)

    def __reduce__(self) -> tuple:
        """Pickle by path (worker processes send it to the main process)."""
        return type(self), (self.path,)


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGHUP) delivered as a KeyboardInterrupt, so every Ctrl-C path handles it; the
    command then exits 128 + `signum`, as a shell reports a process the signal ended."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def leave_hung_up_terminal(signum: int) -> None:
    """After SIGHUP, point stdout and stderr that were a terminal at /dev/null: writing to a terminal that hung
    up fails (EIO), and the messages of the orderly stop must not turn into errors."""
    if signum != signal.SIGHUP:
        return
    for fd in (1, 2):
        try:
            if os.isatty(fd):
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)
        except OSError:
            continue


def raise_stopped(signum: int, _frame: Any) -> None:
    """Signal handler: raise `Stopped(signum)`."""
    leave_hung_up_terminal(signum)
    raise Stopped(signum)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def stop_on_signals(handler: Callable[[int, Any], None] = raise_stopped) -> dict[int, Any]:
    """Route SIGTERM and SIGHUP through `handler` (returns the previous handlers). A signal the process was told
    to ignore (`nohup` ignores SIGHUP) stays ignored."""
    previous = {}
    for sig in STOP_SIGNALS:
        current = signal.getsignal(sig)
        if current is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, handler)
    return previous


def exit_code(exc: KeyboardInterrupt) -> int:
    """128 + the signal that stopped the command (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP)."""
    return 128 + getattr(exc, "signum", signal.SIGINT)


def stop_words(exc: KeyboardInterrupt) -> str:
    """'interrupted' (Ctrl-C) or 'stopped by SIGTERM'."""
    return f"stopped by {signal.Signals(exc.signum).name}" if isinstance(exc, Stopped) else "interrupted"


def show_warnings(prefix: str) -> logging.Handler:
    """Print the package's warnings (a repaired journal, a skipped line) as `PREFIX: warning: ...` on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{prefix}: warning: %(message)s"))
    logging.getLogger("anynet_search").addHandler(handler)
    return handler


def is_no_space(exc: BaseException) -> bool:
    """Whether an exception is an OSError for a full disk or an exhausted quota."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS


def os_error_line(exc: OSError) -> str:
    """One line for a file-system error: the path(s) it names and the OS's reason."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    return f"{paths}: {reason}" if paths else reason


def yaml_problem(exc: Exception) -> str:
    """A PyYAML parser error in one line, with its line and column and without the parser's `<unicode string>`
    placeholder for the file name: 'line 2, column 3: expected <block end>, but found ... (while parsing ...)'."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if problem is None:
        text = str(exc).replace('in "<unicode string>", ', "").strip()
        return " ".join(text.split()) or type(exc).__name__
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context = getattr(exc, "context", None)
    return f"{where}{problem}" + (f" ({context})" if context else "")
