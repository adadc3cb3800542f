"""The analysis' results as data: every number of one study (`StudyReport`, computed by `study_report`), the
figures' entries (`ReportFigure`) and what a whole analysis computed and wrote (`ReportSummary`).

`report` renders these and `figures` draws from them; this module draws and writes nothing.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from anynet_search.analysis import (
    KEEP,
    NEUTRAL,
    REJECT,
    derive_constraints,
    good_ranges,
    stage_columns,
    stage_count,
)
from anynet_search.analysis.importance import parameter_importance
from anynet_search.analysis.power import verdict_power
from anynet_search.analysis.studies import error_summary, extreme_curves, split_by_mask, training_warnings
from anynet_search.reporting.results import RunData
from anynet_search.spaces.constraints import STRUCTURAL
from anynet_search.spaces.derive import DerivedSpace, derive_space, exact_shrink
from anynet_search.study.configs_from import describe_source
from anynet_search.study.settings import SETTINGS_ATTR, StudySettings

CURVE_MODELS = 3  # validation curves of this many best and worst models


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
    configs_note: str | None = None  # where a `run --configs-from` study's configs came from
    training: str = "training settings unknown (not an anynet-search study)"  # data set and trainer, in words
    epochs: int | None = None
    dataset: str | None = None
    training_warnings: list[str] = field(default_factory=list)  # near chance, far from converged

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
    fidelity: list[Any] = field(default_factory=list)  # `reporting.fidelity.FidelityReport` of each matched pair
    power_shift: float | None = None  # the shift (points) whose power each study comparison states
    compare_bins: int | None = None  # bins of the study comparisons (None: raw EDFs)
    normalization_reason: str | None = None  # why they are normalized (asked for, or the flops differ)
    raw_comparisons: pd.DataFrame | None = None  # the raw comparisons beside normalized ones
    settings_warning: str | None = None  # studies trained differently, compared under --force
    headlines: list[Any] = field(default_factory=list)  # `reporting.headline.Headline` of each study
    noise: list[Any] = field(default_factory=list)  # `reporting.noise.RetrainPair` of each retrained study

    def comparison_basis(self) -> str:
        """Which EDFs the study comparisons use, and why."""
        if self.compare_bins is None:
            return "raw"
        return f"complexity-normalized ({self.compare_bins} flops bins; {self.normalization_reason})"

    def constraint_basis(self) -> str:
        """Which EDFs the constraint verdicts use."""
        return f"complexity-normalized ({self.bins} flops bins)" if self.bins is not None else "raw"

    @property
    def derived_space(self) -> Path | None:
        """The first study's derived space file (`derived_space_<study>.yaml`), if one was written."""
        return self.derived_spaces[0] if self.derived_spaces else None

    def text(self) -> str:
        """A short printable summary: per study n, best/median error and verdicts; the output paths."""
        lines = [
            f"anynet-search report of {len(self.studies)} stud{'y' if len(self.studies) == 1 else 'ies'} "
            f"(error = validation error %, test error reported separately)"
        ]
        if self.settings_warning:
            lines.append(f"  WARNING: {self.settings_warning}")
        from anynet_search.reporting.headline import headline_lines

        for k, s in enumerate(self.studies):
            m = s.summary
            lines.append(f"  {s.label} ({s.space_name or '?'}, {s.sampler}): n={m['n']}, best {m['best_error']:.2f}%, "
                         f"median {m['median_error']:.2f}%; {s.training}")
            if s.warning:
                lines.append(f"    WARNING: {s.warning}")
            for warning in s.training_warnings:
                lines.append(f"    WARNING: {warning}")
            if k < len(self.headlines):
                lines += headline_lines(self.headlines[k])
        for f in self.fidelity:
            lines += f.lines(table=False)
        for pair in self.noise:
            lines += ["  " + line for line in pair.lines()]
        if self.comparisons is not None:
            lines.append(f"  comparisons on {self.comparison_basis()} EDFs"
                         + (", raw ones beside them in the report" if self.raw_comparisons is not None else ""))
            for row in self.comparisons.itertuples(index=False):
                beyond = (f" ({row.beyond_noise:.1f} sds of the retrain noise of a difference of means)"
                          if "beyond_noise" in self.comparisons else "")
                lines.append(f"    {row.study} vs {row.versus}: KS p = {row.p_value:.3g}, mean error "
                             f"{row.mean_diff:+.2f} points{beyond}")
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



def _configs_note(run: RunData) -> str | None:
    """Where the configs of a study made with `run --configs-from` came from (None for a sampled study)."""
    record = run.study.user_attrs.get(SETTINGS_ATTR, {}).get("configs_from") if run.study is not None else None
    note = describe_source(record) if isinstance(record, dict) else None
    if run.settings is not None and run.settings.repeat:
        again = f"repeat {run.settings.repeat}: trained again under other training seeds"
        note = f"{note}; {again}" if note else f"configs of its seed's stream, {again}"
    return note


def precision(amp: bool, devices: set[str] | None) -> str:
    """The arithmetic the trials trained in, from the devices they recorded: fp32 on the CPU, bf16 autocast on a
    CUDA device (where it supports bf16) when `amp` is on."""
    cuda = {d for d in devices or () if str(d).startswith("cuda")}
    on_cuda = "bf16 autocast on CUDA" if amp else "fp32 on CUDA"
    if devices is None:
        return f"{on_cuda}, fp32 on the CPU"
    if not cuda:
        return "fp32 on the CPU"
    return on_cuda + (", fp32 on the CPU" if len(cuda) < len(set(devices)) else "")


def describe_training(settings: StudySettings | None, devices: set[str] | None = None) -> str:
    """A study's data set and trainer in words, e.g. 'digits, 8 epochs, batch 64, lr 0.3, ..., fp32 on the CPU';
    `devices`: those its trials trained on (None: unknown, both precisions named)."""
    if settings is None:
        return "training settings unknown (not an anynet-search study)"
    t = settings.outcome_settings()
    pad = "resolution // 8" if t["crop_pad"] is None else t["crop_pad"]
    epochs = f"{t['epochs']} epoch{'s' if t['epochs'] != 1 else ''}"
    warmup = f"{t['warmup_epochs']:g} epoch{'s' if t['warmup_epochs'] != 1 else ''}"
    protocol = t.get("augment", "shift")  # the one protocol of studies made before there were two
    augment = ("random-resized crops and center-crop evaluation (ImageNet protocol)" if protocol == "imagenet"
               else f"shifted crops (padding {pad})" if protocol == "shift" else f"augmentation {protocol}")
    data_digest = getattr(settings, "data_digest", None)
    digest = f"; data digest {data_digest[:12]}" if data_digest else ""
    return (f"{t['dataset']}, {epochs}, batch {t['batch_size']}, lr {t['lr']:g} "
            f"(warm-up {warmup}, cosine), momentum {t['momentum']:g}"
            f"{' Nesterov' if t['nesterov'] else ''}, weight decay {t['weight_decay']:g}, label smoothing "
            f"{t['label_smoothing']:g}, {augment}, {precision(bool(t['amp']), devices)}{digest}")


def trial_devices(study: optuna.Study | None) -> set[str] | None:
    """The devices a study's trained trials recorded (None: no study, or none recorded one)."""
    if study is None:
        return None
    found = {str(t.user_attrs["device"]) for t in study.get_trials(deepcopy=False)
             if t.state == optuna.trial.TrialState.COMPLETE and "device" in t.user_attrs}
    return found or None


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


def study_report(
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
        configs_note=_configs_note(run),
        training=describe_training(run.settings, trial_devices(run.study)),
        epochs=int(run.settings.outcome_settings()["epochs"]) if run.settings is not None else None,
        dataset=run.settings.dataset if run.settings is not None else None,
    )
    classes = pd.to_numeric(df["num_classes"], errors="coerce").dropna() if "num_classes" in df else pd.Series(dtype=float)
    report.training_warnings = training_warnings(df, run.histories, int(classes.iloc[0]) if len(classes) else None)
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


