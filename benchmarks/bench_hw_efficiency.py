"""Achieved training FLOP/s of sampled models as a fraction of this machine's dense fp32 matmul FLOP/s.

Units: everything is counted in multiply-adds (MACs), the unit of `complexity(cfg, res).flops`; one
training step costs ~3x the forward MACs (forward, grad wrt inputs, grad wrt weights), so

    achieved = 3 * complexity(cfg, res).flops * images/s          [MAC/s]
    peak     = n^3 / seconds of torch.mm on two n x n fp32 matrices  [MAC/s]

(multiply both by 2 for FLOP/s; the fraction is the same). Both are measured in the same run with the same
thread count (1 and 2 threads). Training steps are the trainer's: channels-last fp32, label-smoothed cross
entropy, SGD Nesterov (foreach), with the trainer's batched random-crop augmentation on device tensors.

Model sizes: sampled anynet_xa_tiny models (~1 MF at 16 px, 1 input channel like `digits`), sampled
anynet_xa_cifar models (~20 MF at 32 px) and RegNetX-200MF at 224 px. Finally one training step of a tiny
model is profiled with torch.profiler (top ops by self CPU time), and the step time is measured at several
batch sizes to separate the fixed per-step cost from the per-image cost.

    python benchmarks/bench_hw_efficiency.py           # full
    python benchmarks/bench_hw_efficiency.py --quick   # fewer models and steps
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import linear_fit, machine_line, table, warn_if_busy  # noqa: E402

from anynet_search import build_model, complexity, regnet_zoo  # noqa: E402
from anynet_search.spaces import load_space  # noqa: E402
from anynet_search.training.augment import augment_batch  # noqa: E402
from anynet_search.training.train import param_groups  # noqa: E402


def matmul_peak(threads: int, n: int, seconds: float) -> float:
    """Dense fp32 matmul throughput in MAC/s (best of repeated torch.mm calls)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = max(best, n**3 / (time.perf_counter() - t0))
    return best


def pick_models(quick: bool) -> list[tuple[str, object, int, int, int]]:
    """(label, config, resolution, in_channels, batch) of the benchmarked models."""
    out = []
    for space_name, in_ch, count in (("anynet_xa_tiny", 1, 2 if quick else 3), ("anynet_xa_cifar", 3, 1 if quick else 2)):
        space = load_space(space_name).with_task(10, in_ch)
        samples = space.sample_many(64, seed=0)
        # models at evenly spaced flops quantiles of the space's sample (smallest .. largest of the band)
        ranked = sorted(samples, key=lambda s: complexity(s.config, space.resolution).flops)
        picks = [ranked[round(q * (len(ranked) - 1))] for q in ([0.5] if count == 1 else
                                                                [i / (count - 1) for i in range(count)])]
        for i, s in enumerate(picks):
            out.append((f"{space_name}#{i}", s.config, space.resolution, in_ch, 64))
    out.append(("RegNetX-200MF", regnet_zoo()["RegNetX-200MF"], 224, 3, 32))
    return out


class Stepper:
    def __init__(self, cfg, res: int, in_ch: int, batch: int, pool: int = 1024) -> None:
        torch.manual_seed(0)
        self.model = build_model(cfg).to(memory_format=torch.channels_last).train()
        self.opt = torch.optim.SGD(param_groups(self.model, 5e-4), lr=0.05, momentum=0.9, nesterov=True, foreach=True)
        self.batch, self.res = batch, res
        g = torch.Generator().manual_seed(0)
        self.data_x = torch.randn(max(pool, batch), in_ch, res, res, generator=g)
        self.data_y = torch.randint(0, cfg.num_classes, (max(pool, batch),), generator=g)
        self.gen = torch.Generator().manual_seed(1)
        self.pad = res // 8

    def step(self) -> None:
        idx = torch.randint(0, self.data_x.shape[0], (self.batch,), generator=self.gen)
        xb = augment_batch(self.data_x.index_select(0, idx), self.pad, False, generator=self.gen)
        xb = xb.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(self.model(xb), self.data_y.index_select(0, idx), label_smoothing=0.1)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def images_per_second(self, seconds: float, rounds: int) -> float:
        self.step()
        self.step()
        t0 = time.perf_counter()
        self.step()
        per_step = time.perf_counter() - t0
        steps = max(2, int(seconds / rounds / max(per_step, 1e-6)))
        rates = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(steps):
                self.step()
            rates.append(steps * self.batch / (time.perf_counter() - t0))
        return statistics.median(rates)


def profile_step(cfg, res: int, in_ch: int, batch: int, threads: int, top: int) -> tuple[list[dict], list[dict], float]:
    """Top ops by self CPU time over 5 profiled steps, plus a coarse grouping."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    s = Stepper(cfg, res, in_ch, batch)
    for _ in range(5):
        s.step()
    steps = 5
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            s.step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    rows = []
    for e in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]:
        rows.append({"op": e.key[:60], "self CPU ms/step": e.self_cpu_time_total / 1e3 / steps,
                     "% of self total": 100 * e.self_cpu_time_total / total, "calls/step": e.count // steps,
                     "us/call": e.self_cpu_time_total / max(e.count, 1)})
    groups: dict[str, float] = defaultdict(float)
    for e in events:
        k = e.key
        if "convolution" in k and "backward" in k:
            g = "conv backward"
        elif "mkldnn_convolution" in k or k == "aten::convolution" or k == "aten::_convolution":
            g = "conv forward"
        elif "batch_norm" in k:
            g = "batch norm (fwd+bwd)"
        elif "threshold" in k or "relu" in k:
            g = "relu (fwd+bwd)"
        elif k.startswith("Optimizer") or "_foreach" in k:
            g = "optimizer"
        elif k.startswith("aten::") and any(w in k for w in ("mm", "addmm", "linear")):
            g = "linear"
        elif k.startswith("aten::") and any(w in k for w in ("empty", "copy_", "fill_", "zero_", "resize", "as_strided",
                                                               "view", "reshape", "contiguous", "clone", "t", "to")):
            g = "alloc/copy/view"
        elif k.startswith("aten::"):
            g = "other aten ops"
        else:
            g = "autograd/python/profiler bookkeeping"
        groups[g] += e.self_cpu_time_total
    grouped = [{"group": g, "ms/step": v / 1e3 / steps, "%": 100 * v / total}
               for g, v in sorted(groups.items(), key=lambda kv: -kv[1])]
    return rows, grouped, total / 1e3 / steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--mm-size", type=int, default=2048, help="matrix side of the matmul peak (default 2048)")
    p.add_argument("--seconds", type=float, default=None, help="timed seconds per model and thread count")
    args = p.parse_args(argv)
    seconds = args.seconds or (2.0 if args.quick else 6.0)
    rounds = 3

    print("# bench_hw_efficiency")
    print("machine:", machine_line())
    warn_if_busy()
    models = pick_models(args.quick)
    rows = []
    peaks = {}
    for threads in args.threads:
        peaks[threads] = matmul_peak(threads, args.mm_size, 1.0 if args.quick else 3.0)
        for label, cfg, res, in_ch, batch in models:
            torch.set_num_threads(threads)
            cx = complexity(cfg, res)
            ips = Stepper(cfg, res, in_ch, batch).images_per_second(seconds, rounds)
            achieved = 3 * cx.flops * ips
            rows.append({"model": label, "px": res, "MF (fwd MACs)": cx.flops / 1e6, "params (K)": cx.params / 1e3,
                         "acts (K)": cx.acts / 1e3, "batch": batch, "threads": threads, "img/s": ips,
                         "ms/step": 1e3 * batch / ips, "achieved GMAC/s": achieved / 1e9,
                         "matmul GMAC/s": peaks[threads] / 1e9, "% of matmul": 100 * achieved / peaks[threads]})
            print(f"  {label} threads={threads}: {ips:.0f} img/s", file=sys.stderr, flush=True)
        # re-measure the peak after the models: a drifting machine shows up as a different number
        peaks[threads] = max(peaks[threads], matmul_peak(threads, args.mm_size, 1.0))
    print(f"\nmatmul peak ({args.mm_size}x{args.mm_size} fp32 torch.mm, best call): " +
          ", ".join(f"{t} thread(s): {v / 1e9:.1f} GMAC/s = {2 * v / 1e9:.1f} GFLOP/s" for t, v in peaks.items()))
    for r in rows:
        r["matmul GMAC/s"] = peaks[r["threads"]] / 1e9
        r["% of matmul"] = 100 * r["achieved GMAC/s"] * 1e9 / peaks[r["threads"]]
    print("\n## Achieved training throughput vs dense matmul (3 x forward MACs x img/s)\n")
    print(table(rows))

    # where the time goes for a small model
    mid = [m for m in models if m[0].startswith("anynet_xa_tiny")]
    label, cfg, res, in_ch, _ = mid[len(mid) // 2]
    for threads in args.threads[-1:]:
        top, grouped, ms = profile_step(cfg, res, in_ch, 64, threads, 15)
        print(f"\n## Profile of one training step: {label} ({complexity(cfg, res).flops / 1e6:.2f} MF, {res} px, "
              f"batch 64, {threads} threads): {ms:.1f} ms self CPU per step under the profiler\n")
        print("widths", list(cfg.widths), "depths", list(cfg.depths), "groups", list(cfg.groups))
        print()
        print(table(top))
        print()
        print(table(grouped))

    # fixed per-step cost vs per-image cost (linear fit of step time over batch size)
    print(f"\n## Step time vs batch size: {label}\n")
    fit_rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        pts = []
        for batch in ([8, 64, 256] if args.quick else [4, 16, 64, 256, 1024]):
            ips = Stepper(cfg, res, in_ch, batch, pool=max(1024, batch)).images_per_second(seconds / 2, rounds)
            pts.append((batch, batch / ips))
            fit_rows.append({"threads": threads, "batch": batch, "ms/step": 1e3 * batch / ips, "img/s": ips,
                             "% of matmul": 100 * 3 * complexity(cfg, res).flops * ips / peaks[threads]})
        slope, intercept = linear_fit(pts)
        print(f"threads={threads}: step time ~= {1e3 * intercept:.2f} ms + {1e3 * slope:.3f} ms x batch "
              f"(per-image ceiling {1 / slope:.0f} img/s = "
              f"{100 * 3 * complexity(cfg, res).flops / slope / peaks[threads]:.1f}% of matmul)")
    print()
    print(table(fit_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
