"""Completed trials as a tidy DataFrame: one row per trained model, the input of every analysis."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from anynet_search.analysis.columns import SAMPLED_PREFIX
from anynet_search.analysis.studies import HISTORY_COLUMNS
from anynet_search.errors import InputError
from anynet_search.models.rules import STAGE_COLUMNS
from anynet_search.spaces import DesignSpace, SpaceError, load_space
from anynet_search.study.run_folder import is_storage_url, resolve_study
from anynet_search.study.settings import SETTINGS_ATTR, StudySettings, stored_settings
from anynet_search.study.storage import load_study, open_storage, redact

STAGE_PREFIXES = STAGE_COLUMNS  # config field -> column family (d1..dN, w1..wN, ...)


def resolve_run(run: str | Path, study: str | None = None) -> tuple[str, str]:
    """(storage URL, study name) of a run folder, or of a storage URL plus a study name."""
    url, name, _ = resolve_study(run, study)
    return url, name


def open_run(run: str | Path, study: str | None = None) -> tuple[str, optuna.Study]:
    """(storage URL, loaded study) of a run folder or storage URL, opening the storage once.

    Opening a journal replays the whole file (about 4 s at 10,000 trials), so it is not done twice.
    """
    url, name, storage = resolve_study(run, study)
    return url, load_study(name, storage if storage is not None else open_storage(url, repair=False))


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per completed trial with config, complexity, errors and timing columns."""
    settings = study.user_attrs.get(SETTINGS_ATTR, {})
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        a = t.user_attrs
        cfg = a.get("config")
        if cfg is None or "infeasible" in a:
            continue
        result = a.get("result", {})
        row = {"study": study.study_name, "space": a.get("space"),
               "sampler": a.get("sampler", settings.get("sampler")), "trial": t.number, "slot": a.get("slot"),
               "error": t.value, "test_error": result.get("test_error"),
               "flops": a.get("flops"), "params": a.get("params"), "acts": a.get("acts"),
               "epochs": result.get("epochs"), "num_classes": cfg.get("num_classes"),
               "train_seconds": result.get("train_seconds"),
               "seed": a.get("train_seed"), "dataset": a.get("dataset"), "fit_w0": a.get("fit_w0"),
               "fit_wa": a.get("fit_wa"), "fit_wm": a.get("fit_wm"), "fit_error": a.get("fit_error")}
        for field, prefix in STAGE_PREFIXES.items():
            for i, v in enumerate(cfg[field]):
                row[f"{prefix}{i + 1}"] = v
        # what was sampled, before the compatibility rule: constraints on the space bind these values
        row.update({f"{SAMPLED_PREFIX}{name}": v for name, v in t.params.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def load_results(run: str | Path, study: str | None = None) -> pd.DataFrame:
    """Tidy results of a run folder (or storage URL + study name): one row per completed trial.

    Columns: study, space, sampler, trial, error (validation, %), test_error, flops, params, acts, epochs,
    num_classes, train_seconds, seed, fit_w0/wa/wm/fit_error, per-stage d1..dN, w1..wN, b1..bN, g1..gN of the built config,
    and `sampled_<name>` for each sampled parameter (e.g. sampled_w1, or sampled_g when the space shares g).
    """
    return trials_frame(open_run(run, study)[1])


def histories_frame(study: optuna.Study) -> pd.DataFrame:
    """Per-epoch validation error of every trained trial (its recorded `result.history`).

    Columns trial, epoch, val_error.

    Epochs count from 1. Trials that recorded no history (the dry-run objective) have no rows.
    """
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if "infeasible" in t.user_attrs:
            continue
        for epoch, value in enumerate(t.user_attrs.get("result", {}).get("history") or (), start=1):
            rows.append((t.number, epoch, float(value)))
    return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))


@dataclass
class RunData:
    """One loaded run: results frame, per-epoch histories, Optuna study and (when known) its design space."""

    label: str
    run: str
    df: pd.DataFrame
    study: optuna.Study | None = None
    space: DesignSpace | None = None
    space_note: str | None = None
    histories: pd.DataFrame = dataclasses.field(
        default_factory=lambda: pd.DataFrame(columns=list(HISTORY_COLUMNS)))
    settings: StudySettings | None = None  # None for a study anynet-search did not create


def display_run(run: str | Path) -> str:
    """A run folder as given, or a storage URL with its credentials redacted."""
    text = str(run)
    return redact(text) if is_storage_url(text) else text


def space_of(study: optuna.Study | None, df: pd.DataFrame) -> tuple[DesignSpace | None, str | None]:
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
        return None, (f"design space unknown ({problem}; {exc}); exact shrink factors and derived space "
                      "unavailable")
    return space, f"design space rebuilt from the space file {space.source} ({problem})"


def foreign_study(study: optuna.Study) -> str:
    """What a study that anynet-search did not make holds, in words (for `status` and `analyze`)."""
    states = Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False))
    held = ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "no trials"
    return (f"study {study.study_name!r} was not made by anynet-search: a plain Optuna study ({held}) "
            "with no stored settings or recorded configs")


def completed_frame(run: str | Path, study: optuna.Study, verb: str) -> pd.DataFrame:
    """`trials_frame` of a study to analyze or export; InputError (one line) if it has nothing to `verb`: a
    study with no completed trials, one that anynet-search did not make, or one a newer version stored
    (`SettingsError`)."""
    settings = stored_settings(study)
    df = trials_frame(study)
    if df.empty and settings is None:
        raise InputError(f"{display_run(run)}: {foreign_study(study)}; nothing to {verb} (give a run of "
                         "anynet-search run)")
    if df.empty:
        raise InputError(f"{display_run(run)}: study {study.study_name!r} has no completed trials to {verb}")
    return df


def load_run(run: str | Path, study_name: str | None = None) -> RunData:
    """Load a run folder (or a storage URL and study name): results, histories, study and design space."""
    _, study = open_run(run, study_name)
    name = study.study_name
    df = completed_frame(run, study, "analyze")
    space, note = space_of(study, df)
    try:
        settings = StudySettings.from_study(study)
    except (ValueError, TypeError):
        settings = None
    return RunData(label=name, run=display_run(run), df=df, study=study, space=space, space_note=note,
                   histories=histories_frame(study), settings=settings)
