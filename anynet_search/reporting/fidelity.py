"""`anynet-search fidelity RUN_LOW RUN_HIGH`, and the report's fidelity section: do the two budgets rank alike?

`fidelity_of` computes `analysis.fidelity.fidelity` for two loaded studies and describes each one's budget
(epochs, data set and the trainer settings in which they differ); `fidelity_runs` loads two runs, writes the
figure and the tables and returns the result, whose `lines` are what the command prints. `fidelity_pairs`
finds the pairs among the studies `analyze` was given: two studies whose configs match (a study made with
`--configs-from` and its source, or random studies of one space and seed), the fewer epochs as the low one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from anynet_search.analysis import resolve_margin
from anynet_search.analysis.fidelity import (
    MIN_MATCHED,
    Fidelity,
    error_resolution,
    fidelity,
    margin_note,
    match_models,
)
from anynet_search.errors import InputError
from anynet_search.reporting import plots
from anynet_search.reporting.results import RunData, load_run
from anynet_search.study.settings import StudySettings

#: Share of the smaller study that must match for `analyze` to treat two studies as a fidelity pair.
PAIR_SHARE = 0.5


def _settings(run: RunData) -> StudySettings | None:
    try:
        return StudySettings.from_study(run.study) if run.study is not None else None
    except (TypeError, ValueError):
        return None


def epochs_of(run: RunData) -> int | None:
    """The study's training epochs (its settings), or None when unknown."""
    settings = _settings(run)
    return settings.train_config().epochs if settings is not None else None


def budgets(low: RunData, high: RunData) -> tuple[str, str]:
    """Each study's budget in words: epochs, data set, and the trainer settings in which the two differ."""
    a, b = _settings(low), _settings(high)
    if a is None or b is None:
        return "budget unknown", "budget unknown"
    ta, tb = a.train_config().to_dict(), b.train_config().to_dict()
    differ = [k for k in ta if k != "epochs" and ta.get(k) != tb.get(k)]
    out = []
    for s, t in ((a, ta), (b, tb)):
        words = f"{t['epochs']} epoch{'s' if t['epochs'] != 1 else ''} on {s.dataset}"
        if differ:
            words += ", " + ", ".join(f"{k}={t[k]}" for k in differ)
        out.append(words)
    return out[0], out[1]



def overlap_count(overlap: dict[str, float]) -> str:
    """The top-k overlap as a count: '2', or '1.3' where tied errors at a cut make it a mean over tie breaks."""
    value = overlap["overlap"]
    return f"{value:.0f}" if abs(value - round(value)) < 1e-9 else f"{value:.1f}"


def overlap_tie_note(overlap: dict[str, float]) -> str:
    """Why a count is fractional: tied errors straddle a top-k cut, so the overlap is averaged over the ways to
    break the ties (empty when it is a whole number)."""
    value = overlap["overlap"]
    return "" if abs(value - round(value)) < 1e-9 else (
        " on average over the ways to break the tied errors at the cuts")


@dataclass
class FidelityReport:
    """A fidelity comparison of two studies: the numbers (`result`), who is who, and its figure."""

    low: str
    high: str
    low_budget: str
    high_budget: str
    result: Fidelity
    n_boot: int
    figure: Figure | None = None
    files: list[Path] = field(default_factory=list)
    margin_flag: str | None = None  # `analysis.fidelity.margin_note`: the verdicts' margin is finer than one image

    def summary_rows(self) -> pd.DataFrame:
        """The headline numbers as a two-column table (quantity, value) for the report."""
        r = self.result
        rows = [("models matched", f"{r.n} ({r.n_low} trained in {self.low}, {r.n_high} in {self.high})")]
        if r.correlations is not None:
            for name, c in r.correlations.iterrows():
                rows.append((f"{name} rank correlation [95% interval]",
                             f"{c['estimate']:.3f} [{c['lo']:.3f}, {c['hi']:.3f}]"))
        if r.overlap is not None:
            o = r.overlap
            rows.append((f"top {100 * o['fraction']:.0f}% overlap",
                         f"{overlap_count(o)} of {o['k']}{overlap_tie_note(o)} (chance {o['chance']:.2f}; exact p = "
                         f"{o['p_value']:.2g})"))
        if r.verdicts is not None:
            v = r.verdicts
            rows.append(("constraint verdicts agreeing", f"{int(v['agree'].sum())} of {len(v)}"))
        return pd.DataFrame(rows, columns=["quantity", "value"])

    def lines(self, table: bool = True, margin: bool = True) -> list[str]:
        """What `anynet-search fidelity` prints (`table`: with the verdict table; `margin`: with the flag of a margin
        finer than one validation image)."""
        r = self.result
        out = [f"fidelity of {self.low} ({self.low_budget}) against {self.high} ({self.high_budget}):",
               f"  {r.n} models matched by config ({r.n_low} trained in {self.low}, {r.n_high} in {self.high})"]
        out += [f"  note: {note}" for note in r.notes]
        if margin and self.margin_flag:
            out.append(f"  note: {self.margin_flag}")
        if r.correlations is not None:
            s, k = r.correlations.loc["spearman"], r.correlations.loc["kendall"]
            out.append(f"  Spearman rho {s['estimate']:.3f} [{s['lo']:.3f}, {s['hi']:.3f}], Kendall tau "
                       f"{k['estimate']:.3f} [{k['lo']:.3f}, {k['hi']:.3f}] (95% BCa bootstrap intervals, "
                       f"{int(s['n_boot'])} resamples)")
        if r.overlap is not None:
            o = r.overlap
            out.append(f"  top {100 * o['fraction']:.0f}%: {overlap_count(o)} of the {o['k']} best at {self.high_budget} "
                       f"are among the {o['k']} best at {self.low_budget}{overlap_tie_note(o)} (chance {o['chance']:.2f}; "
                       f"p = {o['p_value']:.2g}, exact: hypergeometric, over the random breaks of ties at the cuts)")
        if r.verdicts is not None:
            v = r.verdicts
            neutral = int(((v["verdict_low"] == "neutral") & (v["verdict_high"] == "neutral")).sum())
            trivial = v.attrs.get("trivial", 0)
            out.append(f"  constraint verdicts agree on {int(v['agree'].sum())} of {len(v)} (margin "
                       f"{v.attrs.get('margin_spec', '')}; {trivial} more that every model satisfies left out); "
                       f"{neutral} are neutral in both, which says little where their power is low")
            if table and len(v):
                out += ["    " + line for line in verdict_view(v).to_string(index=False).splitlines()]
        return out


def verdict_view(table: pd.DataFrame) -> pd.DataFrame:
    """The verdict-agreement table with rounded effects and powers in percent (for printing and the report)."""
    view = table.copy()
    for col in ("mean_diff_low", "mean_diff_high"):
        view[col] = view[col].map(lambda v: f"{v:+.2f}" if np.isfinite(v) else "")
    for col in ("power_low", "power_high"):
        if col in view.columns:
            view[col] = view[col].map(lambda v: f"{100 * v:.0f}%" if np.isfinite(v) else "")
    view["agree"] = view["agree"].map({True: "yes", False: "no"})
    return view


def fidelity_of(low: RunData, high: RunData, *, n_boot: int = 2000, seed: int = 0, margin: float = 0.5,
                margin_unit: str = "points", figure: bool = True) -> FidelityReport:
    """The fidelity of `low` against `high` (see `analysis.fidelity.fidelity`), with its figure."""
    try:
        result = fidelity(low.df, high.df, n_boot=n_boot, seed=seed, margin=margin, margin_unit=margin_unit)
    except ValueError as exc:  # e.g. two design spaces: nothing to match
        raise InputError(f"fidelity of {low.label} against {high.label}: {str(exc).splitlines()[0]}") from None
    low_budget, high_budget = budgets(low, high)
    rep = FidelityReport(low.label, high.label, low_budget, high_budget, result, n_boot)
    if result.verdicts is not None:
        errors = high.df["error"].to_numpy(dtype=float)
        rep.margin_flag = margin_note(resolve_margin(errors, margin, margin_unit)[0], error_resolution(errors))
    if figure and result.n >= 1:
        labels = (low_budget, high_budget) if low_budget != high_budget else (low.label, high.label)
        rep.figure = plots.plot_fidelity(result.pairs, result.correlations, (f"low: {labels[0]}", f"high: {labels[1]}"))
    return rep


def fidelity_pairs(runs: list[RunData]) -> list[tuple[int, int]]:
    """(low, high) indices of the studies that hold the same configs: at least `MIN_MATCHED` matched models and
    `PAIR_SHARE` of the smaller study; the study with fewer epochs is the low one (else the one given first)."""
    out = []
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            try:
                n = len(match_models(runs[i].df, runs[j].df))
            except ValueError:  # different parameters: different design spaces
                continue
            if n >= max(MIN_MATCHED, PAIR_SHARE * min(len(runs[i].df), len(runs[j].df))):
                ei, ej = epochs_of(runs[i]), epochs_of(runs[j])
                out.append((j, i) if ei is not None and ej is not None and ej < ei else (i, j))
    return out


def fidelity_runs(low: str | tuple[str, str], high: str | tuple[str, str], out_dir: str | Path, *,
                  n_boot: int = 2000, seed: int = 0, margin: float = 0.5,
                  margin_unit: str = "points") -> FidelityReport:
    """Load two runs (folders, or (storage URL, study) pairs), compare them, and write into `out_dir`:
    `fidelity.png`, `fidelity_pairs.csv` (each matched model's two errors) and `fidelity_verdicts.csv`."""
    runs = [load_run(*r) if isinstance(r, tuple) else load_run(r) for r in (low, high)]
    if runs[0].label == runs[1].label and runs[0].run == runs[1].run:
        raise InputError(f"fidelity compares two studies; both are {runs[0].label!r} in {runs[0].run}")
    rep = fidelity_of(runs[0], runs[1], n_boot=n_boot, seed=seed, margin=margin, margin_unit=margin_unit)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs = rep.result.pairs.drop(columns=["row_low", "row_high"])
    pairs.to_csv(out / "fidelity_pairs.csv", index=False)
    rep.files.append(out / "fidelity_pairs.csv")
    if rep.result.verdicts is not None:
        rep.result.verdicts.to_csv(out / "fidelity_verdicts.csv", index=False)
        rep.files.append(out / "fidelity_verdicts.csv")
    if rep.figure is not None:
        rep.figure.savefig(out / "fidelity.png", dpi=90)
        rep.files.append(out / "fidelity.png")
    return rep
