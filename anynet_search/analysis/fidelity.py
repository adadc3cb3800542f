"""Fidelity: does a cheap evaluation (few epochs, a small data set) rank models like an expensive one?

Two studies of the same configs (`run --configs-from`, or two random studies of one space and seed, whose
streams coincide) are matched model by model (`match_models`: equal sampled parameters), and the pairs of
errors (low budget, high budget) are compared:

- `rank_correlations`: Spearman's rho and Kendall's tau-b with bootstrap intervals (pairs resampled; BCa
  intervals, whose bias and skew corrections matter near +-1 where the percentile interval undercovers);
- `top_overlap`: how many of the high budget's top fraction (lowest errors; 10% by default) are in the low
  budget's top fraction, against chance (k^2 / n, a hypergeometric law). Errors on a finite validation set
  tie; ties at the cut are broken at random, and the overlap and its p-value are taken over the exact law of
  the overlap across those tie breaks (`overlap_law`);
- `error_resolution`: one validation image in points, read off the errors' lattice; `margin_note` flags a
  margin finer than it;
- `verdict_agreement`: the constraint verdicts `derive_constraints` draws from each study's matched models
  (so a disagreement comes from the errors alone, not from different samples), side by side.

`fidelity` runs all of them. Pure functions of the results frames (`reporting.results.load_results`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats
from scipy.special import gammaln

from anynet_search.analysis._checks import check_level, check_positive_int, require_frame
from anynet_search.analysis.columns import SAMPLED_PREFIX, param_columns
from anynet_search.analysis.constraints import derive_constraints
from anynet_search.analysis.power import verdict_power

#: Upper bound on the elements of one block of pairwise signs (Kendall's tau).
CHUNK_ELEMENTS = 2_000_000
#: Work allowed for Kendall's bootstrap (resamples x n^2, in matrix products); above it fewer resamples are drawn.
KENDALL_WORK = 3_000_000_000
MIN_KENDALL_BOOT = 200
#: Fewest matched models for which rank correlations are computed.
MIN_MATCHED = 4


def key_columns(df: pd.DataFrame) -> list[str]:
    """The columns that identify a config: its sampled parameters (`sampled_*`), else the built d/w/b/g."""
    sampled = sorted(c for c in df.columns if str(c).startswith(SAMPLED_PREFIX))
    return sampled or param_columns(df)


def _keys(df: pd.DataFrame, cols: list[str]) -> pd.Series:
    """One hashable key per row: the row's values of `cols` (numbers as floats, so 2 == 2.0)."""
    values = df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    return pd.Series([tuple(row) for row in values.tolist()], index=df.index)


def match_models(low: pd.DataFrame, high: pd.DataFrame) -> pd.DataFrame:
    """The models both frames trained, paired by config: columns `trial_low`, `trial_high`, `error_low`,
    `error_high` (and `flops` where the low frame has it), in the high frame's order.

    A config present several times in a frame is paired occurrence by occurrence. ValueError when the frames
    do not describe their configs by the same parameters (different design spaces).
    """
    require_frame(low, ["error"], "match_models (low)")
    require_frame(high, ["error"], "match_models (high)")
    cols_low, cols_high = key_columns(low), key_columns(high)
    if not cols_low or cols_low != cols_high:
        raise ValueError(f"the two studies describe their configs by different parameters ({', '.join(cols_low)} "
                         f"vs {', '.join(cols_high)}): not one design space")
    a = pd.DataFrame({"key": _keys(low, cols_low), "trial_low": low.get("trial", pd.Series(range(len(low)),
                                                                                              index=low.index)),
                      "error_low": pd.to_numeric(low["error"], errors="coerce")})
    b = pd.DataFrame({"key": _keys(high, cols_high), "trial_high": high.get("trial", pd.Series(range(len(high)),
                                                                                                 index=high.index)),
                      "error_high": pd.to_numeric(high["error"], errors="coerce")})
    if "flops" in low.columns:
        a["flops"] = pd.to_numeric(low["flops"], errors="coerce")
    a["row_low"], b["row_high"] = np.arange(len(a)), np.arange(len(b))
    a["nth"], b["nth"] = a.groupby("key").cumcount(), b.groupby("key").cumcount()
    pairs = b.merge(a, on=["key", "nth"], how="inner").sort_values("row_high", kind="stable")
    pairs = pairs[np.isfinite(pairs["error_low"]) & np.isfinite(pairs["error_high"])]
    cols = ["trial_low", "trial_high", "error_low", "error_high", "row_low", "row_high"]
    return pairs[cols + (["flops"] if "flops" in pairs.columns else [])].reset_index(drop=True)


# ------------------------------------------------------------------------------------------ correlations
def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair (x[i], y[i]) (average ranks for ties; nan for a constant row)."""
    rx = stats.rankdata(x, axis=1)
    ry = stats.rankdata(y, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


def _pair_sums(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """For each row of counts `w` (B x n): w'Aw, w'Xw, w'Yw with A = sign(dx) sign(dy), X = |sign(dx)|,
    Y = |sign(dy)| over all pairs of the n models; and the row sums of A, X, Y (for the jackknife).

    A model drawn twice ties with itself (the diagonal is 0), so this is Kendall's tau-b of the resample.
    """
    n = x.size
    quad = np.zeros((3, w.shape[0]))
    rows = np.zeros((3, n))
    per = max(1, CHUNK_ELEMENTS // n)
    for s in range(0, n, per):
        sx = np.sign(x[s:s + per, None] - x[None, :])
        sy = np.sign(y[s:s + per, None] - y[None, :])
        for k, m in enumerate((sx * sy, np.abs(sx), np.abs(sy))):
            quad[k] += np.einsum("bi,bi->b", w @ m.T, w[:, s:s + per])
            rows[k, s:s + per] = m.sum(axis=1)
    return quad[0], quad[1], quad[2], rows[0], rows[1], rows[2]


def _tau_b(s: np.ndarray, tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """Kendall's tau-b from the pair sums (nan where one side is constant)."""
    den = np.sqrt(tx * ty)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, s / np.where(den > 0, den, 1.0), np.nan)


def _kendall(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Kendall's tau-b of the pairs, of each bootstrap resample (rows of `idx`), and its jackknife values."""
    n = x.size
    counts = np.zeros((idx.shape[0], n))
    np.add.at(counts, (np.arange(idx.shape[0])[:, None], idx), 1.0)
    s, tx, ty, rs, rx, ry = _pair_sums(x, y, np.vstack([np.ones((1, n)), counts]))
    boot = _tau_b(s[1:], tx[1:], ty[1:])
    jack = _tau_b(s[0] - 2 * rs, tx[0] - 2 * rx, ty[0] - 2 * ry)  # leaving model i out removes its pairs
    return float(_tau_b(s[:1], tx[:1], ty[:1])[0]), boot, jack


def _spearman(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Spearman's rho of the pairs, of each bootstrap resample (rows of `idx`), and its jackknife values."""
    n = x.size
    leave = np.broadcast_to(np.arange(n), (n, n))[~np.eye(n, dtype=bool)].reshape(n, n - 1)
    return float(_spearman_rows(x[None], y[None])[0]), _spearman_rows(x[idx], y[idx]), _spearman_rows(x[leave],
                                                                                                   y[leave])


_STATISTICS = {"spearman": _spearman, "kendall": _kendall}


def _bca(estimate: float, boot: np.ndarray, jack: np.ndarray, level: float) -> tuple[float, float]:
    """The BCa interval of a statistic from its bootstrap and jackknife replicates (nan ones dropped)."""
    boot = boot[np.isfinite(boot)]
    jack = jack[np.isfinite(jack)]
    if boot.size < 10 or not np.isfinite(estimate):
        return math.nan, math.nan
    below = (np.sum(boot < estimate) + 0.5 * np.sum(boot == estimate)) / boot.size
    z0 = stats.norm.ppf(np.clip(below, 1.0 / (boot.size + 1), boot.size / (boot.size + 1)))
    d = jack.mean() - jack if jack.size > 2 else np.zeros(1)
    den = 6.0 * float(np.sum(d * d)) ** 1.5
    acc = float(np.sum(d**3)) / den if den > 0 else 0.0
    z = stats.norm.ppf([(1 - level) / 2, (1 + level) / 2])
    with np.errstate(divide="ignore", invalid="ignore"):
        q = stats.norm.cdf(z0 + (z0 + z) / (1 - acc * (z0 + z)))
    q = np.nan_to_num(q, nan=0.5)
    lo, hi = np.quantile(boot, np.clip(q, 0.0, 1.0))
    return float(lo), float(hi)


def rank_correlations(x: ArrayLike, y: ArrayLike, *, n_boot: int = 2000, level: float = 0.95,
                      seed: int = 0) -> pd.DataFrame:
    """Spearman's rho and Kendall's tau-b of paired errors, each with a BCa bootstrap interval at `level`.

    Rows `spearman`, `kendall`; columns `estimate`, `lo`, `hi`, `n_boot` (Kendall's work grows with n^2: above
    `KENDALL_WORK` pair comparisons it draws fewer resamples, at least `MIN_KENDALL_BOOT`).

    >>> t = rank_correlations([1, 2, 3, 4, 5, 6], [1, 3, 2, 4, 6, 5], n_boot=200)
    >>> round(float(t.loc["spearman", "estimate"]), 3), round(float(t.loc["kendall", "estimate"]), 3)
    (0.886, 0.733)
    """
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"rank_correlations needs two finite 1-D arrays of one length, got {a.shape} and {b.shape}")
    n = a.size
    if n < MIN_MATCHED:
        raise ValueError(f"rank_correlations needs at least {MIN_MATCHED} pairs, got {n}")
    n_boot = check_positive_int(n_boot, "n_boot")
    level = check_level(level, "level")
    idx = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    rows = []
    for name, fn in _STATISTICS.items():
        reps = n_boot if name == "spearman" else min(n_boot, max(MIN_KENDALL_BOOT, KENDALL_WORK // (n * n)))
        estimate, boot, jack = fn(a, b, idx[:reps])
        lo, hi = _bca(estimate, boot, jack, level)
        rows.append({"statistic": name, "estimate": estimate, "lo": lo, "hi": hi, "n_boot": reps})
    return pd.DataFrame(rows).set_index("statistic")


# ------------------------------------------------------------------------------------------ top overlap
def _cut(e: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(models strictly below the k-th lowest error, models tied with it, how many of those the top k takes)."""
    cut = np.sort(e)[k - 1]
    below, tied = e < cut, e == cut
    return below, tied, int(k - below.sum())


def _top_probability(e: np.ndarray, k: int) -> np.ndarray:
    """Chance that each model is among the k lowest errors when ties at the cut are broken at random."""
    below, tied, take = _cut(e, k)
    return below.astype(float) + (take / tied.sum()) * tied


def _log_comb(n: np.ndarray | int, r: np.ndarray | int) -> np.ndarray:
    n, r = np.asarray(n, dtype=float), np.asarray(r, dtype=float)
    with np.errstate(invalid="ignore"):
        out = gammaln(n + 1) - gammaln(r + 1) - gammaln(n - r + 1)
    return np.where((r >= 0) & (r <= n), out, -np.inf)


def overlap_law(low: ArrayLike, high: ArrayLike, k: int) -> np.ndarray:
    """P(overlap = o), o = 0 .. k, of the two top-k sets when each budget's ties at its cut are broken at random
    (independently): exact, by summing over how the low budget's tie break falls on the high budget's classes."""
    a, b = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    below_l, tied_l, take_l = _cut(a, k)
    below_h, tied_h, take_h = _cut(b, k)
    base = int(np.sum(below_l & below_h))  # in both tops whatever the tie breaks
    x1, x2 = int(np.sum(tied_l & below_h)), int(np.sum(tied_l & tied_h))  # low's tied: high's top, high's tied
    x3 = int(tied_l.sum()) - x1 - x2  # low's tied models outside high's top and ties
    y = int(np.sum(below_l & tied_h))  # high's tied models already in low's top
    m_h = int(tied_h.sum())
    law = np.zeros(k + 1)
    log_all = float(_log_comb(int(tied_l.sum()), take_l))
    for a1 in range(min(x1, take_l) + 1):
        for a2 in range(min(x2, take_l - a1) + 1):
            a3 = take_l - a1 - a2
            if a3 > x3:
                continue
            weight = math.exp(float(_log_comb(x1, a1) + _log_comb(x2, a2) + _log_comb(x3, a3)) - log_all)
            hits = np.arange(take_h + 1)  # high's tie break: take_h of its m_h tied, y + a2 of them in low's top
            pmf = stats.hypergeom.pmf(hits, m_h, y + a2, take_h)
            law[base + a1 + hits] += weight * pmf
    return law / law.sum()


def top_overlap(low: ArrayLike, high: ArrayLike, fraction: float = 0.1) -> dict[str, float]:
    """How many of the high budget's top `fraction` (lowest errors, k = ceil(fraction n) models) are among the
    low budget's top k, against chance.

    Returns `k`, `n`, `overlap` (its mean over random breaks of the ties at each cut), `chance` (k^2 / n, the
    mean when the low budget's ranking says nothing), and `p_value`: the chance under that null (any fixed pair
    of top-k sets overlaps hypergeometrically, Hypergeom(n, k, k)) of an overlap at least the one observed,
    averaged over the law of the observed overlap across the tie breaks (`overlap_law`, exact).
    """
    a = np.asarray(low, dtype=float)
    b = np.asarray(high, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"top_overlap needs two 1-D arrays of one non-zero length, got {a.shape} and {b.shape}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    n = a.size
    k = min(n, max(1, math.ceil(fraction * n - 1e-9)))
    law = overlap_law(a, b, k)
    o = np.arange(k + 1)
    p = float(np.sum(law * stats.hypergeom.sf(o - 1, n, k, k)))
    return {"k": k, "n": n, "fraction": float(fraction), "overlap": float(np.sum(law * o)), "chance": k * k / n,
            "p_value": min(1.0, p)}


def error_resolution(errors: ArrayLike, max_images: int = 100_000) -> float | None:
    """One validation image in error points, 100 / m for the smallest m such that every error is a whole number
    of m-ths (errors measured on m images); None when the errors lie on no such lattice (or fewer than 3
    distinct values leave it open)."""
    e = np.unique(np.round(np.asarray(errors, dtype=float), 9))
    e = e[np.isfinite(e)]
    if e.size < 3 or e.size > max_images + 1:
        return None
    m = np.arange(e.size - 1, max_images + 1, dtype=float)  # m images give at most m + 1 distinct errors
    for start in range(0, m.size, 4096):
        chunk = m[start:start + 4096]
        wrong = np.outer(chunk, e) / 100.0
        ok = np.all(np.abs(wrong - np.round(wrong)) < 1e-6 * np.maximum(1.0, chunk)[:, None], axis=1)
        if ok.any():
            return 100.0 / float(chunk[np.argmax(ok)])
    return None


def margin_note(margin: float, resolution: float | None) -> str | None:
    """A flag when a margin (points) is finer than one validation image: no model's error can move by less."""
    if resolution is None or not margin < resolution - 1e-9:
        return None
    return (f"the margin {margin:g} points is finer than one validation image ({resolution:.2f} points, "
            f"{100 / resolution:.0f} images): no single model's error can change by less than one image, so "
            "only averages over many models resolve it")


# ------------------------------------------------------------------------------------------ verdicts
def verdict_agreement(low: pd.DataFrame, high: pd.DataFrame, *, seed: int = 0, margin: float = 0.5,
                      margin_unit: str = "points", power: bool = True) -> pd.DataFrame:
    """The constraint verdicts `derive_constraints` draws from each frame (the same models, in the same order)
    for every constraint judged in both that some models satisfy and others violate.

    Columns: `constraint`, `n` (satisfying) and `n_eval` (evaluated, from the high frame), `verdict_low`,
    `verdict_high`, `agree`, the effects `mean_diff_low` and `mean_diff_high` (points; < 0: the constraint
    lowers the error) and, with `power`, `power_low` and `power_high` (`analysis.power.verdict_power`: the
    chance of keeping the constraint as 'not worse' if it changed nothing). `attrs["trivial"]` counts the
    constraints left out because every (or no) evaluated model satisfies them.
    """
    options = dict(seed=seed, margin=margin, margin_unit=margin_unit)
    tables = [derive_constraints(df.reset_index(drop=True), **options) for df in (low, high)]
    views = []
    for t, df in zip(tables, (low, high)):
        view = t[["constraint", "n", "n_eval", "verdict", "mean_diff"]].copy()
        view["power"] = verdict_power(t, df["error"].to_numpy(dtype=float), seed=seed) if power else np.nan
        views.append(view)
    both = views[0].drop(columns=["n", "n_eval"]).merge(views[1], on="constraint", suffixes=("_low", "_high"))
    split = (both["n"] > 0) & (both["n"] < both["n_eval"])
    both = both[split].reset_index(drop=True)
    both["agree"] = both["verdict_low"] == both["verdict_high"]
    cols = ["constraint", "n", "n_eval", "verdict_low", "verdict_high", "agree", "mean_diff_low", "mean_diff_high"]
    both = both[cols + (["power_low", "power_high"] if power else [])]
    both.attrs.update(trivial=int((~split).sum()), margin_spec=tables[1].attrs.get("margin_spec", ""),
                      alpha=tables[1].attrs.get("alpha", 0.05))
    return both


# ------------------------------------------------------------------------------------------ all of it
@dataclass
class Fidelity:
    """What `fidelity` computed for a (low budget, high budget) pair of studies."""

    n_low: int
    n_high: int
    pairs: pd.DataFrame  # `match_models`
    correlations: pd.DataFrame | None  # `rank_correlations` (None below MIN_MATCHED pairs)
    overlap: dict[str, float] | None  # `top_overlap`
    verdicts: pd.DataFrame | None  # `verdict_agreement`
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Matched models."""
        return len(self.pairs)

    def numbers(self) -> dict[str, Any]:
        """The headline numbers as one flat dict (n, correlations with intervals, overlap, verdicts agreeing)."""
        out: dict[str, Any] = {"n_low": self.n_low, "n_high": self.n_high, "n_matched": self.n}
        if self.correlations is not None:
            for name, row in self.correlations.iterrows():
                out.update({f"{name}": row["estimate"], f"{name}_lo": row["lo"], f"{name}_hi": row["hi"]})
        if self.overlap is not None:
            out.update({f"top_{k}": v for k, v in self.overlap.items() if k != "n"})
        if self.verdicts is not None:
            out.update(verdicts=len(self.verdicts), verdicts_agreeing=int(self.verdicts["agree"].sum()))
        return out


def fidelity(low: pd.DataFrame, high: pd.DataFrame, *, n_boot: int = 2000, level: float = 0.95,
             top_fraction: float = 0.1, seed: int = 0, margin: float = 0.5, margin_unit: str = "points",
             power: bool = True) -> Fidelity:
    """Match two studies' models by config and compare their errors (see the module docstring)."""
    pairs = match_models(low, high)
    result = Fidelity(len(low), len(high), pairs, None, None, None)
    if len(pairs) < len(low) or len(pairs) < len(high):
        result.notes.append(f"{len(pairs)} of {len(low)} (low) and {len(high)} (high) models have their config "
                            "trained in both studies; only those are compared")
    if len(pairs) < MIN_MATCHED:
        result.notes.append(f"fewer than {MIN_MATCHED} matched models: no rank correlation")
        return result
    x, y = pairs["error_low"].to_numpy(dtype=float), pairs["error_high"].to_numpy(dtype=float)
    result.correlations = rank_correlations(x, y, n_boot=n_boot, level=level, seed=seed)
    result.overlap = top_overlap(x, y, top_fraction)
    try:
        result.verdicts = verdict_agreement(low.iloc[pairs["row_low"]], high.iloc[pairs["row_high"]], seed=seed,
                                            margin=margin, margin_unit=margin_unit, power=power)
    except ValueError as exc:
        result.notes.append(f"no constraint verdicts: {str(exc).splitlines()[0]}")
    return result
