"""Points in a device's queued work that the host can poll without blocking: how a training task waits.

A training task is a generator that queues work on its device and yields a `Fence` when it needs a result
(an epoch's validation error, a divergence check) or yields None when it only gives the other tasks their
turn. `drive` runs one task to its end, blocking at each fence; the engine (`training.engine`) instead polls
the fences of several tasks and resumes whichever is ready, so no task's wait stalls the others. On the CPU
work runs when it is queued, so a fence is done as soon as it exists.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from typing import Any, TypeVar

import torch

T = TypeVar("T")
Task = Generator["Fence | None", None, T]


class Fence:
    """Everything queued so far on the current CUDA stream (or nothing to wait for on the CPU).

    With `timing`, `seconds_since(other)` gives the device time between two fences of one stream.
    """

    __slots__ = ("event", "host_time")

    def __init__(self, device: torch.device, timing: bool = False) -> None:
        self.host_time = time.perf_counter()
        self.event: torch.cuda.Event | None = None
        if device.type == "cuda":
            self.event = torch.cuda.Event(enable_timing=timing)
            self.event.record()

    def done(self) -> bool:
        """Whether the work before the fence has finished (never blocks)."""
        return self.event is None or self.event.query()

    def wait(self) -> None:
        """Block until the work before the fence has finished."""
        if self.event is not None:
            self.event.synchronize()

    def seconds_since(self, earlier: Fence) -> float:
        """Seconds from `earlier` to this fence: device time on CUDA (both fences timed), host time on the CPU."""
        if self.event is not None and earlier.event is not None:
            return earlier.event.elapsed_time(self.event) / 1000.0
        return self.host_time - earlier.host_time


class Delay:
    """A wait that is over after `seconds` (a task waiting for memory or for the device to itself)."""

    __slots__ = ("until",)

    def __init__(self, seconds: float) -> None:
        self.until = time.monotonic() + seconds

    def done(self) -> bool:
        """Whether the time has passed."""
        return time.monotonic() >= self.until

    def wait(self) -> None:
        """Sleep until the time has passed."""
        time.sleep(max(0.0, self.until - time.monotonic()))


class Pending:
    """The result of a call made on another thread (a storage write); `done()` polls, `result()` waits and returns it
    or raises what the call raised."""

    __slots__ = ("_event", "_value", "_error")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def settle(self, value: Any = None, error: BaseException | None = None) -> None:
        """Record the call's outcome and wake whoever waits."""
        self._value, self._error = value, error
        self._event.set()

    def done(self) -> bool:
        """Whether the call has ended."""
        return self._event.is_set()

    def wait(self) -> None:
        """Block until the call has ended."""
        self._event.wait()

    def result(self) -> Any:
        """What the call returned (blocking until it ended); raises what it raised."""
        self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value


def drive(task: Generator[Any, None, T]) -> T:
    """Run a task to its end, blocking at every fence it yields; returns what it returns."""
    try:
        while True:
            fence = next(task)  # a Fence, a Delay, a Pending or None
            if fence is not None:
                fence.wait()
    except StopIteration as stop:
        return stop.value
