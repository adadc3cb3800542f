"""What each `anynet-search` sub-command does, given its parsed arguments: a thin layer over the library (the
parser is `cli`). Imports happen inside the commands, so building the parser imports no numpy, optuna or torch."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from anynet_search.errors import AnynetSearchError


class CliError(AnynetSearchError):
    """A user-facing error: printed as one line, exit code 2."""


def cmd_describe(args: argparse.Namespace) -> int:
    """`describe`: the per-stage table and complexity of a published model or config file."""
    from anynet_search.models.describe import describe_config, resolve_config_file

    found = resolve_config_file(args.config)
    resolution = args.resolution or found.resolution or 224  # an export's own resolution, unless asked
    if args.resolution is None and found.resolution is not None:
        print(f"resolution {resolution} px: the one this export's study trained at (--resolution for another)")
    print(describe_config(found.config, resolution))
    return 0


def cmd_spaces(args: argparse.Namespace) -> int:
    """`spaces`: list the bundled design spaces, or show one."""
    from anynet_search.spaces import list_spaces, load_space

    if args.action == "show":
        if not args.name:
            raise CliError("spaces show needs a space name or file")
        from anynet_search.training.interface import TrainConfig
        from anynet_search.training.memory import free_memory, human_bytes, space_memory_range

        space = load_space(args.name)
        print(space.describe())
        train = TrainConfig()
        lo, hi = space_memory_range(space, train)
        free = free_memory("cpu")
        print(f"  training memory (estimated, batch {train.batch_size}, fp32, before the band): {human_bytes(lo)}..{human_bytes(hi)}"
              + (f"; this machine has {human_bytes(free)} free" if free is not None else ""))
        return 0
    for name in list_spaces():
        space = load_space(name)
        print(f"{name:18s} log10 size {space.log10_size:6.2f}  {space.resolution:>3d} px  {space.description}")
    return 0


def _train_value(raw: str) -> object:
    """A --train value: YAML scalars (true, null, 0.1), and numbers YAML 1.1 reads as strings (1e-3)."""
    import yaml

    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    if isinstance(value, str):
        for number in (int, float):
            try:
                return number(value)
            except ValueError:
                continue
    return value


def _train_overrides(values: list[str]) -> tuple[tuple[str, object], ...]:
    import dataclasses

    from anynet_search.training.interface import TrainConfig

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    out = []
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or key not in known:
            raise CliError(f"--train {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(known))}")
        out.append((key, _train_value(raw)))
    return tuple(out)


def cmd_run(args: argparse.Namespace) -> int:
    """`run`: create or resume a study and train it (or submit its cluster jobs)."""
    from anynet_search.study.launch import cluster_options, launch_study
    from anynet_search.study.runner import RunOptions, run_study

    opts = RunOptions(space=args.space, trials=args.trials, workers=args.workers, dataset=args.dataset,
                      epochs=args.epochs, sampler=args.sampler, study=args.study, storage=args.storage,
                      devices=args.devices, seed=args.seed, out=args.out, objective=args.objective,
                      train_overrides=_train_overrides(args.train), in_flight=args.in_flight,
                      oversubscribe=args.oversubscribe, configs_from=args.configs_from,
                      configs_study=args.configs_study, pruner=args.pruner, other_data=args.other_data,
                      repeat=args.repeat)
    cluster = cluster_options(args)
    if cluster is None:
        outcome = run_study(opts)
    else:
        outcome = launch_study(opts, cluster, detach=args.detach, announce=lambda line: print(line, flush=True))
    from anynet_search.errors import exit_code, stop_words

    snap = outcome.snapshot
    print(f"study {outcome.study_name}: {snap.completed}/{snap.total} completed, {snap.counts_text()}")
    print(f"storage: {outcome.storage_url}")
    print(f"results: {outcome.run_dir}  (anynet-search status {outcome.run_dir})")
    for message in outcome.killed_configs:
        print(f"config that killed its worker twice: {message}")
    if outcome.detached or (outcome.interrupted and outcome.jobs):
        from anynet_search.study.launch import watch_command

        needs = "" if outcome.storage_url.startswith(("journal:", "sqlite")) else (
            " (with the password in PGPASSWORD or ~/.pgpass, as for the jobs)")
        print(f"jobs {' '.join(outcome.jobs)} work on; watch them with: {watch_command(outcome.run_dir)}{needs}")
        return exit_code(outcome.stop or KeyboardInterrupt()) if outcome.interrupted else 0
    if outcome.interrupted:
        stop = outcome.stop or KeyboardInterrupt()
        print(f"{stop_words(stop)}: the trials in flight went back to the queue; run the same command again to "
              "resume", file=sys.stderr)
        return exit_code(stop)
    if outcome.failing_message:
        raise CliError(outcome.failing_message)
    if args.analyze:  # read the study with the URL as given: the folder's record has no password
        target = (args.storage, outcome.study_name) if args.storage else str(outcome.run_dir)
        return _analyze_runs([target], str(outcome.run_dir / "report"), force=False)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """`worker`: join a study and train its tickets until it is done."""
    from anynet_search.study import interrupts
    from anynet_search.study.capacity import MAX_IN_FLIGHT, default_in_flight, resolve_devices
    from anynet_search.study.runner import check_joinable
    from anynet_search.study.worker import DeviceLost, StudyFailing, run_worker

    (device,) = resolve_devices(args.device, 1, option="--device")
    if args.in_flight is not None and args.in_flight > MAX_IN_FLIGHT:
        raise CliError(f"--in-flight {args.in_flight:,} is more than the limit of {MAX_IN_FLIGHT} (trials one process "
                       "keeps on its device)")
    settings = check_joinable(args.study, args.storage)
    interrupts.install()
    try:
        summary = run_worker(args.study, args.storage, device=device, threads=args.threads,
                             objective=args.objective,
                             in_flight=args.in_flight or default_in_flight(device, settings.train_config()))
    except StudyFailing as exc:
        raise CliError(str(exc)) from None
    except DeviceLost as exc:
        raise CliError(f"{exc}: start the worker again to go on") from None
    print(f"worker done: {summary.completed} completed, {summary.failed} failed, {summary.infeasible} infeasible")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """`status`: trials by state and the best ones."""
    from anynet_search.reporting.status import study_status

    if args.run is None and (args.study is None or args.storage is None):
        raise CliError("status needs a run folder, or --study NAME --storage URL")
    print(study_status(args.run or args.storage, args.study, top=args.top))
    return 0


def _analyze_runs(runs: list[str | tuple[str, str]], out: str, force: bool, bins: int | None = None,
                  margin: tuple[float, str] = (0.5, "points")) -> int:
    from anynet_search.paths import check_out_dir
    from anynet_search.reporting.analyze import analyze_runs

    check_out_dir(out)
    summary = analyze_runs(runs, out, force=force, margin=margin[0], margin_unit=margin[1],
                           **({"bins": bins} if bins else {}))
    print(summary.text())
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    """`analyze`: the EDF report of one or more studies."""
    runs = _targets(args.runs, args.study)
    return _analyze_runs(runs, args.out, args.force, args.bins, (args.margin, args.margin_unit))


def _targets(runs: list[str], studies: list[str]) -> list[str | tuple[str, str]]:
    """RUN arguments with `--study` names: each run with each name, or the runs as given."""
    return [(run, name) for run in runs for name in studies] if studies else list(runs)


def _fidelity_targets(runs: list[str], studies: list[str]) -> list[str | tuple[str, str]]:
    """The RUNs with their --study names: one URL with a --study per study, or each storage URL among the runs
    taking the next name in order (a single name goes to every URL); run folders take none."""
    from anynet_search.study.run_folder import is_storage_url

    if len(runs) == 1 and len(studies) >= 2:
        return [(runs[0], name) for name in studies]
    urls = [r for r in runs if is_storage_url(r)]
    if len(runs) < 2 or (studies and len(studies) not in (1, len(urls))) or (studies and not urls):
        raise CliError(f"fidelity compares two studies or more of the same configs: RUN RUN [RUN ...] (a storage URL "
                       f"among them with its --study NAME), or one storage URL with a --study for each; got "
                       f"{len(runs)} RUN and {len(studies)} --study")
    names = iter(studies * len(urls) if len(studies) == 1 else studies)
    return [(r, next(names)) if studies and is_storage_url(r) else r for r in runs]


def cmd_fidelity(args: argparse.Namespace) -> int:
    """`fidelity`: do the budgets rank the same configs alike, and how far apart are they, as pairs?"""
    from anynet_search.paths import check_out_dir
    from anynet_search.reporting.fidelity_set import fidelity_set

    targets = _fidelity_targets(args.runs, args.study)
    if args.out is not None:  # else beside the reference (most epochs) study, once the studies are read
        check_out_dir(args.out)
    rep = fidelity_set(targets, args.out, n_boot=args.n_boot, seed=args.seed, margin=args.margin,
                       margin_unit=args.margin_unit, other_data=args.other_data)
    print("\n".join(rep.lines()))
    print(f"  files: {', '.join(str(Path(p).resolve()) for p in rep.files)}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """`plan`: models per space a comparison needs, from a pilot study."""
    from anynet_search.reporting.plan import plan_study

    if args.run is None and args.study:
        raise CliError("--study names the pilot study in RUN; give RUN too")
    run = (args.run, args.study) if args.run is not None and args.study else args.run
    rep = plan_study(run, args.effect, spread=args.spread, alpha=args.alpha, comparisons=args.comparisons,
                     target=args.power, spaces=args.spaces, bins=args.bins, sims=args.sims, seed=args.seed)
    print("\n".join(rep.lines()))
    return 0


def cmd_derive(args: argparse.Namespace) -> int:
    """`derive`: judge the candidate constraints and write the derived space."""
    from anynet_search.analysis import derive_constraints
    from anynet_search.analysis.samplers import adaptive_note
    from anynet_search.analysis.studies import training_warnings
    from anynet_search.paths import check_out_file, derived_space_name, run_folder_of
    from anynet_search.reporting.results import load_run
    from anynet_search.reporting.verdicts import verdict_text
    from anynet_search.spaces.derive import derive_space, exact_shrink

    if args.out is not None:
        check_out_file(args.out)
    if args.retrained_study is not None and args.retrained is None:
        raise CliError("--retrained-study names the study of --retrained RUN; give --retrained too")
    run = load_run(args.run, args.study)
    retrained = _retrained(run, args) if args.retrained is not None else None
    why = adaptive_note(run.df)
    if why and not args.force:
        print(f"no constraints judged and no space derived: {why}")
        return 0
    shrink = exact_shrink(run.space) if run.space is not None else None
    table = derive_constraints(run.df, shrink=shrink, force=args.force, margin=args.margin,
                               margin_unit=args.margin_unit)
    if "warning" in table.attrs:
        print(f"warning: {table.attrs['warning']}", file=sys.stderr)
    classes = run.df["num_classes"].dropna() if "num_classes" in run.df else []
    for warning in training_warnings(run.df, run.histories, int(classes.iloc[0]) if len(classes) else None):
        print(f"warning: {warning}", file=sys.stderr)
    width = shutil.get_terminal_size((100, 24)).columns
    print(f"non-inferiority margin {table.attrs['margin_spec']}: 'not worse' needs p_not_worse <= "
          f"{table.attrs['alpha'] / 2:g}, the chance of keeping a constraint that worsens the mean error by the margin")
    print(verdict_text(table, width))
    print("every number (p-values, Holm, notes) of each constraint: anynet-search analyze writes constraints.csv")
    if retrained is not None:
        print("\n".join(retrained))
    if run.space is None:
        print(f"no derived space: {run.space_note}", file=sys.stderr)
        return 0
    derived = derive_space(run.space, table, label=run.label)
    folder = run_folder_of(args.run)  # beside the run, as run and analyze write; else the current folder
    out = Path(args.out) if args.out else check_out_file((folder or Path()) / derived_space_name(run.label))
    added = ", ".join(derived.added) or "none"
    derived.write(out, [f"derived by anynet-search derive from {run.label}; added: {added}"])
    print(f"derived space ({derived.log10_size_before:.2f} -> {derived.log10_size_after:.2f} log10 size): "
          f"{out.resolve()}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """`prepare`: decode a source once into a store; the last line printed is `sha256 DIGEST`."""
    from anynet_search.training.data.prepare import prepare_store

    result = prepare_store(args.source, args.out, args.resolution, workers=args.workers, skip_bad=args.skip_bad,
                           classes=args.classes, margin=args.margin, progress=True)
    counts = result.split_counts
    if result.reused:
        print(f"{result.path} already holds this store ({result.count:,} images: {counts.get('train', 0):,} train, "
              f"{counts.get('test', 0):,} test); nothing to do")
    else:
        print(f"prepared {result.count:,} images ({counts['train']:,} train, {counts['test']:,} test) into "
              f"{result.path} in {result.seconds:.1f} s with {result.workers} worker"
              f"{'s' if result.workers != 1 else ''}")
    if result.skipped:
        print(f"skipped {result.skipped:,} undecodable file{'s' if result.skipped != 1 else ''} (zero images, split "
              f"skipped; listed under 'skipped' in {result.path / 'manifest.json'})")
    print(f"sha256 {result.digest}")
    return 0


def _retrained(run: object, args: argparse.Namespace) -> list[str]:
    """`derive --retrained`: the lines on the retrain noise and the verdicts drawn from the retrained errors (its
    checks run before anything is judged or written)."""
    from anynet_search.reporting.noise import verdict_noise, verdict_noise_lines
    from anynet_search.reporting.results import load_run

    again = load_run(args.retrained, args.retrained_study)
    noise, moved = verdict_noise(run, again, margin=args.margin, margin_unit=args.margin_unit)  # type: ignore[arg-type]
    return verdict_noise_lines(run, again, noise, moved)  # type: ignore[arg-type]


def cmd_export(args: argparse.Namespace) -> int:
    """`export`: write the best models' configs."""
    from anynet_search.paths import check_out_dir
    from anynet_search.reporting.export import declined_line, export_run

    check_out_dir(args.out)
    declined: list[tuple[int, str]] = []
    paths = export_run(args.run, args.top, args.format, args.out, study=args.study, declined=declined)
    for path in paths:
        print(path)
    line = declined_line(declined, len({p.name.split("_", 1)[0].split(".")[0] for p in paths}))
    if line:
        print(line)  # one line, not one per model
    return 0
