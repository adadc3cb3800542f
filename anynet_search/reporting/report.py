"""Render the report page: `templates/report.html.j2` (Jinja2, autoescaped), `templates/report.css` inlined.

Rendering only: every number comes computed (`summary`, by `analyze.analyze_runs`); this module formats them
into table cells and places the figures (inlined as base64 PNGs, so the page opens offline).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from markupsafe import Markup

from anynet_search.analysis import param_columns, stage_columns
from anynet_search.analysis.best import rank_by_error
from anynet_search.analysis.columns import SAMPLED_PREFIX
from anynet_search.reporting.cells import Table, fmt
from anynet_search.reporting.headline import as_dict, next_command
from anynet_search.reporting.noise import noise_sentence
from anynet_search.reporting.results import RunData
from anynet_search.reporting.summary import ReportFigure, ReportSummary, StudyReport
from anynet_search.reporting.verdicts import verdict_rows, verdict_text

__all__ = ["ERROR_NOTE", "render_report", "verdict_text"]  # verdict_text: from verdicts, for old imports

ERROR_NOTE = (
    "error is the validation error (%) on a split carved from the training set: it is what the search "
    "minimized and what every EDF, verdict, range and ranking here uses. test_error is measured on the "
    "held-out test split and reported separately; it never selects or judges anything."
)
TEMPLATE, CSS = "report.html.j2", "report.css"


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    """The page template, read through importlib.resources (works from a wheel and a zip)."""
    folder = resources.files("anynet_search.reporting") / "templates"
    env = jinja2.Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    template = env.from_string((folder / TEMPLATE).read_text(encoding="utf-8"))
    template.globals["css"] = Markup((folder / CSS).read_text(encoding="utf-8"))
    return template


def _studies_table(summary: ReportSummary) -> Table:
    rows = []
    for s in summary.studies:
        m = s.summary
        pruned = s.states.get("pruned", 0) + s.states.get("infeasible", 0)
        rows.append(
            [
                s.label,
                s.space_name or "?",
                s.sampler,
                s.dataset or "?",
                "" if s.epochs is None else str(s.epochs),
                str(m["n"]),
                str(s.states.get("fail", 0)),
                str(pruned),
                fmt(m["best_error"]),
                fmt(m["median_error"]),
                fmt(m["mean_error"]),
                fmt(m["best_test_error"]),
                fmt(m["median_test_error"]),
            ]
        )
    columns = [
        "study",
        "space",
        "sampler",
        "data set",
        "epochs",
        "models",
        "failed trials",
        "pruned / infeasible",
        "best error (%)",
        "median error (%)",
        "mean error (%)",
        "best model's test error (%)",
        "median test error (%)",
    ]
    numeric = [False, False, False, False] + [True] * 9
    return Table(columns, rows, numeric)


def _sampled_differences(row: pd.Series, built: dict[str, list[str]]) -> str:
    """'w4 72 -> 64, g 8 -> 4, 4, 8, 8': the sampled values the compatibility rule changed in the built model."""
    out = []
    for column in row.index:
        if not str(column).startswith(SAMPLED_PREFIX) or pd.isna(row[column]):
            continue
        name = str(column)[len(SAMPLED_PREFIX):]
        family = name.rstrip("0123456789")
        targets = [name] if name in row.index else (built.get(family, []) if name == family else [])
        values = [row[t] for t in targets if not pd.isna(row[t])]
        if values and any(float(v) != float(row[column]) for v in values):
            out.append(f"{name} {fmt(row[column])} -> {', '.join(fmt(v) for v in values)}")
    return "; ".join(out)


def _best_models(df: pd.DataFrame, top: int) -> Table | None:
    """The `top` lowest-error models, per-stage d/w/b/g as one list each (the table fits the page): the built
    values, and the sampled ones where the compatibility rule changed them."""
    best = rank_by_error(df).head(top)
    cols = [c for c in ("trial", "error", "test_error", "flops", "params", "acts") if c in best.columns]
    view = best[cols].copy()
    try:
        families = {f: stage_columns(best, f) for f in ("d", "w", "b", "g")} if param_columns(best) else {}
    except ValueError:
        families = {}
    for fam, fcols in families.items():
        if fcols:
            view[f"built {fam}"] = [", ".join(fmt(v) for v in row) for row in best[fcols].itertuples(index=False)]
    if "fit_error" in best.columns:
        view["fit_error"] = best["fit_error"]
    view["sampled -> built, where they differ"] = [_sampled_differences(r, families) for _, r in best.iterrows()]
    table = Table.of(view)
    if table is not None:
        table.numeric = [c in cols or c == "fit_error" for c in view.columns]
        table.columns = [UNITS.get(c, c) for c in table.columns]
    return table


#: Table headers with their units (error columns are validation or test error in %, differences in points).
UNITS = {"error": "error (%)", "test_error": "test error (%)", "fit_error": "fit error", "mean_diff":
         "mean difference (points)", "median_diff": "median difference (points)", "ks_stat": "KS statistic",
         "p_value": "p-value", "n_a": "models", "n_b": "models (versus)", "power": "power (%)"}


def _with_units(df: pd.DataFrame | None, errors: bool = False) -> pd.DataFrame | None:
    """A table for the page: headers with their units, power in percent; `errors`: every column but `n` holds
    errors in % (the expected best error of each study)."""
    if df is None:
        return None
    out = df.copy()
    if "power" in out.columns:
        out["power"] = 100 * out["power"].astype(float)
    names = {c: UNITS.get(str(c), str(c)) for c in out.columns}
    if errors:
        names = {c: "models drawn (n)" if c == "n" else f"{c} (%)" for c in out.columns}
    return out.rename(columns=names)


def _good_ranges(s: StudyReport) -> Table | None:
    """The good ranges (best model's value, built values of all models) beside the range constraint that was judged
    (sampled values, derived on a random half of the models) and its verdict, with why the two differ."""
    ranges = s.good_ranges
    judged = {}
    if s.constraints is not None:
        rules = s.constraints.attrs.get("rules", {})
        for r in s.constraints.itertuples(index=False):
            name = str(r.constraint)
            if name.startswith("good_range:") and name in rules:
                judged[name.split(":", 1)[1]] = (rules[name], str(r.verdict), str(r.note))
    if (ranges is None or ranges.empty) and not judged:
        return None
    rows, seen = [], set()
    for r in ([] if ranges is None else ranges.itertuples(index=False)):
        rule, verdict, note = judged.get(str(r.param), (None, "", ""))
        seen.add(str(r.param))
        rows.append([str(r.param), fmt(r.median), f"{fmt(r.lo)} .. {fmt(r.hi)}",
                     "" if rule is None else f"{fmt(rule.lo)} .. {fmt(rule.hi)}", verdict,
                     _range_difference(float(r.lo), float(r.hi), rule, note)])
    for param, (rule, verdict, _) in judged.items():
        if param not in seen:  # a shared parameter (one value for every stage) has no built column of its name
            rows.append([param, "", "", f"{fmt(rule.lo)} .. {fmt(rule.hi)}", verdict,
                         "a parameter the space shares across stages: judged on its one sampled value"])
    columns = ["param", "best model's value (median)", "95% range: built values, all models",
               "range judged as a constraint: sampled values", "verdict", "ranges differ: judged on"]
    return Table(columns, rows, [False, True, True, True, False, False])


def _range_difference(lo: float, hi: float, rule: Any, note: str) -> str:
    if rule is None:
        return "not judged as a constraint"
    if (float(rule.lo), float(rule.hi)) == (lo, hi):
        return ""
    return "sampled values of half the models" if "random half" in note else "sampled values"


# ------------------------------------------------------------------------------------------ page
def _img(figure: ReportFigure) -> dict[str, str]:
    return {
        "name": figure.name,
        "alt": figure.caption,  # what the figure shows, for a reader who cannot see it
        "caption": figure.caption,
        "src": "data:image/png;base64," + base64.b64encode(figure.png).decode("ascii"),
    }


def _anchor(index: int, label: str) -> str:
    """A unique, URL-safe id for a study's section."""
    return f"study-{index + 1}-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", label).strip("-") or "study")


def _study_section(s: StudyReport, run: RunData, figures: Sequence[ReportFigure], top: int, out: Path,
                   anchor: str = "study") -> dict:
    """The template's view of one study: its tables, verdict rows, figures and notes."""
    mine = [f for f in figures if f.study == s.label]

    def kind(k: str) -> list[dict[str, str]]:
        return [_img(f) for f in mine if f.kind == k]

    section: dict[str, Any] = {
        "anchor": anchor,
        "label": s.label,
        "run": s.run,
        "training": s.training,
        "training_warnings": s.training_warnings,
        "importance_figures": kind("importance"),
        "space_note": s.space_note,
        "configs_note": s.configs_note,
        "adaptive_note": s.adaptive_note,
        "constraints": None,
        "constraints_note": s.constraints_note,
        "derived": None,
        "good_ranges": _good_ranges(s),
        "good_ranges_note": s.good_ranges_note,
        "importance": Table.of(s.importance),
        "importance_note": s.importance_note,
        "splits": kind("split"),
        "error_vs_param": kind("error_vs_param"),
        "history": kind("history"),
        "curves": kind("curves"),
        "curves_note": s.curves_note,
        "block_widths": kind("block_widths"),
        "best": _best_models(run.df, top),
        "exports": None,
        "exports_note": s.exports_note,
    }
    if s.constraints is not None:
        attrs = s.constraints.attrs
        shown, folded = verdict_rows(s.constraints, dict(s.derived.skipped) if s.derived is not None else None)
        section["constraints"] = {
            "alpha": f"{attrs.get('alpha', 0.05):g}",
            "half_alpha": f"{attrs.get('alpha', 0.05) / 2:g}",
            "margin_spec": attrs.get("margin_spec", ""),
            "shown": shown,
            "folded": folded,
            "folded_summary": f"{len(folded)} more constraint{'s' if len(folded) != 1 else ''} that every "
            "evaluated model satisfies (nothing to compare them with)",
        }
    if s.derived is not None:
        d = s.derived
        where = s.derived_path.name if s.derived_path else "(not written)"
        section["derived"] = {
            "file": where,
            "added": ", ".join(d.added) or "nothing",
            "skipped": d.skipped,
            "before": f"{d.log10_size_before:.2f}",
            "after": f"{d.log10_size_after:.2f}",
            "command": next_command(s.derived_path, s, run.settings.train if run.settings else None)
            if s.derived_path else "",
            "yaml": d.to_yaml(),
        }
    if s.exports:
        section["exports"] = str(s.exports[0].parent.relative_to(out))
    return section


def _comparison_powers(summary: ReportSummary) -> list[str]:
    """One sentence per study comparison: the power it had, and what a 'no difference' there is worth."""
    table = summary.comparisons
    if table is None or "power" not in table.columns:
        return []
    shift = summary.power_shift
    out = []
    for row in table.itertuples(index=False):
        p = float(row.power)
        found = row.p_value <= 0.05
        text = (f"{row.study} against {row.versus}: this comparison had {100 * p:.0f}% power to detect a "
                f"{shift:.3g}-point shift")
        if found:
            text += f"; it found a difference (p = {row.p_value:.2g})."
        elif p < 0.8:
            text += "; 'no difference' here is not evidence."
        else:
            text += "; it found none, and would have found one that large 4 times in 5."
        out.append(text)
    return out


def _fidelity_sections(summary: ReportSummary, figures: Sequence[ReportFigure]) -> list[dict[str, Any]]:
    """The template's view of each fidelity pair: headline table, verdict table, notes and figure."""
    from anynet_search.reporting.fidelity import verdict_view

    pictures = [_img(f) for f in figures if f.kind == "fidelity"]
    out = []
    for k, f in enumerate(summary.fidelity):
        v = f.result.verdicts
        out.append({
            "low": f.low, "high": f.high, "low_budget": f.low_budget, "high_budget": f.high_budget,
            "summary": Table.of(f.summary_rows()),
            "verdicts": Table.of(verdict_view(v)) if v is not None else None,
            "trivial": v.attrs.get("trivial", 0) if v is not None else 0,
            "margin_spec": v.attrs.get("margin_spec", "") if v is not None else "",
            "notes": f.result.notes + ([f.margin_flag] if f.margin_flag else []),
            "n_boot": f.n_boot,
            "figure": pictures[k:k + 1],
        })
    return out


def render_report(
    summary: ReportSummary, runs: Sequence[RunData], figures: Sequence[ReportFigure], top: int
) -> str:
    """The report page as one self-contained HTML string (template + CSS + inlined figures)."""
    from anynet_search import __version__

    out = summary.out_dir
    basis = summary.comparison_basis()
    sections = [_study_section(s, run, figures, top, out, _anchor(i, s.label))
                for i, (s, run) in enumerate(zip(summary.studies, runs))]
    trainings = {s.training for s in summary.studies}
    fidelity = _fidelity_sections(summary, figures)
    toc = [("summary", "What this report found"), ("studies", "Studies"), ("edfs", "Error EDFs"),
           ("complexity", "Complexity")]
    if summary.expected_best is not None:
        toc.append(("expected-best", "Expected best error"))
    toc += [(f"fidelity-{k}", f"Fidelity {f['low']} vs {f['high']}") for k, f in enumerate(fidelity)]
    toc += [(f"noise-{k}", f"Retrain noise {p.second}") for k, p in enumerate(summary.noise)]
    toc += [(sec["anchor"], f"Study {sec['label']}") for sec in sections] + [("files", "Files")]
    files = [
        summary.results_csv,
        summary.constraints_csv,
        *summary.derived_spaces,
        *summary.figures,
        *[p for s in summary.studies for p in s.exports],
    ]
    context = {
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "version": __version__,
        "n_studies": len(runs),
        "studies_word": "study" if len(runs) == 1 else "studies",
        "basis": basis,
        "constraint_basis": summary.constraint_basis(),
        "toc": toc,
        "training": next(iter(trainings)) if len(trainings) == 1 else None,
        "settings_warning": summary.settings_warning,
        "training_warnings": [(s.label, w) for s in summary.studies for w in s.training_warnings],
        "error_note": ERROR_NOTE,
        "normalization_note": summary.normalization_note,
        "warnings": [(s.label, s.warning) for s in summary.studies if s.warning],
        "studies_table": _studies_table(summary),
        "edf_figures": [_img(f) for f in figures if f.kind == "edf"],
        "adaptive_notes": [(s.label, s.adaptive_note) for s in summary.studies if s.adaptive_note],
        "comparisons": Table.of(_with_units(summary.comparisons)),
        "raw_comparisons": Table.of(_with_units(summary.raw_comparisons)),
        "versus": summary.comparisons["versus"].iloc[0] if summary.comparisons is not None else "",
        "comparison_powers": _comparison_powers(summary),
        "comparison_lines": [f"{r.study} against {r.versus} ({basis} EDFs): mean error {r.mean_diff:+.2f} points, KS "
                             f"p = {r.p_value:.2g}" for r in (summary.comparisons.itertuples(index=False)
                                                             if summary.comparisons is not None else [])],
        "noise": [pair.lines() for pair in summary.noise],
        "noise_sentence": (noise_sentence(summary.comparisons, summary.noise)
                           if summary.noise and summary.comparisons is not None else None),
        "complexity_figures": [_img(f) for f in figures if f.kind == "complexity"],
        "expected_best": Table.of(_with_units(summary.expected_best, errors=True)),
        "headlines": [as_dict(h) for h in summary.headlines],
        "fidelity": fidelity,
        "studies": sections,
        "files": [str(p.relative_to(out)) for p in files],
    }
    return _template().render(**context)
