"""The `anynet-search` command line: one sub-command per job, each a thin layer over the library."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import traceback
from collections.abc import Sequence

from anynet_search.choices import MARGIN_UNITS, PRUNERS, SAMPLERS
from anynet_search.errors import AnynetSearchError, StorageFullError, is_no_space, show_warnings


class CliError(AnynetSearchError):
    """A user-facing error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print `PROG: error: MESSAGE (see PROG --help)` and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _describe(args: argparse.Namespace) -> int:
    from anynet_search.models.describe import describe_config, resolve_config

    print(describe_config(resolve_config(args.config), args.resolution))
    return 0


def _spaces(args: argparse.Namespace) -> int:
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


def _run(args: argparse.Namespace) -> int:
    from anynet_search.study.launch import cluster_options, launch_study
    from anynet_search.study.runner import RunOptions, run_study

    opts = RunOptions(space=args.space, trials=args.trials, workers=args.workers, dataset=args.dataset,
                      epochs=args.epochs, sampler=args.sampler, study=args.study, storage=args.storage,
                      devices=args.devices, seed=args.seed, out=args.out, objective=args.objective,
                      train_overrides=_train_overrides(args.train), in_flight=args.in_flight,
                      oversubscribe=args.oversubscribe, pruner=args.pruner)
    cluster = cluster_options(args)
    if cluster is None:
        outcome = run_study(opts)
    else:
        outcome = launch_study(opts, cluster, detach=args.detach, announce=lambda line: print(line, flush=True))
    snap = outcome.snapshot
    print(f"study {outcome.study_name}: {snap.completed}/{snap.total} completed, {snap.failed} failed")
    print(f"storage: {outcome.storage_url}")
    print(f"results: {outcome.run_dir}  (anynet-search status {outcome.run_dir})")
    for message in outcome.killed_configs:
        print(f"config that killed its worker twice: {message}")
    if outcome.detached or (outcome.interrupted and outcome.jobs):
        from anynet_search.study.launch import watch_command

        needs = "" if outcome.storage_url.startswith(("journal:", "sqlite")) else (
            " (with the password in PGPASSWORD or ~/.pgpass, as for the jobs)")
        print(f"jobs {' '.join(outcome.jobs)} work on; watch them with: {watch_command(outcome.run_dir)}{needs}")
        return 130 if outcome.interrupted else 0
    if outcome.interrupted:
        print("stopped: run the same command again to resume", file=sys.stderr)
        return 130
    if outcome.failing_message:
        raise CliError(outcome.failing_message)
    if args.analyze:  # read the study with the URL as given: the folder's record has no password
        target = (args.storage, outcome.study_name) if args.storage else str(outcome.run_dir)
        return _analyze_runs([target], str(outcome.run_dir / "report"), force=False)
    return 0


def _worker(args: argparse.Namespace) -> int:
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


def _status(args: argparse.Namespace) -> int:
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


def _analyze(args: argparse.Namespace) -> int:
    runs = [(run, name) for run in args.runs for name in args.study] if args.study else args.runs
    return _analyze_runs(runs, args.out, args.force, args.bins, (args.margin, args.margin_unit))


def _derive(args: argparse.Namespace) -> int:
    from anynet_search.analysis import derive_constraints
    from anynet_search.analysis.samplers import adaptive_note
    from anynet_search.analysis.studies import training_warnings
    from anynet_search.paths import check_out_file, derived_space_name
    from anynet_search.reporting.report import verdict_text
    from anynet_search.reporting.results import load_run
    from anynet_search.spaces.derive import derive_space, exact_shrink

    if args.out is not None:
        check_out_file(args.out)
    run = load_run(args.run, args.study)
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
    if run.space is None:
        print(f"no derived space: {run.space_note}", file=sys.stderr)
        return 0
    derived = derive_space(run.space, table, label=run.label)
    out = args.out or str(check_out_file(derived_space_name(run.label)))
    added = ", ".join(derived.added) or "none"
    derived.write(out, [f"derived by anynet-search derive from {run.label}; added: {added}"])
    print(f"derived space ({derived.log10_size_before:.2f} -> {derived.log10_size_after:.2f} log10 size): {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from anynet_search.paths import check_out_dir
    from anynet_search.reporting.export import export_run

    check_out_dir(args.out)
    notes: list[str] = []
    for path in export_run(args.run, args.top, args.format, args.out, study=args.study, notes=notes):
        print(path)
    for note in notes:
        print(note)
    return 0


STUDY_HELP = "study name: needed when RUN is a storage URL holding several studies"


def _margin_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--margin", type=float, default=0.5,  # checked by the analysis (one home for the rule)
                   help="non-inferiority margin: the worsening of the mean error a kept constraint must rule out "
                        "(default 0.5)")
    p.add_argument("--margin-unit", choices=MARGIN_UNITS, default="points",
                   help="points: error percentage points; sd: a fraction of the study's error standard deviation")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = _Parser(prog="anynet-search", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of any error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("describe", help="per-stage table and flops/params/acts of a published model or config file")
    p.add_argument("config", help="a published name (RegNetX-400MF ...) or a YAML/JSON AnyNetConfig file")
    p.add_argument("--resolution", type=_positive_int, default=224, help="input resolution in pixels (default 224)")
    p.set_defaults(func=_describe)

    p = sub.add_parser("spaces", help="list the bundled design spaces, or show one")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="space name or file (with show)")
    p.set_defaults(func=_spaces)

    p = sub.add_parser("run", help="create or resume a study and train its samples with parallel workers")
    p.add_argument("--space", default="anynet_xa_tiny", help="bundled space name or space file (default anynet_xa_tiny)")
    p.add_argument("--trials", type=_positive_int, default=64, help="completed trials to reach (default 64)")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="worker processes on this machine (default: one per GPU, else 2; at most the cores, or 8 per "
                        "GPU, and the trials left)")
    p.add_argument("--in-flight", type=_positive_int, default=None, metavar="K",
                   help="trials each worker trains at once on its device, each on its own CUDA stream (default: 8 on "
                        "a GPU, 1 on the CPU; at most 64)")
    p.add_argument("--oversubscribe", action="store_true",
                   help="start every worker asked for, even beyond the machine's cores or 8 per GPU")
    p.add_argument("--dataset", default="digits", help="digits | synthetic[:N] | cifar10:PATH | cifar100:PATH | imagefolder:PATH")
    p.add_argument("--epochs", type=_positive_int, default=None, help="training epochs per model (default: the trainer's)")
    p.add_argument("--sampler", choices=SAMPLERS, default="random", help="random/qmc for EDFs; tpe, cmaes, nsga2, gp to optimize")
    p.add_argument("--pruner", choices=PRUNERS, default=None,
                   help="Optuna pruner for adaptive samplers (default median): stops trials whose validation error "
                        "trails the others' at the same epoch; refused for random/qmc, whose EDFs it would bias")
    p.add_argument("--study", default=None,
                   help="study name (default: SPACE-DATASET-SAMPLER-eEPOCHS-sSEED)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: journal file in the run folder)")
    p.add_argument("--devices", default=None, help="cpu | cuda | cuda:0,cuda:1 (default: all GPUs, else cpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs", help="folder of run folders (default runs)")
    p.add_argument("--train", action="append", default=[], metavar="KEY=VALUE", help="trainer setting, e.g. lr=0.1 (repeatable)")
    p.add_argument("--objective", default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-analyze", dest="analyze", action="store_false",
                   help="skip the EDF report that is otherwise written into RUN/report when the study is done")
    from anynet_search.study.launch import add_arguments as add_cluster_arguments

    add_cluster_arguments(p)
    p.set_defaults(func=_run)

    p = sub.add_parser("worker", help="join an existing study (e.g. from another machine) and train until it is done")
    p.add_argument("--study", required=True)
    p.add_argument("--storage", required=True, help="the study's storage URL (postgresql://... to span machines)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--in-flight", type=_positive_int, default=None, metavar="K",
                   help="trials trained at once on the device (default: 8 on a GPU, 1 on the CPU; at most 64)")
    p.add_argument("--objective", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_worker)

    p = sub.add_parser("status", help="trials by state and the best ones")
    p.add_argument("run", nargs="?", help="run folder or storage URL")
    p.add_argument("--study", default=None, help=STUDY_HELP)
    p.add_argument("--storage", default=None, help="storage URL (the same as giving it as RUN)")
    p.add_argument("--top", type=_positive_int, default=5)
    p.set_defaults(func=_status)

    p = sub.add_parser("analyze", help="EDF report (report.html, PNGs, CSVs, derived space) of one or more runs")
    p.add_argument("runs", nargs="+", help="run folders or storage URLs")
    p.add_argument("--study", action="append", default=[], metavar="NAME",
                   help="study to read from each RUN (repeatable: several studies of one storage URL)")
    p.add_argument("--out", default="report", help="output folder (default report)")
    p.add_argument("--bins", type=_positive_int, default=None,
                   help="complexity-normalize the comparisons and constraint verdicts over N flops bins (default: "
                        "study comparisons are normalized when the studies' flops distributions differ)")
    p.add_argument("--force", action="store_true",
                   help="analyze anyway, under a warning in the report: studies trained differently (data set, "
                        "epochs, trainer settings), and EDF verdicts of adaptive-sampler studies (biased)")
    _margin_arguments(p)
    p.set_defaults(func=_analyze)

    p = sub.add_parser("derive", help="judge candidate constraints on a randomly sampled study; write the derived space")
    p.add_argument("run", help="run folder or storage URL")
    p.add_argument("--study", default=None, help=STUDY_HELP)
    p.add_argument("--out", default=None, help="derived space file (default derived_space_STUDY.yaml, the name "
                   "analyze gives it too)")
    p.add_argument("--force", action="store_true", help="accept adaptive-sampler studies (biased EDFs)")
    _margin_arguments(p)
    p.set_defaults(func=_derive)

    p = sub.add_parser("export", help="write the best configs (ours, pycls, RegNet parameters)")
    p.add_argument("run", help="run folder or storage URL")
    p.add_argument("--study", default=None, help=STUDY_HELP)
    p.add_argument("--top", type=_positive_int, default=5,
                   help="export the K models of lowest validation error (default 5)")
    p.add_argument("--format", choices=["yaml", "json", "pycls", "all"], default="yaml",
                   help="yaml/json: anynet-search config files (load_config reads them); pycls: pycls's ANYNET "
                        "config; all: every format. RegNets also get a .regnet file with parameters for timm, "
                        "torchvision, pycls and anynet_search.regnet (default yaml)")
    p.add_argument("--out", default="exported", help="folder for the files (created; default exported)")
    p.set_defaults(func=_export)
    for command in sub.choices.values():  # `--debug` also works after the sub-command
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code.

    Package errors (`AnynetSearchError`) print one line and exit 2; anything else is a bug and shows its
    traceback; `--debug` shows the traceback of every error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = show_warnings(f"anynet-search {args.command}")
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into head & co.
        return 0
    except KeyboardInterrupt:
        print(f"anynet-search {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        error = exc if isinstance(exc, AnynetSearchError) else None
        if error is None and is_no_space(exc):  # a full disk while writing a report, export or space file
            error = StorageFullError(getattr(exc, "filename", None) or getattr(args, "out", None) or "a file")
        if error is None:
            print(f"anynet-search {args.command}: internal error (a bug, please report it with this traceback):",
                  file=sys.stderr)
            raise
        if args.debug:
            traceback.print_exc()
        print(f"anynet-search {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    finally:
        logging.getLogger("anynet_search").removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
