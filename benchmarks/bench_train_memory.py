"""Training memory per counted act: calibrates and checks `anynet_search.training.memory` (the too-large-model
check).

Part 1 (exact, no timing noise): for configs sampled from several bundled spaces plus hand-picked ones
(published RegNets, res stem, basic/vanilla blocks, SE), one forward pass in train mode, channels-last,
fp32 (the trainer's CPU setting) under `torch.autograd.graph.saved_tensors_hooks`, summing the distinct
storages autograd saves for backward (parameters excluded: they are counted separately). Prints saved bytes
per counted act per image; `memory.SAVED_BYTES_PER_ACT` must be at least the largest ratio.

Part 2 (a real-memory check): for the largest configs, a fresh subprocess builds the model and a batch,
resets the peak RSS (/proc/self/clear_refs), runs two full training steps (forward, backward, SGD with
momentum) and one evaluation batch, and compares the peak RSS increase with `memory.config_memory(...).total`.

    python benchmarks/bench_train_memory.py            # 8 samples per space, batch 64, eval batch 1024
    python benchmarks/bench_train_memory.py --quick    # 2 samples per space
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _common import machine_line, table  # noqa: E402

from anynet_search import AnyNetConfig, build_model, complexity, regnet_zoo  # noqa: E402
from anynet_search.models.complexity import largest_activation  # noqa: E402
from anynet_search.spaces import load_space  # noqa: E402
from anynet_search.training.memory import SAVED_BYTES_PER_ACT, config_memory, human_bytes  # noqa: E402
from anynet_search.training.train import TrainConfig  # noqa: E402

SPACES = ("anynet_xa_tiny", "anynet_xe_tiny", "regnet_y_tiny", "anynet_xa_cifar", "regnet_x_cifar")


def hand_configs() -> list[tuple[str, AnyNetConfig, int]]:
    """Published models and the stems/blocks the sampled spaces do not use, with their resolutions."""
    zoo = regnet_zoo()
    out = [("RegNetX-200MF", zoo["RegNetX-200MF"], 32), ("RegNetY-400MF", zoo["RegNetY-400MF"], 32)]
    base = dict(depths=(2, 2), widths=(32, 64), bottleneck_ratios=(1, 1), group_widths=(8, 8), strides=(2, 2),
                num_classes=10)
    out.append(("res stem, x block", AnyNetConfig(**base, stem_type="res"), 64))
    out.append(("res_basic block", AnyNetConfig(**base, stem_type="cifar", block_type="res_basic"), 32))
    out.append(("vanilla block", AnyNetConfig(**base, stem_type="cifar", block_type="vanilla"), 32))
    out.append(("head_width 256", AnyNetConfig(**base, stem_type="cifar", head_width=256), 32))
    return out


def saved_bytes(cfg: AnyNetConfig, resolution: int, batch: int) -> int:
    """Bytes of the distinct non-parameter storages autograd saves in one train-mode forward."""
    torch.manual_seed(0)
    model = build_model(cfg).to(memory_format=torch.channels_last).train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    x = torch.randn(batch, cfg.in_channels, resolution, resolution).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, cfg.num_classes, (batch,))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
    del loss
    return sum(seen.values())


CHILD = r"""
import json, sys, torch
import torch.nn.functional as F
from anynet_search import AnyNetConfig, build_model
from anynet_search.training.train import param_groups
cfg = AnyNetConfig.from_dict(json.loads(sys.argv[1])); r, batch, eval_batch = map(int, sys.argv[2:5])
torch.set_num_threads(1)
model = build_model(cfg).to(memory_format=torch.channels_last).train()
opt = torch.optim.SGD(param_groups(model, 5e-4), lr=0.1, momentum=0.9, nesterov=True, foreach=True)
x = torch.randn(batch, cfg.in_channels, r, r).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, cfg.num_classes, (batch,))
xe = torch.randn(eval_batch, cfg.in_channels, r, r).contiguous(memory_format=torch.channels_last)
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
open("/proc/self/clear_refs", "w").write("5")  # peak RSS := current RSS
before = status("VmRSS")
for _ in range(2):
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y, label_smoothing=0.1).backward()
    opt.step()
train_peak = status("VmHWM") - before
model.eval()
with torch.no_grad():
    model(xe)
print(json.dumps({"train_peak": train_peak, "total_peak": status("VmHWM") - before}))
"""


def measured_peak(cfg: AnyNetConfig, resolution: int, batch: int, eval_batch: int) -> dict:
    """Peak RSS increase of two training steps and one evaluation batch, in a fresh process."""
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg.to_dict()), str(resolution), str(batch),
                          str(eval_batch)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 samples per space")
    p.add_argument("--samples", type=int, default=None, help="samples per space (default 8, quick 2)")
    p.add_argument("--batch", type=int, default=64, help="training batch (default 64, the trainer's)")
    p.add_argument("--eval-batch", type=int, default=1024, help="evaluation batch (default 1024, the trainer's)")
    p.add_argument("--peaks", type=int, default=4, help="configs (the largest by acts) measured in part 2 (default 4)")
    args = p.parse_args(argv)
    n = args.samples or (2 if args.quick else 8)
    torch.set_num_threads(1)
    print("# bench_train_memory")
    print("machine:", machine_line())
    configs = hand_configs()
    for name in SPACES:
        space = load_space(name)
        configs += [(f"{name} #{i}", s.config, space.resolution) for i, s in enumerate(space.sample_many(n, seed=1))]
    rows = []
    for label, cfg, r in configs:
        cx = complexity(cfg, r)
        b = saved_bytes(cfg, r, args.batch)
        rows.append({"config": label, "px": r, "params": cx.params, "acts": cx.acts,
                     "saved MiB": b / 2**20, "bytes/act": b / (cx.acts * args.batch), "_cfg": cfg})
    print(f"\n## Part 1: autograd's saved tensors per counted act (batch {args.batch}, fp32, channels-last)\n")
    print(table(rows, ["config", "px", "params", "acts", "saved MiB", "bytes/act"]))
    ratios = [r["bytes/act"] for r in rows]
    print(f"\nbytes per act: min {min(ratios):.2f}, median {sorted(ratios)[len(ratios) // 2]:.2f}, "
          f"max {max(ratios):.2f}; memory.SAVED_BYTES_PER_ACT = {SAVED_BYTES_PER_ACT}"
          f" ({'covers' if SAVED_BYTES_PER_ACT >= max(ratios) else 'DOES NOT cover'} every config)")

    train = TrainConfig(batch_size=args.batch, eval_batch_size=args.eval_batch)
    print(f"\n## Part 2: peak RSS increase of 2 training steps + 1 eval batch of {args.eval_batch} vs the estimate\n")
    peaks = []
    for row in sorted(rows, key=lambda r: r["acts"], reverse=True)[:args.peaks]:
        cfg, r = row["_cfg"], row["px"]
        est = config_memory(cfg, r, train)
        got = measured_peak(cfg, r, args.batch, args.eval_batch)
        peaks.append({"config": row["config"], "largest act": largest_activation(cfg, r),
                      "estimate": human_bytes(est.total), "measured train": human_bytes(got["train_peak"]),
                      "measured train+eval": human_bytes(got["total_peak"]),
                      "estimate / measured": est.total / max(got["total_peak"], 1)})
    print(table(peaks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
