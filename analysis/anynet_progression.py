"""Reproduce the paper's AnyNetX A -> E progression at small scale; write analysis/anynet_progression.md.

    python analysis/anynet_progression.py --report-only     # rewrite the file and figure from the committed data (< 1 min)
    python analysis/anynet_progression.py                   # train 5 x 100 models on digits (~70 min on 2 cores), then the same
    python analysis/anynet_progression.py --variant cifar --dataset cifar10:/data/cifar-10-batches-py --trials 500

Training runs (or resumes) one random-sampler study per space in `--out` and writes the per-model
results to `--data` (analysis/data/progression_models.csv and progression_meta.json, committed), which
is all `--report-only` reads.

All studies use the same `--seed`, which picks the data split (every space is judged on the same
validation images) and the training seed of each slot (slot s trains with seed + s in every space);
their configs still come from independent streams, because a study's stream seed combines `--seed` with
the hash of its space (`anynet_search.study.settings.stream_seed`). The file reports how many configs
consecutive studies share and how strongly errors correlate by slot.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from progression_data import DATA, read_data, write_data
from progression_numbers import one_image, progression_numbers
from progression_render import plot_progression, render_markdown
from progression_stability import RERUNS, read_reruns, retrain_numbers, stability_numbers

from anynet_search.study import RunOptions, run_study

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
    parser.add_argument("--data", default=str(DATA), help="per-model CSV written after training, read by --report-only")
    parser.add_argument("--reruns", default=None,
                        help="per-model CSV of the reruns and retrainings (progression_stability.py), if it exists "
                             f"(default: {RERUNS.name} beside --data)")
    parser.add_argument("--margin", type=float, default=None,
                        help="non-inferiority / equivalence margin in points (default: one validation image)")
    parser.add_argument("--n-perm", type=int, default=4000, help="permutations per test (default 4000)")
    parser.add_argument("--power-sims", type=int, default=400, help="simulated studies per power figure")
    parser.add_argument("--band-draws", type=int, default=1 << 19,
                        help="tuples drawn per space to measure its share inside the flops band (default 524288)")
    parser.add_argument("--report-only", action="store_true", help="do not train; analyze the committed --data")
    parser.add_argument("--objective", default=None, help=argparse.SUPPRESS)  # dry runs in the tests
    return parser.parse_args(argv)


def train(args: argparse.Namespace) -> dict[str, Path]:
    """Run (or resume) each space's study; its run folder per space."""
    out = {}
    for space in SPACES:
        name = f"{space}_{args.variant}"
        outcome = run_study(RunOptions(space=name, trials=args.trials, workers=args.workers, dataset=args.dataset,
                                       devices=args.devices, out=args.out, sampler="random", seed=args.seed,
                                       objective=args.objective))
        if outcome.interrupted or outcome.failing_message:
            raise SystemExit(f"{name}: {outcome.failing_message or 'interrupted'}; run the command again to resume")
        out[name] = outcome.run_dir
    return out


def main(argv: list[str] | None = None) -> int:
    """Train unless --report-only, then compute every number from the data and write the file and the figure."""
    args = parse_args(argv)
    start = time.perf_counter()
    data = Path(args.data)
    if not args.report_only:
        write_data(train(args), data)
    frames, spaces, meta = read_data(data)
    margin = one_image(meta["validation_images"]) if args.margin is None else args.margin
    numbers = progression_numbers(frames, spaces, margin=margin, seed=meta["seed"], n_perm=args.n_perm,
                                  power_sims=args.power_sims, validation_images=meta["validation_images"],
                                  band_draws=args.band_draws)
    reruns = read_reruns(Path(args.reruns) if args.reruns else data.with_name(RERUNS.name), meta["validation_images"])
    if reruns is not None:  # the reruns under other seeds and the retrained studies (progression_stability.py)
        table, numbers["reruns_meta"] = reruns
        numbers["stability"] = stability_numbers(numbers["steps"], table, list(frames), margin, args.n_perm,
                                                 numbers["level"])
        numbers["retrain"] = retrain_numbers(frames, table, numbers["steps"], margin, args.n_perm)
    figure, doc = Path(args.figure), Path(args.doc)
    figure.parent.mkdir(parents=True, exist_ok=True)
    plot_progression(numbers, figure)
    shown = " ".join(argv if argv is not None else sys.argv[1:])
    if not args.report_only:
        shown = f"--report-only {shown}".strip()
    seconds = time.perf_counter() - start
    doc.write_text(render_markdown(numbers, command=f"python analysis/anynet_progression.py {shown}".strip(),
                                   figure=Path(os.path.relpath(figure.resolve(), doc.resolve().parent)),
                                   meta=meta, data=_shown(data), seconds=seconds), encoding="utf-8")
    print(f"wrote {doc} and {figure} ({time.perf_counter() - start:.0f} s)")
    return 0


def _shown(path: Path) -> str:
    """A path relative to the repository when it lies inside it (the file names it for any checkout)."""
    try:
        return Path(os.path.relpath(path.resolve(), HERE.parent)).as_posix()
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
