"""Worker jobs through submitit: SLURM, or submitit's local executor to try a cluster recipe on one machine.

`anynet-search run ... --slurm PARTITION --nodes N --gpus-per-node G --workers-per-gpu K` creates (or
resumes) the study as usual and then, instead of local workers, submits N one-node jobs (one SLURM job
array) of G x K tasks each. Every task is one supervised worker (`supervise.WorkerPool`) pinned to GPU
`local_rank // K` of its node, working on the study's shared storage until the study has its N trials.
Jobs are independent: one that is killed or preempted loses nothing (its running trials are re-enqueued by
the others), and the study finishes on the jobs that remain. Each submission is recorded in the study
(user attribute `anynet_search:jobs:<first job id>`), so `anynet-search status` lists the jobs from
any machine. Needs the optional `cluster` extra (`pip install "anynet-search[cluster]"`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anynet_search.errors import InputError

if TYPE_CHECKING:  # the trainer (torch) is imported where jobs are launched, not where `--help` is built
    import optuna

    from anynet_search.study.progress import ProgressView
    from anynet_search.study.runner import RunOptions, RunOutcome

FOLLOW_SECONDS = 2.0
JOBS_ATTR = "anynet_search:jobs:"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)  # SIGUSR2: SLURM's time-limit warning via submitit


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how the worker jobs run."""

    partition: str | None  # None: submitit's local executor (processes on this machine)
    nodes: int = 1
    gpus_per_node: int = 0
    workers_per_gpu: int = 1  # with no GPUs: workers per node
    cpus_per_worker: int = 4
    time_min: int = 24 * 60
    mem_gb: float | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    setup: tuple[str, ...] = field(default_factory=tuple)
    folder: str | None = None  # submitit's scripts and logs; default RUN_DIR/jobs
    in_flight: int | None = None  # trials each worker keeps in flight (None: 8 on a GPU, 1 on the CPU)

    def __post_init__(self) -> None:
        for name in ("nodes", "workers_per_gpu", "cpus_per_worker", "time_min"):
            if getattr(self, name) <= 0:
                raise InputError(f"--{name.replace('_', '-').replace('-min', '')} must be positive, "
                                 f"got {getattr(self, name)}")
        if self.gpus_per_node < 0:
            raise InputError(f"--gpus-per-node must be 0 or more, got {self.gpus_per_node}")

    @property
    def cluster(self) -> str:
        """'slurm' or 'local'."""
        return "local" if self.partition is None else "slurm"

    @property
    def tasks_per_node(self) -> int:
        """Worker processes per job (one job per node)."""
        return max(self.gpus_per_node, 1) * self.workers_per_gpu


def slurm_parameters(opts: ClusterOptions, job_name: str) -> dict[str, Any]:
    """submitit SlurmExecutor parameters (sbatch options) of one worker job."""
    params: dict[str, Any] = {"job_name": job_name, "partition": opts.partition, "nodes": 1,
                              "ntasks_per_node": opts.tasks_per_node, "cpus_per_task": opts.cpus_per_worker,
                              "time": opts.time_min, "array_parallelism": opts.nodes}
    if opts.gpus_per_node:
        params["gpus_per_node"] = opts.gpus_per_node
    if opts.mem_gb is not None:
        params["mem"] = f"{int(opts.mem_gb * 1024)}MB"
    for name in ("account", "qos", "constraint"):
        if getattr(opts, name):
            params[name] = getattr(opts, name)
    if opts.setup:
        params["setup"] = list(opts.setup)
    return params


def local_parameters(opts: ClusterOptions) -> dict[str, Any]:
    """submitit LocalExecutor parameters of one worker job."""
    return {"tasks_per_node": opts.tasks_per_node, "gpus_per_node": opts.gpus_per_node,
            "timeout_min": opts.time_min}


def make_executor(opts: ClusterOptions, folder: Path, job_name: str) -> Any:
    """The submitit executor for these options; ValueError when submitit or SLURM is missing."""
    check_available(opts)
    import submitit

    if opts.partition is None:
        executor = submitit.LocalExecutor(folder)
        executor.update_parameters(**local_parameters(opts))
        return executor
    executor = submitit.SlurmExecutor(folder)
    executor.update_parameters(**slurm_parameters(opts, job_name))
    return executor


def task_device(local_rank: int, gpus_per_node: int, workers_per_gpu: int) -> str:
    """The device of a job's task: K consecutive tasks share one GPU; 'cpu' without GPUs."""
    return f"cuda:{local_rank // workers_per_gpu}" if gpus_per_node else "cpu"


def job_task(study: str, url: str, gpus_per_node: int, workers_per_gpu: int, threads: int,
             objective: str | None, in_flight: int | None = None) -> dict[str, Any]:
    """What each task of a worker job runs: one supervised worker until the study is done (or the job is
    told to stop: SIGTERM, SIGINT, or SLURM's time-limit warning, which re-enqueue the running trial)."""
    import submitit

    from anynet_search.study.capacity import default_in_flight
    from anynet_search.study.settings import StudySettings
    from anynet_search.study.storage import load_study
    from anynet_search.study.supervise import WorkerPool, WorkerSpec

    env = submitit.JobEnvironment()
    device = task_device(env.local_rank, gpus_per_node, workers_per_gpu)
    worker_id = f"{env.job_id}.{env.global_rank}"
    stop = {"requested": False}

    def request_stop(_signum: int, _frame: Any) -> None:
        stop["requested"] = True

    for sig in STOP_SIGNALS:
        signal.signal(sig, request_stop)
    st = load_study(study, url)
    k = in_flight or default_in_flight(device, StudySettings.from_study(st).train_config())
    pool = WorkerPool(st, url, [WorkerSpec(device, threads, worker_id, k)], objective)
    pool.start()
    while True:
        for message in pool.poll():
            print(f"anynet-search job {env.job_id}: {message}", flush=True)
        if pool.failing is not None:
            print(f"anynet-search job {env.job_id}: the study stopped: {pool.failing}", flush=True)
            pool.stop()
            break
        if not pool.alive():
            break
        if stop["requested"]:
            pool.stop()
            break
        time.sleep(1.0)
    pool.join()
    return {"worker": worker_id, "device": device, "exit_codes": pool.exit_codes,
            "killed_configs": pool.killed_configs, "stopped": stop["requested"]}


@dataclass(frozen=True)
class Launch:
    """Jobs submitted for a study."""

    study_name: str
    cluster: str
    folder: str
    job_ids: tuple[str, ...]
    jobs: tuple[Any, ...] = ()  # submitit Job objects (only in the submitting process)


def submit(study: optuna.Study, url: str, opts: ClusterOptions, folder: Path, objective: str | None = None) -> Launch:
    """Submit one worker job per node for the study and record the submission in the study."""
    folder = folder.resolve()
    executor = make_executor(opts, folder, f"anynet-{study.study_name}")
    args = (study.study_name, url, opts.gpus_per_node, opts.workers_per_gpu, opts.cpus_per_worker, objective,
            opts.in_flight)
    with executor.batch():
        pending = [executor.submit(job_task, *args) for _ in range(opts.nodes)]
    jobs = tuple(pending)
    ids = tuple(str(j.job_id) for j in jobs)
    record = {"cluster": opts.cluster, "job_ids": list(ids), "folder": str(folder), "host": socket.gethostname(),
              "submitted": dt.datetime.now().isoformat(timespec="seconds"),
              "options": {k: v for k, v in asdict(opts).items() if k != "folder"}}
    study.set_user_attr(JOBS_ATTR + ids[0], record)
    return Launch(study.study_name, opts.cluster, str(folder), ids, jobs)


def launches(study: optuna.Study) -> list[dict[str, Any]]:
    """The job submissions recorded in a study, oldest first."""
    records = [v for k, v in study.user_attrs.items() if k.startswith(JOBS_ATTR)]
    return sorted(records, key=lambda r: r.get("submitted", ""))


def job_state(record: dict[str, Any], job_id: str) -> str:
    """The scheduler's state of a job, as far as this machine can tell."""
    if record.get("cluster") == "local":
        if record.get("host") != socket.gethostname():
            return f"unknown (local job of {record.get('host')})"
        from anynet_search.study.reaper import pid_alive

        return "RUNNING" if pid_alive(int(job_id)) else "ENDED"
    try:
        import submitit

        return str(submitit.SlurmJob(folder=record["folder"], job_id=job_id).state)
    except Exception:  # noqa: BLE001 - no sacct here, submitit missing, or the scheduler forgot the job
        return "unknown here (no SLURM accounting)"


def job_lines(study: optuna.Study, trials: list[optuna.trial.FrozenTrial]) -> list[str]:
    """Status lines about the study's submitted jobs: state, and trials completed / running per job."""
    records = launches(study)
    if not records:
        return []
    done: dict[str, int] = {}
    running: dict[str, int] = {}
    for t in trials:
        worker = str(t.user_attrs.get("worker") or t.system_attrs.get("worker") or "")
        job = worker.rsplit(".", 1)[0]
        if t.state.name == "COMPLETE" and "infeasible" not in t.user_attrs:
            done[job] = done.get(job, 0) + 1
        elif t.state.name == "RUNNING":
            running[job] = running.get(job, 0) + 1
    lines = ["  jobs:"]
    for r in records:
        o = r.get("options", {})
        where = f"partition {o.get('partition')}" if r.get("cluster") == "slurm" else f"local on {r.get('host')}"
        lines.append(f"    submitted {r.get('submitted')} ({where}; {o.get('nodes')} job(s) x "
                     f"{max(o.get('gpus_per_node') or 0, 1) * (o.get('workers_per_gpu') or 1)} workers; "
                     f"logs {r.get('folder')})")
        for job_id in r.get("job_ids", []):
            lines.append(f"    job {job_id}: {job_state(r, job_id)}, {done.get(job_id, 0)} completed, "
                         f"{running.get(job_id, 0)} running")
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The cluster options of `anynet-search run`."""
    g = parser.add_argument_group("cluster jobs (submitit; the 'cluster' extra)")
    g.add_argument("--slurm", metavar="PARTITION", default=None,
                   help="submit one worker job per node to this SLURM partition instead of starting local workers")
    g.add_argument("--local-jobs", action="store_true",
                   help="submit the same jobs through submitit's local executor (try a cluster recipe here)")
    g.add_argument("--nodes", type=int, default=1, help="jobs (one node each; default 1)")
    g.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per job (default 0: CPU workers)")
    g.add_argument("--workers-per-gpu", type=int, default=1,
                   help="workers per GPU, or per job without GPUs (default 1)")
    g.add_argument("--cpus-per-worker", type=int, default=4, help="CPU cores (torch threads) per worker (default 4)")
    g.add_argument("--time", type=int, default=24 * 60, metavar="MINUTES", help="job time limit (default 1440)")
    g.add_argument("--mem-gb", type=float, default=None, help="memory per job")
    g.add_argument("--account", default=None)
    g.add_argument("--qos", default=None)
    g.add_argument("--constraint", default=None)
    g.add_argument("--setup", action="append", default=[], metavar="SHELL_LINE",
                   help="run before each job's workers, e.g. 'module load cuda' (repeatable)")
    g.add_argument("--jobs-folder", default=None, help="submitit's job scripts and logs (default RUN/jobs)")
    g.add_argument("--detach", action="store_true", help="return once the jobs are submitted")


def cluster_options(args: argparse.Namespace) -> ClusterOptions | None:
    """ClusterOptions from parsed arguments, or None for local workers."""
    if args.slurm is None and not args.local_jobs:
        return None
    if args.slurm is not None and args.local_jobs:
        raise InputError("pass either --slurm PARTITION or --local-jobs, not both")
    if args.devices is not None:
        raise InputError("--devices is for local workers; cluster jobs use --gpus-per-node and --workers-per-gpu")
    if args.slurm is not None and args.storage and args.storage.startswith("sqlite"):
        raise InputError("SQLite cannot be shared by jobs on several nodes (file locking over a network file "
                         "system corrupts it); use a postgresql:// storage")
    opts = ClusterOptions(partition=args.slurm, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                          workers_per_gpu=args.workers_per_gpu, cpus_per_worker=args.cpus_per_worker,
                          time_min=args.time, mem_gb=args.mem_gb, account=args.account, qos=args.qos,
                          constraint=args.constraint, setup=tuple(args.setup), folder=args.jobs_folder,
                          in_flight=args.in_flight)
    check_available(opts)
    return opts


def check_available(opts: ClusterOptions) -> None:
    """ValueError, before any study is touched, when submitit (or SLURM's srun) is missing."""
    try:
        import submitit
    except ImportError:
        raise InputError("--slurm / --local-jobs need submitit: pip install 'anynet-search[cluster]'") from None
    if opts.partition is not None and submitit.SlurmExecutor.affinity() <= 0:
        raise InputError("no SLURM on this machine (srun not found); run this on the cluster's login node, or "
                         "use --local-jobs to try the same jobs here")


def jobs_done(launch: Launch) -> bool:
    """Whether every submitted job has ended (True when no job objects are held)."""
    try:
        return all(j.done() for j in launch.jobs)
    except Exception:  # noqa: BLE001 - the scheduler cannot be asked right now (sacct down): keep watching
        return False


def check_no_password(url: str | None, folder: str) -> None:
    """InputError when a storage URL for submitted jobs carries a password or another secret.

    submitit pickles each job's arguments, the storage URL among them, into the jobs folder: a password in the URL
    would be stored there in plain text. The jobs inherit the submitting shell's environment (SLURM exports it by
    default, submitit's local executor runs child processes), so the driver reads the password from there.
    """
    from anynet_search.study.storage import redact, url_secrets

    if url and url_secrets(url):
        raise InputError(f"--storage {redact(url)}: a password in the URL would be stored in plain text in the job "
                         f"files in {folder}; leave it out of the URL and give it to the jobs through the environment "
                         "(export PGPASSWORD=..., or a ~/.pgpass file, or a service file named by PGSERVICE)")


def watch_command(run_dir: Path) -> str:
    """A status command that works as printed: the run folder (its record has the URL without the password)."""
    return f"anynet-search status {run_dir}"


def launch_study(opts: RunOptions, cluster: ClusterOptions, detach: bool = False,
                 progress: ProgressView | None = None, announce: Callable[[str], None] = print) -> RunOutcome:
    """Create or resume the study, submit its worker jobs (announcing their ids) and, unless `detach`, show
    its progress until it has N completed trials or every job has ended. Ctrl-C stops watching only.

    A storage URL with a password is refused before anything is written (`check_no_password`)."""
    from anynet_search.study.optuna_adapter import trial_index
    from anynet_search.study.progress import ProgressView, Snapshot
    from anynet_search.study.runner import RunOutcome, prepare_study
    from anynet_search.study.storage import redact

    check_no_password(opts.storage, cluster.folder or "RUN/jobs")
    study, settings, url, run_dir = prepare_study(opts)
    launch = submit(study, url, cluster, Path(cluster.folder) if cluster.folder else run_dir / "jobs", opts.objective)
    announce(f"submitted {len(launch.job_ids)} {launch.cluster} job(s): {' '.join(launch.job_ids)} "
             f"(logs in {launch.folder})")
    index = trial_index(study)
    if detach:
        return RunOutcome(study.study_name, redact(url), run_dir, Snapshot.of(study, settings.n_trials, index),
                          jobs=launch.job_ids, detached=True)
    view = progress or ProgressView()
    from anynet_search.errors import stop_on_signals

    signal.signal(signal.SIGINT, signal.default_int_handler)
    previous = stop_on_signals()  # SIGTERM, SIGHUP: stop watching, as Ctrl-C does
    interrupted, stop = False, None
    try:
        while True:
            snap = Snapshot.of(study, settings.n_trials, index)
            view.update(snap)
            if snap.completed >= settings.n_trials or (not snap.running and jobs_done(launch)):
                break
            time.sleep(FOLLOW_SECONDS)
    except KeyboardInterrupt as exc:
        interrupted, stop = True, exc
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    snap = Snapshot.of(study, settings.n_trials, index)
    view.update(snap, force=True)
    view.close()
    failing = None
    if not interrupted and snap.completed < settings.n_trials:
        failing = (f"every job ended with the study at {snap.completed}/{settings.n_trials} completed; "
                   f"their logs are in {launch.folder}")
    return RunOutcome(study.study_name, redact(url), run_dir, snap, interrupted, failing, jobs=launch.job_ids,
                      stop=stop)
