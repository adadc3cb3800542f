"""`train()` alone, in one process at 1 thread: the summed training seconds of 3 sampled anynet_xa_tiny configs for 2
epochs on digits, 3 repeats after a warm-up, with whichever anynet-search the interpreter imports (the old layout's
module paths are tried when the new ones are missing). Run it with two installs' interpreters to compare them:

    /tmp/venv-old/bin/python benchmarks/bench_train_alone.py && .venv/bin/python benchmarks/bench_train_alone.py
    .venv/bin/python benchmarks/bench_train_alone.py --profile    # cProfile of one pass, by own time
"""

from __future__ import annotations

import cProfile
import pstats
import sys

import numpy as np
import torch

from anynet_search import build_model, load_space

try:
    from anynet_search.training.data import load_dataset
    from anynet_search.training.interface import TrainConfig
    from anynet_search.training.train import train
except ImportError:  # the layout before the folders
    from anynet_search.data import load_dataset  # type: ignore[no-redef]
    from anynet_search.train import TrainConfig, train  # type: ignore[no-redef]


def main() -> int:
    """Warm up, then print three repeats (or one profiled pass)."""
    torch.set_num_threads(1)
    space = load_space("anynet_xa_tiny")
    data = load_dataset("digits", space.resolution, seed=0)
    space = space.with_task(data.num_classes, data.in_channels)
    rng = np.random.default_rng(0)
    configs = [space.sample(rng) for _ in range(3)]

    def one_pass() -> float:
        total = 0.0
        for i, cfg in enumerate(configs):
            torch.manual_seed(i)
            total += train(build_model(cfg), data, TrainConfig(epochs=2), "cpu", seed=i).train_seconds
        return total

    one_pass()  # warm-up
    if "--profile" in sys.argv:
        profile = cProfile.Profile()
        profile.enable()
        one_pass()
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(14)
    else:
        print(sys.executable, "train s", [round(one_pass(), 2) for _ in range(3)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
