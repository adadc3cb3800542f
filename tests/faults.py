"""Fault injection for tests: a disk that fills up under the journal, and a dry objective that triggers it; a
sticky CUDA error that poisons its worker process.

`FullDisk` stands in for the `os` module inside `anynet_search.study.journal`: it lets `room` more bytes
through (so a write can be cut mid-line, as on a real full disk) and then fails every write with ENOSPC.
Worker processes are spawned, so a test cannot patch them from outside; `disk_full_objective` (selected
with `--objective faults:disk_full_objective`) installs the full disk itself once its worker has finished
ANYNET_TEST_DISK_FULL_AFTER trials. `kill_every_config` kills its worker process on every config, and
`spawned_workers` lists the worker processes a `run` process has started, for the tests that count them.
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path
from typing import Any

from anynet_search.study import journal
from anynet_search.study.dry_run import pseudo_error


class FullDisk:
    """The `os` module, except that `write` stops with ENOSPC once `room` bytes were written."""

    def __init__(self, room: int = 0) -> None:
        self.room = room

    def write(self, fd: int, data: Any) -> int:
        """Write at most the remaining room (a short write), then fail with ENOSPC."""
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = os.write(fd, bytes(data[:self.room]))
        self.room -= n
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


_finished = 0


def disk_full_objective(trial: Any, cfg: Any, settings: Any, resolution: int, device: str) -> float:
    """The dry objective; after ANYNET_TEST_DISK_FULL_AFTER trials in this worker the journal's disk is full."""
    global _finished
    if _finished >= int(os.environ.get("ANYNET_TEST_DISK_FULL_AFTER", "1000000")):
        journal.os = FullDisk(room=25)  # the next record is cut after 25 bytes, then nothing fits
    value = pseudo_error(trial, cfg, settings, resolution, device)
    _finished += 1
    return value


_poisoned = False


def poisoned_device_objective(trial: Any, cfg: Any, settings: Any, resolution: int, device: str) -> float:
    """The dry objective, except that the slot in ANYNET_TEST_POISON_SLOT raises a sticky CUDA error: from then on
    every call in this process raises it too, as after a real illegal memory access."""
    global _poisoned
    if str(trial.user_attrs.get("slot")) == os.environ.get("ANYNET_TEST_POISON_SLOT") \
            and trial.user_attrs.get("attempt", 0) == 0:
        _poisoned = True
    if _poisoned:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    return pseudo_error(trial, cfg, settings, resolution, device)


def pruned_often_objective(trial: Any, cfg: Any, settings: Any, resolution: int, device: str) -> float:
    """The dry objective reported over 4 fake epochs, so that an adaptive study's median pruner prunes often."""
    import optuna

    value = pseudo_error(trial, cfg, settings, resolution, device)
    for epoch in range(4):
        trial.report(value + 3 - epoch, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")
    return value


def stepped_objective(trial: Any, cfg: Any, settings: Any, resolution: int, device: str) -> Any:
    """The dry objective as a task that yields ANYNET_TEST_STEPS times (default 20), so that a worker keeps
    several trials in flight at once. The slot in ANYNET_TEST_POISON_SLOT (attempt 0) raises a sticky CUDA error
    half-way, and from then on every call in this process raises it too, as after a real illegal memory access;
    the slot in ANYNET_TEST_OOM_SLOT (attempt 0) runs out of memory whenever other trials are in flight beside it."""
    return _stepped(trial, cfg, settings, resolution, device)


def _stepped(trial: Any, cfg: Any, settings: Any, resolution: int, device: str) -> Any:
    global _poisoned
    from anynet_search.training.fences import Delay
    from anynet_search.training.interface import OutOfMemoryError

    slot, first = str(trial.user_attrs.get("slot")), trial.user_attrs.get("attempt", 0) == 0
    steps = int(os.environ.get("ANYNET_TEST_STEPS", "20"))
    for step in range(steps):
        if _poisoned:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if step == steps // 2 and first and slot == os.environ.get("ANYNET_TEST_POISON_SLOT"):
            _poisoned = True
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if step == steps // 2 and first and slot == os.environ.get("ANYNET_TEST_OOM_SLOT") \
                and not trial.user_attrs.get("solo"):
            raise OutOfMemoryError("out of memory at batch size 64 (epoch 1 step 3) on cuda:0: Tried to allocate")
        yield Delay(0.005)
    return pseudo_error(trial, cfg, settings, resolution, device)


def kill_every_config(trial: Any, cfg: Any, settings: Any, resolution: int, device: str) -> float:
    """Every config kills its own worker process (SIGKILL), like a space whose every network crashes the
    process or exceeds a CPU-time limit."""
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable: the process was killed")


def spawned_workers(parent: int) -> list[int]:
    """Pids of the live worker processes `parent` spawned (multiprocessing's spawn_main, not the tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError):  # exited meanwhile
            continue
        if int(fields[1]) == parent and fields[0] != "Z" and "spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def planted_objective(trial: Any, cfg: Any, settings: Any, resolution: int, device: str) -> float:
    """A planted fidelity pair: error 10 + 2 (rho z1 + sqrt(1 - rho^2) z2), z1 and z2 standard normal draws seeded by
    the config, rho = ANYNET_TEST_PLANTED_RHO (default 1: the 'high budget' error 10 + 2 z1 itself). Two studies of
    the same configs at rho 1 and rho r have Spearman rho 6/pi asin(r/2) and Kendall tau 2/pi asin(r)."""
    import math
    import zlib

    import numpy as np

    from anynet_search.study.objective import record_result
    from anynet_search.training.interface import TrainResult

    rho = float(os.environ.get("ANYNET_TEST_PLANTED_RHO", "1"))
    key = zlib.crc32(repr(cfg.to_dict()).encode())
    z1, z2 = np.random.default_rng([key, 1]).normal(), np.random.default_rng([key, 2]).normal()
    error = 10.0 + 2.0 * (rho * z1 + math.sqrt(max(0.0, 1 - rho * rho)) * z2)
    record_result(trial, TrainResult(val_error=error, test_error=error, train_seconds=0.0, eval_seconds=0.0, epochs=0,
                                     history=(), final_train_loss=0.0), wall_seconds=0.0)
    return float(error)
