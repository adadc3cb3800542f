"""Which CUDA step variant crashes on which sampled network: each (config, shortcut form, cudnn.benchmark, step mode)
trains one short epoch in its own process (a CUDA error poisons its process), all in parallel.

The shortcut forms are the model's strided slice + stride-1 1x1 conv ("slice") and the plain stride-2
1x1 conv ("conv", patched in here). Eager variants run with CUDA_LAUNCH_BLOCKING=1 so a failure names its op.
Children run a few at a time with one CPU thread each and are killed (with anything they started) after
`--child-timeout` seconds. The last line is a JSON verdict: the first variant, in the order tried, that trained every config.

    python benchmarks/gpu_diag.py --configs 4
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import traceback

from torch import nn

VARIANTS = [(s, b, m) for s, b, m in itertools.product(["slice", "conv"], [True, False], ["eager", "graph"])]


def use_conv_shortcut() -> None:
    """Patch the model's shortcut back to one stride-2 1x1 conv for every input width (no strided slice)."""
    from anynet_search.models import blocks

    def forward(self, x):  # noqa: ANN001, ANN202
        if self.slice > 1:
            self[0].stride, self.slice = (self.slice, self.slice), 1
        return nn.Sequential.forward(self, x)

    blocks.Shortcut.forward = forward


def objective(trial, cfg, settings, resolution, device):  # noqa: ANN001, ANN201
    """The trainer's objective with the shortcut form named by ANYNET_DIAG_SHORTCUT (for bench_gpu_throughput)."""
    from anynet_search.study.objective import run_trial

    if os.environ.get("ANYNET_DIAG_SHORTCUT") == "conv":
        use_conv_shortcut()
    return run_trial(trial, cfg, settings, resolution, device)


def child(index: int, shortcut: str, bench: bool, mode: str) -> None:
    import torch

    torch.set_num_threads(1)
    from anynet_search import build_model
    from anynet_search.spaces import load_space
    from anynet_search.training.data import load_dataset
    from anynet_search.training.train import TrainConfig, seed_everything, train

    if shortcut == "conv":
        use_conv_shortcut()
    cfg = load_space("anynet_xa_cifar").with_task(10, 3).sample_many(index + 1, seed=0)[index].config
    data = load_dataset(f"synthetic:{os.environ.get('ANYNET_DIAG_IMAGES', '12500')}", 32, seed=0)
    seed_everything(0)
    try:
        r = train(build_model(cfg), data, TrainConfig(epochs=1, batch_size=256, lr=0.4, cudnn_benchmark=bench,
                                                      cuda_graphs=mode == "graph"),
                  device=os.environ.get("ANYNET_DIAG_DEVICE", "cuda"))
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        print(json.dumps({"ok": True, "mode": r.step_mode, "val": r.val_error, "train_s": r.train_seconds}))
    except Exception as exc:  # noqa: BLE001
        frames = [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.line}" for f in traceback.extract_tb(exc.__traceback__)]
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}",
                          "where": frames[-3:]}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", type=int, default=4)
    p.add_argument("--parallel", type=int, default=4, help="children at a time (default 4)")
    p.add_argument("--child-timeout", type=float, default=60.0, help="seconds before a child is killed")
    p.add_argument("--child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        i, s, b, m = args.child
        child(int(i), s, b == "1", m)
        return 0
    keys = [(i, s, b, m) for i in range(args.configs) for s, b, m in VARIANTS]
    results = {}
    running: dict[tuple, tuple[subprocess.Popen, float]] = {}
    # a few at a time, one CPU thread each: 32 processes of 16 threads each once buried a 16-core machine
    while keys or running:
        while keys and len(running) < args.parallel:
            key = keys.pop(0)
            i, s, b, m = key
            env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_LAUNCH_BLOCKING="1" if m == "eager" else "0")
            proc = subprocess.Popen([sys.executable, __file__, "--child", str(i), s, str(int(b)), m], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    start_new_session=True)
            running[key] = (proc, time.time())
        for key, (proc, started) in list(running.items()):
            if proc.poll() is None and time.time() - started < args.child_timeout:
                continue
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the child and anything it started
            out = proc.communicate()[0] or ""
            last = [line for line in out.splitlines() if line.startswith("{")]
            tail = out.strip().splitlines()[-1:] or ["no output"]
            results[key] = (json.loads(last[-1]) if last and proc.returncode == 0
                            else {"ok": False, "error": f"exit {proc.returncode}: {tail[0][:200]}"})
            del running[key]
            print(key, json.dumps(results[key]), flush=True)
        time.sleep(0.2)
    verdict = None
    for s, b, m in VARIANTS:
        if m == "eager" and all(results[(i, s, b, m)]["ok"] for i in range(args.configs)):
            verdict = {"shortcut": s, "cudnn_benchmark": b}
            break
    print(json.dumps({"verdict": verdict}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
