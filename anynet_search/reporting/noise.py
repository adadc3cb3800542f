"""Retrain noise in `analyze` and `derive`: when a study's configs were trained again under other training seeds
(`run --repeat K`), how far do the errors, the differences between spaces and the constraint verdicts move?

`retrain_pairs` finds, among the studies `analyze` was given, pairs that are trainings of the same configs with
the same data and trainer settings and other training seeds. `RetrainPair` holds their noise
(`analysis.noise.retrain_noise`); `with_noise` adds to a table of study comparisons the sd that retraining alone
gives each difference of mean errors and how many such sds the difference is; `verdict_noise` puts a study's
constraint verdicts beside those drawn from its retrained errors (`derive --retrained RUN`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from anynet_search.analysis.fidelity import verdict_agreement
from anynet_search.analysis.noise import RetrainNoise, noise_sd_of_difference, retrain_noise
from anynet_search.errors import InputError
from anynet_search.reporting.results import RunData


def trained_alike(a: RunData, b: RunData) -> bool:
    """Two trainings of one budget under other training seeds: the same data and trainer settings, another study
    seed or repeat (`run --repeat`)."""
    sa, sb = a.settings, b.settings
    if sa is None or sb is None:
        return False
    return sa.outcome_settings() == sb.outcome_settings() and (sa.seed, sa.repeat) != (sb.seed, sb.repeat)


def retrain_pairs(runs: Sequence[RunData], matched: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Among pairs of studies of the same configs (`fidelity_pairs`), those that are trainings alike (first, the one
    of lower repeat, then the retraining)."""
    out = []
    for i, j in matched:
        if trained_alike(runs[i], runs[j]):
            ri, rj = (runs[k].settings.repeat if runs[k].settings else 0 for k in (i, j))
            out.append((j, i) if rj < ri else (i, j))
    return out


@dataclass
class RetrainPair:
    """A study and its retraining, with the noise measured between them."""

    first: str
    second: str
    noise: RetrainNoise

    def lines(self) -> list[str]:
        """What `analyze` prints for the pair."""
        return [f"retrain noise: {self.second} trains the configs of {self.first} again under other training seeds:",
                f"  {self.noise.line()}"]


def pooled_model_sd(pairs: Sequence[RetrainPair]) -> float:
    """One model's training noise sd pooled over the retrained pairs (their variances weighted by models - 1)."""
    num = sum((p.noise.n - 1) * p.noise.model_sd**2 for p in pairs)
    den = sum(p.noise.n - 1 for p in pairs)
    return math.sqrt(num / den) if den > 0 else math.nan


def with_noise(comparisons: pd.DataFrame | None, frames: dict[str, pd.DataFrame],
               pairs: Sequence[RetrainPair]) -> pd.DataFrame | None:
    """The study comparisons with `retrain_sd` (the sd that retraining alone gives the difference of the two mean
    errors, from the pooled per-model noise) and `beyond_noise` (|mean_diff| / retrain_sd)."""
    if comparisons is None or not pairs:
        return comparisons
    sd = pooled_model_sd(pairs)
    out = comparisons.copy()
    out["retrain_sd"] = [noise_sd_of_difference(sd, len(frames[a]), len(frames[b]))
                         for a, b in zip(out["study"], out["versus"])]
    out["beyond_noise"] = out["mean_diff"].abs() / out["retrain_sd"]
    return out


def noise_sentence(comparisons: pd.DataFrame, pairs: Sequence[RetrainPair]) -> str:
    """One sentence for the report on what the retrain columns of the comparisons mean."""
    sd = pooled_model_sd(pairs)
    names = ", ".join(f"{p.second} of {p.first}" for p in pairs)
    beyond = comparisons["beyond_noise"]
    return (f"Retrain noise ({names}): one model's error moves by sd {sd:.2f} points between trainings, taken "
            "as the same in every study; retrain_sd is the sd that retraining alone gives a difference of two mean "
            "errors, and beyond_noise how many of them the mean difference is ("
            + ", ".join(f"{s} {b:.1f}" for s, b in zip(comparisons["study"], beyond))
            + "); below 2 a retraining of the same models could produce the difference.")


def verdict_noise(run: RunData, retrained: RunData, *, seed: int = 0, margin: float = 0.5,
                  margin_unit: str = "points") -> tuple[RetrainNoise, pd.DataFrame]:
    """(the noise between a study and its retraining, the constraint verdicts drawn from each one's errors on the
    configs both trained, with `noise_sd`: the sd that retraining alone gives each verdict's mean difference)."""
    if not trained_alike(run, retrained):
        raise InputError(f"--retrained {retrained.label}: not a retraining of {run.label} (it must train its configs "
                         "with the same data and trainer settings under other training seeds: run --configs-from "
                         f"{run.run} --repeat K)")
    try:
        noise = retrain_noise(run.df, retrained.df, seed=seed)
    except ValueError as exc:
        raise InputError(f"--retrained {retrained.label}: {exc}") from None
    rows_a, rows_b = noise.pairs["row_low"], noise.pairs["row_high"]
    table = verdict_agreement(run.df.iloc[rows_a], retrained.df.iloc[rows_b], seed=seed, margin=margin,
                              margin_unit=margin_unit, power=False)
    table = table.rename(columns={"verdict_low": "verdict", "verdict_high": "verdict_retrained",
                                  "mean_diff_low": "mean_diff", "mean_diff_high": "mean_diff_retrained"})
    # the difference of the two trainings' mean differences: each side's noise, twice over
    table["noise_sd"] = [math.sqrt(2.0) * noise_sd_of_difference(noise.model_sd, n, max(m - n, 1))
                         for n, m in zip(table["n"], table["n_eval"])]
    table["moved"] = table["mean_diff_retrained"] - table["mean_diff"]
    return noise, table


def verdict_noise_lines(run: RunData, retrained: RunData, noise: RetrainNoise, table: pd.DataFrame) -> list[str]:
    """What `derive --retrained` prints."""
    lines = [f"retrain noise: {retrained.label} trains the configs of {run.label} again under other training seeds:",
             f"  {noise.line()}",
             f"  the verdicts drawn from the retrained errors agree on {int(table['agree'].sum())} of {len(table)}; "
             "moved: how far each verdict's mean difference moved; noise_sd: how far retraining alone moves it (sd)"]
    view = table[["constraint", "n", "verdict", "verdict_retrained", "mean_diff", "mean_diff_retrained", "moved",
                  "noise_sd"]].copy()
    for col in ("mean_diff", "mean_diff_retrained", "moved"):
        view[col] = view[col].map(lambda v: f"{v:+.2f}" if np.isfinite(v) else "")
    view["noise_sd"] = view["noise_sd"].map(lambda v: f"{v:.2f}")
    return lines + ["    " + line for line in view.to_string(index=False).splitlines()]
