"""Resource limits and the faults that once took a shared machine down (issue 20): a killed `run` takes its
workers along, a space whose every config kills its worker stops instead of looping, memory checks read the
process's own limits, the RegNet fit stays bounded in memory, and a run started beside another sizes its
workers by the cores left. Each test keeps what it starts small (one or two workers, dry trials) and counts
processes instead of timing them."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faults import spawned_workers
from optuna.trial import TrialState

from anynet_search.reporting.results import open_run
from anynet_search.study import RunOptions, StudyFailing, Worker, prepare_study
from anynet_search.study.capacity import cores, plan_workers
from anynet_search.study.local_runs import LocalRun, other_runs, process_start, registered
from anynet_search.study.reaper import MAX_DEATHS, pid_alive
from anynet_search.study.worker import FAILURE_STREAK
from anynet_search.training.interface import TrainConfig
from anynet_search.training.memory import cgroup_memory_left, free_memory, memory_limits

TESTS = str(Path(__file__).parent)
DRY = "anynet_search.study.dry_run:pseudo_error"
DEADLINE = 120.0  # seconds a test waits for something that takes a few; only a hang reaches it


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]), **extra)


def _run_cmd(out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "anynet_search", "run", "--dataset", "synthetic:64", "--out", str(out),
            "--no-analyze", *args]


def _wait_for(condition, what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < end, f"still waiting for {what}"
        time.sleep(0.2)


def _running(folder: Path) -> int:
    if not (folder / "journal.log").is_file():
        return 0
    return len(open_run(folder)[1].get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


# ------------------------------------------------------------------------------------------ runaway workers
def test_a_killed_run_takes_its_workers_along(tmp_path):
    """SIGKILL to `run` once left its workers orphaned, holding the machine's memory until killed by hand. Now
    the kernel's parent-death signal (and a watchdog) stops them, and they put their trials back in the
    queue."""
    log = (tmp_path / "run.log").open("w")
    cmd = _run_cmd(tmp_path / "runs", "--workers", "2", "--trials", "40", "--objective", DRY)
    proc = subprocess.Popen(cmd, env=_env(ANYNET_DRY_SLEEP="3"), stdout=log, stderr=subprocess.STDOUT)
    folder = tmp_path / "runs" / "anynet_xa_tiny-synthetic-random-e8-s0"
    try:
        _wait_for(lambda: len(spawned_workers(proc.pid)) == 2 and _running(folder) >= 2, "workers mid-trial")
        workers = spawned_workers(proc.pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        log.close()
    _wait_for(lambda: not any(pid_alive(p) for p in workers), "the orphaned workers to exit")
    study = open_run(folder)[1]
    assert not study.get_trials(states=(TrialState.RUNNING,))  # their trials went back to the queue, not lost
    requeued = [t for t in study.get_trials(states=(TrialState.FAIL,))
                if t.user_attrs.get("failure", "").startswith("interrupted")]
    assert len(requeued) >= 2


def test_every_config_killing_its_worker_stops_the_study_with_one_message(tmp_path):
    """A space where every config kills its worker (e.g. a CPU-time limit) looped forever: 20 failed trials in
    a row, still going at 180 s. A retried config is queued behind every other slot, so the failure streak (a
    config counts once it killed its worker twice) would come only after N + 10 deaths: the supervisor stops
    after 10 worker processes in a row died with nothing trained meanwhile, and leaves no worker behind."""
    proc = subprocess.run(_run_cmd(tmp_path / "runs", "--workers", "2", "--trials", "50", "--objective",
                                   "faults:kill_every_config"),
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == ("anynet-search run: error: the study stopped: the last 10 worker processes were killed "
                    "(signal 9, SIGKILL) while running trials, and none was trained meanwhile: the configs "
                    "kill their workers; stopping instead of looping"), last
    assert "Traceback" not in proc.stderr
    study = open_run(tmp_path / "runs" / "anynet_xa_tiny-synthetic-random-e8-s0")[1]
    failed = study.get_trials(states=(TrialState.FAIL,))
    deaths = [t for t in failed if t.user_attrs["failure"].startswith("worker died")]
    assert 10 <= len(deaths) < 50  # it stopped at the streak, long before every slot was tried
    assert not study.get_trials(states=(TrialState.RUNNING,))


def test_a_config_recorded_as_failed_after_killing_its_worker_counts_in_the_failure_streak(tmp_path):
    """`mark_dead` never consulted the failure streak: ten configs recorded as failed after their second death
    (and nothing else finished) now stop the study like ten failed trainings."""
    study, *_ = prepare_study(RunOptions(trials=12, workers=1, dataset="synthetic:64", out=str(tmp_path),
                                         objective=DRY))
    supervisor = Worker(study, objective=DRY)
    for n in range(FAILURE_STREAK):
        trial_id = supervisor.index.claim()
        supervisor.storage.set_trial_user_attr(trial_id, "deaths", MAX_DEATHS - 1)  # killed a worker before
        running = supervisor.storage.get_trial(trial_id)
        if n < FAILURE_STREAK - 1:
            assert supervisor.mark_dead(running, "signal 24, SIGXCPU")
            continue
        with pytest.raises(StudyFailing, match=r"the last 10 trials all failed \(10 with: worker died "
                                               r"\(signal 24, SIGXCPU\) twice on this config\)"):
            supervisor.mark_dead(running, "signal 24, SIGXCPU")
    assert len(supervisor.killed_configs) == FAILURE_STREAK


# ------------------------------------------------------------------------------------------ memory limits
def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_limits_of_the_cgroup_and_its_parents_bound_the_free_memory(tmp_path):
    root = tmp_path / "cg"
    _write(tmp_path / "self_cgroup", "0::/job/step\n")
    _write(root / "cgroup.controllers", "cpu memory\n")
    _write(root / "job" / "memory.max", f"{8 * 2**30}\n")
    _write(root / "job" / "memory.current", f"{3 * 2**30}\n")
    _write(root / "job" / "memory.stat", f"anon 1\ninactive_file {2**30}\n")  # reclaimable page cache
    _write(root / "job" / "step" / "memory.max", "max\n")
    _write(root / "job" / "step" / "memory.current", f"{2**30}\n")
    assert cgroup_memory_left(root, tmp_path / "self_cgroup") == 8 * 2**30 - 2 * 2**30
    _write(root / "job" / "step" / "memory.max", f"{2 * 2**30}\n")  # the tighter limit wins
    assert cgroup_memory_left(root, tmp_path / "self_cgroup") == 2**30


def test_cgroup_v1_limits_and_no_limit(tmp_path):
    root = tmp_path / "cg"
    _write(tmp_path / "self_cgroup", "4:memory:/job\n3:cpu:/job\n")
    _write(root / "memory" / "job" / "memory.limit_in_bytes", f"{4 * 2**30}\n")
    _write(root / "memory" / "job" / "memory.usage_in_bytes", f"{2**30}\n")
    _write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")  # v1's "no limit"
    _write(root / "memory" / "memory.usage_in_bytes", f"{2**30}\n")
    assert cgroup_memory_left(root, tmp_path / "self_cgroup") == 3 * 2**30
    _write(root / "memory" / "job" / "memory.limit_in_bytes", "9223372036854771712\n")
    assert cgroup_memory_left(root, tmp_path / "self_cgroup") is None


def _limited(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))


def test_a_space_too_large_for_the_processs_own_memory_limit_is_refused_before_anything_is_written(tmp_path):
    """Under `ulimit -v` the check used to compare with the machine's free memory (22 GiB) and let a space
    whose smallest network cannot fit under the limit start; its workers then died of MemoryError."""
    space = tmp_path / "deep.yaml"
    space.write_text("extends: anynet_xa_tiny\nparameters:\n  d: {values: [1000]}\nband: null\n")
    limit = 3 * 2**30
    assert (free_memory("cpu") or 0) > limit  # without the limit the machine's free memory would be compared
    proc = subprocess.run(_run_cmd(tmp_path / "runs", "--space", str(space), "--objective", DRY), env=_env(),
                          capture_output=True, text=True, timeout=300, preexec_fn=lambda: _limited(limit))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "deep.yaml: its smallest network needs about" in lines[0], proc.stderr
    assert "RLIMIT_AS" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_the_memory_limits_include_the_address_space_limit_in_a_limited_process():
    code = ("import resource; from anynet_search.training.memory import memory_limits, free_memory; "
            f"resource.setrlimit(resource.RLIMIT_AS, ({3 * 2**30}, resource.RLIM_INFINITY)); "
            "print(repr((memory_limits(), free_memory('cpu'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=True)
    limits, free = eval(out.stdout)  # noqa: S307 - our own repr
    (room,) = [b for b, what in limits if "RLIMIT_AS" in what]
    assert 0 < room < 3 * 2**30 and free == min(b for b, _ in limits)
    assert not any("RLIMIT_AS" in what for _, what in memory_limits())  # this test process has no such limit


def test_the_regnet_fit_of_a_very_deep_network_stays_within_a_small_address_space_limit():
    """fit_regnet used to allocate (grid x depth) arrays: 20,000 blocks need 2.2 GB per array, which died with
    ArrayMemoryError under an address-space limit; now it works in chunks."""
    code = """
import resource
import numpy as np
from anynet_search.models.regnet import fit_regnet
with open("/proc/self/status") as f:
    used = int(next(line for line in f if line.startswith("VmSize")).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (used + 512 * 2**20, resource.RLIM_INFINITY))
try:
    np.ones((11 * 41 * 31, 20_000))  # one array of the old search
    print("the old search's array fits: the limit proves nothing")
except MemoryError:
    pass
fit = fit_regnet([64] * 5000 + [128] * 5000 + [256] * 5000 + [512] * 5000)
print(fit.fit_error)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert len(lines) == 1 and 0 <= float(lines[0]) < 0.5


# ------------------------------------------------------------------------------------------ runs side by side
def test_a_run_beside_another_takes_the_cores_it_leaves():
    other = LocalRun(pid=1, study="first", workers=2, threads=cores())
    plan = plan_workers("cpu", None, None, 50, TrainConfig(), others=[other])
    assert [s.threads for s in plan.specs] == [1]  # at least one core is always left
    assert len(plan.notes) == 1 and "another anynet-search run (pid 1, study first" in plan.notes[0]
    assert f"less the {cores()} threads" in plan.notes[0]
    alone = plan_workers("cpu", 1, None, 50, TrainConfig())
    assert [s.threads for s in alone.specs] == [cores()] and not alone.notes


def test_records_of_runs_that_are_gone_are_dropped(tmp_path):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        live = LocalRun(sleeper.pid, "live", 1, 1, process_start(sleeper.pid))
        reused = LocalRun(sleeper.pid, "old", 1, 1, "0")  # same pid, another start time: a recycled pid
        (tmp_path / "a.json").write_text(json.dumps(live.__dict__))
        (tmp_path / "b.json").write_text(json.dumps(reused.__dict__))
        (tmp_path / "c.json").write_text(json.dumps(LocalRun(2**22 + 7, "dead", 1, 1).__dict__))
        (tmp_path / "d.json").write_text("{not json")
        assert other_runs(tmp_path) == [live]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "d.json"]
        with registered("mine", 2, 2, tmp_path) as path:
            assert json.loads(path.read_text())["study"] == "mine"
            assert other_runs(tmp_path) == [live]  # its own record is not another run
        assert not path.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_two_runs_of_one_study_at_once_share_the_cores(tmp_path):
    """The second of two concurrent runs says that the first holds the cores and starts its workers on what is
    left; both records are gone when they end."""
    runs_dir = tmp_path / "active"
    env = _env(ANYNET_SEARCH_RUNS_DIR=str(runs_dir), ANYNET_DRY_SLEEP="2")
    args = ("--trials", "8", "--objective", DRY, "--study", "shared")
    first = subprocess.Popen(_run_cmd(tmp_path / "runs", "--workers", "1", *args), env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (runs_dir / f"{first.pid}.json").is_file(), "the first run's record")
        second = subprocess.run(_run_cmd(tmp_path / "runs", "--workers", "2", *args), env=env,
                                capture_output=True, text=True, timeout=600)
    finally:
        first.wait(timeout=600)
    assert second.returncode == 0 and first.returncode == 0, second.stderr
    assert f"another anynet-search run (pid {first.pid}, study shared, 1 worker(s))" in second.stderr
    study = open_run(tmp_path / "runs" / "shared")[1]
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 8
    assert list(runs_dir.iterdir()) == []
