"""Training noise: how far a result moves when the same configs are trained again under other training seeds.

Two studies of the same configs, data split and trainer that differ only in their training seeds (`run --repeat
K`, alone or with `--configs-from`) are matched model by model (`fidelity.match_models`). `retrain_noise` gives:

- the per-model differences d = second - first: how many models changed, the mean |d|, the largest |d|, the
  standard deviation of d and, from it, the noise of one model's error (sd(d) / sqrt 2: each run adds its own);
- the shift of the mean error between the two trainings (a paired 95% t interval over the models);
- the share of the errors' variance that is training noise (noise variance over the errors' variance);
- Spearman's rho (and Kendall's tau) of the two runs with BCa intervals: the test-retest rank correlation. It is
  the noise ceiling of fidelity: a cheap budget that ranks the models like one run of this budget as well as a
  second run of it does cannot be asked for more (under the classical model error = quality + independent
  noise, no evaluation at all can exceed sqrt(rho) against one run).

`noise_sd_of_difference` turns the per-model noise into the sd that retraining alone gives the difference of
two studies' mean errors, and `beyond_noise` says how many such sds a difference between spaces is: the part
of a difference between spaces that a retrain could not produce.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from anynet_search.analysis.fidelity import MIN_MATCHED, match_models, rank_correlations


@dataclass(frozen=True)
class RetrainNoise:
    """What `retrain_noise` measured on two trainings of the same configs."""

    n: int  # models trained in both
    changed: int  # models whose error differs
    mean_abs: float  # mean |d| (points)
    largest: float  # largest |d|
    sd_diff: float  # sd of d
    shift: float  # mean of d: how far the mean error moved
    shift_lo: float
    shift_hi: float
    error_sd: float  # sd of the errors (both runs pooled)
    correlations: pd.DataFrame  # `rank_correlations` of the two runs (rows spearman, kendall)
    pairs: pd.DataFrame  # `match_models(first, second)`: error_low is the first training, error_high the second

    @property
    def model_sd(self) -> float:
        """Training noise of one model's error (points): sd(d) / sqrt 2."""
        return self.sd_diff / math.sqrt(2.0)

    @property
    def noise_share(self) -> float:
        """Share of the errors' variance that is training noise."""
        return self.model_sd**2 / self.error_sd**2 if self.error_sd > 0 else math.nan

    @property
    def rho(self) -> float:
        """Spearman's rho of the two trainings (the noise ceiling)."""
        return float(self.correlations.loc["spearman", "estimate"])

    def line(self, unit: str = "points") -> str:
        """The noise in one sentence."""
        s = self.correlations.loc["spearman"]
        return (f"{self.changed} of {self.n} models changed their error (mean |difference| {self.mean_abs:.2f} "
                f"{unit}, largest {self.largest:.2f}; one model's training noise sd {self.model_sd:.2f}, "
                f"{100 * self.noise_share:.0f}% of the errors' variance); the mean error moved by {self.shift:+.2f} "
                f"[{self.shift_lo:+.2f}, {self.shift_hi:+.2f}]; Spearman rho of the two trainings "
                f"{s['estimate']:.3f} [{s['lo']:.3f}, {s['hi']:.3f}]")


def retrain_noise(first: pd.DataFrame, second: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> RetrainNoise:
    """Match two trainings of the same configs and measure how the errors moved (see the module docstring).

    ValueError when fewer than `MIN_MATCHED` configs were trained in both.
    """
    pairs = match_models(first, second)
    if len(pairs) < MIN_MATCHED:
        raise ValueError(f"retrain noise needs at least {MIN_MATCHED} configs trained in both studies, got "
                         f"{len(pairs)}")
    a = pairs["error_low"].to_numpy(dtype=float)
    b = pairs["error_high"].to_numpy(dtype=float)
    d = b - a
    n = d.size
    sd = float(np.std(d, ddof=1))
    half = float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))
    corr = rank_correlations(a, b, n_boot=n_boot, seed=seed)
    return RetrainNoise(n=n, changed=int(np.sum(np.abs(d) > 1e-9)), mean_abs=float(np.mean(np.abs(d))),
                        largest=float(np.max(np.abs(d))), sd_diff=sd, shift=float(d.mean()),
                        shift_lo=float(d.mean() - half), shift_hi=float(d.mean() + half),
                        error_sd=float(np.std(np.concatenate([a, b]), ddof=1)), correlations=corr, pairs=pairs)


def noise_sd_of_difference(model_sd: float, n_a: int, n_b: int) -> float:
    """The sd that retraining alone gives the difference of two studies' mean errors (n_a and n_b models, each
    model's error with training noise `model_sd`)."""
    return float(model_sd) * math.sqrt(1.0 / n_a + 1.0 / n_b)


def beyond_noise(diff: float, noise: RetrainNoise, n_a: int, n_b: int) -> float:
    """How many retrain-noise sds of a difference of means (`noise_sd_of_difference`) a difference `diff` is."""
    sd = noise_sd_of_difference(noise.model_sd, n_a, n_b)
    return abs(diff) / sd if sd > 0 else math.inf
