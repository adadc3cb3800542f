"""The Optuna internals the ticket protocol relies on, in one module (written against optuna 4 and 5).

Optuna's public API answers "which tickets are waiting?" by listing the whole study, and its RDB cache
re-reads every unfinished trial on each listing, so a worker that asked once per trial paid O(N) per
trial (O(N^2) per study). `TrialIndex` answers the worker's questions from cursors instead:

- `claim()`: the lowest waiting ticket after a cursor below which no trial is waiting (trials never
  return to WAITING), claimed atomically;
- `running()`: the RUNNING trials at or above a low-water mark below which every trial is finished;
- `recent_outcomes()`: the finished trials created just before a given one, newest first;
- `counts()`: trials by state, the trained count and the best error (a few aggregate queries).

Journal files are read from the storage's in-memory replay of the file; SQL storages through queries
over bounded primary-key ranges of Optuna's tables. Any other storage falls back to listing the study.
Cursors can lag behind a concurrently committed insert on SQL storages; `claim(full=True)` and
`running(full=True)` rescan from the start, which the worker does before it concludes that nothing is left.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from anynet_search.study.interrupts import REQUEUED, is_requeued
from anynet_search.study.settings import INFEASIBLE_ATTR, is_trained

FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
UNFINISHED = (TrialState.WAITING, TrialState.RUNNING)
WINDOW = 64  # trial ids per SQL range query (a bitmap scan reads the whole range)


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage object behind a study."""
    return study._storage


def study_id_of(study: optuna.Study) -> int:
    """The storage's id of a study."""
    return study._study_id


def trial_id_of(trial: FrozenTrial | optuna.Trial) -> int:
    """The storage's id of a trial (its number counts within the study, the id within the storage)."""
    return trial._trial_id


@dataclass(frozen=True)
class Outcome:
    """A finished trial, reduced to what the failure rules read."""

    number: int
    state: TrialState
    failure: str | None
    infeasible: bool


@dataclass(frozen=True)
class Counts:
    """Trials by state, trained models (completed, not infeasible), their best error, and the re-queued FAIL trials."""

    by_state: Counter
    trained: int
    best: float | None
    requeued: int = 0


def _outcome(trial: FrozenTrial) -> Outcome:
    failure = trial.user_attrs.get("failure")
    return Outcome(trial.number, trial.state, None if failure is None else str(failure),
                   INFEASIBLE_ATTR in trial.user_attrs)


def _counts_of(trials: list[FrozenTrial]) -> Counts:
    values = [t.value for t in trials if is_trained(t) and t.value is not None]
    return Counts(Counter(t.state for t in trials), len(values), min(values, default=None),
                  sum(map(is_requeued, trials)))


class TrialIndex:
    """Answers a worker's questions about one study without listing it (fallback: listing it)."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self.storage = storage_of(study)
        self.study_id = study_id_of(study)

    def claim(self, full: bool = False) -> int | None:
        """Atomically move the lowest waiting ticket to RUNNING; its trial id, or None if none waits."""
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            try:
                if self.storage.set_trial_state_values(trial_id_of(t), state=TrialState.RUNNING):
                    return trial_id_of(t)
            except UpdateFinishedTrialError:
                continue
        return None

    def fail_running(self, trial_id: int) -> bool:
        """Atomically move a RUNNING trial to FAIL; False if it had finished already (someone else won)."""
        try:
            return self.storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except UpdateFinishedTrialError:
            return False

    def running(self, full: bool = False) -> list[FrozenTrial]:
        """The study's RUNNING trials."""
        return self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))

    def has_unfinished(self) -> bool:
        """Whether any trial is WAITING or RUNNING."""
        return bool(self.study.get_trials(deepcopy=False, states=UNFINISHED))

    def recent_outcomes(self, trial: FrozenTrial, count: int, keep: Callable[[Outcome], bool]) -> list[Outcome]:
        """Up to `count` finished trials numbered at most `trial.number` that pass `keep`, newest first."""
        finished = [t for t in self.study.get_trials(deepcopy=False, states=FINISHED) if t.number <= trial.number]
        kept = [o for o in map(_outcome, reversed(finished)) if keep(o)]
        return kept[:count]

    def counts(self, infeasible_possible: bool = True) -> Counts:
        """Trials by state, the trained count and the best error."""
        return _counts_of(self.study.get_trials(deepcopy=False))


class JournalIndex(TrialIndex):
    """A journal storage replays the file into memory: walk that replay by trial number after one sync (the
    storage's public per-trial calls would re-read the file once per trial walked)."""

    def __init__(self, study: optuna.Study) -> None:
        super().__init__(study)
        self.cursor = 0  # no trial numbered below is WAITING
        self.low = 0  # no trial numbered below is unfinished

    def _replay(self) -> tuple[list[int], dict[int, FrozenTrial]]:
        """(the study's trial ids by number, trials by id), synced with the file once."""
        storage = self.storage
        with storage._thread_lock:
            storage._sync_with_backend()
            replay = storage._replay_result
            return replay._study_id_to_trial_ids[self.study_id], replay._trials

    def claim(self, full: bool = False) -> int | None:
        """The lowest waiting ticket after the cursor, claimed through the journal (first writer wins)."""
        if full:
            self.cursor = 0
        while True:
            ids, trials = self._replay()
            while self.cursor < len(ids) and trials[ids[self.cursor]].state != TrialState.WAITING:
                self.cursor += 1
            if self.cursor >= len(ids):
                return None
            tid = ids[self.cursor]
            self.cursor += 1  # RUNNING from here on, whoever won it
            try:
                if self.storage.set_trial_state_values(tid, state=TrialState.RUNNING):
                    return tid
            except UpdateFinishedTrialError:
                continue

    def _advance_low(self) -> tuple[list[int], dict[int, FrozenTrial]]:
        ids, trials = self._replay()
        while self.low < len(ids) and trials[ids[self.low]].state not in UNFINISHED:
            self.low += 1
        return ids, trials

    def running(self, full: bool = False) -> list[FrozenTrial]:
        """RUNNING trials at or above the low-water mark (`full`: from the first trial)."""
        if full:
            self.low = 0
        ids, trials = self._advance_low()
        return [trials[tid] for tid in ids[self.low:] if trials[tid].state == TrialState.RUNNING]

    def has_unfinished(self) -> bool:
        """Whether a trial at or above the low-water mark is unfinished."""
        ids, _ = self._advance_low()
        return self.low < len(ids)

    def recent_outcomes(self, trial: FrozenTrial, count: int, keep: Callable[[Outcome], bool]) -> list[Outcome]:
        """Walk back from `trial.number` over finished trials."""
        ids, trials = self._replay()
        kept: list[Outcome] = []
        for number in range(min(trial.number, len(ids) - 1), -1, -1):
            t = trials[ids[number]]
            if t.state in FINISHED and keep(o := _outcome(t)):
                kept.append(o)
                if len(kept) == count:
                    break
        return kept


@contextmanager
def _session(backend: RDBStorage) -> Iterator[Any]:
    session = backend.scoped_session()
    try:
        yield session
        session.commit()
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()


class SqlIndex(TrialIndex):
    """SQLite, PostgreSQL, MySQL: queries over bounded primary-key ranges of Optuna's trials table.

    Each query names a range of at most WINDOW trial ids and filters on `study_id + 0`: the "+ 0" keeps the
    planner off the study_id index (which would return the whole study, and did on PostgreSQL without fresh
    statistics), so the database reads at most WINDOW rows per query whatever plan it picks.
    """

    def __init__(self, study: optuna.Study) -> None:
        super().__init__(study)
        from optuna.storages._rdb import models

        self.models = models
        self.backend: RDBStorage = getattr(self.storage, "_backend", self.storage)
        self.cursor = 0  # no trial with a lower id is WAITING (up to commits that raced the cursor)
        self.low = 0  # no trial with a lower id is unfinished (same caveat)
        self.first: int | None = None  # the study's lowest trial id

    def _in_study(self) -> Any:
        return self.models.TrialModel.study_id + 0 == self.study_id

    def _bounds(self, session: Any) -> tuple[int, int]:
        """(the study's first trial id, the storage's last trial id): both primary-key lookups."""
        from sqlalchemy import func

        T = self.models.TrialModel
        if self.first is None:
            self.first = session.query(func.min(T.trial_id)).filter(T.study_id == self.study_id).scalar()
        top = session.query(func.max(T.trial_id)).scalar()
        return (self.first or 0), (top if top is not None else -1)

    def _range(self, session: Any, lo: int, hi: int, *where: Any) -> Any:
        T = self.models.TrialModel
        return session.query(T.trial_id).filter(self._in_study(), T.trial_id >= lo, T.trial_id < hi, *where)

    def claim(self, full: bool = False) -> int | None:
        """The lowest waiting ticket, claimed by a conditional UPDATE (atomic on every SQL database).

        Optuna's own pop reads the state and then writes it; on SQLite two processes can both read WAITING
        and both "win" the same ticket. `UPDATE ... WHERE state = 'WAITING'` cannot. PostgreSQL and MySQL
        lock the candidate row with SKIP LOCKED, so concurrent workers take consecutive tickets instead of
        queueing on the same row.
        """
        T = self.models.TrialModel
        if full:
            self.cursor = 0
        skip_locked = self.backend.engine.dialect.name in ("postgresql", "mysql")
        while True:
            with _session(self.backend) as session:
                first, top = self._bounds(session)
                self.cursor, tid = max(self.cursor, first), None
                while tid is None and self.cursor <= top:
                    q = self._range(session, self.cursor, self.cursor + WINDOW, T.state == TrialState.WAITING)
                    q = q.order_by(T.trial_id).limit(1)
                    row = (q.with_for_update(skip_locked=True) if skip_locked else q).first()
                    if row is None:
                        self.cursor = min(self.cursor + WINDOW, top + 1)
                    else:
                        tid = self.cursor = row[0]
                if tid is None:
                    return None
                won = self._transition(session, tid, TrialState.WAITING, TrialState.RUNNING)
            if won:
                self._register(self.backend.get_trial(tid))
                return tid

    def _transition(self, session: Any, tid: int, old: TrialState, new: TrialState) -> bool:
        """`UPDATE trials SET state = new WHERE trial_id = tid AND state = old`, with Optuna's timestamp."""
        T = self.models.TrialModel
        won = session.query(T).filter(T.trial_id == tid, T.state == old).update(
            {T.state: new}, synchronize_session=False) == 1
        if won:  # the model's setters convert to the stored form (naive UTC in optuna 5, local before)
            row = session.get(T, tid)
            if new == TrialState.RUNNING:
                row.datetime_start = datetime.now()
            else:
                row.datetime_complete = datetime.now()
        return won

    def fail_running(self, trial_id: int) -> bool:
        """Conditional UPDATE RUNNING -> FAIL (Optuna's read-then-write lets two SQLite reapers both win)."""
        with _session(self.backend) as session:
            return self._transition(session, trial_id, TrialState.RUNNING, TrialState.FAIL)

    def _register(self, trial: FrozenTrial) -> None:
        """Put a claimed trial into Optuna's RDB cache, which its parameter writes look up."""
        cache = self.storage
        if cache is self.backend:
            return
        if self.study_id not in cache._studies:
            cache.get_study_directions(self.study_id)  # creates the cache's entry for the study
        with cache._lock:
            cache._add_trials_to_cache(self.study_id, [trial])

    def _advance_low(self, session: Any) -> bool:
        """Move the low-water mark to the first unfinished trial; False if there is none."""
        T = self.models.TrialModel
        first, top = self._bounds(session)
        self.low = max(self.low, first)
        while self.low <= top:
            row = (self._range(session, self.low, self.low + WINDOW, T.state.in_(UNFINISHED))
                   .order_by(T.trial_id).limit(1).first())
            if row is not None:
                self.low = row[0]
                return True
            self.low = min(self.low + WINDOW, top + 1)
        return False

    def running(self, full: bool = False) -> list[FrozenTrial]:
        """RUNNING trials at or above the low-water mark (`full`: rescan from the first trial)."""
        T = self.models.TrialModel
        if full:
            self.low = 0
        with _session(self.backend) as session:
            if not self._advance_low(session):
                return []
            _, top = self._bounds(session)
            ids = [r[0] for r in self._range(session, self.low, top + 1, T.state == TrialState.RUNNING).all()]
        return [self.backend.get_trial(tid) for tid in ids]

    def has_unfinished(self) -> bool:
        """Whether any trial at or above the low-water mark is WAITING or RUNNING."""
        with _session(self.backend) as session:
            return self._advance_low(session)

    def recent_outcomes(self, trial: FrozenTrial, count: int, keep: Callable[[Outcome], bool]) -> list[Outcome]:
        """Walk back from the trial's id over finished trials, reading only their state and two attributes."""
        T, A = self.models.TrialModel, self.models.TrialUserAttributeModel
        kept: list[Outcome] = []
        below = trial_id_of(trial) + 1
        with _session(self.backend) as session:
            first, _ = self._bounds(session)
            while len(kept) < count and below > first:
                lo = max(first, below - WINDOW)
                rows = (session.query(T.trial_id, T.number, T.state)
                        .filter(self._in_study(), T.trial_id >= lo, T.trial_id < below, T.state.in_(FINISHED))
                        .order_by(T.trial_id.desc()).all())
                below = lo
                if not rows:
                    continue
                attrs: dict[int, dict[str, Any]] = {}
                for tid, key, value in (session.query(A.trial_id, A.key, A.value_json)
                                        .filter(A.trial_id.in_([r[0] for r in rows]),
                                                A.key.in_(("failure", INFEASIBLE_ATTR))).all()):
                    attrs.setdefault(tid, {})[key] = json.loads(value)
                for tid, number, state in rows:
                    a = attrs.get(tid, {})
                    o = Outcome(number, state, None if a.get("failure") is None else str(a["failure"]),
                                INFEASIBLE_ATTR in a)
                    if keep(o):
                        kept.append(o)
        return kept[:count]

    def counts(self, infeasible_possible: bool = True) -> Counts:
        """Three aggregate queries: trials by state, the best completed value, completed infeasible trials."""
        from sqlalchemy import func

        T, V, A = self.models.TrialModel, self.models.TrialValueModel, self.models.TrialUserAttributeModel
        with _session(self.backend) as session:
            by_state = Counter({state: n for state, n in session.query(T.state, func.count(T.trial_id))
                                .filter(T.study_id == self.study_id).group_by(T.state).all()})
            infeasible = 0
            if infeasible_possible:
                infeasible = (session.query(func.count(A.trial_user_attribute_id)).join(T, A.trial_id == T.trial_id)
                              .filter(T.study_id == self.study_id, T.state == TrialState.COMPLETE,
                                      A.key == INFEASIBLE_ATTR).scalar() or 0)
            trained = by_state[TrialState.COMPLETE] - infeasible
            best = None
            if trained:
                # infeasible trials carry the worst possible error, so the minimum is a trained model's
                best = (session.query(func.min(V.value)).join(T, V.trial_id == T.trial_id)
                        .filter(T.study_id == self.study_id, T.state == TrialState.COMPLETE, V.objective == 0,
                                V.value_type == V.TrialValueType.FINITE).scalar())
            requeued = by_state[TrialState.FAIL] and (session.query(func.count(A.trial_user_attribute_id)).join(
                T, A.trial_id == T.trial_id).filter(T.study_id == self.study_id, T.state == TrialState.FAIL,
                                                    A.key == "failure", A.value_json.like(f'%{REQUEUED}"')).scalar())
        return Counts(by_state, trained, None if best is None else float(best), int(requeued or 0))


Ticket = tuple[dict[str, Any], dict[str, Any]]  # (fixed parameters, user attributes) of a WAITING trial
BULK = 1000  # tickets per write


def enqueue_many(study: optuna.Study, tickets: list[Ticket]) -> None:
    """Add WAITING trials as `study.enqueue_trial(params, user_attrs=attrs)` would, in bulk: one journal append
    or one SQL transaction per BULK tickets instead of one each (Optuna's SQL create also counts the study's
    trials every time, so enqueueing N tickets one by one cost O(N^2))."""
    storage = storage_of(study)
    backend = getattr(storage, "_backend", storage)
    for start in range(0, len(tickets), BULK):
        chunk = tickets[start:start + BULK]
        if isinstance(storage, JournalStorage):
            _journal_enqueue(storage, study_id_of(study), chunk)
        elif isinstance(backend, RDBStorage):
            _sql_enqueue(backend, study_id_of(study), chunk)
        else:
            for params, attrs in chunk:
                study.enqueue_trial(params, user_attrs=attrs)


def _journal_enqueue(storage: JournalStorage, study_id: int, tickets: list[Ticket]) -> None:
    from optuna.storages.journal._storage import JournalOperation

    worker = storage._replay_result.worker_id
    logs = [{"op_code": JournalOperation.CREATE_TRIAL, "worker_id": worker, "study_id": study_id,
             "state": TrialState.WAITING, "value": None, "values": None, "datetime_start": None, "distributions": {},
             "params": {}, "user_attrs": attrs, "system_attrs": {"fixed_params": params}, "intermediate_values": {}}
            for params, attrs in tickets]
    storage._backend.append_logs(logs)


def _sql_enqueue(backend: RDBStorage, study_id: int, tickets: list[Ticket]) -> None:
    from optuna.storages._rdb import models
    from sqlalchemy import func

    T = models.TrialModel
    with _session(backend) as session:
        # the lock Optuna's own trial creation takes, so that trial numbers stay dense and ordered
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        base = session.query(func.count(T.trial_id)).filter(T.study_id == study_id).scalar() or 0
        rows = [T(study_id=study_id, number=base + i, state=TrialState.WAITING) for i in range(len(tickets))]
        session.add_all(rows)
        session.flush()  # assigns the trial ids, in insertion order
        for row, (params, attrs) in zip(rows, tickets):
            session.add(models.TrialSystemAttributeModel(trial_id=row.trial_id, key="fixed_params",
                                                         value_json=json.dumps(params)))
            session.add_all([models.TrialUserAttributeModel(trial_id=row.trial_id, key=k, value_json=json.dumps(v))
                             for k, v in attrs.items()])


def trial_index(study: optuna.Study) -> TrialIndex:
    """The index for a study's storage: journal, SQL, or the listing fallback."""
    storage = storage_of(study)
    if isinstance(storage, JournalStorage):
        return JournalIndex(study)
    if isinstance(getattr(storage, "_backend", storage), RDBStorage):
        return SqlIndex(study)
    return TrialIndex(study)
