"""Worker jobs through submitit: the local executor runs real jobs against PostgreSQL; SLURM scripts are checked
as sbatch would read them."""

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from anynet_search.study.launch import ClusterOptions, slurm_parameters, task_device
from anynet_search.study.storage import open_storage

DRY = "anynet_search.study.dry_run:pseudo_error"


def _children(pid):
    """Every descendant of a process (read from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, parent in parents.items() if parent == p]
        found += kids
        frontier += kids
    return found


def _postgres_url():
    url = os.environ.get("ANYNET_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must provide ANYNET_TEST_POSTGRES_URL (see .ci/postgres.sh)")
        pytest.skip("set ANYNET_TEST_POSTGRES_URL to run against PostgreSQL (.ci/postgres.sh starts one)")
    return url


def test_local_jobs_finish_the_study_on_postgres_with_one_job_killed(tmp_path):
    pytest.importorskip("submitit")
    url, n = _postgres_url(), 8
    name = f"jobs-{os.getpid()}-{time.time_ns()}"
    cmd = [sys.executable, "-m", "anynet_search", "run", "--space", "anynet_xd_tiny", "--trials", str(n),
           "--dataset", "synthetic:64", "--storage", url, "--study", name, "--out", str(tmp_path / "runs"),
           "--objective", DRY, "--no-analyze", "--local-jobs", "--nodes", "2", "--cpus-per-worker", "1"]
    proc = subprocess.Popen(cmd, env=dict(os.environ, ANYNET_DRY_SLEEP="0.6"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.match(r"submitted 2 local job\(s\): (\d+) (\d+) \(logs in (.+)\)", line)
    assert m, line + proc.stderr.read()
    jobs = [m.group(1), m.group(2)]
    study = optuna.load_study(study_name=name, storage=open_storage(url))

    def running_in(job):
        return [t for t in study.get_trials(states=(TrialState.RUNNING,))
                if str(t.system_attrs.get("worker", "")).startswith(job + ".") and "config" in t.user_attrs]

    end = time.time() + 180
    while time.time() < end and not running_in(jobs[0]):
        time.sleep(0.2)
    assert running_in(jobs[0]), "the first job never started a trial"
    victim = running_in(jobs[0])[0]
    for pid in [int(jobs[0]), *_children(int(jobs[0]))]:  # the whole job, as when its node dies
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    assert f"{n}/{n} completed" in out
    slots = Counter(t.user_attrs["slot"] for t in study.get_trials(states=(TrialState.COMPLETE,)))
    assert sorted(slots) == list(range(n)) and set(slots.values()) == {1}
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    died = [t for t in study.get_trials(states=(TrialState.FAIL,))]
    assert [t.number for t in died] == [victim.number]
    assert died[0].user_attrs["failure"].startswith("worker died (")
    retried = [t for t in study.get_trials(states=(TrialState.COMPLETE,)) if t.user_attrs.get("retry_of") == victim.number]
    assert len(retried) == 1 and retried[0].params == victim.params
    assert str(retried[0].system_attrs["worker"]).startswith(jobs[1] + ".")

    status = subprocess.run([sys.executable, "-m", "anynet_search", "status", "--study", name, "--storage", url],
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert f"job {jobs[0]}: ENDED" in status.stdout and f"job {jobs[1]}: ENDED" in status.stdout
    assert re.search(rf"job {jobs[1]}: ENDED, {n} completed", status.stdout), status.stdout


def test_slurm_jobs_are_one_node_arrays_with_k_workers_per_gpu(tmp_path):
    pytest.importorskip("submitit")
    from submitit.slurm.slurm import _make_sbatch_string

    opts = ClusterOptions(partition="gpu", nodes=4, gpus_per_node=8, workers_per_gpu=4, cpus_per_worker=3,
                          time_min=240, mem_gb=500, account="lab", setup=("module load cuda/12",))
    script = _make_sbatch_string(command="python -u -m submitit.core._submit X", folder=tmp_path, map_count=4,
                                 **slurm_parameters(opts, "anynet-xe"))
    for option in ("--partition=gpu", "--nodes=1", "--ntasks-per-node=32", "--gpus-per-node=8", "--cpus-per-task=3",
                   "--time=240", "--mem=512000MB", "--account=lab", "--array=0-3%4", "--job-name=anynet-xe"):
        assert f"#SBATCH {option}" in script, option
    assert "module load cuda/12" in script and "srun" in script
    assert [task_device(r, 8, 4) for r in (0, 3, 4, 31)] == ["cuda:0", "cuda:0", "cuda:1", "cuda:7"]
    assert task_device(2, 0, 3) == "cpu"


@pytest.mark.parametrize(
    "args,needle",
    [(["--slurm", "gpu", "--local-jobs"], "not both"),
     (["--local-jobs", "--nodes", "0"], "--nodes must be positive"),
     (["--local-jobs", "--workers-per-gpu", "0"], "--workers-per-gpu must be positive"),
     (["--local-jobs", "--devices", "cpu"], "--devices is for local workers"),
     (["--slurm", "gpu", "--storage", "sqlite:///x.db"], "SQLite cannot be shared"),
     (["--slurm", "gpu"], "no SLURM on this machine")],
)
def test_bad_cluster_options_are_one_line_errors(tmp_path, args, needle):
    proc = subprocess.run([sys.executable, "-m", "anynet_search", "run", "--space", "anynet_xd_tiny", "--trials", "2",
                           "--dataset", "synthetic:64", "--out", str(tmp_path), "--objective", DRY, *args],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("[I ")]
    assert len(lines) == 1 and needle in lines[0], proc.stderr
