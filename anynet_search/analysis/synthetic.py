"""Synthetic results frames (AnyNetXA-like random samples) for tests, examples and benchmarks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from anynet_search.analysis._checks import check_positive_int


def synthetic_results(n: int, n_stages: int = 4, seed: int = 0, noise: float = 1.0) -> pd.DataFrame:
    """A tidy results frame of `n` random AnyNetXA-style models with a plausible, smooth error model.

    Depths are log-uniform in 1..16, widths log-uniform multiples of 8 in 8..1024, bottleneck ratios
    in {1, 2, 4} and group widths in {1, ..., 32}, each stage independently. Flops are a rough
    per-stage proxy; the error falls with log flops plus Gaussian `noise` (percentage points). Tests
    overwrite `error` to plant the effects they look for.
    """
    n = check_positive_int(n, "n")
    n_stages = check_positive_int(n_stages, "n_stages")
    rng = np.random.default_rng(seed)
    d = np.clip(np.round(np.exp(rng.uniform(0, np.log(16), (n, n_stages)))), 1, 16).astype(np.int64)
    w = np.clip(np.round(np.exp(rng.uniform(np.log(8), np.log(1024), (n, n_stages))) / 8) * 8, 8, 1024)
    w = w.astype(np.int64)
    b = rng.choice([1, 2, 4], (n, n_stages))
    g = rng.choice([1, 2, 4, 8, 16, 32], (n, n_stages))
    resolution = (56.0 / 2 ** np.arange(n_stages)) ** 2
    flops = (d * w.astype(float) ** 2 / b * resolution).sum(axis=1) + 1e6
    error = 60.0 - 3.0 * np.log10(flops) + noise * rng.standard_normal(n)
    frame = {
        "study": "synthetic",
        "space": "AnyNetXA",
        "sampler": "random",
        "trial": np.arange(n),
        "error": error,
        "test_error": error + 0.2 * rng.standard_normal(n),
        "flops": flops,
        "params": (d * w.astype(float) ** 2 / b).sum(axis=1),
        "acts": (d * w * resolution).sum(axis=1),
        "epochs": 10,
        "train_seconds": rng.uniform(60, 600, n),
    }
    for fam, values in (("d", d), ("w", w), ("b", b), ("g", g)):
        for i in range(n_stages):
            frame[f"{fam}{i + 1}"] = values[:, i]
    return pd.DataFrame(frame)
