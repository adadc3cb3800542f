"""The `anynet-search` command line: one sub-command per job, each a thin layer over the library."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import traceback
from collections.abc import Sequence

from anynet_search.choices import MARGIN_UNITS, MAX_SEED, PRUNERS, SAMPLERS
from anynet_search.errors import (
    AnynetSearchError,
    StorageFullError,
    is_no_space,
    os_error_line,
    show_warnings,
)


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


def _seed(text: str) -> int:
    """argparse type: a seed, an integer in 0 .. MAX_SEED."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in 0..{MAX_SEED}, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be in 0..{MAX_SEED}, got {value}")
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
                      oversubscribe=args.oversubscribe, configs_from=args.configs_from,
                      configs_study=args.configs_study, pruner=args.pruner)
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
    runs = _targets(args.runs, args.study)
    return _analyze_runs(runs, args.out, args.force, args.bins, (args.margin, args.margin_unit))


def _targets(runs: list[str], studies: list[str]) -> list[str | tuple[str, str]]:
    """RUN arguments with `--study` names: each run with each name, or the runs as given."""
    return [(run, name) for run in runs for name in studies] if studies else list(runs)


def _fidelity_targets(runs: list[str], studies: list[str]) -> list[str | tuple[str, str]]:
    """RUN_LOW RUN_HIGH with their --study names: one URL with --study LOW --study HIGH, or each storage URL among
    the runs taking the next name in order (a single name goes to every URL); run folders take none."""
    from anynet_search.study.run_folder import is_storage_url

    if len(runs) == 1 and len(studies) == 2:
        return [(runs[0], studies[0]), (runs[0], studies[1])]
    urls = [r for r in runs if is_storage_url(r)]
    if len(runs) != 2 or (studies and len(studies) not in (1, len(urls))) or (studies and not urls):
        raise CliError(f"fidelity compares two studies: RUN_LOW RUN_HIGH (a storage URL among them with its --study "
                       f"NAME), or one storage URL with --study LOW --study HIGH; got {len(runs)} RUN and "
                       f"{len(studies)} --study")
    names = iter(studies * len(urls) if len(studies) == 1 else studies)
    return [(r, next(names)) if studies and is_storage_url(r) else r for r in runs]


def _fidelity(args: argparse.Namespace) -> int:
    from anynet_search.paths import check_out_dir
    from anynet_search.reporting.fidelity import fidelity_runs

    targets = _fidelity_targets(args.runs, args.study)
    check_out_dir(args.out)
    rep = fidelity_runs(targets[0], targets[1], args.out, n_boot=args.n_boot, seed=args.seed, margin=args.margin,
                        margin_unit=args.margin_unit)
    print("\n".join(rep.lines()))
    print(f"  files: {', '.join(str(p) for p in rep.files)}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from anynet_search.reporting.plan import plan_study

    if args.run is None and args.study:
        raise CliError("--study names the pilot study in RUN; give RUN too")
    run = (args.run, args.study) if args.run is not None and args.study else args.run
    rep = plan_study(run, args.effect, spread=args.spread, alpha=args.alpha, comparisons=args.comparisons,
                     target=args.power, spaces=args.spaces, bins=args.bins, sims=args.sims, seed=args.seed)
    print("\n".join(rep.lines()))
    return 0


def _derive(args: argparse.Namespace) -> int:
    from anynet_search.analysis import derive_constraints
    from anynet_search.analysis.samplers import adaptive_note
    from anynet_search.analysis.studies import training_warnings
    from anynet_search.paths import check_out_file, derived_space_name
    from anynet_search.reporting.results import load_run
    from anynet_search.reporting.verdicts import verdict_text
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
    p.add_argument("--space", default=None, help="bundled space name or space file (default anynet_xa_tiny)")
    p.add_argument("--trials", type=_positive_int, default=None,
                   help="completed trials to reach (default 64; with --configs-from, the source's slots)")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="worker processes on this machine (default: one per GPU, else 2; at most the cores, or 8 per "
                        "GPU, and the trials left)")
    p.add_argument("--in-flight", type=_positive_int, default=None, metavar="K",
                   help="trials each worker trains at once on its device, each on its own CUDA stream (default: 8 on "
                        "a GPU, 1 on the CPU; at most 64)")
    p.add_argument("--oversubscribe", action="store_true",
                   help="start every worker asked for, even beyond the machine's cores or 8 per GPU")
    p.add_argument("--dataset", default=None, help="digits | synthetic[:N] | cifar10:PATH | cifar100:PATH | "
                   "imagefolder:PATH (default digits; with --configs-from, the source's)")
    p.add_argument("--epochs", type=_positive_int, default=None, help="training epochs per model (default: the trainer's)")
    p.add_argument("--sampler", choices=SAMPLERS, default=None,
                   help="random/qmc for EDFs; tpe, cmaes, nsga2, gp to optimize (default random)")
    p.add_argument("--pruner", choices=PRUNERS, default=None,
                   help="Optuna pruner for adaptive samplers (default median): stops trials whose validation error "
                        "trails the others' at the same epoch; refused for random/qmc, whose EDFs it would bias")
    p.add_argument("--study", default=None,
                   help="study name (default: SPACE-DATASET-SAMPLER-eEPOCHS-sSEED; with --configs-from, "
                        "SOURCE-eEPOCHS)")
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: journal file in the run folder)")
    p.add_argument("--devices", default=None, help="cpu | cuda | cuda:0,cuda:1 (default: all GPUs, else cpu)")
    p.add_argument("--seed", type=_seed, default=None,
                   help=f"seed of the configs drawn and the data split (0..{MAX_SEED}; default 0; with "
                        "--configs-from, the source's)")
    p.add_argument("--configs-from", default=None, metavar="RUN",
                   help="train exactly the configs of this random/qmc study (run folder or storage URL), slot by slot, "
                        "with its space, sampler, data set, seed and trainer settings unless given (e.g. another "
                        "--epochs); see `anynet-search fidelity`")
    p.add_argument("--configs-study", default=None, metavar="NAME",
                   help="the study of --configs-from when its storage holds several")
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

    p = sub.add_parser("fidelity", help="do two budgets rank the same configs alike? (rank correlations, top-10%% "
                       "overlap, constraint verdicts)")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="RUN_LOW RUN_HIGH: two run folders or storage URLs (e.g. a study and one made from it with "
                        "run --configs-from RUN --epochs E)")
    p.add_argument("--study", action="append", default=[], metavar="NAME",
                   help="study of each storage URL among the RUNs, in order (one URL: --study LOW --study HIGH)")
    p.add_argument("--out", default="fidelity", help="folder for fidelity.png and the CSVs (default fidelity)")
    p.add_argument("--n-boot", type=_positive_int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the permutation tests")
    _margin_arguments(p)
    p.set_defaults(func=_fidelity)

    p = sub.add_parser("plan", help="models per space a comparison needs for 80%% power, from a pilot study's errors")
    p.add_argument("run", nargs="?", default=None, metavar="RUN",
                   help="the pilot: a run folder or storage URL of a random/qmc study (or none, with --spread)")
    p.add_argument("--study", default=None, help=STUDY_HELP)
    p.add_argument("--effect", type=float, nargs="+", required=True, metavar="E",
                   help="effects that matter, in error points (several allowed)")
    p.add_argument("--spread", type=float, default=None, metavar="SD",
                   help="standard deviation of the errors in points, instead of the pilot's errors (normal errors)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="the analysis' level (default 0.05): one-sided tests at alpha / 2, as derive and analyze run them")
    p.add_argument("--comparisons", type=_positive_int, default=1,
                   help="comparisons corrected together (Holm): plan for the first step, at alpha / 2 / K")
    p.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    p.add_argument("--spaces", type=_positive_int, default=2,
                   help="spaces to train for the time estimate (default 2: one comparison)")
    p.add_argument("--bins", type=_positive_int, default=None,
                   help="complexity bins the comparison will use: plan with the pilot's spread inside them")
    p.add_argument("--sims", type=_positive_int, default=1000, help="simulated studies per power (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_plan)

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


def _os_error(exc: OSError, out: str | None) -> str:
    """One line for a path the OS refused, naming --out when the path is that folder or lies in it."""
    from pathlib import Path

    line = os_error_line(exc)
    path, folder = Path(str(exc.filename)).absolute(), Path(out).absolute() if out else None
    if folder is not None and exc.filename2 is None and path.is_relative_to(folder):
        return f"--out {out}: {exc.strerror}" if path == folder and exc.strerror else f"--out {out}: {line}"
    return line


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
        if error is None and isinstance(exc, OSError) and exc.filename is not None:
            # a path the OS refused: /proc, a read-only file system, a symbolic-link loop
            error = CliError(_os_error(exc, getattr(args, "out", None)))
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
