"""Figures of design-space studies: error EDFs, parameter trends, block widths, complexity.

Drawing only: every plotted number comes from `anynet_search.analysis` (or straight from the results
frame), so a test can compare a figure's data with the analysis output. Each function returns a
`matplotlib.figure.Figure` rendered by the non-interactive Agg canvas; no pyplot state is touched, so
figures never pile up in a global registry and importing this module changes no backend setting.
Save one with `fig.savefig("edf.png")`; in a notebook it displays like any Figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker as mticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from anynet_search.analysis import (
    GoodRange,
    complexity_bins,
    edf,
    edf_band,
    edf_confidence_band,
    normalized_weights,
    stage_columns,
    weighted_mean,
)
from anynet_search.analysis import good_range as compute_good_range
from anynet_search.analysis.best import rank_by_error
from anynet_search.models.regnet import fit_regnet, regnet_block_widths
from anynet_search.models.rules import block_widths

#: Complexity bins of a normalized EDF when the caller does not say.
DEFAULT_BINS = 10
ERROR_LABEL = "validation error (%)"

__all__ = [
    "DEFAULT_BINS",
    "block_widths_of",
    "common_range",
    "edf_weights",
    "history_of",
    "plot_block_widths",
    "plot_complexity_hist",
    "plot_edfs",
    "plot_error_vs_flops",
    "plot_error_vs_param",
    "plot_fidelity",
    "plot_history",
    "plot_importance",
    "plot_split_edf",
    "plot_validation_curves",
    "scale_text",
]


def _figure(width: float = 6.0, height: float = 4.0, legend_width: float = 0.0) -> tuple[Figure, object]:
    """A Figure on an Agg canvas with one seaborn-styled axes (fixed margins in inches: fast to render).

    `legend_width` inches on the right are left free for a figure legend.
    """
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.75 / width, right=1 - (0.2 + legend_width) / width, bottom=0.6 / height,
                        top=1 - 0.4 / height)
    with sns.axes_style("whitegrid"):
        ax = fig.add_subplot()
    return fig, ax


def _column(df: pd.DataFrame, name: str, what: str) -> np.ndarray:
    if not isinstance(df, pd.DataFrame) or len(df) == 0:
        raise ValueError(f"{what}: needs a non-empty results frame")
    if name not in df.columns:
        raise ValueError(f"{what}: the frame has no {name!r} column")
    values = pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(values).all():
        bad = int((~np.isfinite(values)).sum())
        raise ValueError(f"{what}: column {name!r} has {bad} NaN/infinite values")
    return values


def _check_frames(frames: Mapping[str, pd.DataFrame], what: str) -> None:
    if not isinstance(frames, Mapping) or not frames:
        raise ValueError(f"{what}: needs a non-empty mapping of study name -> results frame")


def common_range(frames: Mapping[str, pd.DataFrame], column: str = "flops") -> tuple[float, float]:
    """The complexity range every study covers: [max of the minima, min of the maxima] of `column`."""
    _check_frames(frames, "common_range")
    lows, highs = [], []
    for name, df in frames.items():
        v = _column(df, column, f"common_range ({name})")
        lows.append(v.min())
        highs.append(v.max())
    lo, hi = float(max(lows)), float(min(highs))
    if lo > hi:
        raise ValueError(
            f"the studies' {column} ranges do not overlap ({lo:.4g} > {hi:.4g}); "
            "complexity-normalized EDFs need a shared range"
        )
    return lo, hi


def edf_weights(
    frames: Mapping[str, pd.DataFrame], bins: int = DEFAULT_BINS, column: str = "flops"
) -> dict[str, np.ndarray]:
    """Complexity-normalized weights of every study over the range they share (`normalized_weights`)."""
    value_range = common_range(frames, column)
    return {
        name: normalized_weights(_column(df, column, name), bins, value_range=value_range)
        for name, df in frames.items()
    }


def plot_edfs(
    frames: Mapping[str, pd.DataFrame],
    normalized: bool = False,
    bins: int = DEFAULT_BINS,
    band: bool = True,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    column: str = "flops",
) -> Figure:
    """Error EDFs of several studies in one axes, with pointwise confidence bands (legend: name, n, min and mean error):
    `edf_confidence_band` (scipy.stats.ecdf) for raw EDFs, the bootstrap `edf_band` for normalized ones.

    With `normalized`, each EDF is complexity-normalized (`normalized_weights` of `column` in `bins`
    log-spaced bins over the range all studies cover; models outside it get weight 0 and are left out).
    Line i's data is exactly `edf(errors, weights)` of the models with positive weight.
    """
    _check_frames(frames, "plot_edfs")
    weights = edf_weights(frames, bins, column) if normalized else {}
    fig, ax = _figure()
    colors = sns.color_palette(n_colors=len(frames))
    for color, (name, df) in zip(colors, frames.items()):
        errors = _column(df, "error", f"plot_edfs ({name})")
        w = weights.get(name)
        if w is not None:
            keep = w > 0
            errors, w = errors[keep], w[keep]
        e, F = edf(errors, w)
        label = f"{name}  n={errors.size} | min {errors.min():.2f} | mean {weighted_mean(errors, w):.2f}"
        ax.plot(e, F, drawstyle="steps-post", color=color, lw=1.8, label=label)
        if band and errors.size > 1:  # scipy's interval for a plain EDF, the bootstrap for a weighted one
            b = edf_band(errors, w, n_boot=n_boot, level=level, seed=seed) if w is not None else \
                edf_confidence_band(errors, level=level)
            ax.fill_between(b["error"], b["lo"], b["hi"], step="post", color=color, alpha=0.2, lw=0)
    ax.set_xlabel(ERROR_LABEL)
    ax.set_ylabel("cumulative prob.")
    ax.set_ylim(0, 1)
    title = "error EDF"
    if normalized:
        title = f"complexity-normalized error EDF ({bins} {column} bins)"
    if band:
        title += f", {round(100 * level)}% {'bootstrap' if normalized else 'confidence'} bands"
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def _as_interval(gr: GoodRange | tuple[float, float]) -> tuple[float, float, float | None]:
    if isinstance(gr, GoodRange):
        return gr.lo, gr.hi, gr.median
    lo, hi = (float(x) for x in gr)
    return lo, hi, None


def integer_axis(axis: Any, values: np.ndarray) -> None:
    """Ticks at whole numbers only (1, 2, 4, not 1.0, 1.5, 2.0) on an axis of integer values."""
    if values.size and np.all(np.isclose(values, np.round(values))):
        if axis.get_scale() == "log":
            axis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(mticker.NullFormatter())
        else:
            axis.set_major_locator(mticker.MaxNLocator(integer=True))


def plot_error_vs_param(
    df: pd.DataFrame, param: str, good_range: GoodRange | tuple[float, float] | None = None, *,
    label: str = "good range",
) -> Figure:
    """Scatter of validation error against one parameter (a column: `w1`, or a sampled value `sampled_w1`), the
    range `good_range` shaded and named `label` (computed as the good range when None). A range that spans every
    value is not shaded: it narrows nothing, and the legend says so."""
    x = _column(df, param, "plot_error_vs_param")
    y = _column(df, "error", "plot_error_vs_param")
    gr = compute_good_range(df, param) if good_range is None else good_range
    lo, hi, median = _as_interval(gr)
    fig, ax = _figure(5.0, 3.6)
    if lo <= x.min() and hi >= x.max():
        ax.plot([], [], " ", label=f"{label} [{lo:g}, {hi:g}]: every value")
    else:
        ax.axvspan(lo, hi, color="tab:green", alpha=0.15, lw=0, label=f"{label} [{lo:g}, {hi:g}]")
    if median is not None:
        ax.axvline(median, color="tab:green", lw=1.2, ls="--", label=f"median of best {median:g}")
    sns.scatterplot(x=x, y=y, ax=ax, s=18, alpha=0.7, color="tab:blue", edgecolor="none")
    if x.min() > 0 and x.max() / x.min() >= 8:
        ax.set_xscale("log", base=2)
    integer_axis(ax.xaxis, x)
    ax.set_xlabel(param.replace("sampled_", "sampled "))
    ax.set_ylabel(ERROR_LABEL)
    ax.legend(loc="upper right", fontsize=8)
    return fig


def scale_text(fig: Figure, shown_px: float, px: float = 13.0) -> Figure:
    """Scale every text of a figure so that 10-point text shows `px` CSS pixels tall when the figure is shown
    `shown_px` wide: figures of any size shown side by side then read at one font scale."""
    factor = px * fig.get_figwidth() * 72 / shown_px / 10.0
    ticks = [(ax, axis, ax_axis.get_major_ticks()[0].label1.get_fontsize())
             for ax in fig.axes for axis, ax_axis in (("x", ax.xaxis), ("y", ax.yaxis)) if ax_axis.get_major_ticks()]
    for text in fig.findobj(Text):
        text.set_fontsize(text.get_fontsize() * factor)
    for ax, axis, size in ticks:
        ax.tick_params(axis=axis, which="both", labelsize=size * factor)
    return fig


def block_widths_of(row: pd.Series, n_stages: int) -> list[int]:
    """Per-block widths of one results row: w_i repeated d_i times."""
    stages = range(1, n_stages + 1)
    return block_widths([row[f"d{i}"] for i in stages], [row[f"w{i}"] for i in stages])


def plot_block_widths(df: pd.DataFrame, top: int = 5) -> Figure:
    """Per-block widths of the `top` lowest-error models (solid) and their quantized-linear fit (dashed)."""
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}")
    _column(df, "error", "plot_block_widths")
    d_cols, w_cols = stage_columns(df, "d"), stage_columns(df, "w")
    if not d_cols or not w_cols:
        raise ValueError("plot_block_widths: the frame needs per-stage d1..dN and w1..wN columns")
    best = rank_by_error(df).head(int(top))
    fig, ax = _figure(9.0, 4.0, legend_width=3.2)
    colors = sns.color_palette(n_colors=len(best))
    for color, (_, row) in zip(colors, best.iterrows()):
        widths = block_widths_of(row, len(w_cols))
        fit = fit_regnet(widths)
        fitted = regnet_block_widths(len(widths), fit.w0, fit.wa, fit.wm)
        j = np.arange(len(widths))
        name = f"trial {row['trial']}" if "trial" in row.index else f"row {row.name}"
        ax.plot(j, widths, "o-", drawstyle="steps-post", color=color, ms=3, lw=1.6,
                label=f"{name}: {float(row['error']):.2f}%")
        ax.plot(j, fitted, "--", drawstyle="steps-post", color=color, lw=1.0,
                label=f"  fit w0={fit.w0} wa={fit.wa:.3g} wm={fit.wm:.3g} (e={fit.fit_error:.3f})")
    ax.set_yscale("log", base=2)
    ax.set_xlabel("block index j")
    ax.set_ylabel("block width w_j")
    ax.set_title(f"block widths of the {len(best)} best models and their RegNet fits", fontsize=10)
    fig.legend(loc="upper left", bbox_to_anchor=(1 - 3.3 / 9.0, 1 - 0.4 / 4.0), fontsize=7, frameon=False)
    return fig


def plot_error_vs_flops(df: pd.DataFrame) -> Figure:
    """Scatter of validation error against flops (log x), one color per study when the frame has several."""
    x = _column(df, "flops", "plot_error_vs_flops")
    y = _column(df, "error", "plot_error_vs_flops")
    hue = None
    if "study" in df.columns and df["study"].nunique() > 1:
        hue = df["study"].astype(str).to_numpy()
    fig, ax = _figure(5.0, 3.6)
    sns.scatterplot(x=x, y=y, hue=hue, ax=ax, s=18, alpha=0.7, edgecolor="none")
    ax.set_xscale("log")
    ax.set_xlabel("flops (multiply-adds)")
    ax.set_ylabel(ERROR_LABEL)
    if hue is not None:
        ax.legend(fontsize=7)
    return fig


def plot_complexity_hist(frames: Mapping[str, pd.DataFrame], column: str = "flops", bins: int = 20) -> Figure:
    """Histograms of a complexity column (flops by default) per study, on shared log-spaced bins."""
    _check_frames(frames, "plot_complexity_hist")
    values = {name: _column(df, column, f"plot_complexity_hist ({name})") for name, df in frames.items()}
    everything = np.concatenate(list(values.values()))
    log = bool((everything > 0).all())
    value_range = (float(everything.min()), float(everything.max()))
    fig, ax = _figure(5.0, 3.6)
    colors = sns.color_palette(n_colors=len(frames))
    for color, (name, v) in zip(colors, values.items()):
        idx, edges = complexity_bins(v, bins, value_range=value_range, log=log)
        counts = np.bincount(idx[idx >= 0], minlength=bins)
        ax.stairs(counts, edges, color=color, lw=1.6, label=f"{name} (n={v.size})")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(f"{column}")
    ax.set_ylabel("models")
    integer_axis(ax.yaxis, np.array([0.0]))  # counts
    ax.legend(fontsize=7)
    return fig


def history_of(df: pd.DataFrame) -> pd.DataFrame:
    """Validation error by trial number and the best error so far (what the study's optimization reached)."""
    trial = _column(df, "trial", "history_of")
    error = _column(df, "error", "history_of")
    order = np.argsort(trial, kind="stable")
    return pd.DataFrame({"trial": trial[order].astype(int), "error": error[order],
                         "best_so_far": np.minimum.accumulate(error[order])})


def plot_history(df: pd.DataFrame) -> Figure:
    """Optimization history: each completed trial's validation error and the best so far, by trial number."""
    hist = history_of(df)
    fig, ax = _figure(5.0, 3.6)
    ax.scatter(hist["trial"], hist["error"], s=14, alpha=0.7, edgecolor="none", label="trial")
    ax.plot(hist["trial"], hist["best_so_far"], drawstyle="steps-post", color="C3", lw=1.6, label="best so far")
    ax.set_xlabel("trial number")
    integer_axis(ax.xaxis, hist["trial"].to_numpy(dtype=float))
    ax.set_ylabel(ERROR_LABEL)
    ax.legend(fontsize=7)
    return fig


def plot_split_edf(split: Mapping[str, np.ndarray], name: str) -> Figure:
    """Small error EDFs of the models that satisfy a constraint and of the rest (`analysis.split_by_mask`)."""
    fig, ax = _figure(4.0, 2.9)
    for (group, errors), color in zip(split.items(), ("tab:green", "tab:gray")):
        errors = np.asarray(errors, dtype=float)
        if errors.size == 0:
            continue
        e, F = edf(errors)
        ax.plot(e, F, drawstyle="steps-post", color=color, lw=1.6,
                label=f"{group} (n={errors.size}, mean {errors.mean():.2f})")
    ax.set_xlabel(ERROR_LABEL, fontsize=8)
    ax.set_ylabel("cumulative prob.", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_ylim(0, 1)
    ax.set_title(name, fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    return fig


def plot_validation_curves(curves: pd.DataFrame) -> Figure:
    """Validation error by epoch of the best (blue) and worst (red) models (`analysis.extreme_curves`), on a log
    error axis (linear when an error is 0)."""
    if not isinstance(curves, pd.DataFrame) or curves.empty:
        raise ValueError("plot_validation_curves: needs a non-empty curves table "
                         "(trial, rank, error, epoch, val_error)")
    fig, ax = _figure(6.0, 3.6, legend_width=1.9)
    shades = {"best": sns.color_palette("Blues_r", 4), "worst": sns.color_palette("Reds_r", 4)}
    counts = {"best": 0, "worst": 0}
    for trial, rows in curves.groupby("trial", sort=False):
        rank = str(rows["rank"].iloc[0])
        color = shades[rank][min(counts[rank], 2)]
        counts[rank] += 1
        ax.plot(rows["epoch"], rows["val_error"], "o-", color=color, ms=3, lw=1.5,
                label=f"{rank}: trial {trial} ({float(rows['error'].iloc[0]):.2f}%)")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ERROR_LABEL + ", log scale")
    if (curves["val_error"] > 0).all():  # the best models' few percent would sit on the floor of a linear axis
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(mticker.FuncFormatter(
            lambda v, _: f"{v:g}" if f"{v:.1e}"[0] in "25" else ""))
    else:
        ax.set_ylabel(ERROR_LABEL)
    ax.xaxis.get_major_locator().set_params(integer=True)
    fig.legend(loc="upper left", bbox_to_anchor=(1 - 2.0 / 6.0, 1 - 0.4 / 3.6), fontsize=7, frameon=False)
    return fig


def plot_fidelity(pairs: pd.DataFrame, correlations: pd.DataFrame | None, labels: tuple[str, str] = ("low", "high"),
                  ) -> Figure:
    """Low- against high-budget error of each matched model (`analysis.fidelity.match_models`), titled with the
    rank correlations, beside the two error EDFs of those models."""
    low = _column(pairs, "error_low", "plot_fidelity")
    high = _column(pairs, "error_high", "plot_fidelity")
    fig = Figure(figsize=(10.0, 4.2))
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.9, wspace=0.22)
    with sns.axes_style("whitegrid"):
        ax, ax2 = fig.subplots(1, 2)
    ax.scatter(low, high, s=14, alpha=0.7, color="tab:blue", lw=0)
    ax.set_xlabel(f"error (%), {labels[0]}", fontsize=9)
    ax.set_ylabel(f"error (%), {labels[1]}", fontsize=9)
    title = f"n={low.size} models"
    if correlations is not None:
        parts = [f"{sym} {r['estimate']:.2f} [{r['lo']:.2f}, {r['hi']:.2f}]"
                 for sym, (_, r) in zip(("Spearman", "Kendall"), correlations.iterrows())]
        title += ": " + ", ".join(parts)
    ax.set_title(title, fontsize=9)
    for errors, label, color in ((low, labels[0], "tab:orange"), (high, labels[1], "tab:blue")):
        e, F = edf(errors)
        ax2.plot(e, F, drawstyle="steps-post", color=color, lw=1.8,
                 label=f"{label}: min {errors.min():.2f} | mean {errors.mean():.2f}")
    ax2.set_xlabel(ERROR_LABEL, fontsize=9)
    ax2.set_ylabel("cumulative prob.", fontsize=9)
    ax2.set_ylim(0, 1)
    ax2.set_title("error EDFs of the matched models", fontsize=9)
    ax2.legend(loc="lower right", fontsize=7)
    return fig


def plot_importance(importance: pd.DataFrame) -> Figure:
    """Horizontal bars of each parameter's importance (`analysis.importance.parameter_importance`), largest on top."""
    if not isinstance(importance, pd.DataFrame) or importance.empty or \
            not {"param", "importance"} <= set(importance.columns):
        raise ValueError("plot_importance: needs a non-empty table with param and importance columns")
    rows = importance.sort_values("importance", ascending=True, kind="stable")
    fig, ax = _figure(9.0, max(1.6, 0.2 * len(rows) + 0.9))
    ax.barh(rows["param"].astype(str), rows["importance"].astype(float), color="tab:blue", alpha=0.8)
    ax.set_xlabel("fANOVA importance (share of the validation error's variance)")
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", visible=False)
    return fig
