"""Dead workers: a running trial's heartbeat, and finding and recording the trials of workers that died.

Fault tolerance works on every storage (the journal file has no heartbeat of its own): each running trial
records its host, pid and a heartbeat refreshed by a background thread (`Heartbeat`). A worker that finds a
RUNNING trial whose process is gone (same host) or whose heartbeat is stale (any host) marks it failed and
enqueues a ticket with the same config. Marking is atomic in the storage (RUNNING -> FAIL succeeds once),
so exactly one replacement is made; a worker that was only slow finds its trial finished and drops its
result, so nothing is duplicated. A worker started by a supervisor (`anynet-search run`, a cluster job)
leaves a dead sibling's trial to the supervisor, which knows the signal that killed it. A config whose
worker died twice is recorded as failed and its slot moves on to the next config.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError

from anynet_search.study.interrupts import REQUEUED
from anynet_search.study.optuna_adapter import TrialIndex, trial_id_of

HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 60.0
MAX_DEATHS = 2  # a config that killed its worker this often is recorded as failed and its slot moves on
DIED = "worker died"


def death_reason(cause: str, deaths: int) -> str:
    """Failure reason of a trial whose worker died (`cause`: 'signal 9', 'process gone', ...)."""
    if deaths >= MAX_DEATHS:
        return f"{DIED} ({cause}) twice on this config"
    return f"{DIED} ({cause}): {REQUEUED}"


def pid_alive(pid: int) -> bool:
    """Whether a process of this host runs (a zombie counts as dead)."""
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


class Heartbeat(threading.Thread):
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


class Reaping:
    """How a worker (or a supervisor) records dead workers' trials; mixed into `worker.Worker`, which provides
    the attributes below and `_replace` (enqueue what comes next for a trial's slot)."""

    storage: optuna.storages.BaseStorage
    index: TrialIndex
    host: str
    worker_id: str
    killed_configs: list[str]  # messages about configs recorded as failed after MAX_DEATHS deaths

    def _replace(self, trial: Any, same_config: bool, deaths: int = 0) -> None:
        """Enqueue the slot's next ticket: the same config, or the slot's next one (the worker's job)."""
        raise NotImplementedError

    def check_failing(self, trial: optuna.trial.FrozenTrial) -> None:
        """StudyFailing if `trial` and the trials finished before it all failed (the worker's streak rule)."""
        raise NotImplementedError

    def mark_dead(self, trial: optuna.trial.FrozenTrial, cause: str) -> bool:
        """Record that the worker running `trial` died of `cause` and enqueue what comes next; False if the
        trial had finished meanwhile. After MAX_DEATHS deaths on one config the slot moves on to its next
        config, a message naming the config is added to `killed_configs`, and the trial counts in the failure
        streak: StudyFailing when it ends a streak of failed trials (every config kills its worker)."""
        deaths = int(trial.user_attrs.get("deaths", 0)) + 1
        reason = death_reason(cause, deaths)
        try:
            self.storage.set_trial_user_attr(trial_id_of(trial), "failure", reason)
        except UpdateFinishedTrialError:
            return False
        if not self.index.fail_running(trial_id_of(trial)):
            return False
        final = deaths >= MAX_DEATHS
        self._replace(trial, same_config=not final, deaths=deaths)
        if final:
            slot = trial.user_attrs.get("slot")
            config = trial.params or trial.system_attrs.get("fixed_params") or "not sampled before the deaths"
            self.killed_configs.append(f"trial {trial.number} (slot {slot}): {reason}; recorded as failed, the "
                                       f"slot moves on to its next config. The config: {config}")
            self.check_failing(trial)
        return True

    def _death_cause(self, trial: optuna.trial.FrozenTrial, now: float) -> str | None:
        """Why the trial's worker counts as dead, or None while it may be alive (or a supervisor will tell)."""
        sys_attrs = trial.system_attrs
        host, pid = sys_attrs.get("host"), sys_attrs.get("pid")
        beat = sys_attrs.get("heartbeat")
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        silent = now - (beat if beat is not None else started)
        if host == self.host and pid is not None:  # this host: the process table is the truth
            if pid == os.getpid() or pid_alive(int(pid)):
                return None
            supervisor = sys_attrs.get("supervisor")
            if (supervisor is not None and supervisor != os.getpid() and pid_alive(int(supervisor))
                    and silent <= STALE_SECONDS):
                return None  # its supervisor records it, with the signal that killed it
            return "process gone"
        return f"no heartbeat for {silent:.0f} s" if silent > STALE_SECONDS else None

    def reap_dead_trials(self, full: bool = False) -> int:
        """Mark RUNNING trials of dead workers failed and enqueue what comes next; returns how many."""
        now, reaped, before = time.time(), 0, len(self.killed_configs)
        for t in self.index.running(full=full):
            cause = self._death_cause(t, now)
            if cause is not None and self.mark_dead(t, cause):
                reaped += 1
        for message in self.killed_configs[before:]:
            print(f"anynet-search worker {self.worker_id}: {message}", file=sys.stderr, flush=True)
        return reaped

    def reap_orphans_of(self, supervisor: int) -> int:
        """Mark failed the RUNNING trials of this host's dead workers that `supervisor` (this process) started
        before: a run started again in the same process (a notebook, the tests) would otherwise wait
        STALE_SECONDS for them, since their supervisor is alive. Returns how many."""
        orphans = [t for t in self.index.running(full=True) if t.system_attrs.get("host") == self.host
                   and t.system_attrs.get("supervisor") == supervisor and t.system_attrs.get("pid") is not None
                   and int(t.system_attrs["pid"]) != os.getpid() and not pid_alive(int(t.system_attrs["pid"]))]
        return sum(self.mark_dead(t, "process gone") for t in orphans)

    def reap_worker(self, pid: int, cause: str) -> int:
        """A supervisor's call: record the death of its worker process `pid` (this host) on its trials."""
        mine = [t for t in self.index.running() if t.system_attrs.get("host") == self.host
                and t.system_attrs.get("pid") == pid]
        return sum(self.mark_dead(t, cause) for t in mine)

