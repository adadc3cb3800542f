"""Create or resume a study and run W worker processes on it with a live progress display."""

from __future__ import annotations

import dataclasses
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage

from anynet_search.errors import InputError
from anynet_search.paths import check_out_dir, check_out_file, check_study_name
from anynet_search.spaces import load_space
from anynet_search.study.capacity import (
    MAX_IN_FLIGHT,
    default_workers,
    plan_workers,
    resolve_devices,
)
from anynet_search.study.optuna_adapter import enqueue_many, trial_index
from anynet_search.study.plan import (
    EDF_SAMPLERS,
    SAMPLERS,
    SETTINGS_ATTR,
    StudySettings,
    check_pruner,
    default_pruner,
    make_sampler,
    planned_tickets,
)
from anynet_search.study.progress import ProgressView, Snapshot
from anynet_search.study.run_folder import write_record
from anynet_search.study.storage import (
    default_storage_url,
    is_journal,
    journal_path,
    load_study,
    open_storage,
    redact,
)
from anynet_search.study.supervise import EXIT_FAILING, WorkerPool
from anynet_search.training.data import load_dataset
from anynet_search.training.interface import TrainConfig
from anynet_search.training.memory import check_space_fits

# Each trial is a ticket queued in the storage up front, and every open replays the whole journal: at 10,000
# trials the journal was 33.4 MiB, took 47-55 s to write and 3.4 s to load (benchmarks/RESULTS.md, section 5),
# so 100,000 is ~10x that. The paper trains 500 models per design space.
MAX_TRIALS = 100_000
METRIC_NAME = "validation error (%)"  # what every trial's value is


@dataclass(frozen=True)
class RunOptions:
    """Everything `anynet-search run` takes."""

    space: str = "anynet_xa_tiny"
    trials: int = 64
    workers: int | None = None  # None: one per GPU, else DEFAULT_CPU_WORKERS
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
    in_flight: int | None = None  # trials each worker trains at once (None: GPU_IN_FLIGHT on a GPU, 1 on the CPU)
    oversubscribe: bool = False  # keep more workers than the machine has cores (or GPU slots)
    pruner: str | None = None  # None: the sampler's default (none for random / QMC, median for adaptive)


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


def default_study_name(space_name: str, dataset: str, sampler: str, seed: int, epochs: int) -> str:
    """A readable default study name with the training budget, e.g. anynet_xa_tiny-digits-random-e8-s0."""
    ds = dataset.split(":")[0]
    return f"{space_name}-{ds}-{sampler}-e{epochs}-s{seed}"


def _positive(option: str, value: object, limit: int | None = None, what: str | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{option} must be a positive integer, got {value!r}")
    if limit is not None and value > limit:
        if what is not None:
            raise InputError(f"{option} {value:,} is more than the limit of {limit:,} ({what})")
        raise InputError(f"{option} {value:,} is more than the limit of {limit:,} (each trial is a ticket queued in "
                         "the storage); split the sweep into several studies")


def check_options(opts: RunOptions) -> list[str]:
    """Every option that can be checked without loading anything (nothing is written); returns the devices."""
    _positive("--trials", opts.trials, MAX_TRIALS)
    if opts.workers is not None:
        _positive("--workers", opts.workers)
    if opts.in_flight is not None:
        _positive("--in-flight", opts.in_flight, MAX_IN_FLIGHT, what="trials one process keeps on its device")
    if opts.sampler not in SAMPLERS:
        raise InputError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {opts.sampler!r}")
    if opts.epochs is not None:
        _positive("--epochs", opts.epochs)
    check_pruner(opts.sampler, opts.pruner)
    if opts.study is not None:
        check_study_name(opts.study)
    check_out_dir(opts.out)
    return resolve_devices(opts.devices, opts.workers or default_workers(opts.devices))


def _train_config(opts: RunOptions) -> TrainConfig:
    fields = dict(opts.train_overrides)
    if opts.epochs is not None:
        fields["epochs"] = opts.epochs
    try:
        return TrainConfig(**fields)
    except (TypeError, ValueError) as exc:  # the dataclass's own checks: every message names the field
        raise InputError(f"--train: {exc}") from None


def prepare_study(opts: RunOptions) -> tuple[optuna.Study, StudySettings, str, Path]:
    """Create the study (tickets enqueued) or check that the existing one matches and extend it.

    Every option, the space, the data set, the study name and the trainer settings are checked before
    anything is written, so a refused run leaves the disk as it was.
    """
    devices = check_options(opts)
    train_cfg = _train_config(opts)
    space = load_space(opts.space)
    data = load_dataset(opts.dataset, space.resolution, seed=opts.seed)
    space = space.with_task(data.num_classes, data.in_channels)  # loaded up front: a bad path fails here
    name = opts.study or check_study_name(default_study_name(space.name, opts.dataset, opts.sampler, opts.seed,
                                                             train_cfg.epochs),
                                          option="study name (from the space name)")
    for device in sorted(set(devices)):
        check_space_fits(space, train_cfg, device)
    run_dir = Path(opts.out) / name
    url = opts.storage or default_storage_url(run_dir)
    settings = StudySettings(space=space.data, space_source=space.source, space_hash=space.hash,
                             sampler=opts.sampler, seed=opts.seed, n_trials=opts.trials, dataset=opts.dataset,
                             train=train_cfg.to_dict(), pruner=opts.pruner or default_pruner(opts.sampler))
    sampler, pruner = make_sampler(opts.sampler, opts.seed), settings.make_pruner()
    storage = study = None  # an existing storage and study are opened and checked before anything is written
    if not is_journal(url) or check_out_file(journal_path(url), option="--storage" if opts.storage else
                                             "run folder").is_file():
        storage = open_storage(url)
        study = _existing_study(storage, name, settings, url, sampler, pruner)
    run_dir.mkdir(parents=True, exist_ok=True)
    if is_journal(url):
        journal_path(url).parent.mkdir(parents=True, exist_ok=True)
    storage = storage or open_storage(url)
    if study is None:
        study = optuna.create_study(study_name=name, storage=storage, direction="minimize", sampler=sampler,
                                    pruner=pruner)
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2; nothing for a user to act on
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([METRIC_NAME])  # optuna-dashboard and Optuna's plots label the objective
    write_record(run_dir, url, name)  # the run folder finds a study kept outside it (SQL, a journal elsewhere)
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None:  # new (or created by a run that stopped before storing its settings)
        study.set_user_attr(SETTINGS_ATTR, settings.to_dict())
        enqueue_many(study, planned_tickets(settings, space))
        return study, settings, url, run_dir
    old = StudySettings.from_dict(stored)
    if settings.n_trials > old.n_trials:
        study.set_user_attr(SETTINGS_ATTR, settings.to_dict())
        enqueue_many(study, planned_tickets(settings, space, first_slot=old.n_trials))
    else:
        settings = old
    return study, settings, url, run_dir


def _existing_study(storage: BaseStorage, name: str, settings: StudySettings, url: str,
                    sampler: optuna.samplers.BaseSampler, pruner: optuna.pruners.BasePruner) -> optuna.Study | None:
    """The stored study of this name if it may be resumed with `settings` (None if there is none); InputError if not.

    Loaded, not re-created: creating an existing study would append a record to a journal every time.
    """
    if name not in optuna.get_all_study_names(storage):
        return None
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None:
        if study.get_trials(deepcopy=False):
            raise InputError(f"study {name!r} already exists in {redact(url)} and was not created by anynet-search; "
                             "pick another --study")
        return study
    old = StudySettings.from_dict(stored)
    # a study made before a trainer field existed stored fewer keys: compare with the defaults filled in
    old = dataclasses.replace(old, train=old.train_config().to_dict())
    differences = settings_differences(old, settings)
    if differences:
        raise InputError(f"study {name!r} already exists with other settings: {'; '.join(differences)}; run with "
                         "the stored settings to resume it, or pick another --study")
    return study


def settings_differences(stored: StudySettings, asked: StudySettings) -> list[str]:
    """'KEY STORED (stored) vs ASKED (asked)' for each setting that keeps a study from being resumed."""
    out = []
    for field in ("space_hash", "sampler", "pruner_name", "seed", "dataset"):
        a, b = getattr(stored, field), getattr(asked, field)
        if a != b:
            what = {"space_hash": "space (its definition's hash)", "pruner_name": "--pruner"}.get(field, field)
            out.append(f"{what} {a} (stored) vs {b} (asked)")
    for key in sorted(set(stored.train) | set(asked.train)):
        a, b = stored.train.get(key), asked.train.get(key)
        if a != b:
            out.append(f"--train {key}={a} (stored) vs {b} (asked)" if key != "epochs"
                       else f"--epochs {a} (stored) vs {b} (asked)")
    return out


def check_joinable(study: str, storage_url: str) -> StudySettings:
    """The study's settings; InputError unless the storage holds `study` and anynet-search made it (what `worker`
    checks first)."""
    st = load_study(study, open_storage(storage_url))
    try:
        return StudySettings.from_study(st)
    except (TypeError, ValueError) as exc:
        raise InputError(str(exc)) from None


def run_study(opts: RunOptions, progress: ProgressView | None = None) -> RunOutcome:
    """Run a study to N completed trials with W local worker processes (resumes an existing one)."""
    study, settings, url, run_dir = prepare_study(opts)
    index = trial_index(study)
    left = settings.n_trials - index.counts(settings.sampler not in EDF_SAMPLERS).trained
    plan = plan_workers(opts.devices, opts.workers, opts.in_flight, left, settings.train_config(), opts.oversubscribe)
    view = progress or ProgressView()
    for note in plan.notes:
        view.note(note)
    # Ctrl-C must work even when started from a shell that ignores SIGINT for background jobs; SIGTERM too
    signal.signal(signal.SIGINT, signal.default_int_handler)
    previous_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    # a worker killed by a signal (a config that crashes it, the OOM killer) is recorded and replaced
    pool = WorkerPool(study, url, plan.specs, opts.objective)
    pool.start()
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
        if pool.error is not None:
            raise pool.error  # e.g. a full disk: the journal stays readable, and the same command resumes
        failing = ("the study stopped because its trials keep failing (see the messages above)"
                   if EXIT_FAILING in codes else f"all workers exited early (exit codes {sorted(codes)})")
    return RunOutcome(study.study_name, redact(url), run_dir, snap, interrupted, failing,
                      tuple(pool.killed_configs))
