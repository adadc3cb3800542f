"""Training-step throughput (images/s) of `build_model(cfg)` vs torchvision's RegNet for the same parameters.

For each RegNet (d, w0, wa, wm, g, b, se) it builds our model from `regnet(...)` and torchvision's
`RegNet(BlockParams.from_init_params(...))`, checks that both have the same stage widths, depths, group
widths and parameter count, and times full training steps (forward, label-smoothed cross entropy,
backward, SGD with Nesterov momentum and weight decay: the trainer's step) on random data:

- CPU, fp32: our model in channels-last (what `anynet_search.training.train` uses) and NCHW; torchvision in
  NCHW (its default) and channels-last;
- CUDA (only when `torch.cuda.is_available()`): bf16 autocast + channels-last for both.

Variants are timed round-robin (every variant once per round, `--rounds` rounds, order rotated each round);
the median round is reported, and ratios are paired per round (variant / reference in the same round, then
the median over rounds), so slow drifts of the machine hit all variants alike.

torchvision is a benchmark-only extra (`pip install -e ".[bench]"`); without it only our model is timed
and the script says so.

    python benchmarks/bench_model_speed.py            # full: 2 models, 32 px batch 32..256, 224 px batch 32..128
    python benchmarks/bench_model_speed.py --quick    # RegNetX-200MF, one batch size per resolution
    python benchmarks/bench_model_speed.py --devices cuda --batch-32 128 --batch-224 64   # GPU only
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, table, warn_if_busy  # noqa: E402

from anynet_search import complexity, regnet  # noqa: E402
from anynet_search.models.zoo import REGNET_PARAMS  # noqa: E402

try:
    import torchvision
    from torchvision.models.regnet import BlockParams, RegNet

    TV_VERSION: str | None = torchvision.__version__
except ImportError:  # benchmark-only extra
    BlockParams = RegNet = None
    TV_VERSION = None


@dataclass(frozen=True)
class Spec:
    name: str
    depth: int
    w0: float
    wa: float
    wm: float
    group_width: int
    bottleneck_ratio: float = 1.0
    se_ratio: float = 0.0


def zoo_spec(name: str) -> Spec:
    d, w0, wa, wm, g = REGNET_PARAMS[name]
    return Spec(name, d, w0, wa, wm, g, 1.0, 0.25 if name.startswith("RegNetY") else 0.0)


def ours(spec: Spec, num_classes: int) -> nn.Module:
    from anynet_search import build_model

    cfg = regnet(spec.depth, spec.w0, spec.wa, spec.wm, spec.group_width, spec.bottleneck_ratio, spec.se_ratio,
                 num_classes=num_classes)
    return build_model(cfg)


def torchvision_model(spec: Spec, num_classes: int) -> nn.Module:
    bp = BlockParams.from_init_params(depth=spec.depth, w_0=spec.w0, w_a=spec.wa, w_m=spec.wm,
                                      group_width=spec.group_width, bottleneck_multiplier=1.0 / spec.bottleneck_ratio,
                                      se_ratio=spec.se_ratio or None)
    return RegNet(bp, num_classes=num_classes, stem_width=32)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def structure_check(spec: Spec, num_classes: int) -> dict:
    """Both models' stage structure and parameter counts (and our analytic count)."""
    cfg = regnet(spec.depth, spec.w0, spec.wa, spec.wm, spec.group_width, spec.bottleneck_ratio, spec.se_ratio,
                 num_classes=num_classes)
    row = {"model": spec.name, "ours: widths": str(list(cfg.widths)), "ours: depths": str(list(cfg.depths)),
           "ours: groups": str(list(cfg.groups)), "ours: params": n_params(ours(spec, num_classes)),
           "ours: analytic params": complexity(cfg, 224).params, "ours: MF @224": complexity(cfg, 224).flops / 1e6}
    if RegNet is not None:
        bp = BlockParams.from_init_params(depth=spec.depth, w_0=spec.w0, w_a=spec.wa, w_m=spec.wm,
                                          group_width=spec.group_width,
                                          bottleneck_multiplier=1.0 / spec.bottleneck_ratio,
                                          se_ratio=spec.se_ratio or None)
        tv_groups = [w // g for w, g in zip(bp.widths, bp.group_widths)]
        row.update({"tv: widths": str(list(bp.widths)), "tv: depths": str(list(bp.depths)),
                    "tv: groups": str(tv_groups), "tv: params": n_params(torchvision_model(spec, num_classes))})
        same = (list(bp.widths) == list(cfg.widths) and list(bp.depths) == list(cfg.depths)
                and tv_groups == list(cfg.groups) and row["tv: params"] == row["ours: params"])
        row["same"] = "yes" if same else "NO"
    return row


class Variant:
    """One model + optimizer + batch on one device/format, able to run timed training steps."""

    def __init__(self, label: str, model: nn.Module, batch: int, res: int, device: str, channels_last: bool,
                 amp: bool, num_classes: int) -> None:
        self.label, self.device, self.amp, self.batch = label, device, amp, batch
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(device=device, memory_format=fmt).train()
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(batch, 3, res, res, generator=g).to(device).contiguous(memory_format=fmt)
        self.y = torch.randint(0, num_classes, (batch,), generator=g).to(device)
        decay = [p for p in self.model.parameters() if p.ndim > 1]
        no_decay = [p for p in self.model.parameters() if p.ndim <= 1]
        on_cuda = device.startswith("cuda")
        self.opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0}],
                                   lr=0.01, momentum=0.9, nesterov=True,
                                   fused=True if on_cuda else None, foreach=None if on_cuda else True)

    def step(self) -> None:
        with torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16, enabled=self.amp):
            logits = self.model(self.x)
            loss = F.cross_entropy(logits.float(), self.y, label_smoothing=0.1)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def sync(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def timed(self, steps: int) -> float:
        """Images per second over `steps` steps."""
        self.sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        self.sync()
        return steps * self.batch / (time.perf_counter() - t0)


def measure(spec: Spec, res: int, batch: int, device: str, rounds: int, min_seconds: float, num_classes: int) -> list[dict]:
    """Round-robin timing of every variant at one (model, resolution, batch, device)."""
    cuda = device.startswith("cuda")
    builders = [("ours", ours, True), ("ours", ours, False)] if not cuda else [("ours", ours, True)]
    if RegNet is not None:
        builders += [("torchvision", torchvision_model, False), ("torchvision", torchvision_model, True)] if not cuda \
            else [("torchvision", torchvision_model, True)]
    variants = []
    for impl, build, cl in builders:
        torch.manual_seed(0)
        fmt = "channels-last" if cl else "NCHW"
        label = f"{impl} {'bf16' if cuda else 'fp32'} {fmt}"
        variants.append(Variant(label, build(spec, num_classes), batch, res, device, cl, cuda, num_classes))
    # warm-up (allocator, oneDNN primitive cache, cudnn autotune) and step-count calibration
    steps = {}
    for v in variants:
        for _ in range(3):
            v.step()
        v.sync()
        t0 = time.perf_counter()
        v.step()
        v.step()
        v.sync()
        dt = (time.perf_counter() - t0) / 2
        steps[v.label] = max(2, int(min_seconds / max(dt, 1e-6)) + 1)
    results: dict[str, list[float]] = {v.label: [] for v in variants}
    for r in range(rounds):
        k = r % len(variants)  # rotate the order so no variant always runs first / after the same one
        for v in variants[k:] + variants[:k]:
            results[v.label].append(v.timed(steps[v.label]))
    med = {k: statistics.median(r) for k, r in results.items()}
    ours_cl = variants[0].label
    tv_labels = [k for k in results if k.startswith("torchvision")]
    tv_best = max(tv_labels, key=med.get) if tv_labels else None
    rows = []
    for v in variants:
        ips = med[v.label]
        paired = [a / b for a, b in zip(results[v.label], results[ours_cl])]
        vs_tv = ([a / b for a, b in zip(results[v.label], results[tv_best])] if tv_best else [float("nan")])
        rows.append({"model": spec.name, "px": res, "batch": batch, "device": device, "variant": v.label,
                     "img/s": ips, "min..max img/s": f"{min(results[v.label]):.1f}..{max(results[v.label]):.1f}",
                     "steps x rounds": f"{steps[v.label]}x{rounds}",
                     "vs ours CL": statistics.median(paired), "vs best tv": statistics.median(vs_tv),
                     "vs best tv min..max": f"{min(vs_tv):.2f}..{max(vs_tv):.2f}" if tv_best else "-"})
    del variants
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one model, one batch size per resolution, 2 rounds")
    p.add_argument("--models", nargs="+", default=None, help="zoo names (default RegNetX-200MF RegNetY-400MF)")
    p.add_argument("--batch-32", type=int, nargs="+", default=None, help="batch sizes at 32 px (default 32 64 128 256)")
    p.add_argument("--batch-224", type=int, nargs="+", default=None, help="batch sizes at 224 px (default 32 64 128)")
    p.add_argument("--resolutions", type=int, nargs="+", default=[32, 224], help="default 32 224")
    p.add_argument("--rounds", type=int, default=None, help="round-robin rounds (default 5, quick 3)")
    p.add_argument("--min-seconds", type=float, default=None,
                   help="target seconds per variant and round (default 0.8, quick 0.5; at least 2 steps)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's default)")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], default=None,
                   help="default: cpu, and cuda when available")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = args.models or (["RegNetX-200MF"] if args.quick else ["RegNetX-200MF", "RegNetY-400MF"])
    b32 = args.batch_32 or ([64] if args.quick else [32, 64, 128, 256])
    b224 = args.batch_224 or ([32] if args.quick else [32, 64, 128])
    rounds = args.rounds or (3 if args.quick else 5)
    min_seconds = args.min_seconds or (0.5 if args.quick else 0.8)

    print("# bench_model_speed")
    print("machine:", machine_line())
    print(f"CPU threads used: {torch.get_num_threads()}")
    if TV_VERSION is None:
        print("torchvision: NOT INSTALLED - only our model is timed. Install the benchmark extra "
              "(pip install -e '.[bench]', torchvision matching your torch) to compare.")
    else:
        print(f"torchvision: {TV_VERSION}")
    warn_if_busy()
    specs = [zoo_spec(m) for m in models]

    print(f"\n## Structure and parameter counts (num_classes={args.num_classes})\n")
    print(table([structure_check(s, args.num_classes) for s in specs]))

    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    if not torch.cuda.is_available():
        print("\nCUDA: not available - the bf16 channels-last CUDA path is skipped.")
    rows = []
    for device in devices:
        for spec in specs:
            for res, batches in ((r, b32 if r == 32 else b224) for r in args.resolutions):
                for batch in batches:
                    rows += measure(spec, res, batch, device, rounds, min_seconds, args.num_classes)
                    print(f"  done {spec.name} {res}px batch {batch} on {device}", file=sys.stderr, flush=True)
    print("\n## Training-step throughput (median round; 'vs' columns are ratios of img/s)\n")
    print(table(rows, ["model", "px", "batch", "device", "variant", "img/s", "min..max img/s", "steps x rounds",
                       "vs ours CL", "vs best tv", "vs best tv min..max"]))
    if TV_VERSION is not None:
        print("\n## Ours (best format) vs torchvision (best format), per setting\n")
        summary = []
        keys = sorted({(r["model"], r["px"], r["batch"], r["device"]) for r in rows}, key=lambda k: (k[3], k[0], k[1], k[2]))
        for key in keys:
            sel = [r for r in rows if (r["model"], r["px"], r["batch"], r["device"]) == key]
            tv = [r for r in sel if r["variant"].startswith("torchvision")]
            tv_best = max(tv, key=lambda r: r["img/s"])
            ours_cl = sel[0]
            ours_best = max((r for r in sel if r["variant"].startswith("ours")), key=lambda r: r["img/s"])
            summary.append({"model": key[0], "px": key[1], "batch": key[2], "device": key[3],
                            "ours CL img/s": ours_cl["img/s"], "best tv": tv_best["variant"],
                            "best tv img/s": tv_best["img/s"], "ours CL / best tv (paired median)": ours_cl["vs best tv"],
                            "min..max over rounds": ours_cl["vs best tv min..max"], "best ours": ours_best["variant"]})
        print(table(summary))
        ratios = [s["ours CL / best tv (paired median)"] for s in summary]
        geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        consistently_slower = [f"{s['model']} {s['px']}px b{s['batch']}" for s in summary
                               if float(s["min..max over rounds"].split("..")[1]) < 1.0]
        print(f"\nOurs (channels-last, the trainer's format) / torchvision (its faster format), paired per round: "
              f"median over settings {statistics.median(ratios):.3f}, geometric mean {geo:.3f}, range "
              f"{min(ratios):.3f}..{max(ratios):.3f}; settings where ours was slower in every round: "
              f"{', '.join(consistently_slower) or 'none'}")
        ok = not consistently_slower and geo >= 0.98
        print(f"Goal 'never slower than torchvision': {'MET' if ok else 'MISSED'} (criterion: slower in no setting in "
              "every round, and geometric mean >= 0.98; single-setting medians within the round-to-round noise count as parity)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
