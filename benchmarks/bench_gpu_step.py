"""Per-step cost of the trainer's GPU step modes on sampled CIFAR-size networks: where a short evaluation's time goes.

For the first `--configs` samples of `anynet_xa_cifar` (seed 0; 32 px, 10-40 MF) and one batch size, it
times the trainer's own step objects on a fixed random batch (bf16 autocast, channels-last, fused SGD):

- eager with `cudnn.benchmark` on and off;
- CUDA graph (`TrainConfig.cuda_graphs`): warm-up steps, capture, then replays;
- `torch.compile` (default mode), on the first config only: compiling is per architecture.

Per mode: set-up seconds (model build and move, then every step until the timed ones: warm-up, autotuning,
capture or compilation), median milliseconds per step over `--steps` steps (timed with CUDA events in
blocks of 10), images/s, and the projected seconds of a 10-epoch evaluation on 45,000 images (steps only).

    python benchmarks/bench_gpu_step.py --configs 3 --batch-size 256
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
from _common import machine_line, table  # noqa: E402

from anynet_search import build_model, complexity  # noqa: E402
from anynet_search.spaces import load_space  # noqa: E402
from anynet_search.training.steps import GraphedStep  # noqa: E402
from anynet_search.training.steps import make_step as trainer_step  # noqa: E402
from anynet_search.training.train import param_groups  # noqa: E402

TRAIN_IMAGES = 45_000


def make_step(cfg, mode: str, batch: int):  # noqa: ANN001, ANN201
    """A fresh model and the trainer's step object for `mode`."""
    torch.manual_seed(0)
    model = build_model(cfg).to(device="cuda", memory_format=torch.channels_last).train()
    graphs = mode == "graph"
    lr = torch.tensor(0.1, device="cuda") if graphs else 0.1
    opt = torch.optim.SGD(param_groups(model, 5e-4), lr=lr, momentum=0.9, nesterov=True, fused=True)
    net = torch.compile(model) if mode == "compile" else model
    torch.backends.cudnn.benchmark = mode != "eager, no cudnn.benchmark"
    return trainer_step(net, opt, True, "cuda", 0.1, graph_batch_size=batch if graphs else None)


def time_mode(cfg, mode: str, batch: int, steps: int) -> dict:  # noqa: ANN001
    """Set-up seconds and per-step milliseconds of one mode."""
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, device="cuda", generator=g).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device="cuda", generator=g)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    step = make_step(cfg, mode, batch)
    for _ in range(GraphedStep.WARMUP_STEPS + 2):  # warm-up (graph: capture and first replay)
        step(x, y)
    torch.cuda.synchronize()
    setup = time.perf_counter() - t0
    per_step = []
    for _ in range(max(1, steps // 10)):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            step(x, y)
        end.record()
        end.synchronize()
        per_step.append(start.elapsed_time(end) / 10)
    ms = statistics.median(per_step)
    steps_per_eval = 10 * (TRAIN_IMAGES // batch)
    return {"mode": mode, "step mode": step.mode, "set-up s": setup, "ms/step": ms, "img/s": batch / ms * 1e3,
            "10-epoch steps s": steps_per_eval * ms / 1e3}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to compile)")
    p.add_argument("--out", default=None, help="folder for steps.md")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu_step: no CUDA device; nothing measured")
        return 1
    print("# bench_gpu_step")
    print("machine:", machine_line())
    space = load_space("anynet_xa_cifar").with_task(10, 3)
    rows = []
    runs = []
    samples = space.sample_many(args.configs, seed=0)
    for sample in samples:
        runs += [(sample.config, mode) for mode in ("eager", "eager, no cudnn.benchmark", "graph")]
    if not args.no_compile:  # last: after compiling, one H100 run's later CUDA work failed (illegal instruction)
        runs.append((samples[0].config, "compile"))
    for cfg, mode in runs:
        label = f"d={list(cfg.depths)} w={list(cfg.widths)} {complexity(cfg, 32).flops / 1e6:.1f} MF"
        try:
            row = time_mode(cfg, mode, args.batch_size, args.steps)
        except Exception as exc:  # noqa: BLE001 - report the failing mode and go on
            row = {"mode": mode, "step mode": f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"}
        rows.append({"config": label, "batch": args.batch_size, **row})
        print(rows[-1], flush=True)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    text = table(rows, columns)
    print("\n" + text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        Path(args.out, "steps.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
