"""A worker: pops tickets from the study's storage and runs them until the study has N completed trials.

Fault tolerance works on every storage (the journal file has no heartbeat of its own): each running trial
records its host, pid and a heartbeat refreshed by a background thread. Any worker that finds a RUNNING
trial whose process is gone (same host) or whose heartbeat is stale (any host) marks it failed and
enqueues a ticket with the same config. Marking is atomic in the storage (RUNNING -> FAIL succeeds once),
so exactly one replacement is made; a worker that was only slow finds its trial finished and drops its
result, so nothing is duplicated.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from anynet_search.spaces import DesignSpace, InfeasibleConfig
from anynet_search.study.interrupts import STATE, interruptible
from anynet_search.study.objective import config_record, run_trial
from anynet_search.study.plan import (
    EDF_SAMPLERS,
    INFEASIBLE_VALUE,
    StudySettings,
    count_trained,
    enqueue_ticket,
    is_trained,
    planned_sample,
)
from anynet_search.study.storage import load_study, open_storage
from anynet_search.train import TrialFailure

HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 60.0
FAILURE_STREAK = 10  # this many failures in a row (and no success among them) stops the study
INFEASIBLE_STREAK = 200
DIED = "worker died"
INTERRUPTED = "interrupted"

Objective = Callable[[optuna.Trial, Any, StudySettings, int, str], float]


class StudyFailing(RuntimeError):
    """Every recent trial failed: stop instead of looping; the message names the most common reason."""


@dataclass
class WorkerSummary:
    """What one worker did."""

    completed: int = 0
    failed: int = 0
    infeasible: int = 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child not yet reaped by its parent is a zombie: dead for our purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class _Heartbeat(threading.Thread):
    """Refreshes the trial's heartbeat until stopped or until the trial is finished by someone else."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int) -> None:
        super().__init__(daemon=True)
        self.storage, self.trial_id, self.done = storage, trial_id, threading.Event()

    def run(self) -> None:
        """Beat every HEARTBEAT_SECONDS."""
        while not self.done.wait(HEARTBEAT_SECONDS):
            try:
                self.storage.set_trial_system_attr(self.trial_id, "heartbeat", time.time())
            except (UpdateFinishedTrialError, RuntimeError, ValueError):
                return
            except Exception:  # noqa: BLE001 - a storage hiccup must not kill training; the next beat retries
                continue

    def stop(self) -> None:
        """Stop beating."""
        self.done.set()


def _load_libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


_LIBC = _load_libc()


def release_memory() -> None:
    """Free what the last trial left: cycles, then glibc's free lists (models of varying shapes fragment the
    heap; without this a worker's RSS grew ~4x faster over 60 one-epoch trials, measured in benchmarks/)."""
    gc.collect()
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def resolve_objective(objective: str | Objective | None) -> Objective:
    """The training objective, or one named 'module:function' (importable in spawned workers)."""
    if objective is None:
        return run_trial
    if callable(objective):
        return objective
    module, _, name = objective.partition(":")
    return getattr(importlib.import_module(module), name)


class Worker:
    """Runs a study's tickets on one device."""

    def __init__(self, study: optuna.Study, device: str = "cpu", objective: str | Objective | None = None,
                 worker_id: str | None = None, poll_seconds: float = 0.5) -> None:
        self.study = study
        self.storage = study._storage
        self.settings = StudySettings.from_study(study)
        self.space: DesignSpace = self.settings.design_space()
        self.device = device
        self.objective = resolve_objective(objective)
        self.host = socket.gethostname()
        self.worker_id = worker_id or f"{self.host}:{os.getpid()}"
        self.poll_seconds = poll_seconds
        self.summary = WorkerSummary()

    # ------------------------------------------------------------ ticket bookkeeping
    def _pop_ticket(self) -> int | None:
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            try:
                if self.storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                    return t._trial_id
            except UpdateFinishedTrialError:
                continue
        return None

    def _replace(self, trial: optuna.trial.FrozenTrial | optuna.Trial, same_config: bool) -> None:
        """Enqueue the slot's next ticket: the same config (worker died / interrupted) or the next attempt."""
        attrs = trial.user_attrs
        slot, attempt = int(attrs.get("slot", 0)), int(attrs.get("attempt", 0))
        params = None
        if same_config:
            if self.settings.sampler in EDF_SAMPLERS:
                params = planned_sample(self.space, self.settings.sampler, self.settings.seed,
                                        self.settings.n_trials, slot, attempt).params
            else:
                params = dict(trial.params)
        else:
            attempt += 1
        enqueue_ticket(self.study, self.settings, self.space, slot, attempt, params=params, retry_of=trial.number)

    def _finish(self, trial: optuna.Trial, state: TrialState, value: float | None = None,
                reason: str | None = None, same_config: bool = False) -> bool:
        """Tell the storage; False if someone already finished this trial (then nothing is enqueued)."""
        try:
            if reason is not None:
                trial.set_user_attr("failure", reason)
            self.study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        except (UpdateFinishedTrialError, RuntimeError, ValueError) as exc:
            if isinstance(exc, UpdateFinishedTrialError) or "finished" in str(exc).lower():
                return False
            raise
        if state != TrialState.COMPLETE:
            self._replace(trial, same_config)
        return True

    def reap_dead_trials(self) -> int:
        """Mark RUNNING trials of dead workers failed and re-enqueue their configs; returns how many."""
        now, reaped = time.time(), 0
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            sys_attrs = t.system_attrs
            host, pid = sys_attrs.get("host"), sys_attrs.get("pid")
            beat = sys_attrs.get("heartbeat")
            started = t.datetime_start.timestamp() if t.datetime_start else now
            if host == self.host and pid is not None and pid != os.getpid():
                dead = not _pid_alive(int(pid))
            else:
                dead = now - (beat if beat is not None else started) > STALE_SECONDS
            if host == self.host and pid == os.getpid():
                dead = False
            if not dead:
                continue
            reason = f"{DIED}: {sys_attrs.get('worker', 'unknown worker')} stopped beating; config re-enqueued"
            try:
                self.storage.set_trial_user_attr(t._trial_id, "failure", reason)
                self.storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            except UpdateFinishedTrialError:
                continue
            self._replace(t, same_config=True)
            reaped += 1
        return reaped

    def check_failing(self) -> None:
        """StudyFailing if the most recent finished trials all failed (a study that can never finish)."""
        finished = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL,
                                                                             TrialState.PRUNED))]
        finished.sort(key=lambda t: t.datetime_complete.timestamp() if t.datetime_complete else 0.0)
        real = [t for t in finished if not str(t.user_attrs.get("failure", "")).startswith((DIED, INTERRUPTED))]
        tail = real[-FAILURE_STREAK:]
        if len(tail) == FAILURE_STREAK and all(t.state == TrialState.FAIL for t in tail):  # infeasible != failed
            reason, count = Counter(str(t.user_attrs.get("failure")) for t in tail).most_common(1)[0]
            raise StudyFailing(f"the last {FAILURE_STREAK} trials all failed ({count} with: {reason}); "
                               "stopping instead of looping")
        tail = real[-INFEASIBLE_STREAK:]
        if len(tail) == INFEASIBLE_STREAK and all("infeasible" in t.user_attrs for t in tail):
            raise StudyFailing(f"the sampler's last {INFEASIBLE_STREAK} suggestions all violated the space's "
                               "constraints; use a random or qmc sampler for this space")

    def _counts(self) -> Counter:
        return Counter(t.state for t in self.study.get_trials(deepcopy=False))

    # ------------------------------------------------------------ the loop
    def run(self, max_trials: int | None = None) -> WorkerSummary:
        """Work until the study has N completed trials (or max_trials tickets were run by this worker)."""
        ran = 0
        while max_trials is None or ran < max_trials:
            if STATE.stop_requested:
                raise KeyboardInterrupt
            self.reap_dead_trials()
            self.check_failing()
            trial_id = self._pop_ticket()
            if trial_id is None:
                counts = self._counts()
                if count_trained(self.study.get_trials(deepcopy=False)) >= self.settings.n_trials:
                    break
                if counts[TrialState.RUNNING] == 0 and counts[TrialState.WAITING] == 0:
                    self._repair_missing_slots()
                time.sleep(self.poll_seconds)
                continue
            self.run_ticket(trial_id)
            ran += 1
        return self.summary

    def _repair_missing_slots(self) -> None:
        """Re-enqueue slots that have no completed trial and no ticket (e.g. a crash between tell and enqueue)."""
        trials = self.study.get_trials(deepcopy=False)
        done = {t.user_attrs.get("slot") for t in trials if is_trained(t) or t.state in (TrialState.WAITING,
                                                                                          TrialState.RUNNING)}
        latest: dict[int, optuna.trial.FrozenTrial] = {}
        for t in trials:
            slot = t.user_attrs.get("slot")
            if slot is not None and slot not in done and (slot not in latest or t.number > latest[slot].number):
                latest[slot] = t
        for slot in range(self.settings.n_trials):
            if slot in done:
                continue
            if slot in latest:
                self._replace(latest[slot], same_config=False)
            else:
                enqueue_ticket(self.study, self.settings, self.space, slot, 0)

    def run_ticket(self, trial_id: int) -> None:
        """Run one popped ticket to a recorded end state."""
        trial = optuna.Trial(self.study, trial_id)
        self.storage.set_trial_system_attr(trial_id, "host", self.host)
        self.storage.set_trial_system_attr(trial_id, "pid", os.getpid())
        self.storage.set_trial_system_attr(trial_id, "worker", self.worker_id)
        self.storage.set_trial_system_attr(trial_id, "heartbeat", time.time())
        heartbeat = _Heartbeat(self.storage, trial_id)
        heartbeat.start()
        try:
            self._run(trial)
            release_memory()
        except KeyboardInterrupt:
            # interrupted in training: leave no RUNNING trial behind, the same config waits for the resume
            self._finish(trial, TrialState.FAIL, reason=f"{INTERRUPTED}: config re-enqueued", same_config=True)
            raise
        finally:
            heartbeat.stop()

    def _run(self, trial: optuna.Trial) -> None:
        try:
            cfg = self.space.suggest(trial)
        except InfeasibleConfig as exc:
            # never trained; told back as the worst error and a violated constraint so the sampler learns
            trial.set_user_attr("infeasible", str(exc))
            if self.settings.sampler != "cmaes":  # CMA-ES has no constraint support: the penalty value teaches it
                trial.set_constraint("space", 1.0)
            self.summary.infeasible += 1
            if self._finish(trial, TrialState.COMPLETE, value=INFEASIBLE_VALUE):
                self._replace(trial, same_config=False)
            return
        s = self.settings
        if s.sampler not in EDF_SAMPLERS and s.sampler != "cmaes":
            trial.set_constraint("space", 0.0)
        trial.set_user_attr("space", self.space.name)
        trial.set_user_attr("space_hash", self.space.hash)
        trial.set_user_attr("sampler", s.sampler)
        trial.set_user_attr("dataset", s.dataset)
        trial.set_user_attr("device", self.device)
        trial.set_user_attr("worker", self.worker_id)
        trial.set_user_attr("train_config", s.train)
        for key, value in config_record(cfg, self.space.resolution).items():
            trial.set_user_attr(key, value)
        try:
            with interruptible():
                value = self.objective(trial, cfg, s, self.space.resolution, self.device)
        except optuna.TrialPruned as exc:
            self._finish(trial, TrialState.PRUNED, reason=f"pruned: {exc}" if str(exc) else "pruned")
        except TrialFailure as exc:
            self.summary.failed += 1
            self._finish(trial, TrialState.FAIL, reason=str(exc))
        except Exception as exc:  # noqa: BLE001 - one trial's crash must never end the study
            self.summary.failed += 1
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self._finish(trial, TrialState.FAIL, reason=f"{type(exc).__name__}: {first}")
        else:
            if self._finish(trial, TrialState.COMPLETE, value=value):
                self.summary.completed += 1


def run_worker(study_name: str, storage_url: str, device: str = "cpu", threads: int | None = None,
               objective: str | Objective | None = None, worker_id: str | None = None) -> WorkerSummary:
    """Join a study from any machine and work until it has its N completed trials."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    study = load_study(study_name, open_storage(storage_url))
    return Worker(study, device=device, objective=objective, worker_id=worker_id).run()
