"""Create or resume a study and run W worker processes on it with a live progress display."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from anynet_search.data import load_dataset
from anynet_search.spaces import load_space
from anynet_search.study.optuna_adapter import trial_index
from anynet_search.study.plan import (
    SETTINGS_ATTR,
    StudySettings,
    enqueue_all,
    make_pruner,
    make_sampler,
)
from anynet_search.study.progress import ProgressView, Snapshot
from anynet_search.study.storage import default_storage_url, is_journal, journal_path, open_storage, redact
from anynet_search.study.supervise import EXIT_FAILING, WorkerPool, WorkerSpec
from anynet_search.train import TrainConfig


@dataclass(frozen=True)
class RunOptions:
    """Everything `anynet-search run` takes."""

    space: str = "anynet_xa_tiny"
    trials: int = 64
    workers: int = 2
    dataset: str = "digits"
    epochs: int | None = None
    sampler: str = "random"
    study: str | None = None
    storage: str | None = None
    devices: str | None = None
    seed: int = 0
    out: str = "runs"
    objective: str | None = None  # 'module:function' instead of training (dry runs, tests)
    train_overrides: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class RunOutcome:
    """Where a finished (or stopped) study lives and how it ended."""

    study_name: str
    storage_url: str
    run_dir: Path
    snapshot: Snapshot
    interrupted: bool = False
    failing_message: str | None = None
    killed_configs: tuple[str, ...] = ()  # configs recorded as failed because they killed their worker twice
    jobs: tuple[str, ...] = ()  # cluster job ids, when the workers run as submitted jobs
    detached: bool = False  # jobs submitted and left running


def resolve_devices(spec: str | None, workers: int) -> list[str]:
    """Device per worker: 'cpu', 'cuda' (all GPUs), or a comma list such as 'cuda:0,cuda:1'."""
    import torch

    if spec is None:
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda":
        n = torch.cuda.device_count()
        if n == 0:
            raise ValueError("--devices cuda: no CUDA device is visible")
        devices = [f"cuda:{i}" for i in range(n)]
    else:
        devices = [d.strip() for d in spec.split(",") if d.strip()]
    for d in devices:
        if d != "cpu" and not d.startswith("cuda"):
            raise ValueError(f"--devices: unknown device {d!r} (use cpu, cuda or cuda:N)")
        if d.startswith("cuda:") and int(d.split(":")[1]) >= torch.cuda.device_count():
            raise ValueError(f"--devices: {d} is not visible (this machine has {torch.cuda.device_count()} GPUs)")
    return [devices[i % len(devices)] for i in range(workers)]


def threads_per_worker(devices: list[str]) -> list[int]:
    """CPU workers split the cores between them instead of oversubscribing; GPU workers take one each."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n_cpu = sum(d == "cpu" for d in devices)
    return [max(1, cores // n_cpu) if d == "cpu" else 1 for d in devices]


def default_study_name(space_name: str, dataset: str, sampler: str, seed: int) -> str:
    """A readable default study name, e.g. anynet_xa_tiny-digits-random-s0."""
    ds = dataset.split(":")[0]
    return f"{space_name}-{ds}-{sampler}-s{seed}"


def prepare_study(opts: RunOptions) -> tuple[optuna.Study, StudySettings, str, Path]:
    """Create the study (tickets enqueued) or check that the existing one matches and extend it."""
    space = load_space(opts.space)
    data = load_dataset(opts.dataset, space.resolution, seed=opts.seed)
    space = space.with_task(data.num_classes, data.in_channels)  # loaded up front: a bad path fails here
    name = opts.study or default_study_name(space.name, opts.dataset, opts.sampler, opts.seed)
    run_dir = Path(opts.out) / name
    if opts.storage is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        url = default_storage_url(run_dir)
    else:
        url = opts.storage
        if is_journal(url):
            journal_path(url).parent.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
    if opts.trials <= 0:
        raise ValueError(f"--trials must be positive, got {opts.trials}")
    train_fields = dict(opts.train_overrides)
    if opts.epochs is not None:
        if opts.epochs <= 0:
            raise ValueError(f"--epochs must be positive, got {opts.epochs}")
        train_fields["epochs"] = opts.epochs
    train_cfg = TrainConfig(**train_fields)
    settings = StudySettings(space=space.data, space_source=space.source, space_hash=space.hash,
                             sampler=opts.sampler, seed=opts.seed, n_trials=opts.trials, dataset=opts.dataset,
                             train=train_cfg.to_dict())
    storage = open_storage(url)
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction="minimize",
                                sampler=make_sampler(opts.sampler, opts.seed), pruner=make_pruner(opts.sampler))
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None:
        study.set_user_attr(SETTINGS_ATTR, settings.to_dict())
        enqueue_all(study, settings, space)
    else:
        old = StudySettings(**stored)
        # a study made before a trainer field existed stored fewer keys: compare with the defaults filled in
        old = dataclasses.replace(old, train=old.train_config().to_dict())
        for field in ("space_hash", "sampler", "seed", "dataset", "train"):
            if getattr(old, field) != getattr(settings, field):
                raise ValueError(f"study {name!r} already exists with a different {field}; "
                                 "run with the same options to resume, or pick another --study")
        if settings.n_trials > old.n_trials:
            study.set_user_attr(SETTINGS_ATTR, settings.to_dict())
            enqueue_all(study, settings, space, first_slot=old.n_trials)
        else:
            settings = old
    return study, settings, url, run_dir


def run_study(opts: RunOptions, progress: ProgressView | None = None) -> RunOutcome:
    """Run a study to N completed trials with W local worker processes (resumes an existing one)."""
    study, settings, url, run_dir = prepare_study(opts)
    if opts.workers <= 0:
        raise ValueError(f"--workers must be positive, got {opts.workers}")
    devices = resolve_devices(opts.devices, opts.workers)
    threads = threads_per_worker(devices)
    view = progress or ProgressView()
    # Ctrl-C must work even when started from a shell that ignores SIGINT for background jobs; SIGTERM too
    signal.signal(signal.SIGINT, signal.default_int_handler)
    previous_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    # a worker killed by a signal (a config that crashes it, the OOM killer) is recorded and replaced
    pool = WorkerPool(study, url, [WorkerSpec(devices[i], threads[i], f"w{i}") for i in range(opts.workers)],
                      opts.objective)
    pool.start()
    index = trial_index(study)
    interrupted = False
    try:
        while True:
            for message in pool.poll():
                view.note(message)
            if not pool.alive():
                break
            view.update(Snapshot.of(study, settings.n_trials, index))
            time.sleep(0.5)
    except KeyboardInterrupt:
        interrupted = True
        pool.stop()
    pool.join()
    signal.signal(signal.SIGTERM, previous_term)
    snap = Snapshot.of(study, settings.n_trials, index)
    view.update(snap, force=True)
    view.close()
    failing = None
    if not interrupted and snap.completed < settings.n_trials:
        codes = set(pool.exit_codes)
        failing = ("the study stopped because its trials keep failing (see the messages above)"
                   if EXIT_FAILING in codes else f"all workers exited early (exit codes {sorted(codes)})")
    return RunOutcome(study.study_name, redact(url), run_dir, snap, interrupted, failing,
                      tuple(pool.killed_configs))
