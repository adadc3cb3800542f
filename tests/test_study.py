"""Studies: exact N completed trials with several workers, fault tolerance, resume, storages, samplers."""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from anynet_search.spaces import load_space
from anynet_search.study import RunOptions, Worker, prepare_study, redact, run_study
from anynet_search.study.settings import StudySettings, stream_seed
from anynet_search.study.worker import StudyFailing
from anynet_search.training.train import OutOfMemoryError

DRY = "anynet_search.study.dry_run:pseudo_error"


def opts(tmp_path, **kw):
    base = dict(space="anynet_xd_tiny", trials=12, workers=2, dataset="synthetic:64", out=str(tmp_path / "runs"),
                objective=DRY)
    base.update(kw)
    return RunOptions(**base)


def completed_slots(study):
    return Counter(t.user_attrs["slot"] for t in study.get_trials(states=(TrialState.COMPLETE,))
                   if "infeasible" not in t.user_attrs)


def assert_exactly_n(study, n):
    slots = completed_slots(study)
    assert sorted(slots) == list(range(n)) and set(slots.values()) == {1}
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def test_multi_worker_study_ends_with_exactly_n_trials_following_the_plan(tmp_path, monkeypatch):
    monkeypatch.setenv("ANYNET_DRY_SLEEP", "0.05")
    outcome = run_study(opts(tmp_path))
    assert outcome.snapshot.completed == 12 and outcome.failing_message is None
    study = optuna.load_study(study_name=outcome.study_name, storage=_storage(outcome.storage_url))
    assert_exactly_n(study, 12)
    # random sampler: slot k trains element k of the seeded stream, whatever the number of workers
    space = load_space("anynet_xd_tiny").with_task(10, 3)
    planned = [s.params for s in space.sample_many(12, seed=stream_seed(0, space))]
    by_slot = {t.user_attrs["slot"]: t.params for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert [by_slot[k] for k in range(12)] == planned
    workers = {t.user_attrs["worker"] for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert workers == {"w0", "w1"}


def _storage(outcome_or_url):
    from anynet_search.study.storage import open_storage

    return open_storage(outcome_or_url)


def _worker_proc(study, url, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.Popen([sys.executable, "-m", "anynet_search", "worker", "--study", study, "--storage", url,
                             "--objective", DRY, "--threads", "1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _kill_one_worker_mid_trial(study, url, n):
    env = {"ANYNET_DRY_SLEEP": "0.6"}
    victim = _worker_proc(study.study_name, url, env)
    assert _wait_for(lambda: any(t.system_attrs.get("pid") == victim.pid and "config" in t.user_attrs
                                 for t in study.get_trials(states=(TrialState.RUNNING,))))  # mid-training
    survivor = _worker_proc(study.study_name, url, env)
    os.kill(victim.pid, signal.SIGKILL)
    assert survivor.wait(timeout=240) == 0, survivor.stderr.read()
    victim.wait()
    assert_exactly_n(study, n)
    died = [t for t in study.get_trials(states=(TrialState.FAIL,)) if "worker died" in t.user_attrs.get("failure", "")]
    assert len(died) == 1
    # its config was trained again by the live worker, once
    retried = [t for t in study.get_trials(states=(TrialState.COMPLETE,)) if t.user_attrs.get("retry_of") == died[0].number]
    assert len(retried) == 1 and retried[0].params == died[0].params


def test_the_objective_is_named_validation_error_for_dashboards(tmp_path):
    study, *_ = prepare_study(opts(tmp_path, trials=2))
    assert study.metric_names == ["validation error (%)"]
    journal = tmp_path / "runs" / study.study_name / "journal.log"
    reopened = optuna.load_study(study_name=study.study_name, storage=_storage(f"journal:{journal}"))
    assert reopened.metric_names == ["validation error (%)"]


def test_sigkilled_worker_loses_and_duplicates_nothing(tmp_path):
    study, settings, url, _ = prepare_study(opts(tmp_path, trials=6))
    _kill_one_worker_mid_trial(study, url, 6)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_database_storages_multi_worker_and_sigkill(tmp_path, backend):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'studies.db'}"
    else:
        url = os.environ.get("ANYNET_TEST_POSTGRES_URL")
        if not url:
            if os.environ.get("CI"):
                pytest.fail("CI must provide ANYNET_TEST_POSTGRES_URL (see .ci/postgres.sh)")
            pytest.skip("set ANYNET_TEST_POSTGRES_URL to run against PostgreSQL (.ci/postgres.sh starts one)")
    name = f"pg-{os.getpid()}-{time.time_ns()}"
    study, _, _, _ = prepare_study(opts(tmp_path, trials=6, storage=url, study=name))
    _kill_one_worker_mid_trial(study, url, 6)


def _dry_run_process(tmp_path, trials: int, sleep: float, *extra: str):
    """`anynet-search run` of dry trials in a process group of its own: (command, process, run folder, URL)."""
    cmd = [sys.executable, "-m", "anynet_search", "run", "--space", "anynet_xd_tiny", "--trials", str(trials),
           "--workers", "2", "--dataset", "synthetic:64", "--out", str(tmp_path / "runs"), "--objective", DRY, *extra]
    proc = subprocess.Popen(cmd, env=dict(os.environ, ANYNET_DRY_SLEEP=str(sleep)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    run_dir = tmp_path / "runs" / "anynet_xd_tiny-synthetic-random-e8-s0"
    return cmd, proc, run_dir, f"journal:{run_dir / 'journal.log'}"


def _has_trials(run_dir, url, state, n: int):
    """A check: whether the run's study has at least `n` trials in `state` (False while it does not exist yet)."""
    def check():
        try:
            st = optuna.load_study(study_name=run_dir.name, storage=_storage(url))
        except Exception:
            return False
        return len(st.get_trials(states=(state,))) >= n
    return check


def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(tmp_path):
    cmd, proc, run_dir, url = _dry_run_process(tmp_path, 10, 0.5)
    assert _wait_for(_has_trials(run_dir, url, TrialState.COMPLETE, 2), 120)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "resume" in err
    study = optuna.load_study(study_name=run_dir.name, storage=_storage(url))
    assert not study.get_trials(states=(TrialState.RUNNING,)), err
    done_before = len(study.get_trials(states=(TrialState.COMPLETE,)))
    assert done_before < 10
    again = subprocess.run(cmd, env=dict(os.environ, ANYNET_DRY_SLEEP="0"), capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr
    assert_exactly_n(optuna.load_study(study_name=run_dir.name, storage=_storage(url)), 10)


def test_a_closed_terminal_sighup_requeues_the_trials_in_flight_and_exits_129(tmp_path):
    """SIGHUP to the whole process group, as a terminal that closes sends it: the workers put their trials back,
    the run says so in one line and exits 128 + 1 (it used to stop silently with its trials left RUNNING)."""
    _, proc, run_dir, url = _dry_run_process(tmp_path, 6, 1.5, "--no-analyze")
    assert _wait_for(_has_trials(run_dir, url, TrialState.RUNNING, 1), 120)
    os.killpg(proc.pid, signal.SIGHUP)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 129, err
    assert [line for line in err.splitlines() if "SIGHUP" in line] == [
        "stopped by SIGHUP: the trials in flight went back to the queue; run the same command again to resume"]
    study = optuna.load_study(study_name=run_dir.name, storage=_storage(url))
    assert not study.get_trials(states=(TrialState.RUNNING,))
    requeued = [t for t in study.get_trials(states=(TrialState.FAIL,))]
    assert requeued and all(t.user_attrs["failure"] == "interrupted: config re-enqueued" for t in requeued)
    assert f"0 failed, {len(requeued)} interrupted (re-queued)" in out


def _crashing(trial, cfg, settings, resolution, device):
    slot, attempt = trial.user_attrs["slot"], trial.user_attrs["attempt"]
    if slot == 2 and attempt == 0:
        raise RuntimeError("boom in the data loader")
    if slot == 3 and attempt == 0:
        raise OutOfMemoryError("CUDA out of memory at batch size 128")
    return 1.0 + slot


def test_a_crashing_or_oom_trial_is_recorded_and_replaced(tmp_path):
    study, *_ = prepare_study(opts(tmp_path, trials=6, workers=1))
    Worker(study, objective=_crashing).run()
    assert_exactly_n(study, 6)
    failures = {t.user_attrs["slot"]: t.user_attrs["failure"] for t in study.get_trials(states=(TrialState.FAIL,))}
    assert failures == {2: "RuntimeError: boom in the data loader", 3: "CUDA out of memory at batch size 128"}


def _always_failing(trial, cfg, settings, resolution, device):
    raise RuntimeError("loss became nan at epoch 1 step 3")


def test_a_study_whose_trials_all_fail_stops_with_a_clear_message(tmp_path):
    study, *_ = prepare_study(opts(tmp_path, trials=30, workers=1))
    with pytest.raises(StudyFailing, match="last 10 trials all failed .*loss became nan"):
        Worker(study, objective=_always_failing).run()
    assert len(study.get_trials(states=(TrialState.FAIL,))) == 10


def test_diverging_training_is_a_recorded_failure(tmp_path):
    o = opts(tmp_path, trials=3, workers=1, objective=None, space="anynet_xa_tiny",
             train_overrides=(("lr", 1.0e6), ("epochs", 2)))
    study, *_ = prepare_study(o)
    with pytest.raises(StudyFailing):
        Worker(study).run()
    reasons = [t.user_attrs["failure"] for t in study.get_trials(states=(TrialState.FAIL,))]
    assert reasons and all(("nan" in r or "inf" in r) for r in reasons)


def _check_constraints(space, trials):
    for t in trials:
        cfg = t.user_attrs["config"]
        assert all(a <= b for a, b in zip(cfg["widths"], cfg["widths"][1:]))
        assert len(set(cfg["bottleneck_ratios"])) == 1
        lo, hi = space.band["flops"]
        assert lo <= t.user_attrs["flops"] <= hi


@pytest.mark.parametrize("sampler", ["random", "qmc", "tpe", "cmaes", "nsga2", "gp"])
def test_every_sampler_trains_only_feasible_configs(tmp_path, sampler):
    n = 12
    study, settings, *_ = prepare_study(opts(tmp_path, trials=n, workers=1, sampler=sampler))
    Worker(study, objective=DRY).run()
    space = settings.design_space()
    trained = [t for t in study.get_trials(states=(TrialState.COMPLETE,)) if "infeasible" not in t.user_attrs]
    infeasible = [t for t in study.trials if "infeasible" in t.user_attrs]
    assert len(trained) == n
    _check_constraints(space, trained)
    if sampler in ("random", "qmc"):
        assert not infeasible and len(study.trials) == n  # rejected samples never become trials
    # infeasible suggestions are never trained, and are told back so the sampler learns
    assert all("result" not in t.user_attrs and t.value == 100.0 for t in infeasible)
    if sampler != "cmaes":  # CMA-ES learns from the penalty value alone
        assert all(t.system_attrs.get("constraints:space") == 1.0 for t in infeasible)
    assert len(study.trials) < 40 * n  # the study stays small
    for t in trained:
        assert t.user_attrs["sampler"] == sampler and t.user_attrs["space_hash"] == space.hash
        assert set(space.param_names()) == set(t.params)


def test_qmc_plan_differs_from_random_and_is_deterministic(tmp_path):
    space = load_space("anynet_xd_tiny")
    a = [s.params for s in space.sample_many(8, seed=0, qmc=True)]
    assert a == [s.params for s in space.sample_many(8, seed=0, qmc=True)]
    assert a != [s.params for s in space.sample_many(8, seed=0)]


def test_missing_dataset_path_fails_before_any_worker(tmp_path):
    with pytest.raises(ValueError, match="nowhere"):
        prepare_study(opts(tmp_path, dataset=f"cifar10:{tmp_path / 'nowhere'}"))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_resuming_with_different_options_is_refused(tmp_path):
    prepare_study(opts(tmp_path, study="s"))
    with pytest.raises(ValueError, match=r"already exists with other settings: seed 0 \(stored\) vs 1 \(asked\);"):
        prepare_study(opts(tmp_path, study="s", seed=1))


def test_raising_trials_extends_an_existing_study(tmp_path):
    study, *_ = prepare_study(opts(tmp_path, study="s", trials=4, workers=1))
    Worker(study, objective=DRY).run()
    study, settings, *_ = prepare_study(opts(tmp_path, study="s", trials=7, workers=1))
    assert settings.n_trials == 7
    Worker(study, objective=DRY).run()
    assert_exactly_n(study, 7)


def test_credentials_are_redacted_everywhere(tmp_path, capsys):
    assert redact("postgresql://alice:s3cret@db.example:5432/studies") == "postgresql://alice:***@db.example:5432/studies"
    from anynet_search.cli import main

    code = main(["status", "--study", "x", "--storage", "postgresql://alice:s3cret@127.0.0.1:1/none"])
    err = capsys.readouterr().err
    assert code == 2 and "s3cret" not in err and "***" in err


def test_stored_settings_rebuild_the_space_without_its_file(tmp_path):
    study, settings, *_ = prepare_study(opts(tmp_path))
    again = StudySettings.from_study(study)
    assert again.design_space().hash == settings.design_space().hash
    assert again.design_space().sample_many(3, seed=1)[0].config == settings.design_space().sample_many(3, seed=1)[0].config
    assert np.isfinite(again.design_space().log10_size)


def _no_core_dumps():
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def test_a_config_that_kills_its_worker_is_failed_after_two_deaths_and_the_study_goes_on(tmp_path):
    """Issue 10 item 5: a crashing config used to be re-queued forever and end every run with 'all workers
    exited early'. Now its worker is replaced, and after two deaths the config is a named failure."""
    cmd = [sys.executable, "-m", "anynet_search", "run", "--space", "anynet_xd_tiny", "--trials", "5", "--workers", "2",
           "--dataset", "synthetic:64", "--out", str(tmp_path / "runs"), "--objective", DRY, "--no-analyze"]
    proc = subprocess.run(cmd, env=dict(os.environ, ANYNET_DRY_KILL="2:SIGSEGV", ANYNET_DRY_SLEEP="0.1"),
                          capture_output=True, text=True, timeout=600, preexec_fn=_no_core_dumps)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5/5 completed, 1 failed, 1 interrupted (re-queued)" in proc.stdout  # the first death re-queues
    run_dir = tmp_path / "runs" / "anynet_xd_tiny-synthetic-random-e8-s0"
    study = optuna.load_study(study_name=run_dir.name, storage=_storage(f"journal:{run_dir / 'journal.log'}"))
    assert_exactly_n(study, 5)
    died = sorted(study.get_trials(states=(TrialState.FAIL,)), key=lambda t: t.number)
    assert [t.user_attrs["failure"] for t in died] == ["worker died (signal 11, SIGSEGV): config re-enqueued",
                                                       "worker died (signal 11, SIGSEGV) twice on this config"]
    assert {t.user_attrs["slot"] for t in died} == {2} and died[0].params == died[1].params
    done = [t for t in study.get_trials(states=(TrialState.COMPLETE,)) if t.user_attrs["slot"] == 2]
    assert done[0].user_attrs["attempt"] == 1 and done[0].params != died[0].params
    named = [line for line in proc.stdout.splitlines() if line.startswith("config that killed its worker twice")]
    assert len(named) == 1 and f"trial {died[1].number} (slot 2)" in named[0]
    assert str(died[1].params["w4"]) in named[0] and "'d1'" in named[0]


def run_with_fault_objective(tmp_path, objective, space, sampler, trials, workers, extra=(), **env):
    """`anynet-search run` in a subprocess with an objective from tests/faults.py; (process, its study)."""
    cmd = [sys.executable, "-m", "anynet_search", "run", "--space", space, "--sampler", sampler, "--trials",
           str(trials), "--workers", str(workers), "--dataset", "synthetic:64", "--out", str(tmp_path / "runs"),
           "--objective", f"faults:{objective}", "--no-analyze", *extra]
    env = dict(os.environ, **env, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent),
                                                               os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = tmp_path / "runs" / f"{space}-synthetic-{sampler}-e8-s0"
    return proc, optuna.load_study(study_name=run_dir.name, storage=_storage(f"journal:{run_dir / 'journal.log'}"))


def test_a_sticky_cuda_error_fails_its_trial_only_and_a_fresh_worker_goes_on(tmp_path):
    """After an illegal memory access every CUDA call of the process fails: on the H100 one such error
    recorded nine healthy configs after it as failed. Now the worker exits and a fresh process takes over."""
    proc, study = run_with_fault_objective(tmp_path, "poisoned_device_objective", "anynet_xd_tiny", "random", 6, 1,
                                           ANYNET_TEST_POISON_SLOT="1")
    assert_exactly_n(study, 6)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert [(t.user_attrs["slot"], t.user_attrs["failure"]) for t in failed] == [
        (1, "RuntimeError: CUDA error: an illegal memory access was encountered")]
    assert failed[0].user_attrs["failure_where"].startswith("faults.py:") and \
        "in poisoned_device_objective: raise RuntimeError" in failed[0].user_attrs["failure_where"]
    assert "leaves the process unusable; restarting it" in proc.stderr


def test_pruned_trials_with_two_tpe_workers_end_with_exactly_n_trained(tmp_path):
    """A pruned slot used to be re-enqueued by both workers (the replacement raced the repair of missing
    slots), ending the study with N + 1 trained trials."""
    _, study = run_with_fault_objective(tmp_path, "pruned_often_objective", "anynet_xa_tiny", "tpe", 16, 2,
                                        ANYNET_DRY_SLEEP="0.02")
    assert len(study.get_trials(states=(TrialState.PRUNED,))) > 0  # the race needs pruned trials
    assert_exactly_n(study, 16)


def test_a_slot_between_a_peers_tell_and_enqueue_is_not_ticketed_twice(tmp_path):
    """CI on a GPU ended a 2-worker TPE study 4/3 completed: an idle worker 'repaired' a slot in the moment
    between a peer's tell (PRUNED) and its enqueue of the slot's next ticket. A slot is now repaired only
    after it has looked unticketed for REPAIR_GRACE_SECONDS, which a dead peer's slot still is."""
    from anynet_search.study import worker as worker_module

    study, *_ = prepare_study(opts(tmp_path, trials=3, workers=1, sampler="tpe", space="anynet_xa_tiny"))
    worker = Worker(study, objective=DRY)
    tickets = {t.user_attrs["slot"]: t for t in study.get_trials(states=(TrialState.WAITING,))}
    claimed = worker.index.claim()
    assert claimed == tickets[0]._trial_id
    study.tell(study.get_trials()[0].number, state=TrialState.PRUNED)  # the peer told; its enqueue comes next
    grace = worker_module.REPAIR_GRACE_SECONDS
    assert worker._repair_missing_slots(now=100.0) == 0
    worker._replace(study.get_trials()[0], same_config=False)  # the peer's enqueue lands inside the grace
    assert worker._repair_missing_slots(now=100.0 + grace) == 0
    assert Counter(t.user_attrs["slot"] for t in study.get_trials(states=(TrialState.WAITING,))) == {0: 1, 1: 1, 2: 1}

    dead = study.get_trials(states=(TrialState.WAITING,))[-1]  # slot 0's new ticket; its worker dies mid-window
    assert worker.index.claim(full=True) == tickets[1]._trial_id
    study.tell(study.get_trials()[1].number, 0.5)  # slot 1 trains normally
    assert worker.index.claim() == tickets[2]._trial_id
    study.tell(study.get_trials()[2].number, 0.5)
    assert worker.index.claim() == dead._trial_id
    study.tell(dead.number, state=TrialState.PRUNED)  # ... and no enqueue follows
    assert worker._repair_missing_slots(now=200.0) == 0
    assert worker._repair_missing_slots(now=200.0 + grace / 2) == 0
    assert worker._repair_missing_slots(now=200.0 + grace) == 1
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [(t.user_attrs["slot"], t.user_attrs["attempt"]) for t in waiting] == [(0, 2)]
    assert worker._repair_missing_slots(now=300.0 + grace) == 0  # ticketed again: nothing more
