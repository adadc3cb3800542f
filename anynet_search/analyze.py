"""Analyze one or more studies: load them, compute every number, draw the figures, write the report's files.

`analyze_runs` loads every run (`anynet_search.results.load_run`), computes all numbers first (pure
functions from `anynet_search.analysis`), derives a space from the kept constraints
(`anynet_search.spaces.derive`), then draws the figures (`anynet_search.plots`) and writes:

- `report.html`: rendered by `anynet_search.report` from its template; opens offline (figures are
  inlined PNGs, no external CSS, JavaScript or fonts);
- `figures/*.png`: every figure of the report;
- `results.csv`: the tidy results of every study (one row per trained model);
- `constraints.csv`: the constraint verdicts of every random/QMC study;
- `derived_space.yaml`: the first analyzed study's design space with the kept constraints added
  (`derived_space_<study>.yaml` for the others), ready for `anynet-search run --space ...`;
- `best_configs/<study>/`: the best models' configs.

`error` is the validation error (%) that the search minimized; `test_error` is measured on the held-out
test split and only reported, never used to select or judge anything.
"""

from __future__ import annotations

import dataclasses
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from matplotlib.figure import Figure

from anynet_search import plots
from anynet_search.analysis import (
    KEEP,
    NEUTRAL,
    REJECT,
    GoodRange,
    complexity_bins,
    derive_constraints,
    good_ranges,
    param_columns,
    require_unbiased_samples,
    resolve_margin,
    stage_columns,
    stage_count,
)
from anynet_search.analysis.constraints import COLUMNS
from anynet_search.analysis.importance import parameter_importance
from anynet_search.analysis.power import verdict_power
from anynet_search.analysis.samplers import adaptive_note
from anynet_search.analysis.studies import (
    compare_studies,
    error_summary,
    expected_best_table,
    extreme_curves,
    split_by_mask,
)
from anynet_search.export import configs_for, export_top
from anynet_search.paths import safe_file_name
from anynet_search.report import render_report
from anynet_search.results import RunData, load_run
from anynet_search.spaces.constraints import STRUCTURAL
from anynet_search.spaces.derive import DerivedSpace, derive_space, exact_shrink
from anynet_search.study.plan import StudySettings

__all__ = ["ReportFigure", "ReportSummary", "StudyReport", "analyze_runs"]

MAX_PARAM_PLOTS = 4
CURVE_MODELS = 3  # validation curves of this many best and worst models
DPI = 90


@dataclass
class StudyReport:
    """Everything computed for one study."""

    label: str
    run: str
    space_name: str | None
    sampler: str
    summary: dict[str, Any]
    states: dict[str, int]
    constraints: pd.DataFrame | None = None
    constraints_note: str | None = None
    warning: str | None = None
    shrink: dict[str, float] = field(default_factory=dict)
    good_ranges: pd.DataFrame | None = None
    good_ranges_note: str | None = None
    importance: pd.DataFrame | None = None
    importance_note: str | None = None
    space_note: str | None = None
    derived: DerivedSpace | None = None
    derived_path: Path | None = None
    adaptive_note: str | None = None  # set when EDF verdicts are left out (adaptive sampler, not forced)
    splits: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # structural constraint -> errors
    curves: pd.DataFrame | None = None  # per-epoch validation errors of the best and worst models
    curves_note: str | None = None
    exports: list[Path] = field(default_factory=list)
    exports_note: str | None = None

    def verdicts(self) -> dict[str, list[str]]:
        """Constraint names by verdict (keep / neutral / reject)."""
        out: dict[str, list[str]] = {KEEP: [], NEUTRAL: [], REJECT: []}
        if self.constraints is not None:
            for name, verdict in zip(self.constraints["constraint"], self.constraints["verdict"]):
                out.setdefault(str(verdict), []).append(str(name))
        return out


@dataclass
class ReportFigure:
    """One drawn figure: file stem, caption, the study it belongs to (None: all) and its kind."""

    name: str
    caption: str
    study: str | None
    kind: str
    png: bytes = b""
    path: Path | None = None


@dataclass
class ReportSummary:
    """What `analyze_runs` computed and wrote."""

    out_dir: Path
    report: Path
    results_csv: Path
    constraints_csv: Path
    derived_spaces: list[Path]
    figures: list[Path]
    studies: list[StudyReport]
    comparisons: pd.DataFrame | None
    expected_best: pd.DataFrame | None  # None when every study's EDF verdicts are left out
    bins: int | None
    normalization_note: str | None = None

    @property
    def derived_space(self) -> Path | None:
        """The main derived space file (`derived_space.yaml`), if one was written."""
        return self.derived_spaces[0] if self.derived_spaces else None

    def text(self) -> str:
        """A short printable summary: per study n, best/median error and verdicts; the output paths."""
        lines = [
            f"anynet-search report of {len(self.studies)} stud{'y' if len(self.studies) == 1 else 'ies'} "
            f"(error = validation error %, test error reported separately)"
        ]
        for s in self.studies:
            m = s.summary
            lines.append(
                f"  {s.label} ({s.space_name or '?'}, {s.sampler}): n={m['n']}, "
                f"best {m['best_error']:.2f}%, median {m['median_error']:.2f}%"
            )
            if s.warning:
                lines.append(f"    WARNING: {s.warning}")
            if s.adaptive_note:
                lines.append(f"    {s.adaptive_note}")
            if s.constraints is not None:
                v = s.verdicts()
                lines.append(
                    f"    keep: {', '.join(v[KEEP]) or '-'}; reject: {', '.join(v[REJECT]) or '-'}; "
                    f"neutral: {len(v[NEUTRAL])}"
                )
            elif s.constraints_note:
                lines.append(f"    constraints: {s.constraints_note}")
        lines.append(f"  report: {self.report}")
        lines.append(f"  results: {self.results_csv}   constraints: {self.constraints_csv}")
        for p in self.derived_spaces:
            lines.append(f"  derived space: {p}")
        for s in self.studies:
            if s.exports:
                lines.append(f"  best configs: {len(s.exports)} files in {s.exports[0].parent}")
        if self.figures:
            lines.append(f"  figures: {len(self.figures)} PNGs in {self.figures[0].parent}")
        return "\n".join(lines)


def _unique_labels(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


def _state_counts(study: optuna.Study | None) -> dict[str, int]:
    if study is None:
        return {}
    counts: dict[str, int] = {}
    for t in study.get_trials(
        deepcopy=False
    ):  # infeasible suggestions are stored COMPLETE but trained nothing
        key = "infeasible" if "infeasible" in t.user_attrs else t.state.name.lower()
        counts[key] = counts.get(key, 0) + 1
    return counts


def _structural_candidates(df: pd.DataFrame) -> list[str]:
    """Structural constraint names that `derive_constraints` will judge on this frame."""
    try:
        if stage_count(df) < 2:
            return []
    except ValueError:
        return []
    return [name for name, rule in STRUCTURAL.items() if stage_columns(df, rule.params[0])]


def _constraint_splits(df: pd.DataFrame, table: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """Errors of the models satisfying each judged structural constraint and of the rest (when both exist)."""
    rules = table.attrs.get("rules", {})
    out = {}
    for name in table["constraint"]:
        if name in STRUCTURAL and name in rules:
            split = split_by_mask(df, rules[name].mask(df))
            if split["satisfy"].size and split["violate"].size:
                out[str(name)] = split
    return out


def _study_report(
    run: RunData,
    bins: int | None,
    force: bool,
    warning: str | None,
    seed: int,
    importance: bool,
    adaptive: str | None = None,
    margin: tuple[float, str] = (0.5, "points"),
) -> StudyReport:
    """Compute every number of one study (no drawing, no files); `adaptive`: why EDF verdicts are left out."""
    df = run.df
    sampler = ", ".join(sorted(map(str, df["sampler"].dropna().unique()))) if "sampler" in df.columns else "?"
    report = StudyReport(
        label=run.label,
        run=run.run,
        space_name=run.space.name
        if run.space is not None
        else (str(df["space"].iloc[0]) if "space" in df else None),
        sampler=sampler or "?",
        summary=error_summary(df),
        states=_state_counts(run.study),
        warning=warning,
        space_note=run.space_note,
        adaptive_note=adaptive,
    )
    if importance:
        report.importance, report.importance_note = parameter_importance(run.study, seed=seed)
    else:
        report.importance_note = "parameter importance not computed (turned off)"
    if run.histories.empty:
        report.curves_note = "no per-epoch validation history recorded (the objective trained no epochs)"
    else:
        report.curves = extreme_curves(df, run.histories, CURVE_MODELS)
    if adaptive:
        return report
    names = _structural_candidates(df)
    if run.space is not None and names:
        report.shrink = exact_shrink(run.space, names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the forced-analysis warning is shown in the report
        options = dict(shrink=report.shrink or None, force=force, seed=seed, margin=margin[0],
                       margin_unit=margin[1])
        try:
            report.constraints = derive_constraints(df, bins=bins, **options)
        except ValueError as exc:
            if bins is None:
                report.constraints_note = f"no constraints derived: {exc}"
            else:  # retry on the raw EDFs: the complexity normalization is what failed
                try:
                    report.constraints = derive_constraints(df, **options)
                    report.constraints_note = (
                        f"complexity normalization failed ({exc}); constraints judged on raw EDFs"
                    )
                except ValueError as exc2:
                    report.constraints_note = f"no constraints derived: {exc2}"
    try:
        report.good_ranges = good_ranges(df)
    except ValueError as exc:
        report.good_ranges_note = f"no good ranges: {exc}"
    if report.constraints is not None:
        # power of each verdict's "not worse" keep if the constraint changed nothing (analysis.power)
        report.constraints["power"] = verdict_power(report.constraints, df["error"].to_numpy(dtype=float), seed=seed)
        report.splits = _constraint_splits(df, report.constraints)
        if run.space is not None:
            report.derived = derive_space(run.space, report.constraints, run.label)
    return report


# ------------------------------------------------------------------------------------------ drawing
def _slug(text: str) -> str:
    return safe_file_name(text)


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


def _figures(
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
                ReportFigure("edf", "Error EDFs (validation error) with 95% bootstrap bands.", None, "edf"),
                plots.plot_edfs(edf_frames, n_boot=n_boot, seed=seed),
            )
        )
    if edf_frames and bins is not None:
        figs.append(
            (
                ReportFigure(
                    f"edf_normalized_{bins}bins",
                    f"Complexity-normalized error EDFs ({bins} log-spaced flops bins over the shared range).",
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
        slug, label = _slug(rep.label), rep.label
        for name, split in rep.splits.items():
            figs.append(
                (
                    ReportFigure(
                        f"{slug}_split_{name}",
                        f"{label}: error EDFs of the models satisfying {name} and of the rest.",
                        label,
                        "split",
                    ),
                    plots.plot_split_edf(split, name),
                )
            )
        ranges = rep.good_ranges
        for param in _plot_params(rep, run.df):
            gr = None
            if ranges is not None and param in set(ranges["param"]):
                r = ranges.loc[ranges["param"] == param].iloc[0]
                gr = GoodRange(**{f.name: r[f.name] for f in dataclasses.fields(GoodRange)})
            figs.append(
                (
                    ReportFigure(
                        f"{slug}_error_vs_{param}",
                        f"{label}: validation error against {param}, "
                        "good range (95% interval of the best model's value) shaded.",
                        label,
                        "error_vs_param",
                    ),
                    plots.plot_error_vs_param(run.df, param, gr),
                )
            )
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
                        f"{label}: validation error by epoch of the "
                        f"{CURVE_MODELS} best and {CURVE_MODELS} worst models.",
                        label,
                        "curves",
                    ),
                    plots.plot_validation_curves(rep.curves),
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
    return figs


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ entry point
def analyze_runs(
    runs: Sequence[str | Path | tuple[str, str]],
    out_dir: str | Path,
    bins: int | None = None,
    force: bool = False,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    top: int = 5,
    importance: bool = True,
    margin: float = 0.5,
    margin_unit: str = "points",
) -> ReportSummary:
    """Analyze studies and write report.html, PNGs, CSVs, derived spaces and the best configs.

    Each run is a run folder, a storage URL holding one study, or a (storage URL, study name) pair.
    Studies from adaptive samplers (TPE, CMA-ES, ...) get what fits them (best configs, optimization
    history, importances, exports) and their EDF verdicts (EDFs, constraints, good ranges, derived space)
    are left out with a line saying why; with `force` they are drawn too, under a warning. `bins` turns
    on complexity normalization of the EDF comparisons and constraint tests; `margin` / `margin_unit` set
    the constraints' non-inferiority margin (see `derive_constraints`).
    """
    if isinstance(runs, (str, Path)) or not runs:
        raise ValueError("analyze_runs needs a non-empty list of run folders or storage URLs")
    resolve_margin(np.zeros(1), margin, margin_unit)  # a bad margin fails before anything is loaded
    if bins is not None and (isinstance(bins, bool) or not isinstance(bins, int) or bins < 1):
        raise ValueError(f"bins must be a positive integer or None, got {bins!r}")
    loaded = [load_run(*r) if isinstance(r, tuple) else load_run(r) for r in runs]
    for run, label in zip(loaded, _unique_labels([r.label for r in loaded])):
        run.label = label
    warnings_by_label: dict[str, str | None] = {}
    adaptive = {r.label: None if force else adaptive_note(r.df) for r in loaded}
    for run in loaded:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings_by_label[run.label] = require_unbiased_samples(run.df, force=True) if force else None

    reports = [
        _study_report(
            r,
            bins,
            force,
            warnings_by_label[r.label],
            seed,
            importance,
            adaptive[r.label],
            (margin, margin_unit),
        )
        for r in loaded
    ]
    frames = {r.label: r.df for r in loaded if not adaptive[r.label]}  # the EDFs: unbiased or forced samples
    weights: dict[str, np.ndarray] = {}
    strata: dict[str, np.ndarray] = {}
    norm_note = None
    if bins is not None:
        try:
            weights = plots.edf_weights(frames, bins)
            shared = plots.common_range(frames)
            strata = {
                name: complexity_bins(df["flops"].to_numpy(dtype=float), bins, shared)[0]
                for name, df in frames.items()
            }
        except ValueError as exc:
            norm_note = f"no complexity-normalized EDFs: {exc}; EDF comparisons use raw EDFs"
    expected = expected_best_table(frames, weights) if frames else None
    comparisons = compare_studies(frames, strata, seed)

    out = Path(out_dir)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    figures: list[ReportFigure] = []
    for entry, fig in _figures(loaded, reports, bins if weights else None, n_boot, seed):
        entry.png = _png(fig)
        entry.path = fig_dir / f"{entry.name}.png"
        entry.path.write_bytes(entry.png)
        figures.append(entry)

    results = pd.concat([r.df.assign(run=r.run) for r in loaded], ignore_index=True)
    results_csv = out / "results.csv"
    results.to_csv(results_csv, index=False)
    tables = [rep.constraints.assign(study=rep.label) for rep in reports if rep.constraints is not None]
    constraints = (
        pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["study", *COLUMNS])
    )
    constraints = constraints[["study", *[c for c in constraints.columns if c != "study"]]]
    constraints_csv = out / "constraints.csv"
    constraints.to_csv(constraints_csv, index=False)

    derived_paths: list[Path] = []
    for rep in reports:
        if rep.derived is None:
            continue
        name = "derived_space.yaml" if not derived_paths else f"derived_space_{_slug(rep.label)}.yaml"
        rep.derived_path = _write_space(rep, out / name)
        derived_paths.append(rep.derived_path)
    for run, rep in zip(loaded, reports):
        rep.exports, rep.exports_note = _export_best(run, top, out / "best_configs" / _slug(rep.label))

    summary = ReportSummary(
        out_dir=out,
        report=out / "report.html",
        results_csv=results_csv,
        constraints_csv=constraints_csv,
        derived_spaces=derived_paths,
        figures=[f.path for f in figures if f.path is not None],
        studies=reports,
        comparisons=comparisons,
        expected_best=expected,
        bins=bins,
        normalization_note=norm_note,
    )
    summary.report.write_text(render_report(summary, loaded, figures, top), encoding="utf-8")
    return summary


def _export_best(run: RunData, top: int, folder: Path) -> tuple[list[Path], str | None]:
    """The best `top` configs of a study as anynet-search config files (RegNet parameters where they fit)."""
    try:
        settings = StudySettings.from_study(run.study) if run.study is not None else None
    except (ValueError, TypeError):
        settings = None
    configs = configs_for(run.study) if run.study is not None else None
    try:
        return export_top(run.df, top, "yaml", folder, settings, configs=configs), None
    except ValueError as exc:
        return [], f"best configs not exported: {str(exc).splitlines()[0]}"


def _write_space(rep: StudyReport, path: Path) -> Path:
    """Write a derived space file (a commented, self-contained space definition) and check that it loads."""
    d = rep.derived
    assert d is not None
    header = [
        f"Derived by anynet-search report from study {rep.label} "
        f"({rep.summary['n']} models, sampler {rep.sampler}).",
        "Self-contained: the study's stored (merged) space definition plus the constraints kept on it:",
        f"  added: {', '.join(d.added) or 'none'}",
        *[f"  not added: {n}: {why}" for n, why in d.skipped],
        f"log10 size {d.log10_size_before:.2f} -> {d.log10_size_after:.2f}",
    ]
    if any(name.startswith("good_range:") for name in d.added):
        header.append(
            "ranges bound the sampled values (before the compatibility rule), the values they were judged on"
        )
    return d.write(path, header)
