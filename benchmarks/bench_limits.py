"""The resource limits of issue 20, measured: the RegNet fit's memory and time by depth, and how long the
workers of a `run` killed with SIGKILL live on.

Part 1: `fit_regnet` of a 4-stage network of each depth, its peak traced memory (numpy allocations are traced
by tracemalloc) and wall time; beside it, the size of one (grid x depth) array of the search before it worked
in chunks (13,981 grid points x depth x 8 bytes; it held several at once).

Part 2: `anynet-search run --workers 2` on the dry objective (3-second trials); once both workers are
mid-trial the run is killed with SIGKILL and the time until both workers have exited is measured, `--repeats`
times.

    python benchmarks/bench_limits.py [--repeats 3]
    python benchmarks/bench_limits.py --quick    # one repeat
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _common import machine_line, table  # noqa: E402
from faults import spawned_workers  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from anynet_search.models.regnet import fit_regnet  # noqa: E402
from anynet_search.reporting.results import open_run  # noqa: E402
from anynet_search.study.reaper import pid_alive  # noqa: E402

OLD_GRID = 11 * 41 * 31  # w0 x wa x wm points of the coarse search


def fit_rows() -> list[dict[str, str]]:
    """One row per depth: peak traced MiB, seconds, fit error, and one array of the unchunked search in
    MiB."""
    rows = []
    for depth in (64, 1024, 20_000, 400_000):
        quarter = depth // 4
        widths = [64] * quarter + [128] * quarter + [256] * quarter + [512] * (depth - 3 * quarter)
        tracemalloc.start()
        start = time.perf_counter()
        fit = fit_regnet(widths)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rows.append({"depth (blocks)": f"{depth:,}", "peak MiB": f"{peak / 2**20:.1f}",
                     "seconds": f"{seconds:.2f}", "fit error": f"{fit.fit_error:.3f}",
                     "one unchunked array, MiB": f"{OLD_GRID * depth * 8 / 2**20:,.0f}"})
    return rows


def orphan_seconds(folder: Path) -> float:
    """Seconds from SIGKILL of a `run` to the exit of its last worker."""
    cmd = [sys.executable, "-m", "anynet_search", "run", "--workers", "2", "--trials", "40", "--dataset",
           "synthetic:64", "--objective", "anynet_search.study.dry_run:pseudo_error", "--no-analyze", "--out",
           str(folder)]
    proc = subprocess.Popen(cmd, env=dict(os.environ, ANYNET_DRY_SLEEP="3"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    run_dir = folder / "anynet_xa_tiny-synthetic-random-s0"
    while True:
        workers = spawned_workers(proc.pid)
        if len(workers) == 2 and (run_dir / "journal.log").is_file() and len(
                open_run(run_dir)[1].get_trials(deepcopy=False, states=(TrialState.RUNNING,))) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    start = time.perf_counter()
    proc.wait()
    while any(pid_alive(p) for p in workers):
        time.sleep(0.05)
    return time.perf_counter() - start


def main() -> None:
    """Print both tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one repeat of part 2")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1
    print(machine_line())
    print(table(fit_rows()))
    with tempfile.TemporaryDirectory() as tmp:
        times = [orphan_seconds(Path(tmp) / str(i)) for i in range(args.repeats)]
    print(table([{"repeat": str(i + 1), "seconds from SIGKILL of run to its last worker's exit": f"{t:.2f}"}
                 for i, t in enumerate(times)]))


if __name__ == "__main__":
    main()
