"""Reproduce the paper's AnyNetX A -> E progression at small scale with anynet-search.

Runs one random-sampler study per space (same data, seed, trial count and training recipe), then writes
one report that overlays the five EDFs (plain and flops-normalized) and judges each step's constraint.

    python analysis/anynet_progression.py                       # digits on the CPU, the *_tiny spaces
    python analysis/anynet_progression.py --trials 500 --variant cifar --dataset cifar10:/data/cifar-10-batches-py

The recorded outcome of the CPU run lives in analysis/anynet_progression.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from anynet_search.analysis import compare_edfs
from anynet_search.report import analyze_runs
from anynet_search.results import load_results
from anynet_search.study import RunOptions, run_study

SPACES = ("anynet_xa", "anynet_xb", "anynet_xc", "anynet_xd", "anynet_xe")


def main() -> None:
    """Run the five studies and the joint analysis; print each step's EDF comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="tiny", choices=["tiny", "cifar"], help="space family suffix")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--trials", type=int, default=48)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--devices", default=None)
    parser.add_argument("--out", default="runs/progression")
    args = parser.parse_args()

    runs = []
    for space in SPACES:
        name = f"{space}_{args.variant}"
        outcome = run_study(RunOptions(space=name, trials=args.trials, workers=args.workers, dataset=args.dataset,
                                       devices=args.devices, out=args.out, sampler="random", seed=0))
        runs.append(str(outcome.run_dir))
    summary = analyze_runs(runs, Path(args.out) / "report")
    print(summary.text())
    frames = [load_results(r) for r in runs]
    print("\nstep          n_prev  n_next  KS p-value  mean error diff (next - prev, % points)")
    for (a, fa), (b, fb) in zip(zip(SPACES, frames), zip(SPACES[1:], frames[1:])):
        cmp = compare_edfs(fb["error"], fa["error"])
        print(f"{a[-2:]} -> {b[-2:]}      {len(fa):5d}  {len(fb):6d}  {cmp.p_value:10.3g}  {cmp.mean_diff:+.2f}")


if __name__ == "__main__":
    main()
