"""Training images per second on the same networks from the three places a data set can live: a normalized
float32 copy in memory, a prepared uint8 store uploaded to the device, and a store streamed from the host.

Prepares `synthetic:N` at the space's resolution with `anynet-search prepare` (no margin: the shift protocol,
as the in-memory copy trains), then trains each of the first `--networks` configs of the space's planned
stream once per data form and round, the forms in a rotating order, with `train()` (CUDA graphs and bf16 on a
GPU, as a study trains). The rate is training images x epochs / the device time of the training epochs (the
trainer's `train_seconds`: no upload, no validation). Printed: the median rate of each form over networks and
rounds, and each form's ratio to the in-memory rate, paired by network and round.

    python benchmarks/bench_data_rates.py --device cuda:0 --json /tmp/data_rates.json
    python benchmarks/bench_data_rates.py --device cpu --images 1200 --networks 2 --space anynet_xa_tiny  # plumbing

On the CPU the two store forms are one path (the memory map is the host): a check of this script, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, table  # noqa: E402

from anynet_search import build_model, load_space  # noqa: E402
from anynet_search.study.settings import planned_sample  # noqa: E402
from anynet_search.training.data import load_dataset  # noqa: E402
from anynet_search.training.placement import STREAM_ENV  # noqa: E402
from anynet_search.training.train import TrainConfig, seed_everything, train  # noqa: E402

FORMS = {"in memory (float32)": None, "store uploaded (uint8)": "0", "store streamed from the host": "1"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="anynet_xa_cifar")
    p.add_argument("--networks", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--images", type=int, default=62500, help="synthetic images in all (45k/5k/12.5k split)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.4)
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    space = load_space(args.space).with_task(10, 3)
    resolution = space.resolution
    work = Path(tempfile.mkdtemp(prefix="bench-data-rates-"))
    spec = f"synthetic:{args.images}"
    subprocess.run([sys.executable, "-m", "anynet_search", "prepare", spec, "--out", str(work / "store"),
                    "--resolution", str(resolution), "--margin", "none"], check=True, stdout=subprocess.DEVNULL)
    data = {"in memory (float32)": load_dataset(spec, resolution),
            "store": load_dataset(f"prepared:{work / 'store'}", resolution)}
    configs = [planned_sample(space, "random", 0, args.networks, slot, 0).config for slot in range(args.networks)]
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, augment="shift")
    print("# bench_data_rates")
    print("machine:", machine_line())
    rates: dict[str, dict[tuple[int, int], float]] = {form: {} for form in FORMS}
    names = list(FORMS)
    for rnd in range(args.rounds):
        for k in range(len(names)):
            form = names[(rnd + k) % len(names)]
            env = FORMS[form]
            if env is None:
                os.environ.pop(STREAM_ENV, None)
            else:
                os.environ[STREAM_ENV] = env
            splits = data["in memory (float32)"] if env is None else data["store"]
            for n, config in enumerate(configs):
                seed_everything(n)
                result = train(build_model(config), splits, cfg, device=args.device, seed=n)
                rates[form][(rnd, n)] = splits.split_size("train") * args.epochs / result.train_seconds
    os.environ.pop(STREAM_ENV, None)
    base = rates[names[0]]
    rows = []
    for form in names:
        ratios = [rates[form][key] / base[key] for key in base]
        rows.append({"data": form, "median images/s": statistics.median(rates[form].values()),
                     "median ratio to in memory (paired)": statistics.median(ratios),
                     "min ratio": min(ratios), "max ratio": max(ratios)})
    print(f"space {args.space} at {resolution} px, {args.networks} networks x {args.rounds} rounds, "
          f"{args.epochs} epoch(s), batch {args.batch_size}, device {args.device}")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
