"""The report's figures: which ones a set of studies gets, each drawn by `plots` with its caption."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence

import pandas as pd
from matplotlib.figure import Figure

from anynet_search.analysis import KEEP, GoodRange, param_columns, stage_columns
from anynet_search.paths import safe_file_name
from anynet_search.reporting import plots
from anynet_search.reporting.results import RunData
from anynet_search.reporting.summary import CURVE_MODELS, ReportFigure, StudyReport

MAX_PARAM_PLOTS = 4
#: Figures are drawn 4-9 inches wide: at 170 dpi a 6-inch figure fills the report's 1,068 px column.
DPI = 170
#: No split EDF for a group of fewer models (the verdict table calls such a constraint "too few" to judge).
MIN_SPLIT_MODELS = 10
#: CSS pixels each kind of figure is shown wide at a 1,400 px window (the report's 1,068 px column, or half of it
#: for the kinds shown two a row): `plots.scale_text` gives them one font scale there.
COLUMN_PX = 1068
SHOWN_PX = {"edf": COLUMN_PX, "history": COLUMN_PX, "curves": COLUMN_PX, "importance": COLUMN_PX,
            "block_widths": COLUMN_PX, "fidelity": COLUMN_PX, "complexity": COLUMN_PX / 2 - 7,
            "error_vs_param": COLUMN_PX / 2 - 7, "split": COLUMN_PX / 2 - 7}


def _plot_params(report: StudyReport, df: pd.DataFrame) -> list[str]:
    """Parameters worth a scatter: the most important ones, else those of kept ranges, else the widths."""
    try:
        available = param_columns(df)
    except ValueError:
        return []
    candidates: list[str] = []
    if report.importance is not None:
        candidates = [str(p) for p in report.importance["param"]]
    if not any(p in available for p in candidates) and report.constraints is not None:
        rows = zip(report.constraints["constraint"], report.constraints["verdict"])
        candidates = [
            str(c).split(":", 1)[1] for c, v in rows if v == KEEP and str(c).startswith("good_range:")
        ]
    picked = [p for p in candidates if p in available] or [p for p in available if p.startswith("w")]
    return picked[:MAX_PARAM_PLOTS]


def _judged_ranges(report: StudyReport) -> dict[str, tuple[float, float, str]]:
    """Parameter -> (lo, hi, verdict) of each good range judged as a constraint (on the sampled values)."""
    if report.constraints is None:
        return {}
    rules = report.constraints.attrs.get("rules", {})
    return {str(c).split(":", 1)[1]: (float(rules[c].lo), float(rules[c].hi), str(v))
            for c, v in zip(report.constraints["constraint"], report.constraints["verdict"])
            if str(c).startswith("good_range:") and c in rules}


def _error_vs_param(df: pd.DataFrame, report: StudyReport, param: str, judged: tuple[float, float, str] | None,
                    slug: str, label: str) -> tuple[ReportFigure, Figure]:
    """Error against one parameter, shading the range the derived space would use: the judged range on the
    sampled values where the range was judged, else the good range of the built values."""
    sampled = f"sampled_{param}"
    if judged is not None and sampled in df.columns and df[sampled].notna().all():
        lo, hi, verdict = judged
        caption = (f"{label}: validation error against the sampled {param} (before the compatibility rule), the "
                   f"range judged as a constraint shaded ({verdict}; a kept range enters the derived space so).")
        return (ReportFigure(f"{slug}_error_vs_{param}", caption, label, "error_vs_param"),
                plots.plot_error_vs_param(df, sampled, (lo, hi), label=f"judged range, {verdict}"))
    gr = None
    ranges = report.good_ranges
    if ranges is not None and param in set(ranges["param"]):
        r = ranges.loc[ranges["param"] == param].iloc[0]
        gr = GoodRange(**{f.name: r[f.name] for f in dataclasses.fields(GoodRange)})
    caption = (f"{label}: validation error against {param} (built values), good range (95% interval of the best "
               "model's value) shaded.")
    return (ReportFigure(f"{slug}_error_vs_{param}", caption, label, "error_vs_param"),
            plots.plot_error_vs_param(df, param, gr))


def report_figures(
    runs: Sequence[RunData], reports: Sequence[StudyReport], bins: int | None, n_boot: int, seed: int
) -> list[tuple[ReportFigure, Figure]]:
    """Every figure of the report, in report order, with its description.

    EDFs are drawn only for studies whose EDF verdicts are not left out (unbiased or forced samples).
    """
    frames = {r.label: r.df for r in runs}
    edf_frames = {r.label: r.df for r, rep in zip(runs, reports) if not rep.adaptive_note}
    figs: list[tuple[ReportFigure, Figure]] = []
    if edf_frames:
        figs.append(
            (
                ReportFigure("edf", "Error EDFs (validation error) with pointwise 95% confidence bands "
                             "(scipy.stats.ecdf, log-log).", None, "edf"),
                plots.plot_edfs(edf_frames, n_boot=n_boot, seed=seed),
            )
        )
    if edf_frames and bins is not None:
        figs.append(
            (
                ReportFigure(
                    f"edf_normalized_{bins}bins",
                    f"Complexity-normalized error EDFs ({bins} log-spaced flops bins over the shared range), "
                    "with 95% bootstrap bands.",
                    None,
                    "edf",
                ),
                plots.plot_edfs(edf_frames, normalized=True, bins=bins, n_boot=n_boot, seed=seed),
            )
        )
    figs.append(
        (
            ReportFigure("complexity_hist", "Flops of the sampled models.", None, "complexity"),
            plots.plot_complexity_hist(frames),
        )
    )
    both = pd.concat([r.df.assign(study=r.label) for r in runs], ignore_index=True)
    figs.append(
        (
            ReportFigure("error_vs_flops", "Validation error against flops.", None, "complexity"),
            plots.plot_error_vs_flops(both),
        )
    )
    for run, rep in zip(runs, reports):
        slug, label = safe_file_name(rep.label), rep.label
        for name, split in rep.splits.items():
            sizes = {group: len(errors) for group, errors in split.items()}
            if min(sizes.values()) < MIN_SPLIT_MODELS:
                continue
            figs.append(
                (
                    ReportFigure(
                        f"{slug}_split_{name}",
                        f"{label}: error EDFs of the {sizes['satisfy']} models satisfying {name} and of the "
                        f"{sizes['violate']} others.",
                        label,
                        "split",
                    ),
                    plots.plot_split_edf(split, name),
                )
            )
        judged = _judged_ranges(rep)
        for param in _plot_params(rep, run.df):
            figs.append(_error_vs_param(run.df, rep, param, judged.get(param), slug, label))
        figs.append(
            (
                ReportFigure(
                    f"{slug}_history",
                    f"{label}: optimization history, validation error of each "
                    "completed trial and the best so far.",
                    label,
                    "history",
                ),
                plots.plot_history(run.df),
            )
        )
        if rep.curves is not None:
            figs.append(
                (
                    ReportFigure(
                        f"{slug}_validation_curves",
                        f"{label}: validation error by epoch (log scale) of the "
                        f"{CURVE_MODELS} best and {CURVE_MODELS} worst models.",
                        label,
                        "curves",
                    ),
                    plots.plot_validation_curves(rep.curves),
                )
            )
        if rep.importance is not None and not rep.importance.empty:
            figs.append(
                (
                    ReportFigure(
                        f"{slug}_importance",
                        f"{label}: fANOVA importance of each search parameter for the validation error.",
                        label,
                        "importance",
                    ),
                    plots.plot_importance(rep.importance),
                )
            )
        if stage_columns(run.df, "d") and stage_columns(run.df, "w"):
            figs.append(
                (
                    ReportFigure(
                        f"{slug}_block_widths",
                        f"{label}: per-block widths of the best models "
                        "(solid) and their RegNet fits (dashed).",
                        label,
                        "block_widths",
                    ),
                    plots.plot_block_widths(run.df),
                )
            )
    return scaled(figs)


def scaled(figs: list[tuple[ReportFigure, Figure]]) -> list[tuple[ReportFigure, Figure]]:
    """Every figure's text at one font scale as the report shows it (`SHOWN_PX`)."""
    for entry, fig in figs:
        plots.scale_text(fig, SHOWN_PX.get(entry.kind, COLUMN_PX))
    return figs


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes at the report's resolution (`DPI`)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()

