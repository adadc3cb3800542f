"""Ticket bookkeeping that does not grow with the study: cursors, atomic claims, recent outcomes, counts, deaths."""

import os
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from anynet_search.study import RunOptions, Worker, prepare_study
from anynet_search.study.optuna_adapter import JournalIndex, SqlIndex, TrialIndex, trial_id_of, trial_index
from anynet_search.study.worker import StudyFailing, counts_as_failure, load_worker_study

DRY = "anynet_search.study.dry_run:pseudo_error"


def storage_url(kind, tmp_path):
    if kind == "journal":
        return f"journal:{tmp_path / 'journal.log'}"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'studies.db'}"
    url = os.environ.get("ANYNET_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must provide ANYNET_TEST_POSTGRES_URL (see .ci/postgres.sh)")
        pytest.skip("set ANYNET_TEST_POSTGRES_URL to run against PostgreSQL (.ci/postgres.sh starts one)")
    return url


STORAGES = ["journal", "sqlite", "postgres"]


def make_study(tmp_path, kind, trials=12, **kw):
    name = f"t-{os.getpid()}-{time.time_ns()}"
    o = RunOptions(space="anynet_xd_tiny", trials=trials, workers=1, dataset="synthetic:64", out=str(tmp_path / "runs"),
                   objective=DRY, storage=storage_url(kind, tmp_path), study=name, **kw)
    study, settings, url, _ = prepare_study(o)
    return study, url


@pytest.mark.parametrize("kind", STORAGES)
def test_the_index_answers_like_a_full_listing(tmp_path, kind):
    study, _ = make_study(tmp_path, kind, trials=12)
    index = trial_index(study)
    assert isinstance(index, JournalIndex if kind == "journal" else SqlIndex)
    listing = TrialIndex(study)  # the reference: answers by listing the whole study
    claimed = [index.claim() for _ in range(5)]
    waiting = [trial_id_of(t) for t in study.get_trials(states=(TrialState.WAITING,))]
    assert len(set(claimed)) == 5 and not set(claimed) & set(waiting)
    assert claimed == sorted(claimed)  # lowest first: the plan's order
    # finish them: complete, fail (real), fail (re-enqueued death), complete, leave one running
    storage = study._storage
    plan = dict(zip(claimed[:4], [(TrialState.COMPLETE, None), (TrialState.FAIL, "boom"),
                                  (TrialState.FAIL, "worker died (signal 9): config re-enqueued"),
                                  (TrialState.COMPLETE, None)]))
    for tid, (state, reason) in plan.items():
        if reason:
            storage.set_trial_user_attr(tid, "failure", reason)
        storage.set_trial_state_values(tid, state, [3.0 + tid] if state == TrialState.COMPLETE else None)
    assert {trial_id_of(t) for t in index.running()} == {claimed[4]} == {trial_id_of(t) for t in listing.running()}
    assert index.has_unfinished()
    c, ref = index.counts(), listing.counts()
    assert c.by_state == ref.by_state and c.trained == ref.trained == 2 and c.best == pytest.approx(ref.best)
    last = storage.get_trial(max(plan))
    recent = index.recent_outcomes(last, 10, counts_as_failure)
    assert recent == listing.recent_outcomes(last, 10, counts_as_failure)
    # newest first, the re-enqueued death left out
    assert [o.state for o in recent] == [plan[t][0] for t in sorted(plan, reverse=True) if plan[t][1] != plan[
        claimed[2]][1]]
    assert [o.failure for o in recent if o.state == TrialState.FAIL] == ["boom"]
    assert len(index.recent_outcomes(last, 2, counts_as_failure)) == 2


@pytest.mark.parametrize("kind", STORAGES)
def test_claims_drain_the_tickets_then_stop(tmp_path, kind):
    study, _ = make_study(tmp_path, kind, trials=7)
    index = trial_index(study)
    got = [index.claim() for _ in range(7)]
    assert None not in got and len(set(got)) == 7
    assert index.claim() is None and index.claim(full=True) is None
    for tid in got:
        assert index.fail_running(tid)
        assert not index.fail_running(tid)  # RUNNING -> FAIL succeeds once
    assert not index.running(full=True) and not index.has_unfinished()


CLAIMER = """
import sys, optuna, time
from anynet_search.study.optuna_adapter import trial_index
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.load_study(study_name=sys.argv[1], storage=optuna.storages.RDBStorage(sys.argv[2],
                          engine_kwargs={"connect_args": {"timeout": 120}}))
start = float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
index, won = trial_index(study), []
while (tid := index.claim()) is not None:
    won.append(tid)
print(" ".join(map(str, won)))
"""


def test_sqlite_claims_are_atomic_across_processes(tmp_path):
    """Optuna's read-then-write pop let two SQLite processes both win a ticket (seen once in 300 claims by two
    processes); the conditional UPDATE cannot. A race, so this checks the property rather than replaying it."""
    study, url = make_study(tmp_path, "sqlite", trials=150)
    start = time.time() + 6
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, study.study_name, url, str(start)],
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]
    won = [set(p.communicate(timeout=300)[0].split()) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(map(len, won)) == 150 and set.union(*won) == {str(trial_id_of(t)) for t in study.get_trials()}


def test_a_worker_never_lists_the_study_per_trial(tmp_path, monkeypatch):
    """The old worker listed the whole study three times per trial (O(N) each); now only at the very end."""
    study, _ = make_study(tmp_path, "sqlite", trials=15)
    calls = []
    backend = study._storage._backend
    real = backend._get_trials
    monkeypatch.setattr(backend, "_get_trials", lambda *a, **k: calls.append(1) or real(*a, **k))
    Worker(study, objective=DRY).run()
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 15
    assert len(calls) <= 2  # the final check that the study is done


def _claim(study, index):
    tid = index.claim()
    storage = study._storage
    storage.set_trial_system_attr(tid, "host", "elsewhere")
    storage.set_trial_system_attr(tid, "pid", 1)
    return storage.get_trial(tid)


def test_a_config_whose_worker_dies_twice_is_recorded_as_failed_and_the_slot_moves_on(tmp_path):
    study, _ = make_study(tmp_path, "journal", trials=1)
    worker = Worker(study, objective=DRY)
    index = worker.index
    first = _claim(study, index)
    assert worker.mark_dead(first, "signal 11")
    assert not worker.mark_dead(first, "signal 11")  # already marked: no second replacement
    again = _claim(study, index)
    assert again.user_attrs["slot"] == first.user_attrs["slot"] and again.user_attrs["retry_of"] == first.number
    assert again.user_attrs["deaths"] == 1 and again.system_attrs["fixed_params"] == first.system_attrs["fixed_params"]
    assert worker.mark_dead(again, "signal 11")
    failures = [t.user_attrs["failure"] for t in study.get_trials(states=(TrialState.FAIL,))]
    assert failures == ["worker died (signal 11): config re-enqueued", "worker died (signal 11) twice on this config"]
    nxt = [t for t in study.get_trials(states=(TrialState.WAITING,)) if t.user_attrs["slot"] == first.user_attrs["slot"]]
    assert len(nxt) == 1 and nxt[0].user_attrs["attempt"] == 1 and "deaths" not in nxt[0].user_attrs
    assert nxt[0].system_attrs["fixed_params"] != first.system_attrs["fixed_params"]
    assert len(worker.killed_configs) == 1 and "twice on this config" in worker.killed_configs[0]
    assert f"trial {again.number}" in worker.killed_configs[0] and "'d1'" in worker.killed_configs[0]
    worker.run()
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert [(t.user_attrs["slot"], t.user_attrs["attempt"]) for t in done] == [(0, 1)]


def test_a_peer_reaps_a_dead_unsupervised_worker_but_leaves_a_supervised_one_to_its_supervisor(tmp_path):
    study, _ = make_study(tmp_path, "journal", trials=3)
    worker = Worker(study, objective=DRY)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    storage = study._storage
    orphan, supervised = worker.index.claim(), worker.index.claim()
    for tid in (orphan, supervised):
        storage.set_trial_system_attr(tid, "host", worker.host)
        storage.set_trial_system_attr(tid, "pid", dead.pid)
    storage.set_trial_system_attr(supervised, "supervisor", os.getppid())  # alive: it will report the signal
    assert worker.reap_dead_trials() == 1
    assert storage.get_trial(orphan).user_attrs["failure"] == "worker died (process gone): config re-enqueued"
    assert storage.get_trial(supervised).state == TrialState.RUNNING
    assert worker.reap_worker(dead.pid, "signal 9, SIGKILL") == 1
    assert storage.get_trial(supervised).user_attrs["failure"] == "worker died (signal 9, SIGKILL): config re-enqueued"


def test_a_run_started_again_in_the_same_process_records_its_earlier_pools_dead_workers_at_once(tmp_path):
    """A trial left RUNNING by a dead worker whose supervisor is this very process (an earlier run_study in a
    notebook) is no supervisor's to report: the new pool records it before starting, instead of waiting for
    its heartbeat to go stale; a trial of a live worker, or of another supervisor, stays running."""
    study, _ = make_study(tmp_path, "journal", trials=4)
    worker = Worker(study, objective=DRY)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    storage = study._storage
    mine, alive, theirs = worker.index.claim(), worker.index.claim(), worker.index.claim()
    for tid, pid, supervisor in ((mine, dead.pid, os.getpid()), (alive, os.getppid(), os.getpid()),
                                 (theirs, dead.pid, os.getppid())):
        for key, value in (("host", worker.host), ("pid", pid), ("supervisor", supervisor),
                           ("heartbeat", time.time())):
            storage.set_trial_system_attr(tid, key, value)
    assert worker.reap_orphans_of(os.getpid()) == 1
    assert storage.get_trial(mine).user_attrs["failure"] == "worker died (process gone): config re-enqueued"
    assert storage.get_trial(alive).state == TrialState.RUNNING and storage.get_trial(theirs).state == TrialState.RUNNING


def _fail_with_deaths(trial, cfg, settings, resolution, device):
    raise RuntimeError("bad config")


def test_failure_streaks_skip_requeued_configs_and_count_double_deaths(tmp_path):
    study, _ = make_study(tmp_path, "sqlite", trials=30)
    worker = Worker(study, objective=_fail_with_deaths)
    for _ in range(3):  # re-enqueued deaths interleaved: they neither break nor extend the streak
        worker.mark_dead(_claim(study, worker.index), "signal 9")
    with pytest.raises(StudyFailing, match="last 10 trials all failed"):
        worker.run()
    real = [t for t in study.get_trials(states=(TrialState.FAIL,)) if "re-enqueued" not in t.user_attrs["failure"]]
    assert len(real) == 10


def test_workers_use_the_studys_sampler_and_pruner(tmp_path):
    """Optuna's loader gives TPE and the median pruner; a worker must use what the study asked for."""
    cmaes, url = make_study(tmp_path / "a", "journal", trials=4, sampler="cmaes")
    w = load_worker_study(cmaes.study_name, url, "w0")
    assert isinstance(w.sampler, optuna.samplers.CmaEsSampler) and isinstance(w.pruner, optuna.pruners.MedianPruner)
    random, url = make_study(tmp_path / "b", "journal", trials=4)
    w = load_worker_study(random.study_name, url, "w0")
    assert isinstance(w.sampler, optuna.samplers.RandomSampler) and isinstance(w.pruner, optuna.pruners.NopPruner)


@pytest.mark.parametrize("kind", STORAGES)
def test_bulk_tickets_equal_optunas_enqueued_ones(tmp_path, kind):
    from anynet_search.study.optuna_adapter import BULK, enqueue_many

    study, _ = make_study(tmp_path, kind, trials=3)
    study.enqueue_trial({"d1": 2}, user_attrs={"slot": 3, "attempt": 0})
    enqueue_many(study, [({"d1": 1 + i % 4}, {"slot": 4 + i, "attempt": 0}) for i in range(BULK + 5)])
    study.enqueue_trial({"d1": 3}, user_attrs={"slot": 99, "attempt": 1, "retry_of": 0})
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(BULK + 10))
    assert all(t.state == TrialState.WAITING and t.datetime_start is None for t in trials)
    assert [t.user_attrs["slot"] for t in trials] == [0, 1, 2, 3, *range(4, BULK + 9), 99]
    assert [t.system_attrs["fixed_params"]["d1"] for t in trials[4:9]] == [1, 2, 3, 4, 1]
    ids = [trial_id_of(t) for t in trials]
    assert ids == sorted(ids) and trial_index(study).claim() == ids[0]


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_ticket_behind_the_cursor_is_found_before_the_worker_stops(tmp_path, kind):
    """A cursor can pass a ticket whose insert committed late; the worker rescans before it concludes."""
    study, _ = make_study(tmp_path, kind, trials=3)
    worker = Worker(study, objective=DRY)
    worker.index.cursor = worker.index.low = 10**9  # as if every ticket had been seen taken
    assert worker.index.claim() is None
    worker.run()
    assert sorted(t.user_attrs["slot"] for t in study.get_trials(states=(TrialState.COMPLETE,))) == [0, 1, 2]
