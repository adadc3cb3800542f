"""Why tiny models are far below the matmul limit on CPU: the cost of training-mode BatchNorm.

At 1 thread, for the tensor shapes of tiny models (batch 64, 8-128 channels, 2-16 px):

1. native `BatchNorm2d` forward + backward in channels-last and NCHW, against one elementwise
   `mul + add` pass over the same tensor (the floor a memory-bound op is measured against);
2. a hand-written training BN (`var_mean` + one `addcmul` forward, closed-form backward, as a custom
   `autograd.Function` on the channels-last `(N*H*W, C)` view), checked against the native one;
3. whole training steps of three sampled anynet_xa_tiny models in channels-last vs NCHW.

    python benchmarks/bench_batchnorm.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, table, warn_if_busy  # noqa: E402

from anynet_search import build_model, complexity  # noqa: E402
from anynet_search.spaces import load_space  # noqa: E402
from anynet_search.training.train import param_groups  # noqa: E402

SHAPES = ((8, 16), (16, 8), (24, 16), (32, 8), (64, 4), (128, 2))  # (channels, pixels per side), batch 64


class HandWrittenBN(torch.autograd.Function):
    """Training-mode BN over a channels-last tensor: stats over the (N*H*W, C) view, closed-form backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        n, c, h, w = x.shape
        x2 = x.permute(0, 2, 3, 1).reshape(-1, c)  # a view for channels-last input
        var, mean = torch.var_mean(x2, dim=0, correction=0)
        invstd = torch.rsqrt(var + eps)
        scale = weight * invstd
        y2 = torch.addcmul(bias - mean * scale, x2, scale)
        ctx.save_for_backward(x2, weight, mean, invstd)
        ctx.shape = (n, c, h, w)
        return y2.view(n, h, w, c).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, dy):
        x2, weight, mean, invstd = ctx.saved_tensors
        n, c, h, w = ctx.shape
        m = x2.shape[0]
        dy2 = dy.permute(0, 2, 3, 1).reshape(-1, c)
        sum_dy = dy2.sum(0)
        sum_dy_xhat = ((dy2 * x2).sum(0) - mean * sum_dy) * invstd
        k1 = weight * invstd
        k2 = -k1 * invstd * sum_dy_xhat / m
        k3 = -k1 * sum_dy / m - k2 * mean
        dx2 = torch.addcmul(k3, dy2, k1).addcmul_(x2, k2)
        return dx2.view(n, h, w, c).permute(0, 3, 1, 2), sum_dy_xhat, sum_dy, None


def per_call_us(fn, calls: int = 300) -> float:
    for _ in range(10):
        fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


def batchnorm_rows() -> list[dict]:
    rows = []
    for c, px in SHAPES:
        row = {"shape": f"64x{c}x{px}x{px}", "elements": 64 * c * px * px}
        bn = torch.nn.BatchNorm2d(c)
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-1, 1)
        for name, fmt in (("CL", torch.channels_last), ("NCHW", torch.contiguous_format)):
            x = torch.randn(64, c, px, px).contiguous(memory_format=fmt).requires_grad_()
            g = torch.randn(64, c, px, px).contiguous(memory_format=fmt)
            row[f"native {name} us"] = per_call_us(lambda bn=bn, x=x, g=g: bn(x).backward(g))
        x = (torch.randn(64, c, px, px) * 3 + 1).contiguous(memory_format=torch.channels_last).requires_grad_()
        g = torch.randn(64, c, px, px).contiguous(memory_format=torch.channels_last)
        bn.zero_grad()
        bn(x).backward(g)
        ref = (x.grad.clone(), bn.weight.grad.clone(), bn.bias.grad.clone())
        x.grad = None
        bn.zero_grad()
        HandWrittenBN.apply(x, bn.weight, bn.bias, bn.eps).backward(g)
        row["hand-written max grad diff"] = max(float((a - b).abs().max()) for a, b in
                                                zip(ref, (x.grad, bn.weight.grad, bn.bias.grad)))
        row["hand-written CL us"] = per_call_us(
            lambda bn=bn, x=x, g=g: HandWrittenBN.apply(x, bn.weight, bn.bias, bn.eps).backward(g))
        flat = torch.randn(64 * c * px * px)
        row["mul+add pass us"] = per_call_us(lambda flat=flat: flat.mul(2).add_(1))
        row["native CL / pass"] = row["native CL us"] / row["mul+add pass us"]
        rows.append(row)
    return rows


def step_rows() -> list[dict]:
    space = load_space("anynet_xa_tiny").with_task(10, 1)
    ranked = sorted(space.sample_many(64, seed=0), key=lambda s: complexity(s.config, 16).flops)
    rows = []
    for s in (ranked[0], ranked[32], ranked[-1]):
        steppers = {}
        for name, fmt in (("CL", torch.channels_last), ("NCHW", torch.contiguous_format)):
            torch.manual_seed(0)
            model = build_model(s.config).to(memory_format=fmt).train()
            opt = torch.optim.SGD(param_groups(model, 5e-4), lr=0.05, momentum=0.9, nesterov=True, foreach=True)
            x = torch.randn(64, 1, 16, 16).contiguous(memory_format=fmt)
            y = torch.randint(0, 10, (64,))

            def step(model=model, opt=opt, x=x, y=y) -> None:
                loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            steppers[name] = step
        times = {k: [] for k in steppers}
        for v in steppers.values():
            for _ in range(5):
                v()
        for _ in range(7):  # round-robin
            for k, v in steppers.items():
                t0 = time.perf_counter()
                for _ in range(20):
                    v()
                times[k].append((time.perf_counter() - t0) / 20 * 1e3)
        cl, nchw = statistics.median(times["CL"]), statistics.median(times["NCHW"])
        rows.append({"widths": str(list(s.config.widths)), "groups": str(list(s.config.groups)),
                     "MF": complexity(s.config, 16).flops / 1e6, "CL ms/step": cl, "NCHW ms/step": nchw,
                     "NCHW / CL": nchw / cl})
    return rows


def main() -> int:
    torch.set_num_threads(1)
    print("# bench_batchnorm")
    print("machine:", machine_line())
    warn_if_busy()
    print("\n## Training-mode BatchNorm2d, forward + backward, batch 64, 1 thread (µs per call)\n")
    print(table(batchnorm_rows()))
    print("\n## Training steps of three anynet_xa_tiny models (16 px, batch 64, 1 thread)\n")
    print(table(step_rows()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
