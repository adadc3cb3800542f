"""Several trials in flight in one worker process, on the CPU (the same engine a GPU worker runs on streams):
the same per-trial results as one at a time, real overlap, fault isolation (a sticky device error re-queues the
innocent trials, an out-of-memory trial beside others is re-run alone), and the worker caps."""

import os
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_study import assert_exactly_n, run_with_fault_objective

from anynet_search.study import RunOptions, run_study
from anynet_search.study.capacity import MAX_WORKERS_PER_GPU, cores, plan_workers
from anynet_search.study.storage import open_storage
from anynet_search.training.interface import TrainConfig

TESTS = str(Path(__file__).parent)


def _study(outcome):
    return optuna.load_study(study_name=outcome.study_name, storage=open_storage(outcome.storage_url))


def _by_slot(study):
    return {t.user_attrs["slot"]: t for t in study.get_trials(states=(TrialState.COMPLETE,))}


def test_trials_in_flight_train_what_one_at_a_time_trains(tmp_path):
    """The real trainer on digits: 3 trials in flight in one process give every slot bitwise the errors that
    one trial at a time gives (each trial seeds and builds its model in one step and draws from its own
    generator, so interleaving changes nothing)."""
    results = {}
    for k in (1, 3):
        o = RunOptions(space="anynet_xa_tiny", trials=3, workers=1, in_flight=k, dataset="digits", epochs=1,
                       out=str(tmp_path / f"k{k}"))
        outcome = run_study(o)
        assert outcome.snapshot.completed == 3 and outcome.failing_message is None
        results[k] = _by_slot(_study(outcome))
    for slot in range(3):
        one, three = results[1][slot], results[3][slot]
        assert one.params == three.params
        assert one.user_attrs["result"]["history"] == three.user_attrs["result"]["history"]
        assert one.user_attrs["result"]["test_error"] == three.user_attrs["result"]["test_error"]
    assert {t.user_attrs["in_flight"] for t in results[1].values()} == {1}
    assert max(t.user_attrs["in_flight"] for t in results[3].values()) == 3


def test_trials_in_flight_overlap_in_time(tmp_path):
    proc, study = run_with_fault_objective(tmp_path, "stepped_objective", "anynet_xd_tiny", "random", 6, 1,
                                           extra=["--in-flight", "3"], ANYNET_TEST_STEPS="40")
    assert_exactly_n(study, 6)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    spans = sorted((t.datetime_start, t.datetime_complete) for t in done)
    overlapping = sum(b_start < a_end for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    assert overlapping >= 3  # one worker process, yet trials ran at the same time
    assert {t.user_attrs["worker"] for t in done} == {"w0"}


def test_a_sticky_device_error_requeues_the_trials_beside_it_and_blames_only_its_own_config(tmp_path):
    """Which trial's kernel broke a CUDA context is unknown when several share it: every trial in flight goes back
    to the queue (not counted as failed) to run alone; the config that breaks it again, alone, is the one recorded
    as failed. The EDF keeps every other config."""
    proc, study = run_with_fault_objective(tmp_path, "stepped_objective", "anynet_xd_tiny", "random", 6, 1,
                                           extra=["--in-flight", "3"], ANYNET_TEST_POISON_SLOT="1")
    assert_exactly_n(study, 6)
    failed = study.get_trials(states=(TrialState.FAIL,))
    counted = [t for t in failed if not t.user_attrs["failure"].endswith("config re-enqueued")]
    assert [(t.user_attrs["slot"], t.user_attrs["attempt"]) for t in counted] == [(1, 0)]
    assert counted[0].user_attrs["failure"] == "RuntimeError: CUDA error: an illegal memory access was encountered"
    assert counted[0].user_attrs.get("solo") is True  # blamed only when it ran alone
    beside = [t for t in failed if t not in counted]
    assert beside and all("CUDA error in its worker process" in t.user_attrs["failure"] for t in beside)
    innocent = {t.user_attrs["slot"] for t in beside} - {1}
    assert innocent  # trials really were in flight beside it
    done = _by_slot(study)
    for slot in innocent:  # their own configs trained in the end (attempt 0), alone
        assert done[slot].user_attrs["attempt"] == 0 and done[slot].user_attrs.get("solo") is True
    assert done[1].user_attrs["attempt"] == 1  # the blamed slot moved on to its next config
    assert proc.stderr.count("restarting it") >= 2


def test_an_out_of_memory_trial_beside_others_is_rerun_alone_without_blame(tmp_path):
    proc, study = run_with_fault_objective(tmp_path, "stepped_objective", "anynet_xd_tiny", "random", 5, 1,
                                           extra=["--in-flight", "3"], ANYNET_TEST_OOM_SLOT="2")
    assert_exactly_n(study, 5)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert [t.user_attrs["slot"] for t in failed] == [2]
    assert failed[0].user_attrs["failure"].startswith("out of memory beside 2 trials in flight")
    assert failed[0].user_attrs["failure"].endswith("config re-enqueued")
    again = _by_slot(study)[2]
    assert again.user_attrs["attempt"] == 0 and again.params == failed[0].params and again.user_attrs["solo"]
    assert again.user_attrs["in_flight"] == 1


def test_worker_counts_are_clamped_to_the_machine_and_the_trials_left():
    train = TrainConfig()
    plan = plan_workers("cpu", 10_000, None, 400, train)
    assert len(plan.specs) == cores() and len(plan.notes) == 1 and "--oversubscribe" in plan.notes[0]
    assert len(plan_workers("cpu", 10_000, None, 400, train, oversubscribe=True).specs) == 400  # trials left
    few = plan_workers("cpu", 8, None, 2, train, oversubscribe=True)
    assert len(few.specs) == 2 and "only 2 trial(s) left" in few.notes[-1]
    assert [s.in_flight for s in plan_workers("cpu", 1, 8, 5, train).specs] == [5]  # never more slots than trials
    assert [s.in_flight for s in plan_workers("cpu", None, None, 50, train).specs] == [1, 1]
    assert MAX_WORKERS_PER_GPU >= 1


def test_run_with_absurd_workers_starts_no_more_processes_than_trials(tmp_path):
    """`--workers 10000 --trials 2` once started ~390 processes and took the machine down."""
    proc, study = run_with_fault_objective(tmp_path, "stepped_objective", "anynet_xd_tiny", "random", 2, 10_000)
    assert_exactly_n(study, 2)
    workers = {t.user_attrs["worker"] for t in study.get_trials(states=(TrialState.COMPLETE,))}
    assert workers <= {"w0", "w1"}
    assert "starting" in proc.stderr + proc.stdout


@pytest.mark.parametrize("value", ["0", "65", "-3"])
def test_in_flight_out_of_range_is_one_line(tmp_path, value):
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "anynet_search", "run", "--in-flight", value, "--trials", "2",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=TESTS))
    assert proc.returncode == 2
    assert "--in-flight" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
