"""The package's error classes: what the command line reports as one line, and what it lets crash.

Every error a user can cause (a bad option, file, data set, space, storage URL, journal or result folder)
is an `AnynetSearchError`; the CLI prints its first line and exits 2. Anything else is a bug and keeps
its traceback. `InputError` also subclasses ValueError so library callers that catch ValueError keep
working.
"""

from __future__ import annotations

import errno
import logging
import sys

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
