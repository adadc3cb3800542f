"""RSS of one worker over N one-epoch trials, with the worker's per-trial memory release (gc + malloc_trim).

    .venv/bin/python benchmarks/bench_memory_release.py            # 60 trials, worker as shipped
    .venv/bin/python benchmarks/bench_memory_release.py --no-release   # the release disabled, for comparison
"""

import argparse
import tempfile

import torch

from anynet_search.study import RunOptions, Worker, prepare_study
from anynet_search.study import worker as worker_module
from anynet_search.study.objective import run_trial


def rss_mib() -> float:
    """Resident set size of this process in MiB."""
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    """Run the trials and print RSS at a few checkpoints."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--no-release", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.no_release:
        worker_module.release_memory = lambda: None
    rss = []

    def objective(trial, cfg, settings, resolution, device):  # noqa: ANN001, ANN202
        rss.append(rss_mib())  # at the start of each trial: after the previous trial's release
        return run_trial(trial, cfg, settings, resolution, device)

    study, *_ = prepare_study(RunOptions(space="anynet_xa_tiny", trials=args.trials, workers=1, dataset="digits",
                                         out=tempfile.mkdtemp(), train_overrides=(("epochs", 1),)))
    Worker(study, objective=objective).run()
    marks = sorted(m for m in {1, 10, 20, args.trials // 2, args.trials} if m <= len(rss))
    print("| trial | RSS MiB |\n|---|---|")
    for m in marks:
        print(f"| {m} | {rss[m - 1]:.0f} |")


if __name__ == "__main__":
    main()
