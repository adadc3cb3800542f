"""Memory of one long-lived worker over N trials (real training, 1 epoch each).

Runs the in-process `anynet_search.study.Worker` on a fresh anynet_xa_tiny / digits study (journal file in a
temp dir, `RunOptions(train_overrides=(("epochs", 1),))`) with the real `run_trial` objective, and reads this
process's VmRSS from /proc/self/status at the start of every trial: that is after the worker's per-trial
`release_memory()` (gc + glibc `malloc_trim`), i.e. what the worker keeps between trials. Reports RSS at
trials 1, 10, 50, 100, 200 (those that exist), the peak (VmHWM), and the slope of a least-squares line through
RSS over the second half of the trials (after warm-up) in KiB per trial, plus seconds per trial (a storage
that gets slower with more trials shows up there).

    python benchmarks/bench_memory.py                  # 200 trials, worker as shipped
    python benchmarks/bench_memory.py --no-release     # the per-trial release disabled, for comparison
    python benchmarks/bench_memory.py --quick          # 30 trials
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _common import hwm_mib, linear_fit, machine_line, rss_mib, table, warn_if_busy  # noqa: E402

from anynet_search.study import RunOptions, Worker, prepare_study  # noqa: E402
from anynet_search.study import worker as worker_module  # noqa: E402
from anynet_search.study.objective import run_trial  # noqa: E402

SAMPLES: list[tuple[int, float, float]] = []  # (trial index 1.., RSS MiB at the trial's start, perf_counter)


def measured_trial(trial, cfg, settings, resolution, device) -> float:
    SAMPLES.append((len(SAMPLES) + 1, rss_mib(), time.perf_counter()))
    return run_trial(trial, cfg, settings, resolution, device)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="30 trials")
    p.add_argument("--trials", type=int, default=None, help="default 200, quick 30")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the worker (default 1, as in a study)")
    p.add_argument("--no-release", action="store_true",
                   help="disable the worker's per-trial gc + malloc_trim, to show what it saves")
    args = p.parse_args(argv)
    n = args.trials or (30 if args.quick else 200)
    torch.set_num_threads(args.threads)
    if args.no_release:
        worker_module.release_memory = lambda: None

    print("# bench_memory")
    print("machine:", machine_line())
    print(f"worker: in-process Worker, {torch.get_num_threads()} torch thread(s), anynet_xa_tiny on digits, "
          f"{n} trials of 1 epoch; per-trial release: {'off' if args.no_release else 'on (as shipped)'}; "
          f"ONEDNN_PRIMITIVE_CACHE_CAPACITY={os.environ.get('ONEDNN_PRIMITIVE_CACHE_CAPACITY', 'unset')}")
    warn_if_busy()
    tmp = Path(tempfile.mkdtemp(prefix="anynet-bench-mem-"))
    try:
        rss_start = rss_mib()
        opts = RunOptions(space="anynet_xa_tiny", trials=n, workers=1, dataset="digits", devices="cpu",
                          study="bench-memory", out=str(tmp), train_overrides=(("epochs", 1),))
        study, _, _, _ = prepare_study(opts)
        t0 = time.perf_counter()
        summary = Worker(study, device="cpu", objective=measured_trial).run()
        wall = time.perf_counter() - t0
        journal_kib = (tmp / "bench-memory" / "journal.log").stat().st_size / 1024
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nRSS before creating the study: {rss_start:.1f} MiB; completed {summary.completed}, failed "
          f"{summary.failed}; wall {wall:.1f} s; journal {journal_kib:.0f} KiB\n")
    starts = [t for _, _, t in SAMPLES] + [t0 + wall]
    times = [(i, starts[i] - starts[i - 1]) for i in range(1, len(starts))]  # (trial, seconds it took)
    rows = []
    for m in dict.fromkeys(m for m in (1, 10, 50, 100, 150, 200, n) if m <= len(SAMPLES)):
        i, rss, _ = SAMPLES[m - 1]
        window = [dt for j, dt in times if max(1, m - 9) <= j <= m]
        rows.append({"trial": i, "RSS MiB at start": rss, "RSS - trial 1 (MiB)": rss - SAMPLES[0][1],
                     "s/trial (mean of last 10)": sum(window) / len(window)})
    print(table(rows))
    half = SAMPLES[len(SAMPLES) // 2:]
    s_half = linear_fit([(i, r) for i, r, _ in half])[0] * 1024
    s_all = linear_fit([(i, r) for i, r, _ in SAMPLES[1:]])[0] * 1024
    t_slope = linear_fit([(float(i), dt) for i, dt in times[1:]])[0] * 1000
    print(f"\nslope of RSS over trials {half[0][0]}..{half[-1][0]}: {s_half:.1f} KiB/trial "
          f"({s_half * 100 / 1024:.1f} MiB per 100 trials); over trials 2..{len(SAMPLES)}: {s_all:.1f} KiB/trial; "
          f"peak RSS (VmHWM) {hwm_mib():.1f} MiB")
    print(f"seconds per trial: first {times[0][1]:.2f} s, median {sorted(dt for _, dt in times)[len(times) // 2]:.2f} s, "
          f"trend {t_slope:.2f} ms per trial")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
