"""Worker processes under a supervisor: a worker killed by a signal has its trial recorded with that signal
and is replaced by a new worker.

`anynet-search run` supervises its local workers, and each task of a cluster job supervises one worker.
A worker that dies while running a trial (a config that crashes the process, the out-of-memory killer)
gets its trial marked failed with the signal that killed it, and a new worker takes its place. The config
is tried again once and recorded as failed after its second death (`reaper.MAX_DEATHS`), so a crashing
config costs at most two worker lives and the study goes on.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import optuna

from anynet_search.errors import AnynetSearchError, show_warnings
from anynet_search.study import interrupts
from anynet_search.study.settings import EDF_SAMPLERS
from anynet_search.study.worker import DeviceLost, StudyFailing, Worker, run_worker

EXIT_USER_ERROR = 2  # a worker stopped on a package error (a full disk, a corrupt journal); it printed nothing
EXIT_FAILING = 3
EXIT_DEVICE_LOST = 4  # a sticky CUDA error: the trial is recorded and a fresh process takes the worker's place
MAX_BLAMELESS_RESPAWNS = 2  # deaths with no trial to blame (e.g. at start-up) before a worker is given up
# Worker processes killed by a signal in a row, with no trial trained in the study meanwhile, before the pool
# stops: a config is tried again after killing its worker, and the retry is queued behind every other slot, so
# with every config killing its worker the failure streak (which counts a config once it killed two) would
# come only after N + 10 deaths. A whole node lost is seen by peers as stale heartbeats, not counted here.
DEATH_STREAK = 10


def worker_main(study: str, url: str, device: str, threads: int, objective: str | None, worker_id: str,
                supervisor: int | None, errors: Any = None, in_flight: int = 1) -> None:
    """Entry point of a worker process: exit 0 when the study is done, 130 when stopped, 3 when failing, 4 after
    a sticky CUDA error, 2 on a package error (put on `errors` for the supervisor to report once)."""
    interrupts.install()
    if supervisor is not None:
        die_with_parent(supervisor)
    show_warnings(f"anynet-search worker {worker_id}")
    try:
        run_worker(study, url, device=device, threads=threads, objective=objective, worker_id=worker_id,
                   supervisor=supervisor, in_flight=in_flight)
    except KeyboardInterrupt:
        sys.exit(130)
    except StudyFailing as exc:
        print(f"anynet-search worker {worker_id}: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_FAILING)
    except DeviceLost as exc:
        print(f"anynet-search worker {worker_id}: {exc}; restarting it", file=sys.stderr, flush=True)
        sys.exit(EXIT_DEVICE_LOST)
    except AnynetSearchError as exc:  # the main process reports it once (e.g. a full disk), not every worker
        if errors is not None:
            errors.put(exc)
        sys.exit(EXIT_USER_ERROR)


PR_SET_PDEATHSIG = 1  # prctl(2): the signal the kernel sends this process when its parent dies
ORPHAN_POLL_SECONDS = 1.0


def die_with_parent(parent: int) -> None:
    """Stop this worker (SIGTERM: its trials in flight go back to the queue) when the process that started it dies.

    A killed `run` must not leave its workers holding the machine's memory: the kernel sends SIGTERM when the
    parent dies (Linux), and a watchdog thread notices being re-parented elsewhere (or a missed signal)."""
    with contextlib.suppress(Exception):  # not Linux, or no libc: the watchdog alone
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_POLL_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="anynet-orphan-watch", daemon=True).start()


@dataclass(frozen=True)
class WorkerSpec:
    """One supervised worker: its device, torch threads, the id its trials record and how many trials it keeps in
    flight at once."""

    device: str
    threads: int
    worker_id: str
    in_flight: int = 1


class WorkerPool:
    """Spawned worker processes on one study; `poll()` records deaths and replaces the dead."""

    def __init__(self, study: optuna.Study, url: str, specs: list[WorkerSpec], objective: str | None = None) -> None:
        self.study, self.url, self.specs, self.objective = study, url, specs, objective
        self.ctx = mp.get_context("spawn")  # fresh interpreters: no forked torch/thread state
        self.errors = self.ctx.SimpleQueue()
        self._error: AnynetSearchError | None = None
        self.procs: list[mp.process.BaseProcess | None] = [None] * len(specs)
        self.exit_codes: list[int | None] = [None] * len(specs)
        self.blameless = [0] * len(specs)
        self.reaper = Worker(study, worker_id="supervisor")
        self.stopping = False
        self.failing: str | None = None  # why the study stopped: deaths recorded here ended a failure streak
        self.deaths_in_a_row = 0  # worker processes killed by a signal since the study last trained a trial
        self._trained_mark: int | None = None

    @property
    def killed_configs(self) -> list[str]:
        """Messages naming the configs recorded as failed because they killed their worker twice."""
        return self.reaper.killed_configs

    def _start(self, i: int) -> None:
        spec = self.specs[i]
        p = self.ctx.Process(target=worker_main, name=f"anynet-worker-{i}",
                             args=(self.study.study_name, self.url, spec.device, spec.threads, self.objective,
                                   spec.worker_id, os.getpid(), self.errors, spec.in_flight))
        p.start()
        self.procs[i] = p

    def start(self) -> None:
        """Start every worker, after recording the trials left running by workers an earlier pool of this
        process started (none of this pool's workers run yet, so a dead pid there is an orphan)."""
        try:
            self.reaper.reap_orphans_of(os.getpid())
        except StudyFailing as exc:
            self.failing, self.stopping = str(exc), True
            return
        for i in range(len(self.specs)):
            self._start(i)

    def poll(self) -> list[str]:
        """Collect exited workers; one killed by a signal has its trial marked failed with that signal and is
        replaced, unless its death ended a streak of failed trials (then `failing` says so and no worker is
        started again: call `stop()`). Returns the messages about configs recorded as failed by this call."""
        before = len(self.killed_configs)
        for i, p in enumerate(self.procs):
            if p is None or p.is_alive():  # is_alive() also reaps an exited child (no zombies)
                continue
            self.procs[i], self.exit_codes[i] = None, p.exitcode
            if p.exitcode == EXIT_DEVICE_LOST and not self.stopping:
                # its trial is recorded as failed; the failure streak rule ends a study where every trial does this
                self._start(i)
                continue
            if p.exitcode is None or p.exitcode >= 0 or self.stopping:
                continue
            cause = f"signal {-p.exitcode}"
            try:
                cause = f"signal {-p.exitcode}, {signal.Signals(-p.exitcode).name}"
            except ValueError:
                pass
            try:
                blamed = self.reaper.reap_worker(p.pid, cause)
                if blamed:
                    self._count_death(cause)
            except StudyFailing as exc:  # every recent config killed its worker: replacing it would loop
                self.failing, self.stopping = str(exc), True
                continue
            self.blameless[i] = 0 if blamed else self.blameless[i] + 1
            if self.blameless[i] <= MAX_BLAMELESS_RESPAWNS:
                self._start(i)
        return self.killed_configs[before:]

    def _count_death(self, cause: str) -> None:
        """Count a worker killed by a signal while running trials; StudyFailing when DEATH_STREAK died in a
        row with no trial trained in the study meanwhile."""
        reaper = self.reaper
        trained = reaper.index.counts(reaper.settings.sampler not in EDF_SAMPLERS).trained
        if trained != self._trained_mark:
            self._trained_mark, self.deaths_in_a_row = trained, 0
        self.deaths_in_a_row += 1
        if self.deaths_in_a_row >= DEATH_STREAK:
            raise StudyFailing(f"the last {DEATH_STREAK} worker processes were killed ({cause}) while "
                               "running trials, and none was trained meanwhile: the configs kill their "
                               "workers; stopping instead of looping")

    @property
    def error(self) -> AnynetSearchError | None:
        """The first package error a worker stopped on (a full disk, a corrupt journal), if any."""
        if self._error is None and not self.errors.empty():
            self._error = self.errors.get()
        return self._error

    def alive(self) -> bool:
        """Whether any worker is still running or being replaced (call `poll()` first)."""
        return any(p is not None for p in self.procs)

    def wait(self, timeout: float) -> None:
        """Sleep up to `timeout` seconds, waking as soon as a worker exits (the run ends without a poll's delay)."""
        sentinels = [p.sentinel for p in self.procs if p is not None]
        if sentinels:
            mp.connection.wait(sentinels, timeout)
        else:
            time.sleep(timeout)

    def pids(self) -> list[int]:
        """Process ids of the running workers."""
        return [p.pid for p in self.procs if p is not None and p.pid is not None]

    def stop(self, timeout: float = 30.0) -> None:
        """Ask every worker to stop (SIGTERM: its trials in flight are re-enqueued; one still starting up,
        before its handler is installed, just ends, with no trial and no traceback), then terminate
        stragglers."""
        self.stopping = True
        running = [p for p in self.procs if p is not None]
        for p in running:
            if p.is_alive() and p.pid:
                os.kill(p.pid, signal.SIGTERM)
        for p in running:
            p.join(timeout=timeout)
            if p.is_alive():
                p.terminate()
        self.join()

    def join(self) -> None:
        """Wait for every worker to exit and record the exit codes."""
        for i, p in enumerate(self.procs):
            if p is not None:
                p.join()
                self.procs[i], self.exit_codes[i] = None, p.exitcode
