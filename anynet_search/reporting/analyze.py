"""Analyze one or more studies: load them, compute every number, draw the figures, write the report's files.

`analyze_runs` loads every run (`results.load_run`), computes all numbers first (`summary.study_report`:
pure functions from `anynet_search.analysis`, and a space derived from the kept constraints by
`anynet_search.spaces.derive`), then draws the figures (`figures`, with `plots`) and writes:

- `report.html`: rendered by `report` from its template; opens offline (figures are inlined PNGs, no
  external CSS, JavaScript or fonts);
- `figures/*.png`: every figure of the report;
- `results.csv`: the tidy results of every study (one row per trained model);
- `constraints.csv`: the constraint verdicts of every random/QMC study;
- `derived_space_<study>.yaml`: each random/QMC study's design space with the kept constraints added, ready
  for `anynet-search run --space ...` (`derive` names its file the same way);
- `best_configs/<study>/`: the best models' configs.

Two studies that trained the same configs (one made from the other with `run --configs-from`, or random
studies of one space and seed) get a fidelity section (`reporting.fidelity`): do their budgets rank the
models alike? Two that trained them alike under other training seeds (`run --repeat K`) measure the retrain
noise instead (`reporting.noise`): the retraining is left out of the comparisons of studies (it re-measures
the same models), and each comparison states how many sds of the retrain noise its difference of means is.
Each comparison of studies states its power against a shift of the margin.

`error` is the validation error (%) that the search minimized; `test_error` is measured on the held-out
test split and only reported, never used to select or judge anything.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from anynet_search.analysis import complexity_bins, require_unbiased_samples, resolve_margin
from anynet_search.analysis.constraints import COLUMNS
from anynet_search.analysis.noise import retrain_noise
from anynet_search.analysis.samplers import adaptive_note
from anynet_search.analysis.studies import (
    COMPLEXITY_ALPHA,
    automatic_bins,
    compare_studies,
    complexity_differences,
    expected_best_table,
)
from anynet_search.errors import InputError
from anynet_search.paths import derived_space_name, safe_file_name
from anynet_search.reporting import plots
from anynet_search.reporting.export import configs_for, export_top
from anynet_search.reporting.fidelity import fidelity_of, fidelity_pairs
from anynet_search.reporting.figures import png_bytes, report_figures, scaled
from anynet_search.reporting.headline import headline
from anynet_search.reporting.noise import RetrainPair, retrain_pairs, with_noise
from anynet_search.reporting.report import render_report
from anynet_search.reporting.results import RunData, load_run
from anynet_search.reporting.summary import ReportFigure, ReportSummary, StudyReport, study_report
from anynet_search.study.settings import StudySettings

__all__ = ["ReportFigure", "ReportSummary", "StudyReport", "analyze_runs"]


def _unique_labels(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


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
    # the low budget of a fidelity pair (the same configs, trained otherwise) differs on purpose: the other studies
    # must agree among themselves, and the report says what the low ones' EDFs measure
    matched = fidelity_pairs(loaded)  # (low, high) indices into loaded; matched once, used here and below
    retrains = retrain_pairs(loaded, matched)  # trainings of the same configs alike: the retrain noise
    pairs = [p for p in matched if p not in retrains and p[::-1] not in retrains]
    copies = {second for _, second in retrains}  # re-measurements of a study, not samples of a space
    lows = {low for low, _ in pairs}
    differences = settings_differences([r for k, r in enumerate(loaded) if k not in lows])
    settings_warning = None
    if differences:
        text = "; ".join(differences)
        if not force:
            raise InputError(f"the studies were trained differently ({text}): their EDFs would compare the "
                             "training, not the design spaces; compare studies of one data set and trainer, pass "
                             "--force to compare them anyway under a warning, or train the same configs with run "
                             "--configs-from to compare the budgets (fidelity)")
        settings_warning = (f"the studies were trained differently ({text}); compared anyway (--force): "
                            "differences between their EDFs measure the training as much as the design spaces")
    elif lows and (all_differences := settings_differences(loaded)):
        settings_warning = (f"{', '.join(loaded[k].label for k in sorted(lows))} train the configs of another study "
                            f"otherwise ({'; '.join(all_differences)}): the Fidelity section compares "
                            "the budgets; their EDFs beside the others measure the training, not the design spaces")
    warnings_by_label: dict[str, str | None] = {}
    adaptive = {r.label: None if force else adaptive_note(r.df) for r in loaded}
    for run in loaded:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings_by_label[run.label] = require_unbiased_samples(run.df, force=True) if force else None

    reports = [
        study_report(
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
    # the EDFs: unbiased or forced samples; a retraining re-measures its study's models, so it is no other sample
    frames = {r.label: r.df for k, r in enumerate(loaded) if not adaptive[r.label] and k not in copies}
    noise = [RetrainPair(loaded[i].label, loaded[j].label, retrain_noise(loaded[i].df, loaded[j].df, n_boot=n_boot,
                                                                         seed=seed)) for i, j in retrains]
    weights: dict[str, np.ndarray] = {}
    strata: dict[str, np.ndarray] = {}
    norm_note = None
    compare_bins, why_normalized = bins, ("asked for (--bins)" if bins is not None else None)
    if bins is None and len(frames) >= 2 and all("flops" in df for df in frames.values()):
        differ = {k: p for k, p in complexity_differences(frames).items() if p < COMPLEXITY_ALPHA}
        if differ:
            compare_bins = automatic_bins(min(len(df) for df in frames.values()))
            base = next(iter(frames))
            why_normalized = ("chosen because the studies' flops distributions differ (KS " + ", ".join(
                f"{k} vs {base} p = {p:.2g}" for k, p in differ.items()) + f" < {COMPLEXITY_ALPHA:g})")
    if compare_bins is not None and frames:
        try:
            weights = plots.edf_weights(frames, compare_bins)
            shared = plots.common_range(frames)
            strata = {
                name: complexity_bins(df["flops"].to_numpy(dtype=float), compare_bins, shared)[0]
                for name, df in frames.items()
            }
        except ValueError as exc:
            norm_note = f"no complexity-normalized EDFs: {exc}; EDF comparisons use raw EDFs"
    expected = expected_best_table(frames, weights) if frames else None
    shift = _power_shift(frames, margin, margin_unit)
    comparisons = with_noise(compare_studies(frames, strata, seed, power_shift=shift), frames, noise)
    raw_comparisons = compare_studies(frames, {}, seed) if strata else None
    fidelity = [fidelity_of(loaded[i], loaded[j], n_boot=n_boot, seed=seed, margin=margin, margin_unit=margin_unit)
                for i, j in pairs if not adaptive[loaded[i].label] and not adaptive[loaded[j].label]]

    out = Path(out_dir)
    clear_previous_report(out)  # after everything was loaded and computed: a failed analysis leaves it as it was
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    figures: list[ReportFigure] = []
    for entry, fig in report_figures(loaded, reports, compare_bins if weights else None, n_boot, seed):
        entry.png = png_bytes(fig)
        entry.path = fig_dir / f"{entry.name}.png"
        entry.path.write_bytes(entry.png)
        figures.append(entry)
    for k, f in enumerate(fidelity):
        if f.figure is None:
            continue
        entry = ReportFigure(f"fidelity_{k + 1}", f"Fidelity: {f.low} ({f.low_budget}) against {f.high} "
                             f"({f.high_budget}): each matched model's two errors, and their EDFs.", None, "fidelity")
        scaled([(entry, f.figure)])
        entry.png = png_bytes(f.figure)
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
        rep.derived_path = _write_space(rep, out / derived_space_name(rep.label))
        derived_paths.append(rep.derived_path)
    for run, rep in zip(loaded, reports):
        folder = out / "best_configs" / safe_file_name(rep.label)
        rep.exports, rep.exports_note = _export_best(run, top, folder)
    headlines = [headline(rep, run.df, run.settings.train if run.settings is not None else None)
                 for run, rep in zip(loaded, reports)]

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
        fidelity=fidelity,
        power_shift=shift,
        compare_bins=compare_bins if strata else None,
        normalization_reason=why_normalized if strata else None,
        raw_comparisons=raw_comparisons,
        settings_warning=settings_warning,
        headlines=headlines,
        noise=noise,
    )
    summary.report.write_text(render_report(summary, loaded, figures, top), encoding="utf-8")
    written = [summary.report, results_csv, constraints_csv, *derived_paths, *summary.figures,
               *[p for rep in reports for p in rep.exports]]
    (out / MANIFEST).write_text(json.dumps(sorted(str(p.relative_to(out)) for p in written), indent=1) + "\n",
                                encoding="utf-8")
    return summary


def _power_shift(frames: dict[str, pd.DataFrame], margin: float, margin_unit: str) -> float | None:
    """The shift whose power each comparison of studies states: the margin in points (the first study's sd
    for `sd` units); None when it is 0 or there is nothing to compare."""
    if len(frames) < 2:
        return None
    shift, _ = resolve_margin(next(iter(frames.values()))["error"].to_numpy(dtype=float), margin, margin_unit)
    return shift if shift > 0 else None


#: The files an analysis wrote into its folder, relative to it: the next analysis into that folder removes them.
MANIFEST = ".anynet-report.json"
#: What versions without a manifest wrote (removed when such a folder is analyzed into again).
LEGACY_FILES = ("report.html", "results.csv", "constraints.csv", "derived_space*.yaml", "figures/*.png",
                "best_configs/*/*")


def clear_previous_report(out: Path) -> list[Path]:
    """Remove the files a previous analysis wrote into `out` (its manifest's list, or the names older versions
    wrote), and the folders that become empty; other files stay. Returns what was removed."""
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            names = [str(n) for n in json.loads(manifest.read_text(encoding="utf-8"))]
        except (ValueError, TypeError):
            raise InputError(f"{manifest}: not a report manifest; remove the folder's old report by hand") from None
        owned = [out / n for n in names if ".." not in Path(n).parts and not Path(n).is_absolute()]
    elif (out / "report.html").is_file():
        owned = [p for pattern in LEGACY_FILES for p in out.glob(pattern)]
    else:
        return []
    removed = []
    for path in [*owned, manifest]:
        if path.is_file():
            path.unlink()
            removed.append(path)
    for folder in sorted({p.parent for p in owned}, key=lambda p: len(p.parts), reverse=True):
        while folder != out and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    return removed


def settings_differences(runs: Sequence[RunData]) -> list[str]:
    """'KEY: A v1, B v2' for each data or trainer setting (`StudySettings.outcome_settings`) in which a study differs
    from the first one; studies without stored settings are not compared."""
    known = [r for r in runs if r.settings is not None]
    if len(known) < 2:
        return []
    base = known[0]
    first = base.settings.outcome_settings()  # type: ignore[union-attr]
    out = []
    for run in known[1:]:
        mine = run.settings.outcome_settings()  # type: ignore[union-attr]
        other = base.settings.other_data(run.settings)  # type: ignore[union-attr]
        if other:  # the digests decide where both are known (one store under two paths is one data set)
            out.append(f"data: {base.label} vs {run.label}: {other}")
        for key in sorted(set(first) | set(mine)):
            if key != "dataset" and first.get(key) != mine.get(key):
                out.append(f"{key}: {base.label} {first.get(key)}, {run.label} {mine.get(key)}")
    return out


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
