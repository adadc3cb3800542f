"""Create or resume a study and run W worker processes on it with a live progress display."""

from __future__ import annotations

import dataclasses
import logging
import signal
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage

from anynet_search.choices import MAX_REPEAT, MAX_SEED
from anynet_search.errors import InputError, stop_on_signals
from anynet_search.paths import check_out_dir, check_out_file, check_study_name, make_dir
from anynet_search.spaces import DesignSpace, load_space
from anynet_search.study.capacity import (
    MAX_IN_FLIGHT,
    default_workers,
    plan_workers,
    resolve_devices,
)
from anynet_search.study.configs_from import ConfigSource, describe_source, read_source, same_source
from anynet_search.study.local_runs import other_runs, registered
from anynet_search.study.optuna_adapter import enqueue_many, trial_index
from anynet_search.study.progress import ProgressView, Snapshot
from anynet_search.study.run_folder import resolve_study, write_record
from anynet_search.study.settings import (
    EDF_SAMPLERS,
    SAMPLERS,
    SETTINGS_ATTR,
    StudySettings,
    check_pruner,
    default_pruner,
    make_sampler,
    planned_tickets,
    stored_settings,
)
from anynet_search.study.storage import (
    default_storage_url,
    is_journal,
    journal_path,
    load_study,
    open_storage,
    quiet_optuna,
    redact,
)
from anynet_search.study.supervise import EXIT_FAILING, WorkerPool
from anynet_search.training.data import DataSplits, load_dataset
from anynet_search.training.inputs import resolve_augment
from anynet_search.training.interface import TrainConfig
from anynet_search.training.memory import check_space_fits

# Each trial is a ticket queued in the storage up front, and every open replays the whole journal: at 10,000
# trials the journal was 33.4 MiB, took 47-55 s to write and 3.4 s to load (benchmarks/RESULTS.md, section 5),
# so 100,000 is ~10x that. The paper trains 500 models per design space.
MAX_TRIALS = 100_000
METRIC_NAME = "validation error (%)"  # what every trial's value is


DEFAULTS = {"space": "anynet_xa_tiny", "trials": 64, "dataset": "digits", "sampler": "random", "seed": 0}


@dataclass(frozen=True)
class RunOptions:
    """Everything `anynet-search run` takes.

    `space`, `trials`, `dataset`, `sampler` and `seed` left None take `DEFAULTS`, or, with `configs_from`, the
    source study's (its space and sampler must not differ; `trials` takes its first N slots).
    """

    space: str | None = None
    trials: int | None = None
    workers: int | None = None  # None: one per GPU, else DEFAULT_CPU_WORKERS
    dataset: str | None = None
    epochs: int | None = None
    sampler: str | None = None
    study: str | None = None
    storage: str | None = None
    devices: str | None = None
    seed: int | None = None
    out: str = "runs"
    objective: str | None = None  # 'module:function' instead of training (dry runs, tests)
    train_overrides: tuple[tuple[str, Any], ...] = ()
    in_flight: int | None = None  # trials each worker trains at once (None: GPU_IN_FLIGHT on a GPU, 1 on the CPU)
    oversubscribe: bool = False  # keep more workers than the machine has cores (or GPU slots)
    configs_from: str | None = None  # a run folder or storage URL: train the configs of that random / QMC study
    configs_study: str | None = None  # the study in configs_from's storage, when it holds several
    pruner: str | None = None  # None: the sampler's default (none for random / QMC, median for adaptive)
    other_data: bool = False  # with configs_from: train on data whose digest differs from the source study's
    repeat: int = 0  # K >= 1: train the configs again under the K-th other set of training seeds (`plan.train_seed`)


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
    stop: KeyboardInterrupt | None = None  # what interrupted it: Ctrl-C, or `errors.Stopped` (SIGTERM, SIGHUP)


def default_study_name(space_name: str, dataset: str, sampler: str, seed: int, epochs: int) -> str:
    """A readable default study name with the training budget, e.g. anynet_xa_tiny-digits-random-e8-s0."""
    ds = dataset.split(":")[0]
    return f"{space_name}-{ds}-{sampler}-e{epochs}-s{seed}"


def _legacy_name(out: Path, name: str, epochs: int) -> str:
    """The default study name, or the name older versions gave the same study (without `-eEPOCHS`) when
    only that run folder exists and its study trains for `epochs`, so the same command still resumes it."""
    legacy = name.replace(f"-e{epochs}-s", "-s")
    if legacy == name or (out / name).exists() or not (out / legacy).is_dir():
        return name
    try:
        url, study_name, storage = resolve_study(out / legacy, None)
        old = stored_settings(load_study(study_name, storage or open_storage(url, repair=False)))
    except InputError:  # not a readable run folder: the new name, and nothing of the old folder is touched
        return name
    if old is None or study_name != legacy or old.train_config().epochs != epochs:
        return name
    print(f"resuming {legacy!r}, the name this study got before default names held the epochs")
    return legacy


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
    if opts.trials is not None:
        _positive("--trials", opts.trials, MAX_TRIALS)
    if opts.workers is not None:
        _positive("--workers", opts.workers)
    if opts.in_flight is not None:
        _positive("--in-flight", opts.in_flight, MAX_IN_FLIGHT, what="trials one process keeps on its device")
    if opts.seed is not None and (isinstance(opts.seed, bool) or not isinstance(opts.seed, int)
                                  or not 0 <= opts.seed <= MAX_SEED):
        raise InputError(f"--seed must be an integer in 0..{MAX_SEED}, got {opts.seed!r}")
    if isinstance(opts.repeat, bool) or not isinstance(opts.repeat, int) or not 0 <= opts.repeat <= MAX_REPEAT:
        raise InputError(f"--repeat must be an integer in 0..{MAX_REPEAT}, got {opts.repeat!r}")
    if opts.storage is not None and not opts.storage.strip():
        raise InputError("--storage: empty (leave it out for the journal in the run folder)")
    if opts.sampler is not None and opts.sampler not in SAMPLERS:
        raise InputError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {opts.sampler!r}")
    if opts.epochs is not None:
        _positive("--epochs", opts.epochs)
    check_pruner(opts.sampler or str(DEFAULTS["sampler"]), opts.pruner)  # --configs-from: random / qmc too
    if opts.study is not None:
        check_study_name(opts.study)
    if opts.other_data and opts.configs_from is None:
        raise InputError("--other-data is for --configs-from RUN (train its configs on other data); give --configs-from")
    if opts.configs_study is not None and opts.configs_from is None:
        raise InputError("--configs-study names the study of --configs-from RUN; give --configs-from too")
    check_out_dir(opts.out)
    return resolve_devices(opts.devices, opts.workers or default_workers(opts.devices))


def with_defaults(opts: RunOptions, source: ConfigSource | None = None) -> RunOptions:
    """The options with every None that has a default filled in: from `DEFAULTS`, or from the source study's
    settings for a `--configs-from` study (InputError if its sampler was asked to differ)."""
    if source is None:
        return dataclasses.replace(opts, **{k: v for k, v in DEFAULTS.items() if getattr(opts, k) is None})
    theirs = source.settings
    if opts.sampler is not None and opts.sampler != theirs.sampler:
        raise InputError(f"--sampler {opts.sampler}: --configs-from trains the configs {source.name!r} sampled with "
                         f"{theirs.sampler}; leave --sampler out")
    return dataclasses.replace(opts, sampler=theirs.sampler, trials=source.n_slots,
                               dataset=opts.dataset if opts.dataset is not None else theirs.dataset,
                               seed=opts.seed if opts.seed is not None else theirs.seed)


def _space(opts: RunOptions, source: ConfigSource | None, data: DataSplits) -> DesignSpace:
    """The study's design space for its data set: `--space`, or the source study's stored space."""
    if source is None:
        return load_space(str(opts.space)).with_task(data.num_classes, data.in_channels)
    theirs = source.settings.design_space()
    space = theirs.with_task(data.num_classes, data.in_channels)
    if opts.space is not None:
        asked = load_space(opts.space).with_task(data.num_classes, data.in_channels)
        if asked.hash != space.hash:
            raise InputError(f"--space {opts.space}: --configs-from trains the configs of {source.name!r}, sampled "
                             f"from its space {theirs.name}; leave --space out")
    return space


def _train_config(opts: RunOptions, source: ConfigSource | None = None) -> TrainConfig:
    """The trainer settings: the defaults (or the source study's), then `--train` and `--epochs`."""
    fields = dict(source.settings.train) if source is not None else {}
    asked = dict(opts.train_overrides)
    fields.update(asked)
    if asked.get("compile") is True and asked.get("cuda_graphs") is True:  # asked for both: say so
        raise InputError("--train: compile and cuda_graphs exclude each other (a compiled model is not captured); "
                         "set one of them")
    if opts.epochs is not None:
        fields["epochs"] = opts.epochs
    try:
        return TrainConfig(**fields)
    except (TypeError, ValueError) as exc:  # the dataclass's own checks: every message names the field
        raise InputError(f"--train: {exc}") from None


def _check_source_data(source: ConfigSource, opts: RunOptions, data: DataSplits) -> None:
    """InputError when a --configs-from study would train on other data than its source did (a changed or
    another data set), unless `other_data` asks for it (then a warning)."""
    theirs = source.settings
    why = theirs.other_data(dataclasses.replace(theirs, dataset=str(opts.dataset), data_digest=data.digest or None))
    if why is None:
        return
    if not opts.other_data:
        raise InputError(f"--configs-from: {source.name!r} trained on other data than asked ({why}); pass "
                         "--other-data to train its configs on this data anyway (e.g. a proxy data set)")
    logging.getLogger("anynet_search.study").warning("training the configs of %r on other data than it trained on "
                                                     "(%s), as --other-data asks", source.name, why)


def prepare_study(opts: RunOptions) -> tuple[optuna.Study, StudySettings, str, Path]:
    """Create the study (tickets enqueued) or check that the existing one matches and extend it.

    Every option, the space, the data set, the study name, the trainer settings and the configs of the tickets
    (a band that is too hard to reach fails while drawing them) are checked before anything is written, so a
    refused run leaves the disk as it was. A study with no trials at all whose settings differ (left by an
    older version that failed while drawing its tickets) is replaced.
    """
    devices = check_options(opts)
    asked_trials = opts.trials  # None on resume: the stored count
    source = read_source(opts.configs_from, opts.configs_study, opts.trials) if opts.configs_from else None
    opts = with_defaults(opts, source)
    train_cfg = _train_config(opts, source)
    resolution = source.settings.design_space().resolution if source else load_space(str(opts.space)).resolution
    data = load_dataset(str(opts.dataset), resolution, seed=int(opts.seed))  # loaded up front: a bad path fails here
    # the protocol `auto` stands for on this data is what the study stores (and a resume compares)
    train_cfg = dataclasses.replace(train_cfg, augment=resolve_augment(train_cfg.augment, data))
    if source is not None:
        _check_source_data(source, opts, data)
    space = _space(opts, source, data)
    if source is not None:
        default_name = f"{source.name}-e{train_cfg.epochs}"
    else:
        default_name = default_study_name(space.name, str(opts.dataset), str(opts.sampler), int(opts.seed),
                                          train_cfg.epochs)
    if opts.study is None and source is None:
        default_name = _legacy_name(Path(opts.out), default_name, train_cfg.epochs)
    if opts.repeat:
        default_name += f"-r{opts.repeat}"
    name = opts.study or check_study_name(default_name, option="study name (from the space name)")
    for device in sorted(set(devices)):
        check_space_fits(space, train_cfg, device)
    run_dir = Path(opts.out) / name
    url = opts.storage or default_storage_url(run_dir)
    settings = StudySettings(space=space.data, space_source=space.source, space_hash=space.hash,
                             sampler=str(opts.sampler), seed=int(opts.seed), n_trials=int(opts.trials),
                             dataset=str(opts.dataset), train=train_cfg.to_dict(),
                             configs_from=source.record if source else None,
                             pruner=opts.pruner or default_pruner(str(opts.sampler)), data_digest=data.digest or None,
                             repeat=opts.repeat)
    del data  # a store's memory map or a decoded copy: the workers read the data, this process does not
    sampler, pruner = make_sampler(settings.sampler, settings.seed), settings.make_pruner()
    storage = study = None  # an existing storage and study are opened and checked before anything is written
    replace = False
    if not is_journal(url) or check_out_file(journal_path(url), option="--storage" if opts.storage else
                                             "run folder").is_file():
        storage = open_storage(url)
        study, replace = _existing_study(storage, name, settings, url, sampler, pruner)
    old = stored_settings(study) if study is not None and not replace else None
    if old is None:  # a new study: every slot's ticket
        tickets = planned_tickets(settings, space)
    elif asked_trials is not None and settings.n_trials > old.n_trials:  # more trials asked: the new slots' tickets
        tickets = planned_tickets(settings, space, first_slot=old.n_trials)
    else:
        _check_not_fewer(study, old, asked_trials)
        tickets, settings = [], old
    make_dir(run_dir)
    if is_journal(url):
        make_dir(journal_path(url).parent, option="--storage")
    storage = storage or open_storage(url)
    if replace:
        optuna.delete_study(study_name=name, storage=storage)
        study = None
    if study is None:
        with quiet_optuna():  # no "[I ...] A new study created" line in the run's output
            study = optuna.create_study(study_name=name, storage=storage, direction="minimize", sampler=sampler,
                                        pruner=pruner)
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2; nothing for a user to act on
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([METRIC_NAME])  # optuna-dashboard and Optuna's plots label the objective
    write_record(run_dir, url, name)  # the run folder finds a study kept outside it (SQL, a journal elsewhere)
    if old is None or tickets:  # new (or made by a run that stopped before storing its settings), or extended
        study.set_user_attr(SETTINGS_ATTR, settings.to_dict())
        enqueue_many(study, tickets)
    return study, settings, url, run_dir


def _check_not_fewer(study: optuna.Study, stored: StudySettings, asked: int | None) -> None:
    """InputError when `--trials` asks a stored study for fewer trials than it holds (it would train them all)."""
    if asked is None or asked >= stored.n_trials:
        return
    trained = trial_index(study).counts(stored.sampler not in EDF_SAMPLERS).trained
    raise InputError(f"--trials {asked}: study {study.study_name!r} holds {stored.n_trials} trials ({trained} trained) "
                     "and a study does not shrink; leave --trials out to finish it, or name a new study with --study")


def _existing_study(storage: BaseStorage, name: str, settings: StudySettings, url: str,
                    sampler: optuna.samplers.BaseSampler,
                    pruner: optuna.pruners.BasePruner) -> tuple[optuna.Study | None, bool]:
    """(the stored study of this name if it may be resumed with `settings`, or None if there is none; whether
    it is to be replaced: it has no trials and other settings); InputError if it may not be used.

    Loaded, not re-created: creating an existing study would append a record to a journal every time.
    """
    if name not in optuna.get_all_study_names(storage):
        return None, False
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    empty = not study.get_trials(deepcopy=False)
    try:
        old = stored_settings(study)
    except InputError:
        if empty:  # nothing to lose, and nothing this version could resume
            return study, True
        raise
    if old is None:
        if not empty:
            raise InputError(f"study {name!r} already exists in {redact(url)} and was not created by anynet-search; "
                             "pick another --study")
        return study, False
    # a study made before a trainer field existed stored fewer keys: compare with the defaults filled in
    old = dataclasses.replace(old, train=old.train_config().to_dict())
    differences = settings_differences(old, settings)
    if differences:
        if empty:  # e.g. an older version stopped while drawing its tickets: nothing to resume
            return study, True
        raise InputError(f"study {name!r} already exists with other settings: {'; '.join(differences)}; run with "
                         "the stored settings to resume it, or pick another --study")
    return study, False


def settings_differences(stored: StudySettings, asked: StudySettings) -> list[str]:
    """'KEY STORED (stored) vs ASKED (asked)' for each setting that keeps a study from being resumed."""
    out = []
    for field in ("space_hash", "sampler", "pruner_name", "seed", "dataset", "repeat"):
        a, b = getattr(stored, field), getattr(asked, field)
        if a != b:
            what = {"space_hash": "space (its definition's hash)", "pruner_name": "--pruner",
                    "repeat": "--repeat"}.get(field, field)
            out.append(f"{what} {a} (stored) vs {b} (asked)")
    if stored.dataset == asked.dataset and stored.data_digest and asked.data_digest \
            and stored.data_digest != asked.data_digest:
        out.append(f"data digest {stored.data_digest[:12]} (stored) vs {asked.data_digest[:12]} (asked): "
                   f"{asked.dataset} changed since the study was made")
    if not same_source(stored.configs_from, asked.configs_from):
        out.append("--configs-from " + " vs ".join(
            f"{describe_source(c) if c else 'none (sampled)'} ({w})"
            for c, w in ((stored.configs_from, "stored"), (asked.configs_from, "asked"))))
    for key in sorted(set(stored.train) | set(asked.train)):
        a, b = stored.train.get(key), asked.train.get(key)
        if a != b:
            out.append(f"--train {key}={a} (stored) vs {b} (asked)" if key != "epochs"
                       else f"--epochs {a} (stored) vs {b} (asked)")
    return out


def check_joinable(study: str, storage_url: str) -> StudySettings:
    """The study's settings; InputError unless the storage holds `study` and anynet-search made it (what `worker`
    checks first)."""
    st = load_study(study, open_storage(storage_url, create=False))  # joining never creates a storage
    try:
        return StudySettings.from_study(st)
    except (TypeError, ValueError) as exc:
        raise InputError(str(exc)) from None


def run_study(opts: RunOptions, progress: ProgressView | None = None) -> RunOutcome:
    """Run a study to N completed trials with W local worker processes (resumes an existing one)."""
    study, settings, url, run_dir = prepare_study(opts)
    index = trial_index(study)
    left = settings.n_trials - index.counts(settings.sampler not in EDF_SAMPLERS).trained
    plan = plan_workers(opts.devices, opts.workers, opts.in_flight, left, settings.train_config(),
                        opts.oversubscribe, others=other_runs())
    view = progress or ProgressView()
    for note in plan.notes:
        view.note(note)
    # Ctrl-C must work even when started from a shell that ignores SIGINT for background jobs; SIGTERM and SIGHUP
    # (a closed terminal) stop it the same way: the workers put their trials back in the queue
    signal.signal(signal.SIGINT, signal.default_int_handler)
    previous = stop_on_signals()
    # a worker killed by a signal (a config that crashes it, the OOM killer) is recorded and replaced
    pool = WorkerPool(study, url, plan.specs, opts.objective)
    interrupted, stop = False, None
    with registered(study.study_name, len(plan.specs), sum(s.threads for s in plan.specs)):
        pool.start()
        try:
            while True:
                for message in pool.poll():
                    view.note(message)
                if pool.failing is not None:
                    pool.stop()
                    break
                if not pool.alive():
                    break
                view.update(Snapshot.of(study, settings.n_trials, index))
                pool.wait(0.5)
        except KeyboardInterrupt as exc:
            interrupted, stop = True, exc
            pool.stop()
    pool.join()
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    snap = Snapshot.of(study, settings.n_trials, index)
    view.update(snap, force=True)
    view.close()
    failing = None
    if not interrupted and snap.completed < settings.n_trials:
        codes = set(pool.exit_codes)
        if pool.error is not None:
            raise pool.error  # e.g. a full disk: the journal stays readable, and the same command resumes
        if pool.failing is not None:
            failing = f"the study stopped: {pool.failing}"
        elif EXIT_FAILING in codes:
            failing = "the study stopped because its trials keep failing (see the messages above)"
        else:
            failing = f"all workers exited early (exit codes {sorted(codes)})"
    return RunOutcome(study.study_name, redact(url), run_dir, snap, interrupted, failing,
                      tuple(pool.killed_configs), stop=stop)
