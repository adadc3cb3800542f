"""Memory of one long-lived worker: RSS after each of N trials (real training, 1 epoch each).

Runs the in-process `anynet_search.study.Worker` on a fresh anynet_xa_tiny / digits study (journal file in a
temp dir, `RunOptions(train_overrides=(("epochs", 1),))`), with an objective that calls the real
`anynet_search.study.objective.run_trial` and then reads this process's VmRSS from /proc/self/status.
Reports RSS at trials 1, 10, 50, 100, 200 (those that exist), the peak (VmHWM), and the slope of a
least-squares line through RSS over the second half of the trials (after warm-up), in KiB per trial;
also the seconds per trial over the run (a storage that gets slower with more trials shows up there).

    python benchmarks/bench_memory.py            # 200 trials
    python benchmarks/bench_memory.py --quick    # 30 trials
    python benchmarks/bench_memory.py --malloc-trim                             # diagnostic: allocator retention?
    ONEDNN_PRIMITIVE_CACHE_CAPACITY=0 python benchmarks/bench_memory.py         # diagnostic: oneDNN primitive cache?
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _common import hwm_mib, machine_line, rss_mib, table, warn_if_busy  # noqa: E402

from anynet_search.study import RunOptions, Worker, prepare_study  # noqa: E402
from anynet_search.study.objective import run_trial  # noqa: E402

SAMPLES: list[tuple[int, float, float]] = []  # (trial index 1.., RSS MiB, time.perf_counter())
TRIM = False


def malloc_trim() -> None:
    """Return free glibc heap memory to the OS (diagnostic: separates allocator retention from live objects)."""
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)


def measured_trial(trial, cfg, settings, resolution, device) -> float:
    value = run_trial(trial, cfg, settings, resolution, device)
    if TRIM:
        gc.collect()
        malloc_trim()
    SAMPLES.append((len(SAMPLES) + 1, rss_mib(), time.perf_counter()))
    return value


def slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    if n < 2:
        return float("nan")
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="30 trials")
    p.add_argument("--trials", type=int, default=None, help="default 200, quick 30")
    p.add_argument("--threads", type=int, default=None, help="torch threads of the worker (default: torch's)")
    p.add_argument("--malloc-trim", action="store_true",
                   help="diagnostic: gc.collect() + glibc malloc_trim(0) after each trial, before reading RSS")
    args = p.parse_args(argv)
    n = args.trials or (30 if args.quick else 200)
    global TRIM
    TRIM = args.malloc_trim
    if args.threads:
        torch.set_num_threads(args.threads)

    print("# bench_memory")
    print("machine:", machine_line())
    print(f"worker: in-process Worker, {torch.get_num_threads()} torch threads, anynet_xa_tiny on digits, "
          f"{n} trials of 1 epoch; malloc_trim after each trial: {'yes' if TRIM else 'no'}; "
          f"ONEDNN_PRIMITIVE_CACHE_CAPACITY={os.environ.get('ONEDNN_PRIMITIVE_CACHE_CAPACITY', 'unset')}")
    warn_if_busy()
    tmp = Path(tempfile.mkdtemp(prefix="anynet-bench-mem-"))
    try:
        rss_start = rss_mib()
        opts = RunOptions(space="anynet_xa_tiny", trials=n, workers=1, dataset="digits", devices="cpu",
                          study="bench-memory", out=str(tmp), train_overrides=(("epochs", 1),))
        study, _, _, _ = prepare_study(opts)
        gc.collect()
        rss_ready = rss_mib()
        t0 = time.perf_counter()
        summary = Worker(study, device="cpu", objective=measured_trial).run()
        wall = time.perf_counter() - t0
        journal_kib = (tmp / "bench-memory" / "journal.log").stat().st_size / 1024
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nRSS before creating the study: {rss_start:.1f} MiB; after creating it ({n} tickets): {rss_ready:.1f} MiB; "
          f"completed {summary.completed}, failed {summary.failed}; wall {wall:.1f} s; journal {journal_kib:.0f} KiB\n")
    marks = [m for m in (1, 10, 50, 100, 200, n) if m <= len(SAMPLES)]
    rows = []
    times = [(i, t - (SAMPLES[i - 2][2] if i > 1 else t0)) for i, _, t in SAMPLES]
    for m in dict.fromkeys(marks):
        i, rss, _ = SAMPLES[m - 1]
        window = [dt for j, dt in times if max(1, m - 9) <= j <= m]
        rows.append({"trial": i, "RSS MiB": rss, "RSS - trial 1 (MiB)": rss - SAMPLES[0][1],
                     "s/trial (mean of last 10)": sum(window) / len(window)})
    print(table(rows))
    half = SAMPLES[len(SAMPLES) // 2:]
    s_half = slope([(i, r) for i, r, _ in half]) * 1024
    s_all = slope([(i, r) for i, r, _ in SAMPLES[1:]]) * 1024
    t_slope = slope([(i, dt) for i, dt in times[1:]]) * 1000
    print(f"\nslope of RSS over trials {half[0][0]}..{half[-1][0]}: {s_half:.1f} KiB/trial; over trials 2..{len(SAMPLES)}: "
          f"{s_all:.1f} KiB/trial; peak RSS (VmHWM) {hwm_mib():.1f} MiB")
    print(f"seconds per trial: first {times[0][1]:.2f} s, median {sorted(dt for _, dt in times)[len(times) // 2]:.2f} s, "
          f"trend {t_slope:.2f} ms per trial")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
