"""One self-contained report over one or more studies: EDFs, constraints, good ranges, importances, exports.

`analyze_runs` loads every run, computes all numbers first (pure functions over the results frames, from
`anynet_search.analysis`), then draws the figures (`anynet_search.plots`) and writes:

- `report.html`: opens offline; figures are inlined PNGs (base64 data URIs), tables are HTML, no external
  CSS, JavaScript or fonts;
- `figures/*.png`: every figure of the report;
- `results.csv`: the tidy results of every study (one row per trained model);
- `constraints.csv`: the constraint verdicts of every random/QMC study;
- `derived_space.yaml`: the first analyzed study's design space with the kept constraints added
  (`derived_space_<study>.yaml` for the others), ready for `anynet-search run --space ...`.

`error` is the validation error (%) that the search minimized; `test_error` is measured on the held-out
test split and only reported, never used to select or judge anything.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import html
import io
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import yaml
from matplotlib.figure import Figure
from optuna.trial import TrialState

from anynet_search import plots
from anynet_search.analysis import (
    KEEP,
    NEUTRAL,
    REJECT,
    GoodRange,
    compare_edfs,
    complexity_bins,
    default_ns,
    derive_constraints,
    expected_best_error,
    good_ranges,
    param_columns,
    require_unbiased_samples,
    resolve_margin,
    sample_bias,
    stage_columns,
    stage_count,
    weighted_mean,
    weighted_median,
)
from anynet_search.analysis.constraints import COLUMNS
from anynet_search.errors import InputError
from anynet_search.export import configs_for, export_top
from anynet_search.paths import safe_file_name
from anynet_search.results import open_run, trials_frame
from anynet_search.spaces import DesignSpace, SpaceError, load_space
from anynet_search.study.plan import StudySettings
from anynet_search.study.storage import redact

__all__ = [
    "DerivedSpace",
    "ReportSummary",
    "RunData",
    "StudyReport",
    "adaptive_note",
    "analyze_runs",
    "derive_space",
    "error_summary",
    "exact_shrink",
    "load_run",
    "parameter_importance",
]

ERROR_NOTE = (
    "error is the validation error (%) on a split carved from the training set: it is what the search "
    "minimized and what every EDF, verdict, range and ranking here uses. test_error is measured on the "
    "held-out test split and reported separately; it never selects or judges anything."
)
#: Structural constraint candidates and how a space file says them: (constraints key, parameter).
STRUCTURAL: dict[str, tuple[str, str]] = {
    "shared_b": ("shared", "b"),
    "shared_g": ("shared", "g"),
    "increasing_widths": ("non_decreasing", "w"),
    "increasing_depths": ("non_decreasing", "d"),
}
_RANGE_DETAIL = re.compile(r"^\s*(\S+)\s*<=\s*(\w+)\s*<=\s*(\S+)\s*$")
MAX_PARAM_PLOTS = 4
DPI = 90


# ------------------------------------------------------------------------------------------ loading
@dataclass
class RunData:
    """One loaded run: results frame, Optuna study and (when known) its design space."""

    label: str
    run: str
    df: pd.DataFrame
    study: optuna.Study | None = None
    space: DesignSpace | None = None
    space_note: str | None = None


def _display_run(run: str | Path) -> str:
    text = str(run)
    return redact(text) if "://" in text or text.startswith("journal:") else text


def _space_of(study: optuna.Study | None, df: pd.DataFrame) -> tuple[DesignSpace | None, str | None]:
    """The study's stored design space, else the bundled space of its name, else None and why."""
    problem = "no Optuna study"
    if study is not None:
        try:
            return StudySettings.from_study(study).design_space(), None
        except (ValueError, TypeError) as exc:  # SpaceError is a ValueError
            problem = str(exc).splitlines()[0]
    names = df["space"].dropna().unique() if "space" in df.columns else []
    if len(names) != 1:
        return None, f"design space unknown ({problem}); exact shrink factors and derived space unavailable"
    try:
        space = load_space(str(names[0]))
    except SpaceError as exc:
        return None, f"design space unknown ({problem}; {exc}); exact shrink factors and derived space unavailable"
    return space, f"design space rebuilt from the space file {space.source} ({problem})"


def load_run(run: str | Path, study_name: str | None = None) -> RunData:
    """Load a run folder, or a storage URL and study name: results frame, study and design space."""
    _, study = open_run(run, study_name)
    name = study.study_name
    df = trials_frame(study)
    if df.empty:
        raise InputError(f"{_display_run(run)}: study {name!r} has no completed trials to analyze")
    space, note = _space_of(study, df)
    return RunData(label=name, run=_display_run(run), df=df, study=study, space=space, space_note=note)


def adaptive_note(df: pd.DataFrame) -> str | None:
    """One line saying why a study's EDF verdicts are left out (its sampler is adaptive); None if random/QMC."""
    problem = sample_bias(df)
    if problem is None:
        return None
    return (f"EDF verdicts left out: {problem}, which concentrate trials where errors are low, so the error EDF "
            "describes the search, not the design space (sample with --sampler random or qmc for EDFs, "
            "constraints and good ranges; --force draws them anyway)")


# ------------------------------------------------------------------------------------------ numbers
def error_summary(df: pd.DataFrame, weights: np.ndarray | None = None) -> dict[str, Any]:
    """n, best/median/mean validation error, the best model's trial and its test error, median test error."""
    e = pd.to_numeric(df["error"], errors="coerce").to_numpy(dtype=float)
    best = int(np.nanargmin(e))
    test = pd.to_numeric(df["test_error"], errors="coerce") if "test_error" in df.columns else None
    out = {
        "n": int(e.size),
        "best_error": float(e[best]),
        "median_error": weighted_median(e, weights),
        "mean_error": weighted_mean(e, weights),
        "best_trial": int(df["trial"].iloc[best]) if "trial" in df.columns else best,
        "best_test_error": float(test.iloc[best]) if test is not None else float("nan"),
        "median_test_error": float(test.median()) if test is not None else float("nan"),
    }
    return out


def exact_shrink(space: DesignSpace, names: Sequence[str] | None = None) -> dict[str, float]:
    """Exact log10 shrink factor of each structural constraint: log10 |space| - log10 |space + constraint|.

    Built by adding the constraint to a copy of the space definition (`constraints.shared` /
    `non_decreasing`); constraints a space cannot express (a RegNet space) are left out.
    """
    out: dict[str, float] = {}
    if space.family != "anynet":
        return out
    for name in names if names is not None else STRUCTURAL:
        key, param = STRUCTURAL[name]
        data = _with_constraint(space.data, key, param)
        try:
            size = DesignSpace(data, space.source).log10_size
        except SpaceError:
            continue
        shrink = space.log10_size - size
        if np.isfinite(shrink):
            out[name] = max(0.0, float(shrink))
    return out


def _with_constraint(data: Mapping[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A deep copy of a space definition with one constraint added (`shared`/`non_decreasing` list or a range)."""
    new = copy.deepcopy(dict(data))
    cons = dict(new.get("constraints") or {})
    if key == "ranges":
        param, bounds = value
        cons["ranges"] = {**(cons.get("ranges") or {}), param: list(bounds)}
    else:
        names = list(cons.get(key) or [])
        if value not in names:
            names.append(value)
        cons[key] = names
    new["constraints"] = cons
    return new


def _structural_candidates(df: pd.DataFrame) -> list[str]:
    """Structural constraint names that `derive_constraints` will judge on this frame."""
    try:
        if stage_count(df) < 2:
            return []
    except ValueError:
        return []
    return [name for name, (_, fam) in STRUCTURAL.items() if stage_columns(df, fam)]


# fANOVA's cost grows faster than linearly with the trials: 32 s for 1,000, 286 s for 10,000 on one core
# (benchmarks/bench_analysis.py); 1,000 covers the paper's 500 models per space in full.
IMPORTANCE_MAX_TRIALS = 1000


def parameter_importance(
    study: optuna.Study | None, seed: int = 0, max_trials: int | None = IMPORTANCE_MAX_TRIALS
) -> tuple[pd.DataFrame | None, str | None]:
    """fANOVA importances of the search parameters for the validation error (frame, note) or (None, reason).

    Studies with more than `max_trials` completed trials are evaluated on a seeded random subset of that
    many (the note says so); `None` uses them all.
    """
    if study is None:
        return None, "no Optuna study to compute importances from"
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(trials) < 2:
        return None, f"parameter importance needs at least 2 completed trials, the study has {len(trials)}"
    names = {k for t in trials for k in t.params}
    # one pass per parameter name: O(trials x params), not O(trials^2) (this took hours at 10,000 trials)
    if not any(len({repr(t.params.get(k)) for t in trials}) > 1 for k in names):
        return None, "parameter importance needs parameters that vary across trials; none do"
    target, note = study, None
    if max_trials is not None and len(trials) > max_trials:
        picks = np.random.default_rng(seed).choice(len(trials), size=max_trials, replace=False)
        level = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created in memory" line
        try:
            target = optuna.create_study(direction=study.direction)
        finally:
            optuna.logging.set_verbosity(level)
        target.add_trials([trials[i] for i in sorted(picks)])
        note = (f"computed on a random {max_trials:,} of the {len(trials):,} completed trials "
                "(fANOVA takes minutes on all of a large study)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(
                target, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed)
            )
    except Exception as exc:  # noqa: BLE001 - any evaluator failure is reported, not fatal
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"parameter importance failed: {first}"
    frame = pd.DataFrame({"param": list(imp), "importance": [float(v) for v in imp.values()]})
    return frame, note


@dataclass
class DerivedSpace:
    """A design space with the kept constraints added, and what was added or skipped (and why)."""

    data: dict[str, Any]
    added: list[str]
    skipped: list[tuple[str, str]]
    log10_size_before: float
    log10_size_after: float


def derive_space(space: DesignSpace, constraints: pd.DataFrame, label: str = "") -> DerivedSpace:
    """The space with every kept structural and good-range constraint added (in rank order, each validated).

    `fit_error` constraints have no space-file form and are skipped, as is any constraint the space
    cannot hold (the reason is recorded).
    """
    data = copy.deepcopy(dict(space.data))
    data.pop("extends", None)
    added: list[str] = []
    skipped: list[tuple[str, str]] = []
    current = space
    for row in constraints.itertuples(index=False):
        if row.verdict != KEEP:
            continue
        name = str(row.constraint)
        if name in STRUCTURAL:
            key, value = STRUCTURAL[name]
        elif name.startswith("good_range:"):
            m = _RANGE_DETAIL.match(str(row.detail))
            if not m:
                skipped.append((name, f"cannot read the range from {row.detail!r}"))
                continue
            lo, param, hi = float(m.group(1)), m.group(2), float(m.group(3))
            key, value = "ranges", (param, [_number(lo), _number(hi)])
        else:
            skipped.append((name, "has no space-file form (use a regnet space for fit-error constraints)"))
            continue
        candidate = _with_constraint(data, key, value)
        try:
            current = DesignSpace(candidate, space.source)
        except SpaceError as exc:
            skipped.append((name, str(exc).split(": ", 1)[-1]))
            continue
        data = candidate
        added.append(name)
    what = ", ".join(added) if added else "no constraint kept"
    head = {"name": f"{space.name}_derived",
            "description": f"{space.name} plus the constraints kept on study {label or space.name}: {what}"}
    data = {**head, **{k: v for k, v in data.items() if k not in head}}
    return DerivedSpace(data, added, skipped, space.log10_size, current.log10_size)


def _number(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


def _expected_best_table(frames: Mapping[str, pd.DataFrame], weights: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Expected best validation error of n random models of each study (n = 1, 2, 4, ... up to the smallest m)."""
    ns = default_ns(min(len(df) for df in frames.values()))
    table = pd.DataFrame({"n": ns})
    for label, df in frames.items():
        w = weights.get(label)
        res = expected_best_error(df["error"].to_numpy(dtype=float), ns=ns, weights=w)
        table[label] = res["expected_min"].to_numpy()
    return table


def _comparisons(
    frames: Mapping[str, pd.DataFrame], strata: Mapping[str, np.ndarray], seed: int = 0
) -> pd.DataFrame | None:
    """Each study's EDF against the first one's (KS test and mean/median differences; < 0: better).

    With `strata` (complexity bins over the shared range) the comparison is complexity-normalized and
    its p-value a permutation test within bins.
    """
    labels = list(frames)
    if len(labels) < 2:
        return None
    base = labels[0]
    rows = []
    for label in labels[1:]:
        res = compare_edfs(
            frames[label]["error"].to_numpy(dtype=float),
            frames[base]["error"].to_numpy(dtype=float),
            strata.get(label),
            strata.get(base),
            seed=seed,
        )
        rows.append({"study": label, "versus": base, **res.as_dict()})
    return pd.DataFrame(rows)


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
        lines = [f"anynet-search report of {len(self.studies)} stud{'y' if len(self.studies) == 1 else 'ies'} "
                 f"(error = validation error %, test error reported separately)"]
        for s in self.studies:
            m = s.summary
            lines.append(f"  {s.label} ({s.space_name or '?'}, {s.sampler}): n={m['n']}, "
                         f"best {m['best_error']:.2f}%, median {m['median_error']:.2f}%")
            if s.warning:
                lines.append(f"    WARNING: {s.warning}")
            if s.adaptive_note:
                lines.append(f"    {s.adaptive_note}")
            if s.constraints is not None:
                v = s.verdicts()
                lines.append(f"    keep: {', '.join(v[KEEP]) or '-'}; reject: {', '.join(v[REJECT]) or '-'}; "
                             f"neutral: {len(v[NEUTRAL])}")
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
    for t in study.get_trials(deepcopy=False):  # infeasible suggestions are stored COMPLETE but trained nothing
        key = "infeasible" if "infeasible" in t.user_attrs else t.state.name.lower()
        counts[key] = counts.get(key, 0) + 1
    return counts


def _study_report(
    run: RunData, bins: int | None, force: bool, warning: str | None, seed: int, importance: bool,
    adaptive: str | None = None, margin: tuple[float, str] = (0.5, "points"),
) -> StudyReport:
    """Compute every number of one study (no drawing, no files); `adaptive`: why EDF verdicts are left out."""
    df = run.df
    sampler = ", ".join(sorted(map(str, df["sampler"].dropna().unique()))) if "sampler" in df.columns else "?"
    report = StudyReport(
        label=run.label,
        run=run.run,
        space_name=run.space.name if run.space is not None else (str(df["space"].iloc[0]) if "space" in df else None),
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
    if adaptive:
        return report
    names = _structural_candidates(df)
    if run.space is not None and names:
        report.shrink = exact_shrink(run.space, names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the forced-analysis warning is shown in the report
        try:
            report.constraints = derive_constraints(df, shrink=report.shrink or None, force=force, bins=bins, seed=seed,
                                                    margin=margin[0], margin_unit=margin[1])
        except ValueError as exc:
            if bins is None:
                report.constraints_note = f"no constraints derived: {exc}"
            else:
                try:
                    report.constraints = derive_constraints(df, shrink=report.shrink or None, force=force, seed=seed,
                                                            margin=margin[0], margin_unit=margin[1])
                    report.constraints_note = (
                        f"complexity normalization failed ({exc}); constraints judged on raw EDFs"
                    )
                except ValueError as exc2:
                    report.constraints_note = f"no constraints derived: {exc2}"
    try:
        report.good_ranges = good_ranges(df)
    except ValueError as exc:
        report.good_ranges_note = f"no good ranges: {exc}"
    if run.space is not None and report.constraints is not None:
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
        candidates = [str(c).split(":", 1)[1] for c, v in rows if v == KEEP and str(c).startswith("good_range:")]
    picked = [p for p in candidates if p in available] or [p for p in available if p.startswith("w")]
    return picked[:MAX_PARAM_PLOTS]


def _figures(
    runs: Sequence[RunData], reports: Sequence[StudyReport], bins: int | None, n_boot: int, seed: int
) -> list[tuple[str, str, Figure]]:
    """(file stem, caption, figure) of every figure in the report, in report order.

    EDFs are drawn only for studies whose EDF verdicts are not left out (unbiased or forced samples).
    """
    frames = {r.label: r.df for r in runs}
    edf_frames = {r.label: r.df for r, rep in zip(runs, reports) if not rep.adaptive_note}
    figs: list[tuple[str, str, Figure]] = []
    if edf_frames:
        figs.append(("edf", "Error EDFs (validation error) with 95% bootstrap bands.",
                     plots.plot_edfs(edf_frames, n_boot=n_boot, seed=seed)))
    if edf_frames and bins is not None:
        figs.append((f"edf_normalized_{bins}bins",
                     f"Complexity-normalized error EDFs ({bins} log-spaced flops bins over the shared range).",
                     plots.plot_edfs(edf_frames, normalized=True, bins=bins, n_boot=n_boot, seed=seed)))
    figs.append(("complexity_hist", "Flops of the sampled models.", plots.plot_complexity_hist(frames)))
    both = pd.concat([r.df.assign(study=r.label) for r in runs], ignore_index=True)
    figs.append(("error_vs_flops", "Validation error against flops.", plots.plot_error_vs_flops(both)))
    for run, rep in zip(runs, reports):
        slug = _slug(rep.label)
        figs.append((f"{slug}_history", f"{rep.label}: optimization history, validation error of each completed "
                     "trial and the best so far.", plots.plot_history(run.df)))
        if stage_columns(run.df, "d") and stage_columns(run.df, "w"):
            figs.append((f"{slug}_block_widths",
                         f"{rep.label}: per-block widths of the best models (solid) and their RegNet fits (dashed).",
                         plots.plot_block_widths(run.df)))
        ranges = rep.good_ranges
        for param in _plot_params(rep, run.df):
            gr = None
            if ranges is not None and param in set(ranges["param"]):
                r = ranges.loc[ranges["param"] == param].iloc[0]
                gr = GoodRange(**{f.name: r[f.name] for f in dataclasses.fields(GoodRange)})
            fig = plots.plot_error_vs_param(run.df, param, gr)
            figs.append((f"{slug}_error_vs_{param}", f"{rep.label}: validation error against {param}, "
                         "good range (95% interval of the best model's value) shaded.", fig))
    return figs


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ HTML
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.4em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}th,td{border:1px solid #ddd;padding:.25em .5em;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
td.keep{background:#dff3df;font-weight:600}td.reject{background:#f8dada;font-weight:600}
.note{background:#eef4fb;border-left:4px solid #4a7fc1;padding:.6em 1em;margin:1em 0}
.warning{background:#fff3cd;border-left:4px solid #d39e00;padding:.6em 1em;margin:1em 0}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.8em}code{background:#f3f3f3;padding:0 .2em}
.meta{color:#666;font-size:.9em}
"""


def _fmt(x: Any) -> str:
    if isinstance(x, (float, np.floating)):
        if not np.isfinite(x):
            return "" if np.isnan(x) else str(x)
        return f"{x:.4g}"
    return str(x)


def _table(df: pd.DataFrame | None, columns: Sequence[str] | None = None) -> str:
    if df is None or df.empty:
        return "<p>(none)</p>"
    view = df[[c for c in columns if c in df.columns]] if columns else df
    text = view.to_html(index=False, border=0, na_rep="", float_format=_fmt, escape=True)
    return text.replace("<td>keep</td>", '<td class="keep">keep</td>').replace(
        "<td>reject</td>", '<td class="reject">reject</td>'
    )


def _p(text: str, cls: str | None = None) -> str:
    return f'<p class="{cls}">{html.escape(text)}</p>' if cls else f"<p>{html.escape(text)}</p>"


def _box(text: str, cls: str) -> str:
    return f'<div class="{cls}">{html.escape(text)}</div>'


def _img(png: bytes, caption: str, name: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


CONSTRAINT_COLUMNS = ("constraint", "verdict", "n", "n_eval", "fraction", "mean_diff", "mean_diff_lo", "mean_diff_hi",
                      "p_not_worse", "median_diff", "ks_stat", "p_adjusted", "log10_shrink", "shrink_source", "detail", "note")


def _best_models(df: pd.DataFrame, top: int) -> pd.DataFrame:
    cols = ["trial", "error", "test_error", "flops", "params", "acts", *param_columns(df), "fit_error"]
    return df.sort_values("error", kind="stable").head(top)[[c for c in cols if c in df.columns]]


def _html(
    summary: ReportSummary, runs: Sequence[RunData], images: Mapping[str, tuple[bytes, str]], top: int
) -> str:
    """The report page (every asset inlined)."""
    from anynet_search import __version__

    out = summary.out_dir
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    normalized = summary.bins is not None and summary.normalization_note is None
    basis = f"complexity-normalized ({summary.bins} flops bins)" if normalized else "raw"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>anynet-search report</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>Design-space report</h1>",
        _p(f"Generated {when} by anynet-search {__version__} from {len(runs)} "
           f"stud{'y' if len(runs) == 1 else 'ies'}. Constraints and EDF comparisons use {basis} EDFs.", "meta"),
        _box(ERROR_NOTE, "note"),
    ]
    if summary.normalization_note:
        parts.append(_box(summary.normalization_note, "warning"))
    for s in summary.studies:
        if s.warning:
            parts.append(_box(f"Biased sample, analyzed because it was forced: {s.label}: {s.warning}. Its EDFs "
                              "and constraint verdicts describe where the sampler searched, not the design space.",
                              "warning"))
    rows = []
    for s in summary.studies:
        m = s.summary
        rows.append({"study": s.label, "space": s.space_name, "sampler": s.sampler, "models": m["n"],
                     "failed trials": s.states.get("fail", 0), "pruned/infeasible": s.states.get("pruned", 0) + s.states.get("infeasible", 0),
                     "best error": m["best_error"], "median error": m["median_error"],
                     "mean error": m["mean_error"], "best model's trial": m["best_trial"],
                     "best model's test error": m["best_test_error"], "median test error": m["median_test_error"],
                     "run": s.run})
    parts += ["<h2>Studies</h2>", _table(pd.DataFrame(rows))]
    parts.append("<h2>Error EDFs</h2>")
    parts += [_img(png, cap, name) for name, (png, cap) in images.items() if name.startswith("edf")]
    parts += [_p(f"{s.label}: {s.adaptive_note}.") for s in summary.studies if s.adaptive_note]
    if summary.comparisons is not None:
        parts.append(_p(f"Each study against {summary.comparisons['versus'].iloc[0]} ({basis} EDFs): KS test and "
                        "differences of mean and median validation error (negative: lower errors than the baseline)."))
        parts.append(_table(summary.comparisons))
    parts.append("<h2>Complexity</h2>")
    parts += [_img(png, cap, name) for name, (png, cap) in images.items()
              if name in ("complexity_hist", "error_vs_flops")]
    if summary.expected_best is not None:
        parts += ["<h2>Expected best error</h2>",
                  _p(f"Expected lowest validation error among n models drawn at random from each study ({basis}); "
                     "exact from the order statistics."), _table(summary.expected_best)]
    for run, s in zip(runs, summary.studies):
        slug = _slug(s.label)
        parts.append(f"<h2>Study {html.escape(s.label)}</h2>")
        if s.space_note:
            parts.append(_p(s.space_note))
        parts.append(_box(s.adaptive_note, "note") if s.adaptive_note else "<h3>Constraints</h3>")
        if s.constraints is not None:
            parts.append(_p("A constraint is kept when the models satisfying it have a significantly better EDF "
                            f"than those violating it (alpha {s.constraints.attrs.get('alpha', 0.05):g}, "
                            "Holm-adjusted), or when it shrinks the space and a worsening of the mean error by the "
                            f"non-inferiority margin ({s.constraints.attrs.get('margin_spec', '')}) or more is "
                            "rejected by a permutation test at one-sided level "
                            f"{s.constraints.attrs.get('alpha', 0.05) / 2:g} (p_not_worse); mean_diff < 0 means "
                            "lower error. log10_shrink is exact (from the design space) for structural constraints "
                            "when the space is known, else estimated from the fraction of models satisfying it."))
            parts.append(_table(s.constraints, CONSTRAINT_COLUMNS))
        if s.constraints_note:
            parts.append(_p(s.constraints_note))
        if s.derived is not None:
            d = s.derived
            where = s.derived_path.name if s.derived_path else "(not written)"
            parts.append(_p(f"Derived space {where}: added {', '.join(d.added) or 'nothing'}; log10 size "
                            f"{d.log10_size_before:.2f} -> {d.log10_size_after:.2f}. Run it with "
                            f"anynet-search run --space {out / where}."))
            for name, why in d.skipped:
                parts.append(_p(f"not added: {name}: {why}"))
            text = yaml.safe_dump(d.data, sort_keys=False, default_flow_style=None, width=1000)
            parts.append(f"<pre>{html.escape(text)}</pre>")
        if not s.adaptive_note:  # good ranges are EDF verdicts too
            parts.append("<h3>Good ranges</h3>")
            parts.append(_p("Median and 95% interval of the best model's value over resamples of 25% of the "
                            "models (exact bootstrap distribution)."))
            parts.append(_table(s.good_ranges) if s.good_ranges is not None else _p(s.good_ranges_note or ""))
        parts += [_img(png, cap, name) for name, (png, cap) in images.items()
                  if name.startswith(f"{slug}_error_vs_")]
        parts.append("<h3>Optimization history</h3>")
        parts += [_img(png, cap, name) for name, (png, cap) in images.items() if name == f"{slug}_history"]
        parts.append("<h3>Parameter importance</h3>")
        if s.importance is not None:
            sub = f" ({s.importance_note})" if s.importance_note else ""
            parts.append(_p(f"fANOVA importance (Optuna) of each search parameter for the validation error{sub}."))
            parts.append(_table(s.importance))
        else:
            parts.append(_p(s.importance_note or "not available"))
        parts.append("<h3>Best models</h3>")
        parts.append(_table(_best_models(run.df, top)))
        parts += [_img(png, cap, name) for name, (png, cap) in images.items() if name == f"{slug}_block_widths"]
        if s.exports:
            parts.append(_p(f"Exported configs of the best {top} (anynet-search config files, RegNet parameters "
                            f"where they fit): {s.exports[0].parent.relative_to(out)}/; other formats with "
                            "anynet-search export --format json|pycls."))
        elif s.exports_note:
            parts.append(_p(s.exports_note))
    files = [summary.results_csv, summary.constraints_csv, *summary.derived_spaces, *summary.figures,
             *[p for s in summary.studies for p in s.exports]]
    parts.append("<h2>Files</h2><ul>")
    parts += [f"<li><code>{html.escape(str(p.relative_to(out)))}</code></li>" for p in files]
    parts.append("</ul>")
    parts.append(_p("Method: Radosavovic et al., On Network Design Spaces for Visual Recognition (ICCV 2019, "
                    "arXiv:1905.13214) and Designing Network Design Spaces (CVPR 2020, arXiv:2003.13678)."))
    parts.append("</body></html>")
    return "\n".join(parts)


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

    reports = [_study_report(r, bins, force, warnings_by_label[r.label], seed, importance, adaptive[r.label],
                             (margin, margin_unit)) for r in loaded]
    frames = {r.label: r.df for r in loaded if not adaptive[r.label]}  # the EDFs: unbiased or forced samples
    weights: dict[str, np.ndarray] = {}
    strata: dict[str, np.ndarray] = {}
    norm_note = None
    if bins is not None:
        try:
            weights = plots.edf_weights(frames, bins)
            shared = plots.common_range(frames)
            strata = {name: complexity_bins(df["flops"].to_numpy(dtype=float), bins, shared)[0]
                      for name, df in frames.items()}
        except ValueError as exc:
            norm_note = f"no complexity-normalized EDFs: {exc}; EDF comparisons use raw EDFs"
    expected = _expected_best_table(frames, weights) if frames else None
    comparisons = _comparisons(frames, strata, seed)

    out = Path(out_dir)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    figure_paths: list[Path] = []
    images: dict[str, tuple[bytes, str]] = {}
    for name, caption, fig in _figures(loaded, reports, bins if weights else None, n_boot, seed):
        png = _png(fig)
        path = fig_dir / f"{name}.png"
        path.write_bytes(png)
        figure_paths.append(path)
        images[name] = (png, caption)

    results = pd.concat([r.df.assign(run=r.run) for r in loaded], ignore_index=True)
    results_csv = out / "results.csv"
    results.to_csv(results_csv, index=False)
    tables = [rep.constraints.assign(study=rep.label) for rep in reports if rep.constraints is not None]
    constraints = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["study", *COLUMNS])
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

    summary = ReportSummary(out_dir=out, report=out / "report.html", results_csv=results_csv,
                            constraints_csv=constraints_csv, derived_spaces=derived_paths, figures=figure_paths,
                            studies=reports, comparisons=comparisons, expected_best=expected, bins=bins,
                            normalization_note=norm_note)
    summary.report.write_text(_html(summary, loaded, images, top), encoding="utf-8")
    return summary


def _export_best(run: RunData, top: int, folder: Path) -> tuple[list[Path], str | None]:
    """The best `top` configs of a study as anynet-search config files (and RegNet parameters where they fit)."""
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
        f"# Derived by anynet-search report from study {rep.label} ({rep.summary['n']} models, sampler {rep.sampler}).",
        "# Self-contained: the study's stored (merged) space definition plus the constraints kept on it:",
        f"#   added: {', '.join(d.added) or 'none'}",
        *[f"#   not added: {n}: {why}" for n, why in d.skipped],
        f"# log10 size {d.log10_size_before:.2f} -> {d.log10_size_after:.2f}",
    ]
    if any(name.startswith("good_range:") for name in d.added):
        header.append("# ranges bound the sampled values (before the compatibility rule), the values they were judged on")
    text = yaml.safe_dump(d.data, sort_keys=False, default_flow_style=None, width=1000)
    path.write_text("\n".join(header) + "\n" + text, encoding="utf-8")
    load_space(path)  # raises SpaceError (one line) if the written file were not a valid space
    return path
