"""Reproduce the paper's AnyNetX A -> E progression at small scale; write analysis/anynet_progression.md.

One command runs (or resumes) one random-sampler study per space and regenerates the file and its figure:

    python analysis/anynet_progression.py                   # 5 x 100 models on digits, the *_tiny spaces, 2 CPU workers
    python analysis/anynet_progression.py --report-only     # only rewrite the file and figure from the finished runs
    python analysis/anynet_progression.py --variant cifar --dataset cifar10:/data/cifar-10-batches-py --trials 500

All studies use the same `--seed`, which picks the data split (every space is judged on the same
validation images); their configs still come from independent streams, because a study's stream seed
combines `--seed` with the hash of its space (`anynet_search.study.plan.stream_seed`). The file reports
how many configs consecutive studies share.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from progression_numbers import label, progression_numbers
from progression_render import plot_progression, render_markdown

from anynet_search.reporting.results import load_results, open_run
from anynet_search.study import RunOptions, run_study
from anynet_search.study.plan import StudySettings
from anynet_search.study.runner import default_study_name

SPACES = ("anynet_xa", "anynet_xb", "anynet_xc", "anynet_xd", "anynet_xe")
HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="tiny", choices=["tiny", "cifar"], help="space family suffix")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--trials", type=int, default=100, help="models per space (default 100)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--devices", default=None)
    parser.add_argument("--seed", type=int, default=0, help="data split and training seed, shared by all spaces")
    parser.add_argument("--out", default="runs/progression", help="folder of the run folders (git-ignored)")
    parser.add_argument("--doc", default=str(HERE / "anynet_progression.md"), help="markdown file to write")
    parser.add_argument("--figure", default=str(HERE / "figures" / "anynet_progression_edf.png"))
    parser.add_argument("--margin", type=float, default=0.5, help="non-inferiority / equivalence margin (points)")
    parser.add_argument("--n-perm", type=int, default=4000, help="permutations per test (default 4000)")
    parser.add_argument("--report-only", action="store_true", help="do not train; analyze the finished runs")
    parser.add_argument("--objective", default=None, help=argparse.SUPPRESS)  # dry runs in the tests
    return parser.parse_args(argv)


def run_dirs(args: argparse.Namespace) -> dict[str, Path]:
    """Run folder of each space's study (created or resumed unless --report-only)."""
    out = {}
    for space in SPACES:
        name = f"{space}_{args.variant}"
        if args.report_only:
            out[name] = Path(args.out) / default_study_name(name, args.dataset, "random", args.seed)
            continue
        outcome = run_study(RunOptions(space=name, trials=args.trials, workers=args.workers, dataset=args.dataset,
                                       devices=args.devices, out=args.out, sampler="random", seed=args.seed,
                                       objective=args.objective))
        if outcome.interrupted or outcome.failing_message:
            raise SystemExit(f"{name}: {outcome.failing_message or 'interrupted'}; run the command again to resume")
        out[name] = outcome.run_dir
    return out


def study_meta(runs: dict[str, Path]) -> dict[str, Any]:
    """Cores, training settings and wall time per study, read from the runs themselves."""
    wall, settings = {}, None
    for name, run in runs.items():
        _, study = open_run(run)
        trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_start and t.datetime_complete]
        if trials:
            first = min(t.datetime_start for t in trials)
            wall[label(name)] = (max(t.datetime_complete for t in trials) - first).total_seconds()
        settings = StudySettings.from_study(study)
    space = settings.design_space()
    train = settings.train_config()
    text = (f"the `*_{space.name.split('_')[-1]}` spaces at {space.resolution} px, {train.epochs} epochs per model, "
            f"random sampler, seed {settings.seed}.")
    return {"cores": os.cpu_count(), "wall": wall, "settings": text}


def main(argv: list[str] | None = None) -> int:
    """Run the studies, compute every number, write the markdown file and the figure."""
    args = parse_args(argv)
    start = time.perf_counter()
    runs = run_dirs(args)
    frames = {name: load_results(run) for name, run in runs.items()}
    spaces = {name: StudySettings.from_study(open_run(run)[1]).design_space() for name, run in runs.items()}
    numbers = progression_numbers(frames, spaces, margin=args.margin, seed=args.seed, n_perm=args.n_perm)
    figure, doc = Path(args.figure), Path(args.doc)
    figure.parent.mkdir(parents=True, exist_ok=True)
    plot_progression(numbers, figure)
    shown = " ".join(argv if argv is not None else sys.argv[1:])
    doc.write_text(render_markdown(numbers, command=f"python analysis/anynet_progression.py {shown}".strip(),
                                   dataset=args.dataset, figure=Path(os.path.relpath(figure.resolve(), doc.resolve().parent)),
                                   meta=study_meta(runs)), encoding="utf-8")
    print(f"wrote {doc} and {figure} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
