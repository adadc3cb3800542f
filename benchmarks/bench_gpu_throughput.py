"""Ten-epoch CIFAR-size evaluations per hour on one GPU: the study against a bare loop over the same networks,
measured in the same call, and their ratio.

1. The bare loop: the first `--networks` configs of the space's planned stream (seed `--seed`, the configs the
   study trains first), each built once; per network the training step (forward, cross-entropy, backward,
   fused SGD) captured in one CUDA graph with bf16 autocast and channels-last, on random inputs already on
   the GPU (no data gather, no augmentation, no validation). Their replays are issued round robin on 1 and
   on `--streams` CUDA streams of one process for `--bare-seconds` each; training images per second summed
   over the networks convert to ten-epoch train-only evaluations per hour (training images x epochs each:
   45,000 x 10 for the default data set).
2. The study: a real `run_study` (the path `anynet-search run --devices cuda --space anynet_xa_cifar` takes,
   with its defaults: one worker process per GPU, CUDA graphs, trials in flight) on an in-memory synthetic
   CIFAR-shaped set (`synthetic:62500`: 45,000 training, 5,000 validation and 12,500 test images). A monitor
   reads the storage every second and counts the epochs every trial has reported. Steady evaluations/h is the
   slope of that count, from the moment every slot has reported an epoch to the end of the window, / epochs
   per evaluation; end-to-end counts completed evaluations from launch. The study is stopped (SIGINT, as a user
   does) after `--study-seconds`.

Printed: both rates, their ratio (goal: study >= 0.9 x the bare loop on `--streams` streams), GPU utilization
(nvidia-smi samples while the window runs) and peak memory. `--device cpu` runs the same plumbing on the CPU
with tiny sizes (a check of this script, not a measurement).

    python benchmarks/bench_gpu_throughput.py --json /tmp/throughput.json
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
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _common import machine_line, table  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from anynet_search import build_model, load_space  # noqa: E402
from anynet_search.study import RunOptions, run_study  # noqa: E402
from anynet_search.study.progress import ProgressView  # noqa: E402
from anynet_search.study.settings import planned_sample  # noqa: E402
from anynet_search.study.storage import open_storage  # noqa: E402
from anynet_search.training.train import param_groups  # noqa: E402


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


def first_configs(space_name: str, seed: int, n: int, trials: int) -> list:
    """The configs the study's first `n` slots train (attempt 0 of the planned stream), 10 classes, 3 channels."""
    space = load_space(space_name).with_task(10, 3)
    return [planned_sample(space, "random", seed, trials, slot, 0).config for slot in range(n)]


def graphed_step(cfg, batch: int, resolution: int, device: str):
    """A network's training step captured in a CUDA graph (the bare loop's unit of work)."""
    torch.manual_seed(0)
    model = build_model(cfg).to(device=device, memory_format=torch.channels_last).train()
    cuda = device.startswith("cuda")
    lr = torch.tensor(0.1, device=device) if cuda else 0.1
    opt = torch.optim.SGD(param_groups(model, 5e-4), lr=lr, momentum=0.9, nesterov=True, fused=cuda or None)
    x = torch.randn(batch, 3, resolution, resolution, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=cuda, cache_enabled=False):
            loss = F.cross_entropy(model(x).float(), y, label_smoothing=0.1)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)

    if not cuda:
        return step
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()

    def replay(keep=(model, opt, x, y, graph)) -> None:  # the graph reads these tensors: keep them alive
        graph.replay()

    return replay


def bare_loop(steps, n_streams: int, seconds: float, batch: int, device: str) -> float:
    """Training images per second of the graphed steps replayed round robin on `n_streams` streams."""
    cuda = device.startswith("cuda")
    streams = [torch.cuda.Stream() for _ in range(n_streams)] if cuda else [None] * n_streams
    for s in streams:
        if s is not None:
            s.wait_stream(torch.cuda.current_stream())

    def round_robin(rounds: int) -> int:
        done = 0
        for _ in range(rounds):
            for i, step in enumerate(steps):
                if cuda:
                    with torch.cuda.stream(streams[i % n_streams]):
                        step()
                else:
                    step()
                done += 1
        return done

    round_robin(2)  # warm: every graph replayed on its stream once
    if cuda:
        torch.cuda.synchronize()
    t0, done = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        done += round_robin(5)
        if cuda:  # keep the queues bounded (a host far ahead would only measure the launch queue)
            torch.cuda.current_stream().wait_stream(streams[0])
            streams[0].synchronize()
    if cuda:
        torch.cuda.synchronize()
    return done * batch / (time.perf_counter() - t0)


class EpochCounter(threading.Thread):
    """Polls the study's storage: epochs reported by every trial (completed and running) over time."""

    def __init__(self, url: str, name: str, period: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.url, self.name, self.period = url, name, period
        self.series: list[tuple[float, int, int, int]] = []  # (time, epochs, completed, running with >= 1 epoch)
        self.halt = threading.Event()

    def run(self) -> None:
        storage = None
        while not self.halt.wait(self.period):
            try:
                storage = storage or open_storage(self.url)
                study = optuna.load_study(study_name=self.name, storage=storage)
                trials = study.get_trials(deepcopy=False)
            except Exception:  # noqa: BLE001 - the study may not exist yet
                continue
            epochs = completed = reporting = 0
            for t in trials:
                if t.state == TrialState.COMPLETE and "result" in t.user_attrs:
                    completed += 1
                    epochs += len(t.intermediate_values)
                elif t.state == TrialState.RUNNING and t.intermediate_values:
                    reporting += 1
                    epochs += len(t.intermediate_values)
            self.series.append((time.time(), epochs, completed, reporting))


def measure_study(args: argparse.Namespace, root: Path, slots: int) -> dict:
    """One study with the engine's defaults (or `--in-flight`); returns its row."""
    name = f"study-k{slots}"
    train = [("batch_size", args.batch_size), ("lr", args.lr)]
    opts = RunOptions(space=args.space, trials=args.trials, workers=1, in_flight=slots,
                      dataset=f"synthetic:{args.images}", epochs=args.epochs, devices=args.device, study=name,
                      out=str(root), seed=args.seed, train_overrides=tuple(train))
    url = f"journal:{root / name / 'journal.log'}"
    counter = EpochCounter(url, name)
    gpu = GpuSampler()
    gpu.start()
    launched = time.time()
    counter.start()

    def stop_later() -> None:
        time.sleep(args.study_seconds)
        os.kill(os.getpid(), signal.SIGINT)

    stopper = threading.Thread(target=stop_later, daemon=True)
    stopper.start()
    try:
        run_study(opts, progress=ProgressView(stream=open(os.devnull, "w")))
    except KeyboardInterrupt:
        pass
    stopped = time.time()
    counter.halt.set()
    gpu.stop()
    series = [s for s in counter.series if s[0] <= stopped]
    full = next((s for s in series if s[2] + s[3] >= slots), None)  # every slot has reported an epoch
    steady = float("nan")
    if full is not None and series and series[-1][0] > full[0]:
        last = series[-1]
        steady = (last[1] - full[1]) / (last[0] - full[0]) * 3600 / args.epochs
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "result" in t.user_attrs]
    failed = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
              if not str(t.user_attrs.get("failure", "")).endswith("re-enqueued")]
    for t in failed:
        print(f"  failed: trial {t.number}: {t.user_attrs.get('failure')} at {t.user_attrs.get('failure_where')}")
    walls = [t.user_attrs["result"]["wall_seconds"] for t in done]
    first_epoch = next((s[0] for s in series if s[1] > 0), stopped)
    return {"what": f"study, {slots} in flight", "steady evals/h": steady,
            "end-to-end evals/h": len(done) / (stopped - launched) * 3600, "evals": len(done), "failed": len(failed),
            "median s/eval": statistics.median(walls) if walls else float("nan"),
            "first epoch after s": first_epoch - launched,
            "first eval after s": min((t.datetime_complete.timestamp() for t in done), default=stopped) - launched,
            "GPU util %": gpu.mean_util(full[0] if full else launched, stopped),
            "GPU mem MiB": gpu.max_memory(launched, stopped),
            "step modes": sorted({t.user_attrs["result"].get("step_mode", "?") for t in done}),
            "window s": stopped - (full[0] if full else launched)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="anynet_xa_cifar")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--networks", type=int, default=8, help="networks of the bare loop (the study's first configs)")
    p.add_argument("--streams", type=int, default=8, help="streams of the bare loop (and the study's trials in flight)")
    p.add_argument("--in-flight", type=int, nargs="+", default=[8], help="trials in flight of each measured study")
    p.add_argument("--bare-seconds", type=float, default=15.0)
    p.add_argument("--study-seconds", type=float, default=150.0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.4)
    p.add_argument("--images", type=int, default=62500, help="synthetic images in all (default: 45k/5k/12.5k)")
    p.add_argument("--trials", type=int, default=400, help="tickets per study (it is stopped long before)")
    p.add_argument("--json", default=None, help="file for the rows as JSON")
    p.add_argument("--device", default="cuda:0", help="cuda:0 (cpu only checks this script's plumbing)")
    p.add_argument("--skip-bare", action="store_true")
    args = p.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("bench_gpu_throughput: no CUDA device; nothing measured")
        return 1
    print("# bench_gpu_throughput")
    print("machine:", machine_line())
    print(f"settings: {args.space}, {args.epochs} epochs, batch {args.batch_size}, synthetic:{args.images}, "
          f"bare loop {args.networks} networks x {args.bare_seconds:.0f} s, study windows {args.study_seconds:.0f} s")
    rows: list[dict] = []

    def emit(row: dict) -> None:
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:  # after every row, so a later hang loses nothing
            Path(args.json).write_text(json.dumps(rows, indent=1))

    resolution = load_space(args.space).resolution
    from anynet_search.training.data import load_dataset

    train_images = int(load_dataset(f"synthetic:{args.images}", resolution, seed=args.seed).train_x.shape[0])
    if not args.skip_bare:
        t0 = time.perf_counter()
        steps = [graphed_step(cfg, args.batch_size, resolution, args.device)
                 for cfg in first_configs(args.space, args.seed, args.networks, args.trials)]
        print(f"bare loop: {len(steps)} networks captured in {time.perf_counter() - t0:.1f} s", flush=True)
        for n in sorted({1, args.streams}):
            ips = bare_loop(steps, n, args.bare_seconds, args.batch_size, args.device)
            emit({"what": f"bare loop, {n} stream(s)", "img/s": ips,
                  "steady evals/h": ips / (train_images * args.epochs) * 3600})
        del steps
        if cuda:
            torch.cuda.empty_cache()
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.in_flight:
            emit(measure_study(args, Path(tmp), k))
    print("\n" + table(rows))
    bare = next((r for r in rows if r["what"] == f"bare loop, {args.streams} stream(s)"), None)
    if bare:
        for r in rows:
            if r["what"].startswith("study"):
                ratio = r["steady evals/h"] / bare["steady evals/h"]
                print(f"{r['what']}: {r['steady evals/h']:.0f} steady evals/h = {ratio:.2f} x the bare loop on "
                      f"{args.streams} streams ({bare['steady evals/h']:.0f}/h); goal >= 0.90: "
                      f"{'MET' if ratio >= 0.9 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
