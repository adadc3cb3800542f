"""Several trials in flight on one device: cooperative tasks, each on a CUDA stream of its own.

Worker processes that share a GPU take turns on it (without MPS their kernels never overlap), while the
streams of one process do overlap. So one process per GPU keeps k trials in flight: each trial is a task
(a generator, see `training.fences`) that queues a step and yields; `InFlight.run_round` resumes every
task whose fence is done, once, with the current stream set to the task's own. The host never blocks on
one trial while another could queue work, and the small kernels of several sampled networks fill the
GPU together. On the CPU the same engine runs its tasks in turn (every fence is done at once), which is
how the scheduling and fault handling are tested without a GPU.

A task's exception ends only that task (`Finished.error`); deciding what it means for the others (a
sticky CUDA error poisons the whole process) is the caller's job, which can `close_all` the rest.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import torch

from anynet_search.training.fences import Delay, Fence

POLL_SECONDS = 0.0002  # sleep between rounds in which no task could move (all wait for the device)
MAX_SLOTS = 64  # streams one process keeps; beyond ~8 the measured throughput no longer grows


@dataclass
class Finished:
    """A task that ended: its key and what it returned, or the exception it raised."""

    key: Any
    value: Any = None
    error: BaseException | None = None


@dataclass
class _Running:
    key: Any
    task: Generator[Any, None, Any]
    stream: torch.cuda.Stream | None
    waiting: Fence | Delay | None = None


class InFlight:
    """Up to `slots` tasks in flight on `device`; each slot keeps its own CUDA stream (and its memory cache)."""

    def __init__(self, device: str | torch.device, slots: int) -> None:
        if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= MAX_SLOTS:
            raise ValueError(f"slots must be an integer in 1..{MAX_SLOTS}, got {slots!r}")
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        if cuda:
            if self.device.index is None:
                self.device = torch.device("cuda", torch.cuda.current_device())
            torch.cuda.set_device(self.device)
        self.streams = [torch.cuda.Stream(self.device) if cuda else None for _ in range(slots)]
        self.running: list[_Running | None] = [None] * slots

    @property
    def slots(self) -> int:
        """How many tasks may be in flight."""
        return len(self.running)

    @property
    def busy(self) -> int:
        """How many tasks are in flight."""
        return sum(r is not None for r in self.running)

    @property
    def free(self) -> int:
        """How many more tasks fit."""
        return self.slots - self.busy

    def keys(self) -> list[Any]:
        """The keys of the tasks in flight."""
        return [r.key for r in self.running if r is not None]

    def start(self, key: Any, task: Generator[Any, None, Any]) -> None:
        """Put a task in a free slot; it first runs in the next round (ValueError when no slot is free)."""
        i = next((i for i, r in enumerate(self.running) if r is None), None)
        if i is None:
            raise ValueError(f"all {self.slots} slots are busy")
        stream = self.streams[i]
        if stream is not None:  # what the default stream queued (the data set's upload) comes first
            stream.wait_stream(torch.cuda.default_stream(self.device))
        self.running[i] = _Running(key, task, stream)

    def _resume(self, run: _Running) -> Finished | None:
        if run.stream is not None:
            torch.cuda.set_stream(run.stream)
        try:
            run.waiting = run.task.send(None)
        except StopIteration as stop:
            return Finished(run.key, value=stop.value)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - a task's failure is its own; the caller judges it
            return Finished(run.key, error=exc)
        finally:
            if run.stream is not None:
                torch.cuda.set_stream(torch.cuda.default_stream(self.device))
        return None

    def run_round(self) -> list[Finished]:
        """Resume each task that can move once; returns the tasks that ended. Sleeps briefly if none could move."""
        ended: list[Finished] = []
        moved = False
        for i, run in enumerate(self.running):
            if run is None or (run.waiting is not None and not run.waiting.done()):
                continue
            moved = True
            try:
                finished = self._resume(run)
            except BaseException:
                self.running[i] = None  # an interrupt inside a task ends it (its own handlers ran)
                raise
            if finished is not None:
                self.running[i] = None
                ended.append(finished)
        if not moved and self.busy:
            time.sleep(POLL_SECONDS)
        return ended

    def run_all(self) -> list[Finished]:
        """Run rounds until no task is left; returns every task's end in the order they ended."""
        ended: list[Finished] = []
        while self.busy:
            ended += self.run_round()
        return ended

    def close_all(self) -> list[Any]:
        """End every task in flight at its current yield (GeneratorExit inside it); returns their keys."""
        keys = []
        for i, run in enumerate(self.running):
            if run is None:
                continue
            self.running[i] = None
            keys.append(run.key)
            with contextlib.suppress(Exception):  # its clean-up failing (a dead CUDA context) must not stop the rest
                run.task.close()
        return keys
