"""A worker: pops tickets from the study's storage and runs them until the study has N completed trials.

Each running trial has a heartbeat, and a worker records the trials of workers that died (`reaper`: the
fault tolerance of every storage). Per-trial storage work does not grow with the study: tickets are popped,
and recent outcomes read, through cursors (`optuna_adapter.TrialIndex`); dead workers are looked for on a
timer, not per trial.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import inspect
import os
import socket
import time
import zlib
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass
from functools import partial
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from anynet_search._compat import moved_names
from anynet_search.spaces import DesignSpace, InfeasibleConfig
from anynet_search.study import bookkeeping, interrupts
from anynet_search.study.interrupts import STATE, interruptible
from anynet_search.study.objective import config_record, run_trial
from anynet_search.study.optuna_adapter import Outcome, storage_of, trial_index
from anynet_search.study.process_health import poisons_device, raised_at, release_memory
from anynet_search.study.reaper import REQUEUED, Heartbeat, Reaping
from anynet_search.study.settings import (
    EDF_SAMPLERS,
    INFEASIBLE_VALUE,
    StudySettings,
    enqueue_ticket,
    is_trained,
    make_sampler,
    planned_params,
)
from anynet_search.study.storage import load_study, open_storage
from anynet_search.training import setup_threads
from anynet_search.training.data.splits import DatasetError
from anynet_search.training.engine import InFlight
from anynet_search.training.fences import Delay
from anynet_search.training.interface import OutOfMemoryError, TrialFailure

REAP_SECONDS = 30.0  # a busy worker looks for dead ones this often (a heartbeat goes stale after 60 s anyway)
IDLE_REAP_SECONDS = 2.0  # an idle worker looks more often: cheap near the end, where only a few trials are unfinished
MAX_IDLE_POLL = 4.0  # idle polling backs off to this many seconds (thousands of idle cluster workers)
# a `run`'s own workers (a supervisor, at most one per core or GPU slot) poll at poll_seconds without backing
# off: an idle one waiting out a peer's last trial used to sleep up to 4 s more before the run could end
SUPERVISED_IDLE_POLL = 0.5
FAILURE_STREAK = 10  # this many failures in a row (and no success among them) stops the study
INFEASIBLE_STREAK = 200
INTERRUPTED = "interrupted"
BESIDE_DEVICE_ERROR = "a CUDA error in its worker process, while trials were in flight beside it"
SOLO_POLL_SECONDS = 0.05
# A slot must look unticketed this long before a worker enqueues its next ticket: a peer that has just told a
# trial FAIL / PRUNED / infeasible enqueues the slot's next ticket a moment later, and repairing inside that
# moment gave the slot two tickets (4/3 completed on a fast GPU run). Only a peer that died in between leaves
# a slot unticketed for longer.
REPAIR_GRACE_SECONDS = 10.0

# An objective returns the trial's error, or a task (generator) that returns it; see study.objective.run_trial
Objective = Callable[[optuna.Trial, Any, StudySettings, int, str], Any]

__getattr__ = moved_names(__name__)  # pid_alive, death_reason and the heartbeat constants moved to reaper


class StudyFailing(RuntimeError):
    """Every recent trial failed: stop instead of looping; the message names the most common reason."""


class DeviceLost(RuntimeError):
    """A CUDA error left this process's CUDA context unusable; its trial is recorded, a new process must go on."""


def counts_as_failure(outcome: Outcome) -> bool:
    """Whether a finished trial takes part in the failure streaks (a re-enqueued config does not)."""
    return not (outcome.failure or "").endswith(REQUEUED)


@dataclass
class WorkerSummary:
    """What one worker did."""

    completed: int = 0
    failed: int = 0
    infeasible: int = 0


def resolve_objective(objective: str | Objective | None) -> Objective:
    """The training objective, or one named 'module:function' (importable in spawned workers)."""
    if objective is None:
        return run_trial
    if callable(objective):
        return objective
    module, _, name = objective.partition(":")
    return getattr(importlib.import_module(module), name)


class Worker(Reaping):
    """Runs a study's tickets on one device, `in_flight` trials at a time (`training.engine.InFlight`)."""

    def __init__(self, study: optuna.Study, device: str = "cpu", objective: str | Objective | None = None,
                 worker_id: str | None = None, poll_seconds: float = 0.5, supervisor: int | None = None,
                 in_flight: int = 1) -> None:
        self.study = study
        self.storage = storage_of(study)
        self.index = trial_index(study)
        self.settings = StudySettings.from_study(study)
        self.space: DesignSpace = self.settings.design_space()
        self.device = device
        self.objective = resolve_objective(objective)
        self.host = socket.gethostname()
        self.worker_id = worker_id or f"{self.host}:{os.getpid()}"
        self.poll_seconds = poll_seconds
        self.supervisor = supervisor  # pid of the process that reaps this worker if it dies (None: peers do)
        self.in_flight = in_flight
        self.summary = WorkerSummary()
        self.killed_configs: list[str] = []  # messages about configs recorded as failed after MAX_DEATHS deaths
        self.device_lost: str | None = None  # the sticky CUDA error a trial ended with: this process must exit
        self.engine: InFlight | None = None
        self._abort: tuple[str, bool] = (INTERRUPTED, False)  # why tasks closed mid-trial go back to the queue
        self._solo: set[int] = set()  # trials in flight that must have the device to themselves
        self._unticketed_since: dict[int, float] = {}  # slot -> when it was first seen with no ticket

    # ------------------------------------------------------------ ticket bookkeeping
    def _replace(self, trial: optuna.trial.FrozenTrial | optuna.Trial, same_config: bool, deaths: int = 0,
                 solo: bool = False) -> None:
        """Enqueue the slot's next ticket: the same config (worker died / interrupted) or the next attempt; a
        `solo` ticket is trained with no other trial in flight beside it."""
        attrs = trial.user_attrs
        slot, attempt = int(attrs.get("slot", 0)), int(attrs.get("attempt", 0))
        params = None
        if same_config:
            if self.settings.sampler in EDF_SAMPLERS:
                params = planned_params(self.settings, self.space, slot, attempt)
            else:
                params = dict(trial.params)
        else:
            attempt += 1
        enqueue_ticket(self.study, self.settings, self.space, slot, attempt, params=params, retry_of=trial.number,
                       deaths=deaths if same_config else 0, solo=solo and same_config)

    def _finish(self, trial: optuna.Trial, state: TrialState, value: float | None = None,
                reason: str | None = None, same_config: bool = False, solo: bool = False) -> bool:
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
            self._replace(trial, same_config, deaths=int(trial.user_attrs.get("deaths", 0)), solo=solo)
        return True

    def check_failing(self, trial: optuna.trial.FrozenTrial) -> None:
        """StudyFailing if the trial just finished and the ones finished before it all failed (a study that can
        never finish). Reads only those recent trials; called after a failed or infeasible trial."""
        if "infeasible" in trial.user_attrs:
            tail = self.index.recent_outcomes(trial, INFEASIBLE_STREAK, counts_as_failure)
            if len(tail) == INFEASIBLE_STREAK and all(o.infeasible for o in tail):
                raise StudyFailing(f"the sampler's last {INFEASIBLE_STREAK} suggestions all violated the space's "
                                   "constraints; use a random or qmc sampler for this space")
            return
        tail = self.index.recent_outcomes(trial, FAILURE_STREAK, counts_as_failure)
        if len(tail) == FAILURE_STREAK and all(o.state == TrialState.FAIL for o in tail):  # infeasible != failed
            reason, count = Counter(str(o.failure) for o in tail).most_common(1)[0]
            raise StudyFailing(f"the last {FAILURE_STREAK} trials all failed ({count} with: {reason}); "
                               "stopping instead of looping")

    # ------------------------------------------------------------ the loop
    def run(self, max_trials: int | None = None) -> WorkerSummary:
        """Work until the study has N completed trials (or max_trials tickets were started by this worker).

        Up to `in_flight` tickets run at once as tasks of one engine. A stop request (Ctrl-C, SIGTERM) closes
        them all and puts their configs back in the queue; so does a sticky CUDA error (`DeviceLost`), after
        which the process must be replaced."""
        engine = self.engine = InFlight(self.device, self.in_flight)
        started, next_reap, idle = 0, 0.0, 0
        storage_thread = bookkeeping.StorageThread()
        bookkeeping.install(storage_thread)
        setup = self._setup_threads()
        setup_threads.install(setup)
        gc.freeze()  # what was imported and loaded so far lives as long as the worker: no collection walks it
        try:
            while True:
                if STATE.stop_requested:
                    raise interrupts.stop()  # SIGTERM / SIGHUP: the command exits 143 / 129
                if time.monotonic() >= next_reap:
                    self.reap_dead_trials()
                    next_reap = time.monotonic() + (IDLE_REAP_SECONDS if idle else REAP_SECONDS)
                while engine.free and not self._solo and (max_trials is None or started < max_trials):
                    trial_id = self.index.claim()
                    if trial_id is None:
                        break
                    self._start(engine, trial_id)
                    started += 1
                if not engine.busy:
                    if max_trials is not None and started >= max_trials:
                        break
                    checked = False  # whether this idle round looked for unticketed slots
                    if not self.index.has_unfinished():
                        trial_id = self.index.claim(full=True)  # a cursor may have raced a commit: rescan
                        if trial_id is not None:
                            self._start(engine, trial_id)
                            started += 1
                            continue
                        if not self.index.running(full=True):
                            if self.index.counts(self.settings.sampler not in EDF_SAMPLERS).trained \
                                    >= self.settings.n_trials:
                                break
                            if self._repair_missing_slots():
                                continue
                            checked = True
                    if not checked:  # a slot counts as unticketed over consecutive checks only
                        self._unticketed_since.clear()
                    idle += 1
                    next_reap = min(next_reap, time.monotonic() + IDLE_REAP_SECONDS)
                    most = SUPERVISED_IDLE_POLL if self.supervisor is not None else MAX_IDLE_POLL
                    time.sleep(min(self.poll_seconds * 2 ** min(idle - 1, 3), max(most, self.poll_seconds)))
                    continue
                idle = 0
                for ended in engine.run_round():
                    if ended.error is not None:  # the ticket task handles every failure; this is a bug
                        raise ended.error
                    if ended.value is not None:
                        self.check_failing(ended.value)
                if self.device_lost is not None:
                    self._close_all(engine, BESIDE_DEVICE_ERROR, solo=True)
                    raise DeviceLost(f"{self.device_lost}; a CUDA error like this one leaves the process unusable")
        except BaseException:
            self._close_all(engine, INTERRUPTED, solo=False)
            raise
        finally:
            bookkeeping.install(None)
            storage_thread.close()
            setup_threads.install(None)
            if setup is not None:
                setup.close()
        return self.summary

    def _setup_threads(self) -> setup_threads.SetupThreads | None:
        """Threads for the warm-up steps and captures of new trials, so they do not stall the trials in flight: on
        a GPU with several trials in flight (ANYNET_SETUP_THREADS overrides the count; 0 keeps them inline)."""
        default = min(setup_threads.MAX_SETUP_THREADS, max(1, self.in_flight // 2))
        wanted = default if self.device.startswith("cuda") and self.in_flight > 1 else 0
        with contextlib.suppress(ValueError):
            wanted = int(os.environ.get("ANYNET_SETUP_THREADS", wanted))
        wanted = min(max(wanted, 0), setup_threads.MAX_SETUP_THREADS)
        return setup_threads.SetupThreads(wanted) if wanted > 0 else None

    def _start(self, engine: InFlight, trial_id: int) -> None:
        """Start a claimed ticket; a solo one stops further claims until it has run (alone) and ended."""
        self._unticketed_since.clear()
        solo = bool(self.storage.get_trial_user_attrs(trial_id).get("solo"))
        if solo:
            self._solo.add(trial_id)
        engine.start(trial_id, self._ticket_task(trial_id, solo))

    def _close_all(self, engine: InFlight, reason: str, solo: bool) -> None:
        """End every task in flight; each records its trial failed and re-enqueues its config (`reason`), once the
        storage calls already handed over have run (a trial they finished is not finished twice)."""
        thread = bookkeeping.current()
        if thread is not None:
            thread.flush()
        self._abort = (reason, solo)
        engine.close_all()

    def _repair_missing_slots(self, now: float | None = None) -> int:
        """Re-enqueue slots that have had no completed trial and no ticket for REPAIR_GRACE_SECONDS (e.g. a
        worker killed between its tell and its enqueue); returns how many tickets it enqueued."""
        now = time.monotonic() if now is None else now
        trials = self.study.get_trials(deepcopy=False)
        done = {t.user_attrs.get("slot") for t in trials if is_trained(t) or t.state in (TrialState.WAITING,
                                                                                          TrialState.RUNNING)}
        latest: dict[int, optuna.trial.FrozenTrial] = {}
        for t in trials:
            slot = t.user_attrs.get("slot")
            if slot is not None and slot not in done and (slot not in latest or t.number > latest[slot].number):
                latest[slot] = t
        missing = [slot for slot in range(self.settings.n_trials) if slot not in done]
        self._unticketed_since = {slot: self._unticketed_since.get(slot, now) for slot in missing}
        overdue = [slot for slot in missing if now - self._unticketed_since[slot] >= REPAIR_GRACE_SECONDS]
        for slot in overdue:
            if slot in latest:
                self._replace(latest[slot], same_config=False)
            else:
                enqueue_ticket(self.study, self.settings, self.space, slot, 0)
            del self._unticketed_since[slot]
        return len(overdue)

    def _ticket_task(self, trial_id: int, solo: bool = False) -> Generator[Any, None, optuna.trial.FrozenTrial | None]:
        """A popped ticket run to a recorded end state, as an engine task; returns the finished trial if it failed
        or was infeasible (what the failure streaks look at), else None. Closed mid-trial (a stop request, a
        device error beside it), it records the trial failed and puts its config back in the queue."""
        trial = optuna.Trial(self.study, trial_id)

        def owner() -> None:  # the claim set datetime_start, which stands in for the first heartbeat
            self.storage.set_trial_system_attr(trial_id, "host", self.host)
            self.storage.set_trial_system_attr(trial_id, "pid", os.getpid())
            self.storage.set_trial_system_attr(trial_id, "worker", self.worker_id)
            if self.supervisor is not None:
                self.storage.set_trial_system_attr(trial_id, "supervisor", self.supervisor)

        heartbeat = Heartbeat(self.storage, trial_id)
        try:
            yield from bookkeeping.call(owner)
            heartbeat.start()
            state = yield from self._run(trial, solo)
            release_memory()
        except (GeneratorExit, KeyboardInterrupt) as exc:
            # leave no RUNNING trial behind: the same config waits in the queue (not counted as a failure)
            reason, to_solo = (INTERRUPTED, False) if isinstance(exc, KeyboardInterrupt) else self._abort
            self._finish(trial, TrialState.FAIL, reason=f"{reason}: {REQUEUED}", same_config=True,
                         solo=solo or to_solo)
            raise
        finally:
            heartbeat.stop()
            self._solo.discard(trial_id)
        if state not in (TrialState.FAIL, "infeasible"):
            return None
        return (yield from bookkeeping.call(lambda: self.storage.get_trial(trial_id)))

    def _others_in_flight(self) -> int:
        return self.engine.busy - 1 if self.engine is not None else 0

    def _run(self, trial: optuna.Trial, solo: bool) -> Generator[Any, None, TrialState | str | None]:
        """Suggest, record, train and tell; the state told ('infeasible' for an infeasible suggestion). Storage
        calls go through `bookkeeping` (the storage thread of a running worker)."""
        try:
            cfg = yield from bookkeeping.call(lambda: self.space.suggest(trial))
        except InfeasibleConfig as exc:
            return (yield from bookkeeping.call(partial(self._infeasible, trial, exc)))
        s = self.settings
        record = {"space": self.space.name, "space_hash": self.space.hash, "sampler": s.sampler,
                  "dataset": s.dataset, "device": self.device, "worker": self.worker_id, "train_config": s.train,
                  **config_record(cfg, self.space.resolution)}

        def write_record() -> None:
            if s.sampler not in EDF_SAMPLERS and s.sampler != "cmaes":
                trial.set_constraint("space", 0.0)
            for key, value in record.items():
                trial.set_user_attr(key, value)

        yield from bookkeeping.call(write_record)
        while solo and self._others_in_flight():  # a solo trial waits until the others in flight have ended
            yield Delay(SOLO_POLL_SECONDS)
        in_flight = self._others_in_flight() + 1
        yield from bookkeeping.call(lambda: trial.set_user_attr("in_flight", in_flight))
        try:
            with interruptible():  # a plain objective is interrupted inside; a task between its steps
                value = self.objective(trial, cfg, s, self.space.resolution, self.device)
            if inspect.isgenerator(value):
                value = yield from value
        except DatasetError as exc:  # this worker cannot read the study's data: its problem, not the config's
            yield from bookkeeping.call(partial(self._finish, trial, TrialState.FAIL, same_config=True,
                                                reason=f"this worker's data: {exc}: {REQUEUED}"))
            raise
        except optuna.TrialPruned as exc:
            reason = f"pruned: {exc}" if str(exc) else "pruned"
            yield from bookkeeping.call(lambda: self._finish(trial, TrialState.PRUNED, reason=reason))
            return TrialState.PRUNED
        except TrialFailure as exc:
            if isinstance(exc, OutOfMemoryError) and self._others_in_flight():
                # it may fit alone: again, with the device to itself, and not counted as a failure
                why = f"out of memory beside {self._others_in_flight()} trials in flight"
                return (yield from bookkeeping.call(partial(self._requeue, trial, why, exc)))
            self.summary.failed += 1
            done = yield from bookkeeping.call(partial(self._finish, trial, TrialState.FAIL, reason=str(exc)))
            return TrialState.FAIL if done else None
        except Exception as exc:  # noqa: BLE001 - one trial's crash must never end the study
            return (yield from bookkeeping.call(partial(self._crashed, trial, exc)))
        if (yield from bookkeeping.call(lambda: self._finish(trial, TrialState.COMPLETE, value=value))):
            self.summary.completed += 1
            return TrialState.COMPLETE
        return None

    def _infeasible(self, trial: optuna.Trial, exc: InfeasibleConfig) -> str | None:
        """Tell an infeasible suggestion back as the worst error and a violated constraint (never trained)."""
        trial.set_user_attr("infeasible", str(exc))
        if self.settings.sampler != "cmaes":  # CMA-ES has no constraint support: the penalty value teaches it
            trial.set_constraint("space", 1.0)
        self.summary.infeasible += 1
        if self._finish(trial, TrialState.COMPLETE, value=INFEASIBLE_VALUE):
            self._replace(trial, same_config=False)
            return "infeasible"
        return None

    def _crashed(self, trial: optuna.Trial, exc: Exception) -> TrialState | None:
        """Record an unexpected exception of the objective; a sticky CUDA error also marks the device lost."""
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        with contextlib.suppress(Exception):  # where it was raised: what a GPU crash report needs
            trial.set_user_attr("failure_where", raised_at(exc))
        if poisons_device(exc):
            # every later trial in this process would fail at once and be recorded against a healthy config
            self.device_lost = f"{type(exc).__name__}: {first}"
            if self._others_in_flight():  # which trial's kernel caused it is unknown: all go back, to run alone
                return self._requeue(trial, BESIDE_DEVICE_ERROR, exc)
        self.summary.failed += 1
        return TrialState.FAIL if self._finish(trial, TrialState.FAIL, reason=f"{type(exc).__name__}: {first}") \
            else None

    def _requeue(self, trial: optuna.Trial, why: str, exc: BaseException) -> TrialState | None:
        """Record the trial failed without blame and enqueue its config again, to be trained alone."""
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        done = self._finish(trial, TrialState.FAIL, reason=f"{why} ({first[:200]}): {REQUEUED}", same_config=True,
                            solo=True)
        return TrialState.FAIL if done else None


def load_worker_study(study_name: str, storage_url: str, worker_id: str) -> optuna.Study:
    """The study as a worker sees it: with the study's own sampler and pruner (Optuna's loader would give
    TPE and the median pruner whatever the study asked for), seeded per worker so that parallel adaptive
    workers do not propose the same parameters."""
    storage = open_storage(storage_url, create=False)  # a worker joins a study: it never creates a storage
    settings = StudySettings.from_study(load_study(study_name, storage))
    seed = zlib.crc32(f"{settings.seed}:{worker_id}".encode())
    return optuna.load_study(study_name=study_name, storage=storage, sampler=make_sampler(settings.sampler, seed),
                             pruner=settings.make_pruner())


def run_worker(study_name: str, storage_url: str, device: str = "cpu", threads: int | None = None,
               objective: str | Objective | None = None, worker_id: str | None = None,
               supervisor: int | None = None, in_flight: int = 1) -> WorkerSummary:
    """Join a study from any machine and work until it has its N completed trials."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
    study = load_worker_study(study_name, storage_url, worker_id)
    return Worker(study, device=device, objective=objective, worker_id=worker_id, supervisor=supervisor,
                  in_flight=in_flight).run()
