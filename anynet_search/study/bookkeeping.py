"""A worker's storage calls on a thread of their own, so that trials in flight keep their GPU fed.

Every storage write is a journal append with an fsync, or a database round trip; made on the engine's
thread, each one stalls the launches of every trial in flight. Trials hand their writes to one thread
instead (`StorageThread.call`, a task step that waits without blocking the engine), which runs them in the
order given: a trial's writes keep their order, and a write never tears (a stop request only reaches the
engine's thread). Outside a worker (`current()` is None) the calls run where they are made.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator
from typing import Any

from anynet_search.training.fences import Pending

_CURRENT: StorageThread | None = None


class StorageThread:
    """One daemon thread that runs submitted calls in order."""

    def __init__(self) -> None:
        self.calls: queue.SimpleQueue[tuple[Callable[[], Any], Pending] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name="anynet-storage", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while (item := self.calls.get()) is not None:
            fn, pending = item
            try:
                pending.settle(value=fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the trial that made the call
                pending.settle(error=exc)

    def submit(self, fn: Callable[[], Any]) -> Pending:
        """Queue a call; its Pending settles when it has run."""
        pending = Pending()
        self.calls.put((fn, pending))
        return pending

    def call(self, fn: Callable[[], Any]) -> Generator[Pending, None, Any]:
        """A task step: run `fn` on the storage thread, wait for it (other tasks run meanwhile), return its result."""
        pending = self.submit(fn)
        yield pending
        return pending.result()

    def flush(self) -> None:
        """Wait until every call queued so far has run."""
        self.submit(lambda: None).wait()

    def close(self) -> None:
        """Let the thread end after the calls already queued."""
        self.calls.put(None)


def current() -> StorageThread | None:
    """The storage thread of this process's running worker, if any."""
    return _CURRENT


def install(thread: StorageThread | None) -> None:
    """Make `thread` this process's storage thread (None: calls run where they are made)."""
    global _CURRENT
    _CURRENT = thread


def call(fn: Callable[[], Any]) -> Generator[Pending, None, Any]:
    """A task step: `fn` on this process's storage thread when a worker runs one, else right here."""
    thread = _CURRENT
    if thread is None:
        return fn()
    return (yield from thread.call(fn))
