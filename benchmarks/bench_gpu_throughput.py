"""Ten-epoch CIFAR-size evaluations per GPU-hour: real studies with k workers sharing one GPU.

Each measurement is a real `run_study` (the path `anynet-search run --devices cuda:0 --workers k` takes):
`anynet_xa_cifar` samples (32 px, 10-40 MF), 10 epochs each on an in-memory CIFAR-shaped synthetic set
(`synthetic:62500`: 45,000 training, 5,000 validation and 12,500 test images, generated locally), for every
k and step mode (eager, or CUDA graphs). A run is stopped (Ctrl-C, as a user would) once every worker has
finished `--min-per-worker` evaluations or after `--max-seconds`. Reported per run:

- steady evals/h: the sum over workers of (evaluations - 1) / (time between its first and last completion),
  i.e. throughput once the workers are up (a worker with a single evaluation counts 1 / its wall time);
- end-to-end evals/h: completed evaluations / wall time from launch (includes start-up: spawn, CUDA
  context, data generation, first-step warm-up);
- median seconds per evaluation (wall time of the trial: build, train, validate each epoch, test);
- GPU utilization: mean of `nvidia-smi` samples (every 250 ms) while evaluations were completing;
- peak memory per worker: the largest `torch.cuda.max_memory_allocated` any of its trials recorded.

    python benchmarks/bench_gpu_throughput.py --ks 1 2 4 8 --modes graph eager --json /tmp/throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import optuna  # noqa: E402
from _common import machine_line, table  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from anynet_search.study import RunOptions, run_study  # noqa: E402
from anynet_search.study.progress import ProgressView  # noqa: E402
from anynet_search.study.storage import open_storage  # noqa: E402


class GpuSampler(threading.Thread):
    """`nvidia-smi` utilization and memory samples, stamped with this process's clock."""

    def __init__(self, period_ms: int = 250) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float, float]] = []
        try:
            self.proc: subprocess.Popen | None = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                 f"--loop-ms={period_ms}"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except OSError:
            self.proc = None

    def run(self) -> None:
        if self.proc is None or self.proc.stdout is None:
            return
        for line in self.proc.stdout:
            try:
                util, mem = (float(v) for v in line.strip().split(","))
            except ValueError:
                continue
            self.samples.append((time.time(), util, mem))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()

    def mean_util(self, t0: float, t1: float) -> float:
        sel = [u for t, u, _ in self.samples if t0 <= t <= t1]
        return statistics.fmean(sel) if sel else float("nan")

    def max_memory(self, t0: float, t1: float) -> float:
        sel = [m for t, _, m in self.samples if t0 <= t <= t1]
        return max(sel) if sel else float("nan")


def completions(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    """Completed trials of a study (read through a separate storage handle)."""
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "result" in t.user_attrs]


def print_failures(url: str, name: str) -> None:
    """Each distinct failure reason of the study with where it was raised (what a GPU session must bring back)."""
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    seen: dict[tuple[str, str], int] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        key = (str(t.user_attrs.get("failure")), str(t.user_attrs.get("failure_where", "-")))
        seen[key] = seen.get(key, 0) + 1
    for (reason, where), n in seen.items():
        print(f"  failed x{n}: {reason}\n    raised at: {where}", flush=True)


def measure(k: int, mode: str, args: argparse.Namespace, root: Path) -> dict:
    """One study with k workers on cuda:0 in `mode`; returns its row."""
    name = f"{mode}-k{k}"
    train = [("batch_size", args.batch_size), ("lr", args.lr), ("cuda_graphs", mode == "graph"),
             ("cudnn_benchmark", not args.no_cudnn_benchmark)]
    opts = RunOptions(space=args.space, trials=args.trials, workers=k, dataset=f"synthetic:{args.images}",
                      epochs=args.epochs, devices=args.device, study=name, out=str(root), seed=k,
                      train_overrides=tuple(train), objective=args.objective)
    url = f"journal:{root / name / 'journal.log'}"
    launched = time.time()
    state = {"stop": None}

    finished = threading.Event()

    def monitor() -> None:
        while not finished.wait(2.0):
            try:
                done = completions(url, name)
            except Exception:  # noqa: BLE001 - the study may not exist yet
                done = []
            per_worker: dict[str, int] = {}
            for t in done:
                per_worker[t.user_attrs["worker"]] = per_worker.get(t.user_attrs["worker"], 0) + 1
            enough = len(per_worker) == k and min(per_worker.values()) >= args.min_per_worker
            if (enough or time.time() - launched > args.max_seconds) and not finished.is_set():
                state["stop"] = time.time()
                os.kill(os.getpid(), signal.SIGINT)
                return

    gpu = GpuSampler()
    gpu.start()
    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    try:
        run_study(opts, progress=ProgressView(stream=open(os.devnull, "w")))
    except KeyboardInterrupt:  # the monitor's stop signal landed outside the runner's own handler
        pass
    finally:
        finished.set()  # a study that ended by itself (all failing) must not be signalled later
    stopped = state["stop"] or time.time()
    gpu.stop()
    print_failures(url, name)
    done = completions(url, name)
    by_worker: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for t in done:
        by_worker.setdefault(t.user_attrs["worker"], []).append(t)
    steady = 0.0
    first_done = min((t.datetime_complete.timestamp() for t in done), default=stopped)
    peaks, first_overheads = [], []
    for trials in by_worker.values():
        trials.sort(key=lambda t: t.datetime_complete)
        ends = [t.datetime_complete.timestamp() for t in trials]
        walls = [t.user_attrs["result"]["wall_seconds"] for t in trials]
        steady += (len(ends) - 1) / (ends[-1] - ends[0]) if len(ends) >= 2 else 1.0 / walls[0]
        peaks.append(max(t.user_attrs["result"].get("peak_memory_mb") or 0.0 for t in trials))
        if len(walls) >= 2:
            first_overheads.append(walls[0] - statistics.median(walls[1:]))
    walls = [t.user_attrs["result"]["wall_seconds"] for t in done]
    modes = sorted({t.user_attrs["result"].get("step_mode", "?") for t in done})
    flops = [t.user_attrs["flops"] / 1e6 for t in done]
    return {"mode": mode, "k": k, "evals": len(done), "steady evals/h": steady * 3600,
            "end-to-end evals/h": len(done) / max(stopped - launched, 1e-9) * 3600,
            "median s/eval": statistics.median(walls) if walls else float("nan"),
            "first-eval extra s": statistics.median(first_overheads) if first_overheads else float("nan"),
            "GPU util %": gpu.mean_util(first_done, stopped),
            "GPU mem MiB (nvidia-smi max)": gpu.max_memory(launched, stopped),
            "peak MiB/worker (torch)": max(peaks) if peaks else float("nan"),
            "median MF": statistics.median(flops) if flops else float("nan"),
            "step mode": "; ".join(modes), "window s": stopped - launched}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--modes", nargs="+", choices=["eager", "graph"], default=["graph", "eager"])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.4)
    p.add_argument("--images", type=int, default=62500, help="synthetic images in all (default: 45k/5k/12.5k)")
    p.add_argument("--trials", type=int, default=300, help="tickets per study (it is stopped long before)")
    p.add_argument("--min-per-worker", type=int, default=3)
    p.add_argument("--max-seconds", type=float, default=45.0, help="stop a run after this long from launch")
    p.add_argument("--json", default=None, help="file for the rows as JSON")
    p.add_argument("--space", default="anynet_xa_cifar")
    p.add_argument("--no-cudnn-benchmark", action="store_true")
    p.add_argument("--objective", default=None, help="module:function instead of the trainer's (diagnostics)")
    p.add_argument("--device", default="cuda:0", help="cuda:0 (cpu only to check this script's plumbing)")
    args = p.parse_args(argv)
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu_throughput: no CUDA device; nothing measured")
        return 1
    print("# bench_gpu_throughput")
    print("machine:", machine_line())
    print(f"settings: {args.space} on {args.device}, {args.epochs} epochs, batch {args.batch_size}, lr {args.lr}, "
          f"synthetic:{args.images}, stop at {args.min_per_worker} evals per worker or {args.max_seconds:.0f} s")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            for k in args.ks:
                row = measure(k, mode, args, Path(tmp))
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.json:  # after every run, so a later hang loses nothing
                    Path(args.json).write_text(json.dumps(rows, indent=1))
    print("\n" + table(rows))
    best = max(rows, key=lambda r: r["steady evals/h"])
    print(f"\nbest: {best['mode']} k={best['k']}: {best['steady evals/h']:.0f} steady evals/h "
          f"(goal 3000: {'MET' if best['steady evals/h'] >= 3000 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
