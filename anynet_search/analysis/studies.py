"""Per-study numbers a report shows: error summary, expected best error, EDF comparisons, constraint splits,
and the per-epoch validation curves of the best and worst models. Pandas in, pandas (or dicts) out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from anynet_search.analysis._checks import check_positive_int, error_column
from anynet_search.analysis.best import default_ns, expected_best_error
from anynet_search.analysis.compare import compare_edfs
from anynet_search.analysis.edf import weighted_mean, weighted_median
from anynet_search.analysis.power import power

#: Columns of a per-epoch history table (`anynet_search.reporting.results.histories_frame`).
HISTORY_COLUMNS: tuple[str, ...] = ("trial", "epoch", "val_error")


def image_points(errors: np.ndarray, max_count: int = 100_000) -> float | None:
    """What one validation image is worth in error points (100 / the validation set's size) when every error is a
    count of misclassified images, 100 k / n for one n; None when they are not (a dry run, a weighted metric).

    The smallest n that makes every error such a count: the best error (k images) gives n = 100 k / error.

    >>> image_points(np.array([100 / 145, 300 / 145, 2900 / 145]))
    0.6896551724137931
    """
    e = np.asarray(errors, dtype=float)
    e = e[np.isfinite(e)]
    positive = e[e > 0]
    if positive.size == 0 or len(np.unique(e)) < 2:
        return None
    low = float(positive.min())
    for k in range(1, max_count + 1):
        n = round(100 * k / low)
        if n > max_count:
            return None
        counts = e * n / 100
        if abs(100 * k / n - low) < 1e-9 * low and np.allclose(counts, np.round(counts), rtol=0, atol=1e-6):
            return 100 / n
    return None


def error_summary(df: pd.DataFrame, weights: np.ndarray | None = None) -> dict[str, Any]:
    """n, best/median/mean validation error, the best model's trial (ties: the lowest trial) and its test error,
    median test error."""
    e = pd.to_numeric(df["error"], errors="coerce").to_numpy(dtype=float)
    trials = df["trial"].to_numpy() if "trial" in df.columns else np.arange(e.size)
    best = int(np.lexsort((trials, np.where(np.isnan(e), np.inf, e)))[0])
    test = pd.to_numeric(df["test_error"], errors="coerce") if "test_error" in df.columns else None
    return {
        "n": int(e.size),
        "best_error": float(e[best]),
        "median_error": weighted_median(e, weights),
        "mean_error": weighted_mean(e, weights),
        "best_trial": int(df["trial"].iloc[best]) if "trial" in df.columns else best,
        "best_test_error": float(test.iloc[best]) if test is not None else float("nan"),
        "median_test_error": float(test.median()) if test is not None else float("nan"),
    }


def expected_best_table(
    frames: Mapping[str, pd.DataFrame], weights: Mapping[str, np.ndarray]
) -> pd.DataFrame:
    """Expected best validation error of n random models per study (n = 1, 2, 4, ... up to the least m)."""
    ns = default_ns(min(len(df) for df in frames.values()))
    table = pd.DataFrame({"n": ns})
    for label, df in frames.items():
        res = expected_best_error(df["error"].to_numpy(dtype=float), ns=ns, weights=weights.get(label))
        table[label] = res["expected_min"].to_numpy()
    return table


def compare_studies(
    frames: Mapping[str, pd.DataFrame], strata: Mapping[str, np.ndarray], seed: int = 0,
    power_shift: float | None = None, power_sims: int = 200,
) -> pd.DataFrame | None:
    """Each study's EDF against the first one's (KS test and mean/median differences; < 0: better).

    With `power_shift` (points > 0) a `power` column gives each comparison's chance to find a shift of that
    size (`analysis.power`, one-sided KS at 0.025, the two-sided test at 0.05 against a shift in one
    direction; the baseline's errors resampled at both studies' numbers of models, `power_sims` studies; the
    plain KS test, also where the comparison is complexity-normalized).

    With `strata` (complexity bins over the shared range) the comparison is complexity-normalized and
    its p-value a permutation test within bins, after moving each error to its bin's mean log flops
    (`compare_edfs`' `complexity_a/b`, when the frames have flops): without that the test is not exact
    when two studies place their models differently inside a bin. None for fewer than two studies.
    """
    labels = list(frames)
    if len(labels) < 2:
        return None
    base = labels[0]
    rows = []
    for label in labels[1:]:
        adjust = label in strata and base in strata and all("flops" in frames[k] for k in (label, base))
        res = compare_edfs(
            frames[label]["error"].to_numpy(dtype=float),
            frames[base]["error"].to_numpy(dtype=float),
            strata.get(label),
            strata.get(base),
            complexity_a=frames[label]["flops"].to_numpy(dtype=float) if adjust else None,
            complexity_b=frames[base]["flops"].to_numpy(dtype=float) if adjust else None,
            seed=seed,
        )
        row: dict[str, Any] = {"study": label, "versus": base, **res.as_dict()}
        if power_shift is not None and power_shift > 0:
            base_errors = frames[base]["error"].to_numpy(dtype=float)
            row["power"] = power(base_errors, base_errors.size, -power_shift, test="ks", alpha=0.025,
                                 sims=power_sims, seed=seed, n_other=len(frames[label]))
        rows.append(row)
    return pd.DataFrame(rows)


def split_by_mask(df: pd.DataFrame, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Validation errors of the models a constraint's mask selects ('satisfy') and of the rest ('violate')."""
    errors = error_column(df, "split_by_mask")
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != errors.shape:
        raise ValueError(f"split_by_mask: the mask has {mask.size} entries, the frame {errors.size} rows")
    return {"satisfy": errors[mask], "violate": errors[~mask]}


def extreme_curves(df: pd.DataFrame, histories: pd.DataFrame, k: int = 3) -> pd.DataFrame:
    """Per-epoch validation errors of the `k` best and `k` worst models (by final validation error).

    `histories` has one row per (trial, epoch) with `val_error`; the result adds `rank` ('best' or
    'worst') and the model's final `error`, best models first. Trials without a history are left out;
    a model among both the best and the worst (fewer than 2k models) counts as best.
    """
    k = check_positive_int(k, "k")
    missing = [c for c in HISTORY_COLUMNS if c not in histories.columns]
    if missing:
        raise ValueError(f"extreme_curves: the history table lacks column(s) {missing}")
    have = df[df["trial"].isin(set(histories["trial"]))].sort_values(["error", "trial"], kind="stable")
    best = have.head(k)
    worst = have.iloc[max(k, len(have) - k) :].iloc[::-1]
    picks = pd.concat([best.assign(rank="best"), worst.assign(rank="worst")], ignore_index=True)
    curves = picks[["trial", "rank", "error"]].merge(histories[list(HISTORY_COLUMNS)], on="trial", how="left")
    order = {t: i for i, t in enumerate(picks["trial"])}
    return (
        curves.assign(_o=curves["trial"].map(order))
        .sort_values(["_o", "epoch"], kind="stable")
        .drop(columns="_o")
        .reset_index(drop=True)
    )


#: A study whose median model's error is above this fraction of the chance error learned little.
NEAR_CHANCE_FRACTION = 0.5
#: A study whose median model made more than this fraction of its improvement over chance in the last epoch is
#: far from converged.
LAST_EPOCH_FRACTION = 0.25


def chance_error(num_classes: int) -> float:
    """The error (%) of guessing uniformly among `num_classes` classes: 100 (1 - 1/k)."""
    k = check_positive_int(num_classes, "num_classes")
    return 100.0 * (1.0 - 1.0 / k)


def training_warnings(df: pd.DataFrame, histories: pd.DataFrame, num_classes: int | None) -> list[str]:
    """Why a study's models may be too undertrained for their verdicts to mean much (empty when none applies).

    Two checks: the median validation error is more than `NEAR_CHANCE_FRACTION` of the chance error (needs
    `num_classes`); and, from the per-epoch histories (epoch 0 counts as chance), the median model made more than
    `LAST_EPOCH_FRACTION` of its improvement over chance in its last epoch, so longer training would still
    change the errors a lot, and not equally for every model.
    """
    errors = error_column(df, "training_warnings")
    out = []
    median = float(np.median(errors))
    chance = chance_error(num_classes) if num_classes else None
    epochs = int(pd.to_numeric(df["epochs"], errors="coerce").max()) if "epochs" in df.columns and \
        pd.to_numeric(df["epochs"], errors="coerce").notna().any() else None
    trained = f" in {epochs} epoch{'s' if epochs != 1 else ''}" if epochs else ""
    if chance is not None and median > NEAR_CHANCE_FRACTION * chance:
        out.append(f"near chance: the median validation error {median:.2f}% is more than "
                   f"{NEAR_CHANCE_FRACTION:.0%} of the chance error ({chance:.2f}% for {num_classes} classes): most "
                   f"models barely learned{trained}, so the verdicts compare how fast models start to learn")
    missing = [c for c in HISTORY_COLUMNS if c not in histories.columns]
    if chance is None or missing or histories.empty:
        return out
    fractions = []
    for _, h in histories.sort_values(["trial", "epoch"]).groupby("trial"):
        curve = [chance, *h["val_error"].astype(float)]
        gained = chance - curve[-1]
        if gained > 0:
            fractions.append((curve[-2] - curve[-1]) / gained)
    if fractions and float(np.median(fractions)) > LAST_EPOCH_FRACTION:
        out.append(f"far from converged: the median model made {np.median(fractions):.0%} of its improvement over "
                   f"chance in its last epoch{trained.replace(' in', ' of')}; train longer (--epochs) before trusting "
                   "the verdicts")
    return out


#: Below this KS p-value the studies' flops distributions count as different, and comparisons are normalized.
COMPLEXITY_ALPHA = 0.05


def complexity_differences(frames: Mapping[str, pd.DataFrame], column: str = "flops") -> dict[str, float]:
    """KS p-value (`scipy.stats.ks_2samp`) of each study's `column` distribution against the first study's.

    A small p-value says the studies sample models of different sizes: their raw error EDFs then differ partly
    because bigger models err less, which complexity-normalized EDFs remove (the papers compare spaces that way).
    """
    from scipy import stats

    labels = list(frames)
    base = pd.to_numeric(frames[labels[0]][column], errors="coerce").dropna().to_numpy(dtype=float)
    out = {}
    for label in labels[1:]:
        other = pd.to_numeric(frames[label][column], errors="coerce").dropna().to_numpy(dtype=float)
        out[label] = float(stats.ks_2samp(other, base).pvalue) if base.size and other.size else float("nan")
    return out


def automatic_bins(n_models: int) -> int:
    """Complexity bins for a normalization chosen automatically: about 10 models per bin, 2 to 10 bins."""
    return int(min(10, max(2, check_positive_int(n_models, "n_models") // 10)))
