"""`anynet-search plan RUN --effect E [E ...]`: how many models per space a comparison needs, and how long.

The numbers come from `analysis.planning.plan_table` (simulated power of the analysis' own tests, resampling
the pilot study's errors, or normal errors of `--spread` points). The time is the pilot's own pace on the
machine it ran on (`pilot_pace`): the wall time during which at least one of its trials was running,
divided by its trained models. That counts its workers, their trials in flight and its failed trials, and
leaves out the time between sessions of a resumed study.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from anynet_search.analysis.planning import normal_errors, pilot_errors, plan_table
from anynet_search.analysis.samplers import sample_bias
from anynet_search.errors import InputError
from anynet_search.reporting.results import RunData, load_run
from anynet_search.study.settings import is_trained


@dataclass(frozen=True)
class Pace:
    """A study's measured pace: wall seconds per trained model, with how many workers."""

    seconds_per_model: float
    workers: int
    trained: int
    busy_seconds: float


def pilot_pace(study: optuna.Study) -> Pace | None:
    """Wall seconds while any trial ran, per trained model, and the number of workers that ran trials (None when
    no trial recorded its start and end)."""
    spans, workers, trained = [], set(), 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)):
        if t.datetime_start is None or t.datetime_complete is None:
            continue
        spans.append((t.datetime_start.timestamp(), t.datetime_complete.timestamp()))
        if t.user_attrs.get("worker") is not None:
            workers.add(str(t.user_attrs["worker"]))
        trained += is_trained(t)
    if not spans or trained == 0:
        return None
    busy, end = 0.0, -math.inf
    for lo, hi in sorted(spans):  # length of the union of the trials' spans
        if hi > end:
            busy += hi - max(lo, end)
            end = hi
    return Pace(busy / trained, len(workers), trained, busy)


def _with_error(p: float, sims: int) -> str:
    """A simulated power in percent with its Monte-Carlo standard error: '80.4% +- 1.3'."""
    if not math.isfinite(p):
        return "-"
    return f"{100 * p:.1f}% +- {100 * math.sqrt(p * (1 - p) / sims):.1f}"


def human_time(seconds: float) -> str:
    """A duration in words: 45 s, 12 min, 3 h 20 min, 4.2 days."""
    if not math.isfinite(seconds):
        return ""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h {minutes:02d} min"
    return f"{seconds / 86400:.1f} days"


@dataclass
class PlanReport:
    """What `plan` computed: the table, where its errors came from, and the pilot's pace."""

    table: pd.DataFrame
    source: str  # the errors resampled, in words
    alpha: float  # the analysis' two-sided level
    comparisons: int
    spaces: int
    pilot: str | None = None
    n_pilot: int | None = None
    pace: Pace | None = None
    notes: list[str] = field(default_factory=list)

    def time_for(self, n: float) -> float:
        """Seconds to train n models in each of `spaces` spaces at the pilot's pace (nan without a pace)."""
        if self.pace is None or not math.isfinite(n):
            return math.nan
        return n * self.spaces * self.pace.seconds_per_model

    def view(self) -> pd.DataFrame:
        """The table as printed: effect, test, models per space, power there and at the pilot's n, time."""
        t = self.table
        out = pd.DataFrame({
            "effect": t["effect"].map(lambda v: f"{v:g}"),
            "test": t["test"].map({"superiority": "mean", "ks": "KS"}).fillna(t["test"]),
            "models/space": t["n"].map(lambda v: f"{v:.0f}" if math.isfinite(v) else f"> {t.attrs['n_max']}"),
            "power there": [_with_error(p, t.attrs["sims"]) + ("" if math.isfinite(n) else f" at {t.attrs['n_max']}")
                            for n, p in zip(t["n"], t["power_at_n"])],
        })
        if self.n_pilot is not None:
            out[f"power at {self.n_pilot}"] = t["power_at_pilot"].map(lambda v: _with_error(v, t.attrs["sims"]))
        if self.pace is not None:
            out[f"time ({self.spaces} spaces)"] = [human_time(self.time_for(n)) for n in t["n"]]
        return out

    def lines(self) -> list[str]:
        """What `anynet-search plan` prints."""
        a = self.table.attrs
        level = a["alpha"]
        holm = f", Holm's first step of {self.comparisons} comparisons" if self.comparisons > 1 else ""
        out = [f"plan from {self.source}",
               f"tests at one-sided level {level:.4g} (alpha {self.alpha:g}{holm}), target power "
               f"{100 * a['target']:.0f}%, each power from {a['sims']} simulated studies (+- its Monte-Carlo "
               "standard error); models/space: the fewest (to 1%) whose simulated power reaches the target, the "
               "same simulated studies at every n"]
        if self.pace is not None:
            p = self.pace
            out.append(f"pace of the pilot: {p.seconds_per_model:.3g} s per model with {p.workers} worker"
                       f"{'s' if p.workers != 1 else ''} ({p.trained} models in {human_time(p.busy_seconds)} of "
                       "running trials)")
        out += [f"note: {n}" for n in self.notes]
        out += ["  " + line for line in self.view().to_string(index=False).splitlines()]
        out.append("mean: the permutation test of the mean error finds a space E points better (the same n shows "
                   "'not worse by E' when nothing changed, derive's keep rule); KS: the one-sided KS test analyze "
                   "compares studies with finds it.")
        if self.n_pilot is not None:
            for row in self.table.itertuples(index=False):
                if row.power_at_pilot < self.table.attrs["target"]:
                    name = "mean" if row.test == "superiority" else "KS"
                    out.append(f"at the pilot's {self.n_pilot} models per space the {name} test has "
                               f"{100 * row.power_at_pilot:.0f}% power to find a {row.effect:g}-point shift: "
                               "'no difference' there is not evidence of none.")
        return out


def plan_study(run: str | tuple[str, str] | None, effects: list[float], *, spread: float | None = None,
               alpha: float = 0.05, comparisons: int = 1, target: float = 0.8, spaces: int = 2,
               bins: int | None = None, sims: int = 1000, seed: int = 0) -> PlanReport:
    """The plan for `effects` from a pilot run (a folder, or a (storage URL, study) pair) and/or a spread."""
    if run is None and spread is None:
        raise InputError("plan needs a pilot study (RUN) or --spread SD (the standard deviation of the errors)")
    if not (0 < alpha < 1):
        raise InputError(f"--alpha must be in (0, 1), got {alpha!r}")
    if not (0 < target < 1):
        raise InputError(f"--power must be in (0, 1), got {target!r}")
    if any(not (math.isfinite(e) and e > 0) for e in effects):
        raise InputError(f"--effect takes positive numbers of error points, got {' '.join(map(str, effects))}")
    if spread is not None and not (math.isfinite(spread) and spread > 0):
        raise InputError(f"--spread must be a positive number of error points, got {spread!r}")
    if bad := [v for v in [*effects, *([spread] if spread is not None else [])] if not 1e-3 <= v <= 100]:
        raise InputError(f"--effect and --spread are error points between 0.001 and 100 (a percentage), got {bad[0]:g}")
    pilot: RunData | None = None
    notes: list[str] = []
    if run is not None:
        pilot = load_run(*run) if isinstance(run, tuple) else load_run(run)
        why = sample_bias(pilot.df)
        if why and spread is None:
            raise InputError(f"pilot {pilot.label}: {why}, so its errors describe the search, not the space; use a "
                             "random or qmc pilot, or give --spread")
    if spread is not None:
        errors = normal_errors(spread)
        source = f"normal errors with standard deviation {spread:g} points"
        if pilot is not None:
            source += f" (pilot {pilot.label} gives the pace and n)"
    else:
        assert pilot is not None
        try:
            errors = pilot_errors(pilot.df, bins)
        except ValueError as exc:
            raise InputError(f"pilot {pilot.label}: {exc}") from None
        what = f"their spread inside {bins} complexity bins" if bins else "raw errors"
        source = (f"pilot {pilot.label}: {len(pilot.df)} models, error sd {np.std(errors, ddof=1):.3g} points "
                  f"({what}), resampled")
        if len(pilot.df) < 20:
            notes.append(f"the pilot has only {len(pilot.df)} models: its spread is itself uncertain")
    level = alpha / 2 / comparisons
    n_pilot = len(pilot.df) if pilot is not None else None
    table = plan_table(errors, effects, alpha=level, target=target, n_pilot=n_pilot, sims=sims, seed=seed)
    pace = pilot_pace(pilot.study) if pilot is not None and pilot.study is not None else None
    return PlanReport(table, source, alpha, comparisons, spaces, pilot.label if pilot else None, n_pilot, pace, notes)
