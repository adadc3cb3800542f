"""The `anynet-search` command line: one sub-command per job, each a thin layer over the library."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import traceback
from collections.abc import Callable, Sequence

from anynet_search import commands
from anynet_search.choices import MARGIN_UNITS, MAX_SEED, PRUNERS, SAMPLERS
from anynet_search.commands import CliError  # re-exported: the CLI's one-line error
from anynet_search.errors import (
    AnynetSearchError,
    StorageFullError,
    exit_code,
    is_no_space,
    os_error_line,
    show_warnings,
    stop_on_signals,
    stop_words,
)

MAX_RESOLUTION = 1024  # prepare's --resolution (training.data.sources.MAX_RESOLUTION: this module imports no numpy)
STUDY_HELP = "study name: needed when RUN is a storage URL holding several studies"


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


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    """argparse type: an integer in low..high."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer in {low}..{high}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in {low}..{high}, got {value}")
        return value

    return parse
def _repeat(text: str) -> int:
    """argparse type: a repeat number, an integer in 0 .. MAX_REPEAT."""
    from anynet_search.choices import MAX_REPEAT

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in 0..{MAX_REPEAT}, got {text!r}") from None
    if not 0 <= value <= MAX_REPEAT:
        raise argparse.ArgumentTypeError(f"must be in 0..{MAX_REPEAT}, got {value}")
    return value


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
    p.add_argument("--resolution", type=_positive_int, default=None,
                   help="input resolution in pixels (default: an export's own, else 224)")
    p.set_defaults(func=commands.cmd_describe)

    p = sub.add_parser("spaces", help="list the bundled design spaces, or show one")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="space name or file (with show)")
    p.set_defaults(func=commands.cmd_spaces)

    p = sub.add_parser("run", help="create or resume a study and train its samples with parallel workers")
    p.add_argument("--space", default=None, help="bundled space name or space file (default anynet_xa_tiny)")
    p.add_argument("--trials", type=_positive_int, default=None,
                   help="completed trials to reach (default 64; with --configs-from, the source's slots; resuming: "
                        "the stored count, more extends the study, fewer is refused)")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="worker processes on this machine (default: one per GPU, else 2; at most the cores, or 8 per "
                        "GPU, and the trials left)")
    p.add_argument("--in-flight", type=_positive_int, default=None, metavar="K",
                   help="trials each worker trains at once on its device, each on its own CUDA stream (default: 8 on "
                        "a GPU, 1 on the CPU; at most 64)")
    p.add_argument("--oversubscribe", action="store_true",
                   help="start every worker asked for, even beyond the machine's cores or 8 per GPU")
    p.add_argument("--dataset", default=None, help="digits | synthetic[:N] | cifar10:PATH | cifar100:PATH | "
                   "imagefolder:PATH | prepared:DIR (a store `prepare` wrote; default digits; with --configs-from, "
                   "the source's)")
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
    p.add_argument("--repeat", type=_repeat, default=0, metavar="K",
                   help="train the configs again under other training seeds (the K-th retraining; 0, the default, is "
                        "the first training): with --configs-from RUN and RUN's budget, the two studies' differences "
                        "are the training noise (see `anynet-search fidelity`); study name ...-rK")
    p.add_argument("--configs-study", default=None, metavar="NAME",
                   help="the study of --configs-from when its storage holds several")
    p.add_argument("--other-data", action="store_true",
                   help="with --configs-from: train the configs on data other than the source study's (its digest "
                        "differs, e.g. a proxy data set); refused otherwise")
    p.add_argument("--out", default="runs", help="folder of run folders (default runs)")
    p.add_argument("--train", action="append", default=[], metavar="KEY=VALUE", help="trainer setting, e.g. lr=0.1 (repeatable)")
    p.add_argument("--objective", default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-analyze", dest="analyze", action="store_false",
                   help="skip the EDF report that is otherwise written into RUN/report when the study is done")
    from anynet_search.study.launch import add_arguments as add_cluster_arguments

    add_cluster_arguments(p)
    p.set_defaults(func=commands.cmd_run)

    p = sub.add_parser("worker", help="join an existing study (e.g. from another machine) and train until it is done")
    p.add_argument("--study", required=True)
    p.add_argument("--storage", required=True, help="the study's storage URL (postgresql://... to span machines)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--in-flight", type=_positive_int, default=None, metavar="K",
                   help="trials trained at once on the device (default: 8 on a GPU, 1 on the CPU; at most 64)")
    p.add_argument("--objective", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=commands.cmd_worker)

    p = sub.add_parser("status", help="trials by state and the best ones")
    p.add_argument("run", nargs="?", help="run folder or storage URL")
    p.add_argument("--study", default=None, help=STUDY_HELP)
    p.add_argument("--storage", default=None, help="storage URL (the same as giving it as RUN)")
    p.add_argument("--top", type=_positive_int, default=5)
    p.set_defaults(func=commands.cmd_status)

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
    p.set_defaults(func=commands.cmd_analyze)

    p = sub.add_parser("derive", help="judge candidate constraints on a randomly sampled study; write the derived space")
    p.add_argument("run", help="run folder or storage URL")
    p.add_argument("--study", default=None, help=STUDY_HELP)
    p.add_argument("--out", default=None, help="derived space file (default RUN/derived_space_STUDY.yaml, the "
                   "name analyze gives it too; in the current folder for a database URL)")
    p.add_argument("--force", action="store_true", help="accept adaptive-sampler studies (biased EDFs)")
    p.add_argument("--retrained", default=None, metavar="RUN",
                   help="a retraining of RUN's configs under other training seeds (run --configs-from RUN --repeat K): "
                        "each verdict is drawn again from its errors and states how far it moved against the retrain "
                        "noise")
    p.add_argument("--retrained-study", default=None, metavar="NAME", help="the study of --retrained when its "
                   "storage holds several")
    _margin_arguments(p)
    p.set_defaults(func=commands.cmd_derive)

    p = sub.add_parser("fidelity", help="do budgets rank the same configs alike? (rank correlations and their paired "
                       "differences, top-10%% overlap, constraint verdicts, the retrain noise ceiling)")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="two or more run folders or storage URLs of the same configs (a study and those made from it "
                        "with run --configs-from RUN --epochs E, or --repeat K for a retraining of the highest budget, "
                        "which gives the noise ceiling); the study of most epochs is the reference")
    p.add_argument("--study", action="append", default=[], metavar="NAME",
                   help="study of each storage URL among the RUNs, in order (one URL: a --study for each study)")
    p.add_argument("--out", default=None, help="folder for the figures and CSVs (default: the reference study's run "
                   "folder/fidelity; ./fidelity for a database URL)")
    p.add_argument("--n-boot", type=_positive_int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the permutation tests")
    p.add_argument("--other-data", action="store_true", help="compare studies trained on other data than the "
                   "reference (their data digests differ) instead of refusing, with a warning")
    _margin_arguments(p)
    p.set_defaults(func=commands.cmd_fidelity)

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
    p.set_defaults(func=commands.cmd_plan)

    p = sub.add_parser("prepare", help="decode a data set once, in parallel, into a store of fixed-size uint8 images "
                       "(studies read it as prepared:DIR)")
    p.add_argument("source", metavar="SOURCE", help="imagefolder:PATH | imagenet:PATH | downsampled-imagenet:PATH | "
                   "cifar10:PATH | cifar100:PATH | digits | synthetic[:N]")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="the store's folder: new or empty (or an unfinished store of the same command, to finish it)")
    p.add_argument("--resolution", type=_bounded_int(1, MAX_RESOLUTION), required=True, metavar="R",
                   help=f"training resolution in pixels (1..{MAX_RESOLUTION})")
    p.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="decoding processes (default: the usable cores; at most 4 per core)")
    p.add_argument("--skip-bad", action="store_true",
                   help="record undecodable files (zero images, split skipped, listed in the manifest) instead of "
                        "stopping at the first")
    p.add_argument("--classes", type=_positive_int, default=None, metavar="K",
                   help="keep the first K classes by label index (e.g. ImageNet16-120: --resolution 16 --classes 120)")
    p.add_argument("--margin", choices=("auto", "none", "imagenet"), default="auto",
                   help="stored side: imagenet stores round(R * 256 / 224) for evaluation's center crop of R, none "
                        "stores R; auto: imagenet for imagefolder:/imagenet: at R >= 64, else none")
    p.set_defaults(func=commands.cmd_prepare)

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
    p.set_defaults(func=commands.cmd_export)
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
    previous = stop_on_signals()  # SIGTERM and SIGHUP stop a command as Ctrl-C does, exiting 143 and 129
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into head & co.
        return 0
    except KeyboardInterrupt as exc:
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            print(f"anynet-search {args.command}: {stop_words(exc)}", file=sys.stderr)
        return exit_code(exc)
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
        for sig, old in previous.items():
            signal.signal(sig, old)


if __name__ == "__main__":
    sys.exit(main())
